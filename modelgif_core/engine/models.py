"""Model loading: timm Hub names, `local-dir:` folders and checkpoint files, safely, with fingerprints.

Every loaded model is a `ModelHandle`: the module (eval mode, parameters frozen), its input config
from timm's `pretrained_cfg`, and a fingerprint (sha256 over architecture, input config and weights)
that keys every cache. Calling the handle on pixel-space images in [0, 1] applies the model's own
preprocessing *inside* the differentiated function (DESIGN §1).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .errors import UserError
from .registry import registered_schemes, resolve_scheme

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
# Keys under which training scripts commonly nest the weights, searched in this order.
_NESTED_STATE_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "module", "net")
# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale.
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)
_INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "area")


@dataclass(frozen=True)
class InputConfig:
    """The model's own preprocessing P_f (DESIGN §1), read from timm's pretrained_cfg."""

    input_size: tuple[int, int, int] = (3, 224, 224)  # (C, H, W) the network expects
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)  # timm's IMAGENET_DEFAULT_MEAN
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"  # resize mode into input_size (antialiased, as torchvision)

    def __post_init__(self) -> None:
        size = tuple(int(v) for v in self.input_size)
        if len(size) != 3 or min(size) <= 0:
            raise UserError(f"input_size must be (channels, height, width) > 0; got {self.input_size}.")
        channels = size[0]
        mean, std = _per_channel(self.mean, channels, "mean"), _per_channel(self.std, channels, "std")
        if any(s <= 0 for s in std):
            raise UserError(f"std must be positive; got {self.std}.")
        interpolation = str(self.interpolation).lower()
        if interpolation not in _INTERPOLATIONS:
            interpolation = "bilinear"  # timm uses 'random' etc. for training only
        object.__setattr__(self, "input_size", size)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "interpolation", interpolation)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_pretrained_cfg(cls, cfg: dict[str, Any], **overrides: Any) -> InputConfig:
        values = {
            "input_size": cfg.get("input_size") or cls.input_size,
            "mean": cfg.get("mean") or cls.mean,
            "std": cfg.get("std") or cls.std,
            "interpolation": cfg.get("interpolation") or cls.interpolation,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if overrides.get("input_size") is not None and len(tuple(overrides["input_size"])) == 2:
            values["input_size"] = (int(cfg.get("input_size", (3,))[0]), *overrides["input_size"])
        return cls(**values)


def _per_channel(values: Any, channels: int, what: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in (values if isinstance(values, (list, tuple)) else [values]))
    if len(values) == channels:
        return values
    if len(values) == 1:
        return values * channels
    if channels == 1 and len(values) == 3:
        # A one-channel model given RGB statistics: use their luma combination.
        return (sum(w * v for w, v in zip(_GRAY_WEIGHTS, values)),)
    raise UserError(f"{what} has {len(values)} values but the model takes {channels} channels.")


def preprocess(x: torch.Tensor, cfg: InputConfig) -> torch.Tensor:
    """P_f: pixel-space RGB images [B, 3, H, W] in [0, 1] -> the network's input, differentiably."""
    channels, height, width = cfg.input_size
    if x.shape[-2:] != (height, width):
        mode = cfg.interpolation
        kwargs = {"align_corners": False, "antialias": True} if mode in ("bilinear", "bicubic") else {}
        x = F.interpolate(x, size=(height, width), mode=mode, **kwargs)
    if channels == 1:
        weights = x.new_tensor(_GRAY_WEIGHTS).view(1, 3, 1, 1)
        x = (x * weights).sum(dim=1, keepdim=True)  # [B, 1, H, W]
    elif channels != 3:
        raise UserError(f"Models with {channels} input channels cannot read RGB anchors; use 1 or 3.")
    mean = x.new_tensor(cfg.mean).view(1, channels, 1, 1)
    std = x.new_tensor(cfg.std).view(1, channels, 1, 1)
    return (x - mean) / std


