"""Anchor sets: the shared RGB images in [0, 1] that every model's gradient field is taken at.

Specs (DESIGN §3), parsed by `load_anchors`:

    digits:N[:SEED]        N distinct held-out sklearn digits (never in the zoo's training pool)
    natural:N[:SEED]       seeded random square crops of photos shipped inside installed packages
    noise:N[:SEED]         uniform [0, 1) noise
    cutmix:BASE:N:SEED     CutMix of pairs of images of the anchor set BASE (itself a spec)
    dir:PATH               a folder of PNG/JPEG images in file-name order, pixels exactly value/255

SEED defaults to 0. `size` overrides the side of generated sets and resizes `dir:` images.
Every set is deterministic: the same spec and size give the same tensor and the same sha256, which
is computed over the pixels (shape + float32 bytes), so caches key on content, not on spelling.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UserError

# The held-out split (issue 3): the zoo trains only on the pool, anchors and tests use the rest.
DIGITS_SPLIT_SEED = 20231002
DIGITS_HELDOUT = 500
DIGITS_SIZE = 32
NATURAL_SIZE = 224
NOISE_SIZE = 32
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# A guard against specs that would silently allocate more than this (e.g. natural:1000000).
MAX_ANCHOR_BYTES = 4 << 30
# Natural crops cover between this fraction and all of the photo's shorter side, so they vary in
# scale (whole scenes down to object parts) as well as in position.
_CROP_MIN_FRACTION = 0.25

_INT = re.compile(r"\d+")


@dataclass(frozen=True, eq=False)
class AnchorSet:
    """N anchor images [N, 3, H, W] float32 in [0, 1] with their content hash, spec and names."""

    images: torch.Tensor  # [N, 3, H, W] float32 in [0, 1], contiguous
    sha256: str  # sha256 over shape + float32 bytes: the content, not the spec
    spec: str  # the normalised spec, e.g. "digits:64:0"
    labels: torch.Tensor | None  # [N] int64 class labels where the source has them, else None
    names: tuple[str, ...]  # one short name per anchor, e.g. "digits#1234" or a file name

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @classmethod
    def from_images(cls, images: torch.Tensor, spec: str, labels: torch.Tensor | None = None,
                    names: list[str] | None = None) -> AnchorSet:
        """An anchor set of `images` [N, 3, H, W] (clamped to [0, 1]) with its content hash."""
        images = images.float().clamp(0.0, 1.0).contiguous()  # [N, 3, H, W]
        if images.dim() != 4 or images.shape[1] != 3:
            raise UserError(f"Anchor images must be RGB [N, 3, H, W]; got {tuple(images.shape)}.")
        names = list(names) if names is not None else [f"{spec}#{i}" for i in range(images.shape[0])]
        assert len(names) == images.shape[0]
        assert labels is None or labels.shape == (images.shape[0],)
        if labels is not None:
            labels = labels.to(torch.int64).contiguous()
        return cls(images, anchor_sha256(images), spec, labels, tuple(names))


def anchor_sha256(images: torch.Tensor) -> str:
    """sha256 over b"float32", the shape as "N,C,H,W" and the little-endian float32 pixel bytes."""
    arr = np.ascontiguousarray(images.detach().cpu().numpy(), dtype="<f4")
    h = hashlib.sha256(b"float32")
    h.update(",".join(str(s) for s in arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------- digits


@functools.lru_cache(maxsize=4)
def _digits_at(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.from_numpy(np.asarray(data.images, dtype=np.float32) / 16.0)[
        :, None
    ]  # [1797, 1, 8, 8]
    # The zoo's training inputs are made the same way, so anchors live in the models' own domain.
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    x = x.clamp_(0.0, 1.0).repeat(1, 3, 1, 1).contiguous()  # [1797, 3, size, size]
    y = torch.from_numpy(np.asarray(data.target, dtype=np.int64))  # [1797]
    return x, y


@functools.lru_cache(maxsize=1)
def digits_basis() -> torch.Tensor:
    """Orthonormal basis [3072, 64] of the subspace the 32x32 RGB digits live in: 8x8 gray images,
    bilinearly upsampled (align_corners=False, as digits_dataset) and repeated over RGB."""
    eye = torch.eye(64, dtype=torch.float64).reshape(64, 1, 8, 8)
    up = F.interpolate(eye, size=(32, 32), mode="bilinear", align_corners=False).reshape(64, 1, 1024)
    q, _ = torch.linalg.qr(up.expand(64, 3, 1024).reshape(64, 3072).T)  # [3072, 64]
    return q.float()


def on_digits_grid(phi: torch.Tensor) -> torch.Tensor:
    """A field [N, K, 3*S*S] on square RGB digits seen at their native 8x8 gray grid: [N, K, 64].

    sklearn's digits are 8x8 images upsampled to SxS RGB, so a model's gradient components outside
    that 64-dimensional subspace were never constrained by training; summing the channels and the
    (S/8)x(S/8) blocks (the adjoint of the upsampling, up to smoothing) keeps what the data fixed.
    """
    n, k, d = phi.shape
    side = int(round(math.sqrt(d / 3)))
    g = phi.reshape(n * k, 3, side, side).sum(1, keepdim=True)  # [N*K, 1, S, S]
    return F.avg_pool2d(g, side // 8).reshape(n, k, 64)


def digits_dataset() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 sklearn digits as [1797, 3, 32, 32] float32 in [0, 1] and their labels [1797] int64.

    8x8 values / 16, upscaled with bilinear interpolation (align_corners=False, no antialias),
    clamped, replicated to RGB. Cached in-process; the caller gets its own copies.
    """
    x, y = _digits_at(DIGITS_SIZE)
    return x.clone(), y.clone()


