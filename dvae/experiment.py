"""The experiment folder, <storage>/<name>/, in one place: its layout, its settings file, its
Optuna study, what --resume may change, and reading its trials back. No Ray here: the
search (dvae.search) writes the folder through Ray Tune, the runner (dvae.runner) keeps its
settings, and the analysis reads it, all through these names.

    <experiment>/
      search.json                 the search's settings (`Settings`): what --resume rebuilds it from
      <space>.yaml                the space file as the search started (--resume reads this copy)
      optuna.db                   the Optuna study (SQLite), named after the experiment
      asha.json                   ASHA's rung records and stop decisions (--resume restores them)
      experiment_state-*.json     Ray Tune's own state (and tuner.pkl, searcher state)
      <variant>_<trial id>/       one folder per trial:
        params.json               the trial's flat config (Config fields and BOOKKEEPING keys)
        result.json               one JSON object a line per reported epoch
        error.txt                 if the trial failed
        checkpoint/best.pt, last.pt   the trainer's checkpoints; tb/ its TensorBoard events
        checkpoint/eval_test.json     test scores of best.pt, once scored (`result_path`)
        checkpoint_NNNNNN/        Tune's copies of the checkpoint it last recorded
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

SETTINGS_FILE = "search.json"
OPTUNA_DB = "optuna.db"
ASHA_RECORDS = "asha.json"
PARAMS_FILE, RESULTS_FILE, ERROR_FILE = "params.json", "result.json", "error.txt"
CHECKPOINT_DIR, BEST, LAST, TENSORBOARD_DIR = "checkpoint", "best.pt", "last.pt", "tb"
# Keys of a trial's config that are not Config fields: the space's variant (e.g. srnn_gm),
# Optuna's trial number, the experiment folder the trial writes into, and for a replayed
# search (--replay) the table of learning curves it reads and the seconds an epoch takes.
BOOKKEEPING = ("variant", "optuna_trial", "experiment_dir", "replay", "replay_epoch_s")


class ExperimentError(ValueError):
    """An experiment folder that cannot be used as asked; the message says why."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a search was started with besides its space file: all that --resume needs to
    rebuild the same search, and all that it may not change (None: not given)."""
    space: str  # a shipped space's name, or the path of a .yaml file
    budget: str = "small"
    num_samples: Optional[int] = None
    cuda_graph: Optional[bool] = None
    settings: Optional[dict] = None  # --set FIELD=VALUE
    models: Optional[list] = None  # --models: only these rows of the space's model list
    replay: Optional[str] = None  # --replay: learning curves read from this table instead of training
    replay_epoch_s: Optional[float] = None  # --replay-epoch-s: how long each replayed epoch takes

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The settings' names: the options a resumed search may not change."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def write(self, experiment: Path, space_file: Path) -> None:
        """Writes search.json and keeps a copy of the space file beside it."""
        (experiment / SETTINGS_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        (experiment / space_copy_name(self.space)).write_bytes(space_file.read_bytes())

    @classmethod
    def read(cls, experiment: Path) -> "Settings":
        path = experiment / SETTINGS_FILE
        if not path.is_file():
            raise ExperimentError(f"no experiment to resume at {experiment}" + listing(experiment.parent))
        try:
            saved = json.loads(path.read_text())
            if not isinstance(saved, dict) or not isinstance(saved.get("space"), str):
                raise ValueError("no space named")
            return cls(**{k: v for k, v in saved.items() if k in cls.fields()})
        except (ValueError, TypeError) as e:
            raise ExperimentError(f"cannot resume: {path} is damaged ({e}); it records the search's settings, "
                                  "which --resume needs") from None

    def resumed_with(self, given: dict) -> "Settings":
        """These settings, once every option `given` for a resumed search (None: left out) is
        checked: a resumed search keeps what it started with, so a different value is refused."""
        for key, value in given.items():
            if value is not None and value != getattr(self, key):
                option = "--set" if key == "settings" else f"--{key.replace('_', '-')}"
                raise ExperimentError(f"{option} {value} differs from the experiment's {getattr(self, key)}; "
                                      "a resumed search keeps its settings (leave the option out)")
        return self

    def space_file(self, experiment: Path) -> str:
        """The space as the search started (its copy in the folder), whatever became of the file since."""
        kept = experiment / space_copy_name(self.space)
        return str(kept) if kept.is_file() else self.space


def space_copy_name(space: str) -> str:
    """The file in the experiment folder that keeps the space (a shipped name or a .yaml path)."""
    return Path(space).stem + ".yaml"


def listing(storage: Path) -> str:
    """'; experiments in <storage>: a, b' (or that it holds none), for error messages."""
    names = sorted(p.parent.name for p in storage.glob(f"*/{SETTINGS_FILE}"))
    return f"; experiments in {storage}: {', '.join(names)}" if names else f"; {storage} holds no experiments"


def study_storage(experiment: Path) -> str:
    """The Optuna storage URL of the experiment's study (whose name is the experiment's)."""
    return f"sqlite:///{experiment / OPTUNA_DB}"


def study_path(experiment: str | Path) -> Path | None:
    """The experiment's Optuna study (SQLite), if it has one."""
    path = Path(experiment) / OPTUNA_DB
    return path if path.is_file() else None


