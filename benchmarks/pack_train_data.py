"""Pack a `prepare` root into one small tar for a GPU machine (the device tool carries at most 64 MiB).

Usage: python benchmarks/pack_train_data.py ~/facenhance-data/all64 gpu_data/train.tar [--crf 18]
       [--splits train]
Each clip of the --splits keeps what training reads: high.mkv and low.mkv re-encoded as H.264 at --crf
(readable there with OpenCV alone: the GPU machine has no PyAV), identity.png, a meta.json cut to
n_frames, size and the high landmarks to 0.1 px, and motion.csv (both for `training.align_targets`);
gzip-compressed. The manifest keeps those clips' lines as they are. The test split is left out by default
(the GPU run then has no validation loss): 175 training clips pack into 37 MiB (measured), beside a 21 MiB
working tree.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

META_KEYS = ("format", "clip_id", "subject", "n_frames", "fps", "size", "low_size")


def slim_meta(meta: dict) -> dict:
    """What training reads of a clip's meta.json, landmarks rounded to 0.1 px."""
    slim = {key: meta[key] for key in META_KEYS if key in meta}
    if "landmarks_high" in meta:
        slim["landmarks_high"] = [
            [[round(x, 1), round(y, 1)] for x, y in frame] for frame in meta["landmarks_high"]
        ]
    return slim


def pack_clip(src: Path, dst: Path, crf: int) -> None:
    from facenhance_cli.video import VideoWriter, read_video

    dst.mkdir(parents=True)
    for name in ("high.mkv", "low.mkv"):
        frames, fps = read_video(src / name)
        with VideoWriter(dst / name, fps, crf=crf) as writer:
            for frame in frames:
                writer.write(frame)
    shutil.copy2(src / "identity.png", dst / "identity.png")
    if (src / "motion.csv").is_file():  # the head motion `training.align_targets` moves targets back by
        shutil.copy2(src / "motion.csv", dst / "motion.csv")
    meta = json.loads((src / "meta.json").read_text())
    (dst / "meta.json").write_text(json.dumps(slim_meta(meta)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("tar", type=Path)
    parser.add_argument("--crf", type=int, default=18)
    parser.add_argument("--splits", default="train", help="comma list of the manifest's splits to keep")
    args = parser.parse_args()
    lines = (args.root / "manifest.jsonl").read_text().splitlines()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "data"
        out.mkdir()
        kept = []
        for line in lines:
            entry = json.loads(line)
            if entry.get("status", "ok") != "ok" or entry.get("split") not in args.splits.split(","):
                continue
            pack_clip(args.root / entry["clip_id"], out / entry["clip_id"], args.crf)
            kept.append(line)
        (out / "manifest.jsonl").write_text("\n".join(kept) + "\n")
        args.tar.parent.mkdir(parents=True, exist_ok=True)
        partial = args.tar.with_suffix(".partial")
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(out, arcname="data")
        partial.replace(args.tar)
    print(f"{len(kept)} clips -> {args.tar} ({args.tar.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
