"""The search: a space (dvae.spaces) run as a Ray Tune experiment, sampled by Optuna, pruned by ASHA.

This module and tune_runner.py are the only places that know Ray; the trainer
(dvae.training.train) knows nothing of it. Per trial:

- Optuna proposes a configuration through `OptunaSpace`, a define-by-run function,
  so a conditional parameter (student_df only with the Student-t prior) is sampled
  only where it exists. The study lives in SQLite inside the experiment folder,
  where optuna-dashboard reads it and where a resumed search continues it.
- Models: `variant` is a categorical parameter whose value for each configuration
  is queued in advance in turn (vrnn, srnn, vrnn, ...), so every model gets its share
  of the budget instead of TPE concentrating on whichever model looks best early.
- Seeds: once a configuration is sampled, its copies for the other seeds are queued
  in the study (fixed parameters, the seed as a user attribute), behind what is
  queued already. The queue is in the SQLite file, so it survives an interruption;
  Tune's `Repeater` would not (it does not save its groups).
- `trainable` turns the flat config into a `Config`, fits threads and device to the
  trial's resources and calls `train`, reporting every epoch with its checkpoint.
- ASHA compares trials on `val_loss` (negative ELBO per frame at KL weight 1, so
  comparable across epochs and warm-ups) at epochs grace_period * rf^k, counted by the
  trainer's `epoch`, which a resumed trial continues even where Tune's iteration count lags.

Resuming (`restore_tuner`): Tune restores its trials and the searcher from its last
snapshot, while the study in SQLite is always current; the two are reconciled so that
every configuration is accounted for (see `requeue_orphans` and `StudySearch`), and a
checkpoint the snapshot names but Tune has since deleted is replaced by the trial's
newest one (`recover_lost_checkpoints`). ASHA's rung records, which Tune does not restore,
are kept in the experiment folder and read back (`RecordedASHA`).

Storage: Tune carries every trial's results, checkpoints and TensorBoard files from the
node it runs on to the experiment's storage (a folder, or a URI for a cluster without a
shared disk: dvae.experiment.Location); a trial writes only into its own working folder.

A replayed search (`replay`) runs the same machinery on recorded learning curves.
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional

import optuna
import pyarrow.fs
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from . import logs
from . import experiment
from .experiment import ASHA_RECORDS, BOOKKEEPING, OPTUNA_DB, Location, study_storage
from .config import Config
from .cpu import tune_process
from .curves import CurveTable, replayed_epochs
from .spaces import Param, Space, load_space
from .training import train

METRIC, MODE = "val_loss", "min"
SAMPLER_SEED = 0  # the same space proposes the same first configurations on every run


def distribution(param: Param) -> optuna.distributions.BaseDistribution:
    if param.kind == "choice":
        return optuna.distributions.CategoricalDistribution(param.choices)
    if param.kind == "int":
        return optuna.distributions.IntDistribution(int(param.low), int(param.high), log=param.log)
    return optuna.distributions.FloatDistribution(param.low, param.high, log=param.kind == "loguniform")


def distributions(space: Space) -> dict[str, optuna.distributions.BaseDistribution]:
    """Every parameter Optuna samples, `variant` first."""
    variants = optuna.distributions.CategoricalDistribution([v.name for v in space.variants])
    return {"variant": variants, **{p.name: distribution(p) for p in space.params}}


class OptunaSpace:
    """The define-by-run search space handed to OptunaSearch.

    A class rather than a closure because Tune pickles it with the searcher's state.
    Returns the constants a trial needs besides the sampled values: the variant's
    settings, the seed, and the Optuna trial number.
    """

    def __init__(self, space: Space):
        self.space = space

    def __call__(self, trial: optuna.Trial) -> dict:
        dists = distributions(self.space)
        variant_name = trial.suggest_categorical("variant", dists["variant"].choices)
        sampled = {}
        for param in sorted(self.space.params, key=lambda p: p.when is not None):  # conditions first
            if param.when is None or sampled.get(param.when[0]) in param.when[1]:
                sampled[param.name] = suggest(trial, param.name, dists[param.name])
        variant = next(v for v in self.space.variants if v.name == variant_name)
        constants = {**variant.overrides, "optuna_trial": trial.number}
        if self.space.seeds:
            seed = trial.user_attrs.get("seed")
            if seed is None:  # a new configuration: queue its runs with the other seeds
                seed = self.space.seeds[0]
                trial.set_user_attr("seed", seed)
                for other in self.space.seeds[1:]:
                    trial.study.enqueue_trial(dict(trial.params), user_attrs={"seed": other, "repeat_of": trial.number})
            constants["seed"] = seed
        return constants


class StudySearch(OptunaSearch):
    """OptunaSearch that tells the study what happened to each trial.

    - Every epoch's val_loss is an intermediate value at its epoch (OptunaSearch would use
      Tune's iteration count, which restarts behind the epoch when a trial resumes).
    - A trial ASHA stopped before its max_t is PRUNED, not COMPLETE with its last low-budget
      loss as if it were final (what OptunaSearch tells): TPE ranks a pruned trial by how far
      it got and its last intermediate value, below every trial that went further.
    - A trial that ran to its end (or stopped early by its own patience) is COMPLETE with
      its best val_loss: the figure of the checkpoint it is judged by.
    - A diverged trial (NaN val_loss) is FAIL: Optuna refuses NaN as a value, and the trial
      would otherwise stay RUNNING in the study forever.

    A closed trial reports again after --resume: a trial that ended (ASHA stop or
    completion) after Tune's last snapshot but before the interruption is resumed by
    Tune, while the study already holds its outcome. The outcome stands; the late
    results are only not written to the study (Tune still records them).
    """

    def __init__(self, *args, max_t: Optional[int] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_t = max_t  # ASHA's full budget: a trial stopped there is not pruned

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        value = (result or {}).get(METRIC)
        if result and trial_id not in self._completed_trials:
            self.report_epoch(trial_id, result)  # Tune hands the last epoch's result only to this call
        if value is not None and not math.isfinite(value):
            result, error = None, True  # diverged: FAIL
        elif (result and not error and result.get("stop_reason") is None
              and result.get("epoch", 0) < (getattr(self, "max_t", None) or math.inf)):
            result = None  # stopped from outside mid-run, by ASHA: PRUNED
        elif result and not error:
            result = {**result, METRIC: result.get("best_val_loss", value)}
        super().on_trial_complete(trial_id, result, error)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self._completed_trials:
            self.report_epoch(trial_id, result)

    def report_epoch(self, trial_id: str, result: dict) -> None:
        value, epoch = result.get(METRIC), result.get("epoch")
        # (absent from the state of a searcher saved before it existed)
        reported = self.__dict__.setdefault("_reported_epochs", {})
        if value is None or epoch is None or not math.isfinite(value) or epoch <= reported.get(trial_id, 0):
            return  # a resumed trial repeats the epochs after its checkpoint
        try:
            self._ot_trials[trial_id].report(value, int(epoch))
        except optuna.exceptions.UpdateFinishedTrialError:
            return
        reported[trial_id] = epoch


class RecordedASHA(ASHAScheduler):
    """ASHA whose rung records and stop decisions live in the experiment folder (asha.json),
    so that a resumed search decides as the uninterrupted one would have.

    Tune restores a scheduler as it was built, with empty rungs (ray issue 30838): a resumed
    search would compare its trials against nothing and stop none mid-rung. Here every change
    is written at once, and read back when Tune unpickles the scheduler on --resume. A trial
    stopped just before the interruption, whose stop Tune had not saved yet, runs again from
    its checkpoint: its recorded decision stops it again at the same epoch.
    """

    def __init__(self, records: Path, **asha):
        super().__init__(time_attr="epoch", **asha)
        self.records = str(records)
        self.stopped: dict[str, float] = {}  # trial id: the epoch ASHA stopped it at
        self.bracket_of: dict[str, int] = {}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        path = Path(self.records)
        if path.is_file():
            saved = json.loads(path.read_text())
            for bracket, rungs in zip(self._brackets, saved["brackets"]):
                bracket._rungs = [(milestone, dict(recorded)) for milestone, recorded in rungs]
            self.stopped, self.bracket_of = saved["stopped"], saved["bracket_of"]
            self._num_stopped = saved["num_stopped"]

    def save_records(self) -> None:
        path = Path(self.records)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"brackets": [b._rungs for b in self._brackets], "stopped": self.stopped,
                                   "bracket_of": self.bracket_of, "num_stopped": self._num_stopped}))
        os.replace(tmp, path)

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        if trial.trial_id in self.bracket_of:  # restored: the bracket it was in
            self._trial_info[trial.trial_id] = self._brackets[self.bracket_of[trial.trial_id]]
        else:
            self.bracket_of[trial.trial_id] = self._brackets.index(self._trial_info[trial.trial_id])

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        stopped_at = self.stopped.get(trial.trial_id)
        if stopped_at is not None and result.get(self._time_attr, 0) >= stopped_at:
            return TrialScheduler.STOP
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP:
            self.stopped[trial.trial_id] = result[self._time_attr]
        self.save_records()
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        self.save_records()


def suggest(trial: optuna.Trial, name: str, dist: optuna.distributions.BaseDistribution):
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, log=dist.log)


def variant_queue(space: Space) -> list[dict]:
    """One {"variant": name} per configuration, the models in turn (none for a single model)."""
    if len(space.variants) == 1:
        return []
    return [{"variant": space.variants[i % len(space.variants)].name} for i in range(space.num_samples)]


def trainable(config: dict) -> None:
    """One trial: the trainer's own loop, reporting each epoch and its checkpoint to Tune
    (or, in a replayed search, a recorded curve: `replay`).

    Restarted trials (after a failure, or on --resume) continue from the last
    checkpoint Tune recorded, whose last.pt holds everything to go on.
    """
    logs.configure()  # at the runner's level (DVAE_LOG_LEVEL)
    if config.get("replay"):
        return replay(config)
    tune_process()  # a trial's process is ours: MKL's fast kernels and glibc's heap (dvae.cpu)
    context = tune.get_context()
    resources = context.get_trial_resources().required_resources
    cfg = Config.from_dict({k: v for k, v in config.items() if k not in BOOKKEEPING}).replace(
        num_threads=max(1, int(resources.get("CPU", 1))),
        # Ray restricts CUDA_VISIBLE_DEVICES to the trial's GPU, so "cuda" is that GPU
        device="cuda" if resources.get("GPU", 0) > 0 else "cpu",
    )
    run_dir = trial_working_dir()

    def report(metrics: dict, checkpoint_dir: Path) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir))

    checkpoint = tune.get_checkpoint()
    resume_from = None
    with (checkpoint.as_directory() if checkpoint is not None else contextlib.nullcontext()) as folder:
        if folder is not None:
            resume_from = Path(folder) / "last.pt"
        train(cfg, run_dir, on_epoch=report, resume_from=resume_from, checkpoint_dir=scratch_checkpoint_dir(run_dir))


def trial_working_dir() -> Path:
    """The trial's working folder on its node, where it writes its TensorBoard events: Tune
    copies it to the trial's folder in storage with every checkpoint (SyncConfig.sync_artifacts).

    Tune makes it the trial's current directory (RAY_CHDIR_TO_TRIAL_DIR, on by default);
    get_trial_dir() is not it for a trial in a new worker process, but a folder on the
    driver's path that only the driver's node syncs.
    """
    if os.environ.get("RAY_CHDIR_TO_TRIAL_DIR", "1") == "0":
        raise RuntimeError("RAY_CHDIR_TO_TRIAL_DIR=0: a trial would not know its working folder; unset it")
    return Path.cwd()


def scratch_checkpoint_dir(run_dir: Path) -> Path:
    """Where a trial's trainer writes the checkpoints it reports: beside Tune's working
    folders (<session>/<experiment>/working_dirs/<trial>), so that syncing the working
    folder does not store each checkpoint a second time."""
    return run_dir.parent.parent / "checkpoints" / run_dir.name


@functools.lru_cache(maxsize=4)
def _replay_source(table: str, space_file: str, budget: str) -> tuple[CurveTable, tuple[Param, ...]]:
    return CurveTable.read(table), load_space(space_file, budget).params


def replay(config: dict) -> None:
    """A trial of a replayed search: the recorded curve nearest to its configuration
    (dvae.curves), reported epoch by epoch with the trainer's stop rules, each epoch taking
    `replay_epoch_s` seconds; its checkpoint is the epoch reached, so a resumed trial goes on."""
    table, params = _replay_source(config["replay"], config["replay_space"], config["replay_budget"])
    curve = table.nearest(config, params)
    cfg = Config.from_dict({k: v for k, v in config.items() if k not in BOOKKEEPING})
    run_dir = scratch_checkpoint_dir(trial_working_dir())
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            start = json.loads((Path(folder) / "epoch.json").read_text())["epoch"]
    for metrics in replayed_epochs(curve, cfg.train.epochs, cfg.train.patience, start):
        time.sleep(config.get("replay_epoch_s") or 0.0)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "epoch.json").write_text(json.dumps({"epoch": metrics["epoch"]}))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(run_dir))


def trial_name(trial) -> str:
    """vrnn_3f2a1b0c: the model variant first, so logs and TensorBoard's run list read by model."""
    return f"{trial.config.get('variant', 'trial')}_{trial.trial_id}"


