"""Anchor sets: specs, determinism, the held-out digits split, natural crops, CutMix and dir:."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from modelgif_core import UserError
from modelgif_core.engine.anchors import (
    AnchorSet,
    anchor_sha256,
    digits_dataset,
    digits_split,
    load_anchors,
    natural_sources,
)

REPO = Path(__file__).resolve().parents[1]


def _check_set(a: AnchorSet, n: int, side: int) -> None:
    assert isinstance(a, AnchorSet)
    assert a.images.shape == (n, 3, side, side)
    assert a.images.dtype == torch.float32 and a.images.is_contiguous()
    assert float(a.images.min()) >= 0.0 and float(a.images.max()) <= 1.0
    assert len(a) == n and len(a.names) == n
    assert a.sha256 == anchor_sha256(a.images) and len(a.sha256) == 64


# ---------------------------------------------------------------------------------------- digits


def test_digits_dataset_follows_its_recipe_and_sklearn_labels():
    from sklearn.datasets import load_digits

    x, y = digits_dataset()
    assert x.shape == (1797, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    data = load_digits()
    assert torch.equal(y, torch.from_numpy(data.target.astype(np.int64)))
    raw = torch.from_numpy(data.images.astype(np.float32) / 16.0)[:, None]  # [1797, 1, 8, 8]
    want = F.interpolate(raw, size=(32, 32), mode="bilinear", align_corners=False, antialias=False)
    assert torch.equal(x, want.clamp(0, 1).expand(-1, 3, -1, -1))
    # Bilinear upscaling keeps the mean brightness roughly: a sanity check on the 1/16 scaling.
    assert abs(float(x.mean()) - float(raw.mean())) < 0.02
    # The cache hands out copies: a caller that edits its tensor does not poison the next caller.
    x[:] = 0
    assert float(digits_dataset()[0].max()) == 1.0


def test_digits_split_is_fixed_disjoint_and_complete():
    pool, held = digits_split()
    assert pool.shape == (1297,) and held.shape == (500,) and pool.dtype == torch.int64
    perm = np.random.default_rng(20231002).permutation(1797)
    assert pool.tolist() == perm[:1297].tolist() and held.tolist() == perm[1297:].tolist()
    assert not set(pool.tolist()) & set(held.tolist())
    assert sorted(pool.tolist() + held.tolist()) == list(range(1797))
    pool2, held2 = digits_split()
    assert torch.equal(pool, pool2) and torch.equal(held, held2)


def test_digits_anchors_are_held_out_labelled_and_distinct():
    a = load_anchors("digits:64")
    _check_set(a, 64, 32)
    assert a.spec == "digits:64:0"
    x, y = digits_dataset()
    pool, held = digits_split()
    idx = [int(re.fullmatch(r"digits#(\d+)", name).group(1)) for name in a.names]
    assert len(set(idx)) == 64
    assert set(idx) <= set(held.tolist()) and not set(idx) & set(pool.tolist())
    assert torch.equal(a.images, x[idx])
    assert torch.equal(a.labels, y[idx]) and a.labels.dtype == torch.int64
    assert len(set(a.labels.tolist())) >= 8  # a random draw of 64 covers most classes


def test_digits_are_deterministic_seeded_and_nested():
    a, b = load_anchors("digits:32:5"), load_anchors(" digits:32:5 ")
    assert torch.equal(a.images, b.images) and a.sha256 == b.sha256 and a.names == b.names
    c = load_anchors("digits:32:6")
    assert c.sha256 != a.sha256 and set(c.names) != set(a.names)
    assert load_anchors("digits:32").sha256 == load_anchors("digits:32:0").sha256
    small = load_anchors("digits:8:5")
    assert small.names == a.names[:8]  # a smaller budget is a prefix of the larger one


def test_digits_limits_and_size():
    assert len(load_anchors("digits:500:3")) == 500
    with pytest.raises(UserError, match="500"):
        load_anchors("digits:501")
    big = load_anchors("digits:4", size=64)
    _check_set(big, 4, 64)
    assert big.names == load_anchors("digits:4").names
    assert big.sha256 != load_anchors("digits:4").sha256


# ---------------------------------------------------------------------------------------- natural


def test_natural_crops_vary_in_photo_position_and_scale():
    a = load_anchors("natural:28:1")
    _check_set(a, 28, 224)
    assert a.labels is None and a.spec == "natural:28:1"
    shapes = {name: img.shape for name, img in natural_sources()}
    names = set(shapes)
    crops = [re.fullmatch(r"(\w+)\[(\d+):(\d+),(\d+):(\d+)\]", n).groups() for n in a.names]
    photos = [c[0] for c in crops]
    assert set(photos) <= names
    assert len(set(photos[: len(names)])) == len(names)  # the first round visits every photo
    sides = [int(c[2]) - int(c[1]) for c in crops]
    assert all(int(c[2]) - int(c[1]) == int(c[4]) - int(c[3]) for c in crops)  # square crops
    # Crop sides relative to the photo's shorter side vary (random scale, not one fixed zoom).
    fractions = [side / min(shapes[p][:2]) for side, p in zip(sides, photos, strict=True)]
    assert min(fractions) < 0.5 and max(fractions) > 0.75
    flat = a.images.flatten(1)  # [N, 3*224*224]
    assert torch.cdist(flat, flat).add(torch.eye(28) * 1e9).min() > 1.0  # no two crops alike
    assert float(a.images.std()) > 0.1


def test_natural_sources_are_real_photos():
    sources = natural_sources()
    assert len(sources) >= 12
    for name, img in sources:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
        assert min(img.shape[:2]) >= 256 and img.std() > 10, name
        assert not img.flags.writeable


def test_natural_is_deterministic_seeded_and_sized():
    a, b = load_anchors("natural:6:4"), load_anchors("natural:6:4")
    assert torch.equal(a.images, b.images) and a.names == b.names
    assert load_anchors("natural:6:5").sha256 != a.sha256
    assert load_anchors("natural:6").spec == "natural:6:0"
    _check_set(load_anchors("natural:3", size=64), 3, 64)


def _network_cut() -> list[str]:
    """A command prefix that runs a process without network, or [] where this machine forbids it."""
    if shutil.which("unshare") is None:
        return []
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True)
    return ["unshare", "-rn"] if probe.returncode == 0 else []


def test_same_spec_same_sha256_in_a_fresh_offline_process():
    # Determinism across processes (no hash-seed or cache effects), with the network cut where
    # possible: natural: must only read photos that ship inside installed packages.
    specs = ["digits:16:1", "natural:20:2", "noise:2:9", "cutmix:digits:20:5:1"]
    code = (
        "from modelgif_core import load_anchors\n"
        f"for s in {specs!r}: print(load_anchors(s).sha256)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "123", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [*_network_cut(), sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [load_anchors(s).sha256 for s in specs]


# ---------------------------------------------------------------------------------------- noise


def test_noise_is_uniform_and_seeded():
    a = load_anchors("noise:16:3")
    _check_set(a, 16, 32)
    assert a.labels is None
    assert abs(float(a.images.mean()) - 0.5) < 0.02
    assert float(a.images.std()) == pytest.approx(1 / 12**0.5, abs=0.01)
    assert torch.equal(a.images, load_anchors("noise:16:3").images)
    assert not torch.equal(a.images, load_anchors("noise:16:4").images)
    _check_set(load_anchors("noise:2:0", size=8), 2, 8)


# ---------------------------------------------------------------------------------------- cutmix

_CUT = re.compile(r"cutmix\((\S+?)\+(\S+?)\[(\d+):(\d+),(\d+):(\d+)\]\)")


def test_cutmix_pastes_a_box_of_one_base_image_into_another():
    base = load_anchors("digits:40:2")
    a = load_anchors("cutmix:digits:40:2:64:0")
    _check_set(a, 64, 32)
    assert a.spec == "cutmix:digits:40:2:64:0"
    pos = {name: i for i, name in enumerate(base.names)}
    fractions = []
    for t, name in enumerate(a.names):
        src, dst_name, top, bottom, left, right = _CUT.fullmatch(name).groups()
        i, j = pos[src], pos[dst_name]
        top, bottom, left, right = int(top), int(bottom), int(left), int(right)
        assert i != j
        want = base.images[i].clone()
        want[:, top:bottom, left:right] = base.images[j, :, top:bottom, left:right]
        assert torch.equal(a.images[t], want)
        area = (bottom - top) * (right - left)
        fractions.append(area / (32 * 32))
        assert int(a.labels[t]) == int(base.labels[j] if 2 * area > 32 * 32 else base.labels[i])
    # Beta(1, 1) mixing ratios: both small and large boxes occur.
    assert min(fractions) < 0.2 and max(fractions) > 0.6


def test_cutmix_outputs_are_made_of_exactly_two_base_images():
    # Independent of the names: every pixel of an output matches one of two base images.
    base = load_anchors("noise:30:1")
    a = load_anchors("cutmix:noise:30:1:20:3")
    assert a.labels is None
    eq = (a.images[:, None] == base.images[None]).all(dim=2)  # [20, 30, H, W]
    for t in range(len(a)):
        counts = eq[t].flatten(1).sum(1)  # [30] pixels shared with each base image
        top2 = counts.topk(2).indices
        assert bool((eq[t, top2[0]] | eq[t, top2[1]]).all())
        assert int(counts.max()) >= 32 * 32 // 2


def test_cutmix_is_seeded_and_normalises_its_base():
    a = load_anchors("cutmix:digits:50:16:7")
    assert a.spec == "cutmix:digits:50:0:16:7"
    assert torch.equal(a.images, load_anchors("cutmix:digits:50:0:16:7").images)
    assert a.sha256 != load_anchors("cutmix:digits:50:16:8").sha256
    nested = load_anchors("cutmix:cutmix:noise:5:1:6:2:4:3")
    _check_set(nested, 4, 32)
    with pytest.raises(UserError, match="at least 2"):
        load_anchors("cutmix:digits:1:4:0")


# ---------------------------------------------------------------------------------------- dir


def _rgb(rng: np.random.Generator, h: int, w: int, c: int = 3) -> np.ndarray:
    shape = (h, w) if c == 1 else (h, w, c)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def test_dir_pixels_are_exactly_value_over_255(tmp_path):
    rng = np.random.default_rng(0)
    rgb, gray, rgba = _rgb(rng, 12, 10), _rgb(rng, 12, 10, 1), _rgb(rng, 12, 10, 4)
    gray[0, 0], gray[0, 1] = 0, 255
    Image.fromarray(rgb, "RGB").save(tmp_path / "a_rgb.png")
    Image.fromarray(gray, "L").save(tmp_path / "b_gray.png")
    Image.fromarray(rgba, "RGBA").save(tmp_path / "c_rgba.png")
    pal = Image.fromarray(rgb, "RGB").quantize(colors=16)
    pal.save(tmp_path / "d_palette.png")
    Image.fromarray(rgb, "RGB").save(tmp_path / "e_photo.JPG", quality=90)
    a = load_anchors(f"dir:{tmp_path}")
    _check_set_hw(a, 5, 12, 10)
    assert a.names == ("a_rgb.png", "b_gray.png", "c_rgba.png", "d_palette.png", "e_photo.JPG")
    assert a.labels is None and a.spec == f"dir:{tmp_path}"

    def exact(arr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0  # [3, H, W]

    assert torch.equal(a.images[0], exact(rgb))
    assert torch.equal(a.images[1], exact(np.repeat(gray[:, :, None], 3, axis=2)))
    assert float(a.images[1, 0, 0, 0]) == 0.0 and float(a.images[1, 0, 0, 1]) == 1.0
    assert torch.equal(a.images[2], exact(rgba[:, :, :3]))  # alpha dropped, colours untouched
    assert torch.equal(a.images[3], exact(np.asarray(pal.convert("RGB"))))
    jpeg = np.asarray(Image.open(tmp_path / "e_photo.JPG").convert("RGB"))
    assert torch.equal(a.images[4], exact(jpeg))
    # value/255 exactly, as float32 division (not value * (1/255), which differs in the last bit)
    assert float(a.images[0].flatten()[0]) == float(np.float32(rgb[0, 0, 0]) / np.float32(255))


def _check_set_hw(a: AnchorSet, n: int, h: int, w: int) -> None:
    assert a.images.shape == (n, 3, h, w) and a.images.dtype == torch.float32
    assert a.images.is_contiguous() and a.sha256 == anchor_sha256(a.images)


def test_dir_sixteen_bit_gray_png(tmp_path):
    arr = np.array([[0, 1000, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    a = load_anchors(f"dir:{tmp_path}")
    assert a.names == ("deep.png",) and a.images.shape == (1, 3, 1, 3)
    want = torch.tensor([0.0, 1000 / 65535, 1.0], dtype=torch.float32)
    assert all(torch.equal(a.images[0, c, 0], want) for c in range(3))


def test_dir_takes_files_in_name_order_and_skips_others(tmp_path):
    rng = np.random.default_rng(1)
    for name in ["b.png", "10.jpeg", "a.PNG", "2.png", "c.jpg", "Z.png"]:
        Image.fromarray(_rgb(rng, 8, 8), "RGB").save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "._a.png").write_bytes(b"\x00\x05\x16\x07 macOS metadata")
    (tmp_path / "sub.png").mkdir()
    a = load_anchors(f"dir:{tmp_path}")
    # Plain name order (code points): digits, then upper case, then lower case.
    assert a.names == ("10.jpeg", "2.png", "Z.png", "a.PNG", "b.png", "c.jpg")
    # Content, not spec: the same images in another folder have the same sha256.
    other = tmp_path.parent / "copy_of_anchors"
    shutil.copytree(tmp_path, other)
    assert load_anchors(f"dir:{other}").sha256 == a.sha256


def test_dir_size_mismatch_and_resize(tmp_path):
    rng = np.random.default_rng(2)
    Image.fromarray(_rgb(rng, 8, 8), "RGB").save(tmp_path / "a.png")
    Image.fromarray(_rgb(rng, 9, 8), "RGB").save(tmp_path / "b.png")
    with pytest.raises(UserError, match=r"'b\.png'.*size"):
        load_anchors(f"dir:{tmp_path}")
    a = load_anchors(f"dir:{tmp_path}", size=16)
    _check_set(a, 2, 16)
    same = load_anchors(f"dir:{tmp_path}", size=8)  # already 8x8: untouched, still exact
    want = torch.from_numpy(np.array(Image.open(tmp_path / "a.png"))).permute(2, 0, 1) / 255.0
    assert torch.equal(same.images[0], want.float())


def test_dir_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_anchors(f"dir:{tmp_path / 'missing'}")
    with pytest.raises(UserError, match="no PNG/JPEG"):
        load_anchors(f"dir:{tmp_path}")
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(UserError, match="no PNG/JPEG"):
        load_anchors(f"dir:{tmp_path}")
    with pytest.raises(UserError, match="not a folder"):
        load_anchors(f"dir:{tmp_path / 'readme.txt'}")
    with pytest.raises(UserError, match="needs a folder"):
        load_anchors("dir:")


def test_dir_corrupt_and_truncated_images_are_named(tmp_path):
    rng = np.random.default_rng(3)
    Image.fromarray(_rgb(rng, 64, 64), "RGB").save(tmp_path / "a_good.png")
    (tmp_path / "b_garbage.png").write_bytes(b"this is not a png at all")
    with pytest.raises(UserError, match="b_garbage.png"):
        load_anchors(f"dir:{tmp_path}")
    (tmp_path / "b_garbage.png").unlink()
    Image.fromarray(_rgb(rng, 64, 64), "RGB").save(tmp_path / "c_cut.jpg")
    data = (tmp_path / "c_cut.jpg").read_bytes()
    (tmp_path / "c_cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="c_cut.jpg"):
        load_anchors(f"dir:{tmp_path}")


# ---------------------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("mnist:10", "digits:N.*natural:N.*noise:N.*cutmix:BASE.*dir:PATH"),
        ("digits", "Unknown anchor spec"),
        ("", "Unknown anchor spec"),
        ("digits:abc", "N in anchor spec"),
        ("digits:0", "N in anchor spec.*>= 1"),
        ("digits:-3", "N in anchor spec"),
        ("digits:1.5", "N in anchor spec"),
        ("digits:", "N in anchor spec"),
        ("digits:4:x", "SEED in anchor spec"),
        ("digits:4:-1", "SEED in anchor spec"),
        ("natural:4:0:1", "must look like natural:N"),
        ("noise:0:1", "N in anchor spec"),
        ("cutmix:digits:4", "cutmix:BASE:N:SEED"),
        ("cutmix::4:0", "cutmix:BASE:N:SEED"),
        ("cutmix:digits:8:0:0", "N in anchor spec"),
        ("cutmix:bogus:4:0:8:0", "Unknown anchor spec"),
        ("noise:100000000:0", "GiB"),
    ],
)
def test_bad_specs_raise_one_clear_user_error(spec, match):
    with pytest.raises(UserError, match=match) as info:
        load_anchors(spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("size", [0, -4, True, "32", 5000])
def test_bad_size_is_refused(size):
    with pytest.raises(UserError, match="size"):
        load_anchors("noise:2:0", size=size)


def test_spec_kind_is_case_insensitive_and_set_is_frozen():
    a = load_anchors("NOISE:2:1")
    assert a.spec == "noise:2:1"
    with pytest.raises(AttributeError):
        a.sha256 = "x"  # type: ignore[misc]
