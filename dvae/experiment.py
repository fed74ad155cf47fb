"""The experiment folder, <storage>/<name>/, in one place: its layout, its settings file, its
Optuna study, what --resume may change, where it lives, and reading its trials back. No Ray
here: the search (dvae.search) writes the folder through Ray Tune, the runner (dvae.runner)
keeps its settings, and the analysis reads it, all through these names.

Storage is a folder, or a URI of a filesystem pyarrow reads (s3://, gs://, hdfs://, file://)
for a cluster whose nodes share no disk (`Location`). Trials never write to it themselves:
Tune carries their results, checkpoints and TensorBoard files there. With a URI, the runner
keeps its own files (the first four below) in a local folder that it uploads as the search
goes, and the analysis reads a local copy that it downloads.

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
        tb/                       the trainer's TensorBoard events
        checkpoint_NNNNNN/        the checkpoint Tune last recorded: best.pt and last.pt
          eval_test.json          test scores of best.pt, once scored (`result_path`)
          eval_test_generation.json   measures of its generated speech (`generation_result_path`)
"""
from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import tempfile
import urllib.parse
from collections.abc import Container
from pathlib import Path
from typing import Optional

SETTINGS_FILE = "search.json"
OPTUNA_DB = "optuna.db"
ASHA_RECORDS = "asha.json"
PARAMS_FILE, RESULTS_FILE, ERROR_FILE = "params.json", "result.json", "error.txt"
CHECKPOINT_DIR, BEST, LAST, TENSORBOARD_DIR = "checkpoint", "best.pt", "last.pt", "tb"
# What the runner writes itself (the rest comes through Tune): uploaded to a URI storage.
DRIVER_FILES = (SETTINGS_FILE, OPTUNA_DB, ASHA_RECORDS)
# Keys of a trial's config that are not Config fields: the space's variant (e.g. srnn_gm),
# Optuna's trial number, and for a replayed search (--replay) the table of learning curves
# it reads, the seconds an epoch takes, and the space file and budget it was recorded from.
BOOKKEEPING = ("variant", "optuna_trial", "replay", "replay_epoch_s", "replay_space", "replay_budget")
# Where local copies of experiments on a URI storage are kept (runner's files, downloads).
MIRROR_ENV = "DVAE_MIRROR"


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
    # --confirm: {"experiment": the search confirmed, "seeds": [...], "configurations": [{variant, field: value}]}
    confirm: Optional[dict] = None

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


def is_uri(storage: str | Path) -> bool:
    """Whether `storage` names a filesystem by URI (s3://bucket/x, file:///x) rather than a folder."""
    return "://" in str(storage)


