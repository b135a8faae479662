"""Checkpoint format: save -> load_for_inference -> identical output; weights_only; foreign files refused."""

from __future__ import annotations

import pytest
import torch

from facenhance_cli.checkpoint import FORMAT_VERSION, load_for_inference, read_checkpoint, save_checkpoint
from facenhance_cli.conditioning import Conditioning
from facenhance_cli.config import FacenhanceConfig, load_preset
from facenhance_cli.errors import CheckpointError
from facenhance_cli.nn.unet import build_network


def test_save_load_gives_identical_output(tmp_path):
    config = load_preset("tiny").replace(**{"unet.image_size": 32})
    torch.manual_seed(0)
    net = build_network(config).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = save_checkpoint(tmp_path / "m.pt", config, net.state_dict(), meta={"trained_on": "unit test"})
    loaded = load_for_inference(path)
    x = torch.randn(1, 3, 32, 32)
    low = torch.randn(1, 3, 64, 64)
    t = torch.tensor([3])
    with torch.no_grad():
        cond = Conditioning(x, low, prev_frame=x)
        # Inference runs channels_last: the same weights in that layout give exactly the same output, and
        # the plain layout the same to float rounding.
        reference = net(x, t, cond)
        net.to(memory_format=torch.channels_last)
        torch.testing.assert_close(loaded.network(x, t, cond), net(x, t, cond), rtol=0, atol=0)
        torch.testing.assert_close(loaded.network(x, t, cond), reference, rtol=1e-5, atol=1e-5)
    assert loaded.config == config
    assert loaded.meta["trained_on"] == "unit test"
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "facenhance-checkpoint" and raw["format_version"] == FORMAT_VERSION
    assert FacenhanceConfig.from_dict(raw["config"]) == config
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed


def test_half_checkpoint_loads_as_float32(tmp_path):
    config = load_preset("tiny").replace(**{"unet.image_size": 32})
    net = build_network(config)
    path = save_checkpoint(tmp_path / "h.pt", config, net.state_dict(), half=True)
    assert all(
        v.dtype == torch.float16
        for v in torch.load(path, weights_only=True)["ema"].values()
        if v.is_floating_point()
    )
    loaded = load_for_inference(path)
    assert next(loaded.network.parameters()).dtype == torch.float32


