"""The built-in zoo's recipes: which models it holds and how each is made (data, not code that trains).

Victims of two architectures; for each, the attack kinds of the SAC benchmark adapted to digits
(fine-tuning, fine-pruning, extraction from probabilities and from labels by a weak and a strong
attacker, adversarial extraction, transfer to another label space, fine-tuning on a shifted
domain, weight noise); independently trained models (other seeds, data splits, architectures)
split into a calibration set (what triage and anchor mining may look at) and a test set (what the
IP benchmark measures on); in the full zoo, the owner's own surrogate students and same-architecture
copies of the victim (both only for choosing triage's rule, never scored); and each victim's
owner's unlearners of class 9 (exact: retrained without it; relabel and ascent: approximate), the
Unlearning page's examples (the small zoo has the first victim's).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..engine.errors import UserError
from ..engine.models import InputConfig

SIZES = ("small", "full")
ROLES = ("victim", "derived", "surrogate", "owner-copy", "independent-calibration", "independent-test", "unlearned")
# The Unlearning page's examples: the owner's unlearners of a victim, forgetting the last class as
# the paper (and `modelgif bench unlearning`) do. Not IP-bench models: they are neither attacks nor
# independent.
FORGET_CLASS = 9
UNLEARNING = ("exact", "relabel", "ascent")
# Bumped when a recipe's meaning changes, so old folders are rebuilt instead of silently reused.
RECIPE_VERSION = 1
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
    method: str  # a key of TRAINERS
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
    # The owner's own copies of the victim (owner's data, the weight-keeping attack recipes): the choice set's
    # same-architecture positives, so a rule's weight-space stage can be chosen without the test models.
    copies = [("finetune-all", "finetune", "", tune), ("prune", "prune", "", {"params": {"amount": 0.6}, **tune}),
              ("weight-noise", "weight-noise", "", {"epochs": 0, "params": {"rel_std": 0.075}})]
    copies += [("shift", "shift", s, {"params": {"shift": s}, **tune}) for s in ("noise", "blur", "invert")]
    for idx, (kind, method, variant, how) in enumerate(copies):
        suffix = f"-{variant}" if variant else ""
        out.append(Recipe(name=f"{v}-owner-{kind}{suffix}", role="owner-copy", arch=v, method=method,
                          family=vic, attack=kind, variant=variant, parent=vic, data="owner",
                          seed=97_000 + 10 * idx + VICTIMS.index(v), **copy.deepcopy(how)))
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
# More references for the architectures the list above gives 3-4 independents (ByobNet, ConvNeXt, ViT: the
# cross-architecture students' and the ViT suspects' references), so every architecture has at least 7.
# Full zoo only, and all on the test side: added after triage's rules were chosen on the calibration split.
_MORE_REFERENCES = [
    ("byobnet", "half-8"), ("convnext", "pool"), ("vit", "half-9"), ("byobnet", "owner"),
    ("convnext", "owner"), ("vit", "pool"), ("byobnet", "attacker"), ("convnext", "half-10"),
    ("vit", "owner"), ("convnext", "attacker"), ("vit", "attacker"), ("byobnet", "pool"),
]


# More calibration references, so a leak-free choice of triage's rule sees 7 or more independents of every
# architecture (_INDEPENDENT gives the calibration half 1-5 of each) and over a thousand null pairs, enough to
# see a false-alarm rate near alpha. Full zoo only; the calibration side, so no test model enters a choice.
_MORE_CALIBRATION = [
    ("effnet", "owner"), ("convnext", "attacker"), ("vit", "pool"), ("byobnet", "half-11"),
    ("effnet", "attacker"), ("convnext", "owner"), ("vit", "half-12"), ("resnet", "pool"),
    ("effnet", "half-13"), ("convnext", "pool"), ("vit", "owner"), ("byobnet", "attacker"),
    ("effnet", "pool"), ("convnext", "half-14"), ("vit", "attacker"), ("resnet", "half-15"),
    ("effnet", "owner"), ("convnext", "attacker"), ("byobnet", "owner"), ("vit", "half-16"),
    ("effnet", "half-17"), ("convnext", "owner"), ("byobnet", "pool"),
]


def _independent_recipes(full: bool) -> list[Recipe]:
    out = []
    listed = (_INDEPENDENT + _MORE_REFERENCES + _MORE_CALIBRATION if full
              else _INDEPENDENT[:_SMALL_INDEPENDENT])
    first_added_calibration = len(_INDEPENDENT) + len(_MORE_REFERENCES)
    for i, (arch, data) in enumerate(listed):
        calibration = (i % 2 == 0 and i < len(_INDEPENDENT)) or i >= first_added_calibration
        split = "calibration" if calibration else "test"
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


def recipe_keys(size: str = "small") -> dict[str, str]:
    """Each model's recipe key, its parent's key folded in (what a built folder's config records)."""
    keys: dict[str, str] = {}
    for r in recipes(size):
        keys[r.name] = r.key(keys[r.parent] if r.parent else "")
    return keys
