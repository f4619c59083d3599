"""Task relatedness with ModelGiF: a mini-Taskonomy on sklearn's digits (`modelgif bench relatedness`).

One encoder per task, all of one architecture, trained with a task head on the digits pool:

    digit (10-way), parity, >= 5, digit mod 3, has-a-loop     labels derived from the digit
    rotation (0/90/180/270, self-supervised)                   4-way on rotated inputs
    autoencode, denoise, inpaint, edges                        dense [1, 32, 32] outputs

Ground truth, as Taskonomy: freeze source task A's encoder, train a small readout for target task B
on a few labelled examples, and measure B's held-out loss L[A, B]. Normalised per target task
against the target's own encoder and an untrained encoder of the same architecture:

    affinity[A, B] = (L[rand, B] - L[A, B]) / (L[rand, B] - L[B, B])   1 = as good as B's own encoder

Dense targets are read out by a small conv decoder trained briefly (Taskonomy's transfer functions
are small conv nets); the per-position ridge map used before is still scored alongside.

ModelGiF distances between the headless encoders should fall as affinity rises. The fields: one per
encoder channel (target `feature-max`: the channel's spatial max, fixed at the clean anchor; every
channel scaled to a mean max of 1 on the anchors), on CutMix anchors as the paper, the whole curve,
projected on the 64-dim subspace the digits live in. Source A is compared with target B as a
readout would: B's channel fields regressed on A's with weights shared over every (anchor, step),
d(A -> B) = 1 - the share explained (`channel_regression_distance_matrix`; asymmetric, as transfer
is, and whatever order, sign or scale each encoder gives its channels). Score per target task B:
Spearman over the other tasks A of (d'(A, B), affinity[A, B]) with d' the hubness-centred distance
(`hubness_centred`), averaged over tasks (the paper, on Taskonomy's 17 tasks: -0.835), except that
the dense sources are ordered by their field rank, highest first, whatever the target (`field_rank`, the
effective number of independent channel fields; `dense_sources_by_field_rank`): among dense encoders the
one that keeps more of its input transfers better to every dense task, which no distance to the target
shows. Each choice passed a check written down before fresh zoos were scored (docs/BENCHMARKS.md): the
subspace and the centring (zoos 6-11), per-channel fields compared by CKA per point (zoos 12-17), the
regression (zoos 40-47), the dense sources by field rank (zoos 60-67). The distance alone is scored as
`field_distance`. Baselines, scored the same way: linear CKA of the encoders' features on the anchors
(distance 1 - CKA), the Integrated Gradients attribution alone (the fields' last point, compared the
same way), the same regression on the encoders' pooled features of the held-out digits
(`feature_regression_distance_matrix`: what the readouts see, no fields; it reads higher); and
every field target x curve part x space, raw and centred (the earlier defaults among them:
`per-channel`, compared by channel CKA; `channel-scaled`, the channels' summed field compared by
cosine per point). With 4 or more zoos, the task level too (`task_level_spearman`): half the zoos'
averaged distances against the other half's averaged affinities, beside the ground truth's own
half-against-half agreement. Wherever zoos are pooled, their ground truth is averaged as Taskonomy's AHP
affinities (`zoos_affinity`); each zoo's own score stays against its normalised affinities.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..engine.anchors import digits_basis, digits_dataset, digits_split, load_anchors
from ..engine.device import one_torch_thread
from ..engine.distance import distance_matrix
from ..engine.errors import UserError, check_choice
from ..engine.fields import FieldConfig, extract_field, quadrature
from ..engine.store import default_store_root

# ----------------------------------------------------------------------------------- tasks

_LOOPS = (0, 6, 8, 9)  # digits whose usual handwritten form encloses a region


@dataclass(frozen=True)
class Task:
    """One task: its kind ("class": `classes`-way labels, "dense": a [1, 32, 32] map) and data."""

    name: str
    kind: str
    classes: int = 0


def _gray(x: torch.Tensor) -> torch.Tensor:
    return x[:, :1]  # digits are gray replicated to RGB: [B, 1, H, W]


def _rgb(g: torch.Tensor) -> torch.Tensor:
    return g.expand(-1, 3, -1, -1).contiguous()  # [B, 3, H, W]


def _rotate(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.rot90(xi, int(ri), dims=(1, 2)) for xi, ri in zip(x, r, strict=True)])


def _sobel(g: torch.Tensor) -> torch.Tensor:
    kx = g.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    gx = F.conv2d(g, kx, padding=1)
    gy = F.conv2d(g, kx.transpose(2, 3), padding=1)
    return (gx.square() + gy.square()).sqrt() / 4.0  # [B, 1, H, W], about [0, 1]


def _noisy(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    noise = 0.35 * torch.randn(x.shape[0], 1, *x.shape[2:], generator=gen)
    return _rgb((_gray(x) + noise).clamp(0, 1))


def _masked(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    out = x.clone()
    side = 14
    tops = torch.randint(0, x.shape[2] - side + 1, (len(x),), generator=gen)
    lefts = torch.randint(0, x.shape[3] - side + 1, (len(x),), generator=gen)
    for i, (t, left) in enumerate(zip(tops.tolist(), lefts.tolist(), strict=True)):
        out[i, :, t:t + side, left:left + side] = 0.0
    return out


# name -> (task, make(x, y, generator) -> (inputs [B, 3, 32, 32], targets))
_Make = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
TASKS: dict[str, tuple[Task, _Make]] = {
    "digit": (Task("digit", "class", 10), lambda x, y, g: (x, y)),
    "parity": (Task("parity", "class", 2), lambda x, y, g: (x, y % 2)),
    "ge5": (Task("ge5", "class", 2), lambda x, y, g: (x, (y >= 5).long())),
    "mod3": (Task("mod3", "class", 3), lambda x, y, g: (x, y % 3)),
    "loop": (Task("loop", "class", 2), lambda x, y, g: (x, torch.isin(y, torch.tensor(_LOOPS)).long())),
    "rotation": (Task("rotation", "class", 4), lambda x, y, g: _rotation(x, g)),
    "autoencode": (Task("autoencode", "dense"), lambda x, y, g: (x, _gray(x))),
    "denoise": (Task("denoise", "dense"), lambda x, y, g: (_noisy(x, g), _gray(x))),
    "inpaint": (Task("inpaint", "dense"), lambda x, y, g: (_masked(x, g), _gray(x))),
    "edges": (Task("edges", "dense"), lambda x, y, g: (x, _sobel(_gray(x)))),
}


def _rotation(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.randint(0, 4, (len(x),), generator=gen)
    return _rotate(x, r), r


def task_data(name: str, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of task `name` for digits x [B, 3, 32, 32], y [B] (seeded corruptions)."""
    check_choice("task", name, tuple(TASKS))
    return TASKS[name][1](x, y, torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------- models


class Encoder(nn.Module):
    """The shared encoder architecture: pixel images [B, 3, 32, 32] in [0, 1] -> [B, C, 8, 8].

    Headless, so ModelGiF uses the `feature-max` target on it; its preprocessing is inside, as P_f.
    resolution 8: gray and resized to the digits' native 8x8 first (convolutions at 8x8), so the
    gradient lives in the data's own 64-dimensional subspace; 32: convolutions and pooling at 32x32.
    """

    def __init__(self, width: int = 32, resolution: int = 32) -> None:
        super().__init__()
        if resolution not in (8, 32):
            raise UserError(f"Encoder resolution must be 8 or 32; got {resolution}.")
        self.resolution = resolution
        half = width // 2
        if resolution == 8:
            self.net = nn.Sequential(
                nn.Conv2d(1, half, 3, padding=1), nn.ReLU(),
                nn.Conv2d(half, width, 3, padding=1), nn.ReLU(),
                nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            )
        else:
            self.net = nn.Sequential(
                nn.Conv2d(3, half, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(half, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resolution == 8:
            x = F.interpolate(x.mean(1, keepdim=True), size=(8, 8), mode="bilinear",
                              align_corners=False, antialias=True)  # [B, 1, 8, 8]
        return self.net((x - 0.5) / 0.5)  # [B, C, 8, 8]


def _pooled(f: torch.Tensor) -> torch.Tensor:
    return torch.cat([f.mean((2, 3)), f.amax((2, 3))], dim=1)  # [B, 2C]


def _task_head(task: Task, width: int) -> nn.Module:
    if task.kind == "class":
        return nn.Linear(2 * width, task.classes)
    return nn.Sequential(  # [B, C, 8, 8] -> [B, 1, 32, 32]
        nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(width, 16, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 1, 3, padding=1),
    )


def _loss(task: Task, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, target) if task.kind == "class" else F.mse_loss(out, target)


def train_encoder(name: str, x: torch.Tensor, y: torch.Tensor, *, epochs: int, seed: int,
                  width: int = 32, resolution: int = 32, lr: float = 3e-3, batch: int = 64,
                  noise: float = 0.0, with_head: bool = False) -> Encoder | tuple[Encoder, nn.Module]:
    """Train an encoder with task `name`'s head end to end (AdamW, one-cycle); returns the encoder
    (with_head: the encoder and its trained head, both frozen).
    noise > 0: every training input gets Gaussian noise of that sigma (targets unchanged)."""
    task = TASKS[name][0]
    torch.manual_seed(seed)
    enc, head = Encoder(width, resolution), _task_head(task, width)
    params = [*enc.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(x) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps))
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        # Fresh corruptions (noise, masks, rotations) every epoch, seeded.
        inputs, targets = task_data(name, x, y, seed * 1000 + epoch)
        perm = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x), batch):
            idx = perm[s:s + batch]
            xb = inputs[idx]  # [B, 3, 32, 32]
            if noise > 0:
                xb = xb + noise * torch.randn(xb.shape, generator=gen)
            f = enc(xb)  # [B, C, 8, 8]
            out = head(_pooled(f) if task.kind == "class" else f)
            loss = _loss(task, out, targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    enc = enc.eval().requires_grad_(False)
    return (enc, head.eval().requires_grad_(False)) if with_head else enc


# ----------------------------------------------------------------------------------- transfer


@torch.no_grad()
def _features(enc: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([enc(x[s:s + 256]) for s in range(0, len(x), 256)])  # [M, C, 8, 8]


DENSE_READOUTS = ("conv", "ridge")
REDUCTIONS = ("mean", "none")  # a readout's held-out loss: the mean, or each example's (as torch's losses)


def _readout(task: Task, f_train: torch.Tensor, t_train: torch.Tensor, f_test: torch.Tensor,
             t_test: torch.Tensor, steps: int, seed: int, dense: str = "conv",
             reduction: str = "mean") -> float | torch.Tensor:
    """Fit a small readout on frozen features; return the target's held-out loss (reduction "none":
    each held-out example's, [M], which Taskonomy's AHP normalisation compares source by source).

    class: logistic regression on pooled features (avg + max per channel, standardised), Adam;
    dense "conv" (Taskonomy's transfer is a small trained conv net): a 3x3 conv to 16 channels,
    ReLU, and a 1x1 conv to each position's 4x4 pixel block, Adam; dense "ridge": a shared linear
    map from each position's C features to its 4x4 pixel block, in closed form.
    """
    torch.manual_seed(seed)
    if task.kind == "dense":
        if dense == "ridge":
            return _ridge_readout(f_train, t_train, f_test, t_test, reduction=reduction)
        return conv_readout(f_train, t_train, f_test, t_test, steps=200, seed=seed, reduction=reduction)
    a, b = _standardised(_pooled(f_train), _pooled(f_test), dims=(0,))  # [M, 2C]
    head = nn.Linear(a.shape[1], task.classes)
    opt = torch.optim.Adam(head.parameters(), lr=0.05, weight_decay=1e-4)
    with torch.enable_grad():
        for _ in range(steps):
            loss = F.cross_entropy(head(a), t_train)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        return _reduced(F.cross_entropy(head(b), t_test, reduction="none"), reduction)


def _reduced(per_example: torch.Tensor, reduction: str) -> float | torch.Tensor:
    """Held-out losses [M] -> their mean (reduction "mean") or themselves ("none"; checked by the callers,
    before they train)."""
    return float(per_example.mean()) if reduction == "mean" else per_example


def _standardised(train: torch.Tensor, test: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sets standardised per channel with the training statistics. A channel (nearly) constant on
    the training examples, e.g. a ReLU dead there, keeps scale 1: dividing by its ~0 spread blew its
    test values up to ~1e6 and the readout's loss up to 40-230 (seen in 4 of 6 zoos)."""
    mu = train.mean(dims, keepdim=True)
    sd = train.std(dims, keepdim=True)
    sd = torch.where(sd > 1e-3 * sd.max(), sd, torch.ones_like(sd))
    return (train - mu) / sd, (test - mu) / sd


def conv_readout(f_train: torch.Tensor, t_train: torch.Tensor, f_test: torch.Tensor, t_test: torch.Tensor,
                 steps: int, seed: int, batch: int = 64, reduction: str = "mean") -> float | torch.Tensor:
    """Held-out MSE of a small conv decoder trained on frozen features [M, C, h, w] -> maps [M, 1, H, W]
    (reduction "none": each held-out map's, [M'])."""
    check_choice("reduction", reduction, REDUCTIONS)
    torch.manual_seed(seed)
    a, b = _standardised(f_train, f_test, dims=(0, 2, 3))  # [M, C, h, w]
    r = t_train.shape[-1] // a.shape[-1]  # pixels per feature position along each side
    head = nn.Sequential(nn.Conv2d(a.shape[1], 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, r * r, 1), nn.PixelShuffle(r))  # [M, C, h, w] -> [M, 1, h*r, w*r]
    opt = torch.optim.Adam(head.parameters(), lr=5e-3)
    gen = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        for _ in range(steps):
            idx = torch.randint(0, len(a), (batch,), generator=gen)
            loss = F.mse_loss(head(a[idx]), t_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        return _reduced((head(b) - t_test).square().flatten(1).mean(1), reduction)


def _blocks(f: torch.Tensor) -> torch.Tensor:
    """[M, C, h, w] -> one row per position with a bias column: [M*h*w, C+1] float64."""
    rows = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).double()
    return torch.cat([rows, rows.new_ones(rows.shape[0], 1)], dim=1)


def _ridge_readout(f_train: torch.Tensor, t_train: torch.Tensor, f_test: torch.Tensor,
                   t_test: torch.Tensor, ridge: float = 1e-3, reduction: str = "mean") -> float | torch.Tensor:
    h, w = f_train.shape[2:]
    r = t_train.shape[-1] // w  # pixels per feature position along each side
    # target blocks: [M, 1, h*r, w*r] -> [M*h*w, r*r], the inverse of PixelShuffle(r)
    y = F.pixel_unshuffle(t_train, r).permute(0, 2, 3, 1).reshape(-1, r * r).double()
    x = _blocks(f_train)  # [M*h*w, C+1]
    gram = x.T @ x
    reg = ridge * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=gram.dtype)
    weights = torch.linalg.solve(gram + reg, x.T @ y)  # [C+1, r*r]
    pred = _blocks(f_test) @ weights  # [M'*h*w, r*r]
    y_test = F.pixel_unshuffle(t_test, r).permute(0, 2, 3, 1).reshape(-1, r * r).double()
    per_map = (pred - y_test).square().reshape(len(t_test), -1).mean(1)  # rows are (map, position)
    return _reduced(per_map, reduction)


def transfer_losses(encoders: dict[str, nn.Module], tasks: list[str], x_train: torch.Tensor,
                    y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, *,
                    steps: int = 300, seed: int = 0, dense: str = "conv", reduction: str = "mean") -> np.ndarray:
    """L[a, b]: held-out loss of target task tasks[b] read out from frozen encoder a (any names);
    `dense` picks the dense tasks' readout (one of DENSE_READOUTS); reduction "none": L[a, b, m], each
    held-out example's loss."""
    check_choice("dense readout", dense, DENSE_READOUTS)
    check_choice("reduction", reduction, REDUCTIONS)
    names = list(encoders)
    out = np.zeros((len(names), len(tasks)) + ((len(x_test),) if reduction == "none" else ()))
    data = {t: (task_data(t, x_train, y_train, 10_000 + seed), task_data(t, x_test, y_test, 20_000 + seed))
            for t in tasks}
    for i, name in enumerate(names):
        cache: dict[int, torch.Tensor] = {}  # several tasks share clean inputs: features once
        for j, t in enumerate(tasks):
            (xi, ti), (xo, to) = data[t]
            for inp in (xi, xo):
                if id(inp) not in cache:
                    cache[id(inp)] = _features(encoders[name], inp)
            loss = _readout(TASKS[t][0], cache[id(xi)], ti, cache[id(xo)], to, steps, seed, dense, reduction)
            out[i, j] = loss.numpy() if reduction == "none" else loss
    return out


def normalise_affinity(loss: np.ndarray, random_loss: np.ndarray) -> np.ndarray:
    """Per target task b: (L[rand, b] - L[a, b]) / (L[rand, b] - L[b, b]); 1 on the diagonal.

    `loss` is square (sources = targets, same order), `random_loss` [T] the untrained encoder's.
    Monotone per target, so per-task Spearman scores do not depend on it; it makes columns
    comparable (0 = no better than random features, 1 = as good as the task's own encoder).
    """
    loss = np.asarray(loss, dtype=float)
    random_loss = np.asarray(random_loss, dtype=float)
    if loss.ndim != 2 or loss.shape[0] != loss.shape[1] or random_loss.shape != (loss.shape[1],):
        raise UserError(f"Expected a square loss matrix and one random-encoder loss per task; got "
                        f"{loss.shape} and {random_loss.shape}.")
    own = np.diag(loss)
    span = random_loss - own
    span = np.where(np.abs(span) > 1e-12, span, np.nan)  # own encoder no better than random
    return (random_loss[None, :] - loss) / span[None, :]


def ahp_priorities(wins: np.ndarray) -> np.ndarray:
    """Taskonomy's ordinal normalisation (Zamir et al. 2018, sec. 3.3): wins[i, j] = the share of held-out
    examples on which source i beats source j. Clipped to [0.001, 0.999], W' = W / W^T (how many times i
    is better than j); the priorities are W''s principal eigenvector, summing to 1. For a consistent
    tournament, wins[i, j] = p_i / (p_i + p_j), they are p / sum(p)."""
    w = np.clip(np.asarray(wins, dtype=float), 0.001, 0.999)
    vals, vecs = np.linalg.eig(w / w.T)
    v = np.abs(vecs[:, np.argmax(vals.real)].real)  # Perron vector: one sign, fixed here
    return v / v.sum()


def ahp_affinity(per_example_loss: np.ndarray) -> np.ndarray:
    """Affinity as Taskonomy normalises it: per target task b, the other task encoders a != b play a
    tournament on b's held-out examples (the lower loss wins, a tie is half a win each), and their
    `ahp_priorities` are affinity[a, b]. `per_example_loss` [T, T, M] (sources = targets, same order);
    the diagonal is 1, the target's own encoder plays no game. Where the mean loss lets a few badly
    read examples decide a source's rank, this counts the examples it wins."""
    loss = np.asarray(per_example_loss, dtype=float)
    if loss.ndim != 3 or loss.shape[0] != loss.shape[1]:
        raise UserError(f"Expected per-example losses [tasks, tasks, examples]; got {loss.shape}.")
    n = loss.shape[0]
    out = np.ones((n, n))
    for b in range(n):
        src = [a for a in range(n) if a != b]
        games = loss[src, b]  # [n - 1, M]
        wins = (games[:, None] < games[None, :]).mean(2) + 0.5 * (games[:, None] == games[None, :]).mean(2)
        out[src, b] = ahp_priorities(wins)
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation with average ranks for ties (NaN if either side is constant)."""
    from scipy.stats import rankdata

    ra, rb = rankdata(np.asarray(a, dtype=float)), rankdata(np.asarray(b, dtype=float))
    if ra.size < 2 or np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def per_task_spearman(dist: np.ndarray, affinity: np.ndarray, tasks: list[str],
                      sources: list[str] | None = None) -> dict[str, float]:
    """For each target task b: Spearman over sources a != b of (dist[a, b], affinity[a, b]); with `sources`,
    over those of them only (NaN where fewer than 3 remain: two ranks correlate at +-1 by construction)."""
    out = {}
    for b, name in enumerate(tasks):
        others = [a for a, t in enumerate(tasks) if a != b and (sources is None or t in sources)]
        out[name] = spearman(dist[others, b], affinity[others, b]) if sources is None or len(others) >= 3 \
            else float("nan")
    return out


# ----------------------------------------------------------------------------------- baselines


def linear_cka(fa: torch.Tensor, fb: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) of two feature sets [N, ...] on the same inputs."""
    a = fa.flatten(1).double()
    b = fb.flatten(1).double()
    a, b = a - a.mean(0), b - b.mean(0)
    cross = (a.T @ b).square().sum()
    norm = (a.T @ a).square().sum().sqrt() * (b.T @ b).square().sum().sqrt()
    return float(cross / norm) if norm > 0 else 0.0


def cka_distance_matrix(features: list[torch.Tensor]) -> np.ndarray:
    m = len(features)
    out = np.zeros((m, m))
    for i in range(m):
        for j in range(i + 1, m):
            out[i, j] = out[j, i] = 1.0 - linear_cka(features[i], features[j])
    return out


def channel_cka_distance_matrix(fields: list[torch.Tensor]) -> np.ndarray:
    """Per-channel fields [N, K, C, D] compared whatever the order and sign of each encoder's channels.

    At every (anchor, step) point the C channels' field vectors X [C, D] of two encoders are compared by
    linear CKA without centring, ||Xa Xb^T||^2 / (||Xa Xa^T|| ||Xb Xb^T||): 1 when both span the same
    directions with the same energies. Distance: 1 - its mean over the points. Independent encoders of
    one architecture number their channels arbitrarily, so channel c of one is not channel c of another;
    the summed field avoids that by keeping one direction per point, this keeps all of them.
    """
    rows = [f.flatten(0, 1).double() for f in fields]  # [M, C, D] each, M = N * K points
    norms = [torch.linalg.matrix_norm(x @ x.transpose(1, 2)) for x in rows]  # [M]
    m = len(rows)
    out = np.zeros((m, m))
    for i in range(m):
        for j in range(i + 1, m):
            cross = torch.linalg.matrix_norm(rows[i] @ rows[j].transpose(1, 2)).square()  # [M]
            cka = cross / (norms[i] * norms[j]).clamp_min(1e-300)
            out[i, j] = out[j, i] = 1.0 - float(cka.mean())
    return out


def _regression_distance_matrix(rows: list[torch.Tensor], ridge: float,
                                targets: list[torch.Tensor] | None = None) -> np.ndarray:
    """d[a, b] = 1 - the share of b's rows [Cb, P] that a ridge regression on a's rows [Ca, P] explains.

    Each row is scaled to unit norm, so every row of b counts alike; the weights (one per pair of rows)
    are shared over all P columns; ridge `ridge` times a's mean row energy. The diagonal is 0.
    `targets`: b's rows taken from this list instead (same length and columns; e.g. only the part of
    each model a readout reads), the sources still from `rows`.
    """
    def unit(side: list[torch.Tensor]) -> list[torch.Tensor]:  # dead rows stay 0
        return [r / r.norm(dim=1, keepdim=True).clamp_min(1e-300) for r in (r.double() for r in side)]

    rows = unit(rows)
    wanted = rows if targets is None else unit(targets)
    m = len(rows)
    out = np.zeros((m, m))
    for a, xa in enumerate(rows):
        gram = xa @ xa.T  # [Ca, Ca]
        lam = ridge * float(torch.trace(gram)) / len(gram)
        if lam <= 0:  # no signal at all: it explains nothing
            out[a] = 1.0
            out[a, a] = 0.0
            continue
        inv = torch.linalg.inv(gram + lam * torch.eye(len(gram), dtype=gram.dtype))
        for b, xb in enumerate(wanted):
            if a == b:
                continue
            total = float(xb.square().sum())
            if total == 0:  # b has no field: nothing of it is explained
                out[a, b] = 1.0
                continue
            cross = xa @ xb.T  # [Ca, Cb]
            out[a, b] = 1.0 - float(torch.einsum("ij,ik,kj->", cross, inv, cross)) / total
    return out


def channel_regression_distance_matrix(fields: list[torch.Tensor], ridge: float = 0.1) -> np.ndarray:
    """Per-channel fields [N, K, C, D]: d[a, b] = 1 - the share of b's channel fields a linear map of a's explains.

    Each channel's field, flattened over every (anchor, step, input dim), is scaled to unit norm, so
    every channel of b counts alike. b's channels are regressed on a's with one weight per pair of
    channels shared over all points, as a transfer readout shares its weights over all inputs; ridge
    `ridge` times a's mean channel energy keeps near-duplicate channels from fitting noise. Asymmetric,
    as transfer is: a source whose channels span a target's explains it, not necessarily back. The
    order, sign and scale of either encoder's channels change nothing; the diagonal is 0.
    """
    return _regression_distance_matrix([f.permute(2, 0, 1, 3).flatten(1) for f in fields], ridge)


def feature_regression_distance_matrix(features: list[torch.Tensor], ridge: float = 0.01) -> np.ndarray:
    """Features [M, F] on the same M inputs: d[a, b] = 1 - the share of b's (centred) features that a
    linear map of a's explains; a representation baseline, the regression above on features instead of
    fields. Asymmetric; the diagonal is 0."""
    return _regression_distance_matrix([(f - f.mean(0)).T for f in features], ridge)


def field_rank(fields: torch.Tensor) -> float:
    """Per-channel fields [N, K, C, D] -> the effective number of independent channel fields: the participation
    ratio (sum l)^2 / sum l^2 of the eigenvalues l of the C x C Gram matrix of the channels' fields, each
    flattened over every (anchor, step, input dim) and scaled to unit norm (a dead channel adds nothing).

    C for C orthogonal fields, 1 when every channel follows one field. A property of the source alone, blind
    to the target: the bench found (docs/BENCHMARKS.md) that it orders dense encoders by how well they serve
    as sources for dense tasks, which the distance to each target does not.
    """
    x = fields.permute(2, 0, 1, 3).flatten(1).double()  # [C, N*K*D]
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-300)
    ev = torch.linalg.eigvalsh(x @ x.T).clamp_min(0)
    return float(ev.sum().square() / ev.square().sum()) if ev.sum() > 0 else 0.0


# ----------------------------------------------------------------------------------- the bench

# per-channel-regression: every channel's own field (channel-scaled), the target's regressed on the source's
# (`channel_regression_distance_matrix`; chosen on zoos 0-5, checked on fresh zoos 40-47); per-channel:
# the same fields compared by `channel_cka_distance_matrix` (checked on fresh zoos 12-17);
# channel-scaled: their sum, cosine per point; feature-max: the unscaled sum.
FIELD_TARGETS = ("per-channel-regression", "per-channel", "channel-scaled", "feature-max")
_PER_CHANNEL_COMPARE: dict[str, Callable[[list[torch.Tensor]], np.ndarray]] = {
    "per-channel-regression": channel_regression_distance_matrix, "per-channel": channel_cka_distance_matrix}
CURVES = ("all", "early")  # the whole curve, or the quadrature points with alpha < 0.5
# where fields are compared: "subspace" = projected orthogonally on the 64-dim subspace the upsampled
# digits live in (anchors.digits_basis); "pixels" = all 3x32x32 input dimensions. The readouts only
# ever see digits, and off the subspace an encoder's gradient was never constrained by training: it
# differs from seed to seed and drowned the task signal (same task, other zoo: 0.84 vs other tasks
# 0.88 in pixels; 0.20-0.58 vs 0.52-0.62 on the 8x8 grid).
SPACES = ("subspace", "pixels")


class ChannelScaled(nn.Module):
    """The encoder with each output channel divided by its mean spatial max on the anchors.

    The `feature-max` target sums the channels' maxima, so a few large channels dominate the field;
    scaled, every channel weighs alike (measured: +0.1 mean Spearman on seeds it was not chosen on).
    """

    def __init__(self, encoder: nn.Module, images: torch.Tensor) -> None:
        super().__init__()
        self.encoder = encoder
        scale = _features(encoder, images).amax((2, 3)).mean(0) + 1e-6  # [C]
        self.register_buffer("scale", scale.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x) / self.scale  # [B, C, 8, 8]


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of `modelgif bench relatedness`. quick: one seed, short training, few anchors."""

    tasks: tuple[str, ...] = tuple(TASKS)
    seeds: int = 3  # independent task zoos; scores are averaged over them
    epochs: int = 10  # encoder training epochs on the 1297-digit pool
    width: int = 32  # encoder channels
    resolution: int = 32  # encoder input: the upsampled 32x32 pixels (8: the native 8x8 digits)
    noise: float = 0.0  # sigma of Gaussian noise on every training input (a lever, docs/BENCHMARKS.md)
    transfer_train: int = 1000  # labelled pool examples per transfer readout (400 was noisier)
    readout_steps: int = 300  # Adam steps of the logistic readouts
    dense_readout: str = "conv"  # dense targets' readout, one of DENSE_READOUTS (ridge: also reported)
    field_target: str = "per-channel-regression"  # one of FIELD_TARGETS (every target x curve x space is reported)
    curve: str = "all"  # which part of the curve the distance uses, one of CURVES
    space: str = "subspace"  # where the fields are compared, one of SPACES
    centre: bool = True  # score every method's distances hubness-centred (see `hubness_centred`)
    anchors: str = "cutmix:digits:500:128:0"  # the paper's CutMix anchors, from held-out digits
    steps: int = 10  # K quadrature points (the variants were chosen at 128 anchors, K = 10; the earlier
    # 256 anchors and K = 25 cost 5x the field time, which three field targets could not afford here)

    def __post_init__(self) -> None:
        check_choice("dense readout", self.dense_readout, DENSE_READOUTS)
        check_choice("field target", self.field_target, FIELD_TARGETS)
        check_choice("curve part", self.curve, CURVES)
        check_choice("field space", self.space, SPACES)
        if self.field_target in _PER_CHANNEL_COMPARE and self.space != "subspace":
            raise UserError("Per-channel fields are compared on the digits' subspace only (in pixels they take "
                            "32x the memory); use space 'subspace' or another field target.")

    @property
    def variant(self) -> str:
        return f"{self.field_target}|{self.curve}|{self.space}"


QUICK = BenchConfig(seeds=1, epochs=5, anchors="cutmix:digits:500:64:0", steps=10)

# method -> key of its distance matrix in a seed's result; the first is the bench's own ModelGiF,
# then every field target x curve part x space (per-channel fields on the subspace only), the earlier
# defaults (per-channel|all|subspace, channel-scaled|all|subspace, channel-scaled|early|pixels,
# feature-max|all|pixels) among them.
VARIANTS = tuple(f"{t}|{c}|{s}" for t in FIELD_TARGETS for c in CURVES for s in SPACES
                 if t not in _PER_CHANNEL_COMPARE or s == "subspace")
METHODS = {"modelgif": "distance", "field_distance": "distance", "ig_attribution": "distance_ig",
           "linear_cka": "distance_cka",
           "feature_regression": "distance_feature_regression",
           **{f"modelgif[{v}]": f"distance[{v}]" for v in VARIANTS}}


# Methods whose ranking orders each target's dense sources by field rank (chosen on zoos 0-5 and the 22
# cached zoos, checked on fresh zoos 60-67) -> the key of a zoo's field ranks for it; the IG attribution takes the
# ranks of the curve's last point, so that it is compared as ModelGiF is. "field_distance" is ModelGiF's distance
# alone, every source ranked by it.
FIELD_RANKED = {"modelgif": "field_rank", "ig_attribution": "field_rank_ig"}


def hubness_centred(dist: np.ndarray) -> np.ndarray:
    """d(a, b) - o_a - o_b, o_a = a's mean distance to the others (the diagonal excluded).

    Per target b, sources are ranked by d(a, b); an encoder whose field is far from every other one
    (or near all, a hub) would otherwise rank the same for every target. Subtracting its mean distance
    ranks sources by how much closer they are to b than to the rest, as CSLS does for nearest
    neighbours in cross-lingual retrieval. Chosen on zoos 0-5, checked on fresh zoos 6-11
    (docs/BENCHMARKS.md); it helps the baselines as much, so the bench scores every method with it.
    Fewer than 3 encoders: returned unchanged (a mean over one other is the distance itself).
    """
    dist = np.asarray(dist, dtype=float)
    n = len(dist)
    if n < 3:
        return dist
    off = (dist.sum(1) - np.diag(dist)) / (n - 1)  # [n]
    out = dist - off[:, None] - off[None, :]
    np.fill_diagonal(out, 0.0)
    return out


def grouped_order(dist: np.ndarray, within: np.ndarray, groups: list[str]) -> np.ndarray:
    """Per target b: the other encoders' groups (`groups`, one label per encoder) ordered by their mean of
    dist[., b], nearest first, and within a group the encoders by within[., b], lowest first. Ranked like a
    distance, but not one: block i of a target's groups lies in (i, i + 1]; the diagonal is 0."""
    from scipy.stats import rankdata

    dist, within = np.asarray(dist, dtype=float), np.asarray(within, dtype=float)
    n = len(dist)
    out = np.zeros((n, n))
    for b in range(n):
        blocks = [[a for a in range(n) if a != b and groups[a] == g] for g in sorted(set(groups))]
        blocks = sorted((s for s in blocks if s), key=lambda same: dist[same, b].mean())
        for i, same in enumerate(blocks):
            out[same, b] = i + rankdata(within[same, b]) / len(same)
    return out


def dense_sources_by_field_rank(dist: np.ndarray, field_ranks: np.ndarray, kinds: list[str]) -> np.ndarray:
    """ModelGiF's order of each target's sources (docs/BENCHMARKS.md), ranked like a distance.

    `dist` [source, target] (hubness-centred in the bench) decides, per target, which kind of source comes
    first (the kind whose sources it places nearer on average: its split between kinds, kept whole) and the
    order of the classification sources; the dense sources are ordered by `field_ranks`, highest first,
    whatever the target. `kinds`: each encoder's task kind ("class" or "dense"). See `grouped_order`.
    """
    dist = np.asarray(dist, dtype=float)
    dense = np.array(kinds) == "dense"
    minus_rank = -np.asarray(field_ranks, dtype=float)[:, None]  # the same for every target
    return grouped_order(dist, np.where(dense[:, None], minus_rank, dist), kinds)


def _zoo_field_ranks(zoos: list[dict[str, Any]], method: str) -> np.ndarray | None:
    """Each zoo's field ranks [Z, T] for a FIELD_RANKED method; None for another method, or for zoos that hold
    none (their distances are then ranked alone)."""
    key = FIELD_RANKED.get(method)
    if key is None or not all(key in z for z in zoos):
        return None
    return np.array([z[key] for z in zoos], dtype=float)


def _ranking(dist: np.ndarray, field_ranks: np.ndarray | None, tasks: list[str], centre: bool) -> np.ndarray:
    """What a method's sources are ranked by, per target: its distances, hubness-centred when `centre`, and with
    field ranks (FIELD_RANKED methods) the dense sources then ordered by them."""
    dist = hubness_centred(dist) if centre else np.asarray(dist, dtype=float)
    if field_ranks is None:
        return dist
    return dense_sources_by_field_rank(dist, field_ranks, [TASKS[t][0].kind for t in tasks])


def method_ranking(zoos: list[dict[str, Any]], method: str, tasks: list[str], centre: bool = True,
                   key: str | None = None) -> np.ndarray:
    """The ranking `method` is scored by, from one zoo's result or several averaged (distances and field ranks
    alike); `key`: the zoos' distance matrix to use (default: the method's in METHODS)."""
    dist = np.mean([np.asarray(z[key or METHODS[method]], dtype=float) for z in zoos], axis=0)
    ranks = _zoo_field_ranks(zoos, method)
    return _ranking(dist, None if ranks is None else ranks.mean(0), tasks, centre)


def _field_model(encoder: nn.Module, target: str, images: torch.Tensor) -> nn.Module:
    return ChannelScaled(encoder, images) if target in (*_PER_CHANNEL_COMPARE, "channel-scaled") else encoder


def train_zoo(cfg: BenchConfig, seed: int, x: torch.Tensor, y: torch.Tensor) -> dict[str, nn.Module]:
    """Task zoo `seed`: one encoder per task (training seed 1000 * seed + the task's index), then the
    untrained encoder every affinity is normalised against, under the name "_random"."""
    encoders: dict[str, nn.Module] = {
        t: train_encoder(t, x, y, epochs=cfg.epochs, seed=1000 * seed + i, width=cfg.width,
                         resolution=cfg.resolution, noise=cfg.noise)
        for i, t in enumerate(cfg.tasks)}
    encoders["_random"] = random_encoder(cfg, seed)
    return encoders


def random_encoder(cfg: BenchConfig, seed: int) -> Encoder:
    """Task zoo `seed`'s untrained encoder (seeded), the floor every affinity is normalised against."""
    torch.manual_seed(99_000 + seed)
    return Encoder(cfg.width, cfg.resolution).eval().requires_grad_(False)


def zoo_transfer_losses(cfg: BenchConfig, seed: int, zoo: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor,
                        x_test: torch.Tensor, y_test: torch.Tensor, tasks: list[str] | None = None,
                        dense: str | None = None, reduction: str = "mean",
                        readout_seed: int | None = None) -> np.ndarray:
    """L[a, b] for every encoder a of `zoo` (the random one last) and target task b, each read out on the
    zoo's own seeded draw of `cfg.transfer_train` pool examples (reduction "none": L[a, b, m]).
    readout_seed: the same draw, read out again with other readout seeds (default: the zoo's seed)."""
    sub = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[: cfg.transfer_train]
    return transfer_losses(zoo, list(tasks or cfg.tasks), x[sub], y[sub], x_test, y_test,
                           steps=cfg.readout_steps, seed=seed if readout_seed is None else readout_seed,
                           dense=dense or cfg.dense_readout, reduction=reduction)


def _run_seed(cfg: BenchConfig, seed: int, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor,
              y_test: torch.Tensor, anchors: Any, stage_done: Callable[[], None] = lambda: None) -> dict[str, Any]:
    tasks = list(cfg.tasks)
    t0 = time.perf_counter()
    sources = train_zoo(cfg, seed, x, y)  # the task encoders, then "_random"
    encoders = {t: sources[t] for t in tasks}
    t1 = time.perf_counter()
    stage_done()
    per_example = zoo_transfer_losses(cfg, seed, sources, x, y, x_test, y_test, reduction="none")
    loss = per_example.mean(2)
    affinity = normalise_affinity(loss[:-1], loss[-1])
    affinity_ahp = ahp_affinity(per_example[:-1])  # Taskonomy's own normalisation, also reported
    # The other dense readout too, to show how much the ground truth depends on it (ridge is cheap).
    other = "ridge" if cfg.dense_readout == "conv" else "conv"
    dense = [j for j, t in enumerate(tasks) if TASKS[t][0].kind == "dense"]
    loss_other = loss.copy()
    if dense:
        loss_other[:, dense] = zoo_transfer_losses(cfg, seed, sources, x, y, x_test, y_test,
                                                   tasks=[tasks[j] for j in dense], dense=other)
    affinity_other = normalise_affinity(loss_other[:-1], loss_other[-1])
    t2 = time.perf_counter()
    stage_done()
    field_cfg = FieldConfig(steps=cfg.steps, target="feature-max")
    alphas, _ = quadrature(field_cfg.method, cfg.steps)
    curves = {"all": list(range(cfg.steps)), "early": [k for k, a in enumerate(alphas) if a < 0.5] or [0]}
    basis = digits_basis()  # [3072, 64]; run_bench checked that the anchors are 3x32x32
    spaces = {"subspace": lambda phi: phi @ basis, "pixels": lambda phi: phi}  # [N, K, 64] / [N, K, 3072]
    dists = {}
    channel_fields: list[torch.Tensor] = []  # extracted once, compared both ways
    for target in FIELD_TARGETS:
        per_channel = target in _PER_CHANNEL_COMPARE
        if per_channel and not channel_fields:  # [N, K, C, 64], projected at once: in pixels 32 channels
            # take 0.5 GB an encoder
            channel_fields = [extract_field(_field_model(encoders[t], target, anchors.images), anchors, field_cfg,
                                            per_channel=True) @ basis for t in tasks]
        fields = channel_fields if per_channel else [
            extract_field(_field_model(encoders[t], target, anchors.images), anchors, field_cfg) for t in tasks]
        compare = _PER_CHANNEL_COMPARE.get(target, distance_matrix)
        views = {"subspace": lambda phi: phi} if per_channel else spaces  # per-channel: projected already
        for space, project in views.items():
            seen = [project(f) for f in fields]
            for curve, ks in curves.items():
                dists[f"distance[{target}|{curve}|{space}]"] = compare([f[:, ks] for f in seen])
            if target == cfg.field_target and space == cfg.space:
                dists["distance_ig"] = compare([f[:, -1:] for f in seen])  # the IG attribution alone
    dists["distance"] = dists[f"distance[{cfg.variant}]"]
    # the sources' own field ranks, by which ModelGiF orders each target's dense sources
    ranks = {"field_rank": [field_rank(f) for f in channel_fields],
             "field_rank_ig": [field_rank(f[:, -1:]) for f in channel_fields]}  # the IG attribution's
    dists["distance_cka"] = cka_distance_matrix([_features(encoders[t], anchors.images) for t in tasks])
    # the readouts' own input, compared as the fields are: pooled features of the held-out digits the
    # transfer losses are measured on (no labels); a representation baseline that reads ModelGiF's bound
    dists["distance_feature_regression"] = feature_regression_distance_matrix(
        [_pooled(_features(encoders[t], x_test)).double() for t in tasks])
    t3 = time.perf_counter()
    stage_done()
    out: dict[str, Any] = {
        "seed": seed, "loss": loss[:-1].tolist(), "random_loss": loss[-1].tolist(),
        "affinity": affinity.tolist(), "affinity_other_readout": affinity_other.tolist(),
        "affinity_ahp": affinity_ahp.tolist(),
        **{k: v.tolist() for k, v in dists.items()}, **ranks,
        "seconds": {"train": round(t1 - t0, 1), "transfer": round(t2 - t1, 1),
                    "fields": round(t3 - t2, 1)},
    }
    for method in METHODS:
        ranking = method_ranking([out], method, tasks, cfg.centre)
        out[f"spearman_{method}"] = per_task_spearman(ranking, affinity, tasks)
        out[f"spearman_{method}_other_readout"] = per_task_spearman(ranking, affinity_other, tasks)
        out[f"spearman_{method}_ahp"] = per_task_spearman(ranking, affinity_ahp, tasks)
        out[f"spearman_{method}_uncentred"] = per_task_spearman(method_ranking([out], method, tasks, False),
                                                                 affinity, tasks)
    out["spearman"] = out["spearman_modelgif"]
    return out


# which of each zoo's ground truths is averaged where scores pool zoos: Taskonomy's AHP affinities
ZOOS_TRUTH = "affinity_ahp"
# The shape of a stored result (`last_relatedness_result`); bumped when its keys change, so the app never
# reads a result of another shape.
RESULT_SCHEMA = 1


def zoos_affinity(zoos: list[dict[str, Any]], truth: str = ZOOS_TRUTH) -> np.ndarray:
    """Several zoos' transfer affinities as one ground truth, for the scores that pool zoos (pooled, the task level,
    the other zoos' reference): the mean over the zoos of each zoo's `truth` matrix, Taskonomy's AHP affinities.

    AHP's priorities sum to 1 per target, whatever the scale of the losses. The normalised affinities divide by the
    gap between the target's own encoder and the untrained one; where that gap is small they reach the hundreds,
    and one zoo then decided the mean (zoo 86: up to 339; the ground truth's halves agreed at -0.736).
    Chosen on the ground truth's own half-against-half agreement on fresh zoos 90-109, before any method was scored
    there: the mean of AHP -0.860, of the normalised affinities -0.838, of their per-target ranks -0.825, their
    median -0.816 (docs/BENCHMARKS.md). A zoo's own scores stay against its normalised affinities.
    """
    return np.nanmean([np.asarray(z[truth], dtype=float) for z in zoos], axis=0)


def zoos_truth_name(result: dict[str, Any]) -> str:
    """What a run's pooled scores read against, in words (the zoos' mean AHP affinity by default)."""
    return {"affinity_ahp": "AHP affinity", "affinity": "affinity"}[result["zoos_truth"]]


def pooled_spearman(seeds: list[dict[str, Any]], tasks: list[str], centre: bool = True,
                    truth: str = ZOOS_TRUTH) -> dict[str, Any]:
    """Scores on the seed-averaged distance matrices (and field ranks; less noise than one zoo) against the
    zoos' averaged ground truth (`zoos_affinity`)."""
    aff = zoos_affinity(seeds, truth)
    out = {}
    for method in METHODS:
        per_task = per_task_spearman(method_ranking(seeds, method, tasks, centre), aff, tasks)
        out[method] = {"spearman_mean": float(np.nanmean(list(per_task.values()))),
                       "spearman_per_task": per_task}
    return out


def other_zoos_reference(seeds: list[dict[str, Any]], tasks: list[str],
                         truth: str = ZOOS_TRUTH) -> dict[str, Any] | None:
    """How well the other zoos' averaged ground truth (`zoos_affinity`) predicts each zoo's own affinity (None
    with one zoo).

    The encoders of one zoo transfer idiosyncratically (measured: a second zoo's affinities predict
    a zoo's at about -0.62, repeated readouts of the same encoders at about -0.90), so this is the
    score of a perfect *task-level* predictor, a reference for the field distance's per-seed score.
    """
    if len(seeds) < 2:
        return None
    return _summary([per_task_spearman(_other_zoos_distance(seeds, i, truth), np.asarray(s["affinity"]), tasks)
                     for i, s in enumerate(seeds)])


def _other_zoos_distance(seeds: list[dict[str, Any]], i: int, truth: str) -> np.ndarray:
    """Zoo i's reference "distance": minus the other zoos' averaged ground truth (high affinity = near)."""
    return -zoos_affinity([o for j, o in enumerate(seeds) if j != i], truth)


def _nanmean(values: Any) -> float:
    values = np.asarray(list(values), dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def within_kind_spearman(seeds: list[dict[str, Any]], tasks: list[str], centre: bool = True,
                         truth: str = ZOOS_TRUTH) -> dict[str, Any]:
    """Per kind of task ("class", "dense"): each method's score when every target ranks only its sources of
    that kind, the mean over targets and zoos; with 2 or more zoos also the other zoos' reference.

    The two kinds transfer very differently (a classification encoder reads out a dense target poorly),
    so part of every score is that split alone; within a kind it is how a method orders similar encoders
    (docs/BENCHMARKS.md: there the field distance is weak).
    """
    pairs = {m: [(method_ranking([s], m, tasks, centre), np.asarray(s["affinity"])) for s in seeds]  # once, every kind
             for m in METHODS}
    if len(seeds) >= 2:
        pairs["other_zoos"] = [(_other_zoos_distance(seeds, i, truth), np.asarray(s["affinity"]))
                               for i, s in enumerate(seeds)]
    out: dict[str, Any] = {}
    for kind in sorted({TASKS[t][0].kind for t in tasks}):
        sources = [t for t in tasks if TASKS[t][0].kind == kind]
        if len(sources) < 3:  # no target has 3 sources of this kind
            continue
        out[kind] = {m: _nanmean(_nanmean(per_task_spearman(d, a, tasks, sources).values()) for d, a in zoos)
                     for m, zoos in pairs.items()}
    return out


def task_level_spearman(seeds: list[dict[str, Any]], tasks: list[str], splits: int = 200, centre: bool = True,
                        methods: dict[str, str] | None = None, truth: str = ZOOS_TRUTH) -> dict[str, Any] | None:
    """The task level: the zoos split at random into two halves, one half's averaged distances scored
    against the other half's averaged ground truth (`zoos_affinity`; no zoo on both sides), the mean over
    `splits` splits; beside it the ground truth's own agreement, one half's average against the other's.

    A zoo's encoders transfer idiosyncratically, so one zoo's affinities are partly about its encoders;
    averaged over zoos they are about the tasks, as Taskonomy's are. The ground truth's half-vs-half
    score says what that average can certify (docs/BENCHMARKS.md). `methods`: name -> key of a
    zoo's distance matrix (default: the bench's METHODS); a FIELD_RANKED method's field ranks are averaged over
    the half as its distances are. None with fewer than 4 zoos.
    """
    n = len(seeds)
    if n < 4:
        return None
    half = n // 2
    rng = np.random.default_rng(0)
    orders = [rng.permutation(n) for _ in range(splits)]

    def mean_spearman(dist: np.ndarray, affinity: np.ndarray) -> float:
        return float(np.nanmean(list(per_task_spearman(dist, affinity, tasks).values())))

    def half_truth(zoos: np.ndarray) -> np.ndarray:
        return zoos_affinity([seeds[i] for i in zoos], truth)

    scores = {}
    for method, key in (methods or METHODS).items():
        dist = np.array([s[key] for s in seeds], dtype=float)
        ranks = _zoo_field_ranks(seeds, method)
        scores[method] = float(np.mean([mean_spearman(
            _ranking(dist[o[:half]].mean(0), None if ranks is None else ranks[o[:half]].mean(0), tasks, centre),
            half_truth(o[half:])) for o in orders]))
    agreement = float(np.mean([mean_spearman(-half_truth(o[:half]), half_truth(o[half:]))
                               for o in orders]))  # high affinity = near
    return {"halves": [half, n - half], "splits": splits, "methods": scores, "ground_truth": agreement}


def _mean_dict(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}


def _summary(rows: list[dict[str, float]]) -> dict[str, Any]:
    """Per-seed rows of per-task Spearman -> the mean over tasks, per task, and per seed."""
    per_task = _mean_dict(rows)
    return {"spearman_mean": float(np.nanmean(list(per_task.values()))), "spearman_per_task": per_task,
            "spearman_per_seed": [float(np.nanmean(list(r.values()))) for r in rows]}


def _score(seeds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return _summary([s[key] for s in seeds])


# what a zoo's run reports progress after: its encoders trained, their transfers read out, their fields compared
# (each about a third of the time: 22, 33 and 30 s of the quick run on one core)
STAGES = ("train", "transfer", "fields")


def run_bench(quick: bool = False, cfg: BenchConfig | None = None, seeds: int | None = None,
              progress: Callable[[int, int], None] | None = None, root: Any = None) -> dict[str, Any]:
    """Train the task zoo(s), measure transfer affinities and field distances; JSON-able scores.

    progress(done, total) is called after each of every zoo's STAGES; the result is kept in the store at
    `root` ($MODELGIF_HOME by default) for the app's task zoo views."""

    cfg = cfg or (QUICK if quick else BenchConfig())
    cfg = cfg if seeds is None else replace(cfg, seeds=seeds)  # the CLI's --seeds
    unknown = sorted(set(cfg.tasks) - set(TASKS))
    if unknown or len(cfg.tasks) < 3:
        raise UserError(f"Tasks must be at least 3 of {', '.join(TASKS)}; got {list(cfg.tasks)}.")
    start = time.perf_counter()
    with one_torch_thread():  # training floats depend on the thread count, so never on the load
        xs, ys = digits_dataset()
        pool, held = digits_split()
        anchors = load_anchors(cfg.anchors)
        if tuple(anchors.images.shape[1:]) != (3, 32, 32):  # before minutes of training, not after
            raise UserError(f"The relatedness bench compares fields on the 32x32 digits' subspace, so its anchors "
                            f"must be 3x32x32; {anchors.spec!r} gives {tuple(anchors.images.shape[1:])}.")
        total, done = len(STAGES) * cfg.seeds, itertools.count(1)

        def stage_done() -> None:
            if progress is not None:
                progress(next(done), total)

        seeds = [_run_seed(cfg, s, xs[pool], ys[pool], xs[held], ys[held], anchors, stage_done)
                 for s in range(cfg.seeds)]
    tasks = list(cfg.tasks)
    main = _score(seeds, "spearman_modelgif")
    result = {
        **main,
        "baselines": {m: _score(seeds, f"spearman_{m}") for m in METHODS if m != "modelgif"},
        "other_readout": {m: _score(seeds, f"spearman_{m}_other_readout") for m in METHODS},
        "ahp": {m: _score(seeds, f"spearman_{m}_ahp") for m in METHODS},
        "uncentred": {m: _score(seeds, f"spearman_{m}_uncentred") for m in METHODS},
        "field_target": cfg.field_target, "curve": cfg.curve, "space": cfg.space, "centre": cfg.centre,
        "dense_readout": cfg.dense_readout, "tasks": tasks, "seeds": cfg.seeds, "anchors": anchors.spec,
        "n_anchors": len(anchors), "quick": bool(quick), "config": asdict(cfg),
        "affinity_mean": np.mean([s["affinity"] for s in seeds], axis=0).tolist(),
        "distance_mean": np.mean([s["distance"] for s in seeds], axis=0).tolist(),
        "pooled_over_seeds": pooled_spearman(seeds, tasks, centre=cfg.centre),
        "other_zoos_reference": other_zoos_reference(seeds, tasks),
        "task_level": task_level_spearman(seeds, tasks, centre=cfg.centre),
        "within_kind": within_kind_spearman(seeds, tasks, centre=cfg.centre),
        "dense_sources": "field rank",  # ModelGiF orders each target's dense sources by field rank
        "zoos_truth": ZOOS_TRUTH,  # pooled zoos are scored against their averaged AHP affinities
        "per_seed": seeds, "paper_spearman_mean": -0.835,
        "seconds": round(time.perf_counter() - start, 1),
        "task_kinds": {t: TASKS[t][0].kind for t in tasks},
        "schema": RESULT_SCHEMA,
    }
    _save_last(result, root)
    return result


def _last_path(root: Any = None) -> Any:
    from pathlib import Path

    return Path(root or default_store_root()) / "benchmarks" / "relatedness.json"


def _save_last(result: dict[str, Any], root: Any = None) -> None:
    """Keep the last run in the store, so the app can show the task zoo without retraining it."""
    import json
    import os

    path = _last_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, path)


def last_relatedness_result(root: Any = None) -> dict[str, Any] | None:
    """The last `modelgif bench relatedness` result in the store (tasks, mean distances...), or None (none yet, or
    one stored by a version with another RESULT_SCHEMA: rerun the bench)."""
    import json

    path = _last_path(root)
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("schema") == RESULT_SCHEMA else None


def format_table(result: dict[str, Any]) -> str:
    """Per-task Spearman of ModelGiF and the baselines, then the means (negative = as expected)."""
    scores = {"modelgif": result, **result["baselines"]}
    columns = (("ModelGiF", "modelgif"), ("dist.only", "field_distance"), ("IG only", "ig_attribution"),
               ("lin. CKA", "linear_cka"), ("feat.reg.", "feature_regression"))
    cols = list(columns)
    centred = "hubness-centred" if result["centre"] else "raw"
    lines = [f"Task relatedness (mini-Taskonomy on digits): {len(result['tasks'])} tasks, "
             f"{result['seeds']} seed(s), anchors {result['anchors']} ({result['n_anchors']}), "
             f"K = {result['config']['steps']}",
             f"ModelGiF: field target {result['field_target']}, curve {result['curve']}, compared on "
             f"{result['space']}; every method's distances {centred}; dense readout "
             f"{result['dense_readout']}",
             "ModelGiF ranks each target's dense sources by their field rank (the effective number of independent "
             "channel fields), the rest by field distance; dist.only: by field distance alone; IG only: both on "
             "the curve's last point",
             "Spearman per target task between each method's order of the sources and transfer affinity (paper: "
             "-0.835 mean)", "",
             f"{'task':<12}" + "".join(f" {name:>9}" for name, _ in cols)]
    for t in result["tasks"]:
        lines.append(f"{t:<12}" + "".join(f" {scores[k]['spearman_per_task'][t]:>9.3f}" for _, k in cols))
    lines.append(f"{'mean':<12}" + "".join(f" {scores[k]['spearman_mean']:>9.3f}" for _, k in cols))
    pooled = result["pooled_over_seeds"]
    zoos_truth = zoos_truth_name(result)
    several = result["seeds"] > 1  # one zoo pools nothing (its pooled score would be its AHP one)
    if several:
        lines.append(f"{'pooled':<12}" + "".join(f" {pooled[k]['spearman_mean']:>9.3f}" for _, k in cols)
                     + (f"   (seed-averaged distances against the seeds' mean {zoos_truth})"
                        if zoos_truth != "affinity" else "   (on the seed-averaged matrices)"))
        for i in range(result["seeds"]):
            lines.append(f"{'seed ' + str(i):<12}"
                         + "".join(f" {scores[k]['spearman_per_seed'][i]:>9.3f}" for _, k in cols))
    raw = result["uncentred"]
    if result["centre"]:
        lines.append(f"{'mean, raw':<12}" + "".join(f" {raw[k]['spearman_mean']:>9.3f}" for _, k in cols)
                     + "   (distances not centred)")
    other = "ridge" if result["dense_readout"] == "conv" else "conv"
    o = result["other_readout"]
    lines.append(f"{'mean, ' + other:<12}" + "".join(f" {o[k]['spearman_mean']:>9.3f}" for _, k in cols)
                 + f"   (dense targets' ground truth from the {other} readout)")
    ahp = result["ahp"]
    lines.append(f"{'mean, AHP':<12}" + "".join(f" {ahp[k]['spearman_mean']:>9.3f}" for _, k in cols)
                 + "   (ground truth normalised as Taskonomy's AHP: per-example wins, principal eigenvector)")
    ref = result["other_zoos_reference"]
    if ref is not None:
        lines.append(f"{'other zoos':<12} {ref['spearman_mean']:>9.3f}   (reference: each zoo's affinity predicted "
                     f"by the other zoos' mean {zoos_truth}, a perfect task-level predictor; per seed "
                     + " ".join(f"{v:.3f}" for v in ref["spearman_per_seed"]) + ")")
    kind_names = {"class": "classification", "dense": "dense"}
    for kind, row in result["within_kind"].items():
        ref_text = f"; other zoos {row['other_zoos']:.3f}" if "other_zoos" in row else ""
        lines.append(f"{'within ' + kind:<12}" + "".join(f" {row[k]:>9.3f}" for _, k in cols)
                     + f"   (each target's {kind_names.get(kind, kind)} sources only{ref_text})")
    level = result["task_level"]
    if level is not None:
        lines.append(f"{'task level':<12}" + "".join(f" {level['methods'][k]:>9.3f}" for _, k in cols)
                     + f"   ({level['halves'][0]} zoos' averaged distances against the other {level['halves'][1]}'s "
                     f"mean {zoos_truth}, {level['splits']} random splits; the ground truth itself, half against "
                     f"half: {level['ground_truth']:.3f})")
    few = result["seeds"] <= 4  # more zoos' scores do not fit a row: the rows above list them
    lines += ["", "field variants (target|curve|space), each ranked by its distance alone",
              f"{'variant':<48} {'mean':>7}" + (f" {'pooled':>7}" if several else "")
              + (f" {'task lvl':>8}" if level else "")
              + (f" {'per seed':>24}" if few else "") + f" {'raw':>7} {other:>7}"]
    for k in (m for m in scores if m.startswith("modelgif[")):
        raw_mean = raw[k]["spearman_mean"]
        lines.append(f"{k:<48} {scores[k]['spearman_mean']:>7.3f}"
                     + (f" {pooled[k]['spearman_mean']:>7.3f}" if several else "")
                     + (f" {level['methods'][k]:>8.3f}" if level else "")
                     + (f" {' '.join(f'{v:.3f}' for v in scores[k]['spearman_per_seed']):>24}" if few else "")
                     + f" {raw_mean:>7.3f} {o[k]['spearman_mean']:>7.3f}")
    lines += ["", f"{result['seconds']:.0f} s"]
    return "\n".join(lines)