def trial_dirs(experiment: Path) -> list[Path]:
    """The trial folders of an experiment (those with a params.json), by name."""
    if not experiment.is_dir():
        raise FileNotFoundError(f"no experiment folder at {experiment}")
    found = sorted(p.parent for p in experiment.glob(f"*/{PARAMS_FILE}"))
    if not found:
        inside = sorted(p.parent.parent.name for p in experiment.glob(f"*/*/{PARAMS_FILE}"))
        hint = (f"; it holds experiments: {', '.join(sorted(set(inside)))}" if inside
                else "; an experiment folder is <storage>/<name>/ with one folder per trial")
        raise FileNotFoundError(f"no trial folders (with {PARAMS_FILE}) in {experiment}{hint}")
    return found


def read_params(trial_dir: Path) -> dict:
    """The trial's config from params.json; ValueError if that is not a JSON object (cut
    short by a trial being created, or damaged)."""
    try:
        params = json.loads((trial_dir / PARAMS_FILE).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e})") from e
    if not isinstance(params, dict):
        raise ValueError(f"a JSON {type(params).__name__} where a config (an object) is expected")
    return params


def read_results(trial_dir: Path) -> list[dict]:
    """The reported results in order, one per epoch. A line cut short by a trial still
    writing is skipped; an epoch reported twice (a trial restarted from a checkpoint
    repeats the epochs after it) keeps its latest report."""
    path = trial_dir / RESULTS_FILE
    if not path.is_file():
        return []
    by_epoch = {}
    for line in path.read_text().splitlines():
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            continue
        epoch = result.get("epoch", result.get("training_iteration"))
        if epoch is not None:
            by_epoch[epoch] = result
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def best_checkpoint(trial_dir: Path) -> Path | None:
    """The trainer's checkpoint/best.pt, else the one in Tune's newest checkpoint copy."""
    own = trial_dir / CHECKPOINT_DIR / BEST
    if own.is_file():
        return own.absolute()
    copies = sorted(trial_dir.glob(f"checkpoint_*/{BEST}"))
    return copies[-1].absolute() if copies else None


def result_path(checkpoint: Path, split: str, generation_mode: bool, other_corpus: str | None = None) -> Path:
    """Where `evaluate_checkpoint` writes its result: eval_[<other_corpus>_]<split>[_gm].json
    beside the checkpoint (its wav files go into the folder of the same name)."""
    corpus = f"{other_corpus}_" if other_corpus else ""
    return checkpoint.parent / f"eval_{corpus}{split}{'_gm' if generation_mode else ''}.json"
