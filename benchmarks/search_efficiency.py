"""How fast each search method finds a good model, on recorded learning curves.

    python -m benchmarks.search_efficiency                       # every method, 30 repetitions each
    python -m benchmarks.search_efficiency --resume              # go on after an interruption
    python -m benchmarks.search_efficiency --repetitions 2 --epochs 60 --table T.csv --out /tmp/eff
    python -m benchmarks.search_efficiency --configs 200 --resume   # the table's first 200 curves only
    python -m benchmarks.search_efficiency --replay surrogate --methods random --variant grace_period=1 --resume

Replays searches of a space (default vrnn_priors at its small budget, the main job) on a
table of learning curves from benchmarks/search_table.py: each trial reports the recorded
curve nearest its configuration (dvae.curves), through the real Ray Tune machinery for the
Ray methods (the project's trainable in replay mode, its searcher and scheduler classes),
until the search has consumed `--epochs` epochs in all. Methods:

- random, tpe: Optuna's random sampler or TPE, every trial to the full budget;
- asha_random: ASHA with random sampling;
- asha_tpe_ray: ASHA with Ray's OptunaSearch as it comes (an ASHA-stopped trial told to
  the study as COMPLETE with its last, low-budget val_loss);
- asha_tpe: ASHA with TPE as this project configures it (dvae.search: per-epoch values,
  ASHA's stops as PRUNED, ASHA's records kept) - the default search;
- bohb: Ray's TuneBOHB with HyperBand for BOHB (needs `pip install hpbandster ConfigSpace`);
- optuna_hyperband: Optuna's own TPE with its Hyperband pruner, one trial at a time (no Ray);
- asha_tpe[field=value,...] (`--variant field=value,...`): the default search with other
  ASHA rungs (grace_period, reduction_factor) or TPE options (n_startup_trials,
  multivariate, group), to choose its settings;
- syne_asha, syne_bohb: Syne Tune's ASHA and its BOHB (ASHA with a KDE searcher) on Syne
  Tune's simulator backend, the table as its blackbox (`pip install syne-tune`; MOBSTER, the
  issue's other anchor, is no longer in Syne Tune 0.16).

Two replays (`--replay`): `nearest`, each trial replays the recorded curve nearest its
configuration, so that proposals close to one another replay one curve again and again;
`distinct`, each trial replays the nearest curve its search has not replayed yet (and takes
that curve's configuration as its own), as a new configuration near a tried one would be a
new model in a real search; only once every curve has been replayed do they repeat;
`surrogate`, the nearest replay on a dense table interpolated from the recorded one, with
the recorded curves' roughness added (benchmarks/search_surrogate.py), so that a proposal
near a tried configuration gets a nearby, different curve.

Per run it records the best full-budget val_loss found against epochs consumed; per method,
the epochs needed to come within 1% of the table's best (the recorded table's, on a
surrogate) and to reach random search's median final best, median and quartiles over the
repetitions, and their ratio to random search's.
Runs are appended to <out>/<stem>_runs.jsonl as they finish (what --resume keeps); the
summary goes to <out>/<stem>.json and the figure to <stem>.png, where the stem is
search_efficiency for the nearest-curve replay, search_efficiency_distinct and
search_efficiency_surrogate for the others.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
from ray.tune.search import ConcurrencyLimiter, Searcher

RESULTS = Path(__file__).resolve().parent / "results"
RAY_METHODS = ("random", "tpe", "asha_random", "asha_tpe_ray", "asha_tpe", "bohb")
SYNE_METHODS = ("syne_asha", "syne_bohb")
METHODS = (*RAY_METHODS, "optuna_hyperband", *SYNE_METHODS)
# what a variant of the default search (`--variant`) may change: ASHA's rungs and TPE's options
VARIANT_FIELDS = {"grace_period": int, "reduction_factor": int, "n_startup_trials": int,
                  "multivariate": bool, "group": bool}
ASHA_FIELDS = ("grace_period", "reduction_factor")
VARIANT_PREFIX = "asha_tpe["  # a variant's method name: asha_tpe[field=value,...]
TOLERANCE = 0.01  # "within 1% of the table's best"
BUDGET_MARKS = (100, 300, 600, 1200)  # epochs consumed at which the summary gives the best found so far
INFORMED_SHARES = (0.01, 0.025, 0.1)  # of a surrogate: the best configurations an informed search samples
REPLAYS = {"nearest": "search_efficiency", "distinct": "search_efficiency_distinct",  # replay: results' stem
           "surrogate": "search_efficiency_surrogate"}


class DistinctCurves:
    """The curves one search has replayed: a new configuration gets the nearest of the others."""

    def __init__(self, table, params):
        self.table, self.params, self.replayed = table, params, set()

    def curve(self, proposal: dict):
        curve = self.table.nearest(proposal, self.params, exclude=frozenset(self.replayed))
        self.replayed.add(curve.config_id)
        return curve


class DistinctLimiter(ConcurrencyLimiter):
    """ConcurrencyLimiter whose suggestions become the nearest curve not yet replayed: the
    trial's configuration is rewritten to that curve's, which the replay trainable then finds
    at distance 0. The searcher keeps what it proposed (every searcher here records its own
    proposal per trial id), so it learns that proposal's result."""

    def __init__(self, searcher, max_concurrent: int, curves: DistinctCurves, shared: dict):
        super().__init__(searcher, max_concurrent)
        self.curves, self.shared = curves, shared

    def suggest(self, trial_id: str):
        suggestion = super().suggest(trial_id)
        if suggestion in (None, Searcher.FINISHED):
            return suggestion
        curve = self.curves.curve({**self.shared, **suggestion})
        rewritten = {k: v for k, v in suggestion.items() if k not in {p.name for p in self.curves.params}}
        rewritten.update({p.name: curve.params[p.name] for p in self.curves.params if p.name in curve.params})
        return rewritten