@dataclass(frozen=True)
class Resources:
    """What one trial gets and how many run at once."""
    cpus_per_trial: float
    gpus_per_trial: float
    cpus: float  # of the machine or cluster
    gpus: float
    max_concurrent: int

    @classmethod
    def fit(cls, cpus: float, gpus: float, cpus_per_trial: float, gpus_per_trial: float,
            max_concurrent: Optional[int] = None) -> "Resources":
        """As many trials at once as the CPUs and GPUs hold (or `max_concurrent`, if given)."""
        fits = math.floor(cpus / cpus_per_trial + 1e-9)
        if gpus_per_trial > 0:
            fits = min(fits, math.floor(gpus / gpus_per_trial + 1e-9))
        return cls(cpus_per_trial, gpus_per_trial, cpus, gpus, max_concurrent or fits)

    def problem(self) -> Optional[str]:
        """Why no trial could start with these resources, or None."""
        if self.cpus_per_trial > self.cpus:
            return f"--cpus-per-trial {self.cpus_per_trial:g} exceeds the {self.cpus:g} CPUs available"
        if self.gpus_per_trial > self.gpus:
            return (f"--gpus-per-trial {self.gpus_per_trial:g} exceeds the {self.gpus:g} GPUs available"
                    + ("; use --gpus-per-trial 0 to train on CPUs" if self.gpus == 0 else ""))
        return None

    def describe(self) -> str:
        per_gpu = f", {math.floor(1 / self.gpus_per_trial + 1e-9)} trials per GPU" if 0 < self.gpus_per_trial < 1 else ""
        return (f"{self.cpus_per_trial:g} CPU and {self.gpus_per_trial:g} GPU per trial{per_gpu}; "
                f"{self.cpus:g} CPUs and {self.gpus:g} GPUs available; up to {self.max_concurrent} trials at once")


