"""The built-in model zoo: small timm models trained here on sklearn's digits, as `local-dir:` folders.

Victims of two architectures; for each, the attack kinds of the SAC benchmark adapted to digits
(fine-tuning, fine-pruning, extraction from probabilities and from labels by a weak and a strong
attacker, adversarial extraction, transfer to another label space, fine-tuning on a shifted
domain, weight noise); independently trained models (other seeds, data splits, architectures)
split into a calibration set (what triage and anchor mining may look at) and a test set (what the
IP benchmark measures on); and, in the full zoo, the owner's own surrogate students.

Data (never the 500 held-out digits that anchors and test accuracy use): the 1297-image pool of
`anchors.digits_split()` is split once into the owner's half (victims, owner surrogates) and the
attacker's half (every attack's own data). Each victim also has the owner's unlearners of class 9
(exact: retrained without it; relabel and ascent: approximate), the Unlearning page's examples (the
small zoo has the first victim's). Each model records its recipe in config.json's
"modelgif" dict: role, family, attack, parent, seed, data, test accuracy, the recipe and its key.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ._errors import UserError
from .models import InputConfig, load_model, preprocess, save_model_dir

Progress = Callable[[int, int, str], None]

SIZES = ("small", "full")
ROLES = ("victim", "derived", "surrogate", "independent-calibration", "independent-test", "unlearned")
# The Unlearning page's examples: the owner's unlearners of a victim, forgetting the last class as
# the paper (and `modelgif bench unlearning`) do. Not IP-bench models: they are neither attacks nor
# independent.
FORGET_CLASS = 9
UNLEARNING = ("exact", "relabel", "ascent")
# Bumped when a recipe's meaning changes, so old folders are rebuilt instead of silently reused.
RECIPE_VERSION = 1
_SPLIT_SEED = 7  # owner/attacker split of the training pool
_BATCH = 64
_MEAN_HALF = (0.5, 0.5, 0.5)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# Architectures: tiny timm `test_*` networks (a few 100k parameters; ~25 ms per training step here).
ARCHS: dict[str, tuple[str, dict[str, Any], InputConfig]] = {
    "resnet": ("test_resnet", {}, InputConfig((3, 32, 32), _MEAN_HALF, _MEAN_HALF)),
    "effnet": ("test_efficientnet", {}, InputConfig((3, 32, 32), _IMAGENET_MEAN, _IMAGENET_STD)),
    "byobnet": ("test_byobnet", {}, InputConfig((3, 32, 32), _MEAN_HALF, _MEAN_HALF)),
    "convnext": ("test_convnext", {}, InputConfig((3, 32, 32), _IMAGENET_MEAN, _IMAGENET_STD)),
    # A different input size on purpose: its preprocessing resizes inside the gradient. 16 px patches
    # (3x3 tokens) and mean pooling instead of a class token: with 8 px patches and the class token
    # the ViT reached only 0.36-0.46 test accuracy on ~650 digits (0.93-0.94 now, see _VIT_RECIPE).
    "vit": ("test_vit", {"img_size": 48, "patch_size": 16, "class_token": False, "global_pool": "avg"},
            InputConfig((3, 48, 48), _MEAN_HALF, _MEAN_HALF)),
}
# The ViT trains longer, slower and in smaller batches than the CNNs (more steps on few images).
_VIT_RECIPE: dict[str, Any] = {"epochs": 30, "lr": 1e-3, "params": {"batch": 32}}
VICTIMS = ("resnet", "effnet")
# The different architecture an attacker picks for a cross-architecture student of each victim.
XARCH = {"resnet": "byobnet", "effnet": "convnext"}

# Attack kinds, as the benchmark reports them (columns of the AUC table).
ATTACK_KINDS = (
    "finetune-all", "finetune-last", "prune", "weight-noise", "shift", "transfer",
    "adv-extract", "extract-label-weak", "extract-label-strong",
    "extract-prob-weak", "extract-prob-strong",
)


@dataclass(frozen=True)
class Recipe:
    """How one zoo model is made. `key()` covers everything that changes its weights."""

    name: str
    role: str  # one of ROLES
    arch: str  # a key of ARCHS
    method: str  # a key of _METHODS
    family: str  # lineage: the victim's name for it and its derivatives, else "independent"
    attack: str | None = None  # one of ATTACK_KINDS for derived models
    variant: str = ""  # e.g. "xarch", "noise", "parity"; an unlearner's way (UNLEARNING)
    parent: str | None = None
    data: str = "owner"  # owner | attacker | pool | half-<seed>
    seed: int = 0
    epochs: int = 15
    lr: float = 3e-3
    params: dict[str, Any] = field(default_factory=dict)

    def key(self, parent_key: str = "") -> str:
        payload = {**asdict(self), "v": RECIPE_VERSION, "parent_key": parent_key}
        arch_args = ARCHS[self.arch][1] if self.arch in ARCHS else {}
        if arch_args:  # only the ViT has any; left out otherwise so the CNNs' keys stay as they were
            payload["arch_args"] = arch_args
        blob = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------- recipes


def _victim_recipes(v: str, full: bool) -> list[Recipe]:
    """The victim `v` and its derivatives; the small zoo keeps one model per attack family."""
    vic = f"{v}-victim"
    xa = XARCH[v]

    def d(kind: str, method: str, idx: int, *, arch: str = v, variant: str = "", **kw: Any) -> Recipe:
        suffix = f"-{variant}" if variant else ""
        return Recipe(name=f"{v}-{kind}{suffix}-{idx}", role="derived", arch=arch, method=method,
                      family=vic, attack=kind, variant=variant, parent=vic, data="attacker",
                      seed=1000 * (ATTACK_KINDS.index(kind) + 1) + 10 * idx + VICTIMS.index(v), **kw)

    tune = {"epochs": 5, "lr": 5e-4}
    out = [Recipe(name=vic, role="victim", arch=v, method="scratch", family=vic, data="owner",
                  seed=VICTIMS.index(v))]
    small = [
        d("finetune-all", "finetune", 0, **tune),
        d("prune", "prune", 0, params={"amount": 0.5}, **tune),
        d("weight-noise", "weight-noise", 0, epochs=0, params={"rel_std": 0.05}),
        d("shift", "shift", 0, variant="noise", params={"shift": "noise"}, **tune),
        d("transfer", "transfer", 0, variant="parity", params={"labels": "parity"}, epochs=6, lr=5e-4),
        d("extract-prob-strong", "extract", 0, epochs=6, params={"soft": True, "strong": True}),
        d("extract-label-strong", "extract", 0, epochs=6, params={"soft": False, "strong": True}),
    ]
    out += small
    if not full:
        return out
    out += [
        d("finetune-all", "finetune", 1, **tune),
        d("finetune-last", "finetune", 0, params={"last_only": True}, epochs=5, lr=3e-3),
        d("finetune-last", "finetune", 1, params={"last_only": True}, epochs=5, lr=3e-3),
        d("prune", "prune", 1, params={"amount": 0.7}, **tune),
        d("weight-noise", "weight-noise", 1, epochs=0, params={"rel_std": 0.1}),
        d("shift", "shift", 1, variant="blur", params={"shift": "blur"}, **tune),
        d("shift", "shift", 2, variant="invert", params={"shift": "invert"}, **tune),
        d("transfer", "transfer", 1, variant="5way-last",
          params={"labels": "5way", "last_only": True}, epochs=8, lr=3e-3),
        d("adv-extract", "adv-extract", 0, epochs=6, params={"eps": 0.15}),
        d("adv-extract", "adv-extract", 1, arch=xa, variant="xarch", epochs=6, params={"eps": 0.15}),
    ]
    for strength in ("weak", "strong"):
        strong = strength == "strong"
        epochs = 6 if strong else 15
        for soft, kind in ((True, f"extract-prob-{strength}"), (False, f"extract-label-{strength}")):
            p = {"soft": soft, "strong": strong}
            start = 1 if strong else 0  # index 0 of the strong ones is in the small zoo already
            for idx in range(start, 2):
                out.append(d(kind, "extract", idx, epochs=epochs, params=p))
            out.append(d(kind, "extract", 2, arch=xa, variant="xarch", epochs=epochs, params=p))
    # The owner's own surrogate students (owner's data, the strong recipe): used only to choose
    # anchors and knobs, never as benchmark positives.
    for idx, soft in enumerate((True, False, True)):
        out.append(Recipe(name=f"{v}-surrogate-{idx}", role="surrogate", arch=v if idx < 2 else xa,
                          method="extract", family=vic, parent=vic, data="owner",
                          seed=90_000 + 10 * idx + VICTIMS.index(v), epochs=6,
                          params={"soft": soft, "strong": True}))
    return out


def _unlearning_recipes(v: str) -> list[Recipe]:
    """The owner's unlearners of victim `v`, the three ways `modelgif bench unlearning` unlearns (on the
    zoo's recipe: the owner's half, no input noise): exact (retrained from scratch without the class),
    relabel (fine-tuned with the class's labels replaced at random) and ascent (gradient ascent on the
    class until it is no longer predicted)."""
    how = {"exact": {"epochs": 15, "lr": 3e-3}, "relabel": {"epochs": 3, "lr": 1e-3},
           "ascent": {"epochs": 0, "lr": 2e-4, "params": {"max_steps": 60}}}
    vic = f"{v}-victim"
    return [Recipe(name=f"{v}-unlearned-{u}-{FORGET_CLASS}", role="unlearned", arch=v, method="unlearn",
                   family=vic, variant=u, parent=vic, data="owner",
                   seed=95_000 + 10 * i + VICTIMS.index(v), **copy.deepcopy(how[u]))
            for i, u in enumerate(UNLEARNING)]


# (arch, data) of independent models; calibration and test sets alternate through the list so both
# see every architecture and data source. The small zoo keeps the first 12 (6 calibration references:
# with 4, a strong label-extraction student fell inside the references' range and was called independent).
_INDEPENDENT = [
    ("resnet", "owner"), ("effnet", "owner"), ("byobnet", "attacker"),
    ("resnet", "attacker"), ("effnet", "half-1"), ("convnext", "owner"),
    ("vit", "owner"), ("resnet", "half-2"), ("byobnet", "owner"),
    ("effnet", "attacker"), ("convnext", "half-3"), ("vit", "attacker"),
    ("resnet", "pool"), ("effnet", "pool"), ("resnet", "half-4"),
    ("effnet", "half-5"), ("byobnet", "half-6"), ("convnext", "attacker"),
    ("resnet", "owner"), ("effnet", "owner"), ("vit", "half-7"),
    ("byobnet", "pool"), ("resnet", "attacker"), ("effnet", "attacker"),
]


_SMALL_INDEPENDENT = 12


def _independent_recipes(full: bool) -> list[Recipe]:
    out = []
    for i, (arch, data) in enumerate(_INDEPENDENT[: (len(_INDEPENDENT) if full else _SMALL_INDEPENDENT)]):
        split = "calibration" if i % 2 == 0 else "test"
        how: dict[str, Any] = {"epochs": 8 if data == "pool" else 15}
        if arch == "vit":
            how = _VIT_RECIPE
        out.append(Recipe(name=f"indep-{split[:4]}-{i:02d}-{arch}", role=f"independent-{split}",
                          arch=arch, method="scratch", family="independent", data=data,
                          seed=500 + i, **copy.deepcopy(how)))
    return out


def recipes(size: str = "small") -> list[Recipe]:
    """Every model of the zoo of this size, parents before children. small is a subset of full."""
    if size not in SIZES:
        raise UserError(f"Unknown zoo size {size!r}; choose one of {', '.join(SIZES)}.")
    full = size == "full"
    out = [r for v in VICTIMS for r in _victim_recipes(v, full)] + _independent_recipes(full)
    out += [r for v in (VICTIMS if full else VICTIMS[:1]) for r in _unlearning_recipes(v)]
    names = [r.name for r in out]
    assert len(names) == len(set(names)), "zoo recipe names must be unique"
    return out


# ----------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class _Data:
    x: torch.Tensor  # [1797, 3, 32, 32] in [0, 1]
    y: torch.Tensor  # [1797]
    owner: torch.Tensor  # indices of the owner's half of the pool
    attacker: torch.Tensor  # indices of the attacker's half
    pool: torch.Tensor
    heldout: torch.Tensor

    def indices(self, data: str) -> torch.Tensor:
        if data in ("owner", "attacker", "pool"):
            return getattr(self, data)
        if data.startswith("half-"):
            g = torch.Generator().manual_seed(int(data[5:]))
            perm = torch.randperm(len(self.pool), generator=g)
            return self.pool[perm[: len(self.pool) // 2]]
        raise AssertionError(f"unknown data split {data!r}")


@functools.lru_cache(maxsize=1)  # the digits, loaded once per process
def _load_data() -> _Data:
    from .anchors import digits_dataset, digits_split

    x, y = digits_dataset()
    pool, heldout = digits_split()
    g = torch.Generator().manual_seed(_SPLIT_SEED)
    perm = pool[torch.randperm(len(pool), generator=g)]
    half = len(pool) // 2
    return _Data(x, y, perm[:half].clone(), perm[half:].clone(), pool, heldout)


_LABEL_MAPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "digit": lambda y: y,
    "parity": lambda y: y % 2,
    "5way": lambda y: y // 2,
}
_N_CLASSES = {"digit": 10, "parity": 2, "5way": 5}


# ----------------------------------------------------------------------------------- training


class _Net(torch.nn.Module):
    """A timm module with its preprocessing in front, so training sees what the handle will."""

    def __init__(self, module: torch.nn.Module, input_cfg: InputConfig) -> None:
        super().__init__()
        self.module, self.input_cfg = module, input_cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(preprocess(x, self.input_cfg))


def _create(arch: str, num_classes: int = 10) -> _Net:
    import timm

    name, args, cfg = ARCHS[arch]
    return _Net(timm.create_model(name, pretrained=False, num_classes=num_classes, **args), cfg)


def _fit(net: _Net, x: torch.Tensor, target: torch.Tensor, *, epochs: int, lr: float, seed: int,
         params: list[torch.nn.Parameter] | None = None, transform: Callable | None = None,
         masks: dict[str, torch.Tensor] | None = None, freeze_bn: bool = False, batch: int = _BATCH) -> None:
    """Minibatch AdamW with a one-cycle schedule; soft targets ([M, C] float) use cross-entropy
    against the probabilities (= KL up to a constant), hard targets ([M] long) plain CE."""
    if epochs <= 0:
        return
    g = torch.Generator().manual_seed(seed)
    params = list(params) if params is not None else list(net.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    steps_per_epoch = (len(x) + batch - 1) // batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    named = dict(net.named_parameters())
    for _ in range(epochs):
        net.train()
        if freeze_bn:  # last-layer fine-tuning leaves the backbone (and its BN statistics) alone
            for m in net.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        perm = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), batch):
            idx = perm[s:s + batch]
            xb = x[idx]  # [B, 3, 32, 32]
            if transform is not None:
                xb = transform(xb, g)
            out = net(xb)  # [B, C]
            tb = target[idx]
            if tb.dtype == torch.long:
                loss = F.cross_entropy(out, tb)
            else:
                loss = -(tb * F.log_softmax(out, dim=1)).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if masks:
                with torch.no_grad():
                    for k, m in masks.items():
                        named[k].mul_(m)
    net.eval()


@torch.no_grad()
def _predict(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    net.eval()
    return torch.cat([net(x[s:s + 256]) for s in range(0, len(x), 256)])  # [M, C]


def _accuracy(net: _Net, data: _Data, labels: str) -> float:
    idx = data.heldout
    y = _LABEL_MAPS[labels](data.y[idx])
    return float((_predict(net, data.x[idx]).argmax(1) == y).float().mean())


def _gaussian_blur(x: torch.Tensor, sigma: float = 1.2) -> torch.Tensor:
    r = 3
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k1 = torch.exp(-(t**2) / (2 * sigma**2))
    k1 = k1 / k1.sum()
    k2 = (k1[:, None] * k1[None, :]).expand(x.shape[1], 1, 2 * r + 1, 2 * r + 1)
    return F.conv2d(F.pad(x, (r, r, r, r), mode="replicate"), k2, groups=x.shape[1])


_SHIFTS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "noise": lambda x, g: (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1),
    "blur": lambda x, g: _gaussian_blur(x),
    "invert": lambda x, g: 1.0 - x,
}


def _strong_queries(x: torch.Tensor, seed: int) -> torch.Tensor:
    """The strong attacker's query set: its data, two mixups of random pairs, two noisy copies (5x)."""
    g = torch.Generator().manual_seed(seed)
    parts = [x]
    for _ in range(2):
        j = torch.randperm(len(x), generator=g)
        lam = torch.rand(len(x), 1, 1, 1, generator=g)
        parts.append(lam * x + (1 - lam) * x[j])
    for _ in range(2):
        parts.append((x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1))
    return torch.cat(parts)  # [5M, 3, 32, 32]