def variant_method(spec: str) -> str:
    """The method name of a variant of the default search, `asha_tpe[field=value,...]`, from
    `field=value,...` (VARIANT_FIELDS); ValueError naming what is wrong."""
    settings = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        field, _, value = item.partition("=")
        if field not in VARIANT_FIELDS or not value:
            raise ValueError(f"--variant {spec}: {item!r} is not field=value with a field of "
                             f"{', '.join(VARIANT_FIELDS)}")
        if VARIANT_FIELDS[field] is bool and value not in ("true", "false"):
            raise ValueError(f"--variant {spec}: {field} is true or false")
        least = 2 if field == "reduction_factor" else 1
        if VARIANT_FIELDS[field] is int and not (value.isdigit() and int(value) >= least):
            raise ValueError(f"--variant {spec}: {field} is a whole number of at least {least}")
        settings[field] = value
    if not settings:
        raise ValueError("--variant: give field=value,... (fields: " + ", ".join(VARIANT_FIELDS) + ")")
    return VARIANT_PREFIX + ",".join(f"{k}={v}" for k, v in sorted(settings.items())) + "]"


def variant_settings(method: str) -> tuple[dict, dict]:
    """A variant's ASHA settings and TPE options, from its method name; ({}, {}) for a method."""
    if not method.startswith(VARIANT_PREFIX):
        return {}, {}
    items = dict(item.split("=") for item in method[len(VARIANT_PREFIX):-1].split(","))
    typed = {k: (v == "true") if VARIANT_FIELDS[k] is bool else int(v) for k, v in items.items()}
    return ({k: v for k, v in typed.items() if k in ASHA_FIELDS},
            {k: v for k, v in typed.items() if k not in ASHA_FIELDS})


def trajectory(events: list[tuple[int, int]], table, max_t: int) -> list[tuple[int, float, int]]:
    """(epochs consumed, best full-budget val_loss so far, its configuration) at each
    improvement, from the reported (epoch, replayed configuration) events in the order they came."""
    by_id = {c.config_id: c for c in table.curves}
    best, points = math.inf, []
    for used, (epoch, config_id) in enumerate(events, 1):
        curve = by_id[config_id]
        reached_end = epoch >= min(max_t, len(curve.val_loss))
        if reached_end and curve.best(max_t) < best:
            best = curve.best(max_t)
            points.append((used, best, config_id))
    return points


def config_space(space, seed: int):
    """The space as a ConfigSpace for BOHB, conditional fields as conditions."""
    import ConfigSpace as CS
    cs = CS.ConfigurationSpace(seed=seed)
    hyperparameters = {}
    for param in space.params:
        if param.kind == "choice":
            hp = CS.CategoricalHyperparameter(param.name, list(param.choices))
        elif param.kind == "int":
            hp = CS.UniformIntegerHyperparameter(param.name, int(param.low), int(param.high), log=param.log)
        else:
            hp = CS.UniformFloatHyperparameter(param.name, param.low, param.high, log=param.kind == "loguniform")
        hyperparameters[param.name] = hp
        cs.add(hp)
    for param in space.params:
        if param.when:
            parent, values = param.when
            cs.add(CS.InCondition(hyperparameters[param.name], hyperparameters[parent], list(values)))
    return cs