@functools.lru_cache(maxsize=1)
def _split() -> tuple[torch.Tensor, torch.Tensor]:
    perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(1797)
    n_pool = 1797 - DIGITS_HELDOUT
    return torch.from_numpy(perm[:n_pool].copy()), torch.from_numpy(perm[n_pool:].copy())


def digits_split() -> tuple[torch.Tensor, torch.Tensor]:
    """(train_pool_idx [1297], heldout_idx [500]) into `digits_dataset()`, int64, disjoint.

    A fixed permutation (numpy default_rng(20231002)) of the 1797 digits: the first 1297 are the
    pool the zoo trains on, the last 500 are held out for anchors and tests (in permutation order).
    """
    pool, held = _split()
    return pool.clone(), held.clone()


def _digits(n: int, seed: int, size: int | None, spec: str) -> AnchorSet:
    if n > DIGITS_HELDOUT:
        raise UserError(
            f"digits: asks for {n} anchors but only {DIGITS_HELDOUT} held-out digits exist; "
            f"use at most digits:{DIGITS_HELDOUT}."
        )
    x, y = _digits_at(size or DIGITS_SIZE)
    _, held = _split()
    # A permutation prefix, so digits:8:S is contained in digits:64:S (nested anchor budgets).
    idx = held[torch.from_numpy(np.random.default_rng(seed).permutation(DIGITS_HELDOUT)[:n])]
    return AnchorSet.from_images(x[idx], spec, y[idx], [f"digits#{int(i)}" for i in idx])


# ---------------------------------------------------------------------------------------- natural


def _sklearn_photos() -> list[tuple[str, np.ndarray]]:
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    return [(Path(f).stem, img) for f, img in zip(data.filenames, data.images, strict=True)]


def _skimage_photos() -> list[tuple[str, np.ndarray]]:
    import skimage.data as sd

    # Photographs that ship inside scikit-image's wheel (no pooch download): checked offline.
    loaders: dict[str, Callable[[], np.ndarray]] = {
        "astronaut": sd.astronaut,
        "camera": sd.camera,
        "chelsea": sd.chelsea,
        "coffee": sd.coffee,
        "rocket": sd.rocket,
        "coins": sd.coins,
        "moon": sd.moon,
        "grass": sd.grass,
        "gravel": sd.gravel,
        "brick": sd.brick,
        "hubble_deep_field": sd.hubble_deep_field,
        "motorcycle": lambda: sd.stereo_motorcycle()[0],
    }
    return [(name, load()) for name, load in loaders.items()]


@functools.lru_cache(maxsize=1)
def natural_sources() -> tuple[tuple[str, np.ndarray], ...]:
    """The photos `natural:` crops from, as (name, uint8 [H, W, 3]) read-only, in a fixed order."""
    out = []
    for name, img in _sklearn_photos() + _skimage_photos():
        img = np.asarray(img)
        assert img.dtype == np.uint8, (name, img.dtype)
        if img.ndim == 2:  # grayscale photos (camera, coins, ...) -> RGB
            img = np.repeat(img[:, :, None], 3, axis=2)
        img = np.ascontiguousarray(img[:, :, :3])
        img.setflags(write=False)
        out.append((name, img))
    return tuple(out)


