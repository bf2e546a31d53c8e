"""Text data (synthetic reviews, user files, instruction pairs), text backbones and the BERT recipe schedule."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
import torch
from conftest import compose, run_config, train_cli

from transferlab.data import synthetic_text as st
from transferlab.data.instructions import InstructionCollate, synthetic_instructions
from transferlab.data.text import TextClassificationData, synthetic_reviews, text_file
from transferlab.errors import ConfigError, DataError, WeightsError
from transferlab.model.schedules import linear_warmup, linear_warmup_factor

TEXT_FAST = [
    "backbone=minilm",
    "data=reviews",
    "data.source.n_per_class=40",
    "data.train_per_class=8",
    "logger=none",
    "callbacks.checkpoint=null",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="module")
def minilm():
    from transferlab.backbones import hf_assets
    from transferlab.backbones.hf import HFEncoder

    return HFEncoder(path=hf_assets.minilm(), name="minilm")


# -- synthetic data ------------------------------------------------------------------------------
def test_synthetic_reviews_are_seeded_balanced_and_two_domains():
    a, ya = st.reviews("books", 100, seed=3)
    b, yb = st.reviews("books", 100, seed=3)
    assert a == b and np.array_equal(ya, yb)
    assert st.reviews("books", 100, seed=4)[0] != a
    assert abs(int(ya.sum()) - 100) <= 15  # balanced up to the 5 % label noise
    e, _ = st.reviews("electronics", 100, seed=3)
    books_vocab = {w for t in a for w in re.findall(r"[a-z]+", t.lower())}
    elec_vocab = {w for t in e for w in re.findall(r"[a-z]+", t.lower())}
    assert {"novel", "plot"} <= books_vocab and "battery" not in books_vocab  # domain-specific words
    assert {"battery", "laptop"} <= elec_vocab and "novel" not in elec_vocab
    assert {"excellent", "terrible"} <= books_vocab & elec_vocab  # the shared sentiment signal


def test_synthetic_instructions_have_correct_answers():
    src = synthetic_instructions(n_per_task=10, seed=0)
    assert len(src.prompts) == 50 and src.task_names == st.TASKS
    for p, r, t in zip(src.prompts, src.responses, src.tasks, strict=False):
        if st.TASKS[t] == "addition":
            a, b = (int(x) for x in p.split("What is ")[1].split("?")[0].split(" plus "))
            assert int(r) == a + b
        if st.TASKS[t] == "uppercase":
            assert r == p.split("'")[1].upper()


def test_reviews_shift_is_a_labelled_to_unlabelled_domain_pair(tmp_path):
    from transferlab.config.instantiate import build

    cfg = compose(["data=reviews_shift", "data.source.n_per_class=30", "data.target.n_per_class=30"], tmp_path)
    data = build(cfg.data).prepare()
    assert data.has_target_domain and data.eval_names == ["target", "source"]
    assert data.domains["source"].name.endswith("books") and data.domains["target"].name.endswith("electronics")
    assert data.domains["source"].classes == data.domains["target"].classes == ["negative", "positive"]


def test_lora_with_dann_on_the_text_domain_pair_runs_to_the_end(tmp_path):
    """strategy=lora adaptation=dann backbone=minilm data=reviews_shift: LoRA + a GRL domain head on MiniLM."""
    res = run_config(
        [
            "backbone=minilm",
            "data=reviews_shift",
            "strategy=lora",
            "adaptation=dann",
            "data.source.n_per_class=80",
            "data.target.n_per_class=80",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1",
            "logger=none",
            "callbacks.checkpoint=null",
            "trainer.enable_progress_bar=false",
        ],
        tmp_path,
        fast=False,
    )
    assert res["status"] == "ok" and res["global_step"] == 2  # 88 source training texts, batch 32, last one dropped
    m = res["metrics"]
    assert 0 <= m["test/target_acc"] <= 1 and 0 <= m["test/source_acc"] <= 1
    assert 0 < m["train/grl_lambda"] < 1 and "train/domain_acc" in m
    assert res["params"]["trainable"] < 0.1 * res["params"]["total"]  # LoRA + head + domain discriminator


# -- user files ----------------------------------------------------------------------------------
def test_csv_and_jsonl_files(tmp_path):
    csv = tmp_path / "r.csv"
    csv.write_text("review,stars\ngood stuff,pos\nbad stuff,neg\nfine,pos\n")
    src = text_file(str(csv), text_column="review", label_column="stars")
    assert src.classes == ["neg", "pos"] and src.labels.tolist() == [1, 0, 1]
    jl = tmp_path / "r.jsonl"
    jl.write_text("\n".join(json.dumps({"text": f"t{i}", "label": i % 3}) for i in range(9)))
    assert text_file(str(jl)).classes == ["0", "1", "2"]
    with pytest.raises(DataError, match="text_column"):
        text_file(str(csv))
    with pytest.raises(DataError, match="not found"):
        text_file(str(tmp_path / "missing.csv"))
    (tmp_path / "one.csv").write_text("text,label\na,x\nb,x\n")
    with pytest.raises(DataError, match="at least 2"):
        text_file(str(tmp_path / "one.csv"))


def test_text_batches_are_tokenized_dicts(minilm):
    data = TextClassificationData(source=lambda: synthetic_reviews("both", 20), batch_size=4)
    data.build(minilm.preprocessing)
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"inputs", "labels"} and batch["labels"].shape == (4,)
    ids, mask = batch["inputs"]["input_ids"], batch["inputs"]["attention_mask"]
    assert ids.shape == mask.shape and ids.shape[0] == 4 and mask[:, 0].all()
    assert minilm(batch["inputs"]).shape == (4, 384)


def test_instruction_labels_cover_only_the_response(minilm):
    tok = minilm.tokenizer
    tok.eos_token = "[SEP]"
    collate = InstructionCollate(tok, max_length=64, chat_template=False)
    out = collate(
        [
            {"prompt": "what is two plus two?", "response": "four"},
            {"prompt": "say hello to the whole wide world please", "response": "hello world"},
        ]
    )
    for ids, labels, mask in zip(out["input_ids"], out["labels"], out["attention_mask"], strict=False):
        kept = ids[labels != -100]
        assert tok.decode(kept).replace(" ", "") in ("four[SEP]", "helloworld[SEP]")
        assert (labels[mask == 0] == -100).all()  # padding never trains
        first = int((labels != -100).nonzero()[0])
        assert tok.decode(ids[:first]).strip().endswith(("?", "please"))  # everything before is the prompt


# -- backbones -----------------------------------------------------------------------------------
def test_minilm_layer_groups_and_features(minilm):
    names = [g.name for g in minilm.layer_groups()]
    assert names[0] == "0:embeddings" and names[-1] == "6:block5" and len(names) == 7  # embeddings, 6 blocks
    x = minilm.tokenize(["a great book", "an awful laptop that overheats constantly"])
    with torch.no_grad():
        f = minilm.eval()(x)
        single = minilm({k: v[:1, : int(x["attention_mask"][0].sum())] for k, v in x.items()})
    assert f.shape == (2, 384)
    torch.testing.assert_close(f[:1], single, atol=1e-5, rtol=1e-5)  # padding does not change the features


def test_hub_backbone_offline_fails_fast_naming_backbone_path(monkeypatch):
    from transferlab.backbones.hf import HFCausalLM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(WeightsError, match=r"backbone\.path"):
        HFCausalLM(model_id="meta-llama/Llama-2-7b-hf", name="llama7b")
    assert time.monotonic() - start < 5


def test_bad_local_path(tmp_path):
    from transferlab.backbones.hf import HFEncoder

    with pytest.raises(WeightsError, match="config.json"):
        HFEncoder(path=str(tmp_path))


def test_text_backbone_with_image_data_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="matching pair"):
        run_config(["backbone=minilm", "data=digits", "logger=none"], tmp_path)


# -- schedules -------------------------------------------------------------------------------------
def test_linear_warmup_then_linear_decay():
    f = [linear_warmup_factor(s, 100, warmup=0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)  # 10 warm-up steps
    assert all(a < b for a, b in zip(f[:9], f[1:10], strict=False)) and all(
        a > b for a, b in zip(f[10:], f[11:], strict=False)
    )
    assert f[-1] == pytest.approx(1 / 90)  # decays linearly towards 0
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-5)
    sched = linear_warmup(opt, 20, warmup=0.1)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert max(lrs) == pytest.approx(2e-5) and lrs.index(max(lrs)) == 1
    with pytest.raises(ConfigError):
        linear_warmup(opt, 10, warmup=1.5)


def test_bert_recipe_composes(tmp_path):
    cfg = compose(["experiment=bert_recipe"], tmp_path)
    assert cfg.optimizer.lr == cfg.strategy.lr == 2e-5 and cfg.trainer.max_epochs == 3 and cfg.data.batch_size == 32
    assert cfg.scheduler._target_ == "transferlab.model.schedules.linear_warmup" and cfg.scheduler.warmup == 0.1
    assert cfg.callbacks.lr_monitor.logging_interval == "step"
    assert compose(["experiment=bert_recipe", "backbone=bert_base"], tmp_path).backbone.name == "bert_base"


@pytest.mark.slow
def test_bert_recipe_really_applies_its_schedule(tmp_path):
    """3 epochs x 2 steps: the logged LR rises for 10 % of the steps, then falls linearly."""
    import pandas as pd

    res = run_config(
        [
            "experiment=bert_recipe",
            "data.source.n_per_class=70",
            "data.train_per_class=32",
            "logger=csv",
            "callbacks.checkpoint=null",
            "trainer.enable_progress_bar=false",
            "trainer.log_every_n_steps=1",
        ],
        tmp_path,
        fast=False,
    )
    assert res["status"] == "ok" and res["global_step"] == 6
    df = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    lr = df[[c for c in df.columns if c.startswith("lr-AdamW")]].dropna(how="all").max(axis=1).tolist()
    assert len(lr) == 6
    expected = [2e-5 * linear_warmup_factor(s, 6, 0.1) for s in range(6)]
    np.testing.assert_allclose(lr, expected, rtol=1e-6)
    assert lr[0] == max(lr) and lr[-1] < lr[0] / 4  # 6 steps: 1 warm-up step, then linear decay


@pytest.mark.slow
def test_llama7b_offline_cli_exits_fast_with_the_message(tmp_path):
    import os

    start = time.monotonic()
    proc = train_cli(
        ["strategy=lora", "backbone=llama7b", "data=instructions", f"hydra.run.dir={tmp_path}"],
        env={"HF_HUB_OFFLINE": "1"},
    )
    # < 30 s (~10 s on an idle 2-core machine, mostly imports); scaled when the machine is oversubscribed
    assert proc.returncode == 2 and time.monotonic() - start < 30 * max(1.0, os.getloadavg()[0] / os.cpu_count())
    assert "backbone.path" in proc.stderr and "meta-llama/Llama-2-7b-hf" in proc.stderr
    assert "Traceback" not in proc.stderr
