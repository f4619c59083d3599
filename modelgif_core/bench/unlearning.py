"""`modelgif bench unlearning`: the unlearning scenario trained on sklearn's digits over several seeds.

Each seed's original is unlearned three ways (exact: retrained without class k; relabel and ascent:
approximate) and compared with unrelated models, as the paper's third testbed. Its models are
trained with Gaussian input noise (`augment="noise"`). Without it, training leaves the input
gradient unconstrained in every direction that no digit spans. Independent models' fields are then
near-orthogonal (about 1.00), and exact unlearning lies beyond them only by chance: beyond their
mean in 36 of 70 seeds. With the noise, unrelated models lie at 0.81-0.87 and exact is beyond their
mean in 60 of 70 fresh seeds, beyond every one in 44 of 70 (docs/BENCHMARKS.md).

Its headline distances are the plain field distance that `verify_unlearning` uses. Beside them it
reports analysis views of the same fields: projected on the digits' 64-dim subspace, the first and
last fifth of the curve, and the gray-baseline/last-fifth/projected view.
`BenchConfig(inputs=..., baseline=..., augment=...)` selects the levers measured in
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..analysis.unlearning import DEFAULT_ANCHORS, class_anchors, judge_unlearning
from ..engine.anchors import digits_basis, load_anchors, on_digits_grid
from ..engine.device import one_torch_thread
from ..engine.distance import distances_to
from ..engine.errors import UserError
from ..engine.fields import FieldConfig, extract_field
from ..zoo.training import create_net, fit, gradient_ascent, load_data, predict, relabel_class


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of `modelgif bench unlearning`; quick keeps CI under about a minute and a half."""

    seeds: int = 5  # original models, each with its own exact and approximate unlearners
    extra_unrelated: int = 3  # independent models besides the other seeds' originals
    forget_class: int = 9  # the paper forgets the last class
    epochs: int = 15  # the zoo's recipe for a digits classifier
    relabel_epochs: int = 3  # fine-tuning with class k relabelled at random
    ascent_lr: float = 2e-4
    ascent_max_steps: int = 60  # gradient ascent stops earlier once class k is no longer predicted
    steps: int = 50  # K quadrature points (the paper's 50)
    arch: str = "resnet"  # a key of the zoo's ARCHS
    train_subset: int | None = None  # train on the first n images of the pool only (tests)
    # What the models see (levers measured in docs/BENCHMARKS.md): "rgb32" the zoo's networks on the
    # upsampled 32x32 RGB digits; "gray" the same networks behind a conversion to gray (GrayInput),
    # as digit classifiers are; "gray8" behind their own resize to the digits' native 8x8 gray
    # (NativeDigits); "subspace" behind the orthogonal projection onto the digits' 64-dim subspace
    # (DigitsSubspace). With the last two the input gradient lies in 64 dimensions.
    inputs: str = "rgb32"
    baseline: str = "black"  # the field's x0 (fields.make_baseline)
    # Training augmentation: "none"; "crop", the paper's CIFAR recipe (zero-pad 4 px, random 32x32
    # crop); or "noise", Gaussian input noise (sigma 0.2); for every trained model (the
    # gradient-ascent unlearner only takes steps).
    augment: str = "noise"
    first_seed: int = 0  # seeds first_seed .. first_seed + seeds - 1 (fresh groups for checks)

    def __post_init__(self) -> None:
        if self.inputs not in INPUTS:
            raise UserError(f"The unlearning bench's inputs must be one of {', '.join(INPUTS)}; "
                            f"got {self.inputs!r}.")
        if self.augment not in AUGMENTS:
            raise UserError(f"The unlearning bench's augment must be one of {', '.join(AUGMENTS)}; "
                            f"got {self.augment!r}.")


INPUTS = ("rgb32", "gray", "gray8", "subspace")


def random_crop(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Each image [B, C, H, W] zero-padded by `pad` and cropped back at a random offset: a random
    translation of up to `pad` pixels per axis (torchvision's RandomCrop(32, padding=4))."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # [B, C, H + 2 pad, W + 2 pad]; digits' background is 0
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b), generator=g)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])


