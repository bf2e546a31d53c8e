"""The device a run computes on outside Lightning's loops (transferlab.model.run_device): the feature cache, AdaBN."""

from __future__ import annotations

import pytest
import torch
from conftest import run_config
from test_feature_cache import ARGS, metrics

from transferlab.model.run_device import forks, gpu_ids, kernels_key, local_rank, placed, run_device


@pytest.mark.parametrize(
    ("devices", "ids"),
    [(1, [0]), (2, [0, 1]), (-1, [0, 1, 2, 3]), ("-1", [0, 1, 2, 3]), ("auto", [0, 1, 2, 3]), (None, [0, 1, 2, 3]),
     ("2", [0, 1]), ("0,2", [0, 2]), ("1,", [1]), ([3], [3]), ([1, 3], [1, 3])],
)  # fmt: skip
def test_gpu_ids_read_devices_as_lightning_does(devices, ids):
    assert gpu_ids(devices, count=4) == ids


@pytest.mark.parametrize(
    ("hardware", "rank", "count", "device"),
    [
        ({"accelerator": "cpu", "devices": 1}, 0, 2, "cpu"),  # the CPU asked for, GPUs or not
        ({"accelerator": "gpu", "devices": 1}, 0, 1, "cuda:0"),
        ({"accelerator": "cuda", "devices": [1, 3]}, 1, 4, "cuda:3"),  # rank 1 of a DDP run on GPUs 1 and 3
        ({"accelerator": "gpu", "devices": "0,2"}, 0, 4, "cuda:0"),
        ({"accelerator": "auto", "devices": "auto"}, 1, 2, "cuda:1"),
        ({"accelerator": "gpu", "devices": 4}, 3, 1, "cuda:0"),  # each process sees only its own GPU (srun)
        ({"accelerator": "tpu", "devices": 8}, 0, 0, "cpu"),  # XLA tensors: not here
    ],
)
def test_run_device_is_the_process_s_training_device(hardware, rank, count, device):
    assert run_device(hardware, rank=rank, cuda_count=count) == torch.device(device)


@pytest.mark.parametrize(
    ("strategy", "fork"),
    [("ddp_fork", True), ("ddp_notebook", True), ({"_target_": "DDPStrategy", "start_method": "fork"}, True),
     ("ddp", False), ("ddp_spawn", False), ({"_target_": "DDPStrategy"}, False), (None, False)],
)  # fmt: skip
def test_a_forking_launcher_keeps_the_parent_off_cuda(strategy, fork):
    # Lightning refuses to fork once this process has a CUDA context: the fill then stays on the CPU
    assert forks(strategy) is fork
    hardware = {"accelerator": "gpu", "devices": 2, "strategy": strategy}
    assert run_device(hardware, rank=0, cuda_count=2) == torch.device("cpu" if fork else "cuda:0")


def test_local_rank_from_lightning_or_slurm(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("SLURM_LOCALID", raising=False)
    assert local_rank() == 0
    monkeypatch.setenv("SLURM_LOCALID", "2")
    assert local_rank() == 2
    monkeypatch.setenv("LOCAL_RANK", "1")  # Lightning's own launcher wins
    assert local_rank() == 1
    for var in ("LOCAL_RANK", "SLURM_LOCALID"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "3")  # mpirun
    assert local_rank() == 3


def test_cpu_features_keep_their_cache_keys():
    # entries computed on the CPU before the device was part of the key still hit; others are kept apart
    assert kernels_key(torch.device("cpu")) == ""
    assert kernels_key(torch.device("mps")) == "|mps"


def test_placed_is_a_no_op_on_the_module_s_own_device():
    net = torch.nn.Linear(2, 2)
    weight = net.weight
    with placed(net, torch.device("cpu")) as inside:
        assert inside is net and net.weight is weight
    assert net.weight.device.type == "cpu"


def test_a_cpu_run_records_where_its_features_were_computed(tmp_path):
    result = run_config([*ARGS, f"cache.dir={tmp_path / 'cache'}"], tmp_path / "run")
    assert result["feature_cache"]["used"] and result["feature_cache"]["device"] == "cpu"
    assert result["feature_cache"]["forwards"] == 1797


@pytest.fixture
def no_tf32(monkeypatch):
    """Full float32 on the GPU: TF32 convolutions and matmuls (cuDNN's default) round to 10 bits, more than the 1e-4
    these comparisons allow between equal computations in another order or batch shape."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the device machine's check)")
def test_a_gpu_run_fills_its_cache_on_the_gpu_with_the_uncached_run_s_metrics(tmp_path, no_tf32):
    gpu = [*ARGS, "hardware=gpu", f"cache.dir={tmp_path / 'cache'}"]
    off = run_config([*ARGS, "hardware=gpu", "cache=off"], tmp_path / "off")
    on = run_config(gpu, tmp_path / "on")
    assert on["feature_cache"]["used"] and on["feature_cache"]["device"] == "cuda:0"
    assert on["feature_cache"]["forwards"] == 1797
    for name, value in metrics(off).items():
        assert on["metrics"][name] == pytest.approx(value, abs=1e-4), name
    cpu = run_config([*ARGS, f"cache.dir={tmp_path / 'cache'}"], tmp_path / "cpu")
    assert cpu["feature_cache"]["hits"] == 0  # features from the GPU's kernels are not served to a CPU run


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the device machine's check)")
def test_adabn_after_fit_runs_on_the_gpu(tmp_path):
    args = ["data=mnist_to_digits", "strategy=partial", "strategy.norm=train", "adaptation=adabn"]
    result = run_config([*args, "data.train_per_class=5", "data.batch_size=8", "hardware=gpu"], tmp_path)
    assert result["status"] == "ok"
    assert result["norm"]["adabn"]["layers"] > 0 and result["norm"]["adabn"]["device"] == "cuda:0"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the device machine's check)")
def test_lora_s_merged_check_runs_on_the_gpu(tmp_path, no_tf32):
    result = run_config([*ARGS, "strategy=lora", "hardware=gpu"], tmp_path)
    assert result["status"] == "ok" and result["adapter"]["device"] == "cuda:0"
    assert result["adapter"]["merged"]["within_tol"]
