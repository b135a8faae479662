"""Frozen dataclass configs: network, expression encoder, diffusion, conditioning, sampling, training.

One `FacenhanceConfig` describes a model completely; it is saved (as plain JSON values) inside every
checkpoint so `enhance` rebuilds the model from the file alone. Presets are TOML files in models/presets/.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomllib

from facenhance_cli.errors import UsageError

# The string options, each spelled once: the dataclasses below, validate() and the CLI's choices use these.
BetaSchedule = Literal["linear", "cosine"]
Prediction = Literal["eps", "x0", "v", "xprev"]  # what the network outputs (xprev: the paper's raw x_{t-1})
Loss = Literal["xprev", "eps", "v", "x0"]
Preconditioning = Literal["none", "edm"]
SamplerName = Literal["ddim", "ddpm"]
Spacing = Literal["trailing", "karras"]
Optimizer = Literal["adam", "adamw"]
# mse: one squared error over the batch. relative: each sample's error over its base's (the mean of log-MSE,
# i.e. of PSNR, not of MSE: a near-static clip counts as much as a moving one).
LossScale = Literal["mse", "relative"]
Precision = Literal["fp32", "bf16", "fp16"]  # bf16 autocast runs on the CPU too; fp16 needs CUDA
# denoise: Algorithm 1 (the truth at a random noise level). distill: reproduce a teacher model's samples with
# this config's own sampler (fewer steps), `train --teacher` (training/distill.py).
Objective = Literal["denoise", "distill"]
# How align_targets moves a target's head onto frame 0's pose: a fit of prepare's rigid landmarks (as the low
# frames were aligned) or the inverse of prepare's registered head motion (motion.csv, as eval --align-truth).
TargetMotion = Literal["landmarks", "registered"]
# Where the expression gate holds a model's change back: edit, its whole edit region; face, the pasted face,
# the ring around it by the gate's mean over the face (`pasting.face_scoped_gate`, rows 54, 57, 58).
GateScope = Literal["edit", "face"]


@dataclass(frozen=True)
class UNetConfig:
    """Conditional UNet of Sec. 4.1.2 / 5.2: 192x192, [1,1,2,2,4,8], one res block, attention at level 5."""

    image_size: int = 192  # height = width of x_t, identity image and previous frame
    base_channels: int = 128  # channels at level 1
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 8)  # per level; resolutions 192, 96, 48, 24, 12, 6
    num_res_blocks: int = 1  # per level on the way down (one more on the way up, for the skips)
    attention_levels: tuple[int, ...] = (4,)  # 0-based: 4 is the paper's fifth level (12x12, 512 ch)
    head_channels: int = 64  # channels per attention head
    groups: int = 32  # GroupNorm groups
    dropout: float = 0.0
    time_embed_mult: int = 4  # timestep embedding width = base_channels * this
    use_identity: bool = True  # identity image concatenated to the input (3 channels)
    use_prev_frame: bool = True  # previous frame (+ noise) concatenated to the input (3 channels)
    use_expression_encoder: bool = True  # False: the low frame is upsampled and concatenated (3 channels)
    # The denoiser's preconditioning (not the network) adds the base, the identity image or the pasted
    # frame, to the x0 output: the network learns what changes.
    identity_skip: bool = False
    use_pasted_frame: bool = False  # ours: the low face warped onto the identity image, concatenated (3)
    use_edit_mask: bool = False  # ours: the edit mask (where the face may change) concatenated (1)
    # ours: > 1 folds each patch_size x patch_size block of the stacked inputs into channels (pixel
    # unshuffle, Shi et al. 2016) and unfolds the output, so level 1 runs at image_size / patch_size
    patch_size: int = 1
    # ours: the identity image moved by the low face's optical flow (`flowwarp.flow_frame`), concatenated
    # (3): the identity's own detail where the expression moved it. Stacked last, so a model without it
    # starts a model with it (`nn.transplant.widen_inputs`: the new input weights start at 0)
    use_flow_frame: bool = False

    @property
    def level_channels(self) -> list[int]:
        """Channels at each level, finest first: base_channels times each multiplier."""
        return [self.base_channels * mult for mult in self.channel_mult]

    @property
    def stacked_fields(self) -> tuple[tuple[str, int], ...]:
        """The Conditioning fields stacked on x_t's channels, in order, with their channel counts.

        The one mapping from the switches to the network's image inputs: the network, `in_channels`, the
        exported graph and the conditioning builder all read it.
        """
        fields = (
            ("identity_image", 3, self.use_identity),
            ("prev_frame", 3, self.use_prev_frame),
            ("low_frame", 3, not self.use_expression_encoder),  # upsampled when E_exp does not take it
            ("pasted_frame", 3, self.use_pasted_frame),
            ("edit_mask", 1, self.use_edit_mask),
            ("flow_frame", 3, self.use_flow_frame),
        )
        return tuple((name, channels) for name, channels, used in fields if used)

    @property
    def network_fields(self) -> tuple[str, ...]:
        """Every Conditioning field the network reads: the stacked ones and the low frame (E_exp's input)."""
        stacked = [name for name, _ in self.stacked_fields]
        return tuple(dict.fromkeys([*stacked, "low_frame"]))

    @property
    def in_channels(self) -> int:
        """Input channels: x_t and the stacked conditioning images."""
        return 3 + sum(channels for _, channels in self.stacked_fields)


@dataclass(frozen=True)
class EncoderConfig:
    """Expression encoder E_exp (not specified by the paper): a strided CNN over the 64x64 low frame whose
    output grid (token_grid x token_grid) becomes tokens that join the UNet's self-attention."""

    low_size: int = 64  # low frame height = width
    channels: tuple[int, ...] = (64, 128, 256)  # one stride-2 stage each: 64 -> 32 -> 16 -> 8
    token_grid: int = 8  # tokens = token_grid ** 2 (adaptive-pooled to this grid)


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule and parameterization (Algorithm 1; METHOD.md "A useful identity")."""

    num_timesteps: int = 1000  # T
    beta_schedule: BetaSchedule = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction: Prediction = "eps"  # what the network outputs
    loss: Loss = "xprev"  # xprev: the paper's, Algorithm 1
    clip_x0: bool = True  # clamp predicted x0 to [-1, 1] while sampling
    # none: the network output is the prediction (plus the base with unet.identity_skip). edm: Karras et
    # al. 2022 (Table 1) in VP form: x0 = base + m (c_skip (x_t / sqrt(abar_t) - base) + c_out F(c_in ...)),
    # m the edit mask (1 without one); needs prediction = loss = x0 and weights the loss by 1 / c_out^2.
    preconditioning: Preconditioning = "none"
    sigma_data: float = 0.5  # edm: std of the data the network edits (x0 - base inside the mask)


@dataclass(frozen=True)
class ConditioningConfig:
    """How the conditioning images are made: the previous frame's noise (Sec. 4.1.2; ablations of Table 3)
    and, for models with a pasted frame, how the low face is pasted."""

    prev_noise_std: float = 1.0  # std of z added to f_prev in [-1, 1] scale; 0 = the "no noise" ablation
    prev_noise_per_step: bool = False  # False: one z per frame; True: a fresh z at every denoising step
    # 0: the plain paste (the low face, upscaled, over the identity image). > 0: only the paste's change above
    # a Gaussian of this sigma (px) is taken, the identity's finer detail kept (`pasting.paste_low_face`).
    paste_detail_sigma: float = 0.0
    # 0: off. > 0 (8-bit levels): the model's edit is also multiplied by the expression gate, 1 where the low
    # face changed the identity's coarse appearance by more than about this much (`pasting.expression_gate`).
    edit_gate_levels: float = 0.0
    edit_gate_scope: GateScope = "edit"
    # px at 192 (scaled with the size): how far beyond the pasted face a model with an edit mask may change
    # the identity image (`pasting.edit_mask`; experiments rows 27 and 45).
    edit_margin: int = 16
    # ours: True keeps the plain paste, sharpened (`pasting.kept_face`), as the output inside the pasted face
    # (times the gate): the model draws the ring around it (experiments row 49: its face detail cost expr).
    paste_face: bool = False


@dataclass(frozen=True)
class SamplingConfig:
    """Defaults `enhance` uses for a model trained with this config (overridable on the command line)."""

    sampler: SamplerName = "ddim"
    steps: int = 25  # ddim steps; steps = T with eta = 0 is the paper's own sampler (Algorithms 2-3)
    eta: float = 0.0
    strength: float = 1.0  # ddim: < 1 starts from the noised pasted frame at strength * T (SDEdit)
    spacing: Spacing = "trailing"  # ddim timesteps: trailing (even in t) | karras (denser at low noise)
    # True: every frame of a video starts from the same x_T (no frame-to-frame flicker of sampled detail).
    shared_noise: bool = False


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation (Sec. 5.2: Adam, lr 2e-5, batch 4, EMA 0.9999)."""

    optimizer: Optimizer = "adam"
    lr: float = 2e-5
    weight_decay: float = 0.0
    batch_size: int = 4
    ema_decay: float = 0.9999
    ema_warmup: bool = True  # decay min(ema_decay, (1 + step) / (10 + step)) so short runs have a usable EMA
    grad_clip: float = 1.0  # max gradient norm; 0 disables
    warmup_steps: int = 0  # linear lr warm-up
    max_steps: int = 2_000_000
    flip: bool = True  # random horizontal flips, the same for every image of a sample
    color_jitter: float = 0.0  # per-channel gain in [1 - j, 1 + j], the same for every image of a sample
    # Move each target frame's head onto frame 0's pose (how: target_motion): a moved head teaches blur.
    align_targets: bool = False
    target_motion: TargetMotion = "landmarks"
    # edm only. mse: the masked squared error summed over the batch (big moves dominate). relative: each
    # sample's error over its base's own (`diffusion.losses.edm_loss`), weighed as mean per-frame PSNR is.
    loss_scale: LossScale = "mse"
    # edm only, ours: > 0 adds this times the squared relative error of the edited region's mean
    # |Laplacian| (its fine-detail energy, what `eval`'s sharpness compares) against the truth's
    # (`diffusion.losses.detail_energy_loss`): it asks for the truth's amount of detail, not where.
    detail_weight: float = 0.0
    # ours: the loss's weight in the edit mask's ring around the pasted face (jaw, cheeks: row 47); 1 inside
    ring_weight: float = 1.0
    objective: Objective = "denoise"
    # denoise: t uniform in [min_timestep, T); T - 1 trains only DDIM 1's noise level (x0 from x_T).
    min_timestep: int = 0
    checkpoint_every: int = 5000
    validate_every: int = 5000
    sample_every: int = 5000
    log_every: int = 50
    seed: int = 0


@dataclass(frozen=True)
class FacenhanceConfig:
    """Everything that defines a facenhance model and how it is trained and sampled."""

    name: str = "custom"
    unet: UNetConfig = field(default_factory=UNetConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (tuples become lists)."""
        return _to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FacenhanceConfig:
        """Build from plain values; unknown keys and wrong types are a UsageError."""
        return _from_dict(cls, data, "")

    def replace(self, **overrides: Any) -> FacenhanceConfig:
        """A copy with dotted-key overrides, e.g. replace(**{"training.lr": 1e-4})."""
        data = self.to_dict()
        for key, value in overrides.items():
            _set_dotted(data, key, value)
        return FacenhanceConfig.from_dict(data)

    def with_overrides(
        self, overrides: dict[str, Any], names: dict[str, str] | None = None
    ) -> FacenhanceConfig:
        """A validated copy with the dotted-key overrides that are not None (None: not given, keep ours).

        `names` maps keys to what the user typed (e.g. "sampling.steps" -> "--steps") for the message of
        a value validate() refuses.
        """
        given = {key: value for key, value in overrides.items() if value is not None}
        try:
            return self.replace(**given).validate()
        except UsageError as exc:
            message = str(exc)
            for key, name in (names or {}).items():
                message = message.replace(key, name)
            raise UsageError(message) from None

    def validate(self) -> FacenhanceConfig:
        """Check every choice and range, and the cross-field constraints; return self."""
        _check_choices(self)
        _check_network(self.unet, self.encoder, self.diffusion)
        _check_schedule_and_sampling(self.diffusion, self.sampling, self.conditioning)
        _check_training(self.training)
        if not 0 <= self.training.min_timestep < self.diffusion.num_timesteps:
            raise UsageError("training.min_timestep must be in [0, diffusion.num_timesteps)")
        if self.conditioning.edit_margin < 1:
            raise UsageError("conditioning.edit_margin must be at least 1 px")
        if self.conditioning.edit_gate_levels > 0 and not self.unet.use_edit_mask:
            raise UsageError("conditioning.edit_gate_levels needs unet.use_edit_mask (an EDM edit to gate)")
        if self.conditioning.paste_face and not self.unet.use_edit_mask:
            raise UsageError("conditioning.paste_face needs unet.use_edit_mask (an EDM edit around the face)")
        if self.training.detail_weight > 0 and self.diffusion.preconditioning != "edm":
            raise UsageError("training.detail_weight needs diffusion.preconditioning = 'edm'")
        if self.training.ring_weight != 1 and not self.unet.use_edit_mask:
            raise UsageError("training.ring_weight needs unet.use_edit_mask (a pasted face)")
        if self.training.loss_scale == "relative" and not (
            self.diffusion.preconditioning == "edm" and self.unet.identity_skip
        ):
            raise UsageError(
                "training.loss_scale = 'relative' needs diffusion.preconditioning = 'edm' and "
                "unet.identity_skip (a base to compare against)"
            )
        return self


def _check_network(u: UNetConfig, encoder: EncoderConfig, d: DiffusionConfig) -> None:
    """The UNet's and encoder's shapes fit together, and the switches that need each other are on."""
    n_levels = len(u.channel_mult)
    if u.patch_size not in (1, 2, 4):
        raise UsageError(f"unet.patch_size must be 1, 2 or 4, got {u.patch_size}")
    if u.image_size % (u.patch_size * 2 ** (n_levels - 1)):
        raise UsageError(
            f"unet.image_size {u.image_size} must be divisible by unet.patch_size x 2^{n_levels - 1}"
        )
    if any(not 0 <= lvl < n_levels for lvl in u.attention_levels):
        raise UsageError(f"unet.attention_levels {u.attention_levels} outside 0..{n_levels - 1}")
    for channels in u.level_channels:
        if channels % u.groups:
            raise UsageError("unet.base_channels * each multiplier must be divisible by unet.groups")
    if u.use_expression_encoder and not u.attention_levels:
        raise UsageError("the expression encoder needs at least one attention level to join")
    if u.identity_skip and not (u.use_identity and d.prediction == "x0"):
        raise UsageError("unet.identity_skip needs unet.use_identity and diffusion.prediction = 'x0'")
    if u.use_edit_mask and not (u.use_pasted_frame and d.preconditioning == "edm"):
        raise UsageError(
            "unet.use_edit_mask needs unet.use_pasted_frame and diffusion.preconditioning = 'edm'"
        )
    for level in u.attention_levels:
        channels = u.level_channels[level]
        if u.head_channels <= 0 or channels % u.head_channels:
            raise UsageError(
                f"unet.head_channels {u.head_channels} must divide the {channels} channels of level {level}"
            )
    if u.base_channels % 2:
        raise UsageError("unet.base_channels must be even (sinusoidal timestep embedding)")
    if not encoder.channels or any(c <= 0 for c in encoder.channels):
        raise UsageError("encoder.channels must be a non-empty list of positive numbers")
    if any(c % min(u.groups, c) for c in encoder.channels):
        raise UsageError(f"each of encoder.channels must be divisible by unet.groups ({u.groups}) or smaller")


def _check_schedule_and_sampling(d: DiffusionConfig, s: SamplingConfig, c: ConditioningConfig) -> None:
    """The schedule's and the sampler's numbers are in range."""
    if d.preconditioning == "edm" and not (d.prediction == "x0" and d.loss == "x0" and d.sigma_data > 0):
        raise UsageError(
            "diffusion.preconditioning = 'edm' needs prediction = loss = 'x0' and sigma_data > 0"
        )
    if d.num_timesteps < 1 or not 0 < d.beta_start < d.beta_end < 1:
        raise UsageError("diffusion needs num_timesteps >= 1 and 0 < beta_start < beta_end < 1")
    if not 1 <= s.steps <= d.num_timesteps:
        raise UsageError(f"sampling.steps must be in 1..{d.num_timesteps}")
    if not 0 < s.strength <= 1:
        raise UsageError("sampling.strength must be in (0, 1]")
    if not 0 <= s.eta <= 1:  # Song et al. 2021 eq. 16: 0 is DDIM, 1 is DDPM's variance; above, noise wins
        raise UsageError(f"sampling.eta must be in [0, 1], got {s.eta}")
    if c.prev_noise_std < 0:
        raise UsageError("conditioning.prev_noise_std must be >= 0")
    if c.paste_detail_sigma < 0:
        raise UsageError("conditioning.paste_detail_sigma must be >= 0 (0: the plain paste)")
    if c.edit_gate_levels < 0:
        raise UsageError("conditioning.edit_gate_levels must be >= 0 (0: no expression gate)")


def _check_training(t: TrainingConfig) -> None:
    """Counts at least 1, rates and decays in range."""
    for key in ("batch_size", "max_steps", "checkpoint_every", "validate_every", "sample_every", "log_every"):
        if getattr(t, key) < 1:
            raise UsageError(f"training.{key} must be at least 1")
    if t.seed < 0:
        raise UsageError("training.seed must be >= 0")
    if not 0 <= t.color_jitter < 1:
        raise UsageError("training.color_jitter must be in [0, 1)")
    if t.detail_weight < 0 or t.ring_weight <= 0:
        raise UsageError("training.detail_weight must be >= 0 and training.ring_weight > 0")
    if t.lr <= 0 or not 0 <= t.ema_decay < 1:
        raise UsageError("training.lr must be > 0 and training.ema_decay in [0, 1)")


def _check_choices(config: FacenhanceConfig) -> None:
    """Every number is finite and every Literal-typed field holds one of its choices."""
    for section in dataclasses.fields(config):
        values = getattr(config, section.name)
        if not dataclasses.is_dataclass(values):
            continue
        hints = typing.get_type_hints(type(values))
        for item in dataclasses.fields(values):
            choices = (
                typing.get_args(hints[item.name]) if typing.get_origin(hints[item.name]) is Literal else ()
            )
            value = getattr(values, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UsageError(f"{section.name}.{item.name} must be a finite number, got {value}")
            if choices and value not in choices:
                listed = ", ".join(choices[:-1]) + f" or {choices[-1]}"
                raise UsageError(f"unknown {section.name}.{item.name} {value!r}: {listed}")


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _from_dict(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise UsageError(f"config section {prefix.rstrip('.') or '<root>'} must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UsageError(f"unknown config key {prefix}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _from_dict(typing.cast(type, hint), value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, hint, f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"config key {key} must be a list")
        (item_type, _ellipsis) = typing.get_args(hint)
        return tuple(_coerce(v, item_type, key) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise UsageError(f"config key {key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise UsageError(f"config key {key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"config key {key} must be a number, got {value!r}")
        return float(value)
    if hint is str or origin is Literal:  # a Literal's choices are checked by validate()
        if not isinstance(value, str):
            raise UsageError(f"config key {key} must be a string, got {value!r}")
        return value
    return value


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        if part not in node or not isinstance(node[part], dict):
            raise UsageError(f"unknown config key {key}")
        node = node[part]
    if parts[-1] not in node:
        raise UsageError(f"unknown config key {key}")
    node[parts[-1]] = value


def parse_set_option(item: str) -> tuple[str, Any]:
    """`key=value` from `--set`; the value is parsed as TOML (numbers, booleans, lists), else a string."""
    if "=" not in item:
        raise UsageError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def presets_dir() -> Path:
    """models/presets as shipped inside the package (or in the source checkout)."""
    from facenhance_cli.weights import shipped_models_dir

    return shipped_models_dir() / "presets"


def preset_names() -> list[str]:
    """Names of the shipped presets."""
    return sorted(p.stem for p in presets_dir().glob("*.toml"))


def load_config_file(path: str | Path) -> FacenhanceConfig:
    """A config from a TOML file (sections unet, encoder, diffusion, conditioning, sampling, training)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"invalid TOML in {path}: {exc}") from None
    return FacenhanceConfig.from_dict(data).validate()


def load_preset(name: str) -> FacenhanceConfig:
    """A shipped preset by name (paper, small, tiny)."""
    path = presets_dir() / f"{name}.toml"
    if not path.is_file():
        raise UsageError(f"unknown preset {name!r} (available: {', '.join(preset_names())})")
    return load_config_file(path)


def config_to_toml(config: FacenhanceConfig) -> str:
    """The config as TOML text (what `train` writes to RUN/config.toml)."""
    lines: list[str] = []
    data = config.to_dict()
    lines.append(f"name = {_toml_value(data.pop('name'))}")
    for section, values in data.items():
        lines.append(f"\n[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)