def gaussian_noise(x: torch.Tensor, g: torch.Generator, sigma: float = 0.2) -> torch.Tensor:
    """x + sigma * N(0, 1) per pixel and channel, not clamped, so that training sees every input
    direction alike (clamping at 0 would make the noise one-sided on the black background)."""
    return x + sigma * torch.randn(x.shape, generator=g)


AUGMENTS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None] = {
    "none": None, "crop": random_crop, "noise": gaussian_noise}
# The analysis chosen on seeds 0-4 and checked on seeds 5-14 (docs/BENCHMARKS.md), reported beside
# the plain distance: gray baseline, last fifth of the curve, field projected on the digits' subspace.
CANDIDATE = "gray_subspace_last_fifth"
CANDIDATE_BASELINE = "gray"
QUICK = BenchConfig(seeds=2, extra_unrelated=2, epochs=3, relabel_epochs=1, steps=20)


class GrayInput(torch.nn.Module):
    """A model that sees its input in gray: the channel mean, repeated over the channels.

    Gray images (every digit) pass unchanged; the input gradient is the same in every channel, so
    the colour directions, which no gray training image constrains, are not part of the field.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.mean(1, keepdim=True).expand(-1, x.shape[1], -1, -1))  # [B, classes]


class NativeDigits(torch.nn.Module):
    """A digits model that sees its input at the data's native 8x8 gray resolution.

    Pixel images [B, 3, 32, 32] -> channel mean -> antialiased resize to 8x8 -> bilinear back to
    32x32 (as the digits were upsampled) -> the wrapped zoo network. The preprocessing is inside
    the gradient (P_f), so every input gradient is the same in the three channels and lies in a
    64-dimensional subspace: components the 8x8 data never constrained do not exist.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gray = x.mean(1, keepdim=True)  # [B, 1, H, W]
        small = F.interpolate(gray, size=(8, 8), mode="bilinear", align_corners=False, antialias=True)  # [B, 1, 8, 8]
        big = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)  # [B, 1, H, W]
        return self.net(big.expand(-1, x.shape[1], -1, -1))  # [B, classes]


class DigitsSubspace(torch.nn.Module):
    """A digits model behind the orthogonal projection onto the digits' 64-dim subspace.

    The training digits lie in that subspace, so they pass unchanged; the gradient of any output
    with respect to the 32x32 RGB input is projected onto it (the projection is inside P_f).
    """

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("basis", digits_basis().clone(), persistent=False)  # [3072, 64]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(len(x), -1)  # [B, 3072]
        return self.net(((flat @ self.basis) @ self.basis.T).reshape(x.shape))  # [B, classes]


def _create_model(cfg: BenchConfig) -> torch.nn.Module:
    net = create_net(cfg.arch)
    wrap = {"gray": GrayInput, "gray8": NativeDigits, "subspace": DigitsSubspace}.get(cfg.inputs)
    return wrap(net) if wrap is not None else net


def _train_variants(cfg: BenchConfig, seed: int, data: Any) -> dict[str, torch.nn.Module]:
    """The original of one seed and its unlearned versions (exact, relabel, ascent)."""
    k = cfg.forget_class
    x, y = _train_data(cfg, data)
    aug = AUGMENTS[cfg.augment]
    retain = y != k
    torch.manual_seed(100 + seed)
    original = _create_model(cfg)
    fit(original, x, y, epochs=cfg.epochs, lr=3e-3, seed=100 + seed, transform=aug)
    # Exact unlearning: retrained from scratch (its own initialisation) without class k.
    torch.manual_seed(200 + seed)
    exact = _create_model(cfg)
    fit(exact, x[retain], y[retain], epochs=cfg.epochs, lr=3e-3, seed=200 + seed, transform=aug)
    # Approximate 1: fine-tune on all the data with every class-k label replaced by another class.
    relabelled = relabel_class(y, k, torch.Generator().manual_seed(300 + seed))
    relabel = copy.deepcopy(original).requires_grad_(True)
    fit(relabel, x, relabelled, epochs=cfg.relabel_epochs, lr=1e-3, seed=300 + seed, transform=aug)
    # Approximate 2: gradient ascent on class k's training images until class k is not predicted.
    ascent = gradient_ascent(copy.deepcopy(original), x[~retain], k, lr=cfg.ascent_lr,
                             max_steps=cfg.ascent_max_steps, seed=400 + seed)
    return {"original": original, "exact": exact, "approx_relabel": relabel, "approx_ascent": ascent}