@dataclass(eq=False)
class ModelHandle:
    """A loaded model: call it on pixel-space images in [0, 1] to get its outputs."""

    module: torch.nn.Module
    input_cfg: InputConfig
    fingerprint: str
    name: str
    arch: str
    num_classes: int
    spec: str
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_module(cls, module: torch.nn.Module, arch: str, input_cfg: InputConfig, name: str, spec: str,
                    meta: dict[str, Any] | None = None) -> ModelHandle:
        """A handle for a module built in memory: put in eval mode, parameters frozen, fingerprinted."""
        module.eval()
        module.requires_grad_(False)  # fields need gradients w.r.t. inputs only
        num_classes = int(getattr(module, "num_classes", 0) or 0)
        return cls(module=module, input_cfg=input_cfg, fingerprint=fingerprint(module, arch, input_cfg),
                   name=name, arch=arch, num_classes=num_classes, spec=spec, meta=dict(meta or {}))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.module(preprocess(x, self.input_cfg))
        return first_tensor(out)

    def describe(self) -> dict[str, Any]:
        n_params = sum(p.numel() for p in self.module.parameters())
        return {"name": self.name, "spec": self.spec, "arch": self.arch,
                "num_classes": self.num_classes, "params": n_params,
                "fingerprint": self.fingerprint, **self.input_cfg.to_dict(), **self.meta}


def first_tensor(out: Any) -> torch.Tensor:
    """Models may return tuples or dicts (aux heads, distillation tokens): use the first tensor."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise UserError(f"The model returned {type(out).__name__}, not a tensor; ModelGiF needs tensor outputs.")


@torch.no_grad()
def batched_outputs(model: Any, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The model's outputs [M, ...] float32 on `images` [M, 3, H, W], `batch` images per forward, without
    gradients: the one batched forward for targets, probes, accuracies and training answers."""
    return torch.cat([first_tensor(model(images[s:s + batch])).float() for s in range(0, images.shape[0], batch)])


# ----------------------------------------------------------------------------------- loading


def load_model(
    spec: str,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    input_size: tuple[int, ...] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    interpolation: str | None = None,
    model_args: dict[str, Any] | None = None,
    name: str | None = None,
) -> ModelHandle:
    """Load a model from a spec (DESIGN §3) and return a frozen, fingerprinted handle.

    spec: a timm name (`resnet18`, `resnet18.a1_in1k`), `hf-hub:timm/...`, `local-dir:PATH`,
    `zoo:NAME` (a built-in zoo model) or a checkpoint file (.safetensors / .pt / .pth / .bin)
    with `arch` given or a config.json beside it. The keyword arguments override the input config.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise UserError("A model spec must be a non-empty string such as 'resnet18' or 'local-dir:PATH'.")
    spec = spec.strip()
    overrides = {"input_size": input_size, "mean": mean, "std": std, "interpolation": interpolation}
    resolved = resolve_scheme(spec)  # e.g. zoo:NAME -> local-dir:PATH, registered by the zoo
    target = resolved if resolved is not None else spec
    if target.startswith("local-dir:"):
        handle = _load_local_dir(Path(target[len("local-dir:"):]).expanduser(), overrides)
    elif target.lower().endswith(CHECKPOINT_SUFFIXES) or Path(target).expanduser().is_file():
        handle = _load_checkpoint(Path(target).expanduser(), arch, num_classes, overrides, model_args)
    else:
        handle = _load_hub(target, num_classes, overrides, model_args)
    handle.spec = spec
    if name:
        handle.name = name
    return handle


def as_handle(model: str | ModelHandle) -> ModelHandle:
    """A loaded model from a spec, or the handle itself: what functions taking either call first."""
    if isinstance(model, ModelHandle):
        return model
    if not isinstance(model, str):
        raise UserError(f"Expected a model spec or a loaded model, got {type(model).__name__}.")
    return load_model(model)


def _create(arch: str, **kwargs: Any) -> torch.nn.Module:
    import timm

    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('.')[0][:6]}*")[:5]
        hint = f" Similar names: {', '.join(close)}." if close else ""
        raise UserError(f"Unknown architecture {arch!r}: it is not in timm's registry "
                        f"(see timm.list_models()).{hint}")
    try:
        return timm.create_model(arch, pretrained=False, **kwargs)
    except TypeError as err:
        raise UserError(f"Architecture {arch!r} does not accept these model arguments {kwargs}: {err}.") from None


def fingerprint(module: torch.nn.Module, arch: str, input_cfg: InputConfig) -> str:
    """sha256 over architecture, input config and every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"arch": arch, "input": input_cfg.to_dict()}, sort_keys=True).encode())
    for key, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _unknown_model_sentence(spec: str) -> str:
    schemes = "".join(f"'{name}:NAME', " for name in registered_schemes())
    return (f"Unknown model {spec!r}: not a timm architecture (see timm.list_models()), nor "
            f"'local-dir:PATH', {schemes}'hf-hub:ORG/NAME' "
            f"or an existing checkpoint file ({', '.join(CHECKPOINT_SUFFIXES)}).")


