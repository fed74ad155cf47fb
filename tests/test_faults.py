"""Faults in a real search: a trial that diverges on purpose, and a trial process killed on its own."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import optuna
import pytest

from analysis.results import load_trials
from test_search import RUNNER, ROOT, corpus, ray_env, run_runner, study_trials, tune_trials  # noqa: F401 (fixtures)

# an absurd learning rate without clipping makes every trial's loss overflow in its first epoch
DIVERGING = """
description: trials that diverge on purpose
models: [vae]
fixed: {epochs: 3, grad_clip: 0.0, batch_size: 8, h_dim: 16, dense_dim: 16, z_dim: 4, max_utterances: 24, media_every: 0}
search:
  lr: {loguniform: [1.0e+3, 1.0e+4]}
num_samples: 2
budgets: {smoke: {}, small: {}, full: {}}
"""

SLOW_TRIALS = """
description: one trial long enough to be killed while it runs
models: [srnn]
fixed: {epochs: 40, h_dim: 16, dense_dim: 16, z_dim: 4, max_utterances: 24, seq_len: 20, media_every: 0}
search:
  lr: {loguniform: [1.0e-3, 2.0e-3]}
num_samples: 1
budgets: {smoke: {}, small: {}, full: {}}
"""


@pytest.mark.slow
def test_diverging_trials_fail_in_optuna_and_show_as_diverged(corpus, ray_env, tmp_path):
    space = tmp_path / "diverge.yaml"
    space.write_text(DIVERGING)
    run_runner(["--space", str(space), "--budget", "smoke", "--name", "diverge"], ray_env)
    experiment = ray_env.storage / "diverge"
    trials = study_trials(experiment)
    assert len(trials) == 2 and all(t.state == optuna.trial.TrialState.FAIL for t in trials)
    frame = load_trials(experiment)
    assert list(frame["status"]) == ["diverged", "diverged"]
    assert all(t["status"] == "TERMINATED" for t in tune_trials(experiment))  # stopped, not crashed


def trial_processes(ray_tmp) -> list[int]:
    """Ray worker processes of this test that are running a trial (Ray titles them after the
    function trainable's wrapper)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read().decode(errors="replace")
                with open(f"/proc/{entry}/environ", "rb") as f:
                    environ = f.read().decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith("ray::ImplicitFunc.train") and str(ray_tmp) in environ:
                found.append(int(entry))
    return found


@pytest.mark.slow
def test_a_killed_trial_process_is_retried_from_its_checkpoint(corpus, ray_env, tmp_path):
    space = tmp_path / "slow.yaml"
    space.write_text(SLOW_TRIALS)
    runner = subprocess.Popen([*RUNNER, "--space", str(space), "--budget", "smoke", "--name", "retry",
                               "--storage", str(ray_env.storage), "--no-dashboard"],
                              cwd=ROOT, env=ray_env.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    experiment = ray_env.storage / "retry"
    deadline = time.monotonic() + 180
    killed = False
    while time.monotonic() < deadline and not killed:
        # The trial writes checkpoint/last.pt before reporting it, and Tune copies each reported
        # checkpoint to checkpoint_00000N. A copy past the first is made only once the driver has
        # taken the first report, so by then Tune has recorded a checkpoint to restart from.
        if any(p.name != "checkpoint_000000" for p in experiment.glob("srnn_*/checkpoint_0*")):
            for pid in trial_processes(ray_env.ray_tmp):
                os.kill(pid, signal.SIGKILL)
                killed = True
        time.sleep(0.5)
    assert killed, "no trial process to kill"
    out, _ = runner.communicate(timeout=240)
    assert runner.returncode == 0, out[-4000:]
    trial_dir = next(experiment.glob("srnn_*"))
    log = out + "".join(p.read_text(errors="replace") for p in trial_dir.glob("*.txt"))
    frame = load_trials(experiment)
    assert list(frame["status"]) == ["completed"] and int(frame["epochs_run"].iloc[0]) == 40
    assert "resumed from" in log  # the retry continued from a checkpoint instead of starting over