def _train_data(cfg: BenchConfig, data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    idx = data.pool if cfg.train_subset is None else data.pool[: cfg.train_subset]
    return data.x[idx], data.y[idx]


def _views(steps: int) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Analyses beside the plain field distance (docs/BENCHMARKS.md): the field pooled to the
    digits' 8x8 grid, projected orthogonally onto their 64-dim subspace, and the first and last
    fifth of the curve (near the baseline / near the anchor), plain and projected."""
    fifth = max(1, steps // 5)

    def subspace(phi: torch.Tensor) -> torch.Tensor:
        return phi @ digits_basis()  # [N, K, 64]: coordinates of the orthogonal projection

    return {"native_8x8": on_digits_grid, "subspace": subspace,
            "curve_first_fifth": lambda phi: phi[:, :fifth], "curve_last_fifth": lambda phi: phi[:, -fifth:],
            "subspace_last_fifth": lambda phi: subspace(phi[:, -fifth:])}


def _view_row(variants: list[str], d: np.ndarray) -> dict[str, Any]:
    """One seed's distances in one view: the three variants, then the unrelated models."""
    row: dict[str, Any] = dict(zip(variants, (float(x) for x in d[:3]), strict=True))
    approx = max(row["approx_relabel"], row["approx_ascent"])
    unrel = d[3:]
    return row | {"unrelated_mean": float(np.mean(unrel)), "unrelated_min": float(np.min(unrel)),
                  "unrelated_max": float(np.max(unrel)),
                  "exact_beyond_mean": bool(row["exact"] > np.mean(unrel)),
                  "approx_below_unrelated": bool(approx < np.min(unrel)),
                  "order_holds": bool(approx < np.min(unrel) and np.max(unrel) < row["exact"])}


def _accuracies(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, k: int) -> dict[str, float]:
    pred = predict(net, x).argmax(1)
    forget = y == k
    return {"forget": round(float((pred[forget] == k).float().mean()), 4),
            "retain": round(float((pred[~forget] == y[~forget]).float().mean()), 4)}


def run_bench(quick: bool = False, cfg: BenchConfig | None = None, seeds: int | None = None) -> dict[str, Any]:
    """Train the scenario over several seeds and measure distances to each original (JSON-able).

    Top-level "approx", "unrelated", "exact" are means over seeds ("approx" over both variants);
    "per_seed" has every distance, the verdict of `judge_unlearning` and the models' accuracies.
    """
    cfg = cfg or (QUICK if quick else BenchConfig())
    cfg = cfg if seeds is None else replace(cfg, seeds=seeds)  # the CLI's --seeds
    start = time.perf_counter()
    with one_torch_thread():  # training floats depend on the thread count, so never on the load
        data = load_data()
        k = cfg.forget_class
        anchors = class_anchors(load_anchors(DEFAULT_ANCHORS), k)
        field_cfg = FieldConfig(steps=cfg.steps, baseline=cfg.baseline, target="label",
                                labels=(k,) * len(anchors))
        x_test, y_test = data.x[data.heldout], data.y[data.heldout]

        # The candidate analysis (docs/BENCHMARKS.md): gray baseline, the last fifth of the curve,
        # projected on the digits' subspace; only that small slice of its fields is kept.
        cand_cfg = replace(field_cfg, baseline=CANDIDATE_BASELINE)
        cuts = _views(cfg.steps)

        def field(net: torch.nn.Module) -> dict[str, torch.Tensor]:
            phi = extract_field(net.eval(), anchors, field_cfg)  # [M, K, 3*32*32]
            gray = phi if cfg.baseline == CANDIDATE_BASELINE else extract_field(net, anchors, cand_cfg)
            return {"plain": phi, "candidate": cuts["subspace_last_fifth"](gray)}  # [M, K/5, 64]

        runs = [_train_variants(cfg, cfg.first_seed + s, data) for s in range(cfg.seeds)]
        extras = []
        for u in range(cfg.extra_unrelated):
            torch.manual_seed(500 + u)
            net = _create_model(cfg)
            fit(net, *_train_data(cfg, data), epochs=cfg.epochs, lr=3e-3, seed=500 + u,
                 transform=AUGMENTS[cfg.augment])
            extras.append(net)
        fields = [{name: field(net) for name, net in run.items()} for run in runs]
        extra_fields = [field(net) for net in extras]
        variants = ["exact", "approx_relabel", "approx_ascent"]

        def distances(s: int, kind: str, cut: Callable[[torch.Tensor], torch.Tensor] = lambda phi: phi) -> np.ndarray:
            """Seed s's original to its three variants, then to every unrelated model (the other
            seeds' originals and the extras), on the `kind` fields seen through `cut`."""
            own = fields[s]
            unrelated = [fields[t]["original"][kind] for t in range(cfg.seeds) if t != s] + [
                e[kind] for e in extra_fields]
            return distances_to(cut(own["original"][kind]),
                                      [cut(own[v][kind]) for v in variants] + [cut(u) for u in unrelated])

        per_seed = []
        for s, run in enumerate(runs):
            dist = distances(s, "plain")
            plain = _view_row(variants, dist)
            d_var = {v: plain[v] for v in variants}
            d_unrel = [float(d) for d in dist[3:]]
            row: dict[str, Any] = {"seed": cfg.first_seed + s, **d_var, "unrelated": d_unrel,
                                   "unrelated_mean": plain["unrelated_mean"]}
            row["verdicts"] = {v: judge_unlearning(d_var[v], d_unrel)["verdict"] for v in variants}
            for view, cut in cuts.items():
                row[view] = _view_row(variants, distances(s, "plain", cut))
            row[CANDIDATE] = _view_row(variants, distances(s, "candidate"))
            row["accuracy"] = {name: _accuracies(net, x_test, y_test, k) for name, net in run.items()}
            row["approx_below_unrelated"] = plain["approx_below_unrelated"]
            row["order_holds"] = plain["order_holds"]
            per_seed.append(row)

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in per_seed]))

    correct = sum((r["verdicts"]["exact"] == "forgotten") + (r["verdicts"]["approx_relabel"]
                  == "not forgotten") + (r["verdicts"]["approx_ascent"] == "not forgotten")
                  for r in per_seed)
    views = {view: {key: float(np.mean([r[view][key] for r in per_seed]))
                    for key in ("approx_relabel", "approx_ascent", "unrelated_mean", "exact")}
             | {flag: sum(r[view][flag] for r in per_seed)
                for flag in ("exact_beyond_mean", "approx_below_unrelated", "order_holds")}
             for view in (*cuts, CANDIDATE)}
    return {
        "approx": float(np.mean([mean("approx_relabel"), mean("approx_ascent")])),
        "approx_relabel": mean("approx_relabel"), "approx_ascent": mean("approx_ascent"),
        "unrelated": mean("unrelated_mean"), "exact": mean("exact"), "seeds": cfg.seeds,
        "order_holds": sum(r["order_holds"] for r in per_seed),
        "approx_below_unrelated": sum(r["approx_below_unrelated"] for r in per_seed),
        "verdicts_correct": int(correct), "verdicts_total": 3 * cfg.seeds,
        "per_seed": per_seed, "forget_class": cfg.forget_class, "anchors": anchors.spec,
        "n_anchors": len(anchors), "quick": bool(quick),
        "config": {"bench": asdict(cfg), "field": field_cfg.to_dict() | {"labels": None}},
        **views,
        "exact_beyond_mean": sum(r["exact"] > r["unrelated_mean"] for r in per_seed),
        "paper_cifar10": {"approx": 0.41, "unrelated": 0.74, "exact": 1.00},
        "seconds": round(time.perf_counter() - start, 1),
    }


