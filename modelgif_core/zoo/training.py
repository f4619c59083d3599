"""Training the zoo's models on sklearn's digits: the data splits, the networks, every recipe method.

Data (never the 500 held-out digits that anchors and test accuracy use): the 1297-image pool of
`digits_split()` is split once into the owner's half (victims, owner surrogates) and the attacker's
half (every attack's own data). The unlearning trainers (`relabel_class`, `gradient_ascent`) are
shared with `modelgif bench unlearning`.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..engine.anchors import digits_dataset, digits_split
from ..engine.models import InputConfig, batched_outputs, preprocess
from .recipes import ARCHS, FORGET_CLASS, Recipe

_SPLIT_SEED = 7  # owner/attacker split of the training pool
_BATCH = 64


# ----------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class ZooData:
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
def load_data() -> ZooData:
    x, y = digits_dataset()
    pool, heldout = digits_split()
    g = torch.Generator().manual_seed(_SPLIT_SEED)
    perm = pool[torch.randperm(len(pool), generator=g)]
    half = len(pool) // 2
    return ZooData(x, y, perm[:half].clone(), perm[half:].clone(), pool, heldout)


LABEL_MAPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "digit": lambda y: y,
    "parity": lambda y: y % 2,
    "5way": lambda y: y // 2,
}
N_CLASSES = {"digit": 10, "parity": 2, "5way": 5}


# ----------------------------------------------------------------------------------- training


class Net(torch.nn.Module):
    """A timm module with its preprocessing in front, so training sees what the handle will."""

    def __init__(self, module: torch.nn.Module, input_cfg: InputConfig) -> None:
        super().__init__()
        self.module, self.input_cfg = module, input_cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(preprocess(x, self.input_cfg))


def create_net(arch: str, num_classes: int = 10) -> Net:
    import timm

    name, args, cfg = ARCHS[arch]
    return Net(timm.create_model(name, pretrained=False, num_classes=num_classes, **args), cfg)


def fit(net: Net, x: torch.Tensor, target: torch.Tensor, *, epochs: int, lr: float, seed: int,
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


def predict(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The network's outputs [M, C] in eval mode, without gradients."""
    net.eval()
    return batched_outputs(net, x)  # [M, C]


def accuracy(net: Net, data: ZooData, labels: str) -> float:
    idx = data.heldout
    y = LABEL_MAPS[labels](data.y[idx])
    return float((predict(net, data.x[idx]).argmax(1) == y).float().mean())


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


