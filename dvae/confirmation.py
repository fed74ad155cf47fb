"""Confirmation with seeds: a search's best configurations trained again under several seeds.

A search ranks single runs, and one run's lead over another is often seed noise. The
confirmation of a finished search picks, for each model, its `top` best configurations and,
for each studied factor (a categorical parameter's values; a numeric parameter's range cut in
`BUCKETS` equal parts, on a log scale where the parameter is log-scaled), the model's best
configuration moved to each other level of that factor and nothing else: one factor at a
time, so that comparing them measures that factor alone. A numeric factor moves to the value
of the search's best trial in that bucket (its middle if no trial fell there). A conditional
parameter (student_df) is not a factor of its own: it comes and goes with its condition,
taking the value of the search's best trial that had it.

Each picked configuration runs once per seed, to its full budget (no ASHA), as the trials
of a new experiment.

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
    """The configurations to confirm, in order: per model its `top` best, then its best moved
    to each other level of each factor, one factor at a time (without repeats)."""
    picked: list[dict] = []

    def add(config: dict) -> None:
        if config not in picked:
            picked.append(config)

    for variant in (v.name for v in space.variants):
        ranked = [config for config, _ in sorted((t for t in trials if t[0]["variant"] == variant), key=lambda t: t[1])]
        if not ranked:
            continue
        for config in ranked[:top]:
            add(config)
        for param in factors(space):
            for value in level_values(param, ranked):
                if level(param, value) != level(param, ranked[0].get(param.name)):
                    add(moved(space, ranked, param, value))
    return picked


def level_values(param: Param, ranked: list[dict]) -> list:
    """A value for each level of `param`: the best-ranked trial's in that level, else its middle."""
    if param.kind == "choice":
        return list(param.choices)
    log = param.kind == "loguniform" or param.log
    values = []
    for index in range(BUCKETS):
        low, high = ((math.log(param.low), math.log(param.high)) if log else (param.low, param.high))
        middle = low + (high - low) * (index + 0.5) / BUCKETS
        middle = math.exp(middle) if log else middle
        middle = int(round(middle)) if param.kind == "int" else middle
        target = level(param, middle)
        values.append(next((c[param.name] for c in ranked if level(param, c.get(param.name)) == target), middle))
    return values


def moved(space: Space, ranked: list[dict], param: Param, value) -> dict:
    """The best configuration with `param` at `value`, its conditional parameters following."""
    config = {**ranked[0], param.name: value}
    for dependent in space.params:
        if dependent.when is None or dependent.when[0] != param.name:
            continue
        if value in dependent.when[1]:
            donor = next((c for c in ranked if dependent.name in c), None)
            fallback = level_values(dependent, [])
            config[dependent.name] = donor[dependent.name] if donor else fallback[len(fallback) // 2]
        else:
            config.pop(dependent.name, None)
    return config


def confirmation_space(space: Space, seeds: tuple[int, ...], configurations: list[dict]) -> Space:
    """The space as its confirmation runs it: the picked configurations, each once per seed,
    every trial to the budget's end."""
    return dataclasses.replace(space, seeds=tuple(seeds), asha=None, num_samples=len(configurations))
