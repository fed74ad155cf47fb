"""Search spaces: every shipped one is valid under every budget, every kind of mistake in a
space file is reported with its file, field and what is allowed, and the runner refuses
bad input (and shows a dry run) without starting Ray."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dvae import runner as tune_runner
from dvae.experiment import SETTINGS_FILE
from dvae.config import MODEL_NAMES, Config
from dvae.schedules import feedback_prob
from dvae.spaces import BUDGETS, SpaceError, load_space, space_names

ROOT = Path(__file__).resolve().parent.parent

VALID = """
description: a test space
models: [vrnn, {srnn_gm: {model: srnn, ss_epochs: 5, generation_mode_eval: true}}]
fixed: {max_utterances: 8, epochs: 10}
search:
  prior: {choice: [gaussian, student_t]}
  student_df: {uniform: [2, 30], when: {prior: student_t}}
  lr: {loguniform: [1e-4, 1e-2]}
  z_dim: {int: [4, 64], log: true}
seeds: [0, 1]
asha: {max_t: 10, grace_period: 2, reduction_factor: 3}
num_samples: 4
budgets:
  smoke: {epochs: 3, max_t: 3, grace_period: 1, num_samples: 2, seeds: [7]}
  small: {search: {z_dim: {int: [4, 16]}}}
  full: {}
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def edit(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new)


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("name", space_names())
def test_every_shipped_space_loads(name, budget):
    space = load_space(name, budget)
    assert space.description and "\n" not in space.description
    assert space.trials >= 1
    for variant in space.variants:
        cfg = space.config(variant)
        assert cfg.model.name in MODEL_NAMES
        if space.asha:
            assert space.asha["max_t"] <= cfg.train.epochs
    if budget == "smoke":  # minutes on two cores: tiny data, networks and runs
        cfg = space.config(space.variants[0])
        assert cfg.train.epochs <= 5 and cfg.model.h_dim <= 32 and space.trials <= 10
        assert cfg.data.max_utterances or cfg.data.corpus == "mocap"


