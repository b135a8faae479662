"""The pasted frame: registering the low face onto the identity image, pasting it, and the paste baseline."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from facenhance_cli.pasting import MIN_SCORE, locate_low_face, low_face_mask, paste_low_face


def textured_image(size: int = 192, seed: int = 0) -> np.ndarray:
    """Blurred colour noise: structure at every scale, like a face and its background."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return np.clip(
        cv2.GaussianBlur(noise, (0, 0), 2.0).astype(np.float32) * 1.5
        + cv2.GaussianBlur(noise, (0, 0), 8.0).astype(np.float32) * 0.8
        - 150,
        0,
        255,
    ).astype(np.uint8)


def similarity(scale: float, degrees: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * math.cos(math.radians(degrees)), scale * math.sin(math.radians(degrees))
    return np.array([[c, s, tx], [-s, c, ty]])


def low_face_of(identity: np.ndarray, low_to_identity: np.ndarray, low_size: int = 64) -> np.ndarray:
    """The (L, L, 3) low frame the identity image gives under `low_to_identity`, masked to an ellipse."""
    # Outside the identity image, edges replicated: `prepare` crops past a frame's edge that way.
    low = cv2.warpAffine(
        identity,
        low_to_identity,
        (low_size, low_size),
        flags=cv2.WARP_INVERSE_MAP | cv2.INTER_AREA,
        borderMode=cv2.BORDER_REPLICATE,
    )
    mask = np.zeros((low_size, low_size), np.uint8)
    cv2.ellipse(
        mask, (low_size // 2, low_size // 2), (low_size * 2 // 5, low_size * 9 // 20), 0, 0, 360, 1, -1
    )
    low[mask == 0] = 0
    low[mask == 1] = np.maximum(low[mask == 1], BLACK_FLOOR)  # a face has no pure-black pixels
    return low


BLACK_FLOOR = 20


def corner_error(a: np.ndarray, b: np.ndarray, low_size: int = 64) -> float:
    """Largest distance (identity px) between where two warps put the low frame's corners and centre."""
    points = np.array(
        [[0, 0, 1], [low_size - 1, 0, 1], [0, low_size - 1, 1], [low_size - 1] * 2 + [1], [32, 32, 1]]
    )
    return float(np.abs(points @ a.T - points @ b.T).max())


@pytest.mark.parametrize(
    "truth",
    [
        similarity(1.8, 0.0, 40.0, 36.0),
        similarity(2.1, 9.0, 30.0, 20.0),
        similarity(1.6, -15.0, 60.0, 70.0),
        similarity(1.9, 4.0, 100.0, 50.0),  # the face reaches past the identity image's edge
    ],
)
def test_registration_recovers_the_warp(truth):
    identity = textured_image()
    low = low_face_of(identity, truth)
    found, score = locate_low_face(identity, low)
    assert score > 0.9
    assert corner_error(found, truth) < 0.25


def test_registration_of_a_foreign_face_scores_low():
    low = low_face_of(textured_image(seed=1), similarity(1.8, 0.0, 40.0, 36.0))
    _, score = locate_low_face(textured_image(seed=2), low)
    assert score < MIN_SCORE + 0.2


def test_an_empty_low_frame_gives_the_default_warp_and_a_failing_score():
    matrix, score = locate_low_face(textured_image(), np.zeros((64, 64, 3), np.uint8))
    assert score < MIN_SCORE
    centre = matrix @ [31.5, 31.5, 1.0]
    np.testing.assert_allclose(centre, [95.5, 95.5], atol=1e-6)  # centred at the typical scale


def test_mask_is_the_non_black_face_eroded_and_cut_at_the_frame_edge():
    low = np.zeros((64, 64, 3), np.uint8)
    low[10:30, 0:40] = 100
    mask = low_face_mask(low)
    assert mask[20, 20] == 1 and mask[20, 0] == 0  # the frame's edge counts as background
    assert mask[10, 20] == 0 and mask[11, 20] == 1 and mask[20, 39] == 0 and mask[20, 38] == 1
    assert mask[5, 5] == 0


def test_black_inside_the_face_is_face_not_background():
    """Dark pupils, nostrils and an open mouth can be as black as the background at 64 px: only the black that
    reaches the frame's edge is background, so the paste never shows the identity's eyes through the low
    face's pupils (the doubled eyes of experiments row 51)."""
    low = np.zeros((64, 64, 3), np.uint8)
    low[10:50, 12:52] = 140  # the face
    low[20:24, 20:24] = 0  # a pupil, black
    low[40:44, 28:36] = 5  # an open mouth, near black
    mask = low_face_mask(low)
    assert mask[21, 21] == 1 and mask[42, 30] == 1  # holes are face
    assert mask[30, 5] == 0 and mask[5, 30] == 0 and mask[10, 30] == 0  # the background and the eroded edge
    assert mask[11:49, 13:51].all()
    low[44:50, 20:44] = 3  # a black beard on the jaw line, reaching the background
    beard = low_face_mask(low)
    assert beard[44:48, 30].all()  # inside the face's hull: face
    assert beard[49, 30] == 0 and beard[52, 30] == 0  # the hull's rim and the background below it
    assert low_face_mask(np.zeros((64, 64, 3), np.uint8)).max() == 0  # no face, no mask


def test_paste_keeps_the_identity_outside_and_the_low_face_inside():
    identity = textured_image()
    truth = similarity(1.8, 5.0, 40.0, 36.0)
    low = low_face_of(identity, truth)
    low[24:40, 24:40] = [250, 10, 10]  # an 'expression' the identity lacks
    pasted = paste_low_face(identity, low, truth)
    np.testing.assert_array_equal(pasted[:10], identity[:10])  # far from the face: untouched
    centre = (truth @ [31.5, 31.5, 1.0]).round().astype(int)
    assert (np.abs(pasted[centre[1], centre[0]].astype(int) - [250, 10, 10]) <= 3).all()


def test_detail_paste_keeps_the_identity_detail_and_the_low_face_change():
    """conditioning.paste_detail_sigma: inside the face the identity's fine texture stays (the plain paste
    loses it to the 64 px low frame), the low face's coarse change is applied, outside nothing moves."""
    identity = textured_image()
    truth = similarity(2.4, 0.0, 20.0, 20.0)
    low = low_face_of(identity, truth)
    low[16:48, 16:48] = np.clip(low[16:48, 16:48].astype(int) + 60, 0, 255)  # a brighter face: coarse change
    plain = paste_low_face(identity, low, truth).astype(float)
    detail = paste_low_face(identity, low, truth, detail_sigma=2.0).astype(float)
    np.testing.assert_array_equal(detail[:10], identity[:10])

    def fine(image: np.ndarray) -> np.ndarray:
        return image - cv2.GaussianBlur(image, (0, 0), 2.0)

    inner = (slice(70, 110), slice(70, 110))  # well inside the brightened square (low px 16..48 -> 58..135)
    ident_fine = fine(identity.astype(float))[inner]
    detail_err = np.abs(fine(detail)[inner] - ident_fine).mean()
    plain_err = np.abs(fine(plain)[inner] - ident_fine).mean()
    assert detail_err < 0.5 * plain_err  # the identity's fine texture kept, the plain paste's lost
    brightening = (detail[inner] - identity[inner].astype(float)).mean()
    assert 40 < brightening < 70  # the coarse change the low face carries is applied


def test_expression_gate_opens_only_where_the_low_face_changed_the_identity():
    """conditioning.edit_gate_levels: a low face that is the identity's own (frame 0) opens no gate; a
    changed 'mouth' opens it there and a little around it, and nowhere far from it."""
    from facenhance_cli.pasting import expression_gate

    identity = textured_image()
    truth = similarity(2.4, 0.0, 20.0, 20.0)
    own = low_face_of(identity, truth)
    assert expression_gate(identity, own, truth, 12.0).max() < 0.2
    changed = own.copy()
    changed[40:48, 24:40] = [250, 10, 10]  # the 'mouth' opens: low px (24..40, 40..48)
    gate = expression_gate(identity, changed, truth, 12.0)
    mouth = (truth @ [32.0, 44.0, 1.0]).round().astype(int)
    assert gate[mouth[1], mouth[0]] > 0.9
    brow = (truth @ [32.0, 12.0, 1.0]).round().astype(int)  # 32 low px (77 px) above it
    assert gate[brow[1], brow[0]] < 0.2
    assert (
        gate.dtype == np.float32 and gate.shape == identity.shape[:2] and 0 <= gate.min() <= gate.max() <= 1
    )


def test_a_frames_conditioning_warps_the_low_face_once_and_gives_what_each_function_gives():
    """frame_images shares one `warp_low_face` and one plain paste among the paste, the edit mask, the gate
    and the kept face: the same arrays, bit for bit, as each function computing them itself."""
    from facenhance_cli.conditioning import frame_images
    from facenhance_cli.config import load_preset
    from facenhance_cli.pasting import edit_mask, expression_gate, kept_face

    shipped = {"conditioning.edit_gate_levels": 12.0, "conditioning.paste_face": True}  # as v9
    config = load_preset("small").replace(**shipped)
    assert config.conditioning.edit_gate_levels > 0 and config.conditioning.paste_detail_sigma > 0
    identity = textured_image()
    matrix = similarity(2.1, 9.0, 30.0, 20.0)
    low = low_face_of(identity, matrix)
    low[40:48, 24:40] = [250, 10, 10]
    images = frame_images(config, identity, low, matrix)
    detail = paste_low_face(identity, low, matrix, config.conditioning.paste_detail_sigma)
    assert np.array_equal(images.pasted_frame, detail)
    assert np.array_equal(images.edit_mask[..., 0], edit_mask(low, matrix, 192))
    gate = expression_gate(identity, low, matrix, config.conditioning.edit_gate_levels)
    assert np.array_equal(images.edit_gate[..., 0], gate) and gate.max() > 0.9
    kept, alpha = kept_face(identity, low, matrix)
    assert np.array_equal(images.kept_face, kept) and np.array_equal(
        images.kept_alpha, alpha * gate[..., None]
    )


def test_the_edit_margin_is_the_configs_and_widens_the_mask():
    """conditioning.edit_margin: the edit mask reaches that far beyond the face (16 px by default, as every
    shipped model was trained); a wider margin covers the default mask and more, and 0 is refused."""
    from facenhance_cli.conditioning import frame_images
    from facenhance_cli.config import load_preset
    from facenhance_cli.errors import UsageError
    from facenhance_cli.pasting import EDIT_MARGIN, edit_mask

    config = load_preset("small")
    assert config.conditioning.edit_margin == EDIT_MARGIN == 16
    identity = textured_image()
    matrix = similarity(1.8, 0.0, 40.0, 36.0)
    low = low_face_of(identity, matrix)
    narrow = frame_images(config, identity, low, matrix).edit_mask[..., 0]
    assert np.array_equal(narrow, edit_mask(low, matrix, 192))
    wide = frame_images(config.replace(**{"conditioning.edit_margin": 32}), identity, low, matrix).edit_mask[
        ..., 0
    ]
    assert np.array_equal(wide, edit_mask(low, matrix, 192, margin=32))
    assert (wide >= narrow).all() and (wide > 0.5).sum() > 1.2 * (narrow > 0.5).sum()
    with pytest.raises(UsageError, match="edit_margin"):
        config.replace(**{"conditioning.edit_margin": 0}).validate()


def test_a_paste_face_model_outputs_the_sharpened_paste_inside_the_face_and_its_edit_around_it():
    """conditioning.paste_face: frame_images carries `kept_face` (the plain paste with more fine detail
    inside the face, the paste's own alpha) and the EDM denoiser outputs it where the alpha is 1, and the
    model's own output where it is 0; without the option neither is made."""
    import torch

    from facenhance_cli.conditioning import collate, frame_images
    from facenhance_cli.config import load_preset
    from facenhance_cli.diffusion.precond import edm_x0
    from facenhance_cli.diffusion.schedule import make_schedule
    from facenhance_cli.errors import UsageError
    from facenhance_cli.pasting import kept_face

    config = load_preset("small")
    identity = textured_image()
    matrix = similarity(1.8, 5.0, 40.0, 36.0)
    low = low_face_of(identity, matrix)
    assert frame_images(config, identity, low, matrix).kept_face is None
    keeping = config.replace(**{"conditioning.paste_face": True})
    images = frame_images(keeping, identity, low, matrix)
    face, alpha = kept_face(identity, low, matrix)
    assert np.array_equal(images.kept_face, face) and np.array_equal(images.kept_alpha, alpha)
    plain = paste_low_face(identity, low, matrix).astype(float)
    inside = alpha[..., 0] > 0.99

    def detail(image: np.ndarray) -> float:
        return float(
            np.abs(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F))[inside].mean()
        )

    assert detail(face) > 1.2 * detail(plain.astype(np.uint8))  # sharper
    assert np.abs(face.astype(float) - plain)[inside].mean() < 12  # the same face
    assert alpha[:10].max() == 0 and inside.sum() > 1000
    cond = collate([images])
    schedule = make_schedule(keeping.diffusion)
    t = torch.tensor([999])
    x_t = torch.randn(1, 3, 192, 192)

    def edit(x: torch.Tensor, t: torch.Tensor, c: object) -> torch.Tensor:  # a network editing everything
        return torch.full_like(x, 0.5)

    with_face = edm_x0(edit, keeping, schedule, x_t, t, cond)  # (1, 3, S, S)
    without = edm_x0(edit, config, schedule, x_t, t, cond.replace(kept_face=None, kept_alpha=None))
    kept = torch.from_numpy(face).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(with_face[0][:, inside], kept[:, inside], atol=0.02)
    outside = torch.from_numpy(alpha[..., 0] == 0)
    assert torch.equal(with_face[0][:, outside], without[0][:, outside])
    assert not torch.allclose(with_face, without)
    with pytest.raises(UsageError, match="paste_face needs unet.use_edit_mask"):
        load_preset("tiny").replace(**{"conditioning.paste_face": True}).validate()


def test_a_face_scoped_gate_opens_the_ring_as_much_as_the_face_changed():
    """conditioning.edit_gate_scope = "face": the edit's gate is the expression gate inside the pasted face
    and its mean over the face in the ring around it: the same all round when the 'mouth' changed, far from
    the mouth too, closed for the identity's own face; the kept face stays gated as with "edit"."""
    from facenhance_cli.conditioning import frame_images
    from facenhance_cli.config import load_preset
    from facenhance_cli.pasting import expression_gate, face_scoped_gate, kept_face, warp_low_face

    shipped = {
        "conditioning.edit_gate_levels": 12.0,
        "conditioning.paste_face": True,
        "conditioning.edit_margin": 32,
    }
    identity = textured_image()
    matrix = similarity(2.1, 9.0, 30.0, 20.0)
    low = low_face_of(identity, matrix)
    low[40:48, 24:40] = [250, 10, 10]  # the 'mouth' changed: the gate opens there only
    whole = frame_images(load_preset("small").replace(**shipped), identity, low, matrix)
    config = load_preset("small").replace(**shipped, **{"conditioning.edit_gate_scope": "face"})
    face = frame_images(config, identity, low, matrix)
    gate = expression_gate(identity, low, matrix, 12.0)
    alpha = warp_low_face(low, matrix, 192).alpha[..., 0]
    assert np.array_equal(whole.edit_gate[..., 0], gate)
    assert np.array_equal(face.edit_gate[..., 0], face_scoped_gate(gate, alpha))
    ring = (alpha < 1e-3) & (face.edit_mask[..., 0] > 0.5)  # as v10: a 32 px ring
    inside = (alpha > 0.999) & (gate < 0.05)  # the face, where the low face left the identity as it was
    assert ring.sum() > 1000 and inside.sum() > 1000
    mean = (alpha * gate).sum() / alpha.sum()
    assert np.allclose(face.edit_gate[..., 0][ring], mean, atol=1e-3) and 0.1 < mean < 0.9
    assert whole.edit_gate[..., 0][ring].min() < 0.05  # "edit": the ring far from the mouth stays shut
    assert np.allclose(face.edit_gate[..., 0][inside], gate[inside], atol=1e-3)
    _, kept_alpha = kept_face(identity, low, matrix)
    assert np.array_equal(face.kept_alpha, kept_alpha * gate[..., None])
    assert np.array_equal(face.kept_alpha, whole.kept_alpha)
    own = frame_images(config, identity, low_face_of(identity, matrix), matrix)  # nothing changed
    assert own.edit_gate[..., 0][ring].max() < 0.2