def ray_run(method: str, space, table_path: Path, rep: int, epochs: int, concurrent: int,
            distinct: Optional[DistinctCurves] = None) -> list[tuple[int, int]]:
    """One replayed search through Ray Tune; the (epoch, configuration) of every report, in order.
    `distinct`: each trial replays a curve not yet replayed (DistinctLimiter)."""
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    from dvae import experiment, search

    asha, tpe = variant_settings(method)
    if asha:
        space = dataclasses.replace(space, asha={**space.asha, **asha})
    method = "asha_tpe" if method.startswith(VARIANT_PREFIX) else method
    folder = Path(tempfile.mkdtemp(prefix=f"{method}-{rep}-", dir=os.environ.get("DVAE_BENCH_TMP")))
    shared = search.param_space(space, search.replay_settings(space, str(table_path)))
    if method == "bohb":
        from ray.tune.schedulers import HyperBandForBOHB
        from ray.tune.search.bohb import TuneBOHB
        (variant,) = space.variants  # BOHB samples the fields; the model is the space's one
        shared = {**shared, **variant.overrides, "variant": variant.name}
        searcher = TuneBOHB(config_space(space, rep), metric=search.METRIC, mode=search.MODE, seed=rep)
        scheduler = HyperBandForBOHB(time_attr="epoch", max_t=space.asha["max_t"],
                                     reduction_factor=space.asha["reduction_factor"])
    else:
        random = method in ("random", "asha_random")
        sampler = optuna.samplers.RandomSampler(seed=rep) if random else \
            optuna.samplers.TPESampler(seed=rep, constant_liar=True, **tpe)
        searcher_class = OptunaSearch if method == "asha_tpe_ray" else search.StudySearch
        extra = {} if method == "asha_tpe_ray" else {"max_t": space.asha["max_t"]}
        searcher = searcher_class(search.OptunaSpace(space), metric=search.METRIC, mode=search.MODE, sampler=sampler,
                                  **extra)
        if method in ("random", "tpe"):
            scheduler = FIFOScheduler()
        elif method == "asha_tpe":
            scheduler = search.RecordedASHA(folder / experiment.ASHA_RECORDS, **space.asha)
        else:
            scheduler = ASHAScheduler(time_attr="epoch", **space.asha)
    events: list[tuple[int, int]] = []

    class Record(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            events.append((int(result["epoch"]), int(result["replayed_config"])))

    class EpochBudget(tune.Stopper):
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return len(events) >= epochs

    tuner = tune.Tuner(
        tune.with_resources(search.trainable, {"cpu": 2 / concurrent}),
        param_space=shared,
        tune_config=tune.TuneConfig(metric=search.METRIC, mode=search.MODE, scheduler=scheduler,
                                    search_alg=DistinctLimiter(searcher, concurrent, distinct, shared) if distinct
                                    else ConcurrencyLimiter(searcher, max_concurrent=concurrent),
                                    num_samples=10_000, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(folder / "ray"), name="run", stop=EpochBudget(), verbose=0,
                                  callbacks=[Record()],
                                  # every checkpoint kept (each a few bytes): with num_to_keep set, Tune
                                  # snapshots the whole experiment after every trial checkpoint
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=None)),
    )
    try:
        tuner.fit()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return events[:epochs]


def optuna_run(space, table, rep: int, epochs: int, distinct: Optional[DistinctCurves] = None) -> list[tuple[int, int]]:
    """Optuna's TPE with its Hyperband pruner on the same curves, one trial at a time."""
    import optuna

    from dvae.search import OptunaSpace
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    asha = space.asha
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=rep), pruner=optuna.pruners.HyperbandPruner(
        min_resource=asha["grace_period"], max_resource=asha["max_t"], reduction_factor=asha["reduction_factor"]))
    propose = OptunaSpace(space)
    events: list[tuple[int, int]] = []

    def objective(trial):
        propose(trial)
        proposal = {"variant": trial.params.get("variant", space.variants[0].name), **trial.params}
        curve = distinct.curve(proposal) if distinct else table.nearest(proposal, space.params)
        for epoch, value in enumerate(curve.val_loss[:asha["max_t"]], 1):
            if len(events) >= epochs:
                raise optuna.TrialPruned()
            events.append((epoch, curve.config_id))
            if not math.isfinite(value):
                raise optuna.TrialPruned()
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return curve.best(asha["max_t"])

    while len(events) < epochs:
        study.optimize(objective, n_trials=1)
    return events


