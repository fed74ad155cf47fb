"""Analysis of searches: results, leaderboards, evaluation tables, plots.

Most tests read a hand-written experiment folder in Ray Tune's layout, which has a
trial for every way a trial can end. The tests marked slow share one real search
(`shared_experiment`, also used by tests/test_report.py): tune_runner.py's smoke budget
of the vrnn_priors space, plus a trial of the srnn_gm variant trained directly, so that
a generation-mode model is there too.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import evaluate, leaderboard, plots, report, results
from dvae import metrics
from dvae.checkpoint import CheckpointError

ROOT = Path(__file__).resolve().parents[1]


# --- a hand-written experiment ----------------------------------------------------------

def epoch(n: int, val: float, best: float, best_epoch: int, trial_id: str, stop=None, done=False) -> dict:
    """One line of result.json as the trainer and Ray write it."""
    return {"epoch": n, "val_loss": val, "val_recon": val - 1, "val_kl": 1.0, "train_loss": val + 5, "lr": 1e-3,
            "best_val_loss": best, "best_epoch": best_epoch, "diverged": (stop or "").startswith("diverged"),
            "stop_reason": stop, "epoch_time_s": 0.5, "training_iteration": n, "time_total_s": 2.0 * n,
            "done": done, "trial_id": trial_id, "config": {"ignored": True}, "pid": 1}


def write_trial(experiment: Path, name: str, params: dict, lines: list[dict] | None = None, error: str | None = None,
                checkpoint: str | None = "checkpoint", torn: bool = False) -> Path:
    folder = experiment / name
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps({"experiment_dir": str(experiment), **params}))
    if lines is not None:
        text = "".join(json.dumps(line) + "\n" for line in lines)
        (folder / "result.json").write_text(text + ('{"epoch": 9, "val_lo' if torn else ""))
    if error:
        (folder / "error.txt").write_text(f"Failure # 1 (occurred at 2025-01-01)\nTraceback ...\n{error}\n")
    if checkpoint:
        (folder / checkpoint).mkdir(parents=True)
        (folder / checkpoint / "best.pt").write_bytes(b"")
    return folder


def fake_experiment(root: Path, name: str = "fake") -> Path:
    """Trials that completed, were stopped by ASHA, stopped early, diverged, errored (before
    any epoch, and after a restart), are unfinished, and a configuration run with two seeds."""
    exp = root / name
    base = {"corpus": "asterisk", "epochs": 3, "z_dim": 16, "prior": "gaussian", "lr": 1e-3}
    write_trial(exp, "vrnn_aaaa0001", {**base, "name": "vrnn", "variant": "vrnn", "optuna_trial": 0, "z_dim": 8}, [
        epoch(1, 12.0, 12.0, 1, trial_id="aaaa0001"), epoch(2, 10.0, 10.0, 2, trial_id="aaaa0001"),
        epoch(3, 11.0, 10.0, 2, stop="completed", done=True, trial_id="aaaa0001")])
    write_trial(exp, "vrnn_aaaa0002", {**base, "name": "vrnn", "variant": "vrnn", "optuna_trial": 1, "z_dim": 32}, [
        epoch(1, 13.0, 13.0, 1, done=True, trial_id="aaaa0002")], checkpoint="checkpoint_000000")
    write_trial(exp, "vrnn_aaaa0003", {**base, "name": "vrnn", "variant": "vrnn", "optuna_trial": 2,
                                       "prior": "student_t", "student_df": 5.0}, [
        epoch(1, 11.5, 11.5, 1, trial_id="aaaa0003"),
        epoch(2, 11.7, 11.5, 1, stop="early_stopped", done=True, trial_id="aaaa0003")])
    write_trial(exp, "dkf_aaaa0004", {**base, "name": "dkf", "variant": "dkf", "optuna_trial": 3}, [
        epoch(1, 20.0, 20.0, 1, trial_id="aaaa0004"),
        epoch(2, math.nan, 20.0, 1, stop="diverged at epoch 2", done=True, trial_id="aaaa0004")])
    write_trial(exp, "storn_aaaa0005", {**base, "name": "storn", "variant": "storn", "optuna_trial": 4},
                error="RuntimeError: CUDA out of memory", checkpoint=None)
    write_trial(exp, "vae_aaaa0006", {**base, "name": "vae", "variant": "vae", "optuna_trial": 5, "z_dim": 4}, [
        epoch(1, 30.0, 30.0, 1, trial_id="aaaa0006")], error="ValueError: boom")
    # restarted after epoch 1: epoch 1 reported twice, and a line being written when read
    write_trial(exp, "vae_aaaa0007", {**base, "name": "vae", "variant": "vae", "optuna_trial": 6}, [
        epoch(1, 29.0, 29.0, 1, trial_id="aaaa0007"), epoch(1, 28.0, 28.0, 1, trial_id="aaaa0007")], torn=True)
    for seed, (trial, val) in enumerate((("aaaa0008", 15.0), ("aaaa0009", 17.0))):
        write_trial(exp, f"srnn_gm_{trial}", {**base, "name": "srnn", "variant": "srnn_gm", "ss_epochs": 2,
                                              "seed": seed, "optuna_trial": 7 + seed}, [
            epoch(1, val, val, 1, trial_id=trial), epoch(2, val + 1, val, 1, stop="completed", done=True,
                                                          trial_id=trial)])
    return exp


@pytest.fixture
def fake(tmp_path) -> Path:
    return fake_experiment(tmp_path)


def by_id(trials: pd.DataFrame) -> dict[str, pd.Series]:
    return {row["trial_id"]: row for _, row in trials.iterrows()}


def test_statuses_cover_every_way_a_trial_ends(fake):
    trials = by_id(results.load_trials(fake))
    assert {t: row["status"] for t, row in trials.items()} == {
        "aaaa0001": "completed", "aaaa0002": "stopped_by_asha", "aaaa0003": "early_stopped",
        "aaaa0004": "diverged", "aaaa0005": "errored", "aaaa0006": "errored", "aaaa0007": "unfinished",
        "aaaa0008": "completed", "aaaa0009": "completed"}
    assert trials["aaaa0005"]["error"] == "RuntimeError: CUDA out of memory"
    assert trials["aaaa0004"]["stop_reason"] == "diverged at epoch 2"


def test_figures_at_the_best_epoch_and_at_the_last(fake):
    trial = by_id(results.load_trials(fake))["aaaa0001"]
    assert (trial["val_loss"], trial["final_val_loss"], trial["val_recon"]) == (10.0, 11.0, 9.0)
    assert (trial["best_epoch"], trial["epochs_run"], trial["max_epochs"], trial["wall_time_s"]) == (2, 3, 3, 6.0)
    assert trial["model"] == "vrnn" and trial["experiment"] == "fake"
    assert trial["config/z_dim"] == 8 and "config/experiment_dir" not in trial
    diverged = by_id(results.load_trials(fake))["aaaa0004"]
    assert diverged["val_loss"] == 20.0 and math.isnan(diverged["final_val_loss"])


def test_errored_trial_has_no_figures_and_no_checkpoint(fake):
    trial = by_id(results.load_trials(fake))["aaaa0005"]
    assert trial["epochs_run"] == 0 and math.isnan(trial["val_loss"]) and pd.isna(trial["checkpoint"])
    assert trial["model"] == "storn"


def test_best_checkpoint_falls_back_to_rays_copy(fake):
    trials = by_id(results.load_trials(fake))
    assert trials["aaaa0001"]["checkpoint"].endswith("vrnn_aaaa0001/checkpoint/best.pt")
    assert trials["aaaa0002"]["checkpoint"].endswith("vrnn_aaaa0002/checkpoint_000000/best.pt")


def test_curves_keep_the_latest_report_of_an_epoch_and_skip_a_torn_line(fake):
    curves = results.load_curves(fake)
    restarted = curves[curves["trial_id"] == "aaaa0007"]
    assert restarted["epoch"].tolist() == [1] and restarted["val_loss"].tolist() == [28.0]
    assert len(curves) == 3 + 1 + 2 + 2 + 1 + 1 + 2 + 2
    assert {"pid", "config", "done", "training_iteration"}.isdisjoint(curves.columns)
    assert "time_total_s" in curves.columns


def test_several_experiments_and_the_review_order(fake, tmp_path):
    other = fake_experiment(tmp_path, "other")
    trials = results.load_trials(fake, other)
    assert len(trials) == 18 and set(trials["experiment"]) == {"fake", "other"}
    assert results.ordered_models(["srnn_gm", "zeta", "vrnn", "vae", "srnn_tf_gm"]) == [
        "vae", "vrnn", "srnn_tf_gm", "srnn_gm", "zeta"]


def test_latest_rows_take_each_model_from_the_last_experiment_that_holds_it(fake, tmp_path):
    rerun = tmp_path / "rerun"
    write_trial(rerun, "dkf_bbbb0001", {"corpus": "asterisk", "epochs": 3, "name": "dkf", "variant": "dkf"},
                [epoch(1, 9.0, 9.0, 1, stop="completed", done=True, trial_id="bbbb0001")])
    trials = results.load_trials(fake, rerun)
    latest = results.latest_rows(trials, [fake, rerun])
    assert set(latest.loc[latest["model"] == "dkf", "trial_id"]) == {"bbbb0001"}
    kept = trials[trials["model"] != "dkf"]
    assert set(latest.loc[latest["model"] != "dkf", "trial_id"]) == set(kept["trial_id"])
    assert set(results.latest_rows(trials, [rerun, fake])["trial_id"]) == set(trials.loc[
        trials["experiment"] == "fake", "trial_id"])  # the order given decides
    with pytest.raises(ValueError, match="folder names must differ"):
        results.latest_rows(trials, [fake, tmp_path / "x" / "fake"])


def test_not_an_experiment_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no experiment folder"):
        results.load_trials(tmp_path / "missing")
    fake_experiment(tmp_path / "storage", "run1")
    with pytest.raises(FileNotFoundError, match="it holds experiments: run1"):
        results.load_trials(tmp_path / "storage")


def test_searched_parameters_leave_out_bookkeeping(fake):
    trials = results.load_trials(fake)
    # student_df and ss_epochs have one value where they are set: not searched here
    assert results.searched_parameters(trials) == ["z_dim", "prior", "seed"]
    assert results.searched_parameters(trials[trials["model"] == "dkf"]) == []


def test_leaderboard_ranks_models_in_the_reviews_order(fake):
    best = leaderboard.best_per_model(results.load_trials(fake))
    # storn errored before its first epoch: nothing to rank
    assert best["model"].tolist() == ["vae", "dkf", "vrnn", "srnn_gm"]
    assert best.set_index("model")["trial_ids"].to_dict() == {
        "vae": "aaaa0007", "dkf": "aaaa0004", "vrnn": "aaaa0001", "srnn_gm": "aaaa0008, aaaa0009"}


def test_seeds_of_one_configuration_give_a_mean_and_spread(fake):
    best = leaderboard.best_per_model(results.load_trials(fake)).set_index("model")
    assert best.loc["srnn_gm", "val_loss"] == 16.0 and best.loc["srnn_gm", "seeds"] == 2
    assert best.loc["srnn_gm", "val_loss_sd"] == pytest.approx(math.sqrt(2))
    assert best.loc["vrnn", "seeds"] == 1 and math.isnan(best.loc["vrnn", "val_loss_sd"])


def test_top_k_and_sorting_by_another_figure(fake):
    trials = results.load_trials(fake)
    top = leaderboard.top_per_model(trials, k=2)
    vrnn = top[top["model"] == "vrnn"]
    assert vrnn["trial_id"].tolist() == ["aaaa0001", "aaaa0003"] and vrnn["rank"].tolist() == [1, 2]
    by_final = leaderboard.top_per_model(trials, k=3, sort="final_val_loss", ascending=False)
    assert by_final[by_final["model"] == "vrnn"]["trial_id"].tolist() == ["aaaa0002", "aaaa0003", "aaaa0001"]
    with pytest.raises(KeyError, match="cannot sort by 'nope'; reported figures: .*val_recon"):
        leaderboard.best_per_model(trials, sort="nope")


def test_leaderboard_files(fake, tmp_path):
    paths = leaderboard.write(results.load_trials(fake), tmp_path / "out", k=2)
    assert [p.name for p in paths] == ["leaderboard_best.csv", "leaderboard_top.csv", "leaderboard.md",
                                       "leaderboard.html"]
    assert len(pd.read_csv(paths[0])) == 4 and len(pd.read_csv(paths[1])) == 6
    markdown = paths[2].read_text()
    assert "## VRNN: top 2 of 3 trials" in markdown and "| VRNN | 1 | 10 |" in markdown
    assert "| SRNN-GM | 1 | 16 | 1.4142 | 2 | aaaa0008, aaaa0009 |" in markdown
    assert paths[3].read_text().count("<table") == 5


def test_leaderboard_command(fake, tmp_path, capsys):
    assert leaderboard.main([str(fake), "--k", "1", "--out", str(tmp_path / "lb")]) == 0
    assert "Best configuration of each model" in capsys.readouterr().out
    assert leaderboard.main([str(fake), "--sort", "nope", "--out", str(tmp_path / "lb")]) == 2
    assert "cannot sort by 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("module", [results, leaderboard, evaluate, plots])
def test_scripts_have_help(module, capsys):
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0 and "experiments" in capsys.readouterr().out


@pytest.mark.parametrize("module", [leaderboard, evaluate, plots, report])
def test_scripts_refuse_fewer_than_one_configuration_before_reading_anything(module, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        module.main([str(tmp_path / "no-such-experiment"), "--k", "0", "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and "argument --k: must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_results_table_in_the_reviews_order():
    rows = []
    for model, seed, si_sdr in (("srnn_gm", 0, 4.0), ("srnn_gm", 1, 6.0), ("vae", 0, 2.0), ("vae", 0, 1.0)):
        rank = 2 if si_sdr == 1.0 else 1
        rows.append({"model": model, "rank": rank, "trial_id": f"{model}{seed}{rank}", "seed": seed,
                     "configuration": "lr=0.001", "generation_mode": model == "srnn_gm", "kind": "speech", "n": 10,
                     "si_sdr": si_sdr, "si_sdr_ci95": 0.5, "estoi": 0.7, "estoi_ci95": 0.1})
    table = evaluate.results_table(pd.DataFrame(rows))
    assert table["model"].tolist() == ["VAE", "SRNN-GM"]
    assert table.loc[0, ["si_sdr", "si_sdr_pm", "seeds", "spread"]].tolist() == [2.0, 0.5, 1, "95% CI over utterances"]
    # across seeds: the t interval of the seeds' means 4 and 6 (sd sqrt 2, t(0.975, 1 dof) = 12.7062)
    assert table.loc[1, "si_sdr"] == 5.0 and table.loc[1, "si_sdr_pm"] == pytest.approx(12.7062047)
    assert table.loc[1, "spread"] == "95% CI over 2 seeds"
    shown = evaluate.formatted(table)
    assert shown.columns.tolist() == ["model", "SI-SDR (dB)", "ESTOI", "spread", "best configuration", "trials",
                                      "utterances"]
    assert shown.loc[0, "SI-SDR (dB)"] == "2.000 ± 0.500"


def test_saved_scores_are_reused_while_newer_than_the_checkpoint(tmp_path):
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"")
    saved = {"settings": {"split": "test", "generation_mode": True, "max_utterances": 5, "kind": "speech"},
             "protocol": {"metrics": {"si_sdr": metrics.PROTOCOL["si_sdr"]}}, "n": 5, "metrics": {}}
    (tmp_path / "eval_test_gm.json").write_text(json.dumps(saved))
    assert evaluate.evaluate_cached(checkpoint, "test", True, 5) == {**saved, "json": str(tmp_path / "eval_test_gm.json")}
    # scores made under other metric definitions (or before results stated theirs) are made again
    for protocol in ({"metrics": {"pesq": "P.862.1 MOS-LQO at 8 kHz"}}, None):
        (tmp_path / "eval_test_gm.json").write_text(json.dumps({**saved, "protocol": protocol}))
        with pytest.raises(CheckpointError):  # the empty checkpoint is read: the scores were not reused
            evaluate.evaluate_cached(checkpoint, "test", True, 5)


def test_plots_of_the_hand_written_experiment(fake):
    trials, curves = results.load(fake)
    figures = plots.all_figures([fake], trials, curves, k=2)
    assert list(figures) == ["learning_curves", "hyperparameters", "asha_rungs", "importances"]
    for fig in figures.values():
        assert plots.png(fig).startswith(b"\x89PNG")
    assert any("no Optuna study" in t.get_text() for t in figures["importances"].axes[0].texts)
    # one panel per model with a finite loss in the curves, per searched parameter but the seed
    assert len([ax for ax in figures["learning_curves"].axes if ax.get_visible()]) == 4
    assert [ax.get_xlabel() for ax in figures["hyperparameters"].axes if ax.get_visible()] == ["z_dim", "prior"]


def test_learning_curves_say_so_when_no_trial_has_a_finite_loss(fake):
    trials, curves = results.load(fake)
    trials["val_loss"] = math.nan  # every trial diverged in its first epoch
    fig = plots.learning_curves(trials, curves)
    assert any("no trial reported a finite val_loss" in t.get_text() for t in fig.axes[0].texts)
    assert plots.png(fig).startswith(b"\x89PNG")


def test_importances_of_a_study_too_small(tmp_path):
    import optuna

    distributions = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
                     "prior": optuna.distributions.CategoricalDistribution(["gaussian", "student_t"])}
    study = optuna.create_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    study.add_trial(optuna.trial.create_trial(params={"lr": 1e-3, "prior": "gaussian"},
                                              distributions=distributions, value=1.0))
    assert plots.param_importances(study) == ({}, "too few finished trials to estimate importances")
    fig = plots.importances([tmp_path])
    assert any("too few finished trials" in t.get_text() for t in fig.axes[0].texts)
    rng = np.random.default_rng(0)
    for _ in range(12):
        lr = float(10 ** rng.uniform(-4, -2))
        study.add_trial(optuna.trial.create_trial(params={"lr": lr, "prior": "gaussian"},
                                                  distributions=distributions, value=-math.log10(lr)))
    values, why = plots.param_importances(study)
    assert why is None and max(values, key=values.get) == "lr"


def test_pose_strip_of_a_human36m_skeleton():
    from dvae.data.motion import H36M_OFFSETS

    joints = np.tile(np.cumsum(H36M_OFFSETS, axis=0).reshape(1, -1), (50, 1))
    fig = plots.pose_strip(joints, 25.0, "still", "h36m", poses=5, prime_end=0.5)
    assert len(fig.axes[0].lines) == 5 * 31 and plots.png(fig).startswith(b"\x89PNG")


# --- input the fronts refuse, or take in their stride ---------------------------------------

def failed_experiment(root: Path) -> Path:
    """An experiment where no trial has reported an epoch: two errored before their first, one is still in it."""
    exp = root / "failed"
    base = {"corpus": "asterisk", "epochs": 3, "name": "vrnn", "variant": "vrnn"}
    write_trial(exp, "vrnn_bbbb0001", {**base, "z_dim": 8, "prior": "gaussian"},
                error="RuntimeError: CUDA out of memory", checkpoint=None)
    write_trial(exp, "vrnn_bbbb0002", {**base, "z_dim": 16, "prior": "student_t"}, error="ValueError: boom",
                checkpoint=None)
    write_trial(exp, "vrnn_bbbb0003", {**base, "z_dim": 32, "prior": "gaussian"})  # in its first epoch
    return exp


def test_no_trial_has_reported_yet_gives_an_empty_ranking(tmp_path, capsys):
    exp = failed_experiment(tmp_path)
    trials = results.load_trials(exp)
    assert "val_loss" not in trials and leaderboard.configurations(trials).empty
    assert leaderboard.main([str(exp), "--out", str(tmp_path / "lb")]) == 0
    assert len(pd.read_csv(tmp_path / "lb" / "leaderboard_best.csv")) == 0
    assert plots.main([str(exp), "--out", str(tmp_path / "plots")]) == 0
    panel = plots.hyperparameters(trials).axes[0]  # z_dim and prior, one of them categorical
    assert any("no trial reported a finite val_loss" in t.get_text() for t in panel.texts)
    assert evaluate.main([str(exp), "--out", str(tmp_path / "ev")]) == 1
    assert "cannot sort" not in capsys.readouterr().err
    # how the trials ended is what the user needs to see then
    page = report.build_report([exp], tmp_path / "report.html", log=lambda line: None).read_text()
    assert "How the trials ended" in page and "RuntimeError: CUDA out of memory" in page and "bbbb0002" in page
    # a name no trial reports is still the fault of --sort
    assert leaderboard.main([str(exp), "--sort", "nope", "--out", str(tmp_path / "lb")]) == 2
    assert "cannot sort by 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "two"])
@pytest.mark.parametrize("module", [evaluate, report])
def test_max_utterances_must_be_at_least_one(module, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        module.main([str(tmp_path / "no-such-experiment"), "--max-utterances", value])
    assert exit_.value.code == 2 and "argument --max-utterances: must be" in capsys.readouterr().err


def test_an_experiment_given_twice_counts_once(fake, tmp_path, monkeypatch):
    monkeypatch.chdir(fake.parent)
    parser = results.ranking_parser("test", "", k=1, k_help="", out_help="")
    given = [str(fake), "fake", f"{fake}/", str(fake / ".." / "fake"), str(tmp_path / "other")]
    assert parser.parse_args(given).experiments == [fake, tmp_path / "other"]
    assert leaderboard.main([str(fake), "fake", "--out", str(tmp_path / "lb")]) == 0
    best = pd.read_csv(tmp_path / "lb" / "leaderboard_best.csv").set_index("model")
    assert best.loc["vrnn", "seeds"] == 1 and best.loc["srnn_gm", "seeds"] == 2


def test_a_corrupt_params_json_skips_that_trial(fake, tmp_path, caplog):
    (fake / "vrnn_aaaa0002" / "params.json").write_text('{"corpus": "aster')
    (fake / "vae_aaaa0006" / "params.json").write_text("[1, 2]")
    trials = results.load_trials(fake)
    assert len(trials) == 7 and {"aaaa0002", "aaaa0006"}.isdisjoint(trials["trial_id"])
    notes = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]  # a warning each
    assert len(notes) == 2 and all(note.startswith("skipped ") for note in notes)
    assert str(fake / "vrnn_aaaa0002" / "params.json") in notes[1]
    assert leaderboard.main([str(fake), "--out", str(tmp_path / "lb")]) == 0
    for trial in fake.iterdir():
        (trial / "params.json").write_text("")
    with pytest.raises(FileNotFoundError, match="no readable trial"):
        results.load_trials(fake)


@pytest.mark.parametrize("module", [leaderboard, evaluate, plots, report])
def test_out_of_the_wrong_kind_is_refused_before_reading_anything(module, tmp_path, capsys):
    # report writes one file; the others a folder of files
    existing = tmp_path / "taken"
    existing.mkdir() if module is report else existing.write_text("")
    with pytest.raises(SystemExit) as exit_:
        module.main([str(tmp_path / "no-such-experiment"), "--out", str(existing)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"argument --out: {existing} is a" in err
    if module is not report:  # under a file, no folder can be made either
        with pytest.raises(SystemExit):
            module.main([str(tmp_path / "no-such-experiment"), "--out", str(existing / "sub")])
        assert "argument --out: " in capsys.readouterr().err


@pytest.mark.parametrize("option, value", [("--seconds", "0"), ("--seconds", "-2"), ("--seconds", "nan"),
                                           ("--seconds", "inf"), ("--prime-seconds", "-1"),
                                           ("--prime-seconds", "nan"), ("--prime-seconds", "x")])
def test_report_refuses_lengths_that_make_no_example(option, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        report.main([str(tmp_path / "no-such-experiment"), option, value])
    assert exit_.value.code == 2 and f"argument {option}: must be" in capsys.readouterr().err


# --- the shared real search -------------------------------------------------------------

SMOKE_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def shared_experiment(tmp_path_factory) -> Path:
    """A real smoke search, made once per test session (the first caller makes it, a marker
    file tells later callers, in this module or another, that it is there)."""
    storage = tmp_path_factory.getbasetemp() / "analysis-search"
    experiment = storage / "smoke"
    ready = storage / "ready"
    if ready.is_file():
        return experiment
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "tune_runner.py", "--space", "vrnn_priors", "--budget", "smoke", "--storage", str(storage),
         "--name", "smoke", "--no-dashboard"],
        cwd=ROOT, env={**os.environ, **SMOKE_ENV}, capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        pytest.fail(f"the smoke search failed ({run.returncode}):\n{(run.stdout + run.stderr)[-4000:]}")
    add_trained_trial(experiment, "srnn_gm", {"name": "srnn", "ss_epochs": 1, "generation_mode_eval": True})
    ready.write_text(f"{time.perf_counter() - started:.1f} s\n")
    return experiment


def add_trained_trial(experiment: Path, variant: str, overrides: dict) -> Path:
    """A trial trained directly (no Ray) into the experiment, in Tune's layout: its config
    is the smoke search's fixed settings with `overrides`, for two epochs."""
    from dvae.config import Config
    from dvae.training import train

    some_trial = json.loads(next(experiment.glob("*/params.json")).read_text())
    fixed = {k: v for k, v in some_trial.items() if k in ("corpus", "features", "seq_len", "h_dim", "dense_dim",
                                                             "batch_size", "max_utterances", "media_every")}
    params = {**fixed, "epochs": 2, "z_dim": 8, **overrides, "variant": variant}
    trial_id = "f0f0f0f0"
    folder = experiment / f"{variant}_{trial_id}"
    folder.mkdir()
    (folder / "params.json").write_text(json.dumps(params))
    started, lines = time.perf_counter(), []

    def report(metrics: dict, checkpoint_dir: Path) -> None:
        done = metrics["stop_reason"] is not None
        lines.append({**metrics, "training_iteration": metrics["epoch"], "trial_id": trial_id,
                      "time_total_s": time.perf_counter() - started, "done": done, "config": params})

    cfg = Config.from_dict({k: v for k, v in params.items() if k != "variant"}).replace(num_threads=1)
    train(cfg, folder, on_epoch=report, log=lambda line: None)
    (folder / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


@pytest.fixture(scope="session")
def experiment(tmp_path_factory) -> Path:
    return shared_experiment(tmp_path_factory)


@pytest.mark.slow
def test_a_real_search_loads(experiment):
    trials, curves = results.load(experiment)
    assert len(trials) == 7 and set(trials["model"]) == {"vrnn", "srnn_gm"}
    assert set(trials["status"]) <= {"completed", "stopped_by_asha"} and (trials["status"] == "completed").any()
    assert all(Path(c).is_file() for c in trials["checkpoint"])
    assert len(curves) == trials["epochs_run"].sum()
    assert (trials["best_val_loss"] == trials["val_loss"]).all()
    assert {"prior", "lr", "z_dim"} <= set(results.searched_parameters(trials))


@pytest.mark.slow
def test_a_real_study_has_importances(experiment):
    import optuna

    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{results.study_path(experiment)}")
    values, why = plots.param_importances(study)
    assert why is None and {"lr", "z_dim"} <= set(values)


@pytest.mark.slow
def test_evaluation_of_the_best_checkpoints(experiment, tmp_path):
    trials = results.load_trials(experiment)
    scores = evaluate.evaluate_top(trials, k=1, max_utterances=2, log=lambda line: None)
    assert scores["model"].tolist() == ["vrnn", "srnn_gm"]
    assert scores["generation_mode"].tolist() == [False, True] and (scores["n"] == 2).all()
    assert scores[["si_sdr", "pesq_wb", "estoi"]].notna().all().all()
    paths = evaluate.write(scores, tmp_path)
    table = pd.read_csv(paths[1])
    assert table["model"].tolist() == ["VRNN", "SRNN-GM"]
    assert "SI-SDR (dB)" in paths[2].read_text()
    # scored again: the saved scores are read back
    again = evaluate.evaluate_top(trials, k=1, max_utterances=2, log=lambda line: None)
    pd.testing.assert_frame_equal(scores, again)


@pytest.mark.slow
def test_srnn_tf_gm_is_srnns_checkpoint_in_generation_mode_and_the_benchmark_file(experiment, tmp_path):
    import shutil

    copy = tmp_path / "smoke"
    shutil.copytree(experiment, copy)
    add_trained_trial(copy, "srnn", {"name": "srnn"})
    trials = results.load_trials(copy)
    scores = evaluate.evaluate_top(trials, k=1, max_utterances=2, log=lambda line: None, jobs=2)
    assert scores["model"].tolist() == ["vrnn", "srnn", "srnn_tf_gm", "srnn_gm"]
    srnn, tf_gm = (scores[scores["model"] == m].iloc[0] for m in ("srnn", "srnn_tf_gm"))
    assert tf_gm["trial_id"] == srnn["trial_id"] and tf_gm["checkpoint"] == srnn["checkpoint"]
    assert (srnn["generation_mode"], tf_gm["generation_mode"]) == (False, True)
    assert Path(tf_gm["result_json"]).name == "eval_test_gm.json" and tf_gm["si_sdr"] != srnn["si_sdr"]

    paths = evaluate.write(scores, tmp_path / "out", trials, copy, review_json=tmp_path / "bench" / "review.json")
    result = json.loads((tmp_path / "bench" / "review.json").read_text())
    assert list(result["rows"]) == ["vrnn", "srnn", "srnn_tf_gm", "srnn_gm"]
    row = result["rows"]["srnn_tf_gm"]
    assert row["review"] == {"si_sdr": -1.0, "pesq": 1.93, "estoi": 0.64} and row["generation_mode"]
    seed = row["seeds"][0]
    assert seed["best_epoch"] in (1, 2) and seed["wall_time_s"] > 0 and seed["units"] == 2
    assert set(seed["metrics"]) >= {"si_sdr", "pesq", "pesq_wb", "estoi"}
    protocol = result["protocol"]
    assert (protocol["corpus"], protocol["split"], protocol["features"]) == ("asterisk", "test", "stft")
    assert protocol["search"]["space"] == "vrnn_priors" and protocol["search"]["budget"] == "smoke"
    assert "raw ITU-T P.862" in protocol["metrics"]["pesq"] and protocol["code_version"]
    vrnn_config = json.loads(next(copy.glob("vrnn_*/params.json")).read_text())
    assert protocol["schedule"]["epochs"] == vrnn_config["epochs"] and protocol["schedule"]["window_hop"] == 50
    assert result["comparison"]["metric"] == "si_sdr" and len(result["comparison"]["rows"]) == 4
    assert "Spearman" in (tmp_path / "out" / "review.md").read_text()


def test_the_comparison_with_the_review_ranks_and_names_the_pairs_out_of_order():
    from analysis import review

    def row(mean, ci):
        return {"mean": {"si_sdr": mean}, "ci95": {"si_sdr": ci}}
    # review: SRNN 11.0 > VRNN 10.0 > VAE 5.3 > SRNN-TF-GM -1.0; ours swaps VRNN and SRNN
    rows = {"vae": row(5.0, 0.2), "vrnn": row(9.0, 0.1), "srnn": row(8.0, 0.1), "srnn_tf_gm": row(-3.0, 1.0)}
    c = review.comparison(rows, "speech")
    assert c["spearman"] == pytest.approx(0.8)  # one swap of neighbours among 4: 1 - 6*2/(4*15)
    assert [(p["review_better"], p["ours_better"], p["intervals_overlap"]) for p in c["out_of_order"]] == [
        ("srnn", "vrnn", False)]
    rows["srnn"] = row(8.95, 0.1)
    assert review.comparison(rows, "speech")["out_of_order"][0]["intervals_overlap"]
    # motion: lower MPJPE is better, in ours as in the review
    motion = {m: {"mean": {"mpjpe": v}, "ci95": {"mpjpe": 1.0}} for m, v in
              (("vae", 40.0), ("srnn", 8.0), ("vrnn", 9.0))}
    assert review.comparison(motion, "motion") == {"metric": "mpjpe", "rows": ["vae", "srnn", "vrnn"],
                                                    "spearman": 1, "out_of_order": []}


def test_a_scored_checkpoint_brings_its_test_scores_to_the_trials_and_the_leaderboard(fake, tmp_path):
    best = fake / "vrnn_aaaa0001" / "checkpoint" / "best.pt"
    scores = {"settings": {"split": "test"}, "n": 50,
              "metrics": {"si_sdr": {"mean": 7.5}, "pesq": {"mean": 3.1}, "estoi": {"mean": None}}}
    (best.parent / "eval_test.json").write_text(json.dumps(scores))
    trials = by_id(results.load_trials(fake))
    row = trials["aaaa0001"]
    assert (row["test_si_sdr"], row["test_pesq"], row["test_units"]) == (7.5, 3.1, 50) and math.isnan(row["test_estoi"])
    assert "test_si_sdr" not in trials["aaaa0003"] or math.isnan(trials["aaaa0003"]["test_si_sdr"])  # not scored
    assert leaderboard.main([str(fake), "--out", str(tmp_path / "lb")]) == 0
    best_table = pd.read_csv(tmp_path / "lb" / "leaderboard_best.csv")
    assert best_table.loc[best_table["model"] == "vrnn", "test_si_sdr"].item() == 7.5
    os.utime(best, (time.time() + 10, time.time() + 10))  # the checkpoint changed since it was scored
    assert "test_si_sdr" not in results.load_trials(fake).set_index("trial_id").loc["aaaa0001"].dropna()