@dataclasses.dataclass(frozen=True)
class Location:
    """Where an experiment lives: `storage` (a folder, or a URI) and its `name`.

    `path` is the experiment as Tune addresses it (<storage>/<name>); `local` the folder on
    this machine that the runner writes its own files into, and `copy` the folder the
    analysis reads: both the experiment folder itself on a folder storage; on a URI storage,
    folders under $DVAE_MIRROR (default ~/.cache/dvae-tune), `copy` filled by `download`.
    """
    storage: str
    name: str

    @classmethod
    def parse(cls, experiment: str | Path) -> "Location":
        """An experiment given as <storage>/<name> (a folder or a URI)."""
        if not is_uri(experiment):
            folder = Path(experiment).expanduser().absolute()
            return cls(str(folder.parent), folder.name)
        parts = urllib.parse.urlsplit(str(experiment))
        head, _, name = parts.path.rstrip("/").rpartition("/")
        if not name:
            raise ExperimentError(f"{experiment}: an experiment is <storage>/<name>; no name in this URI")
        return cls(urllib.parse.urlunsplit(parts._replace(path=head)), name)

    @property
    def remote(self) -> bool:
        return is_uri(self.storage)

    @property
    def path(self) -> str:
        if not self.remote:
            return str(Path(self.storage) / self.name)
        parts = urllib.parse.urlsplit(self.storage)
        return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + self.name))

    @property
    def local(self) -> Path:
        return self._mirror("runner")

    @property
    def copy(self) -> Path:
        return self._mirror("copies")

    def _mirror(self, kind: str) -> Path:
        if not self.remote:
            return Path(self.storage) / self.name
        parts = urllib.parse.urlsplit(self.storage)
        mirror = Path(os.environ.get(MIRROR_ENV) or Path("~/.cache/dvae-tune").expanduser())
        place = "".join(c if c.isalnum() or c in "-_." else "_" for c in parts.netloc + parts.path).strip("_")
        return mirror / parts.scheme / (place or "_") / kind / self.name

    def filesystem(self):
        """(pyarrow filesystem, the experiment's path on it); ExperimentError if no filesystem reads the URI."""
        import pyarrow.fs
        try:
            fs, storage_path = pyarrow.fs.FileSystem.from_uri(self.storage)
        except (pyarrow.ArrowInvalid, ValueError, OSError) as e:
            raise ExperimentError(f"storage {self.storage}: no filesystem reads it ({e})") from None
        return fs, f"{storage_path.rstrip('/')}/{self.name}"

    def upload(self, folder: Path, relative: list[str]) -> None:
        """Copies these files of `folder` (paths relative to it) to the storage; an SQLite
        file through SQLite's backup, so that a study being written is copied whole."""
        if not self.remote:
            return
        fs, root = self.filesystem()
        for name in relative:
            source = folder / name
            if not source.is_file():
                continue
            fs.create_dir(f"{root}/{Path(name).parent.as_posix()}".rstrip("/."), recursive=True)
            with tempfile.TemporaryDirectory() as scratch:
                if source.suffix == ".db":
                    copy = Path(scratch) / source.name
                    with sqlite3.connect(source) as live, sqlite3.connect(copy) as snapshot:
                        live.backup(snapshot)
                    source = copy
                with source.open("rb") as data, fs.open_output_stream(f"{root}/{Path(name).as_posix()}") as out:
                    out.write(data.read())

    def upload_driver_files(self) -> None:
        """The runner's own files (settings, space copy, study, ASHA's records) to the storage."""
        self.upload(self.local, self.driver_files(self.local))

    @staticmethod
    def driver_files(folder: Path) -> list[str]:
        return [*DRIVER_FILES, *sorted(p.name for p in folder.glob("*.yaml"))]

    def exists(self) -> bool:
        """Whether anything is stored at `path`."""
        if not self.remote:
            return self.local.exists()
        import pyarrow.fs
        fs, root = self.filesystem()
        return fs.get_file_info(root).type != pyarrow.fs.FileType.NotFound

    def download(self, into: Path, keep: Container[str] = (), top_level: bool = False) -> Path:
        """Makes `into` a copy of the experiment in storage (the files changed since the last
        copy; a file named in `keep` only where `into` lacks it; with `top_level`, none of
        the trials' folders); returns `into`."""
        if not self.remote:
            return into
        import pyarrow.fs
        fs, root = self.filesystem()
        found = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True, recursive=not top_level))
        if not found and fs.get_file_info(root).type == pyarrow.fs.FileType.NotFound:
            raise FileNotFoundError(f"no experiment at {self.path}")
        for info in found:
            if info.type != pyarrow.fs.FileType.File:
                continue
            relative = info.path[len(root):].lstrip("/")
            if top_level and "/" in relative:
                continue
            target = into / relative
            stored_at = info.mtime.timestamp() if info.mtime else None
            if target.is_file() and (relative in keep or (
                    target.stat().st_size == info.size and stored_at == target.stat().st_mtime)):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with fs.open_input_stream(info.path) as data, open(f"{target}.part", "wb") as out:
                out.write(data.read())
            if stored_at is not None:  # the stored times, which tell stale scores from fresh ones
                os.utime(f"{target}.part", (stored_at, stored_at))
            os.replace(f"{target}.part", target)
        return into


def evaluation_files(folder: Path) -> list[str]:
    """The scores and audio that evaluation wrote beside the trials' checkpoints, relative to `folder`."""
    found = []
    for path in sorted(folder.glob("*/*/eval_*")):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        found += [str(p.relative_to(folder)) for p in files]
    return found


def local_copy(experiment: str | Path) -> Path:
    """The experiment folder to read: the folder itself, or for a URI its `copy`, brought up
    to date from storage."""
    if not is_uri(experiment):
        return Path(experiment)
    location = Location.parse(experiment)
    return location.download(location.copy)


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
    """The trainer's checkpoint/best.pt where there is one (a run of `python -m dvae train`,
    or a trial of an older search), else the best.pt of Tune's newest checkpoint."""
    own = trial_dir / CHECKPOINT_DIR / BEST
    if own.is_file():
        return own.absolute()
    copies = sorted(trial_dir.glob(f"checkpoint_*/{BEST}"))
    return copies[-1].absolute() if copies else None


def generation_result_path(checkpoint: Path, split: str) -> Path:
    """Where dvae.generation_scores writes its measures of the checkpoint's generated speech."""
    return checkpoint.parent / f"eval_{split}_generation.json"


def result_path(checkpoint: Path, split: str, generation_mode: bool, other_corpus: str | None = None) -> Path:
    """Where `evaluate_checkpoint` writes its result: eval_[<other_corpus>_]<split>[_gm].json
    beside the checkpoint (its wav files go into the folder of the same name)."""
    corpus = f"{other_corpus}_" if other_corpus else ""
    return checkpoint.parent / f"eval_{corpus}{split}{'_gm' if generation_mode else ''}.json"
