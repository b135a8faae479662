"""Patch-folding networks (`unet.patch_size`) and starting one from a finer network's levels (nn/transplant.py)."""

from __future__ import annotations

import pytest
import torch
from test_network import EDM_MASKED, run

from facenhance_cli.conditioning import Conditioning
from facenhance_cli.config import FacenhanceConfig, load_preset
from facenhance_cli.costs import measure_cost
from facenhance_cli.errors import UsageError
from facenhance_cli.nn.transplant import folded_levels, transplant_state, widen_inputs
from facenhance_cli.nn.unet import build_network
from facenhance_cli.training.distill import Teacher, check_teacher

FOLDED = {"unet.patch_size": 2, "unet.channel_mult": [1, 2, 2, 4, 4], "unet.attention_levels": [3]}


def tiny(**overrides) -> FacenhanceConfig:
    """The tiny preset at 32 px (levels 1, 1, 2, 2, 4, 4; attention at level 4) with the small preset's inputs."""
    return load_preset("tiny").replace(**{"unet.image_size": 32, **EDM_MASKED, **overrides})


def test_a_folded_network_keeps_the_frame_size_and_does_less_work():
    """Patch 2: the stacked inputs fold into 4x the channels at half the size; the output is the frame again."""
    fine, folded = tiny(), tiny(**FOLDED)
    net = build_network(folded)
    assert net.input_conv.in_channels == 4 * fine.unet.in_channels
    assert net.out[-1].out_channels == 12
    assert run(net).shape == (2, 3, 32, 32)
    assert measure_cost(folded).gflop_per_call < 0.7 * measure_cost(fine).gflop_per_call


def test_the_fold_keeps_each_pixel_in_its_place():
    """An output layer that copies the folded input's x_t channels back gives x_t: fold and unfold agree."""
    net = build_network(tiny(**FOLDED))
    seen = {}
    net.input_conv.register_forward_hook(lambda _m, args, _out: seen.update(stacked=args[0]))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        net.out[-1].forward = lambda _h: seen["stacked"][:, :12]  # x_t's 3 channels x 4 positions come first
        out = net(x, torch.tensor([5]), Conditioning(x, torch.zeros(1, 3, 64, 64), None, x, x[:, :1]))
    assert torch.equal(out, x)


@pytest.mark.parametrize(
    "overrides,message",
    [({"unet.patch_size": 3}, "patch_size"), ({"unet.patch_size": 2}, "divisible")],  # 32 / (2 x 2^5)
)
def test_bad_patch_sizes_are_refused(overrides, message):
    with pytest.raises(UsageError, match=message):
        tiny(**overrides).validate()


def test_a_folded_student_takes_every_level_it_shares_with_the_finer_network():
    """Down path shifted by one level, up path and middle as they are; input and output layers fresh."""
    teacher, student = build_network(tiny()), build_network(tiny(**FOLDED))
    source, fresh = teacher.state_dict(), student.state_dict()
    merged = transplant_state(source, tiny().unet, tiny(**FOLDED).unet, fresh)
    assert merged is not None and merged.keys() == fresh.keys()
    pairs = {"down.0.blocks.0.conv1.weight": "down.1.blocks.0.conv1.weight",
             "downsample.0.conv.weight": "downsample.1.conv.weight",
             "down.3.attentions.0.qkv.weight": "down.4.attentions.0.qkv.weight",
             "up.4.blocks.1.conv1.weight": "up.4.blocks.1.conv1.weight",
             "upsample.3.conv.weight": "upsample.3.conv.weight",
             "middle.0.conv1.weight": "middle.0.conv1.weight",
             "encoder.proj.weight": "encoder.proj.weight"}  # fmt: skip
    for key, source_key in pairs.items():
        assert torch.equal(merged[key], source[source_key]), key
    for key in ("input_conv.weight", "out.0.weight", "out.2.weight"):
        assert merged[key] is fresh[key]
    student.load_state_dict(merged)


