"""The identity image moved by the low face's optical flow (`flowwarp`, `unet.use_flow_frame`)."""

from __future__ import annotations

import numpy as np
from test_pasting import low_face_of, similarity, textured_image

from facenhance_cli.conditioning import frame_images
from facenhance_cli.config import load_preset
from facenhance_cli.flowwarp import flow_frame, identity_as_low
from facenhance_cli.pasting import warp_low_face

MATRIX = similarity(1.8, 0.0, 40.0, 36.0)  # low px -> identity px, as prepare's crops


def interior(matrix: np.ndarray, size: int = 192, inset: int = 14) -> tuple[slice, slice]:
    """Rows and columns of the identity image well inside the low face (away from its feathered edge)."""
    top_left, bottom_right = matrix @ [0, 0, 1], matrix @ [63, 63, 1]
    return (slice(int(top_left[1]) + inset, int(bottom_right[1]) - inset),
            slice(int(top_left[0]) + inset, int(bottom_right[0]) - inset))  # fmt: skip


def mean_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_the_identity_seen_as_a_low_frame_is_the_low_frame_it_gives():
    identity = textured_image()
    low = low_face_of(identity, MATRIX)
    face = low.max(axis=-1) > 12
    assert mean_error(identity_as_low(identity, MATRIX, 64)[face], low[face]) < 3.0


def test_an_unchanged_face_leaves_the_identity_and_pixels_off_the_face_are_the_identitys():
    identity = textured_image()
    low = low_face_of(identity, MATRIX)
    coverage = warp_low_face(low, MATRIX, 192).coverage
    moved = flow_frame(identity, low, MATRIX, coverage)
    rows, cols = interior(MATRIX)
    assert mean_error(moved[rows, cols], identity[rows, cols]) < 2.0
    off_face = coverage == 0
    assert off_face.any() and np.array_equal(moved[off_face], identity[off_face])


def test_a_moved_face_moves_the_identitys_detail_with_it():
    """The truth: the identity's content shifted 4 px right; the low frame shows it at 64 px; the flow frame
    brings the identity's sharp detail to where the truth has it, far closer than the still identity."""
    identity = textured_image(seed=3)
    truth = np.roll(identity, 4, axis=1)
    low = low_face_of(truth, MATRIX)
    moved = flow_frame(identity, low, MATRIX, warp_low_face(low, MATRIX, 192).coverage)
    rows, cols = interior(MATRIX)
    still_error = mean_error(identity[rows, cols], truth[rows, cols])
    assert mean_error(moved[rows, cols], truth[rows, cols]) < 0.5 * still_error


def test_a_frames_conditioning_has_the_flow_frame_only_where_the_config_uses_it():
    identity = textured_image()
    low = low_face_of(np.roll(identity, 3, axis=0), MATRIX)
    small = load_preset("small")
    with_flow = small.replace(**{"unet.use_flow_frame": True})
    assert frame_images(small, identity, low, MATRIX).flow_frame is None
    images = frame_images(with_flow, identity, low, MATRIX)
    coverage = warp_low_face(low, MATRIX, 192).coverage
    assert images.flow_frame is not None
    assert np.array_equal(images.flow_frame, flow_frame(identity, low, MATRIX, coverage))
    assert with_flow.unet.stacked_fields[-1] == ("flow_frame", 3)  # last: a model without it widens to it
    assert with_flow.unet.in_channels == small.unet.in_channels + 3