def syne_run(method: str, space, table, rep: int, epochs: int, concurrent: int,
             distinct: Optional[DistinctCurves] = None) -> list[tuple[int, int]]:
    """Syne Tune's ASHA or BOHB on its simulator backend, the curves as a blackbox (the
    recorded curve nearest each configuration, as in the Ray replays; `distinct`: a new
    configuration's curve is one not yet replayed, the same curve each time it is asked for)."""
    import logging

    from syne_tune import Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository.blackbox import Blackbox
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend
    from syne_tune.config_space import choice, loguniform, randint, uniform
    from syne_tune.optimizer.baselines import ASHA, BOHB

    logging.getLogger("syne_tune").setLevel(logging.WARNING)
    asha = space.asha
    max_t = asha["max_t"]
    (variant,) = space.variants

    def domain(param):
        if param.kind == "choice":
            return choice(list(param.choices))
        if param.kind == "int":
            return randint(int(param.low), int(param.high))
        return (loguniform if param.kind == "loguniform" else uniform)(param.low, param.high)

    config_space = {p.name: domain(p) for p in space.params}  # a conditional field is always sampled
    curve_of: dict[tuple, object] = {}  # a configuration's curve, asked for again at each fidelity

    class NearestCurve(Blackbox):
        def __init__(self):
            super().__init__(config_space, fidelity_space={"epoch": randint(1, max_t)},
                             objectives_names=["val_loss", "elapsed_time", "replayed_config"])

        @property
        def fidelity_values(self):
            return np.arange(1, max_t + 1)

        def _objective_function(self, configuration, fidelity=None, seed=None):
            proposal = {"variant": variant.name, **configuration}
            for param in space.params:  # a conditional field exists only where its condition holds
                if param.when and proposal.get(param.when[0]) not in param.when[1]:
                    proposal.pop(param.name, None)
            key = tuple(sorted((k, str(v)) for k, v in configuration.items()))
            if key not in curve_of:
                curve_of[key] = distinct.curve(proposal) if distinct else table.nearest(proposal, space.params)
            curve = curve_of[key]
            rows = np.array([[v if math.isfinite(v) else 1e30, e + 1.0, curve.config_id]
                             for e, v in enumerate(curve.val_loss[:max_t])])
            if fidelity is None:
                return rows
            return dict(zip(self.objectives_names, rows[int(fidelity["epoch"]) - 1]))

    events: list[tuple[int, int]] = []

    class Record(SimulatorCallback):
        def on_trial_result(self, trial, status, result, decision):
            super().on_trial_result(trial, status, result, decision)
            events.append((int(result["epoch"]), int(result["replayed_config"])))

    scheduler_class = {"syne_asha": ASHA, "syne_bohb": BOHB}[method]
    scheduler = scheduler_class(config_space, metric="val_loss", time_attr="epoch", max_t=max_t, do_minimize=True,
                                grace_period=asha["grace_period"], reduction_factor=asha["reduction_factor"],
                                random_seed=rep)
    folder = Path(tempfile.mkdtemp(prefix=f"{method}-{rep}-", dir=os.environ.get("DVAE_BENCH_TMP")))
    os.environ["SYNETUNE_FOLDER"] = str(folder)
    try:
        Tuner(trial_backend=UserBlackboxBackend(blackbox=NearestCurve(), elapsed_time_attr="elapsed_time"),
              # the results as the simulator delivers them, counted here (Syne Tune's own count of
              # evaluations runs ahead of them)
              scheduler=scheduler, stop_criterion=lambda status: len(events) >= epochs,
              n_workers=concurrent, sleep_time=0, callbacks=[Record()], save_tuner=False,
              print_update_interval=1e9, results_update_interval=1e9).run()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return events[:epochs]


def syne_installed() -> bool:
    try:
        import syne_tune  # noqa: F401
    except ImportError:
        return False
    return True


def best_by(points: list, used: int) -> float:
    """The best full-budget val_loss found within `used` epochs (inf: none yet)."""
    return min((point[1] for point in points if point[0] <= used), default=math.inf)


def epochs_to(points: list, target: float) -> float:
    return next((point[0] for point in points if point[1] <= target), math.inf)


def expected_points(points: list, expected: list[float]) -> list[tuple[int, float]]:
    """The trajectory as (epochs consumed, expected val_loss of the configuration found so far):
    the search keeps the run that scored best, and what that configuration scores on average
    is `expected` (per configuration id, a surrogate's noise-free mean)."""
    return [(point[0], expected[point[2]]) for point in points]


def quartiles(values: list[float]) -> dict:
    """Median and quartiles; a run that never got there counts as infinitely many epochs, and
    a quartile among those is None."""
    if not values:
        return {"median": None, "q1": None, "q3": None}
    never = 1e300  # a stand-in for inf that interpolates without nan
    q1, median, q3 = np.percentile(np.minimum(np.array(values, dtype=float), never), [25, 50, 75])
    return {k: (None if v > never * 1e-10 else _plain(v)) for k, v in (("median", median), ("q1", q1), ("q3", q3))}


def ratio_interval(ours: list[float], random: list[float], draws: int = 2000) -> list[Optional[float]]:
    """A 95% bootstrap interval of the ratio of medians (ours over random search's), the
    repetitions of each method resampled; a run that never got there counts as infinitely
    many epochs, a bound at infinity is None (and a draw where neither median got there
    counts as no better than random search: infinity)."""
    rng = np.random.default_rng(0)
    ours_, random_ = np.array(ours, dtype=float), np.array(random, dtype=float)
    picks = lambda values: np.median(rng.choice(values, (draws, len(values))), axis=1)  # noqa: E731
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = picks(ours_) / picks(random_)
    ratios[np.isnan(ratios)] = math.inf
    return [_plain(v) for v in np.percentile(ratios, [2.5, 97.5], method="nearest")]


