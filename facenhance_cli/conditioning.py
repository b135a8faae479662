"""What the denoiser of frame n sees besides x_t (Sec. 4.1.2), as one object from the dataset to the network."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Conditioning:
    """Conditioning tensors of a batch, float32; images in [-1, 1], masks in [0, 1].

    Which fields a model needs is set by its config (unet.use_prev_frame, use_pasted_frame, use_edit_mask);
    the dataset fills exactly those, and the training step, the samplers and the denoiser pass it on as is.
    """

    identity_image: torch.Tensor  # (B, 3, S, S) neutral identity image I_id
    low_frame: torch.Tensor  # (B, 3, L, L) aligned low face on black f_low^n
    prev_frame: torch.Tensor | None = None  # (B, 3, S, S) f_prev^{n-1} with its noise z already added
    pasted_frame: torch.Tensor | None = None  # (B, 3, S, S) ours: the low face warped onto I_id
    edit_mask: torch.Tensor | None = None  # (B, 1, S, S) ours: where the output may differ from the base
    # (B, 1, S, S) ours: where the expression changed the face (`pasting.expression_gate`); multiplies the
    # edit with the mask but is not a network input
    edit_gate: torch.Tensor | None = None

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

    def replace(self, **changes: Any) -> Conditioning:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)
