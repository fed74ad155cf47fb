"""Confirmation with seeds (dvae.confirmation, tune_runner.py --confirm) and the findings
drawn from it (analysis.findings)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import scipy.stats

from analysis import findings, leaderboard, results
from dvae.confirmation import level, pick, searched_trials
from dvae.experiment import SETTINGS_FILE
from dvae.spaces import load_space

ROOT = Path(__file__).resolve().parents[1]
SPACE = """
description: a study of two factors
models: [vrnn, srnn]
fixed: {epochs: 3}
search:
  prior: {choice: [gaussian, student_t]}
  student_df: {loguniform: [2, 50], when: {prior: student_t}}
  kl_warmup_epochs: {int: [0, 6]}
  lr_schedule: {choice: [constant, cosine]}
num_samples: 4
budgets: {smoke: {}, small: {}, full: {}}
"""


def write_experiment(folder: Path, trials: list[tuple[str, dict, int, list[float]]], confirm=None) -> Path:
    """An experiment folder: its settings, space copy, and one trial per (variant, params, seed, val_losses)."""
    folder.mkdir(parents=True)
    (folder / "study.yaml").write_text(SPACE)
    (folder / SETTINGS_FILE).write_text(json.dumps({"space": "study", "budget": "smoke", "confirm": confirm}))
    for i, (variant, params, seed, losses) in enumerate(trials):
        trial = folder / f"{variant}_{i:08x}"
        trial.mkdir()
        (trial / "params.json").write_text(json.dumps({"name": variant, "variant": variant, "seed": seed, **params}))
        best = [min(losses[:n + 1]) for n in range(len(losses))]
        (trial / "result.json").write_text("".join(json.dumps({
            "epoch": n + 1, "val_loss": v, "best_val_loss": best[n], "best_epoch": losses.index(best[n]) + 1,
            "stop_reason": "completed" if n == len(losses) - 1 else None, "done": n == len(losses) - 1,
            "trial_id": f"{i:08x}"}) + "\n" for n, v in enumerate(losses)))
    return folder


GAUSSIAN = {"prior": "gaussian", "kl_warmup_epochs": 1, "lr_schedule": "cosine"}
STUDENT = {"prior": "student_t", "student_df": 5.0, "kl_warmup_epochs": 1, "lr_schedule": "cosine"}


def test_the_confirmation_picks_each_models_best_and_the_best_at_every_level(tmp_path):
    (tmp_path / "study.yaml").write_text(SPACE)
    space = load_space(str(tmp_path / "study.yaml"), "smoke")
    searched = write_experiment(tmp_path / "search", [
        ("vrnn", GAUSSIAN, 0, [5.0, 3.0]),
        ("vrnn", {**GAUSSIAN, "lr_schedule": "constant"}, 0, [4.0]),
        ("vrnn", STUDENT, 0, [3.5]),
        ("vrnn", {**STUDENT, "kl_warmup_epochs": 6}, 0, [7.0, 4.5]),
        ("srnn", GAUSSIAN, 0, [9.0]),
        ("srnn", STUDENT, 0, [float("nan")]),  # diverged: never picked
    ])
    trials = searched_trials(searched, space)
    assert len(trials) == 5
    picked = pick(space, trials)
    # the model's best, then it moved along one factor at a time: to the search's best value in
    # each other bucket (the bucket's middle where no trial fell), the Student-t degrees of
    # freedom taken from the best trial that had them
    assert [p for p in picked if p["variant"] == "vrnn"] == [{"variant": "vrnn", **c} for c in (
        GAUSSIAN, {**GAUSSIAN, "prior": "student_t", "student_df": 5.0}, {**GAUSSIAN, "kl_warmup_epochs": 3},
        {**GAUSSIAN, "kl_warmup_epochs": 6}, {**GAUSSIAN, "lr_schedule": "constant"})]
    srnn = [p for p in picked if p["variant"] == "srnn"]  # its Student-t trial diverged: no donor
    assert srnn[1] == {"variant": "srnn", **GAUSSIAN, "prior": "student_t", "student_df": pytest.approx(10.0)}
    assert {"variant": "srnn", **GAUSSIAN, "kl_warmup_epochs": 5} in srnn and len(srnn) == 5
    warmup = next(p for p in space.params if p.name == "kl_warmup_epochs")
    assert [level(warmup, v) for v in (0, 1, 2, 4, 6)] == ["0-2", "0-2", "2-4", "4-6", "4-6"]


def confirmation(tmp_path) -> Path:
    seeds = {"gaussian": [10.0, 11.0, 12.0], "student_t": [13.0, 14.0, 15.0]}
    trials = [("vrnn", GAUSSIAN if prior == "gaussian" else STUDENT, seed, [9 + v, v])
              for prior, values in seeds.items() for seed, v in enumerate(values)]
    return write_experiment(tmp_path / "search-confirm", trials, confirm={"experiment": "search", "seeds": [0, 1, 2]})


def test_a_findings_interval_comes_from_the_seed_values(tmp_path):
    experiment = confirmation(tmp_path)
    found = findings.findings(results.load_trials(experiment), findings.space_params(experiment))
    (prior,) = [f for f in found if f["factor"] == "prior" and f["metric"] == "val_loss"]
    assert prior["levels"] == ["gaussian", "student_t"] and prior["seeds"] == [3, 3]
    # Welch: means 11 and 14, variances 1 and 1, three seeds each: df 4
    half = scipy.stats.t.ppf(0.975, 4) * math.sqrt(1 / 3 + 1 / 3)
    assert prior["difference"] == pytest.approx(3.0)
    assert prior["interval"] == pytest.approx([3.0 - half, 3.0 + half])
    assert prior["estimates"]["gaussian"]["mean"] == pytest.approx(11.0)
    assert prior["verdict"] == "student_t worse than gaussian"
    assert prior["isolated"]  # the two configurations differ in the prior alone
    assert "Δ val_loss +3.00 [+0.73, +5.27], 3/3 seeds: student_t worse than gaussian" in findings.sentence(prior)
    # one level of KL warm-up and of the schedule among the seeded configurations: no contrast drawn
    assert not [f for f in found if f["kind"] == "contrast" and f["factor"] != "prior"]

    # the leaderboard shows each configuration's mean with its interval across seeds
    table = leaderboard.configurations(results.load_trials(experiment))
    assert table["seeds"].tolist() == [3, 3]
    assert table["val_loss_ci95"].tolist() == pytest.approx([scipy.stats.t.ppf(0.975, 2) / math.sqrt(3)] * 2)


def test_levels_that_differ_in_more_than_the_factor_are_called_confounded(tmp_path):
    trials = [("vrnn", GAUSSIAN, seed, [10.0 + seed]) for seed in range(3)]
    trials += [("vrnn", {**STUDENT, "lr_schedule": "constant"}, seed, [12.0 + seed]) for seed in range(3)]
    experiment = write_experiment(tmp_path / "seeded", trials)
    found = findings.findings(results.load_trials(experiment), findings.space_params(experiment), ["prior"])
    (prior,) = [f for f in found if f["metric"] == "val_loss"]
    assert not prior["isolated"] and "(confounded: " in findings.sentence(prior)


def test_a_factor_with_one_level_is_refused_when_asked_for(tmp_path, capsys):
    experiment = confirmation(tmp_path)
    assert findings.main([str(experiment), "--factors", "lr_schedule"]) == 2
    assert ("lr_schedule, VRNN: the seeded configurations have one level (cosine); nothing to compare"
            in capsys.readouterr().err)
    assert findings.main([str(experiment), "--factors", "depth"]) == 2
    assert "--factors: depth not studied" in capsys.readouterr().err
    assert findings.main([str(experiment)]) == 0
    written = json.loads((experiment / "findings.json").read_text())
    assert {f["factor"] for f in written["findings"] if f["kind"] == "contrast"} == {"prior"}


def test_confirm_options_are_checked_before_ray_starts(tmp_path, capsys):
    from dvae import runner
    searched = write_experiment(tmp_path / "search", [("vrnn", GAUSSIAN, 0, [3.0]), ("vrnn", STUDENT, 0, [4.0])])
    assert runner.main(["--confirm", str(searched), "--space", "mel_study", "--dry-run"]) == 2
    assert "--confirm runs the search's own space and settings; leave out --space" in capsys.readouterr().err
    assert runner.main(["--confirm", str(tmp_path / "none"), "--dry-run"]) == 2
    assert f"--confirm {tmp_path / 'none'}: no experiment to resume at" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        runner.parse_args(["--confirm", str(searched), "--seeds", "1"])
    assert "two or more different seeds" in capsys.readouterr().err
    assert runner.main(["--confirm", str(searched), "--seeds", "0,1", "--storage", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "5 configurations x 2 seed(s) = 10 trials" in out and "FIFO" in out and "search-confirm" in out


@pytest.mark.slow
def test_a_smoke_search_confirmed_with_seeds_gives_findings(tmp_path_factory, tmp_path):
    from test_analysis import SMOKE_ENV, shared_experiment
    searched = shared_experiment(tmp_path_factory)
    env = {**os.environ, **SMOKE_ENV}
    run = subprocess.run([sys.executable, "tune_runner.py", "--confirm", str(searched), "--seeds", "0,1",
                          "--storage", str(tmp_path), "--no-dashboard", "--quick-test", "0"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    confirmed = tmp_path / f"{searched.name}-confirm"
    trials = results.load_trials(confirmed)
    settings = json.loads((confirmed / SETTINGS_FILE).read_text())
    picked = settings["confirm"]["configurations"]
    assert len(trials) == 2 * len(picked) and set(trials["status"]) <= {"completed", "early_stopped"}
    table = leaderboard.configurations(trials)
    assert len(table) == len(picked) and (table["seeds"] == 2).all()  # each picked configuration, both seeds
    assert findings.main([str(confirmed)]) == 0
    written = json.loads((confirmed / "findings.json").read_text())["findings"]
    assert any(f["kind"] == "contrast" and f["seeds"] == [2, 2] for f in written), written


def test_the_report_states_the_findings_and_the_generation_measures(tmp_path):
    from analysis import report
    experiment = confirmation(tmp_path)
    section = "\n".join(report.findings_section(results.load_trials(experiment), experiment))
    assert "<h2>Findings across seeds</h2>" in section and "student_t worse than gaussian" in section
    checkpoint = tmp_path / "checkpoint_000001" / "best.pt"
    checkpoint.parent.mkdir()
    assert report.generation_scores_section(checkpoint, "test") == []  # not measured yet
    (checkpoint.parent / "eval_test_generation.json").write_text(json.dumps({
        "utterances": 12, "split": "test", "prime_s": 1.0,
        "primed": {"model": {"lsd_0.25s": 9.5, "lsd_1s": 12.0}, "noise": {"lsd_0.25s": 19.0, "lsd_1s": 19.5}},
        "cold": {"model": {"frechet": 81.0}, "noise": {"frechet": 660.0}}}))
    shown = "\n".join(report.generation_scores_section(checkpoint, "test"))
    assert "12 test utterances" in shown and "LSD first 1s (dB)" in shown and "660" in shown