def summarise(runs: list[dict], table, max_t: int, epochs: int, best: Optional[float] = None,
              expected: Optional[list[float]] = None) -> dict:
    """Per method, epochs to the target (within 1% of `best`, default the replayed table's
    best) and to random search's median final best, with their ratios to random search's.
    `expected` (a surrogate's noise-free mean per configuration): also what the configuration
    each search ends with scores on average, and the epochs until that comes within 1% of the
    best mean of all."""
    best = min(c.best(max_t) for c in table.curves) if best is None else best
    target = best + TOLERANCE * abs(best)
    variants = sorted({r["method"] for r in runs} - set(METHODS))
    by_method = {m: [r for r in runs if r["method"] == m] for m in (*METHODS, *variants)
                 if any(r["method"] == m for r in runs)}
    finals = {m: [r["points"][-1][1] if r["points"] else math.inf for r in rs] for m, rs in by_method.items()}
    random_final = float(np.median(finals["random"])) if "random" in finals else math.nan
    summary, needed = {}, {}
    for method, method_runs in by_method.items():
        to_target = [epochs_to(r["points"], target) for r in method_runs]
        to_random = [epochs_to(r["points"], random_final) for r in method_runs]
        needed[method] = {"epochs_to_target": to_target, "epochs_to_random_final": to_random}
        counted = [r for r in method_runs if "trials" in r]
        summary[method] = {"repetitions": len(method_runs), "epochs_to_target": quartiles(to_target),
                           # median over the runs that counted them
                           "trials": _median(r["trials"] for r in counted),
                           "distinct_configs": _median(r["distinct_configs"] for r in counted),
                           "reached_target": sum(math.isfinite(e) for e in to_target),
                           "epochs_to_random_final": quartiles(to_random), "final_best": quartiles(finals[method]),
                           # what a shorter search would have found (the main job consumes about 100)
                           "best_found_by": {str(used): quartiles([best_by(r["points"], used) for r in method_runs])
                                             for used in BUDGET_MARKS if used <= epochs}}
    for method, entry in summary.items():
        for key in ("epochs_to_target", "epochs_to_random_final"):
            ours, theirs = entry[key]["median"], summary.get("random", {}).get(key, {}).get("median")
            ok = ours is not None and theirs not in (None, 0)
            name = f"ratio_to_random_{key.removeprefix('epochs_to_')}"
            entry[name] = _plain(ours / theirs) if ok else None
            if "random" in needed:
                entry[f"{name}_ci95"] = ratio_interval(needed[method][key], needed["random"][key])
        entry["ratio_to_random"] = entry["ratio_to_random_target"]
    result = {"table": {"configurations": len(table.curves), "best_val_loss": best, "target": target,
                        "tolerance": TOLERANCE, "max_t": max_t},
              "epochs_per_run": epochs, "random_final_best": _plain(random_final), "methods": summary}
    if expected is not None:
        optimum = min(expected)
        expected_target = optimum + TOLERANCE * abs(optimum)
        result["expected"] = {"optimum": optimum, "target": expected_target}
        needed = {m: [epochs_to(expected_points(r["points"], expected), expected_target) for r in rs]
                  for m, rs in by_method.items()}
        for method, method_runs in by_method.items():
            entry = summary[method]
            entry["expected_final"] = quartiles([expected[r["points"][-1][2]] if r["points"] else math.inf
                                                 for r in method_runs])
            entry["epochs_to_expected_target"] = quartiles(needed[method])
            entry["reached_expected_target"] = sum(math.isfinite(e) for e in needed[method])
            ours = entry["epochs_to_expected_target"]["median"]
            theirs = summary.get("random", {}).get("epochs_to_expected_target", {}).get("median")
            entry["ratio_to_random_expected_target"] = _plain(ours / theirs) if ours is not None and theirs else None
            if "random" in needed:
                entry["ratio_to_random_expected_target_ci95"] = ratio_interval(needed[method], needed["random"])
        result["informed"] = informed_search(table, expected, target, max_t,
                                             summary.get("random", {}).get("epochs_to_target", {}).get("median"))
    return result


def informed_search(table, expected: list[float], target: float, max_t: int, random_median: Optional[float],
                    shares=INFORMED_SHARES) -> list[dict]:
    """What a search told in advance which configurations are best on average would need: for
    each share of the table, the best configurations by `expected`, trained to the full budget
    one after another in random order (without repeats); the median epochs until one comes
    within `target`, and its ratio to random search's median. A bound no method can beat by
    much, since no search knows the expected values, and every one pays to find the region."""
    order = np.argsort(expected, kind="stable")
    bests = np.array([table.curves[i].best(max_t) for i in order])
    out = []
    for share in shares:
        top = max(1, math.ceil(share * len(order)))
        hits = int((bests[:top] <= target).sum())
        missed, median = 1.0, None  # missed: the chance that the first n trainings all miss
        for n in range(1, top + 1):
            missed *= (top - hits - n + 1) / (top - n + 1)
            if missed <= 0.5:
                median = n * max_t
                break
        out.append({"share": share, "configurations": top, "within_target": hits, "median_epochs": median,
                    "ratio_to_random": _plain(median / random_median) if median and random_median else None})
    return out


def target_coverage(table, space, target: float, samples: int = 4000) -> dict:
    """How much of the space the target stands for: the recorded curves that come within it,
    and the share of uniformly sampled configurations (seed 1; the table's own are seed 0)
    whose nearest recorded curve is one of them, the chance that one random trial of the
    nearest replay reaches the target."""
    from benchmarks.search_table import sampled_configurations
    max_t = space.asha["max_t"]
    hits = {c.config_id for c in table.curves if c.best(max_t) <= target}
    proposals = sampled_configurations(space, samples, seed=1)
    landed = sum(table.nearest(p, space.params).config_id in hits for p in proposals)
    return {"curves_within_target": len(hits), "uniform_share_within_target": landed / samples}


