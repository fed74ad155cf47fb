"""Figures of a search, as PNG files: learning curves, hyperparameter effects, ASHA rungs
and Optuna's hyperparameter importances.

- learning_curves: each model's top trials, validation loss against epoch.
- hyperparameters: each trial's validation loss (at its best epoch) against each
  hyperparameter the search varied, one colour per model. Hollow markers are trials
  that ASHA stopped early or that have not finished: their loss comes from fewer epochs,
  so it is not comparable with a finished trial's.
- asha_rungs: how many trials reached each epoch, per model; the drops are ASHA's rungs.
- importances: `optuna.importance.get_param_importances` on each experiment's study
  (optuna.db), over its COMPLETE trials, each valued at its best val_loss; the trials
  ASHA stopped are PRUNED in the study, so they are left out.

    python -m analysis.plots EXPERIMENT [...] [--k 3] [--out DIR]

Figures are built with matplotlib's object API (no pyplot): no display is needed and
no global state is left behind.
"""
from __future__ import annotations

import io
import math
import sys
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dvae import logs

from .leaderboard import top_per_model
from .results import CONFIG, load, model_label, ordered_models, ranking_parser, searched_parameters, study_path

MAX_COLUMNS = 3
HOLLOW = ("stopped_by_asha", "unfinished")  # their figures come from fewer epochs than planned


def learning_curves(trials: pd.DataFrame, curves: pd.DataFrame, k: int = 3, sort: str = "val_loss",
                    ascending: bool = True, figure: str = "val_loss") -> Figure:
    """One panel per model: `figure` against epoch for the trials of its k best configurations."""
    best = top_per_model(trials, k, sort, ascending)
    models = ordered_models(best["model"])
    fig, axes = _grid(max(1, len(models)), panel=(5.0, 3.4))
    for ax, model in zip(axes, models):
        top = best[best["model"] == model]
        for _, configuration in top.iterrows():
            members = trials[trials["trial_dir"].isin(configuration["trial_dirs"])]
            for _, trial in members.iterrows():
                curve = curves[(curves["experiment"] == trial["experiment"]) & (curves["trial_id"] == trial["trial_id"])]
                ax.plot(curve["epoch"], curve[figure], marker="o", markersize=2.5,
                        label=f"#{configuration['rank']} {trial['trial_id']}")
        ax.set(title=f"{model_label(model)}: top {len(top)}", xlabel="epoch", ylabel=figure)
        ax.legend(fontsize="x-small")
    if not models:
        _note(axes[0], "no trial reported a finite " + sort)
    fig.suptitle(f"Learning curves ({figure})")
    return fig


def hyperparameters(trials: pd.DataFrame, figure: str = "val_loss", params: Sequence[str] | None = None) -> Figure:
    """One panel per hyperparameter: `figure` of every trial against the parameter's value."""
    params = list(params) if params is not None else [p for p in searched_parameters(trials) if p != "seed"]
    fig, axes = _grid(max(1, len(params)), panel=(4.2, 3.2))
    finite = trials[np.isfinite(trials[figure].astype(float))] if figure in trials else trials.iloc[:0]
    models = ordered_models(finite["model"])
    colours = {model: f"C{i % 10}" for i, model in enumerate(models)}
    rng = np.random.default_rng(0)  # jitter of categorical values: the same picture every time
    for ax, param in zip(axes, params):
        values = finite[CONFIG + param]
        numeric = pd.api.types.is_numeric_dtype(values.dropna()) and not pd.api.types.is_bool_dtype(values.dropna())
        if numeric:
            x = values.astype(float)
            positive = x[x > 0]
            if len(positive) == x.notna().sum() and len(positive) and positive.max() / positive.min() > 20:
                ax.set_xscale("log")
        else:
            categories = sorted(values.dropna().map(str).unique())
            # as floats: with no trial to show, pandas would keep the values' string dtype
            x = values.map(lambda v: categories.index(str(v)) if v is not None and str(v) in categories else math.nan)
            x = x.astype(float)
            x = x + rng.uniform(-0.15, 0.15, len(x))
            ax.set_xticks(range(len(categories)), categories, rotation=20, fontsize="small")
        for model in models:
            mine = (finite["model"] == model).to_numpy()
            hollow = finite["status"].isin(HOLLOW).to_numpy()
            for sel, face in ((mine & ~hollow, colours[model]), (mine & hollow, "none")):
                if sel.any():
                    ax.scatter(x[sel], finite[figure][sel], s=22, facecolors=face, edgecolors=colours[model],
                               label=model_label(model) + (" (stopped early)" if face == "none" else ""))
        ax.set(xlabel=param, ylabel=figure)
    if not params:
        _note(axes[0], "the search varied no hyperparameter")
    elif models:
        axes[0].legend(fontsize="x-small")
    else:
        _note(axes[0], "no trial reported a finite " + figure)
    fig.suptitle(f"{figure} against each searched hyperparameter (hollow: stopped early or unfinished)")
    return fig


