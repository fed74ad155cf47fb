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
- and roughness: one of the k neighbours is picked at random with its weight, left out of
  the mean, and its leave-one-out residual (its curve minus what its own neighbours predict
  for it) added. That is how far a configuration strays from its neighbours here, all trained
  with the space's one seed as every trial of a search is; at a recorded configuration the
  curve is its own, and no neighbour's luck counts twice.

So two nearby proposals get two nearby but different curves, as rough as the recorded ones,
and the best region of the space is a region, not one curve. What a dense configuration
scores on average (its expected best val_loss, by which the benchmark also judges the
configuration a search ends with) is the plain mean of its k nearest recorded curves.

The seed repeats (`benchmarks.search_table --seed N --ids ...`, tables
<table>_seed<N>.csv beside it) measure something else, which `python -m
benchmarks.search_surrogate` reports with the surrogate's fit: how much of a configuration's
rank is its seed's doing, from the interaction residuals of configurations x seeds
(y_cs - y_c. - y_.s + y_.., scaled by sqrt(CS / ((C - 1)(S - 1))) to one curve's spread).
A seed's effect on every configuration, and the part of it that varies smoothly with the
configuration, is shared by all trials of a search; so the leave-one-out residuals, not
these, are the surrogate's noise.
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


def seed_spread(table: CurveTable, seed_tables: list[CurveTable], max_t: int) -> dict:
    """Over the configurations recorded with every seed (the table's own curves are one seed,
    each seed table another): each seed's effect on all of them (its mean minus the grand
    mean) and the spread of one curve about its configuration's and its seed's effects (the
    interaction residuals' standard deviation), both at the last epoch; {} under two of them."""
    by_id = {c.config_id: c for c in table.curves}
    for seeded in seed_tables:
        stray = sorted(c.config_id for c in seeded.curves if c.config_id not in by_id)
        if stray:
            raise ValueError(f"a seed table holds configuration {stray[0]}, which the table does not")
    ids = sorted(set.intersection(*({c.config_id for c in t.curves} for t in seed_tables))) if seed_tables else []
    if len(ids) < 2:
        return {}
    runs = [[by_id[i]] + [next(c for c in t.curves if c.config_id == i) for t in seed_tables] for i in ids]
    last = min(max_t, *(len(c.val_loss) for row in runs for c in row)) - 1
    y = np.array([[c.val_loss[last] for c in row] for row in runs])  # configurations x seeds
    n_configs, n_seeds = y.shape
    residuals = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
    residuals *= math.sqrt(n_configs * n_seeds / ((n_configs - 1) * (n_seeds - 1)))
    return {"seed_configurations": ids, "seeds": n_seeds,
            "seed_effect_last_epoch": [float(v) for v in y.mean(0) - y.mean()],
            "seed_interaction_sd_last_epoch": float(residuals.std())}


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
        predicted = left_out_predictions(table, sum(weights[name] * d for name, d in per_field.items()), k, max_t)
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


def left_out_predictions(table: CurveTable, distance: np.ndarray, neighbours: int, max_t: int) -> list[np.ndarray]:
    """Each recorded curve's first `max_t` val_losses as its `neighbours` nearest others
    predict them (weighted_mean), from the matrix of distances between recorded configurations."""
    distance = distance.copy()
    np.fill_diagonal(distance, np.inf)
    return [weighted_mean([table.curves[j] for j in row], distance[i, row])[0][:max_t]
            for i, row in enumerate(np.argsort(distance, axis=1, kind="stable")[:, :neighbours])]


def residuals(table: CurveTable, params, neighbours: int, weights: dict, max_t: int) -> list[np.ndarray | None]:
    """Each recorded curve's first `max_t` val_losses minus what its `neighbours` nearest
    others predict, in the table's order; None where either is not finite."""
    distance = np.array([table.distances(c.params, params, weights) for c in table.curves])
    out = []
    for curve, predicted in zip(table.curves, left_out_predictions(table, distance, neighbours, max_t)):
        residual = np.array(curve.val_loss[:len(predicted)]) - predicted
        out.append(residual if np.isfinite(residual).all() else None)
    return out


def surrogate(table: CurveTable, space, size: int, seed: int = SURROGATE_SEED):
    """The dense table (a CurveTable), what it was made of (a dict for the results file), and
    each dense configuration's expected best val_loss, what it scores on average: the plain
    mean of its k nearest recorded curves."""
    from benchmarks.search_table import sampled_configurations
    max_t = space.asha["max_t"]
    fitted = fit(table, space.params, max_t)
    noise = residuals(table, space.params, fitted["neighbours"], fitted["field_weights"], max_t)
    rng = np.random.default_rng(seed)
    curves, expected = [], []
    for config_id, proposal in enumerate(sampled_configurations(space, size, seed=seed)):
        distance = table.distances(proposal, space.params, fitted["field_weights"])
        order = np.argsort(distance, kind="stable")
        # the plain mean of the k nearest runs: inverse-distance weights would give back a lucky
        # run's luck next to it
        nearest = order[:fitted["neighbours"]]
        mean = weighted_mean([table.curves[i] for i in nearest], np.ones(len(nearest)))[0][:max_t]
        expected.append(float(np.nanmin(mean)) if np.isfinite(mean).any() else math.inf)
        # one neighbour picked with its weight in the mean, its residual added to the mean of the
        # others: at a recorded configuration, its own curve (the mean of the others plus how far
        # it strays from them), and no neighbour's luck counted twice
        rough = [i for i in nearest if noise[i] is not None]
        picked = None
        if rough:
            weights = np.maximum(distance[rough], 1e-12) ** -POWER
            picked = rough[rng.choice(len(rough), p=weights / weights.sum())]
        others = [i for i in order if i != picked][:fitted["neighbours"]]
        loss, seconds = weighted_mean([table.curves[i] for i in others], distance[others])
        if picked is not None:
            loss[:len(noise[picked])] += noise[picked][:len(loss)]
        curves.append(Curve(config_id, proposal, tuple(map(float, loss)), tuple(map(float, seconds))))
    finite = [r for r in noise if r is not None]
    return CurveTable(curves), expected, {
        "configurations": size, "recorded_configurations": len(table.curves), "sampler_seed": seed, "power": POWER,
        **fitted, "residuals": len(finite), "residual_sd_last_epoch": float(np.std([r[-1] for r in finite]))}


def early_ranks(table: CurveTable, max_t: int, epochs=(2, 6), best: int = 20) -> dict:
    """How well the best val_loss by an early epoch orders the configurations as the last
    epoch does (Spearman's rho), over the whole table and over its `best` by the last epoch:
    what ASHA's rungs see of the order a search is judged by."""
    finite = [c for c in table.curves if math.isfinite(c.best(max_t))]
    last = np.array([c.best(max_t) for c in finite])
    top = np.argsort(last, kind="stable")[:best]

    def rho(a, b) -> float:
        return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])

    out = {}
    for epoch in epochs:
        early = np.array([c.best(epoch) for c in finite])
        out[str(epoch)] = {"all": rho(early, last), f"best_{best}": rho(early[top], last[top])}
    return out


