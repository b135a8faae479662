"""What the denoiser of frame n sees besides x_t (Sec. 4.1.2): built here, and only here, from uint8 frames.

The dataset, `enhance` and anything new (head motion) hand this module one frame's uint8 images and the
model's config; `frame_images` makes the fields that config uses (`UNetConfig.stacked_fields`: the pasted
frame and edit mask where the network reads them; the expression gate where the config sets one) and
`collate` batches them into the `Conditioning` the samplers, the denoiser and the network take.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import torch

from facenhance_cli.config import FacenhanceConfig

if TYPE_CHECKING:
    from typing import Unpack  # Python 3.11+; annotations only, so 3.10 never imports it


@dataclass(frozen=True)
class Conditioning:
    """Conditioning tensors of a batch, float32; images in [-1, 1], masks in [0, 1].

    Which fields a model needs is set by its config (`UNetConfig.stacked_fields`); `frame_images` fills
    exactly those, and the training step, the samplers and the denoiser pass it on as is.
    """

    identity_image: torch.Tensor  # (B, 3, S, S) neutral identity image I_id
    low_frame: torch.Tensor  # (B, 3, L, L) aligned low face on black f_low^n
    prev_frame: torch.Tensor | None = None  # (B, 3, S, S) f_prev^{n-1} (noise z added by `add_prev_noise`)
    pasted_frame: torch.Tensor | None = None  # (B, 3, S, S) ours: the low face warped onto I_id
    edit_mask: torch.Tensor | None = None  # (B, 1, S, S) ours: where the output may differ from the base
    # (B, 1, S, S) ours: where the expression changed the face (`pasting.expression_gate`); multiplies the
    # edit with the mask but is not a network input
    edit_gate: torch.Tensor | None = None
    flow_frame: torch.Tensor | None = None  # (B, 3, S, S) ours: the identity moved by the low face's flow
    # `conditioning.paste_face`: the output inside the pasted face (`pasting.kept_face`), not network inputs
    kept_face: torch.Tensor | None = None  # (B, 3, S, S) the sharpened paste
    kept_alpha: torch.Tensor | None = None  # (B, 1, S, S) where it is kept

    @property
    def base(self) -> torch.Tensor:
        """(B, 3, S, S) the image a skip-connected model edits: the pasted frame, else the identity image."""
        return self.pasted_frame if self.pasted_frame is not None else self.identity_image

    @property
    def edit_weight(self) -> torch.Tensor | None:
        """(B, 1, S, S) how much of the model's edit reaches the output: the edit mask times the expression
        gate (either alone when the other is absent), None when the model may edit everywhere."""
        if self.edit_mask is None or self.edit_gate is None:
            return self.edit_mask if self.edit_gate is None else self.edit_gate
        return self.edit_mask * self.edit_gate

    def replace(self, **changes: Unpack[ConditioningChanges]) -> Conditioning:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)


class ConditioningChanges(TypedDict, total=False):
    """The fields `Conditioning.replace` may change, with their types (the two images are never None)."""

    identity_image: torch.Tensor
    low_frame: torch.Tensor
    prev_frame: torch.Tensor | None
    pasted_frame: torch.Tensor | None
    edit_mask: torch.Tensor | None
    edit_gate: torch.Tensor | None
    flow_frame: torch.Tensor | None
    kept_face: torch.Tensor | None
    kept_alpha: torch.Tensor | None


@dataclass(frozen=True)
class FrameImages:
    """One frame's conditioning before batching: uint8 RGB images (H, W, 3), float32 masks (H, W, 1)."""

    identity_image: np.ndarray  # (S, S, 3)
    low_frame: np.ndarray  # (L, L, 3)
    prev_frame: np.ndarray | None = None  # (S, S, 3) the true previous frame (training); None: the loop's
    pasted_frame: np.ndarray | None = None  # (S, S, 3)
    edit_mask: np.ndarray | None = None  # (S, S, 1)
    edit_gate: np.ndarray | None = None  # (S, S, 1)
    flow_frame: np.ndarray | None = None  # (S, S, 3)
    kept_face: np.ndarray | None = None  # (S, S, 3)
    kept_alpha: np.ndarray | None = None  # (S, S, 1)

    def flipped(self) -> FrameImages:
        """Every image mirrored left-right (one flip for all keeps them consistent)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: v[:, ::-1] for k, v in fields.items() if v is not None})


def needs_paste_matrix(config: FacenhanceConfig) -> bool:
    """True when `frame_images` needs where the low face sits in the identity image (`pasting.locate_low_face`)."""
    stacked = {name for name, _ in config.unet.stacked_fields}
    return (
        bool(stacked & {"pasted_frame", "edit_mask", "flow_frame"})
        or config.conditioning.edit_gate_levels > 0
        or config.conditioning.paste_face
    )


def frame_images(
    config: FacenhanceConfig,
    identity_image: np.ndarray,
    low_frame: np.ndarray,
    paste_matrix: np.ndarray | None = None,
    prev_frame: np.ndarray | None = None,
) -> FrameImages:
    """The fields `config` uses, from uint8 identity (S,S,3) and low (L,L,3) images; `paste_matrix` (2,3)
    maps low px to identity px (needed when `needs_paste_matrix`)."""
    from facenhance_cli import flowwarp, pasting

    stacked = {name for name, _ in config.unet.stacked_fields}
    levels = config.conditioning.edit_gate_levels
    if paste_matrix is None and needs_paste_matrix(config):
        raise ValueError("this model's conditioning needs the paste matrix (pasting.locate_low_face)")
    pasted = mask = gate = face_gate = flow = kept = alpha = None
    if paste_matrix is None:
        return FrameImages(identity_image, low_frame, prev_frame)
    size = identity_image.shape[0]
    warped = pasting.warp_low_face(low_frame, paste_matrix, size)  # shared by those below
    plain = None  # the plain paste, shared by the gate and the kept face
    if levels > 0 or config.conditioning.paste_face:
        plain = pasting.paste_low_face(identity_image, low_frame, paste_matrix, 0.0, warped)
    if "pasted_frame" in stacked:
        sigma = config.conditioning.paste_detail_sigma
        pasted = pasting.paste_low_face(identity_image, low_frame, paste_matrix, sigma, warped)
    if "edit_mask" in stacked:
        margin = config.conditioning.edit_margin
        mask = pasting.edit_mask(low_frame, paste_matrix, size, warped, margin)[..., None]
    if levels > 0:
        gate = pasting.expression_gate(identity_image, low_frame, paste_matrix, levels, warped, plain)
        face_gate = gate = gate[..., None]  # (S, S, 1)
        if config.conditioning.edit_gate_scope == "face":  # the ring follows the face (rows 57-58)
            gate = pasting.face_scoped_gate(gate, warped.alpha)
    if "flow_frame" in stacked:
        flow = flowwarp.flow_frame(identity_image, low_frame, paste_matrix, warped.coverage)
    if config.conditioning.paste_face:
        kept, alpha = pasting.kept_face(identity_image, low_frame, paste_matrix, warped, plain)
        alpha = alpha if face_gate is None else alpha * face_gate  # the identity's own pixels where unchanged
    return FrameImages(identity_image, low_frame, prev_frame, pasted, mask, gate, flow, kept, alpha)


def collate(frames: Sequence[FrameImages], device: str = "cpu") -> Conditioning:
    """Batch per-frame images into a Conditioning on `device`: images to [-1, 1], masks as they are."""
    from facenhance_cli.accel import to_device

    def images(name: str) -> torch.Tensor | None:
        arrays = [getattr(f, name) for f in frames]
        if any(a is None for a in arrays):
            return None
        batch = np.stack([np.ascontiguousarray(a) for a in arrays])  # (B, H, W, C)
        tensor = torch.from_numpy(batch).permute(0, 3, 1, 2)
        scaled = tensor.float() if batch.dtype != np.uint8 else tensor.float().div(127.5).sub(1.0)
        return to_device(scaled, device)

    identity, low = images("identity_image"), images("low_frame")
    assert identity is not None and low is not None  # every frame has them
    fields = ("prev_frame", "pasted_frame", "edit_mask", "edit_gate", "flow_frame", "kept_face", "kept_alpha")
    return Conditioning(identity, low, *(images(name) for name in fields))


def add_prev_noise(cond: Conditioning, std: float, z: torch.Tensor) -> Conditioning:
    """f_prev + std z (Sec. 4.1.2: the previous frame is noised so errors do not accumulate); z (B,3,S,S)."""
    if cond.prev_frame is None or std == 0:
        return cond
    return cond.replace(prev_frame=cond.prev_frame + std * z)
