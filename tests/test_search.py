"""The search: the Optuna space function, resources and the resume bookkeeping (fast), then
real smoke searches through tune_runner.py in a subprocess (slow): on a private Ray
instance, joined to a cluster started with `ray start --head`, and killed with SIGKILL
then resumed with --resume."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pyarrow.fs
import pytest
import torch

from dvae.search import (OptunaSpace, Resources, build_tuner, distributions, recover_lost_checkpoints,
                         requeue_orphans, study_storage, summary, variant_queue)
from dvae.experiment import best_checkpoint
from dvae.spaces import load_space

ROOT = Path(__file__).resolve().parent.parent
RUNNER = [sys.executable, str(ROOT / "tune_runner.py")]
SPACE = """
description: a test space
models: [vrnn, srnn, dkf]
fixed: {epochs: 4}
search:
  prior: {choice: [gaussian, student_t]}
  student_df: {loguniform: [2, 50], when: {prior: student_t}}
  lr: {loguniform: [1.0e-4, 1.0e-2]}
seeds: [3, 4, 5]
num_samples: 6
budgets: {smoke: {}, small: {}, full: {}}
"""

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def space(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    return load_space(str(path))


def test_conditional_parameter_exists_only_with_its_condition(space):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    propose = OptunaSpace(space)
    priors = set()
    for _ in range(20):
        trial = study.ask()
        constants = propose(trial)
        priors.add(trial.params["prior"])
        assert ("student_df" in trial.params) == (trial.params["prior"] == "student_t")
        assert constants["name"] == trial.params["variant"] and constants["optuna_trial"] == trial.number
        study.tell(trial, 1.0)
    assert priors == {"gaussian", "student_t"}
    assert list(distributions(space)) == ["variant", "prior", "student_df", "lr"]


def test_models_take_turns_and_each_configuration_runs_once_per_seed(space):
    study = optuna.create_study()
    for point in variant_queue(space):
        study.enqueue_trial(point)
    propose = OptunaSpace(space)
    runs = []
    for _ in range(space.trials):
        trial = study.ask()
        constants = propose(trial)
        runs.append((trial.params["variant"], constants["seed"], trial.params["lr"]))
        study.tell(trial, 1.0)
    assert len(runs) == 18 and study.ask() is not None  # nothing left planned: a fresh proposal
    assert [variant for variant, _, _ in runs[:6]] == ["vrnn", "srnn", "dkf"] * 2
    by_config = {}
    for variant, seed, lr in runs:
        by_config.setdefault((variant, lr), []).append(seed)
    assert len(by_config) == 6 and all(sorted(seeds) == [3, 4, 5] for seeds in by_config.values())


def test_orphaned_study_trials_are_closed_and_queued_again(tmp_path):
    experiment = tmp_path / "exp"
    experiment.mkdir()
    study = optuna.create_study(study_name="exp", storage=study_storage(experiment))
    known, orphan = study.ask(), study.ask()
    for trial in (known, orphan):
        trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    orphan.set_user_attr("seed", 4)
    assert requeue_orphans(experiment, {known.number}) == [orphan.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states[known.number] == optuna.trial.TrialState.RUNNING
    assert states[orphan.number] == optuna.trial.TrialState.FAIL
    again = study.ask()  # the queued run: suggesting gives back the orphan's values
    assert again.suggest_float("lr", 1e-4, 1e-2, log=True) == orphan.params["lr"]
    assert again.user_attrs["seed"] == 4


def test_a_search_begun_again_keeps_its_study_queue_and_requeues_what_never_ran(tmp_path):
    experiment = tmp_path / "exp"
    experiment.mkdir()
    space = load_space("mel_study", "smoke")
    study = optuna.create_study(study_name="exp", storage=study_storage(experiment))
    for point in variant_queue(space):  # what the first start queued
        study.enqueue_trial(point)
    proposed = study.ask()  # and proposed, before it was stopped
    proposed.suggest_categorical("variant", ["vrnn", "srnn"])
    build_tuner(space, experiment, Resources.fit(2, 0, 1, 0))
    states = [t.state for t in study.get_trials()]
    assert states[proposed.number] == optuna.trial.TrialState.FAIL
    assert states.count(optuna.trial.TrialState.WAITING) == space.num_samples  # not queued twice
    assert optuna.trial.TrialState.RUNNING not in states


def test_a_checkpoint_deleted_after_the_last_snapshot_is_replaced_by_the_newest(tmp_path):
    def trial(name, status, checkpoint, folders):
        folder = tmp_path / name
        for index, epoch in folders.items():
            (folder / f"checkpoint_{index:06d}").mkdir(parents=True)
            (folder / f"checkpoint_{index:06d}" / "last.pt").write_text(str(epoch))
        path = None if checkpoint is None else folder / f"checkpoint_{checkpoint:06d}"
        return SimpleNamespace(status=status, checkpoint=path and SimpleNamespace(
            path=str(path), filesystem=pyarrow.fs.LocalFileSystem()))

    # the snapshot names checkpoint 2; Tune has since written 3 and 4 and deleted 2 and 3,
    # but the runner died before deleting 3
    lost = trial("lost", "RUNNING", 2, {3: 4, 4: 5})
    intact = trial("intact", "PAUSED", 1, {1: 2, 2: 3})  # names one that exists: left alone
    finished = trial("finished", "TERMINATED", 0, {1: 2})  # not resumed: left alone
    unstarted = trial("unstarted", "PENDING", None, {})
    assert recover_lost_checkpoints([lost, intact, finished, unstarted]) == [tmp_path / "lost" / "checkpoint_000002"]
    assert sorted(p.name for p in (tmp_path / "lost").iterdir()) == ["checkpoint_000002"]
    assert (tmp_path / "lost" / "checkpoint_000002" / "last.pt").read_text() == "5"  # the newest state
    assert sorted(p.name for p in (tmp_path / "intact").iterdir()) == ["checkpoint_000001", "checkpoint_000002"]
    assert sorted(p.name for p in (tmp_path / "finished").iterdir()) == ["checkpoint_000001"]


def test_the_study_is_told_each_trials_outcome_and_every_epoch(space):
    from dvae.search import StudySearch
    searcher = StudySearch(OptunaSpace(space), metric="val_loss", mode="min", max_t=4,
                           sampler=optuna.samplers.RandomSampler(seed=0))
    outcomes = {  # the last result of each trial, as Tune hands it to on_trial_complete
        "stopped at a rung": {"epoch": 2, "val_loss": 3.0, "best_val_loss": 3.0, "stop_reason": None},
        "stopped at max_t": {"epoch": 4, "val_loss": 2.5, "best_val_loss": 2.0, "stop_reason": None},
        "completed": {"epoch": 4, "val_loss": 2.2, "best_val_loss": 1.5, "stop_reason": "completed"},
        "diverged": {"epoch": 2, "val_loss": float("nan"), "best_val_loss": 9.0, "stop_reason": "diverged at epoch 2"},
    }
    for trial_id, last in outcomes.items():
        searcher.suggest(trial_id)
        searcher.on_trial_result(trial_id, {"epoch": 1, "val_loss": 9.0})
        searcher.on_trial_result(trial_id, {"epoch": 1, "val_loss": 9.5})  # a resumed trial repeats an epoch
        searcher.on_trial_complete(trial_id, last)
    State = optuna.trial.TrialState
    trials = searcher._ot_study.get_trials(states=(State.PRUNED, State.COMPLETE, State.FAIL))  # not the seeds queued
    # a pruned trial keeps its last intermediate value, which TPE ranks it by
    assert [(t.state, t.value) for t in trials] == [(State.PRUNED, 3.0), (State.COMPLETE, 2.0),
                                                    (State.COMPLETE, 1.5), (State.FAIL, None)]
    assert [t.intermediate_values for t in trials] == [{1: 9.0, 2: 3.0}, {1: 9.0, 4: 2.5}, {1: 9.0, 4: 2.2}, {1: 9.0}]


def test_resources_fit_fractional_gpus():
    assert Resources.fit(16, 1, 1, 0.25).max_concurrent == 4
    assert Resources.fit(2, 1, 1, 0.25).max_concurrent == 2  # the CPUs run out first
    assert Resources.fit(16, 1, 1, 0.3).max_concurrent == 3
    assert Resources.fit(16, 0, 2, 0).max_concurrent == 8
    assert Resources.fit(16, 0, 1, 0, max_concurrent=3).max_concurrent == 3
    assert "4 trials per GPU" in Resources.fit(16, 1, 1, 0.25).describe()
    assert "exceeds the 0 GPUs available" in Resources.fit(2, 0, 1, 0.5).problem()
    assert "exceeds the 2 CPUs available" in Resources.fit(2, 0, 4, 0).problem()
    assert Resources.fit(2, 0, 1, 0).problem() is None


def test_summary_shows_the_best_trial_per_model(space):
    def result(variant, best, stop_reason, error=None, path="/exp/trial"):
        metrics = {"val_loss": best + 1, "best_val_loss": best, "best_epoch": 3, "stop_reason": stop_reason,
                   "diverged": False}
        config = {"variant": variant, "prior": "gaussian", "lr": 0.001234, "seed": 3}
        return SimpleNamespace(metrics=None if error else metrics, config=config, error=error, path=path)

    results = [result("vrnn", 5.0, "completed"), result("vrnn", 4.0, None),
               result("srnn", 7.0, "early_stopped"), result("srnn", 0.0, None, error=RuntimeError())]
    lines = summary(results, space).splitlines()
    assert lines[0].split() == ["model", "val_loss", "epoch", "trials", "prior", "student_df", "lr", "seed"]
    assert lines[1].split() == ["vrnn", "4", "3", "2", "gaussian", "-", "0.00123", "3"]
    assert lines[2].split()[:4] == ["srnn", "7", "3", "1"] and lines[3].split()[:2] == ["dkf", "-"]
    assert lines[-1] == "4 trials: 1 completed, 1 early stopped, 1 stopped by asha, 1 failed"

    # interrupted: a trial stopped mid-run is unfinished, not stopped by ASHA; one never started, not failed
    results = [result("vrnn", 4.0, None, path="/exp/vrnn_a"), result("dkf", 0.0, None, path="/exp/dkf_b"),
               result("srnn", 6.0, None, path="/exp/srnn_c")]
    results[1].metrics = None
    lines = summary(results, space, unfinished={"vrnn_a", "dkf_b"}).splitlines()
    assert lines[1].split()[:4] == ["vrnn", "4", "3", "1"] and lines[3].split()[:4] == ["dkf", "-", "-", "0"]
    assert lines[-1] == "3 trials: 1 stopped by asha, 2 unfinished"


# ---------------------------------------------------------------- real searches (slow)

@pytest.fixture(scope="module")
def corpus():
    """The built-in speech corpus (`python -m dvae.data.install asterisk`), prepared once."""
    from dvae.data import DataError, prepare_corpus
    cfg = load_space("vrnn_priors", "smoke").config(load_space("vrnn_priors", "smoke").variants[0])
    try:
        return prepare_corpus(cfg.data, progress=False)
    except DataError as e:
        pytest.skip(f"built-in corpus not available: {e}")


@pytest.fixture
def ray_env(tmp_path):
    """An environment whose Ray keeps its files under a short private folder (socket paths
    are limited to 107 characters), and a way to end every process started from it."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONUNBUFFERED": "1"}
    yield SimpleNamespace(env=env, storage=tmp_path / "experiments", ray_tmp=ray_tmp)
    end_processes_under(ray_tmp)
    shutil.rmtree(ray_tmp, ignore_errors=True)


