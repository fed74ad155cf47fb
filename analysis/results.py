"""The trials of one or several experiment folders as pandas frames, read from disk.

An experiment folder (<storage>/<name>/, as Ray Tune 2.x leaves it) holds one folder per
trial: params.json (the trial's flat config), result.json (one JSON object a line per
reported epoch: the trainer's figures and Ray's own keys), Ray's checkpoint_NNNNNN/
copies, and the trainer's own checkpoint/ (best.pt, last.pt) and tb/; a trial that
failed also holds error.txt. The Optuna study is optuna.db beside the trial folders.
Reading those files needs neither Ray nor its experiment state, so a search can be
looked at while it runs, after it was interrupted, or on another machine.

`load` gives two frames:

- trials, one row per trial: experiment, model (the `variant` of the search space if
  any, e.g. srnn_gm, else the model `name`), trial_id, status, best_epoch, epochs_run,
  max_epochs, wall_time_s; every reported figure (val_loss, val_recon, val_kl,
  train_loss, ...) at the best epoch, i.e. of the weights in best.pt, which is what a
  leaderboard ranks and what evaluation scores, and again as final_<figure> at the last
  epoch run; the trainer's raw stop_reason, the error of a failed trial, the best
  checkpoint's path, the trial folder, and the config as config/<field> columns (a
  prefix because `lr` is both a setting and a reported figure).
- curves, one row per trial and epoch: experiment, model, trial_id, epoch, and every
  figure reported at that epoch, with Ray's time_total_s.

A trial's status is how it ended: completed (all its epochs), early_stopped (the
trainer's patience ran out), diverged (a non-finite loss), stopped_by_asha (Ray ended
it before its last epoch, without a stop reason of the trainer's), errored (it raised
and was not restarted to an end), or unfinished (still running, or the search was
interrupted).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from pathlib import Path
from typing import Iterable

import pandas as pd

from dvae import logs
from dvae.experiment import BOOKKEEPING as SEARCH_BOOKKEEPING
from dvae.experiment import (ExperimentError, Location, best_checkpoint, evaluation_files, is_uri, local_copy,
                             read_params, read_results, result_path, study_path, trial_dirs)
from dvae.config import ModelConfig, TrainConfig

# The DVAE review's order of models (Girin et al. 2021, Tables 2 and 3), and its labels.
MODEL_LABELS = {
    "vae": "VAE", "dkf": "DKF", "storn": "STORN", "vrnn": "VRNN", "srnn": "SRNN",
    "rvae_causal": "RVAE-Causal", "rvae_noncausal": "RVAE-NonCausal", "dsae": "DSAE",
    "srnn_tf_gm": "SRNN-TF-GM", "srnn_gm": "SRNN-GM",
}
MODEL_ORDER = tuple(MODEL_LABELS)
# The review's -GM rows are scored in generation mode: the decoder reads its own output.
GENERATION_MODE_MODELS = ("srnn_tf_gm", "srnn_gm")
# Rows scored from another model's trials: the review's SRNN-TF-GM is the teacher-forced
# SRNN (selected on teacher-forced validation) tested in generation mode.
DERIVED_ROWS = {"srnn_tf_gm": "srnn"}
STATUSES = ("completed", "early_stopped", "stopped_by_asha", "diverged", "errored", "unfinished")
CONFIG = "config/"
# Config keys that are neither settings nor the model: the search's bookkeeping (`variant`
# becomes the model column) and the model's name (the model column too).
BOOKKEEPING = (*SEARCH_BOOKKEEPING, "name")
# What Ray adds to every reported result, besides time_total_s which is kept.
RAY_KEYS = frozenset({
    "timestamp", "checkpoint_dir_name", "should_checkpoint", "done", "training_iteration", "trial_id", "date",
    "time_this_iter_s", "pid", "hostname", "node_ip", "config", "time_since_restore", "iterations_since_restore",
    "timesteps_total", "episodes_total", "timesteps_since_restore", "experiment_id", "experiment_tag",
})
# The figure the trainer reports at every epoch, and what configurations are ranked by.
DEFAULT_SORT = "val_loss"
# Reported values that are not figures of the model's quality: not repeated per trial.
NOT_FIGURES = frozenset({"epoch", "best_epoch", "diverged", "time_total_s", "epoch_time_s"})


def load(*experiments: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, curves) of the given experiment folders; see the module's docstring. A
    trial whose params.json cannot be read is skipped, with a note on stderr."""
    trials, curves = [], []
    for experiment in experiments:
        experiment = Path(experiment)
        for trial_dir in trial_dirs(experiment):
            try:
                row, epochs = read_trial(trial_dir, experiment.name)
            except ValueError as e:  # one damaged trial should not hide all the others
                logging.getLogger(__name__).warning("skipped %s: %s", trial_dir / "params.json", e)
                continue
            trials.append(row)
            curves.extend(epochs)
    if not trials:
        raise FileNotFoundError(f"no readable trial (params.json) in {', '.join(map(str, experiments))}")
    # an experiment whose trials all failed before their first epoch has no curves at all
    curves = pd.DataFrame(curves) if curves else pd.DataFrame(columns=["experiment", "model", "trial_id", "epoch"])
    return pd.DataFrame(trials), curves