def replay_settings(space: Space, table: str, epoch_s: float = 0.0) -> dict:
    """What a replayed search's trials read: the table, an epoch's seconds, and the space
    (file and budget) whose ranges scale the distance to the nearest recorded configuration."""
    return {"replay": table, "replay_epoch_s": epoch_s, "replay_space": str(space.path), "replay_budget": space.budget}


def param_space(space: Space, replay: Optional[dict] = None) -> dict:
    """What every trial shares: the fixed settings (and for a replayed search, `replay_settings`)."""
    return {**space.fixed, **(replay or {})}


def build_tuner(space: Space, location: Location | Path, resources: Resources, callbacks=None,
                replay: Optional[dict] = None, configurations: Optional[list[dict]] = None) -> tune.Tuner:
    """A new experiment at `location` (or an experiment folder); `callbacks`: Tune callbacks;
    `replay`: `replay_settings` to replay recorded curves; `configurations`: run these
    ({"variant": ..., field: value}, each once per seed: a confirmation) instead of sampling.

    A study already there is from a start stopped before Tune saved anything: it goes on,
    its proposals that never ran queued again and its queue of models kept as it is.
    """
    location = location if isinstance(location, Location) else Location.parse(location)
    local = location.local
    local.mkdir(parents=True, exist_ok=True)
    begun = (local / OPTUNA_DB).is_file() and location.name in optuna.get_all_study_names(study_storage(local))
    if begun:
        requeue_orphans(local, known=set())
    searcher = StudySearch(
        OptunaSpace(space),
        metric=METRIC,
        mode=MODE,
        points_to_evaluate=[] if begun else (configurations or variant_queue(space)),
        # constant_liar: trials still running count as bad guesses, so concurrent trials spread out
        sampler=optuna.samplers.TPESampler(seed=SAMPLER_SEED, constant_liar=True),
        max_t=space.asha["max_t"] if space.asha else None,
        study_name=location.name,
        storage=optuna.storages.RDBStorage(study_storage(local)),
    )
    scheduler = FIFOScheduler()
    if space.asha:
        scheduler = RecordedASHA(local / ASHA_RECORDS, **space.asha)
    return tune.Tuner(
        with_resources(resources),
        param_space=param_space(space, replay),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=resources.max_concurrent),
            scheduler=scheduler,
            num_samples=space.trials,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
            # a trial takes over the worker process of one that ended: it skips starting a
            # process and importing torch (about 4 s before a first epoch, 0.1 s after;
            # benchmarks/bench_trial.py)
            reuse_actors=True,
        ),
        run_config=run_config(location, callbacks),
    )