def end_processes_under(ray_tmp: Path) -> None:
    """SIGKILLs the Ray processes of this test: those whose command line names its folder."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(ray_tmp) in cmdline:
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass


def run_runner(args: list[str], ray_env, timeout: int = 240) -> subprocess.CompletedProcess:
    run = subprocess.run([*RUNNER, *args, "--storage", str(ray_env.storage), "--no-dashboard"],
                         cwd=ROOT, env=ray_env.env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    return run


# a trial that ran: to its end (or its own early stop), or pruned by ASHA
CLOSED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def kill_runner_once(args: list[str], ray_env, tmp_path: Path, ready) -> None:
    """Starts the runner and SIGKILLs it with its Ray processes as soon as `ready()` holds."""
    log = tmp_path / "runner.log"
    with open(log, "w") as out:
        runner = subprocess.Popen([*RUNNER, *args, "--storage", str(ray_env.storage), "--no-dashboard"], cwd=ROOT,
                                  env=ray_env.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not ready():
            assert runner.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
    finally:
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
    end_processes_under(ray_env.ray_tmp)


def study_trials(experiment: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=experiment.name, storage=study_storage(experiment)).get_trials()


def tune_trials(experiment: Path) -> list[dict]:
    """Each trial's status and folder, as Tune's experiment state records them."""
    from ray.tune import ExperimentAnalysis
    return [{"status": t.status, "dir": Path(t.path)} for t in ExperimentAnalysis(str(experiment)).trials]


def worker_pids(trial_dir: Path) -> set[int]:
    """The worker processes that reported the trial's results."""
    lines = (trial_dir / "result.json").read_text().splitlines() if (trial_dir / "result.json").exists() else []
    return {json.loads(line)["pid"] for line in lines}


