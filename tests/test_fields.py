"""Field extraction against captum and against gradients known by hand."""

import pytest
import timm
import torch
from captum.attr import IntegratedGradients
from captum.attr._utils.approximation_methods import approximation_parameters

from modelgif_core import (
    BASELINES,
    METHODS,
    FieldConfig,
    InputConfig,
    ModelHandle,
    UserError,
    extract_field,
    make_baseline,
    quadrature,
)


def tiny_timm(arch="test_resnet", input_size=(3, 48, 48), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3),
              num_classes=10, seed=0, **kwargs):
    torch.manual_seed(seed)
    module = timm.create_model(arch, pretrained=False, num_classes=num_classes,
                               in_chans=input_size[0], **kwargs)
    return ModelHandle.from_module(module, arch, InputConfig(input_size=input_size, mean=mean, std=std), arch, arch)


class Linear(torch.nn.Module):
    """f(x) = W flatten(x) + b on pixel space: the gradient of class c is W[c] everywhere."""

    def __init__(self, d, classes=4, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.nn.Parameter(torch.randn(classes, d, generator=g))
        self.bias = torch.nn.Parameter(torch.randn(classes, generator=g))

    def forward(self, x):
        return x.flatten(1) @ self.weight.T + self.bias


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("steps", [2, 7, 50])
def test_quadrature_matches_captum_exactly(method, steps):
    step_sizes, alphas = approximation_parameters(method)
    nodes, weights = quadrature(method, steps)
    assert nodes == alphas(steps)
    assert weights == step_sizes(steps)
    assert nodes == sorted(nodes)


def test_gauss_legendre_nodes_by_hand():
    nodes, weights = quadrature("gausslegendre", 2)
    # Legendre roots +-1/sqrt(3) mapped to [0, 1], weights 1/2 each.
    assert nodes == pytest.approx([0.5 - 0.5 / 3**0.5, 0.5 + 0.5 / 3**0.5], abs=1e-15)
    assert weights == pytest.approx([0.5, 0.5], abs=1e-15)
    nodes, weights = quadrature("riemann_trapezoid", 4)
    assert nodes == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert weights == pytest.approx([1 / 8, 1 / 4, 1 / 4, 1 / 8])


@pytest.mark.parametrize("method", METHODS)
def test_last_point_is_captum_integrated_gradients(method):
    """The preprocessing (resize 32->48, mean/std) runs inside; captum differentiates the same f."""
    model = tiny_timm()
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    steps = 12
    phi = extract_field(model, x, FieldConfig(steps=steps, method=method, device="cpu"))  # GPU: test_gpu.py
    assert phi.shape == (5, steps, 3 * 32 * 32) and phi.dtype == torch.float32
    cls = model(x).argmax(1)
    ref = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=cls,
                                                n_steps=steps, method=method)
    last = phi[:, -1].reshape(x.shape)
    assert torch.allclose(last, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


@pytest.mark.parametrize("baseline", BASELINES)
def test_every_baseline_matches_captum(baseline):
    model = tiny_timm(arch="test_efficientnet", input_size=(3, 32, 32))
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([1, 2, 3, 4])
    cfg = FieldConfig(steps=6, baseline=baseline, target="label", labels=tuple(labels.tolist()), seed=3)
    phi = extract_field(model, x, cfg)
    x0 = make_baseline(baseline, x, seed=3)
    ref = IntegratedGradients(model).attribute(x, baselines=x0, target=labels, n_steps=6,
                                                method="gausslegendre")
    assert torch.allclose(phi[:, -1].reshape(x.shape), ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


def test_linear_model_gradients_by_hand():
    d = 3 * 4 * 4
    model = Linear(d)
    x = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    for target in ("predicted", "label", "sum"):
        labels = (0, 3, 1)
        cfg = FieldConfig(steps=5, method="riemann_right", target=target, labels=labels)
        phi = extract_field(model, x, cfg)
        if target == "predicted":
            grad = model.weight[model(x).argmax(1)]
        elif target == "label":
            grad = model.weight[list(labels)]
        else:
            grad = model.weight.sum(0).expand(3, d)
        cumulative = torch.arange(1, 6, dtype=torch.float32) / 5  # sum_{j<=k} w_j with w = 1/5
        expected = x.flatten(1)[:, None, :] * cumulative[None, :, None] * grad[:, None, :].detach()
        assert torch.allclose(phi, expected, atol=1e-6)


def test_normalisation_is_inside_the_gradient():
    """A linear net after (x - mean) / std has pixel gradient W / std: fields live in pixel space."""
    d = 3 * 8 * 8
    net = Linear(d, classes=2)
    std = (0.5, 0.25, 2.0)
    cfg = InputConfig(input_size=(3, 8, 8), mean=(0.1, 0.2, 0.3), std=std)
    model = ModelHandle.from_module(net, "linear", cfg, "l", "l")
    x = torch.rand(2, 3, 8, 8)
    phi = extract_field(model, x, FieldConfig(steps=3, target="label", labels=(1, 1)))
    scale = torch.tensor(std).repeat_interleave(64)
    expected_full = x.flatten(1) * (net.weight[1] / scale).detach()  # the IG of a linear function
    assert torch.allclose(phi[:, -1], expected_full, atol=1e-5)


def test_resize_inside_gradient_keeps_anchor_pixel_space():
    model = tiny_timm(input_size=(3, 64, 64))
    x = torch.rand(2, 3, 24, 24)
    phi = extract_field(model, x, FieldConfig(steps=4))
    assert phi.shape == (2, 4, 3 * 24 * 24)


def test_one_channel_model_sees_grayscale():
    model = tiny_timm(input_size=(1, 32, 32), mean=(0.5,), std=(0.5,))
    x = torch.rand(3, 3, 32, 32)
    phi = extract_field(model, x, FieldConfig(steps=5))
    ref = IntegratedGradients(model).attribute(x, target=model(x).argmax(1), n_steps=5)
    assert torch.allclose(phi[:, -1].reshape(x.shape), ref, rtol=1e-5, atol=1e-6)


def test_feature_max_target_by_hand():
    """A 1x1 conv: out[c,h,w] = sum_ch A[c,ch] x[ch,h,w]; the target fixes each channel's argmax."""
    conv = torch.nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]]).view(2, 3, 1, 1))
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0, 1, 2] = 1.0  # channel 0's max at (1, 2)
    x[0, 1, 3, 0] = 0.9  # channel 1's max at (3, 0)
    phi = extract_field(conv, x, FieldConfig(steps=2, target="feature-max"))
    grad = torch.zeros(3, 4, 4)
    grad[0, 1, 2] = 1.0
    grad[1, 3, 0], grad[2, 3, 0] = 2.0, 1.0
    assert torch.allclose(phi[0, -1], (x[0] * grad).flatten(), atol=1e-6)