def restore_tuner(space: Space, location: Location, resources: Resources,
                  replay: Optional[dict] = None) -> tune.Tuner:
    """The interrupted experiment at `location`, to go on where it stopped: finished
    trials stay finished, unfinished and failed ones continue from their last checkpoint,
    and the Optuna study continues in its SQLite file."""
    # every trial of the snapshot, those that never started included
    trials = tune.ExperimentAnalysis(location.path).trials
    recover_lost_checkpoints(trials)
    requeue_orphans(location.local, {trial.config.get("optuna_trial") for trial in trials})
    return tune.Tuner.restore(
        location.path,
        with_resources(resources),
        param_space=param_space(space, replay),
        resume_errored=True,
        restart_errored=False,
    )


def recover_lost_checkpoints(trials) -> list[Path]:
    """Puts each unfinished trial's newest checkpoint where Tune's snapshot expects its last one.

    Keeping one checkpoint per trial, Tune deletes the previous one as soon as it records
    a new one, but saves its experiment snapshot only now and then: a runner killed in
    between leaves a snapshot naming a deleted checkpoint, and Tune would fail the trial
    on resume ("does not exist on storage anymore"). The newest checkpoint in the trial's
    folder (Tune deletes an old one only once a newer one is written) is moved to the
    name the snapshot expects, and the older ones after that name are removed. The trial
    then continues from its newest state, with Tune's iteration count behind the trainer's
    epoch. Returns the checkpoint folders so filled.
    """
    recovered = []
    for trial in trials:
        checkpoint = trial.checkpoint
        if trial.status == "TERMINATED" or checkpoint is None:
            continue
        fs, lost = checkpoint.filesystem, PurePosixPath(checkpoint.path)
        if fs.get_file_info(str(lost)).type != pyarrow.fs.FileType.NotFound:
            continue
        folders = sorted(PurePosixPath(info.path) for info in fs.get_file_info(pyarrow.fs.FileSelector(str(lost.parent)))
                         if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("checkpoint_"))
        if not folders:  # (zero-padded names: sorted by index)
            continue
        fs.move(str(folders.pop()), str(lost))
        for stale in folders:
            if stale.name > lost.name:
                fs.delete_dir(str(stale))
        recovered.append(Path(lost))
    return recovered


