"""One typed configuration, from the command line to the search space to the checkpoint.

`Config` has three sections (model, data, train). Every field name is unique across
sections, so a flat mapping such as ``{"z_dim": 32, "prior": "student_t"}`` is
unambiguous: it is what the command line, a search space and a Ray Tune trial carry.
Values are checked on construction; a bad one raises `ConfigError` naming the field
and what is allowed.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

MOTION_CORPORA = ("h36m", "mocap")
MODEL_NAMES = ("vae", "dkf", "storn", "vrnn", "srnn", "rvae_causal", "rvae_noncausal", "dsae")


class ConfigError(ValueError):
    """A configuration value that is unknown, of the wrong type or out of range."""


def _range(lo=None, hi=None, lo_open=False):
    return {"range": (lo, hi, lo_open)}


class _Section:
    """Checks and converts every field on construction, so no invalid section exists."""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, coerce(f.name, hints[f.name], getattr(self, f.name), f.metadata))


@dataclass
class ModelConfig(_Section):
    name: Literal[MODEL_NAMES] = "vrnn"
    x_dim: int = field(default=513, metadata=_range(1))
    z_dim: int = field(default=16, metadata=_range(1))
    h_dim: int = field(default=128, metadata=_range(1))  # RNN state size
    dense_dim: int = field(default=128, metadata=_range(1))  # hidden width of the MLPs
    # hidden widths of the decoder p(x_t | ·), e.g. "32,64,128,256" (the review's DKF and DSAE);
    # "": one layer of dense_dim (benchmarks/README.md: what the review's layers do at a CPU budget)
    decoder_layers: str = ""
    v_dim: int = field(default=16, metadata=_range(1))  # DSAE's static latent
    prior: Literal["gaussian", "student_t"] = "gaussian"
    student_df: float = field(default=5.0, metadata=_range(0.0, lo_open=True))
    learn_df: bool = False
    likelihood: Literal["auto", "itakura_saito", "gaussian"] = "auto"  # auto: itakura_saito on stft, else gaussian
    gaussian_variance: Literal["learned", "fixed"] = "learned"
    dropout: float = field(default=0.0, metadata=_range(0.0, 0.9))

    def __post_init__(self):
        super().__post_init__()
        if not re.fullmatch(r"([1-9]\d*(,[1-9]\d*)*)?", self.decoder_layers.replace(" ", "")):
            raise ConfigError(f"decoder_layers: '{self.decoder_layers}' is not a list of widths; give positive "
                              "integers separated by commas (e.g. 32,64,128,256), or nothing for one of dense_dim")
        self.decoder_layers = self.decoder_layers.replace(" ", "")


@dataclass
class DataConfig(_Section):
    corpus: Literal["asterisk", "vctk", "wsj0", "folder", "h36m", "mocap"] = "asterisk"
    data_root: Optional[str] = None  # None: the corpus's default location
    features: Literal["stft", "mel"] = "stft"
    n_mels: int = field(default=80, metadata=_range(1))
    seq_len: int = field(default=50, metadata=_range(2))
    # frames between the starts of consecutive training (and validation) windows of a sequence;
    # None: seq_len, windows side by side. Smaller overlaps them: more windows from a small corpus
    window_hop: Optional[int] = field(default=None, metadata=_range(1))
    max_utterances: Optional[int] = field(default=None, metadata=_range(1))  # per split; for quick runs
    cache_dir: Optional[str] = None  # None: $DVAE_CACHE or ~/.cache/dvae-tune
    # corpus: the corpus's own split of its files (dvae.data.corpora); within: every motion
    # sequence in every split, cut in time (dvae.data.corpora.WITHIN_PARTS)
    split: Literal["corpus", "within"] = "corpus"

    def __post_init__(self):
        super().__post_init__()
        if self.split == "within" and self.corpus not in MOTION_CORPORA:
            raise ConfigError(f"split: within cuts motion sequences in time; {self.corpus} is speech, whose "
                              "utterances keep the corpus's split (split: corpus)")


@dataclass
class TrainConfig(_Section):
    epochs: int = field(default=100, metadata=_range(1))
    batch_size: int = field(default=32, metadata=_range(1))
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = field(default=1e-3, metadata=_range(0.0, lo_open=True))
    weight_decay: float = field(default=0.0, metadata=_range(0.0))
    grad_clip: float = field(default=5.0, metadata=_range(0.0))  # 0 disables clipping
    lr_schedule: Literal["constant", "step", "exponential", "cosine", "warmup_cosine", "plateau"] = "constant"
    lr_step_epochs: int = field(default=30, metadata=_range(1))  # step: decay every N epochs; plateau: after N flat epochs
    lr_gamma: float = field(default=0.5, metadata=_range(0.0, 1.0, lo_open=True))  # step/exponential/plateau factor
    lr_warmup_epochs: int = field(default=5, metadata=_range(0))  # warmup_cosine
    lr_min: float = field(default=1e-5, metadata=_range(0.0))  # floor of the cosine and plateau schedules
    kl_warmup: Literal["none", "linear", "staircase", "cyclical"] = "linear"
    kl_warmup_epochs: int = field(default=20, metadata=_range(0))  # epoch at which the weight reaches 1 (cycle length for cyclical)
    ss_epochs: int = field(default=0, metadata=_range(0))  # scheduled sampling ramp length; 0 = teacher forcing
    ss_schedule: Literal["linear", "staircase"] = "linear"  # shape of the ramp; staircase: the review's 0.1, 0.2, ..., 1.0
    ss_start_epoch: int = field(default=0, metadata=_range(0))
    ss_max_prob: float = field(default=1.0, metadata=_range(0.0, 1.0))
    generation_mode_eval: bool = False  # validate feeding back the model's own output (the -GM rows)
    patience: int = field(default=20, metadata=_range(0))  # early stopping; 0 disables it
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    num_threads: int = field(default=0, metadata=_range(0))  # torch CPU threads; 0 = leave as is
    compile: bool = False  # torch.compile each frame's step (no gain measured on CPU; on GPUs cuda_graph is the measured fast path)
    cuda_graph: bool = False  # record the whole training step as one CUDA graph and replay it (GPU only)
    amp: Literal["off", "bf16"] = "off"  # bfloat16 autocast of forward and loss (for GPUs)
    matmul_precision: Literal["highest", "high", "medium"] = "highest"  # of float32 matmuls: high allows TF32 (GPUs), medium bf16 (CPUs: runs them on oneDNN)
    media_every: int = field(default=5, metadata=_range(0))  # TensorBoard image/audio every N epochs; 0 = never

    def __post_init__(self):
        super().__post_init__()
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"device: '{self.device}' is not a device; choose auto, cpu, cuda or cuda:N")
        if self.kl_warmup == "cyclical" and self.kl_warmup_epochs == 1:
            raise ConfigError("kl_warmup_epochs: 1 is too short for a cyclical warm-up, whose weight is 0 at the "
                              "start of every cycle; use 2 or more (or 0 for no warm-up)")


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        for name, cls in SECTIONS.items():
            section = getattr(self, name)
            if isinstance(section, dict):
                setattr(self, name, section_from_dict(cls, section))
            elif not isinstance(section, cls):
                raise ConfigError(f"section '{name}' must be a {cls.__name__} or a mapping")
        if self.train.cuda_graph and self.train.device == "cpu":
            raise ConfigError("train.cuda_graph: needs a CUDA device, and train.device is cpu")
        if self.model.likelihood == "itakura_saito" and not self.power_spectra:
            raise ConfigError("likelihood: itakura_saito models power spectrograms; "
                              "with mel features or motion data choose gaussian (or auto)")

    @property
    def power_spectra(self) -> bool:
        return self.data.features == "stft" and self.data.corpus not in MOTION_CORPORA

    def for_data(self, feature_dim: int) -> "Config":
        """The config with the model fitted to its data: input size and likelihood."""
        likelihood = self.model.likelihood
        if likelihood == "auto":
            likelihood = "itakura_saito" if self.power_spectra else "gaussian"
        return self.replace(x_dim=feature_dim, likelihood=likelihood)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        return {k: v for section in self.to_dict().values() for k, v in section.items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Config":
        """Builds a config from a nested ({"model": {...}}) or flat ({"z_dim": 8}) mapping."""
        return cls().replace(**values)

    def replace(self, **values: Any) -> "Config":
        """A copy with the given fields changed; names may be flat or section dicts."""
        nested = {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}
        for key, value in values.items():
            if key in SECTIONS and isinstance(value, dict):
                for k, v in value.items():
                    if k not in nested[key]:
                        raise ConfigError(_unknown(k, SECTIONS[key]))
                    nested[key][k] = v
            else:
                nested[section_of(key)][key] = value
        return Config(**nested)


def section_of(key: str) -> str:
    for name, cls in SECTIONS.items():
        if key in {f.name for f in dataclasses.fields(cls)}:
            return name
    raise ConfigError(_unknown(key))


def all_fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for cls in SECTIONS.values() for f in dataclasses.fields(cls)}


def _unknown(key: str, cls=None) -> str:
    names = [f.name for f in dataclasses.fields(cls)] if cls else sorted(all_fields())
    return f"unknown config field '{key}'; valid fields: {', '.join(names)}"


def section_from_dict(cls, values: dict[str, Any]):
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(_unknown(key, cls))
    return cls(**values)


def field_type(key: str):
    """A config field's declared type, Optional unwrapped: int, float, bool, str or a Literal."""
    hint = typing.get_type_hints(SECTIONS[section_of(key)])[key]
    if typing.get_origin(hint) is typing.Union:  # Optional[X]
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def allowed_values(key: str) -> Optional[tuple]:
    """The choices of a Literal field, else None."""
    hint = field_type(key)
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else None


