"""Diffusion: the schedule (no network), conversions between network outputs, losses, samplers by name."""

from facenhance_cli.diffusion.schedule import Schedule, make_schedule

__all__ = ["Schedule", "make_schedule"]