def _fgsm(net: _Net, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    net.eval()
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(net(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def _train_scratch(r: Recipe, parent: _Net | None, data: _Data) -> tuple[_Net, str]:
    net = _create(r.arch)
    idx = data.indices(r.data)
    _fit(net, data.x[idx], data.y[idx], epochs=r.epochs, lr=r.lr, seed=r.seed,
         batch=int(r.params.get("batch", _BATCH)))
    return net, "digit"


def _head_params(net: _Net) -> list[torch.nn.Parameter]:
    return list(net.module.get_classifier().parameters())


def _train_finetune(r: Recipe, parent: _Net, data: _Data) -> tuple[_Net, str]:
    net = copy.deepcopy(parent).requires_grad_(True)
    idx = data.indices(r.data)
    last = bool(r.params.get("last_only"))
    _fit(net, data.x[idx], data.y[idx], epochs=r.epochs, lr=r.lr, seed=r.seed,
         params=_head_params(net) if last else None, freeze_bn=last)
    return net, "digit"


def _train_prune(r: Recipe, parent: _Net, data: _Data) -> tuple[_Net, str]:
    """Fine-pruning: global magnitude pruning of conv/linear weights, then fine-tuning with masks."""
    net = copy.deepcopy(parent).requires_grad_(True)
    weights = {k: p for k, p in net.named_parameters() if p.dim() > 1}
    flat = torch.cat([p.detach().abs().flatten() for p in weights.values()])
    thresh = torch.quantile(flat, float(r.params["amount"])) if flat.numel() < 2**24 else flat.median()
    masks = {k: (p.detach().abs() > thresh).float() for k, p in weights.items()}
    with torch.no_grad():
        for k, m in masks.items():
            weights[k].mul_(m)
    idx = data.indices(r.data)
    _fit(net, data.x[idx], data.y[idx], epochs=r.epochs, lr=r.lr, seed=r.seed, masks=masks)
    return net, "digit"


def _train_weight_noise(r: Recipe, parent: _Net, data: _Data) -> tuple[_Net, str]:
    net = copy.deepcopy(parent)
    g = torch.Generator().manual_seed(r.seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1:
                p.add_(float(r.params["rel_std"]) * p.std() * torch.randn(p.shape, generator=g))
    return net, "digit"


def _train_shift(r: Recipe, parent: _Net, data: _Data) -> tuple[_Net, str]:
    net = copy.deepcopy(parent).requires_grad_(True)
    idx = data.indices(r.data)
    _fit(net, data.x[idx], data.y[idx], epochs=r.epochs, lr=r.lr, seed=r.seed,
         transform=_SHIFTS[r.params["shift"]])
    return net, "digit"


def _train_transfer(r: Recipe, parent: _Net, data: _Data) -> tuple[_Net, str]:
    labels = r.params["labels"]
    net = copy.deepcopy(parent).requires_grad_(True)
    torch.manual_seed(r.seed)
    net.module.reset_classifier(_N_CLASSES[labels])
    last = bool(r.params.get("last_only"))
    idx = data.indices(r.data)
    _fit(net, data.x[idx], _LABEL_MAPS[labels](data.y[idx]), epochs=r.epochs, lr=r.lr, seed=r.seed,
         params=_head_params(net) if last else None, freeze_bn=last)
    return net, labels


def _train_extract(r: Recipe, parent: _Net, data: _Data) -> tuple[_Net, str]:
    """Model extraction: a fresh student trained on the victim's answers to the attacker's queries
    (probabilities -> soft targets, labels only -> argmax); strong attackers query 5x as much."""
    idx = data.indices(r.data)
    x = data.x[idx]
    if r.params.get("strong"):
        x = _strong_queries(x, r.seed)
    out = _predict(parent, x)  # [M, 10] the victim's answers
    target = out.softmax(1) if r.params.get("soft") else out.argmax(1)
    torch.manual_seed(r.seed)
    net = _create(r.arch)
    _fit(net, x, target, epochs=r.epochs, lr=r.lr, seed=r.seed)
    return net, "digit"


def _train_adv_extract(r: Recipe, parent: _Net, data: _Data) -> tuple[_Net, str]:
    """Adversarial extraction: label queries on the attacker's data, then on FGSM examples crafted
    against the attacker's own student (they sit near its boundary), then training on both."""
    idx = data.indices(r.data)
    x = data.x[idx]
    torch.manual_seed(r.seed)
    net = _create(r.arch)
    y = _predict(parent, x).argmax(1)
    _fit(net, x, y, epochs=r.epochs, lr=r.lr, seed=r.seed)
    x_adv = _fgsm(net, x, y, float(r.params["eps"]))
    x_all = torch.cat([x, x_adv])
    y_all = _predict(parent, x_all).argmax(1)
    _fit(net, x_all, y_all, epochs=r.epochs, lr=r.lr / 3, seed=r.seed + 1)
    return net, "digit"


def _train_unlearn(r: Recipe, parent: _Net, data: _Data) -> tuple[_Net, str]:
    """Class FORGET_CLASS unlearned from the parent, the way `r.variant` says (see UNLEARNING)."""
    from .unlearning import gradient_ascent, relabel_class

    idx = data.indices(r.data)
    x, y = data.x[idx], data.y[idx]
    forget = y == FORGET_CLASS
    if r.variant == "exact":  # the parent's recipe on its data without the class, its own initialisation
        net = _create(r.arch)
        _fit(net, x[~forget], y[~forget], epochs=r.epochs, lr=r.lr, seed=r.seed)
    elif r.variant == "relabel":
        net = copy.deepcopy(parent).requires_grad_(True)
        labels = relabel_class(y, FORGET_CLASS, torch.Generator().manual_seed(r.seed))
        _fit(net, x, labels, epochs=r.epochs, lr=r.lr, seed=r.seed)
    else:
        net = gradient_ascent(copy.deepcopy(parent), x[forget], FORGET_CLASS, lr=r.lr,
                              max_steps=int(r.params["max_steps"]), seed=r.seed)
    return net, "digit"


_METHODS: dict[str, Callable[[Recipe, Any, _Data], tuple[_Net, str]]] = {
    "scratch": _train_scratch,
    "finetune": _train_finetune,
    "prune": _train_prune,
    "weight-noise": _train_weight_noise,
    "shift": _train_shift,
    "transfer": _train_transfer,
    "extract": _train_extract,
    "adv-extract": _train_adv_extract,
    "unlearn": _train_unlearn,
}


# ----------------------------------------------------------------------------------- building


@contextlib.contextmanager
def one_torch_thread():
    """Run the block on one torch thread, then restore the count. Training floats depend on the
    thread count (one thread vs two gave different weights), so whatever trains or extracts for a
    recorded number does it on one thread and gives the same floats whatever the machine's load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def default_workers() -> int:
    """Processes a zoo build trains in: one per usable core (at most 8, for memory). Unlike several
    OpenMP threads in one process, single-threaded processes do not spin against a busy machine;
    they only share it, so busy cores cost no more than training one model after the other."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def zoo_root(size: str = "small") -> Path:
    """Where the zoo of this size lives: <store root>/zoo-<size> ($MODELGIF_HOME is honoured)."""
    if size not in SIZES:
        raise UserError(f"Unknown zoo size {size!r}; choose one of {', '.join(SIZES)}.")
    try:
        from .store import default_store_root

        base = Path(default_store_root())
    except ImportError:  # the store module is optional for the zoo; same convention
        home = os.environ.get("MODELGIF_HOME")
        base = Path(home).expanduser() if home else Path.home() / ".cache" / "modelgif"
    return base / f"zoo-{size}"


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not (folder / "model.safetensors").is_file():
        return None
    return cfg.get("modelgif") or {}


def _load_net(folder: Path) -> _Net:
    handle = load_model(f"local-dir:{folder}")
    module = copy.deepcopy(handle.module).requires_grad_(True)
    return _Net(module, handle.input_cfg)


def build_zoo(size: str = "small", root: str | Path | None = None, progress: Progress | None = None,
              force: bool = False, only: list[str] | None = None,
              epochs_scale: float = 1.0, workers: int | None = None) -> Path:
    """Train every missing model of the zoo (idempotent) and return its root folder.

    progress(done, total, name) is called as each model starts (done: models finished so far).
    `only` restricts the build to these names (and their parents); `epochs_scale` shortens training
    (tests). Models train on one torch thread each, in `workers` processes (default:
    `default_workers()`), a derived model after its parent; a model's weights depend only on its
    recipe, not on the process or the number of workers (one thread vs two gave different floats).
    A file lock makes two concurrent builds (app + CLI) wait for each other instead of training twice.
    """
    from filelock import FileLock

    all_recipes = recipes(size)
    root = Path(root) if root is not None else zoo_root(size)
    root.mkdir(parents=True, exist_ok=True)
    by_name = {r.name: r for r in all_recipes}
    todo = all_recipes
    if only is not None:
        unknown = sorted(set(only) - set(by_name))
        if unknown:
            raise UserError(f"Unknown zoo model(s) {unknown}; see `modelgif zoo list`.")
        need = set(only)
        for name in only:
            if by_name[name].parent:
                need.add(by_name[name].parent)
        todo = [r for r in all_recipes if r.name in need]
    total = len(todo)
    with FileLock(str(root / ".build.lock")):
        keys: dict[str, str] = {}
        tasks: list[_Task] = []
        skipped = 0
        for r in todo:
            scaled = r if epochs_scale == 1.0 else _scaled(r, epochs_scale)
            key = scaled.key(keys.get(r.parent, "") if r.parent else "")
            keys[r.name] = key
            folder = root / r.name
            meta = _read_meta(folder)
            if not force and ((meta is not None and meta.get("recipe_key") == key)
                              or _reuse(r.name, key, size, folder)):
                if progress is not None:
                    progress(skipped, total, r.name)
                skipped += 1
                continue
            tasks.append(_Task(scaled, key, str(folder), str(root / r.parent) if r.parent else None))

        def started(done: int, name: str) -> None:
            if progress is not None:
                progress(skipped + done, total, name)

        n = default_workers() if workers is None else int(workers)
        _run_tasks(tasks, max(1, min(n, len(tasks))), started)
        if progress is not None:
            progress(total, total, "done")
        _write_index(root, size)
    return root


@dataclass(frozen=True)
class _Task:
    """One model to train, as handed to a worker process (picklable)."""

    recipe: Recipe  # epochs already scaled
    key: str
    folder: str
    parent_folder: str | None  # the parent's built folder: read from disk, never passed in memory


def _train_task(task: _Task) -> str:
    """Train and save one model in this process, on one torch thread (so its floats never depend on
    how many threads or processes the build has)."""
    with one_torch_thread():
        parent = _load_net(Path(task.parent_folder)) if task.parent_folder else None
        _build_one(task.recipe, parent, _load_data(), Path(task.folder), task.key)
    return task.recipe.name


# Rough training cost per image and epoch (test_resnet = 1), measured on one thread here; only used
# to start the longest models first so that the workers finish together.
_ARCH_COST = {"resnet": 1.0, "effnet": 0.7, "byobnet": 0.65, "convnext": 0.65, "vit": 0.65}


def _cost(r: Recipe) -> float:
    images = 1297 if r.data == "pool" else 650
    if r.params.get("strong"):
        images *= 5
    if r.method == "adv-extract":
        images *= 3  # two fits, the second on twice the data
    return r.epochs * images * _ARCH_COST[r.arch]


def _task_message(t: _Task) -> str:
    return json.dumps({"recipe": asdict(t.recipe), "key": t.key, "folder": t.folder,
                       "parent_folder": t.parent_folder})


def _task_from_message(line: str) -> _Task:
    msg = json.loads(line)
    return _Task(Recipe(**msg["recipe"]), msg["key"], msg["folder"], msg["parent_folder"])


def _start_worker() -> subprocess.Popen:
    """A `python -m modelgif_core._zoo_worker` process. Not a multiprocessing child: spawn re-runs the
    caller's __main__ in every child, and inside a Streamlit server that is the page being run."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return subprocess.Popen([sys.executable, "-m", "modelgif_core._zoo_worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1, env=env)


def _run_tasks(tasks: list[_Task], workers: int, started: Callable[[int, str], None]) -> None:
    """Train the tasks (topologically ordered), a parent before its children; with several workers
    in worker processes, the parents of other models first, then the longest ready model."""
    if workers <= 1 or len(tasks) <= 1:
        for done, t in enumerate(tasks):
            started(done, t.recipe.name)
            _train_task(t)
        return
    import selectors

    names = {t.recipe.name for t in tasks}
    n_children = {name: sum(t.recipe.parent == name for t in tasks) for name in names}
    pending = sorted(tasks, key=lambda t: (-n_children[t.recipe.name], -_cost(t.recipe)))
    finished: set[str] = set()
    procs = [_start_worker() for _ in range(workers)]
    idle = list(procs)
    running: dict[subprocess.Popen, _Task] = {}
    sel = selectors.DefaultSelector()
    for proc in procs:
        sel.register(proc.stdout, selectors.EVENT_READ, proc)
    try:
        while pending or running:
            ready = [t for t in pending if t.recipe.parent not in names or t.recipe.parent in finished]
            while ready and idle:
                t, proc = ready.pop(0), idle.pop()
                pending.remove(t)
                started(len(finished), t.recipe.name)
                proc.stdin.write(_task_message(t) + "\n")
                proc.stdin.flush()
                running[proc] = t
            assert running, "zoo tasks must be topologically ordered"
            for key, _ in sel.select():
                proc = key.data
                line = proc.stdout.readline()
                name = running[proc].recipe.name
                if not line:
                    raise RuntimeError(f"A zoo worker process died while training {name} "
                                       f"(exit code {proc.wait()}); see its error above.")
                reply = json.loads(line)
                if "error" in reply:
                    raise RuntimeError(f"Training {name} failed: {reply['error']}")
                finished.add(running.pop(proc).recipe.name)
                idle.append(proc)
    finally:
        sel.close()
        for proc in procs:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # a worker exits at the end of its input
        for proc in procs:
            try:
                proc.wait(timeout=0 if running else 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def worker_main() -> None:
    """The loop of a zoo worker process: one task (JSON) per input line, one reply line per task."""
    torch.set_num_threads(1)
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything the training prints goes to stderr, never into the reply channel
    for line in sys.stdin:
        task = _task_from_message(line)
        try:
            _train_task(task)
            replies.write(json.dumps({"done": task.recipe.name}) + "\n")
        except Exception as exc:  # reported to the parent, which stops the build with it
            replies.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")


def _reuse(name: str, key: str, size: str, folder: Path) -> bool:
    """Copy a model with the same recipe key from the other size's zoo (small is a subset of full)."""
    import shutil

    for other in SIZES:
        src = zoo_root(other) / name
        if other == size or src == folder:
            continue
        meta = _read_meta(src)
        if meta is not None and meta.get("recipe_key") == key:
            tmp = folder.with_name(f".{name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(src, tmp)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
            return True
    return False


def _scaled(r: Recipe, scale: float) -> Recipe:
    from dataclasses import replace

    return replace(r, epochs=max(1, round(r.epochs * scale)) if r.epochs else 0)


def _build_one(r: Recipe, parent: _Net | None, data: _Data, folder: Path, key: str) -> _Net:
    start = time.perf_counter()
    torch.manual_seed(r.seed)
    net, labels = _METHODS[r.method](r, parent, data)
    net.eval().requires_grad_(False)
    acc = _accuracy(net, data, labels)
    name, args, _ = ARCHS[r.arch]
    extra = {
        "zoo": True, "name": r.name, "role": r.role, "family": r.family, "attack": r.attack,
        "variant": r.variant, "parent": r.parent, "seed": r.seed, "data": r.data, "labels": labels,
        "test_accuracy": round(acc, 4), "train_seconds": round(time.perf_counter() - start, 2),
        "recipe": {"method": r.method, "epochs": r.epochs, "lr": r.lr, **r.params},
        "recipe_key": key,
    }
    save_model_dir(net.module, folder, arch=name, num_classes=_N_CLASSES[labels],
                   input_cfg=net.input_cfg, model_args=args, extra=extra)
    return net


def _write_index(root: Path, size: str) -> None:
    rows = list_zoo(size, root)
    tmp = root / ".zoo.json.tmp"
    tmp.write_text(json.dumps({"size": size, "models": rows}, indent=1))
    os.replace(tmp, root / "zoo.json")


def list_zoo(size: str = "small", root: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per built model, in recipe order: name, spec, role, family, arch, attack, parent, ...,
    and for the owner's unlearners the class they forgot."""
    root = Path(root) if root is not None else zoo_root(size)
    rows = []
    for r in recipes(size):
        folder = root / r.name
        meta = _read_meta(folder)
        if meta is None:
            continue
        cfg = json.loads((folder / "config.json").read_text())
        rows.append({
            "name": r.name, "spec": f"local-dir:{folder}", "role": meta.get("role", r.role),
            "family": meta.get("family", r.family), "arch": cfg.get("architecture"),
            "attack": meta.get("attack"), "variant": meta.get("variant", ""),
            "parent": meta.get("parent"), "data": meta.get("data"), "seed": meta.get("seed"),
            "num_classes": cfg.get("num_classes"), "labels": meta.get("labels"),
            "test_accuracy": meta.get("test_accuracy"),
            "forgotten_class": FORGET_CLASS if r.role == "unlearned" else None,
        })
    return rows


def zoo_is_built(size: str = "small", root: str | Path | None = None) -> bool:
    root = Path(root) if root is not None else zoo_root(size)
    return all(_read_meta(root / r.name) is not None for r in recipes(size))


def ensure_zoo(size: str = "small", progress: Progress | None = None) -> Path:
    """The zoo's root, building it first if any model is missing (first use of the app or CLI)."""
    if zoo_is_built(size):
        return zoo_root(size)
    return build_zoo(size, progress=progress)


def zoo_model_dir(name: str, size: str | None = None) -> Path:
    """The folder of the built zoo model `name` (the small zoo first, then the full one)."""
    sizes = (size,) if size else SIZES
    for s in sizes:
        folder = zoo_root(s) / name
        if _read_meta(folder) is not None:
            return folder
    known = {r.name for s in SIZES for r in recipes(s)}
    if name not in known:
        raise UserError(f"There is no zoo model {name!r}; `modelgif zoo list` shows the names.")
    need = "full" if name not in {r.name for r in recipes("small")} else "small"
    raise UserError(f"Zoo model {name!r} is not built yet; run `modelgif zoo build --size {need}`.")