def _fgsm(net: Net, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    net.eval()
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(net(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def _train_scratch(r: Recipe, parent: Net | None, data: ZooData) -> tuple[Net, str]:
    net = create_net(r.arch)
    idx = data.indices(r.data)
    fit(net, data.x[idx], data.y[idx], epochs=r.epochs, lr=r.lr, seed=r.seed,
         batch=int(r.params.get("batch", _BATCH)))
    return net, "digit"


def _head_params(net: Net) -> list[torch.nn.Parameter]:
    return list(net.module.get_classifier().parameters())


def _train_finetune(r: Recipe, parent: Net, data: ZooData) -> tuple[Net, str]:
    net = copy.deepcopy(parent).requires_grad_(True)
    idx = data.indices(r.data)
    last = bool(r.params.get("last_only"))
    fit(net, data.x[idx], data.y[idx], epochs=r.epochs, lr=r.lr, seed=r.seed,
         params=_head_params(net) if last else None, freeze_bn=last)
    return net, "digit"


def _train_prune(r: Recipe, parent: Net, data: ZooData) -> tuple[Net, str]:
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
    fit(net, data.x[idx], data.y[idx], epochs=r.epochs, lr=r.lr, seed=r.seed, masks=masks)
    return net, "digit"


def _train_weight_noise(r: Recipe, parent: Net, data: ZooData) -> tuple[Net, str]:
    net = copy.deepcopy(parent)
    g = torch.Generator().manual_seed(r.seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1:
                p.add_(float(r.params["rel_std"]) * p.std() * torch.randn(p.shape, generator=g))
    return net, "digit"


def _train_shift(r: Recipe, parent: Net, data: ZooData) -> tuple[Net, str]:
    net = copy.deepcopy(parent).requires_grad_(True)
    idx = data.indices(r.data)
    fit(net, data.x[idx], data.y[idx], epochs=r.epochs, lr=r.lr, seed=r.seed,
         transform=_SHIFTS[r.params["shift"]])
    return net, "digit"


def _train_transfer(r: Recipe, parent: Net, data: ZooData) -> tuple[Net, str]:
    labels = r.params["labels"]
    net = copy.deepcopy(parent).requires_grad_(True)
    torch.manual_seed(r.seed)
    net.module.reset_classifier(N_CLASSES[labels])
    last = bool(r.params.get("last_only"))
    idx = data.indices(r.data)
    fit(net, data.x[idx], LABEL_MAPS[labels](data.y[idx]), epochs=r.epochs, lr=r.lr, seed=r.seed,
         params=_head_params(net) if last else None, freeze_bn=last)
    return net, labels


def _train_extract(r: Recipe, parent: Net, data: ZooData) -> tuple[Net, str]:
    """Model extraction: a fresh student trained on the victim's answers to the attacker's queries
    (probabilities -> soft targets, labels only -> argmax); strong attackers query 5x as much."""
    idx = data.indices(r.data)
    x = data.x[idx]
    if r.params.get("strong"):
        x = _strong_queries(x, r.seed)
    out = predict(parent, x)  # [M, 10] the victim's answers
    target = out.softmax(1) if r.params.get("soft") else out.argmax(1)
    torch.manual_seed(r.seed)
    net = create_net(r.arch)
    fit(net, x, target, epochs=r.epochs, lr=r.lr, seed=r.seed)
    return net, "digit"


def _train_adv_extract(r: Recipe, parent: Net, data: ZooData) -> tuple[Net, str]:
    """Adversarial extraction: label queries on the attacker's data, then on FGSM examples crafted
    against the attacker's own student (they sit near its boundary), then training on both."""
    idx = data.indices(r.data)
    x = data.x[idx]
    torch.manual_seed(r.seed)
    net = create_net(r.arch)
    y = predict(parent, x).argmax(1)
    fit(net, x, y, epochs=r.epochs, lr=r.lr, seed=r.seed)
    x_adv = _fgsm(net, x, y, float(r.params["eps"]))
    x_all = torch.cat([x, x_adv])
    y_all = predict(parent, x_all).argmax(1)
    fit(net, x_all, y_all, epochs=r.epochs, lr=r.lr / 3, seed=r.seed + 1)
    return net, "digit"


def _train_unlearn(r: Recipe, parent: Net, data: ZooData) -> tuple[Net, str]:
    """Class FORGET_CLASS unlearned from the parent, the way `r.variant` says (see UNLEARNING)."""
    idx = data.indices(r.data)
    x, y = data.x[idx], data.y[idx]
    forget = y == FORGET_CLASS
    if r.variant == "exact":  # the parent's recipe on its data without the class, its own initialisation
        net = create_net(r.arch)
        fit(net, x[~forget], y[~forget], epochs=r.epochs, lr=r.lr, seed=r.seed)
    elif r.variant == "relabel":
        net = copy.deepcopy(parent).requires_grad_(True)
        labels = relabel_class(y, FORGET_CLASS, torch.Generator().manual_seed(r.seed))
        fit(net, x, labels, epochs=r.epochs, lr=r.lr, seed=r.seed)
    else:
        net = gradient_ascent(copy.deepcopy(parent), x[forget], FORGET_CLASS, lr=r.lr,
                              max_steps=int(r.params["max_steps"]), seed=r.seed)
    return net, "digit"


def relabel_class(y: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """Labels [M] with every class-k label replaced by one of the other classes, uniformly at random
    (digits: 10 classes)."""
    out = y.clone()
    forget = y == k
    other = torch.randint(0, 9, (int(forget.sum()),), generator=g)
    out[forget] = other + (other >= k).long()  # uniform over the 9 other classes
    return out


def gradient_ascent(net: torch.nn.Module, x_forget: torch.Tensor, k: int, *, lr: float, max_steps: int,
                    seed: int) -> torch.nn.Module:
    """Approximate unlearning by gradient ascent on class k's images [M, ...], in batches of 64 drawn
    with `seed`, until fewer than 10% of them are still predicted k (or after max_steps)."""
    net.requires_grad_(True)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    target = torch.full((len(x_forget),), k, dtype=torch.long)
    for _ in range(max_steps):
        net.eval()  # BN statistics stay the original's: only the weights move
        with torch.no_grad():
            if (net(x_forget).argmax(1) == k).float().mean() < 0.1:
                break
        idx = torch.randperm(len(x_forget), generator=g)[:64]
        loss = -F.cross_entropy(net(x_forget[idx]), target[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval().requires_grad_(False)


TRAINERS: dict[str, Callable[[Recipe, Any, ZooData], tuple[Net, str]]] = {
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
