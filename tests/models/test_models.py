"""Model registry, shapes, parameter counts and input validation."""

from __future__ import annotations

import pytest
import torch

from study.errors import ConfigError, UserError
from study.models import MODELS, build_model, count_parameters, model_kind

# Exact counts with one phase at the default settings (base, depth) of each architecture.
# They change only when the architecture changes: update README/docstrings with them.
EXACT = {
    "unet3d": 26_321_473,  # base 32, depth 4
    "simplified3d": 2_905_345,  # base 32, depth 3
    "unet2d": 969_409,  # base 32, depth 3
    "hybrid": 1_108_289,  # base 16, depth 3, in_channels = 3 slices x 1 phase
}
# The report's (seed's) figures: same order of magnitude, within a factor 1.5.
SEED = {"unet3d": 29e6, "simplified3d": 2e6, "unet2d": 1e6, "hybrid": 1e6}


def small_input(arch: str, phases: int, batch: int = 2) -> torch.Tensor:
    model_channels = phases * 3 if model_kind(arch) == "2.5d" else phases
    spatial = (16, 16, 16) if model_kind(arch) == "3d" else (32, 16)
    return torch.randn(batch, model_channels, *spatial)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_parameter_counts_at_seed_settings(arch):
    n = count_parameters(build_model(arch, 1))
    assert n == EXACT[arch]
    assert SEED[arch] / 1.5 <= n <= SEED[arch] * 1.5


def test_registry_defaults_and_kinds():
    assert {a: (i.kind, i.default_base) for a, i in MODELS.items()} == {
        "unet3d": ("3d", 32),
        "simplified3d": ("3d", 32),
        "unet2d": ("2d", 32),
        "hybrid": ("2.5d", 16),
    }
    assert model_kind("hybrid") == "2.5d"
    assert build_model("hybrid", 2).in_channels == 6
    assert build_model("unet2d", 2).in_channels == 2
    m = build_model("unet3d", 1, base_channels=8, depth=2)
    assert (m.base_channels, m.depth, m.size_multiple, m.channels) == (8, 2, 4, [8, 16, 32])


def test_hybrid_has_three_residual_blocks_at_deepest_stage():
    m = build_model("hybrid", 1, base_channels=4)
    deepest = m.encoders[-1]
    assert type(deepest[0]).__name__ == "MaxPool2d"
    assert [type(b).__name__ for b in list(deepest)[1:]] == ["PreActResBlock"] * 3
    # identity shortcut when channels match, 1x1 projection when they change
    assert isinstance(deepest[2].shortcut, torch.nn.Identity)
    assert deepest[1].shortcut.kernel_size == (1, 1)


@pytest.mark.parametrize("arch", sorted(MODELS))
@pytest.mark.parametrize("phases", [1, 2])
def test_forward_shape_and_every_parameter_gets_gradient(arch, phases):
    torch.manual_seed(0)
    depth = 4 if model_kind(arch) == "3d" else 3
    model = build_model(arch, phases, base_channels=4, depth=depth)
    x = small_input(arch, phases)
    y = model(x)
    assert y.shape == (2, 1, *x.shape[2:])
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_channels_last_and_bf16_autocast(arch):
    torch.manual_seed(0)
    model = build_model(arch, 1, base_channels=4)
    x = small_input(arch, 1)
    fmt = torch.channels_last_3d if model_kind(arch) == "3d" else torch.channels_last
    model = model.to(memory_format=fmt)
    ref = model.eval()(x.contiguous())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x.to(memory_format=fmt))
    assert y.dtype == torch.bfloat16 and y.shape == ref.shape
    assert torch.allclose(y.float(), ref, atol=0.1, rtol=0.1)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_bad_spatial_size_raises_value_error(arch):
    model = build_model(arch, 1, base_channels=2)
    x = small_input(arch, 1)
    bad = x[..., :-1]  # last spatial size no longer a multiple of 2**depth
    with pytest.raises(ValueError, match=f"multiples of {model.size_multiple}"):
        model(bad)


def test_wrong_channels_or_rank_raise_value_error():
    model = build_model("hybrid", 2, base_channels=2)
    with pytest.raises(ValueError, match="6 input channels, got 2"):
        model(torch.zeros(1, 2, 16, 16))
    with pytest.raises(ValueError, match="4-D tensor"):
        model(torch.zeros(1, 6, 16, 16, 16))


def test_unknown_arch_is_key_error_listing_known():
    with pytest.raises(KeyError) as err:
        build_model("resnet", 1)
    msg = str(err.value)
    assert "resnet" in msg and all(a in msg for a in MODELS)
    assert isinstance(err.value, UserError)
    with pytest.raises(KeyError):
        model_kind("nope")


@pytest.mark.parametrize("kwargs", [{"base_channels": 0}, {"depth": 0}, {"in_phases": 0}])
def test_invalid_sizes_are_config_errors(kwargs):
    args = {"arch": "unet2d", "in_phases": 1} | kwargs
    with pytest.raises(ConfigError):
        build_model(**args)


def test_projection_shortcut_takes_the_shared_pre_activation():
    """Issue 13 / He et al. 2016 (v2): out = W_s·relu(bn(x)) + F(relu(bn(x))) when the channel
    count changes; out = x + F(relu(bn(x))) for the identity shortcut."""
    from study.models.blocks import PreActResBlock

    torch.manual_seed(0)
    for cin, cout in ((3, 5), (4, 4)):
        block = PreActResBlock(2, cin, cout).eval()
        bn = block.body[0]
        with torch.no_grad():  # a BN that visibly changes its input
            bn.running_mean.copy_(torch.linspace(-1, 1, cin))
            bn.running_var.copy_(torch.linspace(0.5, 2, cin))
            bn.weight.copy_(torch.linspace(0.5, 1.5, cin))
            bn.bias.copy_(torch.linspace(-0.3, 0.3, cin))
        x = torch.randn(2, cin, 8, 8)
        pre = torch.relu(bn(x))
        rest = block.body[2:](pre)
        want = (x if cin == cout else block.shortcut(pre)) + rest
        torch.testing.assert_close(block(x), want)
    # the parameter count is unchanged by where the shortcut reads from
    assert count_parameters(PreActResBlock(2, 3, 5)) == 3 * 2 + 3 * 9 * 5 + 5 * 2 + 5 * 9 * 5 + 3 * 5