def _load_hub(spec: str, num_classes: int | None, overrides: dict, model_args: dict | None) -> ModelHandle:
    import timm
    from timm.models import get_pretrained_cfg, parse_model_name, split_model_name_tag

    try:
        source, model_id = parse_model_name(spec)
    except ValueError:  # an unknown "prefix:" - timm's sentence would not name the zoo's scheme
        raise UserError(_unknown_model_sentence(spec)) from None
    if source is None:
        arch_name, _tag = split_model_name_tag(model_id)
        if not timm.is_model(arch_name):
            raise UserError(_unknown_model_sentence(spec))
        try:
            cfg = get_pretrained_cfg(model_id)
        except RuntimeError:  # timm's "Invalid pretrained tag"
            tags = timm.list_pretrained(f"{arch_name}.*")[:6]
            raise UserError(f"{spec!r} is not a pretrained tag of {arch_name!r}; "
                            f"valid ones include {', '.join(tags) or 'none'}.") from None
        if cfg is None:
            raise UserError(f"timm has no pretrained weights for {spec!r}; list them with "
                            "timm.list_models(pretrained=True), or load your own checkpoint file.")
        repo = cfg.hf_hub_id
    else:
        repo = model_id.split("@")[0]
    _fail_fast_if_offline(spec, repo)
    kwargs = dict(model_args or {})
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        module = timm.create_model(spec, pretrained=True, **kwargs)
    except Exception as err:  # network, cache and hub errors all become one sentence
        raise UserError(
            f"Could not load pretrained weights for {spec!r} ({repo or 'no Hub repo'}): "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}. "
            f"{_offline_hint(repo)}") from None
    pretrained_cfg = dict(getattr(module, "pretrained_cfg", {}) or {})
    input_cfg = InputConfig.from_pretrained_cfg(pretrained_cfg, **overrides)
    arch = pretrained_cfg.get("architecture") or spec
    return ModelHandle.from_module(module, arch, input_cfg, name=spec.split("/")[-1], spec=spec)


def _offline_hint(repo: str | None) -> str:
    if not repo:
        return "Save the weights as a local checkpoint and load that file instead."
    return (f"Download them where there is internet (`hf download {repo}`) and copy the Hugging Face "
            "cache to this machine ($HF_HOME), or save them as a 'local-dir:' folder.")


def _hub_offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return env or bool(constants.HF_HUB_OFFLINE)