def asha_rungs(trials: pd.DataFrame) -> Figure:
    """How many trials reached each epoch: bars for all models, a line per model."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    top = int(trials["epochs_run"].max()) if len(trials) and trials["epochs_run"].max() > 0 else 0
    epochs = np.arange(1, top + 1)
    reached = [(trials["epochs_run"] >= e).sum() for e in epochs]
    ax.bar(epochs, reached, color="0.85", label="all trials")
    for e, n in zip(epochs, reached):
        if e == 1 or n != reached[e - 2]:  # label where the count changes: the rungs
            ax.annotate(str(n), (e, n), ha="center", va="bottom", fontsize="small")
    models = ordered_models(trials["model"])
    if len(models) > 1:
        for model in models:
            runs = trials.loc[trials["model"] == model, "epochs_run"]
            ax.plot(epochs, [(runs >= e).sum() for e in epochs], marker="o", label=model_label(model))
    ax.set(xlabel="epoch", ylabel="trials that reached it", title=f"ASHA rungs: {len(trials)} trials")
    if top == 0:
        _note(ax, "no trial finished an epoch")
    else:
        ax.legend(fontsize="small")
    return fig


def importances(experiments: Sequence[str | Path]) -> Figure:
    """Optuna's hyperparameter importances, one panel per study of the experiments; a
    panel says why where there is no study or too few finished trials."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = []
    for experiment in experiments:
        path = study_path(experiment)
        if path is None:
            studies.append((Path(experiment).name, None))
            continue
        storage = f"sqlite:///{path}"
        studies += [(name, optuna.load_study(study_name=name, storage=storage))
                    for name in optuna.get_all_study_names(storage)]
    fig, axes = _grid(max(1, len(studies)), panel=(5.5, 3.4))
    for ax, (name, study) in zip(axes, studies):
        ax.set_title(f"Hyperparameter importances: {name}", fontsize="medium")
        if study is None:
            _note(ax, "no Optuna study (optuna.db) in this experiment")
            continue
        finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        values, why = param_importances(study)
        if why:
            _note(ax, f"{why}\n({len(finished)} finished trials)")
            continue
        names = list(values)[::-1]  # the most important on top
        ax.barh(names, [values[n] for n in names], color="C0")
        ax.set(xlabel=f"importance (PED-ANOVA, {len(finished)} finished trials)", xlim=(0, 1))
    if not studies:
        _note(axes[0], "no experiments")
    return fig


def param_importances(study) -> tuple[dict[str, float], str | None]:
    """(importances, None), or ({}, why not) for a study too small to say anything."""
    import optuna

    finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(finished) < 2:
        return {}, "too few finished trials to estimate importances"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # named, not left to the default: Optuna 4 defaults to fANOVA (which needs scikit-learn), 5 to PED-ANOVA
            values = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
        except (ValueError, RuntimeError) as e:  # e.g. no parameter common to every trial
            return {}, f"importances unavailable: {e}"
    small = [w for w in caught if "too small" in str(w.message)]
    if small:
        return {}, str(small[0].message).split(". ")[0]
    if not values:
        return {}, "no parameter was sampled"
    return values, None