def format_table(result: dict[str, Any]) -> str:
    """The bench's result as a plain-text table: one row per seed, then the means."""
    lines = [f"Unlearning verification: forget class {result['forget_class']}, "
             f"{result['n_anchors']} anchors of that class ({result['anchors']}), "
             f"K = {result['config']['field']['steps']}, {result['seeds']} seeds, "
             f"inputs {result['config']['bench']['inputs']}, training augment "
             f"{result['config']['bench'].get('augment', 'none')}, baseline {result['config']['field']['baseline']}",
             "distance from each original's field (target: logit of the forgotten class)", "",
             f"{'seed':>4}  {'approx-relabel':>14}  {'approx-ascent':>13}  {'unrelated (min..max)':>22}"
             f"  {'exact':>7}  order  verdicts (exact / relabel / ascent)"]
    for r in result["per_seed"]:
        v = r["verdicts"]
        unrel = f"{r['unrelated_mean']:.3f} ({min(r['unrelated']):.3f}..{max(r['unrelated']):.3f})"
        lines.append(f"{r['seed']:>4}  {r['approx_relabel']:>14.3f}  {r['approx_ascent']:>13.3f}  "
                     f"{unrel:>22}  {r['exact']:>7.3f}  {'yes' if r['order_holds'] else 'NO ':>5}  "
                     f"{v['exact']} / {v['approx_relabel']} / {v['approx_ascent']}")
    def cmp(a: float, b: float) -> str:
        return "<" if a < b else ">="

    a, u, e = result["approx"], result["unrelated"], result["exact"]
    lines += ["", f"mean: approx {a:.3f} (relabel {result['approx_relabel']:.3f}, ascent "
              f"{result['approx_ascent']:.3f}) {cmp(a, u)} unrelated {u:.3f} {cmp(u, e)} exact {e:.3f}"
              "   (paper, CIFAR10: 0.41 < 0.74 < 1.00)",
              *(f"{title}: approx {(result[v]['approx_relabel'] + result[v]['approx_ascent']) / 2:.3f}, "
                f"unrelated {result[v]['unrelated_mean']:.3f}, exact {result[v]['exact']:.3f} (exact beyond "
                f"the unrelated mean in {result[v]['exact_beyond_mean']}, approx < every unrelated < "
                f"exact in {result[v]['order_holds']} of {result['seeds']} seeds)"
                for v, title in (("native_8x8", "fields pooled to the digits' 8x8 grid"),
                                 ("subspace", "fields projected onto the digits' 64-dim subspace"),
                                 ("curve_first_fifth", "first fifth of the curve (near the baseline)"),
                                 ("curve_last_fifth", "last fifth of the curve (near the anchors)"),
                                 ("subspace_last_fifth", "last fifth, projected onto the subspace"),
                                 (CANDIDATE, "gray baseline, last fifth, projected onto the subspace"))),
              f"approx < every unrelated in {result['approx_below_unrelated']} of {result['seeds']} "
              f"seeds, exact > the unrelated mean in {result['exact_beyond_mean']}, approx < every "
              f"unrelated < exact in {result['order_holds']}; verdicts "
              f"correct {result['verdicts_correct']}/{result['verdicts_total']}",
              f"per seed, {CANDIDATE} (relabel, ascent, unrelated mean (min..max), exact, order): "
              + "; ".join(f"{r['seed']}: {c['approx_relabel']:.3f}, {c['approx_ascent']:.3f}, "
                          f"{c['unrelated_mean']:.3f} ({c['unrelated_min']:.3f}..{c['unrelated_max']:.3f}), "
                          f"{c['exact']:.3f}, {'yes' if c['order_holds'] else 'no'}"
                          for r in result["per_seed"] for c in [r[CANDIDATE]]),
              f"accuracy on held-out digits (forgotten class / the others), seed {result['per_seed'][0]['seed']}: "
              + ", ".join(f"{n} {a['forget']:.2f}/{a['retain']:.2f}"
                          for n, a in result["per_seed"][0]["accuracy"].items()),
              f"{result['seconds']:.0f} s"]
    return "\n".join(lines)
