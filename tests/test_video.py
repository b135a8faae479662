"""Video and image I/O at the edges: odd image formats, EXIF orientation, audio the container refuses."""

from __future__ import annotations

import struct

import cv2
import numpy as np

from facenhance_cli.video import probe_video, read_image, read_video, write_video


def test_grey_16bit_and_rgba_images_become_uint8_rgb(tmp_path):
    grey16 = (np.arange(64 * 48).reshape(64, 48) * 20).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), grey16)
    image = read_image(tmp_path / "g16.png")
    assert image.shape == (64, 48, 3) and image.dtype == np.uint8
    assert abs(int(image[-1, -1, 0]) - round(int(grey16[-1, -1]) / 257)) <= 1
    rgba = np.zeros((10, 20, 4), np.uint8)
    rgba[..., 2] = 255  # red in BGRA order
    rgba[..., 3] = 128
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    assert read_image(tmp_path / "rgba.png")[0, 0].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied(tmp_path):
    """A phone portrait (landscape pixels + EXIF orientation 6) is read upright."""
    image = np.zeros((10, 20, 3), np.uint8)
    ok, jpeg = cv2.imencode(".jpg", image)
    assert ok
    # APP1 Exif segment: little-endian TIFF, one IFD entry: Orientation (0x0112), SHORT, 1, value 6.
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHI", 0x0112, 3, 1) + struct.pack("<HH", 6, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = jpeg.tobytes()
    (tmp_path / "portrait.jpg").write_bytes(data[:2] + app1 + data[2:])
    assert read_image(tmp_path / "portrait.jpg").shape == (20, 10, 3)


def test_audio_the_container_cannot_hold_is_dropped_not_fatal(tmp_path):
    import av

    source = tmp_path / "pcm.mkv"
    with av.open(str(source), "w") as container:
        video = container.add_stream("ffv1", rate=25)
        video.width = video.height = 16
        audio = container.add_stream("pcm_s16le", rate=16000)
        for packet in video.encode(
            av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        ):
            container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.int16), format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in audio.encode(frame):
            container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    write_video(tmp_path / "out.mp4", frames, 25, audio_from=source)
    assert not probe_video(tmp_path / "out.mp4").has_audio  # mp4 cannot hold PCM: video kept, audio dropped
    assert read_video(tmp_path / "out.mp4")[0].shape == (3, 16, 16, 3)
    write_video(tmp_path / "out.mkv", frames, 25, audio_from=source)
    assert probe_video(tmp_path / "out.mkv").has_audio  # mkv holds it as is


def test_lossless_round_trip_is_exact_and_fps_kept(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (4, 24, 40, 3), dtype=np.uint8)
    write_video(tmp_path / "x.mkv", frames, 12)
    decoded, fps = read_video(tmp_path / "x.mkv")
    assert fps == 12
    write_video(tmp_path / "y.mkv", frames, 12, lossless=True)
    decoded, fps = read_video(tmp_path / "y.mkv")
    np.testing.assert_array_equal(decoded, frames)


def test_without_pyav_videos_are_read_with_opencv(tmp_path, monkeypatch):
    """Where PyAV is missing (a bare GPU machine has OpenCV only) reading falls back to OpenCV: the same
    frame count, size and rate, lossless frames equal, H.264 ones within a level or two."""
    import facenhance_cli.video as video

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (5, 48, 64, 3), dtype=np.uint8)
    frames = np.stack([cv2.GaussianBlur(f, (0, 0), 2) for f in noise])  # smooth: what a codec keeps
    for name, lossless in (("a.mkv", True), ("b.mp4", False)):
        write_video(tmp_path / name, frames, 25, lossless=lossless)
        with_av, fps = read_video(tmp_path / name)
        monkeypatch.setattr(video, "has_pyav", lambda: False)
        info = probe_video(tmp_path / name)
        without_av, fps_cv = read_video(tmp_path / name)
        monkeypatch.undo()
        assert (info.n_frames, info.width, info.height) == (5, 64, 48) and fps_cv == fps == 25
        assert without_av.shape == with_av.shape
        assert np.abs(without_av.astype(int) - with_av.astype(int)).max() <= (0 if lossless else 3)
    monkeypatch.setattr(video, "has_pyav", lambda: False)
    (tmp_path / "bad.mkv").write_bytes(b"not a video")
    try:
        read_video(tmp_path / "bad.mkv")
    except video.InputError as exc:
        assert "cannot read video" in str(exc) or "no decodable frames" in str(exc)
    else:
        raise AssertionError("a broken file must be an InputError")
