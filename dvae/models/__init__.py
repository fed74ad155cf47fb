"""The DVAE model zoo and its registry: build any model from its name and a config."""
from __future__ import annotations

from functools import partial

from ..config import MODEL_NAMES, ModelConfig, section_from_dict
from .base import DVAE, DVAEOutput, Loss
from .dkf import DKF
from .dsae import DSAE
from .rvae import RVAE
from .srnn import SRNN
from .storn import STORN
from .vae import VAE
from .vrnn import VRNN

MODELS = {
    "vae": VAE,
    "dkf": DKF,
    "storn": STORN,
    "vrnn": VRNN,
    "srnn": SRNN,
    "rvae_causal": partial(RVAE, causal=True),
    "rvae_noncausal": partial(RVAE, causal=False),
    "dsae": DSAE,
}
assert tuple(MODELS) == MODEL_NAMES


def build_model(cfg: ModelConfig | dict) -> DVAE:
    """A model from a `ModelConfig` or a plain mapping of its fields (name, z_dim, prior, ...)."""
    if isinstance(cfg, dict):
        cfg = section_from_dict(ModelConfig, cfg)
    return MODELS[cfg.name](cfg)


__all__ = ["DVAE", "DVAEOutput", "Loss", "MODELS", "build_model"]