def test_per_channel_fields_by_hand():
    """The same 1x1 conv, one field per channel: each is its own channel's gradient, and they sum to the field."""
    conv = torch.nn.Conv2d(3, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]]).view(2, 3, 1, 1))
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0, 1, 2], x[0, 1, 3, 0], x[0, 2, 3, 0] = 1.0, 0.9, 0.5
    cfg = FieldConfig(steps=3, target="feature-max", device="cpu")
    per = extract_field(conv, x, cfg, per_channel=True)
    assert per.shape == (1, 3, 2, 48)
    grad = torch.zeros(2, 3, 4, 4)
    grad[0, 0, 1, 2] = 1.0
    grad[1, 1, 3, 0], grad[1, 2, 3, 0] = 2.0, 1.0
    _, weights = quadrature("gausslegendre", 3)
    for k in range(3):  # a linear model: the curve is (x - 0) * grad * (w_1 + ... + w_k)
        assert torch.allclose(per[0, k], (x[0] * grad).flatten(1) * sum(weights[: k + 1]), atol=1e-6)
    assert torch.allclose(per.sum(2), extract_field(conv, x, cfg), atol=1e-6)


class _OneChannel(torch.nn.Module):
    def __init__(self, model, c):
        super().__init__()
        self.model, self.c = model, c

    def forward(self, x):
        return self.model(x)[:, self.c:self.c + 1]


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
def test_per_channel_field_is_each_channels_own_field(method):
    """Channel c's field equals the ordinary field of the model cut down to channel c, to the last bit;
    their sum is the ordinary feature-max field up to the order of the sum."""
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Conv2d(4, 5, 3, padding=1), torch.nn.Tanh()).eval()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    cfg = FieldConfig(steps=6, method=method, target="feature-max", device="cpu", memory_mb=1)  # several chunks
    per = extract_field(net, x, cfg, per_channel=True)
    assert per.shape == (3, 6, 5, 3 * 16 * 16)
    for c in range(5):
        assert torch.equal(per[:, :, c], extract_field(_OneChannel(net, c), x, cfg))
    whole = extract_field(net, x, cfg)
    assert torch.allclose(per.sum(2), whole, rtol=1e-5, atol=1e-6 * whole.abs().max().item())


def test_per_channel_needs_the_feature_max_target():
    with pytest.raises(UserError, match=r"^Per-channel fields need target 'feature-max' .*'predicted'\.$"):
        extract_field(Linear(3 * 4 * 4), torch.rand(2, 3, 4, 4), FieldConfig(steps=2), per_channel=True)


def test_field_larger_than_free_memory_is_one_sentence(monkeypatch):
    """Refused before any work: the allocator's own failure is a C++ trace (or a later kill by the kernel)."""
    import modelgif_core.engine.fields as fields

    assert fields.available_host_bytes() > 0  # Linux: read from /proc/meminfo
    monkeypatch.setattr(fields, "available_host_bytes", lambda: 512 << 20)
    x = torch.rand(200, 3, 96, 96)  # 200 x 50 x 27648 floats: 1.03 GiB
    with pytest.raises(UserError, match=r"^The field would take 1\.0 GiB \(200 anchors x 50 steps x 27648 values, "
                                        r"float32\) but 0\.5 GiB of memory is free; use fewer anchors or steps"):
        extract_field(Linear(27648), x, FieldConfig(device="cpu"))
    conv = torch.nn.Conv2d(3, 4, 1)
    with pytest.raises(UserError, match=r"\(200 anchors x 50 steps x 4 channels x 27648 values, float32\)"):
        extract_field(conv, x, FieldConfig(target="feature-max", device="cpu"), per_channel=True)


