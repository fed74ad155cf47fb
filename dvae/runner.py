"""Runs a hyperparameter search over a DVAE search space with Ray Tune, ASHA and Optuna.

    python tune_runner.py --list                          # the spaces and what each studies
    python tune_runner.py --space vrnn_priors             # budget 'small': a laptop CPU, end to end
    python tune_runner.py --space vrnn_priors --budget smoke --dry-run   # show it, start nothing
    python tune_runner.py --space review_benchmark --budget full --gpus-per-trial 1 --cuda-graph
    python tune_runner.py --space mel_study --set corpus=vctk --set data_root=/data/VCTK   # fix more fields
    python tune_runner.py --space vrnn_priors --name my-run --resume     # after an interruption
    python tune_runner.py --confirm experiments/my-run --seeds 0,1,2     # its best configurations, with seeds
    ray start --head; python tune_runner.py --space kl_warmup --address auto --storage /shared/exp
    python tune_runner.py --space kl_warmup --address auto --storage s3://bucket/exp   # nodes share no disk

Budgets (every space has all three): smoke = a few minutes on 2 CPU cores, to check that
everything runs; small (the default) = a laptop CPU in well under an hour: a few hundred
utterances, smaller networks, ~20 epochs; full = the space's real settings, for GPUs or
a cluster. Results go to <storage>/<name>/ (dvae.experiment): one folder per trial
(TensorBoard events under tb/, checkpoints), the Optuna study in optuna.db, Tune's
experiment state, and a copy of the space file, which --resume reads. Storage may be a
URI (s3://, gs://, file://): the runner then keeps its own files in a local folder and
uploads them as it goes.

Everything that can be checked is checked before Ray starts; a problem ends the run
with one message and exit status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys
import textwrap
import time
from pathlib import Path, PurePosixPath

from dvae import experiment, logs
from dvae.spaces import BUDGETS, Space, SpaceError, descriptions, load_space

_log = logging.getLogger("dvae.runner")


class UsageError(Exception):
    """Bad input: reported as one message, before Ray starts."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", help="a space of search_spaces/ (see --list) or the path of a .yaml file")
    p.add_argument("--list", action="store_true", help="list the spaces with their descriptions")
    p.add_argument("--budget", choices=BUDGETS,
                   help="smoke: minutes on 2 cores; small (default): a laptop CPU; full: the space's own settings")
    p.add_argument("--num-samples", type=int, help="configurations to try (each once per seed of the space)")
    p.add_argument("--set", dest="settings", metavar="FIELD=VALUE", action="append", type=_setting,
                   help="fix a Config field for every trial, over the space and budget (repeatable): "
                        "--set corpus=vctk --set data_root=/data/VCTK")
    p.add_argument("--models", type=_names, metavar="NAME,...",
                   help="run only these of the space's models and variants (e.g. dkf,dsae)")
    p.add_argument("--replay", metavar="TABLE",
                   help="train nothing: each trial reports the recorded learning curve nearest its configuration "
                        "from this table (benchmarks/search_table.py), to compare search methods")
    p.add_argument("--replay-epoch-s", type=_finite, metavar="SECONDS",
                   help="with --replay: how long each replayed epoch takes (default 0)")
    p.add_argument("--confirm", metavar="EXPERIMENT",
                   help="train a finished search's best configurations again, once per --seeds (the best per model "
                        "and at each level of each studied factor; dvae.confirmation), as a new experiment")
    p.add_argument("--seeds", type=_seeds, default=(0, 1, 2), metavar="S,...",
                   help="with --confirm: the seeds each configuration runs with (default 0,1,2)")
    p.add_argument("--confirm-top", type=int, default=1, metavar="N",
                   help="with --confirm: each model's N best configurations besides the best per level (default 1)")
    p.add_argument("--name", help="experiment name (default: <space>-<budget>-<date>, or <searched>-confirm); "
                                  "needed with --resume")
    p.add_argument("--storage", default="experiments",
                   help="folder of experiments (default: ./experiments), or a URI (s3://bucket/x, gs://..., "
                        "file:///x) for a cluster whose nodes share no disk")
    p.add_argument("--resume", action="store_true", help="continue the interrupted experiment --name")
    p.add_argument("--dry-run", action="store_true",
                   help="print the space, fixed config, distributions, budget and resources; start nothing")
    p.add_argument("--address", help="join a running Ray cluster (e.g. 'auto' after `ray start --head`); "
                   "with several nodes --storage must be a folder every node sees, or a URI")
    p.add_argument("--cpus-per-trial", type=_finite, default=1.0, help="CPU cores per trial (default 1)")
    p.add_argument("--gpus-per-trial", type=_finite,
                   help="GPUs per trial; fractions share a GPU (0.25: four trials each). Default: 1 with a GPU, else 0")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as the resources hold)")
    p.add_argument("--cuda-graph", action="store_const", const=True, default=None,
                   help="record each trial's training step as one CUDA graph (train.cuda_graph; needs GPUs per trial)")
    p.add_argument("--no-dashboard", action="store_true", help="do not start the Ray dashboard")
    p.add_argument("--quick-test", type=int, default=50, metavar="N",
                   help="after the search, score each model's best trial on the first N test utterances "
                        "(default 50; 0: skip)")
    logs.add_arguments(p)
    args = p.parse_args(argv)
    if args.settings:
        fields = [field for field, _ in args.settings]
        twice = sorted({field for field in fields if fields.count(field) > 1})
        if twice:
            p.error(f"--set gives {', '.join(twice)} more than once")
    args.settings = dict(args.settings) if args.settings else None
    if args.replay:  # the trials read it from wherever they run
        args.replay = str(Path(args.replay).resolve())
    return args


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None
    if len(seeds) < 2 or len(set(seeds)) < len(seeds):
        raise argparse.ArgumentTypeError(f"give two or more different seeds, got {text!r}")
    return seeds


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give one or more names separated by commas")
    return names