def test_foreign_and_newer_files_are_refused(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a facenhance checkpoint"):
        read_checkpoint(text)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    with pytest.raises(CheckpointError, match="not a facenhance checkpoint"):
        read_checkpoint(foreign)
    newer = tmp_path / "newer.pt"
    torch.save({"format": "facenhance-checkpoint", "format_version": FORMAT_VERSION + 1}, newer)
    with pytest.raises(CheckpointError, match="newer"):
        read_checkpoint(newer)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.pt")


def test_export_keeps_ema_drops_training_state_and_sets_recommendations(tmp_path):
    from typer.testing import CliRunner

    from facenhance_cli.cli import app

    config = load_preset("tiny").replace(**{"unet.image_size": 32})
    net = build_network(config)
    training = {"model": net.state_dict(), "optimizer": {}, "scaler": None, "step": 7, "best_val": None}
    save_checkpoint(tmp_path / "last.pt", config, net.state_dict(), {"step": 7}, training)
    result = CliRunner().invoke(
        app,
        [
            "export",
            str(tmp_path / "last.pt"),
            "-o",
            str(tmp_path / "m.pt"),
            "--steps",
            "7",
            "--spacing",
            "karras",
            "--shared-noise",
            "--trained-on",
            "x",
        ],
    )
    assert result.exit_code == 0, result.output
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert "training" not in raw and raw["meta"] == {"step": 7, "trained_on": "x"}
    assert raw["config"]["sampling"]["steps"] == 7
    assert raw["config"]["sampling"]["spacing"] == "karras" and raw["config"]["sampling"]["shared_noise"]
    listing = CliRunner().invoke(app, ["models", "--models-dir", str(tmp_path)])
    assert listing.exit_code == 0 and "ddim 7 karras, shared noise" in listing.output
    assert all(v.dtype == torch.float16 for v in raw["ema"].values() if v.is_floating_point())
    assert (tmp_path / "m.pt").stat().st_size < (tmp_path / "last.pt").stat().st_size / 3


def test_export_stores_the_expression_gate_and_refuses_it_where_there_is_no_edit(tmp_path):
    """--edit-gate-levels goes into the exported config; on a model without an EDM edit mask it is one
    line naming the flag, exit 2, and nothing is written."""
    from typer.testing import CliRunner

    from facenhance_cli.cli import app

    small = load_preset("small")
    save_checkpoint(tmp_path / "small.pt", small, build_network(small).state_dict())
    flags = ["--edit-gate-levels", "12", "--edit-gate-scope", "face"]
    ok = CliRunner().invoke(app, ["export", str(tmp_path / "small.pt"), "-o", str(tmp_path / "g.pt"), *flags])
    assert ok.exit_code == 0, ok.output
    stored = torch.load(tmp_path / "g.pt", weights_only=True)["config"]["conditioning"]
    assert stored["edit_gate_levels"] == 12 and stored["edit_gate_scope"] == "face"
    bad = CliRunner().invoke(
        app, ["export", str(tmp_path / "small.pt"), "-o", str(tmp_path / "b.pt"), "--edit-gate-scope", "ring"]
    )
    assert bad.exit_code == 2 and not (tmp_path / "b.pt").exists()
    tiny = load_preset("tiny").replace(**{"unet.image_size": 32})
    save_checkpoint(tmp_path / "tiny.pt", tiny, build_network(tiny).state_dict())
    refused = CliRunner().invoke(
        app, ["export", str(tmp_path / "tiny.pt"), "-o", str(tmp_path / "t.pt"), "--edit-gate-levels", "12"]
    )
    assert refused.exit_code == 2 and "--edit-gate-levels needs unet.use_edit_mask" in refused.output
    assert not (tmp_path / "t.pt").exists()


def test_export_stores_paste_face_and_refuses_it_where_there_is_no_edit(tmp_path):
    """--paste-face goes into the exported config (--network-face takes it out again); on a model without
    an EDM edit mask it is one line naming the flag, exit 2, and nothing is written."""
    from typer.testing import CliRunner

    from facenhance_cli.cli import app

    small = load_preset("small")
    save_checkpoint(tmp_path / "small.pt", small, build_network(small).state_dict())
    runner = CliRunner()
    ok = runner.invoke(
        app, ["export", str(tmp_path / "small.pt"), "-o", str(tmp_path / "p.pt"), "--paste-face"]
    )
    assert ok.exit_code == 0, ok.output
    assert torch.load(tmp_path / "p.pt", weights_only=True)["config"]["conditioning"]["paste_face"] is True
    back = runner.invoke(
        app, ["export", str(tmp_path / "p.pt"), "-o", str(tmp_path / "n.pt"), "--network-face"]
    )
    assert back.exit_code == 0, back.output
    assert torch.load(tmp_path / "n.pt", weights_only=True)["config"]["conditioning"]["paste_face"] is False
    tiny = load_preset("tiny").replace(**{"unet.image_size": 32})
    save_checkpoint(tmp_path / "tiny.pt", tiny, build_network(tiny).state_dict())
    refused = runner.invoke(
        app, ["export", str(tmp_path / "tiny.pt"), "-o", str(tmp_path / "t.pt"), "--paste-face"]
    )
    assert refused.exit_code == 2 and "--paste-face needs unet.use_edit_mask" in refused.output
    assert not (tmp_path / "t.pt").exists()


def test_export_to_a_file_not_ending_in_pt_is_one_line_exit_2_before_any_work(tmp_path):
    """`models` and --model find only .pt files: -o model.txt is refused before the source is even looked up."""
    from typer.testing import CliRunner

    from facenhance_cli.cli import app

    result = CliRunner().invoke(
        app, ["export", str(tmp_path / "absent.pt"), "-o", str(tmp_path / "model.txt")]
    )
    assert result.exit_code == 2 and "must end in .pt" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "model.txt").exists()