def seed_table_paths(recorded: Path) -> list[Path]:
    """The tables of the same configurations with other seeds, beside the recorded one."""
    return sorted(recorded.parent.glob(f"{recorded.stem}_seed*.csv"))


def seed_repeats_markdown(table: CurveTable, seed_tables: list[CurveTable], max_t: int) -> str:
    """The configurations trained again, their best val_loss per seed, as a Markdown table."""
    by_id = {c.config_id: c for c in table.curves}
    seeds = [t.curves[0].params.get("seed", "?") for t in seed_tables]
    rank = {c.config_id: i + 1 for i, c in enumerate(sorted(table.curves, key=lambda c: c.best(max_t)))}
    lines = ["| configuration | rank in the table | " + " | ".join(f"seed {s}" for s in [0, *seeds]) + " |",
             "|---" * (2 + len(seeds) + 1) + "|"]
    for config_id in sorted({c.config_id for t in seed_tables for c in t.curves}, key=rank.get):
        again = [next((c.best(max_t) for c in t.curves if c.config_id == config_id), None) for t in seed_tables]
        lines.append(f"| {config_id} | {rank[config_id]} | {by_id[config_id].best(max_t):.1f} | "
                     + " | ".join("" if v is None else f"{v:.1f}" for v in again) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse
    import json
    import sys

    from dvae.spaces import load_space, space_path
    p = argparse.ArgumentParser(description="The seed repeats, and the surrogate's fitted neighbours and noise")
    p.add_argument("--space", default="vrnn_priors")
    p.add_argument("--budget", default="small")
    p.add_argument("--table", help="the recorded curves (default benchmarks/results/search_table_<space>_<budget>.csv)")
    args = p.parse_args(argv)
    space = load_space(str(space_path(args.space)), args.budget)
    recorded = Path(args.table or Path(__file__).resolve().parent / "results"
                    / f"search_table_{space.name}_{args.budget}.csv")
    table = CurveTable.read(recorded)
    seed_tables = [CurveTable.read(path) for path in seed_table_paths(recorded)]
    max_t = space.asha["max_t"]
    if not seed_tables:
        print(f"benchmarks.search_surrogate: no seed tables beside {recorded} "
              "(python -m benchmarks.search_table --seed N --ids I,J,...)", file=sys.stderr)
        return 2
    print(seed_repeats_markdown(table, seed_tables, max_t))
    fitted = fit(table, space.params, max_t)
    noise = [r for r in residuals(table, space.params, fitted["neighbours"], fitted["field_weights"], max_t) if r is not None]
    print(json.dumps({**seed_spread(table, seed_tables, max_t), **fitted,
                      "residual_sd_last_epoch": float(np.std([r[-1] for r in noise])),
                      "rank_correlation_with_last_epoch": early_ranks(table, max_t)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