def _fail_fast_if_offline(spec: str, repo: str | None) -> None:
    """Offline, check the cache first so the user gets one sentence now, not minutes of retries."""
    if not _hub_offline():
        return
    if not repo:
        raise UserError(f"The pretrained weights of {spec!r} are not on the Hugging Face Hub and the "
                        "Hub is offline (HF_HUB_OFFLINE=1); load a local checkpoint file instead.")
    from huggingface_hub import try_to_load_from_cache

    repo_id, _, revision = repo.partition("@")
    for filename in ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(repo_id, filename, revision=revision or None), str):
            return
    raise UserError(f"The weights of {spec!r} ({repo_id}) are not in the local Hugging Face cache "
                    f"and the Hub is offline (HF_HUB_OFFLINE=1). {_offline_hint(repo_id)}")


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"Cannot read {path}: {err}; it must be timm's config.json (JSON).") from None
    if not isinstance(config, dict):
        raise UserError(f"{path} must hold a JSON object with 'architecture' and 'pretrained_cfg'.")
    if "pretrained_cfg" not in config and "architecture" in config:
        # timm's legacy single-dict layout
        config = {"architecture": config.get("architecture"), "num_classes": config.get("num_classes"),
                  "pretrained_cfg": config}
    return config


def _load_local_dir(folder: Path, overrides: dict) -> ModelHandle:
    if not folder.is_dir():
        raise UserError(f"No such folder {str(folder)!r}; a local-dir: spec needs a folder with "
                        "config.json and model.safetensors (timm's layout).")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise UserError(f"{folder} has no config.json; timm's layout needs config.json "
                        "(architecture, num_classes, pretrained_cfg) beside model.safetensors.")
    config = _read_config(config_path)
    weights = next((folder / n for n in ("model.safetensors", "pytorch_model.bin", "model.pt")
                    if (folder / n).is_file()), None)
    if weights is None:
        raise UserError(f"{folder} has no model.safetensors (or pytorch_model.bin) next to config.json.")
    arch = config.get("architecture")
    if not arch:
        raise UserError(f"{config_path} does not name an 'architecture'.")
    pretrained_cfg = dict(config.get("pretrained_cfg") or {})
    state = read_state_dict(weights)
    num_classes = config.get("num_classes", pretrained_cfg.get("num_classes"))
    module = _build_and_load(arch, state, num_classes, pretrained_cfg, config.get("model_args"),
                             source=str(weights))
    input_cfg = InputConfig.from_pretrained_cfg(pretrained_cfg, **overrides)
    meta = dict(config.get("modelgif") or {})
    return ModelHandle.from_module(module, arch, input_cfg, name=meta.get("name") or folder.name,
                   spec=f"local-dir:{folder}", meta=meta)


def _load_checkpoint(path: Path, arch: str | None, num_classes: int | None, overrides: dict,
                     model_args: dict | None) -> ModelHandle:
    if not path.is_file():
        raise UserError(f"No such checkpoint file {str(path)!r}.")
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise UserError(f"{path.name}: unsupported checkpoint type; use .safetensors (preferred) or a "
                        ".pt/.pth/.bin state dict.")
    beside = path.parent / "config.json"
    config = _read_config(beside) if beside.is_file() else {}
    state = read_state_dict(path)  # first: a corrupt or hostile file is said so before anything is asked
    arch = arch or config.get("architecture")
    if not arch:
        raise UserError(f"{path.name} holds only weights: give its timm architecture "
                        "(arch='resnet18' / --arch resnet18) or put timm's config.json beside it.")
    pretrained_cfg = dict(config.get("pretrained_cfg") or {})
    if not pretrained_cfg:
        pretrained_cfg = _default_pretrained_cfg(arch)
    num_classes = num_classes if num_classes is not None else config.get("num_classes")
    args = {**(config.get("model_args") or {}), **(model_args or {})}
    if overrides.get("input_size") is not None and len(tuple(overrides["input_size"])) == 3:
        args.setdefault("in_chans", int(tuple(overrides["input_size"])[0]))
    module = _build_and_load(arch, state, num_classes, pretrained_cfg, args, source=path.name)
    if "in_chans" in args and overrides.get("input_size") is None:
        size = pretrained_cfg.get("input_size") or (3, 224, 224)
        pretrained_cfg["input_size"] = (int(args["in_chans"]), *size[1:])
    input_cfg = InputConfig.from_pretrained_cfg(pretrained_cfg, **overrides)
    return ModelHandle.from_module(module, arch, input_cfg, name=path.stem, spec=str(path))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read weights safely: safetensors, or a pickle through torch.load(weights_only=True) only."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as err:  # SafetensorError, OSError, header decode errors
            raise UserError(f"{path.name} is not a readable safetensors file (corrupt or truncated: "
                            f"{str(err).splitlines()[0]}); export it again.") from None
    else:
        try:
            # weights_only=True: tensors and plain containers only; never retried unsafely. torch warns
            # about a plain pickle's protocol before refusing it; the refusal below says all the user needs.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
                state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=False)
        except pickle.UnpicklingError as err:
            detail = _unpickling_detail(str(err))
            if "global" in detail.lower():
                what = detail.split()[-1] if detail.startswith("GLOBAL") else "code"
                raise UserError(f"Refused {path.name}: unpickling it would import {what}, which could "
                                "run code; only plain tensors are opened (weights_only=True) — save the "
                                "state dict with safetensors instead.") from None
            raise UserError(f"{path.name} is not a readable PyTorch checkpoint (corrupt or truncated: "
                            f"{detail}); export it again, ideally as .safetensors.") from None
        except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError) as err:
            raise UserError(f"{path.name} is not a readable PyTorch checkpoint (corrupt or truncated: "
                            f"{str(err).splitlines()[0][:160] if str(err) else type(err).__name__}).") from None
    return _find_state_dict(state, path.name)


