"""Networks: (x_t, t, conditioning) -> tensor. They know nothing of betas, files or sampling."""

from facenhance_cli.nn.encoder import ExpressionEncoder
from facenhance_cli.nn.unet import ConditionalUNet, build_network

__all__ = ["ConditionalUNet", "ExpressionEncoder", "build_network"]
