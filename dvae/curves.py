"""Tables of learning curves: every epoch's val_loss and time for configurations of a space.

`benchmarks/search_table.py` trains configurations sampled uniformly from a space and
writes their curves; a replayed search (`tune_runner.py --replay TABLE`) reads them back,
each trial reporting a recorded curve instead of training, so that search methods can be
compared on real curves at the cost of bookkeeping. A table is a CSV file with one row
per configuration and epoch:

    config_id, variant, <each searched field>, epoch, val_loss, epoch_time_s

and optionally seed (a configuration recorded with several seeds: a trial takes a curve of
its own seed where the table has one). A blank field is one the configuration does not have (student_df with a Gaussian prior);
a val_loss of nan is an epoch that diverged (the curve ends there).

A proposal rarely equals a recorded configuration, so a replayed trial takes the nearest
(`CurveTable.nearest`, optionally the nearest of those not yet replayed): the distance is
summed over the fields, 0 or 1 for a choice, the difference over the field's range for a
number (of logarithms where the space samples it log-uniformly), and 1 where only one of
the two has the field.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .spaces import Param

KEYS = ("config_id", "variant")
CURVE = ("epoch", "val_loss", "epoch_time_s")


@dataclass(frozen=True)
class Curve:
    config_id: int
    params: dict  # variant and searched fields (absent: the configuration does not have it)
    val_loss: tuple[float, ...]  # epoch 1, 2, ...
    epoch_time_s: tuple[float, ...]

    def best(self, epochs: Optional[int] = None) -> float:
        """The lowest val_loss within the first `epochs` epochs (all: None); inf if none is finite."""
        return min((v for v in self.val_loss[:epochs] if math.isfinite(v)), default=math.inf)


class CurveTable:
    def __init__(self, curves: list[Curve]):
        if not curves:
            raise ValueError("a table of learning curves needs at least one configuration")
        self.curves = curves
        self._columns_by_params: dict[tuple, dict] = {}

    @classmethod
    def read(cls, path: str | Path) -> "CurveTable":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no table of learning curves at {path}")
        rows: dict[int, list[dict]] = {}
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in (*KEYS, *CURVE) if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: not a table of learning curves (no column {', '.join(missing)})")
            for row in reader:
                rows.setdefault(int(row["config_id"]), []).append(row)
        curves = []
        for config_id, epochs in sorted(rows.items()):
            epochs.sort(key=lambda r: int(r["epoch"]))
            if [int(r["epoch"]) for r in epochs] != list(range(1, len(epochs) + 1)):
                raise ValueError(f"{path}: configuration {config_id} does not have every epoch from 1")
            params = {k: _value(v) for k, v in epochs[0].items() if k not in (*CURVE, "config_id") and v != ""}
            curves.append(Curve(config_id, params, tuple(float(r["val_loss"]) for r in epochs),
                                tuple(float(r["epoch_time_s"]) for r in epochs)))
        return cls(curves)

    @staticmethod
    def write(path: str | Path, curves: list[Curve], fields: list[str]) -> None:
        """Writes the whole table (a temporary file renamed over the old: never half a table)."""
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[*KEYS, *fields, *CURVE])
            writer.writeheader()
            for curve in curves:
                for epoch, (loss, seconds) in enumerate(zip(curve.val_loss, curve.epoch_time_s), 1):
                    writer.writerow({"config_id": curve.config_id, **curve.params, "epoch": epoch,
                                     "val_loss": loss, "epoch_time_s": f"{seconds:.4f}"})
        tmp.replace(path)

    def nearest(self, proposal: dict, params: tuple[Param, ...], exclude: frozenset[int] = frozenset()) -> Curve:
        """The recorded configuration nearest to `proposal` (a trial's variant and fields),
        leaving out the config_ids in `exclude` unless that leaves none (the first in the
        table's order among equally near ones)."""
        distance = self.distances(proposal, params)
        if exclude:
            left = np.array([c.config_id not in exclude for c in self.curves])
            if left.any():
                distance = np.where(left, distance, np.inf)
        return self.curves[int(np.argmin(distance))]

    def distances(self, proposal: dict, params: tuple[Param, ...], weights: Optional[dict] = None) -> np.ndarray:
        """The distance from `proposal` to every recorded configuration, in the table's order:
        summed over the fields, 0 or 1 for a choice, the difference over the field's range for
        a number (of logarithms where the space samples it log-uniformly), 1 where only one of
        the two has the field, each field's term times its `weights` entry (default 1); the
        variant (and a seed, where the table records one) as a choice."""
        columns = self._columns(tuple(params))
        total = (columns["variant"] != str(proposal.get("variant"))).astype(float)
        total += np.where(columns["has_seed"], columns["seed"] != str(proposal.get("seed")), False)
        for param in params:
            present, values = columns[param.name]
            a = proposal.get(param.name)
            if a is None:
                term = present.astype(float)
            elif param.kind == "choice":
                term = np.where(present, values != str(a), True).astype(float)
            else:
                low, high = _scale(param, param.low), _scale(param, param.high)
                term = np.where(present, np.abs(_scale(param, a) - values) / max(high - low, 1e-12), 1.0)
            total += term if weights is None else weights.get(param.name, 1.0) * term
        return total

    def _columns(self, params: tuple[Param, ...]) -> dict:
        """The recorded configurations as arrays, one per field: whether each has it, and its
        value (numbers scaled as the distance measures them)."""
        if params not in self._columns_by_params:
            columns = {"variant": np.array([str(c.params.get("variant")) for c in self.curves]),
                       "has_seed": np.array(["seed" in c.params for c in self.curves]),
                       "seed": np.array([str(c.params.get("seed")) for c in self.curves])}
            for param in params:
                values = [c.params.get(param.name) for c in self.curves]
                present = np.array([v is not None for v in values])
                if param.kind == "choice":
                    columns[param.name] = present, np.array([str(v) for v in values])
                else:
                    columns[param.name] = present, np.array([np.nan if v is None else _scale(param, v)
                                                             for v in values])
            self._columns_by_params[params] = columns
        return self._columns_by_params[params]

    @property
    def best(self) -> float:
        """The lowest val_loss any configuration reached at any epoch."""
        return min(c.best() for c in self.curves)


def _scale(param: Param, value) -> float:
    """A number as the distance measures it: its logarithm where the space samples it log-uniformly."""
    return math.log(float(value)) if param.log or param.kind == "loguniform" else float(value)


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def replayed_epochs(curve: Curve, epochs: int, patience: int, start: int = 0) -> list[dict]:
    """What a trial would report epoch by epoch on this curve, from epoch `start` + 1 on:
    the trainer's figures and stop rules (dvae.training): at most `epochs` epochs, stopped
    early after `patience` epochs without a better val_loss (0: never), or at a nan."""
    reports, best, best_epoch = [], math.inf, 0
    for epoch, (loss, seconds) in enumerate(zip(curve.val_loss[:epochs], curve.epoch_time_s), 1):
        stop: Optional[str] = None
        if not math.isfinite(loss):
            stop = f"diverged at epoch {epoch}"
        elif loss < best:
            best, best_epoch = loss, epoch
        elif patience and epoch - best_epoch >= patience:
            stop = "early_stopped"
        if stop is None and epoch == min(epochs, len(curve.val_loss)):
            stop = "completed"
        if epoch > start:
            reports.append({"epoch": epoch, "val_loss": loss, "best_val_loss": best, "best_epoch": best_epoch,
                            "diverged": bool(stop and stop.startswith("diverged")), "stop_reason": stop,
                            "epoch_time_s": seconds, "replayed_config": curve.config_id})
        if stop:
            break
    return reports