def test_chunking_does_not_change_the_field_and_is_deterministic():
    """Bitwise repeatable on the CPU (GPU backward kernels use atomics: see test_gpu.py)."""
    model = tiny_timm()
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    cfg = FieldConfig(steps=10, device="cpu")
    small = extract_field(model, x, FieldConfig(steps=10, memory_mb=1, device="cpu"))
    big = extract_field(model, x, FieldConfig(steps=10, memory_mb=4096, device="cpu"))
    assert torch.allclose(small, big, rtol=1e-4, atol=1e-5 * big.abs().max().item())
    assert torch.equal(extract_field(model, x, cfg), extract_field(model, x, cfg))


def test_parameters_never_receive_gradients_and_flags_are_restored():
    net = Linear(3 * 4 * 4)
    assert all(p.requires_grad for p in net.parameters())
    extract_field(net, torch.rand(2, 3, 4, 4), FieldConfig(steps=3))
    assert all(p.grad is None for p in net.parameters())
    assert all(p.requires_grad for p in net.parameters())


def test_each_submodule_keeps_its_own_mode():
    # A wrapper in training mode around an eval-mode BatchNorm model (as a fresh output wrapper is):
    # extraction must not switch the inner model to training, where BatchNorm updates its stats.
    inner = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.LazyLinear(2)).eval()
    inner(torch.rand(1, 3, 8, 8))
    wrapper = torch.nn.Sequential(inner)  # new modules start in training mode
    stats = inner[1].running_mean.clone()
    extract_field(wrapper, torch.rand(2, 3, 8, 8), FieldConfig(steps=3))
    assert wrapper.training and not inner.training and not inner[1].training
    inner(torch.rand(4, 3, 8, 8))
    assert torch.equal(inner[1].running_mean, stats)


def test_progress_reports_done_and_total():
    calls = []
    extract_field(tiny_timm(), torch.rand(3, 3, 32, 32), FieldConfig(steps=4, memory_mb=1),
                  progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (12, 12)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


def test_model_without_gradient_is_one_clear_sentence():
    class Argmax(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(x.flatten(1).argmax(1), 48).float()

    with pytest.raises(UserError, match="no gradient"):
        extract_field(Argmax(), torch.rand(2, 3, 4, 4), FieldConfig(steps=2))


def test_baselines_are_what_they_say():
    x = torch.rand(6, 3, 16, 16)
    assert torch.equal(make_baseline("black", x), torch.zeros_like(x))
    assert torch.equal(make_baseline("gray", x), torch.full_like(x, 0.5))
    assert torch.equal(make_baseline("noise", x, 4), make_baseline("noise", x, 4))
    assert not torch.equal(make_baseline("noise", x, 4), make_baseline("noise", x, 5))
    shuffled = make_baseline("shuffle", x, 1)
    for i in range(6):
        matches = [j for j in range(6) if torch.equal(shuffled[i], x[j])]
        assert matches and i not in matches
    blur = make_baseline("blur", x)
    assert blur.shape == x.shape and blur.std() < x.std()


@pytest.mark.parametrize("kwargs, word", [({"method": "simpson"}, "gausslegendre"),
                                          ({"baseline": "white"}, "black"),
                                          ({"target": "logit"}, "predicted"),
                                          ({"steps": 0}, "positive")])
def test_config_errors_list_the_valid_choices(kwargs, word):
    with pytest.raises(UserError, match=word):
        FieldConfig(**kwargs)


def test_config_key_covers_results_not_devices():
    assert FieldConfig().key() == FieldConfig(device="cpu", memory_mb=7).key()
    assert FieldConfig().key() != FieldConfig(steps=49).key()
    assert FieldConfig(baseline="noise", seed=1).key() != FieldConfig(baseline="noise", seed=2).key()
    assert FieldConfig(seed=1).key() == FieldConfig(seed=2).key()  # black ignores the seed


def test_label_target_needs_labels():
    with pytest.raises(UserError, match="label"):
        extract_field(Linear(48), torch.rand(2, 3, 4, 4), FieldConfig(steps=2, target="label"))


def test_model_is_left_in_its_layout_and_tf32_needs_a_gpu():
    model = tiny_timm(input_size=(3, 32, 32))
    model.module.to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 32, 32)
    extract_field(model, x, FieldConfig(steps=2, device="cpu"))
    conv = next(p for p in model.module.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    with pytest.raises(UserError, match="TF32 exists on NVIDIA GPUs only"):
        extract_field(model, x, FieldConfig(steps=2, device="cpu", autocast="tf32"))