def epochs_reported(trial_dir: Path) -> int:
    lines = (trial_dir / "result.json").read_text().splitlines() if (trial_dir / "result.json").exists() else []
    return max((json.loads(line)["training_iteration"] for line in lines), default=0)


@pytest.mark.slow
def test_smoke_search_with_asha_and_optuna(corpus, ray_env):
    started = time.perf_counter()
    run = run_runner(["--space", "vrnn_priors", "--budget", "smoke", "--name", "smoke"], ray_env)
    print(f"smoke search: {time.perf_counter() - started:.0f} s")
    experiment = ray_env.storage / "smoke"
    assert (experiment / "optuna.db").is_file()
    trials = study_trials(experiment)
    assert len(trials) == 6 and {t.params["prior"] for t in trials} == {"gaussian", "student_t"}
    assert all(("student_df" in t.params) == (t.params["prior"] == "student_t") for t in trials)

    tune = tune_trials(experiment)
    assert len(tune) == 6 and all(t["status"] == "TERMINATED" for t in tune)
    epochs = [epochs_reported(t["dir"]) for t in tune]
    assert min(epochs) >= 1 and max(epochs) == 4 and min(epochs) < 4, epochs  # ASHA stopped some early
    # the study holds every epoch's val_loss; a trial ASHA stopped is PRUNED, one that ran on COMPLETE
    for t in tune:
        lines = [json.loads(line) for line in (t["dir"] / "result.json").read_text().splitlines()]
        study_trial = trials[json.loads((t["dir"] / "params.json").read_text())["optuna_trial"]]
        assert study_trial.intermediate_values == {line["epoch"]: line["val_loss"] for line in lines}
        ran_on = lines[-1]["stop_reason"] is not None
        assert study_trial.state == (optuna.trial.TrialState.COMPLETE if ran_on else optuna.trial.TrialState.PRUNED)
        assert not ran_on or study_trial.value == lines[-1]["best_val_loss"]
    # later trials take over the worker processes of ended ones instead of starting their own
    pids = [worker_pids(t["dir"]) for t in tune]
    assert all(len(p) == 1 for p in pids) and len(set.union(*pids)) < len(tune), pids
    for t in tune:  # TensorBoard events and the checkpoint of every trial in the experiment folder
        assert list((t["dir"] / "tb").glob("events.out.tfevents.*")), t["dir"]
        assert best_checkpoint(t["dir"]) is not None, t["dir"]

    out = run.stdout
    assert f"tensorboard --logdir {experiment}" in out and f"optuna-dashboard sqlite:///{experiment}/optuna.db" in out
    assert "model  val_loss" in out and "6 trials:" in out and "stopped by asha" in out
    assert f"python -m analysis.report {experiment}" in out
    # each model's best trial scored on the test split: printed, and left beside its checkpoint
    quick = out.split("best trial of each model, quick test:\n")[1].splitlines()[0]
    assert quick.startswith("  vrnn (trial vrnn_") and " on test, " in quick and "SI-SDR (dB) " in quick, quick
    scored = json.loads(next(experiment.glob("vrnn_*/checkpoint_*/eval_test.json")).read_text())
    assert scored["settings"]["max_utterances"] == 50 and f"{scored['n']} utterances" in quick


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_search_on_a_gpu_replays_every_trials_step_as_a_cuda_graph(corpus, ray_env):
    run = run_runner(["--space", "vrnn_priors", "--budget", "smoke", "--name", "graphed", "--num-samples", "2",
                      "--gpus-per-trial", "1", "--cuda-graph"], ray_env)
    output = run.stdout + run.stderr
    # train() refuses cuda_graph off a CUDA device, and a graph that cannot be recorded warns
    assert "CUDA graph failed" not in output, output[-3000:]
    tune = tune_trials(ray_env.storage / "graphed")
    assert [t["status"] for t in tune] == ["TERMINATED"] * 2
    for t in tune:
        assert json.loads((t["dir"] / "params.json").read_text())["cuda_graph"] is True
        assert epochs_reported(t["dir"]) >= 1