def _natural(n: int, seed: int, size: int | None, spec: str) -> AnchorSet:
    side_out = size or NATURAL_SIZE
    _check_budget(n, side_out, side_out, spec)
    sources = natural_sources()
    rng = np.random.default_rng(seed)
    # Cycle through shuffled photos so that a small set still covers many different photos.
    rounds = -(-n // len(sources))
    order = np.concatenate([rng.permutation(len(sources)) for _ in range(rounds)])[:n]
    images, names = [], []
    for src in order:
        name, img = sources[int(src)]
        h, w = img.shape[:2]
        side = round(min(h, w) * float(rng.uniform(_CROP_MIN_FRACTION, 1.0)))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(0, w - side + 1))
        crop = torch.from_numpy(img[top : top + side, left : left + side].copy())  # [s, s, 3] uint8
        x = crop.permute(2, 0, 1)[None].float() / 255.0  # [1, 3, s, s]
        images.append(_resize(x, side_out))
        names.append(f"{name}[{top}:{top + side},{left}:{left + side}]")
    return AnchorSet.from_images(torch.cat(images), spec, None, names)


def _resize(x: torch.Tensor, side: int) -> torch.Tensor:
    """[B, 3, h, w] -> [B, 3, side, side] as torchvision's Resize (DESIGN §1); no-op if equal."""
    if tuple(x.shape[-2:]) == (side, side):
        return x
    x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp_(0.0, 1.0)


# ---------------------------------------------------------------------------------------- noise


def _noise(n: int, seed: int, size: int | None, spec: str) -> AnchorSet:
    side = size or NOISE_SIZE
    _check_budget(n, side, side, spec)
    x = np.random.default_rng(seed).random((n, 3, side, side), dtype=np.float32)
    return AnchorSet.from_images(torch.from_numpy(x), spec, None, [f"noise#{i}" for i in range(n)])


# ---------------------------------------------------------------------------------------- cutmix