def _setting(text: str) -> tuple[str, str]:
    field, sep, value = text.partition("=")
    if not sep or not field:
        raise argparse.ArgumentTypeError(f"'{text}' is not FIELD=VALUE")
    return field.strip(), value.strip()


def main(argv=None) -> int:
    args = parse_args(argv)
    # the trials log at the same level (the environment reaches them, here and through --address)
    os.environ[logs.LEVEL_ENV] = logs.configure(args.log_level)
    if args.list:
        for name, description in descriptions().items():
            print(f"{name:<18} {description}")
        return 0
    try:
        plan = Plan.from_args(args)
    except (UsageError, SpaceError) as e:
        print(f"tune_runner: {e}", file=sys.stderr)
        return 2
    print(plan.describe())
    if args.dry_run:
        return 0
    return plan.run()


@dataclasses.dataclass
class Plan:
    """Everything about a run that is decided before Ray starts."""
    args: argparse.Namespace
    settings: experiment.Settings  # what the search was started with (read back on --resume)
    space: Space
    location: experiment.Location
    cpus: float
    gpus: float
    gpus_per_trial: float
    # Tune's state to go on from; False on --resume of a search stopped before Tune saved any: begun again
    restore: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Plan":
        if args.cpus_per_trial <= 0:
            raise UsageError(f"--cpus-per-trial must be above 0, got {args.cpus_per_trial:g}")
        if args.gpus_per_trial is not None and args.gpus_per_trial < 0:
            raise UsageError(f"--gpus-per-trial must be 0 or more (fractions share a GPU), got {args.gpus_per_trial:g}")
        if args.num_samples is not None and args.num_samples < 1:
            raise UsageError(f"--num-samples must be at least 1, got {args.num_samples}")
        if args.quick_test < 0:
            raise UsageError(f"--quick-test must be 0 (skip) or more, got {args.quick_test}")
        if args.max_concurrent is not None and args.max_concurrent < 1:
            raise UsageError(f"--max-concurrent must be at least 1, got {args.max_concurrent}")
        if args.space and args.space.endswith((".yaml", ".yml")):  # a file of one's own: remembered absolute
            args.space = str(Path(args.space).resolve())
        if experiment.is_uri(args.storage):
            storage = args.storage.rstrip("/")
            try:
                experiment.Location(storage, "-").filesystem()
            except experiment.ExperimentError as e:
                raise UsageError(f"--{e}") from None
        else:
            storage = Path(args.storage).expanduser().resolve()
            _check_writable(storage)
        if args.name is not None and (not args.name.strip(". ") or "/" in args.name):
            raise UsageError(f"--name {args.name!r}: a folder name inside --storage, without '/'")

        restore = False
        if args.resume:
            if not args.name:
                raise UsageError("--resume needs --name: the experiment to continue"
                                 + ("" if experiment.is_uri(storage) else experiment.listing(storage)))
            location = experiment.Location(str(storage), args.name)
            try:
                if location.remote and not (location.local / experiment.SETTINGS_FILE).is_file():
                    # resumed on another machine: the runner's files from storage
                    location.download(location.local, top_level=True)
                settings = experiment.Settings.read(location.local).resumed_with(
                    {key: getattr(args, key) for key in experiment.Settings.fields()})
            except experiment.ExperimentError as e:
                raise UsageError(str(e)) from None
            except FileNotFoundError as e:
                raise UsageError(f"no experiment to resume: {e}") from None
            from dvae.search import experiment_exists  # imports Ray (not starting it): only when needed
            restore = experiment_exists(location.path)
            space_file = settings.space_file(location.local)
        elif args.confirm:
            settings, space_file = _confirmation_settings(args)
        elif not args.space:
            raise UsageError("--space is required; see --list for the spaces")
        else:
            settings = experiment.Settings(args.space, args.budget or "small", args.num_samples, args.cuda_graph,
                                           args.settings, args.models, args.replay, args.replay_epoch_s)
            space_file = settings.space

        space = load_space(space_file, settings.budget)
        if settings.num_samples:
            space = dataclasses.replace(space, num_samples=settings.num_samples)
        if settings.settings:
            space = space.with_settings(settings.settings)
        if settings.models:
            space = space.with_models(settings.models)
        if settings.cuda_graph:
            space = dataclasses.replace(space, fixed={**space.fixed, "cuda_graph": True})
        if settings.confirm:
            from dvae.confirmation import confirmation_space
            space = confirmation_space(space, settings.confirm["seeds"], settings.confirm["configurations"])
        if not args.resume:
            default = (f"{Path(settings.confirm['experiment']).name}-confirm" if settings.confirm
                       else f"{space.name}-{settings.budget}-{time.strftime('%Y%m%d-%H%M%S')}")
            name = args.name or default
            location = experiment.Location(str(storage), name)
            if location.exists() or location.local.exists():
                raise UsageError(f"{location.path} already exists; continue it with --resume --name {name} "
                                 "or choose another --name")

        if settings.replay_epoch_s is not None and not settings.replay:
            raise UsageError("--replay-epoch-s needs --replay")
        if settings.replay:
            from dvae.curves import CurveTable
            try:
                CurveTable.read(settings.replay)
            except (OSError, ValueError) as e:
                raise UsageError(f"--replay: {e}") from None
        from dvae.data import check_data_root
        for variant in space.variants:
            try:
                check_data_root(space.config(variant).data)
            except ValueError as e:
                raise UsageError(str(e)) from None
        cpus, gpus = float(os.cpu_count() or 1), float(_local_gpus())
        gpus_per_trial = args.gpus_per_trial if args.gpus_per_trial is not None else (1.0 if gpus else 0.0)
        searched_graph = any(p.name == "cuda_graph" and True in p.choices for p in space.params)
        if gpus_per_trial == 0 and (searched_graph or any(space.config(v).train.cuda_graph for v in space.variants)):
            raise UsageError("train.cuda_graph (--cuda-graph or the space's) needs a GPU in every trial; "
                             "give --gpus-per-trial (or leave cuda_graph out)")
        return cls(args, settings, space, location, cpus, gpus, gpus_per_trial, restore)

    def resources(self, cpus: float, gpus: float):
        from dvae.search import Resources
        return Resources.fit(cpus, gpus, self.args.cpus_per_trial, self.gpus_per_trial, self.args.max_concurrent)

    def describe(self) -> str:
        space = self.space
        first = space.config(space.variants[0]).flat()
        lines = [f"space       {space.name} ({space.path}), budget {space.budget}", f"            {space.description}"]
        lines.append(_wrap("models", ", ".join(
            v.name + ("" if list(v.overrides) == ["name"] else f" ({_settings(v.overrides)})") for v in space.variants)))
        lines.append(_wrap("fixed", _settings(space.fixed)))
        lines.append(_wrap("config", f"({space.variants[0].name}, before sampling) " + _settings(first)))
        searched = [f"variant: choice {[v.name for v in space.variants]}"] + [f"{p.name}: {p.describe()}"
                                                                              for p in space.params]
        for i, text in enumerate(searched):
            lines.append(("search      " if i == 0 else "            ") + text)
        lines.append("seeds       " + (", ".join(map(str, space.seeds)) if space.seeds else "- (the fixed seed)"))
        if space.asha:
            lines.append("scheduler   ASHA on epochs: " + _settings(space.asha))
        else:
            lines.append("scheduler   FIFO: every trial runs until its epochs or early stopping")
        lines.append(f"samples     {space.num_samples} configurations x {max(1, len(space.seeds))} seed(s) "
                     f"= {space.trials} trials, metric val_loss (min)")
        if self.args.address:
            lines.append(f"resources   {self.args.cpus_per_trial:g} CPU and {self.gpus_per_trial:g} GPU per trial; "
                         f"concurrency from the cluster at {self.args.address} when joining")
        else:
            resources = self.resources(self.cpus, self.gpus)
            lines.append("resources   " + resources.describe())
            if resources.problem():
                lines.append(f"            no trial could start on this machine: {resources.problem()}")
        resuming = "  (resuming)" if self.restore else "  (starting again: it stopped before its first trial)"
        lines.append(f"experiment  {self.location.path}" + (resuming if self.args.resume else ""))
        if self.location.remote:
            lines.append(f"            the runner's own files in {self.location.local}, uploaded as it goes")
        return "\n".join(lines)

    def run(self) -> int:
        if not self.args.address:
            problem = self.resources(self.cpus, self.gpus).problem()
            if problem:
                print(f"tune_runner: {problem}", file=sys.stderr)
                return 2
        try:
            if not self.settings.replay:
                self.prepare_data()
        except ValueError as e:  # DataError, ConfigError: the corpus is missing or unusable
            print(f"tune_runner: {e}", file=sys.stderr)
            return 2
        resources = self.start_ray()
        if resources is None:
            return 2
        # written once Ray runs, so that a start that fails leaves no folder to resume
        self.location.local.mkdir(parents=True, exist_ok=True)
        if not self.args.resume:
            self.settings.write(self.location.local, self.space.path)
            self.location.upload_driver_files()
        return self.search(resources)

    def prepare_data(self) -> None:
        """Prepares each corpus once here rather than in every trial at the same moment, and
        so that a missing corpus is reported before Ray starts. (A searched data field is
        left to the trials: each value is its own corpus.)"""
        from dvae.config import DataConfig
        from dvae.data import prepare_corpus

        data_fields = {f.name for f in dataclasses.fields(DataConfig)}
        if any(p.name in data_fields for p in self.space.params):
            return
        prepared = []
        for variant in self.space.variants:
            data = self.space.config(variant).data
            if data not in prepared:
                prepare_corpus(data).training_windows()  # a seq_len longer than every utterance: refused here
                prepared.append(data)

    def start_ray(self):
        """Starts Ray here (or joins --address) and returns the resources trials get, or None."""
        import ray

        # a trial given no GPU must see none, not inherit this process's CUDA_VISIBLE_DEVICES
        env = {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1", logs.LEVEL_ENV: os.environ[logs.LEVEL_ENV]}
        # Keeping one checkpoint makes Tune snapshot the experiment after every trial checkpoint
        # (what lets --resume pick up close to where it stopped); its warning about that is moot.
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        if self.args.address:
            try:
                ray.init(address=self.args.address, runtime_env={"env_vars": env})
            except ConnectionError as e:
                print(f"tune_runner: --address {self.args.address}: {' '.join(str(e).split())[:300]}; start one "
                      "with `ray start --head`, or leave --address out to run here", file=sys.stderr)
                return None
        else:
            os.environ.update(env)
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local instance: no login token
            dashboard = not self.args.no_dashboard and _dashboard_installed()
            context = ray.init(dashboard_host="127.0.0.1", include_dashboard=dashboard)
            if context.dashboard_url:
                _log.info(f"Ray dashboard:    http://{context.dashboard_url}")
        cluster = ray.cluster_resources()  # what Ray detected (cgroup limits included), or the whole cluster
        resources = self.resources(cluster.get("CPU", 0.0), cluster.get("GPU", 0.0))
        _log.info(("joined the Ray cluster at " + self.args.address if self.args.address else "Ray started") + ": "
                  + resources.describe())
        problem = resources.problem()
        if problem:
            print(f"tune_runner: {problem}", file=sys.stderr)
            ray.shutdown()
            return None
        return resources

    def search(self, resources) -> int:
        from dvae.search import (build_tuner, replay_settings, restore_tuner, study_storage, summary,
                                 unfinished_trials)

        location = self.location
        _log.info(f"TensorBoard:      tensorboard --logdir {location.path}")
        _log.info(f"Optuna dashboard: optuna-dashboard {study_storage(location.local)}")
        replay = None
        if self.settings.replay:
            replay = replay_settings(self.space, self.settings.replay, self.settings.replay_epoch_s or 0.0)
        if self.restore:
            tuner = restore_tuner(self.space, location, resources, replay)
        else:
            tuner = build_tuner(self.space, location, resources, replay=replay,
                                configurations=(self.settings.confirm or {}).get("configurations"))
        results = tuner.fit()
        unfinished = unfinished_trials(location.path)
        print()
        print(summary(results, self.space, unfinished))
        print()
        if self.args.quick_test and not unfinished and not self.settings.replay:
            # on a URI storage, scored in a local copy (the runner's files kept as they are here)
            folder = location.download(location.local, keep=location.driver_files(location.local))
            print(quick_test(results, self.space, self.args.quick_test, folder))
            print()
            location.upload(folder, experiment.evaluation_files(folder))
        print(f"results:          {location.path}")
        print(f"report:           python -m analysis.report {location.path}")
        if unfinished:  # Ctrl-C: Tune saved its state and stopped the trials
            print(f"interrupted; go on with: python tune_runner.py --resume --name {location.name} "
                  f"--storage {location.storage}")
            return 130
        return 0 if results.num_errors == 0 else 1


def _confirmation_settings(args: argparse.Namespace) -> tuple[experiment.Settings, str]:
    """The settings of a confirmation of the search at --confirm (its space, budget and
    fixed fields, and the configurations picked from its trials), and its space file."""
    from dvae.confirmation import pick, searched_trials
    given = [option for option, value in (("--space", args.space), ("--budget", args.budget),
                                          ("--num-samples", args.num_samples), ("--set", args.settings),
                                          ("--models", args.models), ("--replay", args.replay)) if value]
    if given:
        raise UsageError(f"--confirm runs the search's own space and settings; leave out {', '.join(given)}")
    if args.confirm_top < 1:
        raise UsageError(f"--confirm-top must be at least 1, got {args.confirm_top}")
    try:
        source = experiment.local_copy(args.confirm)
        searched = experiment.Settings.read(source)
    except (experiment.ExperimentError, FileNotFoundError) as e:
        raise UsageError(f"--confirm {args.confirm}: {e}") from None
    if searched.confirm:
        raise UsageError(f"--confirm {args.confirm} is a confirmation itself; confirm the search it came from")
    space_file = searched.space_file(source)
    space = load_space(space_file, searched.budget)
    if searched.settings:
        space = space.with_settings(searched.settings)
    if searched.models:
        space = space.with_models(searched.models)
    configurations = pick(space, searched_trials(source, space), args.confirm_top)
    if not configurations:
        raise UsageError(f"--confirm {args.confirm}: no trial reported a finite val_loss; nothing to confirm")
    confirm = {"experiment": str(args.confirm), "seeds": list(args.seeds), "configurations": configurations}
    return dataclasses.replace(searched, num_samples=None, confirm=confirm), space_file


def quick_test(results, space: Space, utterances: int, folder: Path) -> str:
    """Each model's best trial scored on the first `utterances` of its test split (written
    beside its checkpoint in the experiment `folder`, where the leaderboard and the report
    find it), as lines to print."""
    from dvae.cpu import tune_process
    from dvae.evaluation import METRIC_LABELS, evaluate_checkpoint
    from dvae.experiment import best_checkpoint
    from dvae.search import METRIC

    tune_process()  # before this process's first matrix product
    best = {}
    for result in results:
        metrics, config = result.metrics or {}, result.config or {}
        value = metrics.get("best_val_loss", metrics.get(METRIC, math.nan))
        name = config.get("variant", "?")
        if result.error is None and result.path and math.isfinite(value) and value < best.get(name, (math.inf,))[0]:
            best[name] = (value, folder / PurePosixPath(result.path).name, bool(config.get("generation_mode_eval")))
    lines = []
    for variant in (v.name for v in space.variants if v.name in best):
        _, trial_dir, generation_mode = best[variant]
        checkpoint = best_checkpoint(trial_dir)
        if checkpoint is None:
            continue
        scored = evaluate_checkpoint(checkpoint, split="test", generation_mode=generation_mode,
                                     max_utterances=utterances)
        shown = ", ".join(f"{METRIC_LABELS[m]} {s['mean']:.2f}" for m, s in scored["metrics"].items()
                          if m in ("si_sdr", "pesq", "estoi", "mpjpe") and s["mean"] is not None)
        units = "utterances" if scored["settings"]["kind"] == "speech" else "windows"
        lines.append(f"{variant} (trial {trial_dir.name}) on test, {scored['n']} {units}"
                     f"{' in generation mode' if generation_mode else ''}: {shown}")
    return "best trial of each model, quick test:\n" + "\n".join(f"  {line}" for line in lines)


def _settings(values: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())


def _wrap(label: str, text: str) -> str:
    return textwrap.fill(text, width=110, initial_indent=f"{label:<12}", subsequent_indent=" " * 12,
                         break_on_hyphens=False)


def _check_writable(folder: Path) -> None:
    """The folder, or its nearest existing parent, must be a writable directory."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--storage {folder} is not writable"
                         + (f" ({existing} is not a writable folder)" if existing != folder else ""))


def _local_gpus() -> int:
    import torch
    return torch.cuda.device_count()


def _dashboard_installed() -> bool:
    """The dashboard needs ray[default] (this project's `dashboard` extra)."""
    try:
        import ray.dashboard.optional_deps  # noqa: F401
        return True
    except ImportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