@pytest.mark.slow
def test_search_joins_a_running_cluster(corpus, ray_env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    head = subprocess.Popen(["ray", "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
                             "--num-cpus", "2", "--include-dashboard", "false", "--block"],
                            cwd=ROOT, env={**ray_env.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        for line in head.stdout:  # `ray start --block` says so once the head node is up
            if "Ray runtime started" in line:
                break
        else:
            pytest.fail("ray start --head did not start")
        run = run_runner(["--space", "vrnn_priors", "--budget", "smoke", "--name", "joined", "--num-samples", "3",
                          "--address", f"127.0.0.1:{port}"], ray_env)
    finally:
        # `ray stop` would end every Ray instance of this user, other tests' too: end ours only
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
    assert f"joined the Ray cluster at 127.0.0.1:{port}" in run.stdout
    experiment = ray_env.storage / "joined"
    assert len(study_trials(experiment)) == 3
    assert [t["status"] for t in tune_trials(experiment)] == ["TERMINATED"] * 3


@pytest.mark.slow
def test_a_search_stopped_before_its_first_trial_is_begun_again_by_resume(corpus, ray_env):
    # what a runner killed between writing its settings and Tune's first snapshot leaves
    experiment = ray_env.storage / "early"
    experiment.mkdir(parents=True)
    (experiment / "search.json").write_text(json.dumps(
        {"space": "vrnn_priors", "budget": "smoke", "num_samples": 3, "cuda_graph": None, "settings": None}))
    shutil.copyfile(ROOT / "search_spaces" / "vrnn_priors.yaml", experiment / "vrnn_priors.yaml")
    (experiment / "tuner.pkl").write_bytes(b"")  # Tune writes its tuner before any snapshot

    run = run_runner(["--name", "early", "--resume"], ray_env)
    assert "(starting again: it stopped before its first trial)" in run.stdout
    assert [t["status"] for t in tune_trials(experiment)] == ["TERMINATED"] * 3
    assert all(t.state in CLOSED for t in study_trials(experiment)) and len(study_trials(experiment)) == 3


INTERRUPTIBLE = """
description: trials long enough to be interrupted mid-run, with ASHA and a conditional parameter
models: [vrnn]
fixed: {epochs: 30, h_dim: 16, dense_dim: 16, z_dim: 4, max_utterances: 24, seq_len: 20, media_every: 0, patience: 0}
search:
  prior: {choice: [gaussian, student_t]}
  student_df: {loguniform: [2.0, 50.0], when: {prior: student_t}}
  lr: {loguniform: [1.0e-3, 3.0e-3]}
asha: {max_t: 30, grace_period: 5, reduction_factor: 3}
num_samples: 6
budgets: {smoke: {}, small: {}, full: {}}
"""


@pytest.mark.slow
def test_ctrl_c_saves_the_search_says_how_to_go_on_and_resume_finishes_it(corpus, ray_env, tmp_path):
    space = tmp_path / "interruptible.yaml"
    space.write_text(INTERRUPTIBLE)
    ray_env.storage.mkdir()
    runner = subprocess.Popen([*RUNNER, "--space", str(space), "--budget", "smoke", "--name", "ctrl-c",
                               "--num-samples", "2", "--storage", str(ray_env.storage), "--no-dashboard"],
                              cwd=ROOT, env=ray_env.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    experiment = ray_env.storage / "ctrl-c"
    deadline = time.monotonic() + 180
    while not list(experiment.glob("vrnn_*/checkpoint_0*")):
        assert runner.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    runner.send_signal(signal.SIGINT)
    out, _ = runner.communicate(timeout=120)
    assert runner.returncode == 130, out[-3000:]
    assert "unfinished" in out and "stopped by asha" not in out.split("model  val_loss")[-1]
    assert f"go on with: python tune_runner.py --resume --name ctrl-c --storage {ray_env.storage}" in out

    run_runner(["--name", "ctrl-c", "--resume"], ray_env)
    assert [t["status"] for t in tune_trials(experiment)] == ["TERMINATED"] * 2
    assert all(t.state in CLOSED for t in study_trials(experiment)) and len(study_trials(experiment)) == 2


def snapshot_checkpoints(experiment: Path) -> dict[str, tuple[str, int]]:
    """Unfinished trials whose checkpoint Tune's saved snapshot names: trial folder -> (checkpoint
    folder, its epoch). The snapshot is what a resumed search starts from."""
    found = {}
    for path in experiment.glob("experiment_state-*.json"):
        try:
            trial_data = json.loads(path.read_text())["trial_data"]
        except (OSError, ValueError):  # being replaced
            continue
        for state, metadata in trial_data:
            state, result = json.loads(state), json.loads(metadata)["last_result"]
            if state["status"] != "TERMINATED" and "checkpoint_dir_name" in result:
                found[state["relative_logdir"]] = (result["checkpoint_dir_name"], result["epoch"])
    return found


def delete_as_tune_does(checkpoint: Path) -> None:
    """What Tune leaves when a runner dies after recording a trial's next checkpoint (and deleting
    this one) but before saving its snapshot: the snapshot names a checkpoint that is gone."""
    index = int(checkpoint.name.removeprefix("checkpoint_"))
    following = checkpoint.with_name(f"checkpoint_{index + 1:06d}")
    if following.exists():
        shutil.rmtree(checkpoint)
    else:
        checkpoint.rename(following)


@pytest.mark.slow
def test_interrupted_search_resumes_with_every_trial_accounted_for(corpus, ray_env, tmp_path):
    space = tmp_path / "interruptible.yaml"
    space.write_text(INTERRUPTIBLE)
    ray_env.storage.mkdir()
    experiment = ray_env.storage / "resumed"
    # killed while Tune's snapshot names the checkpoint of a trial far from its end
    kill_runner_once(["--space", str(space), "--budget", "smoke", "--name", "resumed"], ray_env, tmp_path,
                     lambda: any(epoch <= 10 for _, epoch in snapshot_checkpoints(experiment).values()))
    before = study_trials(experiment)
    assert 0 < len(before) < 6 or any(t.state == optuna.trial.TrialState.RUNNING for t in before)
    interrupted = snapshot_checkpoints(experiment)
    pids_before = {name: worker_pids(experiment / name) for name in interrupted}
    for name, (checkpoint, _) in interrupted.items():
        if (experiment / name / checkpoint).exists():
            delete_as_tune_does(experiment / name / checkpoint)

    run = run_runner(["--name", "resumed", "--resume"], ray_env)
    assert "(resuming)" in run.stdout and f"({experiment / 'interruptible.yaml'})" in run.stdout
    tune = tune_trials(experiment)
    assert len(tune) == 6 and all(t["status"] == "TERMINATED" for t in tune), tune
    trials = study_trials(experiment)
    states = [t.state for t in trials]
    assert optuna.trial.TrialState.RUNNING not in states and optuna.trial.TrialState.WAITING not in states
    assert sum(state in CLOSED for state in states) == 6  # orphans of the kill, if any, are FAIL
    assert all(epochs_reported(t["dir"]) >= 1 for t in tune)
    # each interrupted trial went on from a checkpoint at or past the one its snapshot named
    continued = {}
    for name, (_, epoch) in interrupted.items():
        lines = [json.loads(line) for line in (experiment / name / "result.json").read_text().splitlines()]
        after = [line["epoch"] for line in lines if line["pid"] not in pids_before[name]]
        continued[name] = (epoch, after[:1])
    assert all(first > epoch for epoch, first in continued.values() for first in first), continued
    assert any(after for _, after in continued.values()), continued


# ---------------------------------------------------------------- replayed searches

REPLAYED = """
description: replayed curves, one per seed, under ASHA
models: [vrnn]
fixed: {epochs: 9, patience: 0}
seeds: [0, 1, 2, 3, 4, 5, 6, 7]
asha: {max_t: 9, grace_period: 1, reduction_factor: 3}
budgets: {smoke: {}, small: {}, full: {}}
"""
# seed s's val_loss at epoch e: each seed a level and a slope, so that the rungs at epochs
# 1, 3 and 9 order the seeds differently and which trials ASHA stops depends on history
LEVEL = [49, 54, 30, 58, 31, 45, 40, 39]
SLOPE = [3.4, 0.2, 3.3, 3.9, 1.7, 2.2, 3.9, 3.9]


def replayed_table(path: Path) -> Path:
    from dvae.curves import CurveTable, Curve
    curves = [Curve(seed, {"variant": "vrnn", "seed": seed}, tuple(LEVEL[seed] - SLOPE[seed] * e for e in range(1, 10)),
                    (1.0,) * 9) for seed in range(8)]
    CurveTable.write(path, curves, ["seed"])
    return path


def final_epochs(experiment: Path) -> dict[int, int]:
    """Each seed's last epoch: where ASHA stopped it, or 9 (trials that reported any)."""
    reached = {}
    for folder in experiment.glob("vrnn_*"):
        lines = (folder / "result.json").read_text().splitlines() if (folder / "result.json").is_file() else []
        if lines:
            reached[json.loads((folder / "params.json").read_text())["seed"]] = max(
                json.loads(line)["epoch"] for line in lines)
    return reached


def test_the_nearest_recorded_configuration_and_its_replayed_epochs(tmp_path):
    from dvae.curves import Curve, CurveTable, replayed_epochs
    from dvae.spaces import Param
    params = (Param("prior", "choice", ("gaussian", "student_t")), Param("lr", "loguniform", low=1e-4, high=1e-2),
              Param("student_df", "loguniform", low=2.0, high=50.0, when=("prior", ("student_t",))))
    curves = [Curve(0, {"variant": "vrnn", "prior": "gaussian", "lr": 1e-3}, (5.0, 4.0, 4.5, 4.6), (1.0,) * 4),
              Curve(1, {"variant": "vrnn", "prior": "student_t", "lr": 1e-3, "student_df": 5.0},
                    (6.0, float("nan"), 1.0, 1.0), (2.0,) * 4),
              Curve(2, {"variant": "vrnn", "prior": "gaussian", "lr": 8e-3}, (3.0, 2.0, 1.0, 0.5), (1.0,) * 4)]
    CurveTable.write(tmp_path / "t.csv", curves, ["prior", "lr", "student_df"])
    table = CurveTable.read(tmp_path / "t.csv")
    assert [c.params for c in table.curves] == [c.params for c in curves] and table.best == 0.5
    assert table.nearest({"variant": "vrnn", "prior": "gaussian", "lr": 2e-3}, params).config_id == 0
    assert table.nearest({"variant": "vrnn", "prior": "gaussian", "lr": 5e-3}, params).config_id == 2  # log scale
    assert table.nearest({"variant": "vrnn", "prior": "student_t", "lr": 8e-3, "student_df": 40.0},
                         params).config_id == 1

    epochs = replayed_epochs(table.curves[0], epochs=4, patience=2)
    assert [(r["epoch"], r["best_val_loss"], r["stop_reason"]) for r in epochs] == [
        (1, 5.0, None), (2, 4.0, None), (3, 4.0, None), (4, 4.0, "early_stopped")]
    assert [r["stop_reason"] for r in replayed_epochs(table.curves[1], 4, 0)] == [None, "diverged at epoch 2"]
    resumed = replayed_epochs(table.curves[2], epochs=3, patience=0, start=1)
    assert [(r["epoch"], r["best_val_loss"], r["stop_reason"]) for r in resumed] == [(2, 2.0, None), (3, 1.0, "completed")]
    with pytest.raises(FileNotFoundError, match="no table of learning curves"):
        CurveTable.read(tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_text("config_id,epoch\n0,1\n")
    with pytest.raises(ValueError, match="no column variant, val_loss, epoch_time_s"):
        CurveTable.read(tmp_path / "bad.csv")


def test_replay_options_are_checked_before_ray_starts(tmp_path, capsys):
    from dvae import runner
    assert runner.main(["--space", "vrnn_priors", "--replay", str(tmp_path / "none.csv"), "--dry-run",
                        "--storage", str(tmp_path)]) == 2
    assert "--replay: no table of learning curves at" in capsys.readouterr().err
    assert runner.main(["--space", "vrnn_priors", "--replay-epoch-s", "1", "--dry-run", "--storage", str(tmp_path)]) == 2
    assert "--replay-epoch-s needs --replay" in capsys.readouterr().err


@pytest.mark.slow
def test_a_replayed_search_killed_mid_rung_resumes_with_the_same_asha_decisions(ray_env, tmp_path):
    space = tmp_path / "replayed.yaml"
    space.write_text(REPLAYED)
    table = replayed_table(tmp_path / "curves.csv")
    common = ["--space", str(space), "--budget", "smoke", "--replay", str(table), "--max-concurrent", "1"]
    run_runner([*common, "--name", "whole"], ray_env)
    whole = ray_env.storage / "whole"
    expected = final_epochs(whole)
    assert len(expected) == 8 and 9 in expected.values() and min(expected.values()) < 3, expected
    # the study was told the truth: every epoch as an intermediate value, ASHA's stops as PRUNED
    for trial in study_trials(whole):
        seed, epochs = trial.user_attrs.get("seed", 0), max(trial.intermediate_values)
        assert trial.intermediate_values == {e: LEVEL[seed] - SLOPE[seed] * e for e in range(1, epochs + 1)}
        assert trial.state == (optuna.trial.TrialState.COMPLETE if epochs == 9 else optuna.trial.TrialState.PRUNED)
        if epochs == 9:
            assert trial.value == LEVEL[seed] - SLOPE[seed] * 9

    experiment = ray_env.storage / "killed"

    def five_trials_past_the_first_rung() -> bool:  # the fifth still running
        records = experiment / "asha.json"
        return records.is_file() and len(json.loads(records.read_text())["brackets"][0][-1][1]) >= 5
    kill_runner_once([*common, "--replay-epoch-s", "0.4", "--name", "killed"], ray_env, tmp_path,
                     five_trials_past_the_first_rung)
    assert len(final_epochs(experiment)) < 8 or min(final_epochs(experiment).values()) < 9
    run_runner(["--name", "killed", "--resume"], ray_env)
    assert final_epochs(experiment) == expected


@pytest.mark.slow
def test_a_variant_of_the_default_search_replays_with_its_own_asha_rungs(ray_env, tmp_path):
    from dvae.curves import Curve, CurveTable
    space = tmp_path / "space.yaml"
    space.write_text("description: x\nmodels: [vrnn]\nfixed: {epochs: 4}\nsearch:\n  lr: {loguniform: [1.0e-3, 1.0e-2]}\n"
                     "asha: {max_t: 4, grace_period: 1, reduction_factor: 2}\nnum_samples: 4\n"
                     "budgets: {smoke: {}, small: {}, full: {}}\n")
    table = tmp_path / "table.csv"
    # 12 curves, the lower the learning rate the better, none equal to another at any epoch
    CurveTable.write(table, [Curve(i, {"variant": "vrnn", "lr": lr}, tuple(10.0 * (i + 1) - e for e in range(4)),
                                   (1.0,) * 4) for i, lr in enumerate(np.geomspace(1e-3, 1e-2, 12).tolist())], ["lr"])
    out = tmp_path / "eff"
    run = subprocess.run([sys.executable, "-m", "benchmarks.search_efficiency", "--space", str(space), "--budget",
                          "smoke", "--table", str(table), "--methods", "asha_tpe", "--variant", "grace_period=4",
                          "--repetitions", "1", "--epochs", "24", "--concurrent", "1", "--out", str(out)],
                         cwd=ROOT, env=ray_env.env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    runs = {r["method"]: r for r in map(json.loads, (out / "search_efficiency_runs.jsonl").read_text().splitlines())}
    # one trial at a time, 24 epochs of trials of 4: with no rung before the full budget, 6 trials
    assert runs["asha_tpe[grace_period=4]"]["trials"] == 6
    # the space's own rungs (epochs 1 and 2) stop some of them, so more start
    assert runs["asha_tpe"]["trials"] > 6
    summary = json.loads((out / "search_efficiency.json").read_text())
    assert set(summary["methods"]) == {"asha_tpe", "asha_tpe[grace_period=4]"}


# ---------------------------------------------------------------- a cluster sharing no folder (slow)

def start_two_node_cluster(ray_env) -> str:
    """A head and a second node on this machine, one CPU each, each with its own temp folder
    (where its trials' working folders are); returns the head's address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray = [str(Path(sys.executable).with_name("ray")), "start", "--disable-usage-stats", "--num-cpus", "1"]
    for extra in (["--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", str(ray_env.ray_tmp / "head")],
                  ["--address", f"127.0.0.1:{port}", "--temp-dir", str(ray_env.ray_tmp / "node")]):
        started = subprocess.run([*ray, *extra], env=ray_env.env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
    return f"127.0.0.1:{port}"


@pytest.mark.slow
def test_a_search_on_two_nodes_sharing_no_folder_keeps_every_trial_in_its_storage(corpus, ray_env, tmp_path):
    import pandas as pd
    from ray.tune import ExperimentAnalysis

    address = start_two_node_cluster(ray_env)
    # the storage is a URI: no trial can write into it as a folder, only through Tune
    bucket = tmp_path / "bucket"
    storage = f"file://{bucket}"
    env = {**ray_env.env, "DVAE_MIRROR": str(tmp_path / "mirror")}
    cluster = SimpleNamespace(env=env, storage=storage, ray_tmp=ray_env.ray_tmp)
    args = ["--space", "vrnn_priors", "--budget", "smoke", "--name", "two", "--address", address, "--quick-test", "3"]
    with open(tmp_path / "runner.log", "w") as out:
        runner = subprocess.Popen([*RUNNER, *args, "--storage", storage, "--no-dashboard"], cwd=ROOT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:  # killed (not the cluster) once a first trial has stored a checkpoint
        deadline = time.monotonic() + 240
        while not list(bucket.glob("two/*/checkpoint_*/last.pt")):
            assert runner.poll() is None and time.monotonic() < deadline, (tmp_path / "runner.log").read_text()[-3000:]
            time.sleep(0.1)
    finally:
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
    run = run_runner(["--name", "two", "--resume", "--address", address], cluster, timeout=400)
    assert "6 trials:" in run.stdout and "quick test" in run.stdout

    experiment = bucket / "two"
    trials = ExperimentAnalysis(f"{storage}/two").trials
    assert len(trials) == 6 and all(t.status == "TERMINATED" for t in trials)
    for trial in trials:  # results, TensorBoard events and the best checkpoint of each, in storage
        folder = experiment / Path(trial.path).name
        assert (folder / "params.json").is_file() and (folder / "result.json").read_text().strip(), folder
        assert list((folder / "tb").glob("events.out.tfevents.*")) and best_checkpoint(folder) is not None, folder
    assert (experiment / "optuna.db").is_file() and (experiment / "asha.json").is_file()  # the runner's, uploaded
    # the trials ran on both nodes, each in its node's own folders
    for node in ("head", "node"):
        assert list((ray_env.ray_tmp / node).glob("session_*/artifacts/*/two/working_dirs/vrnn_*")), node
    assert not list(bucket.glob("two/*/checkpoint/")), "a checkpoint stored twice"

    # read back from storage by the analysis, from a folder outside the checkout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    read = subprocess.run([sys.executable, "-m", "analysis.results", f"{storage}/two", "--trials", "trials.csv"],
                          cwd=elsewhere, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=120)
    assert read.returncode == 0, read.stderr[-3000:]
    table = pd.read_csv(elsewhere / "trials.csv")
    assert len(table) == 6 and table["checkpoint"].notna().all() and table["test_si_sdr"].notna().sum() == 1
    board = subprocess.run([sys.executable, "-m", "analysis.leaderboard", f"{storage}/two", "--out", "board"],
                           cwd=elsewhere, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                           timeout=120)
    assert board.returncode == 0 and "VRNN" in board.stdout, board.stderr[-3000:]
