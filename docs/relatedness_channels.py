"""Round 4 of the relatedness bench: per-channel fields compared without regard to channel order.

The bench's field sums the encoder's 32 channels (their spatial maxima, `feature-max`, each channel
scaled) into one scalar per anchor, so it sees one direction per (anchor, step) out of what the
encoder's 32 channels see; transfer to another task depends on all of them. This script extracts
each channel's own field (the same field as the core's `extract_field` of that channel alone; checked
to 2e-7 by `--check`), projects it on the digits' 64-dim subspace, J_A [C, N, K, 64], and compares
two encoders in three ways that do not depend on the order of their channels:

  M1  linear CKA of the channels over all (point, input dim) rows          1 - CKA
  M2  the same CKA per (anchor, step) point, averaged                      1 - mean CKA
  M3  asymmetric: the share of target B's per-point gradient energy in     1 - share
      source A's top directions (those holding 90% of A's energy)

each hubness-centred, as the bench scores every method, beside the bench's default (the
channel-summed field, cosine per point). Candidate M2 was picked on zoos 0-5 and checked on fresh
zoos 12-17 against a bar written down before they were scored (docs/BENCHMARKS.md, "Round 4").

Usage: python docs/relatedness_channels.py [--zoos 12-17] [--cache DIR] [--check]
Zoos are trained with the bench's recipe (seeds 1000 * zoo + task index, one torch thread; about
3 minutes per zoo) and the per-channel fields extracted (about 3 minutes per zoo); both are cached in
--cache (default /tmp/relatedness_channels), so a second run only scores.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from modelgif_core import relatedness as R  # noqa: E402
from modelgif_core.anchors import digits_basis, digits_dataset, digits_split, load_anchors  # noqa: E402
from modelgif_core.fields import FieldConfig, extract_field, make_baseline, quadrature  # noqa: E402

CFG = R.BenchConfig()
TASKS = list(CFG.tasks)


def train_zoo(zoo: int, cache: Path) -> dict:
    """The bench's task zoo `zoo` (encoders and transfer losses, the random encoder's last)."""
    path = cache / f"zoo{zoo}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)  # tensors only: a cache is never trusted to run code
    xs, ys = digits_dataset()
    pool, held = digits_split()
    x, y, xt, yt = xs[pool], ys[pool], xs[held], ys[held]
    enc = {t: R.train_encoder(t, x, y, epochs=CFG.epochs, seed=1000 * zoo + i) for i, t in enumerate(TASKS)}
    torch.manual_seed(99_000 + zoo)
    rand = R.Encoder(CFG.width, CFG.resolution).eval().requires_grad_(False)
    sub = torch.randperm(len(x), generator=torch.Generator().manual_seed(zoo))[: CFG.transfer_train]
    loss = R.transfer_losses({**enc, "_random": rand}, TASKS, x[sub], y[sub], xt, yt,
                             steps=CFG.readout_steps, seed=zoo)
    data = {"loss": torch.from_numpy(loss), "enc": {t: e.state_dict() for t, e in enc.items()}}
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return data


def channel_fields(model: nn.Module, images: torch.Tensor, chunk: int = 320) -> torch.Tensor:
    """Every output channel's feature-max field at once, projected: [C, N, K, 64].

    One backward per chunk with the identity as batched grad outputs (is_grads_batched) instead of C
    calls of the extractor; the running sums commute with the (x - x0) factor and the projection."""
    alphas, weights = quadrature("gausslegendre", CFG.steps)
    n, k = len(images), len(alphas)
    basis = digits_basis()  # [3072, 64]
    x0 = make_baseline("black", images)
    delta = images - x0
    with torch.no_grad():
        clean = model(images)  # [N, C, 8, 8]
    c = clean.shape[1]
    pos = clean.flatten(2).argmax(2)  # [N, C] each channel's max position at the clean anchor
    points = (x0[:, None] + torch.tensor(alphas).view(1, k, 1, 1, 1) * delta[:, None]).flatten(0, 1)
    anchor = torch.arange(n).repeat_interleave(k)
    w = torch.tensor(weights)
    out = torch.empty(c, n * k, 64)
    eye = torch.eye(c)
    for s in range(0, n * k, chunk):
        pts = points[s:s + chunk].clone().requires_grad_(True)
        i = anchor[s:s + chunk]
        with torch.enable_grad():
            scalars = model(pts).flatten(2).gather(2, pos[i][:, :, None])[:, :, 0]  # [B, C]
            (g,) = torch.autograd.grad(scalars, pts, grad_outputs=eye[:, None, :].expand(c, len(i), c),
                                       is_grads_batched=True)  # [C, B, 3, 32, 32]
        step_w = w[torch.arange(s, s + len(i)) % k][None, :, None]
        out[:, s:s + len(i)] = (g.flatten(2) * step_w * delta[i].flatten(1)[None]) @ basis
    return out.view(c, n, k, 64).cumsum(2)


def encoder(state: dict) -> nn.Module:
    enc = R.Encoder(CFG.width, CFG.resolution)
    enc.load_state_dict(state)
    return enc.eval().requires_grad_(False)


def zoo_fields(zoo: int, cache: Path, images: torch.Tensor) -> list[torch.Tensor]:
    path = cache / f"channels{zoo}.pt"
    if not path.is_file():
        data = train_zoo(zoo, cache)
        fields = {t: channel_fields(R.ChannelScaled(encoder(s), images), images).half() for t, s in data["enc"].items()}
        torch.save(fields, path)
    fields = torch.load(path, weights_only=True)
    return [fields[t].double() for t in TASKS]  # [C, N, K, 64] per task


def default_distance(J: list[torch.Tensor]) -> np.ndarray:
    """The bench's previous default: the channel-summed field, 1 - cosine per (anchor, step), averaged."""
    u = [torch.nn.functional.normalize(j.sum(0).flatten(0, 1), dim=1) for j in J]  # [M, 64]
    return np.array([[1 - float((a * b).sum(1).mean()) for b in u] for a in u])


