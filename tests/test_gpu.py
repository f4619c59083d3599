"""The CUDA path: the same field as on the CPU, captum's IG on the GPU, and the faster precisions.

Skipped without a GPU (CI has none); run on a GPU host with `pytest -m gpu`.
"""

import pytest
import torch
from captum.attr import IntegratedGradients
from test_fields import tiny_timm

from modelgif_core import METHODS, FieldConfig, extract_field, field_distance
from modelgif_core.engine.device import tf32_mode

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _relative(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("arch", ["test_resnet", "test_efficientnet", "test_vit"])
def test_cuda_field_is_the_cpu_field(arch):
    kwargs = {"img_size": 32} if arch == "test_vit" else {}
    model = tiny_timm(arch=arch, input_size=(3, 32, 32), **kwargs)
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cpu = extract_field(model, x, FieldConfig(steps=10, device="cpu"))
    cuda = extract_field(model, x, FieldConfig(steps=10, device="cuda"))
    # Full fp32 on both (TF32 off on the GPU): only the order of the sums differs.
    assert _relative(cuda, cpu) < 1e-5
    assert torch.allclose(cuda, cpu, rtol=1e-4, atol=1e-5 * cpu.abs().max().item())


@pytest.mark.parametrize("method", METHODS)
def test_last_point_is_captum_on_the_gpu(method):
    model = tiny_timm()
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(1)).cuda()
    phi = extract_field(model, x, FieldConfig(steps=12, method=method, device="cuda"))
    module = model.module.cuda()
    with tf32_mode(x.device, False):
        cls = model(x).argmax(1)
        ref = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=cls, n_steps=12,
                                                    method=method)
    module.cpu()
    last, ref = phi[:, -1].reshape(x.shape), ref.cpu()
    # Same device, other batch order: cuDNN may pick other kernels, so agreement is to fp32 rounding.
    assert _relative(last, ref) < 1e-5
    assert torch.allclose(last, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())


def test_repeated_gpu_runs_agree():
    """Not bitwise (cuDNN and resize backward kernels add with atomics), but to float32 rounding."""
    model = tiny_timm()
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    small = extract_field(model, x, FieldConfig(steps=10, memory_mb=1, device="cuda"))
    big = extract_field(model, x, FieldConfig(steps=10, device="cuda"))
    assert _relative(small, big) < 1e-5


def test_model_is_left_where_it_was_and_flags_restored():
    model = tiny_timm()
    x = torch.rand(3, 3, 32, 32)
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    extract_field(model, x, FieldConfig(steps=3, device="cuda", autocast="tf32"))
    assert all(p.device.type == "cpu" and p.is_contiguous() for p in model.module.parameters())
    model(x)  # still callable on CPU tensors
    model.module.cuda()
    extract_field(model, x, FieldConfig(steps=3, device="cuda"))
    assert all(p.device.type == "cuda" for p in model.module.parameters())
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == flags


def test_reduced_precisions_are_close_and_keyed_apart():
    """TF32 and bf16 move the field far less than another model's seed does."""
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    model, other = tiny_timm(seed=0), tiny_timm(seed=1)
    full = extract_field(model, x, FieldConfig(steps=8, device="cuda"))
    between_models = field_distance(full, extract_field(other, x, FieldConfig(steps=8, device="cuda")))
    for precision in ("tf32", "bf16"):  # relative errors measured on an H200: `modelgif bench speed`
        cfg = FieldConfig(steps=8, device="cuda", autocast=precision)
        phi = extract_field(model, x, cfg)
        assert field_distance(phi, full) < 0.1 * between_models, (precision, _relative(phi, full))
        assert cfg.key() != FieldConfig(steps=8).key()


def test_field_too_big_for_the_gpu_is_gathered_on_the_host(monkeypatch):
    """With little free memory the field is filled chunk by chunk in page-locked host memory."""
    model = tiny_timm()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    on_gpu = extract_field(model, x, FieldConfig(steps=10, device="cuda"))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 << 20, 1 << 30))
    on_host = extract_field(model, x, FieldConfig(steps=10, device="cuda"))  # 16-point chunks
    assert _relative(on_host, on_gpu) < 1e-5


@pytest.mark.parametrize("gathered_on_host", [False, True])
def test_per_channel_fields_on_the_gpu_are_the_cpu_ones(monkeypatch, gathered_on_host):
    """The relatedness bench's per-channel fields: same as the CPU's, on the device or gathered on the host."""
    from modelgif_core.bench.relatedness import Encoder

    torch.manual_seed(0)
    encoder = Encoder().eval()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    cfg = FieldConfig(steps=5, target="feature-max", device="cpu", memory_mb=1)
    cpu = extract_field(encoder, x, cfg, per_channel=True)
    if gathered_on_host:
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 << 20, 1 << 30))
    cuda = extract_field(encoder, x, FieldConfig(steps=5, target="feature-max", device="cuda", memory_mb=1),
                         per_channel=True)
    assert cuda.shape == cpu.shape == (4, 5, 32, 3 * 32 * 32)
    assert _relative(cuda, cpu) < 1e-5
    assert all(p.device.type == "cpu" for p in encoder.parameters())
