"""Checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint is a dict of tensors and plain Python values saved with `torch.save` and
read with `torch.load(weights_only=True)`, so a file from elsewhere cannot run code.
It always holds "config" (the nested `Config` dict) and "model" (the state dict).
"""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import torch

from .config import Config
from .models import DVAE, build_model


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated or not one of ours."""


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Writes to a temporary file in the same folder, then renames: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, corrupt, or holding objects we refuse to unpickle
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        if isinstance(e, pickle.UnpicklingError):  # torch's message suggests weights_only=False: unsafe here
            reason = "not a file of tensors and plain values saved by torch.save"
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {reason[:200]}") from None
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise CheckpointError(f"{path} is not a dvae-tune checkpoint (no config or model inside)")
    return state


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[DVAE, Config]:
    """The model of a checkpoint, in eval mode, and its config."""
    state = load_checkpoint(path, map_location)
    try:
        cfg = Config.from_dict(state["config"])
        model = build_model(cfg.model)
        model.load_state_dict(state["model"])
    except (TypeError, ValueError, RuntimeError) as e:  # a config or weights that are not what they claim
        reason = " ".join(str(e).split())[:300]
        raise CheckpointError(f"{path}: its config and weights do not make a model: {reason}") from None
    return model.to(map_location).eval(), cfg