def load_trials(*experiments: str | Path) -> pd.DataFrame:
    return load(*experiments)[0]


def latest_rows(trials: pd.DataFrame, experiments: list[str | Path]) -> pd.DataFrame:
    """Each model's trials from the last of `experiments` that holds it: rows re-run after
    a fix replace the old ones instead of being ranked against them."""
    order = {Path(e).name: i for i, e in enumerate(experiments)}
    if len(order) < len(experiments):
        raise ValueError("the experiments' folder names must differ to tell their trials apart")
    rank = trials["experiment"].map(order)
    return trials[rank == rank.groupby(trials["model"]).transform("max")]


def load_curves(*experiments: str | Path) -> pd.DataFrame:
    return load(*experiments)[1]


def read_trial(trial_dir: Path, experiment: str) -> tuple[dict, list[dict]]:
    """One trial's row of the trials frame and its rows of the curves frame."""
    params = read_params(trial_dir)
    results = read_results(trial_dir)
    last = results[-1] if results else {}
    model = params.get("variant") or params.get("name") or ModelConfig.name
    trial_id = last.get("trial_id") or _trial_id_from_name(trial_dir.name)
    key = {"experiment": experiment, "model": model, "trial_id": trial_id}

    curves = [{**key, **epoch_row(r)} for r in results]
    best = next((r for r in curves if r["epoch"] == last.get("best_epoch")), {})
    final = curves[-1] if curves else {}
    figures = [k for k, v in final.items() if k not in key and k not in NOT_FIGURES and _is_number(v)]
    checkpoint = best_checkpoint(trial_dir)
    row = {
        **key,
        "status": trial_status(last, trial_dir),
        "best_epoch": last.get("best_epoch") or math.nan,  # 0: no epoch had a finite loss
        "epochs_run": final.get("epoch", 0),
        "max_epochs": params.get("epochs", TrainConfig.epochs),
        "wall_time_s": last.get("time_total_s", math.nan),
        **{f: best.get(f, math.nan) for f in figures},
        **{f"final_{f}": final[f] for f in figures},
        "stop_reason": last.get("stop_reason"),
        "error": error_summary(trial_dir),
        **test_scores(checkpoint, model in GENERATION_MODE_MODELS),
        "checkpoint": str(checkpoint) if checkpoint else None,
        "trial_dir": str(trial_dir.absolute()),
        # (searches before trials wrote into Tune's storage recorded the driver's folder)
        **{CONFIG + k: v for k, v in params.items() if k != "experiment_dir"},
    }
    return row, curves


def test_scores(checkpoint: Path | None, generation_mode: bool) -> dict:
    """test_<metric> (mean) and test_units of the checkpoint's saved test scores
    (eval_test[_gm].json, written by `dvae evaluate`, the runner's quick test or
    analysis.evaluate), if it has been scored; {} otherwise."""
    path = result_path(checkpoint, "test", generation_mode) if checkpoint else None
    if path is None or not path.is_file() or path.stat().st_mtime < checkpoint.stat().st_mtime:
        return {}
    try:
        saved = json.loads(path.read_text())
        return {**{f"test_{m}": math.nan if s["mean"] is None else s["mean"] for m, s in saved["metrics"].items()},
                "test_units": saved["n"]}
    except (ValueError, KeyError, TypeError):  # being written, or of an older layout: as if not scored
        return {}


def epoch_row(result: dict) -> dict:
    """The figures of one reported result: its scalars, without Ray's bookkeeping."""
    row = {"epoch": result.get("epoch", result.get("training_iteration"))}
    for key, value in result.items():
        if (key not in RAY_KEYS or key == "time_total_s") and (value is None or isinstance(value, (int, float, str))):
            row[key] = value
    return row


def trial_status(last: dict, trial_dir: Path) -> str:
    """How a trial ended, from its last result and whether it left an error file; see the module."""
    reason = last.get("stop_reason")
    if reason is not None:
        return "diverged" if reason.startswith("diverged") else reason
    if last.get("done"):
        return "stopped_by_asha"
    # A restarted trial keeps the error.txt of its earlier failure: it counts only when
    # the trial did not go on to an end.
    if (trial_dir / "error.txt").is_file():
        return "errored"
    return "unfinished"


def error_summary(trial_dir: Path) -> str | None:
    """The last line of error.txt (the exception and its message), if the trial failed."""
    path = trial_dir / "error.txt"
    if not path.is_file():
        return None
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "error (empty error.txt)"