def _unpickling_detail(message: str) -> str:
    """The one informative line of torch's weights_only error (drop its advice to load unsafely)."""
    for line in message.splitlines()[1:]:
        line = line.strip()
        if line and not line.startswith(("Please file", "Check the documentation", "WeightsUnpickler")):
            m = re.search(r"unsupported GLOBAL (\S+)", line)
            return f"GLOBAL {m.group(1)}" if m else line[:160]
    return "unsupported content"


def _find_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj
    elif isinstance(obj, dict):
        nested = next((obj[k] for k in _NESTED_STATE_KEYS if isinstance(obj.get(k), dict)), None)
        if nested is None:
            raise UserError(f"{source} holds no state dict of tensors (keys: {sorted(obj)[:8]}); "
                            "expected weights, or weights under 'state_dict'/'model'/'state_dict_ema'.")
        return _find_state_dict(nested, source)
    else:
        raise UserError(f"{source} holds a {type(obj).__name__}, not a state dict; save "
                        "model.state_dict() (ideally with safetensors).")
    prefix = "module."  # DataParallel / DDP wrappers
    if all(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def _default_pretrained_cfg(arch: str) -> dict[str, Any]:
    """timm's default pretrained_cfg of an architecture (no download), {} when it has none."""
    from timm.models import get_pretrained_cfg

    default = get_pretrained_cfg(arch)
    return default.to_dict() if default is not None else {}


def _layer_names(arch: str, pretrained_cfg: dict, key: str) -> list[str]:
    """The layer names a pretrained_cfg gives under `key` ('classifier', 'first_conv'), else timm's."""
    names = pretrained_cfg.get(key)
    if names is None:
        names = _default_pretrained_cfg(arch).get(key)
    return [names] if isinstance(names, str) else list(names or [])


def _infer_num_classes(arch: str, state: dict[str, torch.Tensor], pretrained_cfg: dict) -> int | None:
    """num_classes from the classifier weights named by timm's pretrained_cfg ('fc', 'head.fc', ...)."""
    for name in _layer_names(arch, pretrained_cfg, "classifier"):
        weight = state.get(f"{name}.weight")
        if weight is not None and weight.dim() >= 1:
            return int(weight.shape[0])
        if any(k.startswith(f"{name}.") for k in state):
            continue
        return 0  # checkpoint without classifier: a headless model
    return None


def _infer_in_chans(arch: str, state: dict[str, torch.Tensor], pretrained_cfg: dict) -> int | None:
    for name in _layer_names(arch, pretrained_cfg, "first_conv"):
        weight = state.get(f"{name}.weight")
        if weight is not None and weight.dim() == 4:
            return int(weight.shape[1])
    return None


def _build_and_load(arch: str, state: dict[str, torch.Tensor], num_classes: int | None,
                    pretrained_cfg: dict, model_args: dict | None, source: str) -> torch.nn.Module:
    args = dict(model_args or {})
    if num_classes is None:
        num_classes = _infer_num_classes(arch, state, pretrained_cfg)
    if num_classes is not None:
        args["num_classes"] = int(num_classes)
    if "in_chans" not in args:
        in_chans = _infer_in_chans(arch, state, pretrained_cfg)
        if in_chans is not None and in_chans != 3:
            args["in_chans"] = in_chans
    module = _create(arch, **args)
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise UserError(
            f"The weights in {source} do not match {arch!r}: missing keys {_short(missing)}, "
            f"unexpected keys {_short(unexpected)}; check the architecture (and num_classes).")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise UserError(f"The weights in {source} have other shapes than {arch!r} with "
                        f"{args}: {_short(wrong)}; check num_classes, in_chans and model_args.")
    module.load_state_dict(state, strict=True)
    return module


def _short(items: list[str], limit: int = 6) -> str:
    if not items:
        return "none"
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return "[" + ", ".join(items[:limit]) + "]" + more


# ----------------------------------------------------------------------------------- saving


def save_model_dir(module: torch.nn.Module, path: str | Path, *, arch: str, num_classes: int,
                   input_cfg: InputConfig, model_args: dict[str, Any] | None = None,
                   extra: dict[str, Any] | None = None) -> Path:
    """Write a `local-dir:` folder in timm's layout: config.json + model.safetensors."""
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    # Tied or shared tensors cannot be saved twice by safetensors; clone them apart.
    seen: dict[int, str] = {}
    for key, tensor in state.items():
        ptr = tensor.untyped_storage().data_ptr() if tensor.numel() else -1
        if ptr in seen and ptr != -1:
            state[key] = tensor.clone()
        seen[ptr] = key
    pretrained_cfg = {**dict(getattr(module, "pretrained_cfg", {}) or {}), **input_cfg.to_dict()}
    pretrained_cfg = {k: v for k, v in pretrained_cfg.items() if _jsonable(v)}
    pretrained_cfg.update(num_classes=int(num_classes), architecture=arch)
    config = {"architecture": arch, "num_classes": int(num_classes),
              "model_args": dict(model_args or {}), "pretrained_cfg": pretrained_cfg,
              "modelgif": dict(extra or {})}
    tmp_weights = folder / ".model.safetensors.tmp"
    save_file(state, str(tmp_weights))
    # safetensors writes owner-only files (0600); a model folder is read by others too (the image's app runs
    # as any uid and read the shipped zoo's so), like the config.json beside it.
    os.chmod(tmp_weights, 0o644)
    os.replace(tmp_weights, folder / "model.safetensors")
    tmp_config = folder / ".config.json.tmp"
    tmp_config.write_text(json.dumps(config, indent=2))
    os.replace(tmp_config, folder / "config.json")
    return folder


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


# ----------------------------------------------------------------------------------- Hub browsing


def list_hub_models(pattern: str = "") -> list[str]:
    """timm's pretrained model names matching a substring or a glob (`*vit*`).

    A substring's matches come as a user searching for it expects: the architecture of that name
    first, then the names that start with it, then the rest (`resnet18` before `legacy_seresnet18`)."""
    import timm

    if any(c in pattern for c in "*?["):
        return timm.list_models(pattern, pretrained=True)
    names = timm.list_models(f"*{pattern}*" if pattern else "", pretrained=True)
    if not pattern:
        return names
    return sorted(names, key=lambda n: (n.split(".")[0] != pattern, not n.startswith(pattern)))


def hub_pretrained_cfg(name: str) -> dict[str, Any]:
    """The pretrained config timm would use for a Hub name (no download)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(re.sub(r"^hf[-_]hub:timm/", "", name))
    if cfg is None:
        raise UserError(f"timm has no pretrained config for {name!r}; see timm.list_models(pretrained=True).")
    return cfg.to_dict()