def markdown(summary: dict) -> str:
    """The summary as the README's table: per method, epochs to each target (median and
    quartiles, ratio to random search's), the best found by a few budgets, trials run."""
    def number(value, digits=0):
        return "never" if value is None else f"{value:.{digits}f}"

    def ratio(entry, key):
        interval = entry.get(f"{key}_ci95")
        bounds = "" if interval is None else f" [{number(interval[0], 2)}, {number(interval[1], 2)}]"
        return number(entry[key], 2) + bounds.replace("never", "∞")

    marks = [m for m in map(str, BUDGET_MARKS) if int(m) <= summary["epochs_per_run"]]

    lines = ["| method | epochs to within 1% of the table's best: median [q1, q3] | x random [95% CI] | reached | "
             "epochs to random search's final best | x random [95% CI] | "
             + " | ".join(f"best found by {m} epochs" for m in marks) + " | trials | distinct curves |",
             "|---" * (8 + len(marks)) + "|"]
    for method, e in summary["methods"].items():
        t, r = e["epochs_to_target"], e["epochs_to_random_final"]
        lines.append(f"| {method} | {number(t['median'])} [{number(t['q1'])}, {number(t['q3'])}] | "
                     f"{ratio(e, 'ratio_to_random_target')} | {e['reached_target']}/{e['repetitions']} | "
                     f"{number(r['median'])} | {ratio(e, 'ratio_to_random_random_final')} | "
                     + " | ".join(number(e["best_found_by"][m]["median"], 1) for m in marks)
                     + f" | {number(e['trials'])} | {number(e['distinct_configs'])} |")
    table, made = summary["table"], summary.get("surrogate")
    source = (f"a surrogate of {table['configurations']} configurations interpolated from "
              f"{made['recorded_configurations']} recorded ({made['neighbours']} neighbours, residuals' sd "
              f"{made['residual_sd_last_epoch']:.2f} at the last epoch)" if made
              else f"table of {table['configurations']} configurations")
    lines.append(f"\n({summary.get('replay', 'nearest')} replay; {summary['epochs_per_run']} epochs per search; "
                 f"{source}, best val_loss {table['best_val_loss']:.2f}, target {table['target']:.2f}; "
                 f"random search's median final best {number(summary['random_final_best'], 2)}"
                 + (f"; {table['curves_within_target']} curves within the target, the nearest curve of "
                    f"{100 * table['uniform_share_within_target']:.1f}% of uniformly sampled configurations"
                    if "curves_within_target" in table else "") + ".)")
    if "expected" in summary:
        lines += ["", "| method | expected val_loss of the configuration found: median [q1, q3] | epochs until it is "
                  "within 1% of the best expected: median [q1, q3] | x random [95% CI] | reached |",
                  "|---|---|---|---|---|"]
        for method, e in summary["methods"].items():
            f, t = e["expected_final"], e["epochs_to_expected_target"]
            lines.append(f"| {method} | {number(f['median'], 1)} [{number(f['q1'], 1)}, {number(f['q3'], 1)}] | "
                         f"{number(t['median'])} [{number(t['q1'])}, {number(t['q3'])}] | "
                         f"{ratio(e, 'ratio_to_random_expected_target')} | "
                         f"{e['reached_expected_target']}/{e['repetitions']} |")
        lines.append(f"\n(expected: the plain mean of the nearest recorded runs; best expected "
                     f"{summary['expected']['optimum']:.2f}, target {summary['expected']['target']:.2f}.)")
    if "informed" in summary:
        lines += ["", "| an informed search trains, in random order, the best on average of | configurations | "
                  "their runs within 1% of the table's best | epochs to the target: median | x random |",
                  "|---|---|---|---|---|"]
        for row in summary["informed"]:
            lines.append(f"| {100 * row['share']:g}% | {row['configurations']} | {row['within_target']} | "
                         f"{number(row['median_epochs'])} | {number(row['ratio_to_random'], 2)} |")
    return "\n".join(lines)


