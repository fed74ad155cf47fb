"""The search benchmark's surrogate: learning curves for configurations nobody trained.

A replay on the recorded table alone gives every proposal one of a few hundred curves, so a
sampler that refines around a good configuration replays the same curve again and again
(nearest) or is pushed onto the next recorded one, however far (distinct). The surrogate
replay (`benchmarks.search_efficiency --replay surrogate`) replays a dense table instead,
built here from the recorded one, as surrogate benchmarks of hyperparameter optimisers do
(Eggensperger et al., AAAI 2015):

- `size` configurations sampled uniformly from the space (seed 2; the recorded table's are
  seed 0, the benchmark's coverage estimate seed 1);
- each one's curve the inverse-distance-weighted mean (weights 1/d^2) of its k nearest
  recorded curves, under the distance of dvae.curves with a weight per field: k and the
  weights are those with the least leave-one-out error of the best val_loss over the
  recorded table (each recorded configuration predicted from the others), so that a field
  that does not change the curves (the prior, on vrnn_priors) does not decide the neighbours;
- plus seed noise: one residual drawn from configurations recorded again with other
  training seeds (`benchmarks.search_table --seed N --ids ...`). Every trial of a search
  runs with the space's one seed, as every curve of the table did, so what differs between
  two configurations is not a seed's effect on all of them (a seed can suit the architecture
  whatever the configuration) but how each configuration's curve strays from its own mean
  and its seed's: the interaction residuals of configurations x seeds,
  y_cs - y_c. - y_.s + y_.., scaled by sqrt(CS / ((C - 1)(S - 1))) to one curve's spread.

So two nearby proposals get two nearby but different curves, each as noisy as a model
trained once, and the best region of the space is a region, not one lucky curve.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dvae.curves import Curve, CurveTable

NEIGHBOURS = (1, 2, 3, 5, 8, 13)  # the k the leave-one-out choice picks from
FIELD_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # and each field's weight
POWER = 2.0
SURROGATE_SEED = 2


def seed_deviations(table: CurveTable, seed_tables: list[CurveTable], max_t: int) -> tuple[list[np.ndarray], dict]:
    """The interaction residuals (first `max_t` epochs) of the configurations recorded with
    every seed (the table's own curves are one seed, each seed table another), and each
    seed's effect on all of them (its mean minus the grand mean, at the last epoch)."""
    by_id = {c.config_id: c for c in table.curves}
    for seeded in seed_tables:
        stray = sorted(c.config_id for c in seeded.curves if c.config_id not in by_id)
        if stray:
            raise ValueError(f"a seed table holds configuration {stray[0]}, which the table does not")
    ids = sorted(set.intersection(*({c.config_id for c in t.curves} for t in seed_tables))) if seed_tables else []
    if len(ids) < 2:
        return [], {}
    runs = [[by_id[i]] + [next(c for c in t.curves if c.config_id == i) for t in seed_tables] for i in ids]
    length = min(max_t, *(len(c.val_loss) for row in runs for c in row))
    y = np.array([[c.val_loss[:length] for c in row] for row in runs])  # configurations x seeds x epochs
    n_configs, n_seeds = y.shape[:2]
    residuals = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean((0, 1), keepdims=True)
    residuals *= math.sqrt(n_configs * n_seeds / ((n_configs - 1) * (n_seeds - 1)))
    seed_effect = y.mean(0)[:, -1] - y.mean((0, 1))[-1]
    return list(residuals.reshape(-1, length)), {
        "seed_configurations": ids, "seeds": n_seeds, "seed_effect_last_epoch": [float(v) for v in seed_effect]}


def weighted_mean(curves: list[Curve], distance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The curves' val_loss and epoch times averaged with weights 1/d^2 (a curve at distance 0
    alone), as long as the shortest of them: one that diverged (nan) ends the mean there."""
    if distance.min() <= 0:
        curves, weights = [curves[int(np.argmin(distance))]], np.array([1.0])
    else:
        weights = distance ** -POWER
    weights = weights / weights.sum()
    length = min(len(c.val_loss) for c in curves)
    loss = sum(w * np.array(c.val_loss[:length]) for w, c in zip(weights, curves))
    seconds = sum(w * np.array(c.epoch_time_s[:length]) for w, c in zip(weights, curves))
    return loss, seconds


def fit(table: CurveTable, params, max_t: int) -> dict:
    """The neighbours and field weights of least leave-one-out median absolute error of the
    best val_loss (coordinate descent over FIELD_WEIGHTS from all weights 1, for each k)."""
    n = len(table.curves)
    per_field = {p.name: np.array([table.distances(c.params, (p,)) for c in table.curves]) for p in params}
    best = np.array([c.best(max_t) for c in table.curves])

    def error(weights: dict, k: int) -> float:
        distance = sum(weights[name] * d for name, d in per_field.items())
        np.fill_diagonal(distance, np.inf)
        predicted = [weighted_mean([table.curves[j] for j in row], distance[i, row])[0][:max_t]
                     for i, row in enumerate(np.argsort(distance, axis=1, kind="stable")[:, :k])]
        return float(np.median(np.abs([np.nanmin(p) if np.isfinite(p).any() else np.inf for p in predicted] - best)))

    fits = {}
    for k in (k for k in NEIGHBOURS if k < n):
        weights = {p.name: 1.0 for p in params}
        for _ in range(2):
            for name in weights:
                weights[name] = min(FIELD_WEIGHTS, key=lambda w: error({**weights, name: w}, k))
        fits[k] = {"weights": weights, "error": error(weights, k)}
    k = min(fits, key=lambda k: fits[k]["error"])
    unweighted = error({p.name: 1.0 for p in params}, k)
    return {"neighbours": k, "field_weights": fits[k]["weights"], "leave_one_out_median_abs_error": fits[k]["error"],
            "leave_one_out_median_abs_error_unweighted": unweighted,
            "leave_one_out_by_neighbours": {str(k): f["error"] for k, f in fits.items()}}


def surrogate(table: CurveTable, space, size: int, deviations: list[np.ndarray], seed: int = SURROGATE_SEED):
    """The dense table (a CurveTable) and what it was made of (a dict for the results file),
    each curve plus one of `deviations` drawn at random."""
    from benchmarks.search_table import sampled_configurations
    max_t = space.asha["max_t"]
    fitted = fit(table, space.params, max_t)
    rng = np.random.default_rng(seed)
    curves = []
    for config_id, proposal in enumerate(sampled_configurations(space, size, seed=seed)):
        distance = table.distances(proposal, space.params, fitted["field_weights"])
        nearest = np.argsort(distance, kind="stable")[:fitted["neighbours"]]
        loss, seconds = weighted_mean([table.curves[i] for i in nearest], distance[nearest])
        if deviations:
            noise = deviations[rng.integers(len(deviations))]
            loss[:len(noise)] += noise[:len(loss)]
        curves.append(Curve(config_id, proposal, tuple(map(float, loss)), tuple(map(float, seconds))))
    noise_sd = float(np.std([d[-1] for d in deviations])) if deviations else 0.0
    return CurveTable(curves), {
        "configurations": size, "recorded_configurations": len(table.curves), "sampler_seed": seed, "power": POWER,
        **fitted, "seed_deviations": len(deviations), "seed_noise_sd_last_epoch": noise_sd}


def seed_table_paths(recorded: Path) -> list[Path]:
    """The tables of the same configurations with other seeds, beside the recorded one."""
    return sorted(recorded.parent.glob(f"{recorded.stem}_seed*.csv"))
