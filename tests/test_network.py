"""Network shapes for every ablation, preset parameter counts, and the encoder's tokens reaching attention."""

from __future__ import annotations

import pytest
import torch

from facenhance_cli.conditioning import Conditioning
from facenhance_cli.config import FacenhanceConfig, load_preset
from facenhance_cli.costs import measure_cost
from facenhance_cli.errors import UsageError
from facenhance_cli.nn.unet import build_network, count_parameters

EDM_MASKED = {
    "unet.use_pasted_frame": True,
    "unet.use_prev_frame": False,
    "unet.use_edit_mask": True,
    "unet.identity_skip": True,
    "diffusion.preconditioning": "edm",
    "diffusion.prediction": "x0",
    "diffusion.loss": "x0",
}


def tiny(**overrides) -> FacenhanceConfig:
    return load_preset("tiny").replace(**{"unet.image_size": 32, **overrides})


def run(net, size=32, batch=2):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=gen)
    low = torch.randn(batch, 3, 64, 64, generator=gen)
    mask = torch.rand(batch, 1, size, size, generator=gen)
    return net(x, torch.tensor([5, 900][:batch]), Conditioning(x, low, x, x, mask))


@pytest.mark.parametrize(
    "overrides,in_channels",
    [
        ({}, 9),
        ({"unet.use_expression_encoder": False}, 12),
        ({"unet.use_prev_frame": False}, 6),
        ({"unet.use_prev_frame": False, "unet.use_expression_encoder": False}, 9),
        ({"unet.use_pasted_frame": True}, 12),
        ({"unet.use_pasted_frame": True, "unet.use_prev_frame": False}, 9),  # small-v2
        (EDM_MASKED, 10),  # the small preset: pasted frame and edit mask
    ],
)
def test_output_shape_for_every_ablation(overrides, in_channels):
    config = tiny(**overrides)
    assert config.unet.in_channels == in_channels
    net = build_network(config)
    assert net.input_conv.in_channels == in_channels
    assert run(net).shape == (2, 3, 32, 32)


def test_expression_tokens_change_the_output():
    net = build_network(tiny())
    # Zero-initialised output layers make a fresh net output zeros; perturb all weights to test wiring.
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.randn(1, 3, 32, 32)
    t = torch.tensor([10])
    a = net(x, t, Conditioning(x, torch.zeros(1, 3, 64, 64), prev_frame=x))
    b = net(x, t, Conditioning(x, torch.ones(1, 3, 64, 64), prev_frame=x))
    assert (a - b).abs().max() > 1e-4
    # And the previous frame matters too.
    c = net(x, t, Conditioning(x, torch.zeros(1, 3, 64, 64), prev_frame=torch.zeros_like(x)))
    assert (a - c).abs().max() > 1e-4


def test_preset_parameter_counts_and_cost():
    paper = measure_cost(load_preset("paper"))
    # A scratch build of the paper's shape had 176.6 M parameters and 195 GFLOP per forward (issue 2).
    assert 165e6 < paper.parameters < 185e6
    assert 185 < paper.gflop_per_call < 205
    small = measure_cost(load_preset("small"))
    assert small.parameters <= 15e6
    tiny_cost = measure_cost(load_preset("tiny"))
    assert tiny_cost.parameters < 1e6
    net = build_network(load_preset("small"))
    assert count_parameters(net) == small.parameters


def test_paper_preset_is_the_papers_architecture():
    c = load_preset("paper")
    assert c.unet.in_channels == 9 and c.unet.base_channels == 128
    assert c.unet.channel_mult == (1, 1, 2, 2, 4, 8) and c.unet.num_res_blocks == 1
    assert c.unet.attention_levels == (4,)  # fifth level: 12x12 at 192 input
    assert c.unet.image_size // 2**4 == 12 and c.unet.base_channels * c.unet.channel_mult[4] == 512
    assert c.diffusion.num_timesteps == 1000 and c.diffusion.loss == "xprev"
    assert (c.diffusion.beta_start, c.diffusion.beta_end) == (1e-4, 0.02)
    assert c.training.lr == 2e-5 and c.training.batch_size == 4 and c.training.ema_decay == 0.9999
    net = build_network(c.replace(**{"unet.image_size": 192}))
    attention_levels = [i for i, level in enumerate(net.down) if level.attentions is not None]
    assert attention_levels == [4]


def test_invalid_configs_are_refused():
    with pytest.raises(UsageError, match="unknown config key"):
        FacenhanceConfig.from_dict({"unet": {"base_channel": 3}})
    with pytest.raises(UsageError, match="integer"):
        FacenhanceConfig.from_dict({"unet": {"base_channels": "many"}})
    with pytest.raises(UsageError, match="divisible"):
        tiny(**{"unet.image_size": 30}).validate()
    with pytest.raises(UsageError, match="prediction"):
        tiny(**{"diffusion.prediction": "noise"}).validate()


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("unet.head_channels", 48, "head_channels"),
        ("training.log_every", 0, "log_every"),
        ("training.batch_size", 0, "batch_size"),
        ("training.seed", -1, "seed"),
        ("sampling.eta", -0.5, "eta"),
        ("encoder.channels", [6, 16, 32], "encoder.channels"),  # tiny has 4 groups
        ("diffusion.beta_end", 0.00001, "beta"),
    ],
)
def test_bad_values_are_usage_errors(key, value, message):
    with pytest.raises(UsageError, match=message):
        load_preset("tiny").replace(**{key: value}).validate()


def model_out(config, net, x, t, cond):
    from facenhance_cli.diffusion.precond import model_output
    from facenhance_cli.diffusion.schedule import make_schedule

    return model_output(net, config, make_schedule(config.diffusion), x, t, cond)


def test_identity_skip_starts_as_the_identity_image():
    config = tiny(**{"unet.identity_skip": True})
    net = build_network(config)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=gen)
    identity = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    cond = Conditioning(identity, torch.randn(2, 3, 64, 64, generator=gen), prev_frame=x)
    out = model_out(config, net, x, torch.tensor([5, 900]), cond)
    torch.testing.assert_close(out, identity)  # zero-initialised output layer + the skip
    with pytest.raises(UsageError, match="identity_skip"):
        tiny(**{"unet.identity_skip": True, "diffusion.prediction": "v"}).validate()


def test_pasted_frame_skip_starts_as_the_pasted_frame():
    config = tiny(**{"unet.identity_skip": True, "unet.use_pasted_frame": True})
    net = build_network(config)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=gen)
    identity, pasted = (torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1 for _ in range(2))
    low = torch.randn(2, 3, 64, 64, generator=gen)
    cond = Conditioning(identity, low, prev_frame=x, pasted_frame=pasted)
    torch.testing.assert_close(model_out(config, net, x, torch.tensor([5, 900]), cond), pasted)
    with pytest.raises(ValueError, match="pasted_frame"):
        net(x, torch.tensor([5, 900]), cond.replace(pasted_frame=None))