def coerce(key: str, hint, value, metadata=None):
    """Converts `value` (possibly a command-line string) to the field's type and checks it."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: '{value}' is not allowed; choose one of {', '.join(map(str, args))}")
        return value
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value = value.lower() in ("true", "1", "yes")
            elif not isinstance(value, (bool, int)):
                raise ValueError
            value = bool(value)
        elif hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            value = int(value)
        elif hint is float:
            if isinstance(value, bool):
                raise ValueError
            value = float(value)
        elif hint is str:
            value = str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}") from None
    if hint is float and not math.isfinite(value):  # nan would pass every range check below
        raise ConfigError(f"{key}: {value} is not a finite number")
    lo, hi, lo_open = (metadata or {}).get("range", (None, None, False))
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise ConfigError(f"{key}: {value} is out of range; must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}: {value} is out of range; must be <= {hi}")
    return value


def bounded(kind: type, low: float, strict: bool = False):
    """An argparse type for a number that is no Config field (a length, a count): a finite
    `kind` (int or float) of at least `low`, or above it when `strict`."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not (value > low if strict else value >= low) or not math.isfinite(value):  # nan fails both
            raise argparse.ArgumentTypeError(f"must be a finite number {'>' if strict else '>='} {low}, got {text}")
        return value
    return parse