def cutmix_box(h: int, w: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """CutMix's box (Yun et al. 2019) as (top, bottom, left, right), half-open.

    Side ratio sqrt(1 - lam) of the image's sides, a uniform centre, clipped to the image.
    """
    ratio = float(np.sqrt(1.0 - lam))
    cut_h, cut_w = int(h * ratio), int(w * ratio)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    top, bottom = int(np.clip(cy - cut_h // 2, 0, h)), int(np.clip(cy + cut_h // 2, 0, h))
    left, right = int(np.clip(cx - cut_w // 2, 0, w)), int(np.clip(cx + cut_w // 2, 0, w))
    return top, bottom, left, right


def _cutmix(base: AnchorSet, n: int, seed: int, spec: str) -> AnchorSet:
    m = len(base)
    if m < 2:
        raise UserError(f"cutmix: needs a base set of at least 2 images; {base.spec!r} has {m}.")
    _, _, h, w = base.images.shape
    _check_budget(n, h, w, spec)
    rng = np.random.default_rng(seed)
    out = base.images.new_empty((n, 3, h, w))  # [N, 3, H, W]
    labels = torch.empty(n, dtype=torch.int64) if base.labels is not None else None
    names = []
    for t in range(n):
        i = int(rng.integers(m))
        j = int(rng.integers(m - 1))
        j += j >= i  # a different image, uniformly
        lam = float(rng.beta(1.0, 1.0))
        top, bottom, left, right = cutmix_box(h, w, lam, rng)
        out[t] = base.images[i]
        out[t, :, top:bottom, left:right] = base.images[j, :, top:bottom, left:right]
        pasted = (bottom - top) * (right - left)
        if labels is not None:
            # The label of the larger part; a tie keeps the image the box was pasted into.
            labels[t] = base.labels[j] if 2 * pasted > h * w else base.labels[i]
        names.append(f"cutmix({base.names[i]}+{base.names[j]}[{top}:{bottom},{left}:{right}])")
    return AnchorSet.from_images(out, spec, labels, names)


# ---------------------------------------------------------------------------------------- dir


def _read_image(path: Path) -> torch.Tensor:
    """One PNG/JPEG as [3, H, W] float32, exactly value/255 (16-bit grayscale: value/65535).

    Alpha is dropped, not composited (the stored colour values are the pixels); grayscale and
    palette images are expanded to RGB; EXIF orientation is not applied (as PIL and timm load).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                gray = np.asarray(img, dtype=np.float64) / 65535.0
                arr = np.repeat(np.clip(gray, 0.0, 1.0)[:, :, None], 3, axis=2).astype(np.float32)
                return torch.from_numpy(arr).permute(2, 0, 1).contiguous()
            if img.mode in ("P", "PA"):
                img = img.convert("RGBA")  # palette transparency needs RGBA on the way to RGB
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)  # [H, W, 3]
    except (
        OSError,
        UnidentifiedImageError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as e:
        raise UserError(
            f"Cannot read image {str(path)!r}: it is corrupt or not a PNG/JPEG ({e})."
        ) from e
    x = torch.from_numpy(rgb.astype(np.float32) / np.float32(255.0))  # [H, W, 3], exact value/255
    return x.permute(2, 0, 1).contiguous()


def _dir(path_text: str, size: int | None) -> AnchorSet:
    if not path_text:
        raise UserError("dir: needs a folder, e.g. dir:./my_anchors.")
    folder = Path(os.path.abspath(os.path.expanduser(path_text)))
    spec = f"dir:{folder}"
    if not folder.exists():
        raise UserError(f"Anchor folder {str(folder)!r} does not exist; check the path after dir:.")
    if not folder.is_dir():
        raise UserError(f"{str(folder)!r} is a file, not a folder; dir: needs a folder of images.")
    # Hidden files are skipped: macOS '._name.png' companions are not images.
    files = sorted(
        (
            p
            for p in folder.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
        ),
        key=lambda p: p.name,
    )
    if not files:
        raise UserError(
            f"Anchor folder {str(folder)!r} has no PNG/JPEG images "
            f"(looked for {', '.join(IMAGE_SUFFIXES)})."
        )
    images: list[torch.Tensor] = []
    for p in files:
        x = _read_image(p)  # [3, h, w]
        if size is not None:
            x = _resize(x[None], size)[0]
        elif images and x.shape != images[0].shape:
            raise UserError(
                f"Image {p.name!r} is {x.shape[2]}x{x.shape[1]} but {files[0].name!r} is "
                f"{images[0].shape[2]}x{images[0].shape[1]}; make them the same size or pass a "
                "size (--size) to resize all of them."
            )
        images.append(x)
    return AnchorSet.from_images(torch.stack(images), spec, None, [p.name for p in files])


# ---------------------------------------------------------------------------------------- parsing


def _check_budget(n: int, h: int, w: int, spec: str) -> None:
    need = n * 3 * h * w * 4
    if need > MAX_ANCHOR_BYTES:
        raise UserError(
            f"{spec!r} would need {need / 2**30:.1f} GiB of anchor images; ask for fewer or "
            f"smaller anchors (at most {MAX_ANCHOR_BYTES >> 30} GiB)."
        )


def _parse_int(text: str, what: str, spec: str, minimum: int) -> int:
    text = text.strip()
    if not _INT.fullmatch(text) or int(text) < minimum:
        raise UserError(
            f"{what} in anchor spec {spec!r} must be an integer >= {minimum}, got {text!r}."
        )
    return int(text)


def _n_seed(fields: list[str], kind: str, spec: str) -> tuple[int, int]:
    if not 1 <= len(fields) <= 2:
        raise UserError(
            f"Anchor spec {spec!r} must look like {kind}:N or {kind}:N:SEED, e.g. {kind}:64:0."
        )
    n = _parse_int(fields[0], "N", spec, 1)
    seed = _parse_int(fields[1], "SEED", spec, 0) if len(fields) == 2 else 0
    return n, seed


_Generator = Callable[[int, int, int | None, str], AnchorSet]
_GENERATED: dict[str, _Generator] = {"digits": _digits, "natural": _natural, "noise": _noise}
ANCHOR_KINDS = ("digits", "natural", "noise", "cutmix", "dir")


def load_anchors(spec: str, size: int | None = None) -> AnchorSet:
    """Build the anchor set a spec names (see the module docstring); deterministic.

    `size` sets the side of generated images (digits 32, natural 224 and noise 32 by default),
    is passed on to cutmix's base set, and resizes every `dir:` image to size x size.
    """
    if not isinstance(spec, str):
        raise UserError(
            f"An anchor spec must be a string like 'digits:64', got {type(spec).__name__}."
        )
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 4096
    ):
        raise UserError(f"Anchor size must be an integer between 1 and 4096 pixels, got {size!r}.")
    spec = spec.strip()
    kind, sep, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in ANCHOR_KINDS or not sep:
        raise UserError(
            f"Unknown anchor spec {spec!r}; use one of digits:N[:SEED], natural:N[:SEED], "
            "noise:N[:SEED], cutmix:BASE:N:SEED or dir:PATH."
        )
    if kind == "dir":
        return _dir(rest.strip(), size)
    if kind == "cutmix":
        parts = rest.rsplit(":", 2)
        if len(parts) != 3 or not parts[0].strip():
            raise UserError(
                f"Anchor spec {spec!r} must look like cutmix:BASE:N:SEED, "
                "e.g. cutmix:digits:500:128:0."
            )
        n = _parse_int(parts[1], "N", spec, 1)
        seed = _parse_int(parts[2], "SEED", spec, 0)
        base = load_anchors(parts[0], size)
        return _cutmix(base, n, seed, f"cutmix:{base.spec}:{n}:{seed}")
    n, seed = _n_seed(rest.split(":"), kind, spec)
    return _GENERATED[kind](n, seed, size, f"{kind}:{n}:{seed}")