def requeue_orphans(experiment_dir: Path, known: set) -> list[int]:
    """Closes the study's trials that Tune never recorded, and queues their configurations again.

    A trial Optuna proposed after Tune's last snapshot is unknown to the restored
    experiment: it would stay RUNNING in the study for ever, and a queued model or seed
    run would be lost. It is marked FAIL and its parameters (and seed) are queued, so
    the next proposal is exactly the run that never happened. Returns their numbers.
    """
    study = optuna.load_study(study_name=experiment_dir.name, storage=study_storage(experiment_dir))
    orphans = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
               if t.number not in known]
    for trial in orphans:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs=trial.user_attrs)
    return [t.number for t in orphans]


def with_resources(resources: Resources):
    return tune.with_resources(trainable, {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial})


class UploadDriverFiles(tune.Callback):
    """Copies the runner's own files (the study, ASHA's records, the settings) to a URI
    storage as the search goes: after a trial ends, at most every `every_s` seconds of
    results, and at the end, so that another machine can resume or read the experiment."""

    def __init__(self, location: Location, every_s: float = 30.0):
        self.location, self.every_s, self.last = location, every_s, 0.0

    def upload(self) -> None:
        self.location.upload_driver_files()
        self.last = time.monotonic()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if time.monotonic() - self.last >= self.every_s:
            self.upload()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.upload()

    def on_experiment_end(self, trials, **info) -> None:
        self.upload()