def pose_strip(joints: np.ndarray, frame_rate: float, title: str, corpus: str = "h36m",
               poses: int = 8, prime_end: float = 0.0) -> Figure:
    """A motion sequence (frames, joints * 3, in mm) as a row of skeletons at evenly spaced
    times, seen from the front. Bones are drawn where the skeleton is known (Human3.6M's
    32 joints), joints alone otherwise; poses before `prime_end` seconds (a real prime)
    are grey."""
    from dvae.data.motion import H36M_PARENTS

    positions = np.asarray(joints, dtype=np.float64).reshape(len(joints), -1, 3)
    up = VERTICAL_AXIS.get(corpus, 1)
    across = 0  # x is horizontal in both corpora
    frames = np.unique(np.linspace(0, len(positions) - 1, min(poses, len(positions))).round().astype(int))
    width = np.ptp(positions[..., across]) if positions.size else 1.0
    spacing = 1.3 * max(width, 1.0)
    parents = H36M_PARENTS if positions.shape[1] == len(H36M_PARENTS) else None
    fig = Figure(figsize=(1.3 * len(frames) + 1, 3.2), layout="constrained")
    ax = fig.subplots()
    for i, frame in enumerate(frames):
        pose = positions[frame]
        x, y = pose[:, across] - pose[:, across].mean() + i * spacing, pose[:, up]
        colour = "0.6" if frame / frame_rate < prime_end else "C0"
        if parents is not None:
            for joint, parent in enumerate(parents):
                if parent >= 0:
                    ax.plot([x[joint], x[parent]], [y[joint], y[parent]], color=colour, linewidth=1.5)
        ax.scatter(x, y, s=6, color=colour)
        ax.annotate(f"{frame / frame_rate:.2f} s", (i * spacing, y.min()), xytext=(0, -12),
                    textcoords="offset points", ha="center", fontsize="x-small")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_axis_off()
    ax.set_title(title + (" (grey: the real prime)" if prime_end > 0 else ""), fontsize="medium")
    return fig


# The vertical axis of each motion corpus's joint positions (x is horizontal in both).
VERTICAL_AXIS = {"h36m": 1, "mocap": 2}


def all_figures(experiments: Sequence[str | Path], trials: pd.DataFrame, curves: pd.DataFrame, k: int = 3,
                sort: str = "val_loss", ascending: bool = True) -> dict[str, Figure]:
    """Every figure of this module, by file stem."""
    return {
        "learning_curves": learning_curves(trials, curves, k, sort, ascending),
        "hyperparameters": hyperparameters(trials),
        "asha_rungs": asha_rungs(trials),
        "importances": importances(experiments),
    }


def png(fig: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _grid(n: int, panel: tuple[float, float]) -> tuple[Figure, list]:
    """A figure of n panels, at most MAX_COLUMNS a row; surplus panels are hidden."""
    columns = min(n, MAX_COLUMNS)
    rows = math.ceil(n / columns)
    # at least 7 inches wide, so that a title fits over a single panel
    fig = Figure(figsize=(max(7.0, panel[0] * columns), panel[1] * rows + 0.4), layout="constrained")
    axes = list(np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True, color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])


def main(argv=None) -> int:
    parser = ranking_parser("python -m analysis.plots", __doc__.split("\n\n")[0], k=3,
                            k_help="configurations per model in the learning curves",
                            out_help="output folder (default: <first experiment>/plots)")
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    try:
        trials, curves = load(*args.experiments)
        figures = all_figures(args.experiments, trials, curves, args.k, args.sort, not args.descending)
    except (FileNotFoundError, KeyError) as e:
        print(f"analysis.plots: {e.args[0]}", file=sys.stderr)
        return 2
    out = args.out or args.experiments[0] / "plots"
    out.mkdir(parents=True, exist_ok=True)
    for name, fig in figures.items():
        path = out / f"{name}.png"
        path.write_bytes(png(fig))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