def test_shipped_spaces_cover_the_brief():
    assert {"vrnn_priors", "srnn_priors", "kl_warmup", "lr_schedule", "latent_size", "review_benchmark",
            "mocap_motion", "mel_study"} <= set(space_names())
    mel = load_space("mel_study", "full")
    assert [v.name for v in mel.variants] == ["vrnn", "srnn"] and mel.fixed["features"] == "mel"
    assert {"prior", "student_df", "kl_warmup_epochs", "lr_schedule", "z_dim"} <= {p.name for p in mel.params}
    review = load_space("review_benchmark", "full")
    # SRNN-TF-GM is SRNN's own checkpoint scored in generation mode: not a model of its own
    assert [v.name for v in review.variants] == [*MODEL_NAMES, "srnn_gm"]
    assert not review.params and review.seeds == (0, 1, 2) and review.asha is None
    gm = review.config(review.variants[-1]).train
    assert gm.generation_mode_eval and gm.ss_schedule == "staircase" and gm.kl_warmup == "none"
    # the review's code: 0.1 at the start, +0.1 a stage, 1.0 at the end of the ramp
    assert [feedback_prob(gm, e) for e in range(0, gm.ss_epochs + 1, gm.ss_epochs // 9)] == [
        0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert review.fixed["kl_warmup"] == "staircase" and review.fixed["z_dim"] == 16 and review.fixed["lr"] == 2e-3
    small = load_space("review_benchmark", "small")  # the 2-core CPU budget: all seeds, the review's sizes
    assert small.seeds == (0, 1, 2) and small.fixed["h_dim"] == 128 and small.fixed["batch_size"] == 128
    assert small.fixed["patience"] > 0 and "max_utterances" not in small.fixed
    for name in ("vrnn_priors", "srnn_priors"):
        params = {p.name: p for p in load_space(name).params}
        assert params["student_df"].when == ("prior", ("student_t",))
        assert params["lr"].kind == "loguniform"
    motion = load_space("mocap_motion")
    assert motion.fixed["corpus"] == "mocap" and motion.fixed["likelihood"] == "gaussian"


def test_a_valid_file_resolves_its_budget(tmp_path):
    path = write(tmp_path, VALID)
    full = load_space(path, "full")
    assert full.trials == 8 and full.seeds == (0, 1)
    assert [p.describe() for p in full.params][1:3] == [
        "uniform [2, 30]  when prior in ['student_t']", "loguniform [0.0001, 0.01]"]  # YAML's 1e-4 is a string
    assert full.variants[1].overrides == {"name": "srnn", "ss_epochs": 5, "generation_mode_eval": True}
    smoke = load_space(path, "smoke")
    assert smoke.fixed["epochs"] == 3 and smoke.asha == {"max_t": 3, "grace_period": 1, "reduction_factor": 3}
    assert smoke.seeds == (7,) and smoke.trials == 2
    cfg = smoke.config(smoke.variants[1], {"prior": "student_t", "student_df": 4.0})
    assert isinstance(cfg, Config) and cfg.model.name == "srnn" and cfg.train.ss_epochs == 5
    # a budget gives a searched field its own range, the rest of the search as the file's
    small = load_space(path, "small")
    assert [(p.name, p.low, p.high) for p in small.params if p.kind == "int"] == [("z_dim", 4, 16)]
    assert [p.describe() for p in small.params if p.name != "z_dim"] == [
        p.describe() for p in full.params if p.name != "z_dim"]


# (text of the broken file, the field the error must name, what it must say is allowed)
MISTAKES = {
    "unknown top-level key": (VALID + "sampler: tpe\n", "sampler", "allowed: description, models, fixed"),
    "unknown fixed field": (edit("fixed: {max_utterances: 8", "fixed: {zdim: 3, max_utterances: 8"),
                            "fixed.zdim", "z_dim"),
    "bad fixed value": (edit("epochs: 10}", "epochs: 10, features: wav}"), "fixed.features", "stft, mel"),
    "unknown searched field": (edit("  lr: {loguniform", "  learning_rate: {loguniform"),
                               "search.learning_rate", "valid fields"),
    "unknown distribution": (edit("lr: {loguniform: [1e-4, 1e-2]}", "lr: {normal: [0.001, 0.1]}"),
                             "search.lr.normal", "allowed: choice, uniform, loguniform, int"),
    "two distributions": (edit("lr: {loguniform: [1e-4, 1e-2]}", "lr: {loguniform: [1e-4, 1e-2], uniform: [0, 1]}"),
                          "search.lr", "exactly one distribution; choose one of choice, uniform, loguniform, int"),
    "low >= high": (edit("z_dim: {int: [4, 64]", "z_dim: {int: [64, 4]"), "search.z_dim.int", "must be below"),
    "loguniform low <= 0": (edit("lr: {loguniform: [1e-4, 1e-2]}", "lr: {loguniform: [0, 1e-2]}"),
                            "search.lr.loguniform", "low > 0"),
    "choice not allowed": (edit("[gaussian, student_t]", "[gaussian, cauchy]"),
                           "search.prior.choice", "'cauchy' is not allowed; choose one of gaussian, student_t"),
    "choice out of range": (edit("search:\n", "search:\n  dropout: {choice: [0.1, 2.0]}\n"),
                            "search.dropout.choice", "<= 0.9"),
    "uniform on an int field": (edit("z_dim: {int: [4, 64], log: true}", "z_dim: {uniform: [4, 64]}"),
                                "search.z_dim.uniform", "use int"),
    "condition on an unknown parameter": (edit("when: {prior: student_t}", "when: {priors: student_t}"),
                                          "search.student_df.when.priors", "one of: prior"),
    "condition on an unknown value": (edit("when: {prior: student_t}", "when: {prior: laplace}"),
                                      "search.student_df.when.prior", "gaussian, student_t"),
    "searched and fixed": (edit("epochs: 10}", "epochs: 10, lr: 0.001}"), "search.lr", "either searched or fixed"),
    "unknown model": (edit("models: [vrnn,", "models: [vrnnn,"), "models[0]", ", ".join(MODEL_NAMES)),
    "variant of an unknown model": (edit("model: srnn,", "model: srn,"), "models.srnn_gm.model",
                                    ", ".join(MODEL_NAMES)),
    "missing budget": (edit("  small: {search: {z_dim: {int: [4, 16]}}}\n", ""), "budgets",
                       "required: smoke, small, full"),
    "unknown budget key": (edit("smoke: {epochs: 3,", "smoke: {epoch: 3,"), "budgets.smoke.epoch",
                           "num_samples, seeds, search, max_t"),
    "bad budget value": (edit("smoke: {epochs: 3,", "smoke: {epochs: 0,"), "budgets.smoke.epochs", ">= 1"),
    "budget range of an unsearched field": (edit("small: {search: {z_dim:", "small: {search: {h_dim:"),
                                            "budgets.small.search.h_dim", "the space does not search it"),
    "bad budget range": (edit("{z_dim: {int: [4, 16]}}", "{z_dim: {int: [16, 4]}}"), "search.z_dim.int",
                         "must be below"),
    "grace period above max_t": (edit("grace_period: 2,", "grace_period: 20,"), "asha.grace_period", "<= max_t"),
    "max_t above epochs": (edit("max_t: 10,", "max_t: 50,"), "asha.max_t", "max_t must be <= epochs"),
    "reduction factor": (edit("reduction_factor: 3}", "reduction_factor: 1}"), "asha.reduction_factor",
                         "a number above 1"),
    "bad seeds": (edit("seeds: [0, 1]", "seeds: [0, 0]"), "seeds", "distinct non-negative integers"),
    "nested seeds": (edit("seeds: [0, 1]", "seeds: [[0], 1]"), "seeds", "distinct non-negative integers"),
    "log int from 0": (edit("z_dim: {int: [4, 64], log: true}", "kl_warmup_epochs: {int: [0, 40], log: true}"),
                       "search.kl_warmup_epochs.log", "low >= 1"),
    "nan bound": (edit("lr: {loguniform: [1e-4, 1e-2]}", "lr: {loguniform: [.nan, 1e-2]}"),
                  "search.lr.loguniform", "not a finite number"),
    "infinite bound": (edit("lr: {loguniform: [1e-4, 1e-2]}", "lr: {loguniform: [1e-4, .inf]}"),
                       "search.lr.loguniform", "not a finite number"),
    "nan reduction factor": (edit("reduction_factor: 3}", "reduction_factor: .nan}"), "asha.reduction_factor",
                             "a number above 1"),
    "nan fixed value": (edit("epochs: 10}", "epochs: 10, dropout: .nan}"), "fixed.dropout", "not a finite number"),
    "no num_samples with a search": (edit("num_samples: 4\n", ""), "num_samples", "a positive integer"),
    "two-line description": (edit("description: a test space", "description: |\n  two\n  lines"),
                             "description", "one line"),
}


@pytest.mark.parametrize("case", MISTAKES)
def test_each_mistake_names_file_field_and_what_is_allowed(tmp_path, case):
    text, field, allowed = MISTAKES[case]
    path = write(tmp_path, text)
    with pytest.raises(SpaceError) as error:
        load_space(path, "full" if "smoke" not in field else "smoke")
    message = str(error.value)
    assert message.startswith(f"{path}: {field}: "), message
    assert allowed in message, message


def test_unknown_space_and_budget_list_the_valid_ones(tmp_path):
    with pytest.raises(SpaceError, match="unknown space 'nope'; valid spaces: .*vrnn_priors"):
        load_space("nope")
    with pytest.raises(SpaceError, match="unknown budget 'huge'; choose one of smoke, small, full"):
        load_space("vrnn_priors", "huge")
    with pytest.raises(SpaceError, match="not valid YAML"):
        load_space(write(tmp_path, "description: [unclosed"))
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe")
    with pytest.raises(SpaceError, match="binary.yaml: not valid YAML"):
        load_space(str(tmp_path / "binary.yaml"))
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(SpaceError, match="folder.yaml: a folder, not a file"):
        load_space(str(tmp_path / "folder.yaml"))


@pytest.mark.parametrize("argv, message", [
    (["--space", "nope"], "unknown space 'nope'; valid spaces: kl_warmup, latent_size"),
    (["--space", "vrnn_priors", "--gpus-per-trial", "-1"], "--gpus-per-trial must be 0 or more"),
    (["--space", "vrnn_priors", "--cpus-per-trial", "0"], "--cpus-per-trial must be above 0"),
    (["--name", "ghost", "--resume"], "no experiment to resume at"),
    (["--resume", "--space", "vrnn_priors"], "--resume needs --name"),
    (["--space", "mel_study", "--set", "n_mels=many"], "--set: n_mels: expected int, got 'many'"),
    (["--space", "mel_study", "--set", "prior=gaussian"], "--set prior: the space searches it"),
    (["--space", "mel_study", "--set", "name=dkf"], "--set name: set by the space's model list (vrnn, srnn)"),
    (["--space", "mel_study", "--set", "epochs=5"], "--set: epochs: 5 is below ASHA's max_t 20"),
    (["--space", "mel_study", "--set", "likelihood=itakura_saito"], "--set: likelihood: itakura_saito models power"),
    (["--space", "review_benchmark", "--set", "seed=3"], "--set seed: the space runs every configuration once per seed"),
    (["--space", "mel_study", "--set", "dropout=nan"], "--set: dropout: nan is not a finite number"),
    (["--space", "mel_study", "--set", "data_root=/nonexistent", "--dry-run"], "data_root: /nonexistent is not a directory"),
    (["--space", "vrnn_priors", "--name", "../elsewhere"], "--name '../elsewhere': a folder name inside --storage"),
    (["--space", "mel_study", "--set", "nmels=64"], "--set nmels: unknown Config field; valid fields:"),
    ([], "--space is required"),
])
def test_bad_input_is_refused_with_one_message(tmp_path, capsys, argv, message):
    assert tune_runner.main([*argv, "--storage", str(tmp_path)]) == 2
    out = capsys.readouterr()
    assert message in out.err and out.err.count("\n") == 1, out.err


def test_set_fixes_fields_over_the_budget_and_a_resume_keeps_them(tmp_path, capsys, monkeypatch):
    args = tune_runner.parse_args(["--space", "mel_study", "--budget", "smoke", "--set", "n_mels=64",
                                   "--set", "h_dim=48", "--set", "corpus=vctk", "--storage", str(tmp_path)])
    space = tune_runner.Plan.from_args(args).space
    for variant in space.variants:
        cfg = space.config(variant, {"prior": "gaussian"})
        assert (cfg.data.n_mels, cfg.model.h_dim, cfg.data.corpus) == (64, 48, "vctk")  # h_dim 32 in the budget
        assert cfg.data.max_utterances == 24  # the rest of the budget stays
    assert space.params == load_space("mel_study", "smoke").params

    experiment = tmp_path / "interrupted"
    experiment.mkdir()
    (experiment / SETTINGS_FILE).write_text(json.dumps(
        {"space": "mel_study", "budget": "smoke", "num_samples": None, "cuda_graph": None, "settings": {"n_mels": "64"}}))
    import dvae.search
    monkeypatch.setattr(dvae.search, "experiment_exists", lambda path: path == experiment)
    resume = ["--name", "interrupted", "--resume", "--storage", str(tmp_path)]
    assert tune_runner.Plan.from_args(tune_runner.parse_args(resume)).space.fixed["n_mels"] == 64
    # the copy of the space made at the start is what a resume reads, whatever became of the file
    shipped = (ROOT / "search_spaces" / "mel_study.yaml").read_text()
    (experiment / "mel_study.yaml").write_text(shipped.replace("n_mels: 80", "n_mels: 80\n  seq_len: 30", 1)
                                               .replace("  seq_len: 50\n", "", 1))
    resumed = tune_runner.Plan.from_args(tune_runner.parse_args(resume)).space
    assert resumed.fixed["seq_len"] == 30 and resumed.fixed["n_mels"] == 64 and resumed.name == "mel_study"
    assert tune_runner.main([*resume, "--set", "n_mels=40", "--dry-run"]) == 2
    assert "--set {'n_mels': '40'} differs from the experiment's {'n_mels': '64'}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tune_runner.parse_args(["--space", "mel_study", "--set", "n_mels"])
    assert "'n_mels' is not FIELD=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tune_runner.parse_args(["--space", "mel_study", "--set", "n_mels=64", "--set", "n_mels=40"])
    assert "--set gives n_mels more than once" in capsys.readouterr().err


def test_models_runs_only_the_named_rows_and_a_resume_keeps_them(tmp_path, capsys, monkeypatch):
    args = tune_runner.parse_args(["--space", "review_benchmark", "--budget", "smoke", "--models", "srnn_gm, dkf",
                                   "--storage", str(tmp_path)])
    space = tune_runner.Plan.from_args(args).space
    assert [v.name for v in space.variants] == ["dkf", "srnn_gm"]  # in the space's order
    assert space.trials == 2 * len(space.seeds)
    assert tune_runner.main(["--space", "review_benchmark", "--models", "dkf,lstm", "--dry-run",
                             "--storage", str(tmp_path)]) == 2
    assert "lstm not in the space's model list; choose from vae, dkf" in capsys.readouterr().err

    experiment = tmp_path / "rerun"
    experiment.mkdir()
    experiment_settings = {"space": "review_benchmark", "budget": "smoke", "models": ["dsae"]}
    (experiment / SETTINGS_FILE).write_text(json.dumps(experiment_settings))
    import dvae.search
    monkeypatch.setattr(dvae.search, "experiment_exists", lambda path: path == experiment)
    resume = ["--name", "rerun", "--resume", "--storage", str(tmp_path)]
    assert [v.name for v in tune_runner.Plan.from_args(tune_runner.parse_args(resume)).space.variants] == ["dsae"]
    assert tune_runner.main([*resume, "--models", "dkf", "--dry-run"]) == 2
    assert "--models ['dkf'] differs from the experiment's ['dsae']" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--cpus-per-trial", "--gpus-per-trial"])
def test_resources_must_be_finite_numbers(option, capsys):
    for value in ("nan", "inf"):
        with pytest.raises(SystemExit):
            tune_runner.parse_args(["--space", "vrnn_priors", option, value])
        assert f"expected a finite number, got {value}" in capsys.readouterr().err


def test_a_damaged_settings_file_is_refused_on_resume(tmp_path, capsys, monkeypatch):
    import dvae.search
    monkeypatch.setattr(dvae.search, "experiment_exists", lambda path: True)
    (tmp_path / "broken").mkdir()
    for text in ('{"space": "vrnn_pri', "{}"):
        (tmp_path / "broken" / SETTINGS_FILE).write_text(text)
        assert tune_runner.main(["--name", "broken", "--resume", "--storage", str(tmp_path)]) == 2
        assert "cannot resume: " in capsys.readouterr().err


def test_a_searched_cuda_graph_is_refused_without_gpus_per_trial(tmp_path, capsys):
    path = write(tmp_path, edit("search:\n", "search:\n  cuda_graph: {choice: [true, false]}\n"))
    assert tune_runner.main(["--space", path, "--gpus-per-trial", "0", "--dry-run", "--storage", str(tmp_path)]) == 2
    assert "needs a GPU in every trial" in capsys.readouterr().err


def test_storage_that_is_not_writable_is_refused(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert tune_runner.main(["--space", "vrnn_priors", "--storage", str(blocker / "experiments")]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_an_existing_experiment_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    assert tune_runner.main(["--space", "vrnn_priors", "--name", "taken", "--storage", str(tmp_path)]) == 2
    assert "already exists; continue it with --resume --name taken" in capsys.readouterr().err


def test_list_shows_every_space_with_its_description(capsys):
    assert tune_runner.main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == space_names()
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)


def test_dry_run_shows_fractional_gpus_without_gpus_and_starts_no_ray(tmp_path):
    ray_tmp = tmp_path / "raytmp"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "RAY_TMPDIR": str(ray_tmp)}
    # ray.init is replaced by a tripwire: a dry run must never reach it
    code = ("import sys, ray; ray.init = lambda *a, **k: sys.exit('ray.init was called'); "
            "import tune_runner; sys.exit(tune_runner.main(sys.argv[1:]))")
    run = subprocess.run([sys.executable, "-c", code, "--space", "vrnn_priors", "--budget", "smoke", "--dry-run",
                          "--gpus-per-trial", "0.25", "--storage", str(tmp_path / "exp")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "1 CPU and 0.25 GPU per trial, 4 trials per GPU" in out, out
    assert "0 GPUs available" in out and "no trial could start on this machine" in out
    for expected in ("budget smoke", "student_df: loguniform [2, 50]  when prior in ['student_t']",
                     "ASHA on epochs", "6 configurations x 1 seed(s) = 6 trials", "fixed       corpus=asterisk"):
        assert expected in out, out
    assert not ray_tmp.exists() and not (tmp_path / "exp").exists()


def test_cuda_graphs_from_the_space_or_the_flag_are_refused_without_gpus_per_trial(tmp_path, capsys):
    path = write(tmp_path, edit("fixed: {max_utterances: 8, epochs: 10}", "fixed: {max_utterances: 8, epochs: 10, cuda_graph: true}"))
    assert tune_runner.main(["--space", path, "--gpus-per-trial", "0", "--storage", str(tmp_path / "exp")]) == 2
    assert "train.cuda_graph (--cuda-graph or the space's) needs a GPU in every trial" in capsys.readouterr().err
    assert not (tmp_path / "exp").exists() or not any((tmp_path / "exp").iterdir())
    assert tune_runner.main(["--space", "vrnn_priors", "--cuda-graph", "--gpus-per-trial", "0", "--storage", str(tmp_path)]) == 2
    assert "needs a GPU in every trial" in capsys.readouterr().err
    assert tune_runner.main(["--space", path, "--gpus-per-trial", "0.25", "--dry-run", "--storage", str(tmp_path / "exp")]) == 0
    assert "cuda_graph=True" in capsys.readouterr().out
    assert tune_runner.main(["--space", "vrnn_priors", "--cuda-graph", "--gpus-per-trial", "1", "--dry-run", "--storage", str(tmp_path)]) == 0
    assert "cuda_graph=True" in capsys.readouterr().out  # the flag joins the fixed settings every trial gets


def test_the_experiment_folders_settings_round_trip_and_resume_keeps_them(tmp_path):
    from dvae import experiment

    space_file = tmp_path / "mine.yaml"
    space_file.write_text("description: x\n")
    folder = tmp_path / "exp"
    folder.mkdir()
    started = experiment.Settings(str(space_file), "smoke", 3, None, {"corpus": "mocap"})
    started.write(folder, space_file)
    space_file.write_text("description: edited later\n")
    saved = experiment.Settings.read(folder)
    assert saved == started and (folder / "mine.yaml").read_text() == "description: x\n"
    assert saved.space_file(folder) == str(folder / "mine.yaml")  # the copy, not the edited file
    assert saved.resumed_with({"space": None, "budget": "smoke", "num_samples": None}) == saved
    with pytest.raises(experiment.ExperimentError, match="--num-samples 4 differs from the experiment's 3"):
        saved.resumed_with({"num_samples": 4})
    assert set(experiment.Settings.fields()) == {"space", "budget", "num_samples", "cuda_graph", "settings", "models",
                                                 "replay", "replay_epoch_s", "confirm"}
    (folder / experiment.SETTINGS_FILE).write_text("[1]")
    with pytest.raises(experiment.ExperimentError, match="damaged"):
        experiment.Settings.read(folder)
    with pytest.raises(experiment.ExperimentError, match="no experiment to resume"):
        experiment.Settings.read(tmp_path / "none")


@pytest.mark.parametrize("kind", ["motion", "motion-windows-apart", "motion-takes"])
def test_each_motion_benchmark_fixes_its_windows_and_schedule(kind, tmp_path, capsys):
    from benchmarks.review import BENCHMARKS
    space, _, _, settings = BENCHMARKS[kind]
    assert tune_runner.main(["--space", space, "--budget", "small", *settings, "--dry-run",
                             "--storage", str(tmp_path / "exp")]) == 0
    apart = kind != "motion"  # the committed take-split and side-by-side rows: 1,000 steps of 2 batches an epoch
    config = re.search(r"^config .*?(?=^search)", capsys.readouterr().out, re.S | re.M).group(0).split()
    for expected in (f"window_hop={50 if apart else 5}", f"epochs={500 if apart else 300}",
                     f"patience={50 if apart else 30}", f"split={'corpus' if kind == 'motion-takes' else 'within'}"):
        assert expected in config, config