def run_config(location: Location, callbacks=None) -> tune.RunConfig:
    callbacks = list(callbacks or []) + ([UploadDriverFiles(location)] if location.remote else [])
    return tune.RunConfig(
        name=location.name,
        callbacks=callbacks or None,
        storage_path=location.storage,
        # the trial's working folder (its TensorBoard events) is copied to storage with each checkpoint
        sync_config=tune.SyncConfig(sync_artifacts=True),
        # the newest checkpoint folder holds last.pt and best.pt, so one is enough
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=2),
    )


def experiment_exists(path: str) -> bool:
    """Whether Tune saved a state to restore at `path` (a Location's): its tuner, and a snapshot of the trials."""
    if not tune.Tuner.can_restore(path):
        return False
    fs, root = Location.parse(path).filesystem() if experiment.is_uri(path) else (pyarrow.fs.LocalFileSystem(), path)
    return any(info.base_name.startswith("experiment_state-") and info.base_name.endswith(".json")
               for info in fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True)))


def unfinished_trials(path: str) -> set[str]:
    """The folder names of the trials that neither ended nor failed: those of an interrupted search."""
    return {PurePosixPath(trial.path).name for trial in tune.ExperimentAnalysis(path).trials
            if trial.status not in ("TERMINATED", "ERROR")}


def summary(results, space: Space, unfinished: Container[str] = ()) -> str:
    """A table of the best trial per model variant (the best epoch so far of an unfinished
    one included), and how every trial ended; `unfinished`: from `unfinished_trials`."""
    keys = [p.name for p in space.params] + (["seed"] if space.seeds else [])
    best: dict[str, tuple] = {}
    counts = {"trials": 0, "completed": 0, "early_stopped": 0, "stopped_by_asha": 0, "diverged": 0, "failed": 0,
              "unfinished": 0}
    per_variant: dict[str, int] = {}
    for result in results:
        counts["trials"] += 1
        metrics, config = result.metrics or {}, result.config or {}
        if Path(result.path or "").name in unfinished:
            counts["unfinished"] += 1
            if METRIC not in metrics:
                continue
        elif result.error is not None or METRIC not in metrics:
            counts["failed"] += 1
            continue
        else:
            reason = metrics.get("stop_reason")  # None: the trainer did not end the trial, so ASHA did
            counts["stopped_by_asha" if reason is None else "diverged" if metrics.get("diverged") else reason] += 1
        name = config.get("variant", "?")
        per_variant[name] = per_variant.get(name, 0) + 1
        value = metrics.get("best_val_loss", metrics[METRIC])
        if math.isfinite(value) and (name not in best or value < best[name][0]):
            best[name] = (value, metrics.get("best_epoch"), config)
    rows = [["model", "val_loss", "epoch", "trials", *keys]]
    for variant in space.variants:
        if variant.name in best:
            value, epoch, config = best[variant.name]
            rows.append([variant.name, f"{value:.6g}", str(epoch), str(per_variant[variant.name]),
                         *(_cell(config.get(k, "-")) for k in keys)])
        else:
            rows.append([variant.name, "-", "-", str(per_variant.get(variant.name, 0)), *("-" for _ in keys)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
    ended = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items() if k != "trials" and v)
    return f"{table}\n\n{counts['trials']} trials: {ended or 'none finished'}"


def _cell(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