def cka_global(J: list[torch.Tensor]) -> np.ndarray:
    x = [j.flatten(1) for j in J]  # [C, N*K*64]
    gram_norm = [(v @ v.T).norm() for v in x]
    return np.array([[1 - float((a @ b.T).square().sum() / (na * nb)) for b, nb in zip(x, gram_norm)]
                     for a, na in zip(x, gram_norm)])


def cka_per_point(J: list[torch.Tensor]) -> np.ndarray:
    g = [torch.einsum("cmi,cmj->mij", j.flatten(1, 2), j.flatten(1, 2)) for j in J]  # [M, 64, 64] per point
    norm = [v.flatten(1).norm(dim=1) for v in g]  # [M]
    return np.array([[1 - float(((a * b).sum((1, 2)) / (na * nb).clamp_min(1e-30)).mean())
                      for b, nb in zip(g, norm)] for a, na in zip(g, norm)])


def capture(J: list[torch.Tensor], energy: float = 0.9) -> np.ndarray:
    """d[a, b] = 1 - the share of target b's per-point energy in source a's top directions."""
    rows = [j.flatten(1, 2).permute(1, 0, 2) for j in J]  # [M, C, 64]
    kept = []
    for x in rows:
        _, s, vh = torch.linalg.svd(x, full_matrices=False)  # vh [M, C, 64]
        cum = s.square().cumsum(1) / s.square().sum(1, keepdim=True).clamp_min(1e-300)
        keep = (cum < energy).roll(1, 1)
        keep[:, 0] = True  # up to and including the direction that crosses `energy`
        kept.append(vh * keep[:, :, None])
    total = [x.square().sum() for x in rows]
    return np.array([[1 - float(torch.einsum("mci,mri->mcr", rows[b], kept[a]).square().sum() / total[b])
                      for b in range(len(J))] for a in range(len(J))])