def plot(runs: list[dict], epochs: int, path: Path, replay: str = "nearest") -> None:
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    grid = np.arange(1, epochs + 1)
    for method in METHODS:
        curves = []
        for run in (r for r in runs if r["method"] == method):
            best, i, curve = math.inf, 0, []
            for used in grid:
                while i < len(run["points"]) and run["points"][i][0] <= used:
                    best = run["points"][i][1]
                    i += 1
                curve.append(best)
            curves.append(curve)
        if curves:
            found = np.array(curves)
            found[~np.isfinite(found)] = np.nan  # before a run's first full-budget trial
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # epochs where no run has found one yet
                q1, median, q3 = np.nanpercentile(found, [25, 50, 75], axis=0)
            line, = ax.plot(grid, median, label=method)
            ax.fill_between(grid, q1, q3, color=line.get_color(), alpha=0.15)
    ax.set(xlabel="epochs consumed", ylabel="best full-budget val_loss found", title=f"Search efficiency, {replay} replay (median, quartiles)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def bohb_installed() -> bool:
    try:
        import ConfigSpace  # noqa: F401
        import hpbandster  # noqa: F401
    except ImportError:
        return False
    return True


def _median(values) -> Optional[float]:
    values = list(values)
    return _plain(np.median(values)) if values else None


def _plain(value):
    value = float(value)
    return value if math.isfinite(value) else None


def replayed_search(method: str, space, table, table_path: Path, rep: int, epochs: int, concurrent: int,
                    replay: str = "nearest") -> dict:
    """One replayed search: its trajectory of best full-budget val_loss against epochs consumed."""
    started = time.perf_counter()
    distinct = DistinctCurves(table, space.params) if replay == "distinct" else None
    if method in RAY_METHODS or method.startswith(VARIANT_PREFIX):
        events = ray_run(method, space, table_path, rep, epochs, concurrent, distinct)
    elif method in SYNE_METHODS:
        events = syne_run(method, space, table, rep, epochs, concurrent, distinct)
    else:
        events = optuna_run(space, table, rep, epochs, distinct)
    started_configs = [config for epoch, config in events if epoch == 1]
    # a recorded curve replayed again: in the nearest replay, proposals near one another share it
    return {"method": method, "replay": replay, "repetition": rep, "epochs": epochs, "consumed": len(events),
            "trials": len(started_configs), "distinct_configs": len(set(started_configs)),
            "points": trajectory(events, table, space.asha["max_t"]), "wall_s": time.perf_counter() - started}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="vrnn_priors")
    p.add_argument("--budget", default="small")
    p.add_argument("--table", help="the curves (default benchmarks/results/search_table_<space>_<budget>.csv)")
    p.add_argument("--configs", type=int,
                   help="replay the table's first N configurations only (default: all it holds)")
    p.add_argument("--methods", help=f"comma-separated, of {', '.join(METHODS)} (default: all; bohb where "
                                      "hpbandster and ConfigSpace are installed)")
    p.add_argument("--variant", action="append", default=[], metavar="FIELD=VALUE,...",
                   help="also run a variant of the default search, asha_tpe with other ASHA rungs or TPE options "
                        f"(fields: {', '.join(VARIANT_FIELDS)}), as a method of its own; repeatable")
    p.add_argument("--repetitions", type=int, default=30)
    p.add_argument("--epochs", type=int, default=1200, help="epochs each search may consume (default 1200)")
    p.add_argument("--concurrent", type=int, default=2, help="trials at once in each search (default 2)")
    p.add_argument("--replay", choices=tuple(REPLAYS), default="nearest",
                   help="nearest: a trial replays the curve nearest its configuration (default); distinct: the "
                        "nearest its search has not replayed yet; surrogate: the nearest of a dense table "
                        "interpolated from the recorded one, as rough as it")
    p.add_argument("--surrogate-size", type=int, default=4000,
                   help="with --replay surrogate: configurations in the dense table (default 4000)")
    p.add_argument("--out", default=str(RESULTS), help="folder of the results (default benchmarks/results)")
    p.add_argument("--resume", action="store_true", help="keep the runs already recorded")
    p.add_argument("--markdown", action="store_true",
                   help="print the summary of --replay as a Markdown table; run nothing")
    args = p.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads((Path(args.out) / f"{REPLAYS[args.replay]}.json").read_text())))
        return 0

    from dvae.curves import CurveTable
    from dvae.spaces import SpaceError, load_space, space_path
    methods = [m.strip() for m in (args.methods or ",".join(METHODS)).split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    try:
        if unknown:
            raise ValueError(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
        methods += [variant_method(spec) for spec in args.variant]
        if "bohb" in methods and not bohb_installed():
            if args.methods:
                raise ValueError("--methods bohb needs `pip install hpbandster ConfigSpace`; leave bohb out "
                                 "or install them")
            methods.remove("bohb")
            print("bohb left out: `pip install hpbandster ConfigSpace` to include it", flush=True)
        if any(m in SYNE_METHODS for m in methods) and not syne_installed():
            if args.methods:
                raise ValueError("--methods syne_*: needs `pip install syne-tune`; leave them out or install it")
            methods = [m for m in methods if m not in SYNE_METHODS]
            print("syne_asha, syne_bohb left out: `pip install syne-tune` to include them", flush=True)
        if min(args.repetitions, args.epochs, args.concurrent) < 1:
            raise ValueError("--repetitions, --epochs and --concurrent must be at least 1")
        space = load_space(str(space_path(args.space)), args.budget)
        if not space.asha:
            raise ValueError(f"{args.space} ({args.budget}) has no ASHA settings to compare against")
        for method in methods:
            grace = variant_settings(method)[0].get("grace_period", 0)
            if grace > space.asha["max_t"]:
                raise ValueError(f"--variant: grace_period {grace} is past the full budget ({space.asha['max_t']} epochs)")
        recorded = Path(args.table or RESULTS / f"search_table_{space.name}_{args.budget}.csv").resolve()
        # the trials read the curves from a file: a copy of the table as it is now, so that one
        # still being recorded (search_table.py --resume) cannot hand them curves this run lacks
        curves = CurveTable.read(recorded).curves
        if args.configs is not None and not 1 <= args.configs <= len(curves):
            raise ValueError(f"--configs {args.configs}: {recorded} holds {len(curves)} configurations")
        replayed, made, expected = curves[:args.configs], None, None
        if args.replay == "surrogate":
            if args.surrogate_size < 1:
                raise ValueError("--surrogate-size must be at least 1")
            from benchmarks import search_surrogate
            dense, expected, made = search_surrogate.surrogate(CurveTable(replayed), space, args.surrogate_size)
            # beside it, for the reader: how much of one configuration's rank is its seed's doing
            made.update(search_surrogate.seed_spread(
                CurveTable(curves), [CurveTable.read(path) for path in search_surrogate.seed_table_paths(recorded)],
                space.asha["max_t"]))
            replayed = dense.curves
            print(f"surrogate: {len(replayed)} configurations from {made['recorded_configurations']} recorded, "
                  f"{made['neighbours']} neighbours, {made['residuals']} residuals", flush=True)
        table_path = Path(tempfile.mkdtemp(prefix="curves-", dir=os.environ.get("DVAE_BENCH_TMP"))) / recorded.name
        CurveTable.write(table_path, replayed, [param.name for param in space.params])
        table = CurveTable.read(table_path)
        recorded_count = len(curves[:args.configs])
    except (SpaceError, ValueError, OSError) as e:
        print(f"benchmarks.search_efficiency: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = REPLAYS[args.replay]
    runs_file = out / f"{stem}_runs.jsonl"
    if runs_file.exists() and not args.resume:
        print(f"benchmarks.search_efficiency: {runs_file} exists; go on with --resume or choose another --out",
              file=sys.stderr)
        return 2
    summary_file = out / f"{stem}.json"
    runs = [json.loads(line) for line in runs_file.read_text().splitlines()] if runs_file.exists() else []
    # a run made before runs recorded their table's size has the size its summary recorded
    made_of = {r.get("surrogate_size") for r in runs if r.get("replay") == "surrogate"}
    if made and made_of - {made["configurations"]}:
        print(f"benchmarks.search_efficiency: the runs in {runs_file} replayed surrogates of "
              f"{', '.join(map(str, sorted(made_of)))} configurations; resume with that --surrogate-size or "
              "choose another --out", file=sys.stderr)
        return 2
    made_on = {r["configurations"] for r in runs if "configurations" in r}
    if summary_file.exists() and any("configurations" not in r for r in runs):
        made_on.add(json.loads(summary_file.read_text())["table"]["configurations"])
    if made_on - {recorded_count}:
        print(f"benchmarks.search_efficiency: the runs in {runs_file} replayed tables of "
              f"{', '.join(map(str, sorted(made_on)))} configurations, this one {recorded_count}; resume with "
              f"--configs {min(made_on)} or choose another --out", file=sys.stderr)
        return 2
    done = {(r["method"], r["repetition"]) for r in runs if r["epochs"] == args.epochs}
    runs = [r for r in runs if r["epochs"] == args.epochs and r["repetition"] < args.repetitions]
    todo = [(m, rep) for rep in range(args.repetitions) for m in methods if (m, rep) not in done]
    print(f"{recorded_count} recorded configurations; {len(done)} runs kept, {len(todo)} to go", flush=True)
    if any(m in RAY_METHODS for m, _ in todo):
        import ray
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # Tune's CSV, JSON and TensorBoard loggers write every result, and nothing here reads them
        os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 _temp_dir=tempfile.mkdtemp(prefix="rs", dir="/tmp"))
    for method, rep in todo:
        run = replayed_search(method, space, table, table_path, rep, args.epochs, args.concurrent, args.replay)
        run["configurations"] = recorded_count
        if made:
            run["surrogate_size"] = made["configurations"]
        runs.append(run)
        with open(runs_file, "a") as f:
            f.write(json.dumps(run) + "\n")
        final = run["points"][-1][1] if run["points"] else math.inf
        print(f"{method} #{rep}: best {final:.2f} after {run['consumed']} epochs, {run['wall_s']:.0f} s", flush=True)
    max_t = space.asha["max_t"]
    # a surrogate's target is the recorded table's: its own best grows with its size, and its
    # extremes are draws of the noise model, not models anybody trained
    recorded_best = min(c.best(max_t) for c in curves[:args.configs]) if made else None
    summary = summarise(runs, table, max_t, args.epochs, recorded_best, expected)
    summary["replay"] = args.replay
    if made:
        summary["surrogate"] = made
    summary["table"].update(target_coverage(table, space, summary["table"]["target"]))
    summary_file.write_text(json.dumps(summary, indent=1) + "\n")
    plot(runs, args.epochs, out / f"{stem}.png", args.replay)
    for method, entry in summary["methods"].items():
        e = entry["epochs_to_target"]
        print(f"{method:<18} epochs to within 1% of the best: median {e['median']} [{e['q1']}, {e['q3']}], "
              f"x{entry['ratio_to_random']} random's; reached in {entry['reached_target']}/{entry['repetitions']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