@pytest.mark.parametrize(
    "source,target,shift",
    [
        ({}, FOLDED, 1),
        ({}, {"unet.patch_size": 4, "unet.channel_mult": [2, 2, 4, 4], "unet.attention_levels": [2]}, 2),
        ({}, {**FOLDED, "unet.channel_mult": [1, 2, 2, 4, 8]}, None),  # another width
        ({}, {**FOLDED, "unet.attention_levels": [2]}, None),  # attention elsewhere
        ({}, {}, None),  # the same patch: nothing folded
        (FOLDED, {}, None),  # a finer target
    ],
)
def test_only_networks_that_share_the_remaining_levels_are_transplanted(source, target, shift):
    assert folded_levels(tiny(**source).unet, tiny(**target).unet) == shift


def test_a_smaller_student_may_sample_in_as_many_steps_as_its_teacher():
    """Distilling one step into one step is refused for the same network, taken for another one."""
    teacher = Teacher(torch.nn.Identity(), tiny(**{"sampling.steps": 1}), "t.pt")
    check_teacher(teacher, tiny(**FOLDED, **{"sampling.steps": 1}))
    with pytest.raises(UsageError, match="another network"):
        check_teacher(teacher, tiny(**{"sampling.steps": 1}))


def test_a_network_given_a_new_input_image_starts_as_the_one_without_it():
    """widen_inputs: the flow frame's input weights start at 0, so the widened network computes what the
    narrower one did whatever the new image holds; any other difference is refused."""
    narrow, wide = tiny(**FOLDED), tiny(**FOLDED, **{"unet.use_flow_frame": True})
    source_net, target_net = build_network(narrow), build_network(wide)
    merged = widen_inputs(source_net.state_dict(), narrow.unet, wide.unet, target_net.state_dict())
    assert merged is not None
    target_net.load_state_dict(merged)
    x = torch.randn(2, 3, 32, 32)
    cond = Conditioning(x, torch.randn(2, 3, 64, 64), None, x, torch.rand(2, 1, 32, 32))
    with torch.no_grad():
        expected = source_net(x, torch.tensor([5, 900]), cond)
        got = target_net(x, torch.tensor([5, 900]), cond.replace(flow_frame=torch.randn(2, 3, 32, 32)))
    assert torch.allclose(got, expected, atol=1e-6)
    other = tiny(**FOLDED, **{"unet.use_flow_frame": True, "unet.base_channels": 16})
    refused = widen_inputs(
        source_net.state_dict(), narrow.unet, other.unet, build_network(other).state_dict()
    )
    assert refused is None
    heads = tiny(
        **FOLDED, **{"unet.use_flow_frame": True, "unet.head_channels": 8}
    )  # same shapes, other heads
    widened = widen_inputs(
        source_net.state_dict(), narrow.unet, heads.unet, build_network(heads).state_dict()
    )
    assert widened is None
    assert widen_inputs(source_net.state_dict(), narrow.unet, narrow.unet, source_net.state_dict()) is None


def test_training_noise_levels_start_at_min_timestep():
    """training.min_timestep: a one-step student trains at t = T - 1 only; out of range is refused."""
    import numpy as np

    from facenhance_cli.conditioning import FrameImages
    from facenhance_cli.data import TrainingSample
    from facenhance_cli.training.step import draw_batch

    class Frames:  # what draw_batch asks of a dataset
        image_size = 32

        def __len__(self) -> int:
            return 6

        def sample(self, position, flip, gain=None):
            image = np.full((32, 32, 3), position, np.uint8)
            return TrainingSample(image, FrameImages(image, np.zeros((64, 64, 3), np.uint8)))

    for low in (0, 999):
        tc = tiny(**{"training.min_timestep": low, "training.batch_size": 6}).training
        ts = [
            t for step in range(5) for t in draw_batch(Frames(), tc, 1000, step, range(6), "cpu").t.tolist()
        ]
        assert min(ts) >= low and (low == 999) == (set(ts) == {999})
    with pytest.raises(UsageError, match="min_timestep"):
        tiny(**{"training.min_timestep": 1000}).validate()
    with pytest.raises(UsageError, match="min_timestep"):
        tiny(**{"training.min_timestep": -1}).validate()