MEASURES = {"default (summed field, cosine)": default_distance, "M1 channel CKA, global": cka_global,
            "M2 channel CKA, per point": cka_per_point, "M3 subspace capture (asym.)": capture,
            # added after the check (not pre-registered): M2 on the curve's last point, i.e. the channels'
            # Integrated Gradients attributions alone, and the summed field's last point
            "M2 on the last point (IG only)": lambda J: cka_per_point([j[:, :, -1:] for j in J]),
            "summed field, last point (IG only)": lambda J: default_distance([j[:, :, -1:] for j in J])}


class _OneChannel(nn.Module):
    def __init__(self, model: nn.Module, c: int) -> None:
        super().__init__()
        self.model, self.c = model, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, self.c:self.c + 1]


def check(anchors) -> None:
    """The batched per-channel fields equal the core extractor's field of each channel alone."""
    torch.manual_seed(0)
    model = R.ChannelScaled(R.Encoder().eval().requires_grad_(False), anchors.images)
    J = channel_fields(model, anchors.images)
    for c in (0, 17, 31):
        ref = extract_field(_OneChannel(model, c), anchors, FieldConfig(steps=CFG.steps, target="feature-max",
                                                                          device="cpu"))
        ref = ref.reshape(len(anchors.images), CFG.steps, -1) @ digits_basis()
        print(f"channel {c}: relative difference to extract_field {float((J[c] - ref).norm() / ref.norm()):.1e}")


def mean_spearman(dist: np.ndarray, affinity: np.ndarray) -> float:
    return float(np.nanmean(list(R.per_task_spearman(dist, affinity, TASKS).values())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoos", default="12-17", help="a range a-b or a comma list")
    ap.add_argument("--cache", default="/tmp/relatedness_channels")
    ap.add_argument("--check", action="store_true", help="only compare the batched fields with extract_field")
    args = ap.parse_args()
    torch.set_num_threads(1)
    anchors = load_anchors(CFG.anchors)
    if args.check:
        check(anchors)
        return
    lo, _, hi = args.zoos.partition("-")
    zoos = list(range(int(lo), int(hi) + 1)) if hi else [int(v) for v in args.zoos.split(",")]
    scores = {m: [] for m in MEASURES}
    centred = {m: [] for m in MEASURES}
    raw = {m: [] for m in MEASURES}
    affinities = []
    for zoo in zoos:
        t0 = time.time()
        J = zoo_fields(zoo, Path(args.cache), anchors.images)
        loss = train_zoo(zoo, Path(args.cache))["loss"].numpy()
        affinity = R.normalise_affinity(loss[:-1], loss[-1])
        affinities.append(affinity)
        for name, measure in MEASURES.items():
            dist = measure(J)
            centred[name].append(R.hubness_centred(dist))
            scores[name].append(mean_spearman(centred[name][-1], affinity))
            raw[name].append(mean_spearman(dist, affinity))
        print(f"zoo {zoo}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    pooled_affinity = np.nanmean(affinities, axis=0)
    base = scores[next(iter(MEASURES))]
    print(f"zoos {zoos}: mean Spearman per zoo, hubness-centred (raw in brackets); per zoo; pooled; "
          "zoos where it beats the default\n")
    for name in MEASURES:
        pooled = mean_spearman(np.mean(centred[name], axis=0), pooled_affinity)
        wins = sum(s < b for s, b in zip(scores[name], base))
        print(f"{name:<36} {np.mean(scores[name]):+.3f} ({np.mean(raw[name]):+.3f})  "
              + " ".join(f"{v:+.2f}" for v in scores[name]) + f"  pooled {pooled:+.3f}  wins {wins}/{len(zoos)}")
    if len(zoos) > 1:
        ref = R.other_zoos_reference([{"affinity": a} for a in affinities], TASKS)
        print(f"\nreference, each zoo's affinity predicted by the other zoos' mean affinity: "
              f"{ref['spearman_mean']:+.3f} (" + " ".join(f"{v:+.2f}" for v in ref["spearman_per_seed"]) + ")")


if __name__ == "__main__":
    main()