def searched_parameters(trials: pd.DataFrame) -> list[str]:
    """The config fields (without the prefix) that differ between the given trials: what
    the search varied. The model's name, the variant and Optuna's trial number are left
    out; the seed is kept when it varies."""
    names = []
    for column in trials.columns:
        name = column[len(CONFIG):]
        if not column.startswith(CONFIG) or name in BOOKKEEPING:
            continue
        values = trials[column].map(lambda v: repr(v) if isinstance(v, (list, dict)) else v)
        if values.nunique() > 1:
            names.append(name)
    return names


def ordered_models(models: Iterable[str]) -> list[str]:
    """Distinct models in the review's order, others after them by name."""
    models = set(models)
    return [m for m in MODEL_ORDER if m in models] + sorted(models - set(MODEL_ORDER))


def model_label(model: str) -> str:
    return MODEL_LABELS.get(model, model)


def _trial_id_from_name(folder: str) -> str:
    """Ray's trial id from a trial folder's name (<variant>_<id>, or Ray's default
    <trainable>_<id>_<index>_<params>_<date>), else the name itself."""
    match = re.search(r"_([0-9a-f]{5,8}(?:_\d{5})?)(?:_|$)", folder)
    return match.group(1) if match else folder


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def ranking_parser(prog: str, description: str, k: int, k_help: str, out_help: str,
                   epilog: str | None = None, out_is_file: bool = False) -> argparse.ArgumentParser:
    """A parser with the arguments every analysis front shares: the experiment folders, how
    configurations are ranked (--k, --sort, --descending) and where the output goes (--out:
    a folder, or with out_is_file one file)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog)
    add_experiments(parser)
    parser.add_argument("--k", type=at_least_one, default=k, help=f"{k_help} (default {k})")
    parser.add_argument("--sort", default=DEFAULT_SORT,
                        help=f"the reported figure to rank by, at each trial's best epoch (default {DEFAULT_SORT}); "
                             "final_<figure> ranks by the last epoch's")
    parser.add_argument("--descending", action="store_true", help="higher is better for --sort")
    parser.add_argument("--out", type=file_to_write if out_is_file else folder_to_write, help=out_help)
    logs.add_arguments(parser)
    return parser


def add_experiments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiments", nargs="+", action=_Experiments,
                        help="experiment folders (<storage>/<name>), or experiments on a URI storage "
                             "(s3://bucket/x/<name>), read from a local copy kept up to date")


class _Experiments(argparse.Action):
    """The experiments as local folders: one on a URI storage is downloaded first (its copy
    recorded in `stored`, for scores to go back: `upload_evaluations`), and of folders given
    more than once (however spelt) the first is kept: read twice, each trial would count twice."""

    def __call__(self, parser, namespace, values, option_string=None):
        seen, distinct, stored = set(), [], {}
        for given in values:
            try:
                folder = local_copy(given)
            except (ExperimentError, FileNotFoundError, OSError) as e:
                parser.error(f"{given}: {e}")
            if folder.resolve() not in seen:
                seen.add(folder.resolve())
                distinct.append(folder)
                if is_uri(given):
                    stored[folder] = Location.parse(given)
        setattr(namespace, self.dest, distinct)
        namespace.stored = stored


def upload_evaluations(args: argparse.Namespace) -> None:
    """The scores and audio written into local copies of stored experiments, back to their storage."""
    for folder, location in getattr(args, "stored", {}).items():
        location.upload(folder, evaluation_files(folder))


def at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def folder_to_write(text: str) -> Path:
    """--out where a folder is written: refused now if something in the way is a file, not
    after all the work."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file; a folder (new or existing) is expected")
    _check_not_under_a_file(path)
    return path


def file_to_write(text: str) -> Path:
    """--out where one file is written: refused now if it is a folder, or under a file."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; a file to write (new or to replace) is expected")
    _check_not_under_a_file(path.parent)
    return path


def _check_not_under_a_file(path: Path) -> None:
    """Refuses a path whose nearest existing ancestor (or itself) is a file: its folders cannot be made."""
    while not path.exists() and path != path.parent:
        path = path.parent
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file; no folder can be made under it")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.results",
        description="Load experiment folders into a table of trials (and per-epoch learning curves) "
                    "without starting Ray.")
    add_experiments(parser)
    parser.add_argument("--trials", type=file_to_write, help="write the trials to this CSV file")
    parser.add_argument("--curves", type=file_to_write, help="write the learning curves to this CSV file")
    logs.add_arguments(parser)
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    try:
        trials, curves = load(*args.experiments)
    except FileNotFoundError as e:
        print(f"analysis.results: {e}", file=sys.stderr)
        return 2
    for frame, path in ((trials, args.trials), (curves, args.curves)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(path, index=False)
            print(f"wrote {path}")
    shown = ["experiment", "model", "trial_id", "status", "val_loss", "best_epoch", "epochs_run", "wall_time_s"]
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(trials[[c for c in shown if c in trials]].to_string(index=False))
    counts = trials["status"].value_counts()
    print(f"\n{len(trials)} trials: " + ", ".join(f"{counts[s]} {s.replace('_', ' ')}" for s in counts.index))
    return 0


if __name__ == "__main__":
    sys.exit(main())
