"""Confirmation with seeds: a search's best configurations trained again under several seeds.

A search ranks single runs, and one run's lead over another is often seed noise. The
confirmation of a finished search picks, for each model, its `top` best configurations and
the best configuration at each level of each studied factor (a categorical parameter's
values; a numeric parameter's range cut in `BUCKETS` equal parts, on a log scale where the
parameter is log-scaled), and runs each of them once per seed, to its full budget (no
ASHA), as the trials of a new experiment. A conditional parameter (student_df) is not a
factor of its own: it goes along with the configuration that holds it.

    python tune_runner.py --confirm experiments/mel_study-small-... --seeds 0,1,2

The picks are stored in the new experiment's settings (`confirm`), which is what --resume
reads; analysis.findings compares the levels of each factor across their seeds.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Optional

from .experiment import read_params, read_results, trial_dirs
from .spaces import Param, Space

BUCKETS = 3


def factors(space: Space) -> tuple[Param, ...]:
    """The studied factors: every searched parameter that is not conditional on another."""
    return tuple(p for p in space.params if p.when is None)


def level(param: Param, value) -> Optional[str]:
    """The level of `value` for factor `param`: the value itself for a choice, else the
    bucket of its range it falls in ("0-16" for kl_warmup_epochs in [0, 50])."""
    if value is None:
        return None
    if param.kind == "choice":
        return str(value)
    log = param.kind == "loguniform" or param.log
    scale = math.log if log else float
    low, high = scale(param.low), scale(param.high)
    index = min(BUCKETS - 1, max(0, int((scale(float(value)) - low) / (high - low) * BUCKETS))) if high > low else 0
    edges = [low + (high - low) * i / BUCKETS for i in (index, index + 1)]
    shown = [math.exp(e) if log else e for e in edges]
    digits = ".0f" if param.kind == "int" else ".3g"
    return f"{shown[0]:{digits}}-{shown[1]:{digits}}"


def searched_trials(experiment: Path, space: Space) -> list[tuple[dict, float]]:
    """(sampled values with the variant, best val_loss) of every trial that reported a finite one."""
    names = ["variant", *(p.name for p in space.params)]
    found = []
    for folder in trial_dirs(experiment):
        try:
            params = read_params(folder)
        except ValueError:
            continue
        losses = [r.get("val_loss") for r in read_results(folder)]
        losses = [v for v in losses if isinstance(v, (int, float)) and math.isfinite(v)]
        if losses and "variant" in params:
            found.append(({k: params[k] for k in names if params.get(k) is not None}, min(losses)))
    return found


def pick(space: Space, trials: list[tuple[dict, float]], top: int = 1) -> list[dict]:
    """The configurations to confirm, in order: per model its `top` best, then the best at
    each level of each factor (without repeats)."""
    picked: list[dict] = []

    def add(config: dict) -> None:
        if config not in picked:
            picked.append(config)

    for variant in (v.name for v in space.variants):
        ranked = sorted((t for t in trials if t[0]["variant"] == variant), key=lambda t: t[1])
        for config, _ in ranked[:top]:
            add(config)
        for param in factors(space):
            best_at: dict[str, dict] = {}
            for config, _ in ranked:
                best_at.setdefault(level(param, config.get(param.name)), config)
            for value, config in best_at.items():
                if value is not None:
                    add(config)
    return picked


def confirmation_space(space: Space, seeds: tuple[int, ...], configurations: list[dict]) -> Space:
    """The space as its confirmation runs it: the picked configurations, each once per seed,
    every trial to the budget's end."""
    return dataclasses.replace(space, seeds=tuple(seeds), asha=None, num_samples=len(configurations))
