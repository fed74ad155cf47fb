"""Evaluation, generation and the command line on untrained small models and a folder of
real speech: what is written, where, at which rate and length, and how errors end."""
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dvae.__main__ import build_parser, field_help, main
from dvae.checkpoint import load_checkpoint, save_checkpoint
from dvae.config import Config, ConfigError, all_fields
from dvae.data import prepare_corpus
from dvae.evaluation import evaluate_checkpoint, format_table
from dvae.generation import generate_from_checkpoint
from dvae.models import build_model

# Short 16 kHz utterances from Debian's pocketsphinx-testdata package.
TESTDATA = Path("/usr/share/pocketsphinx/test/data")
SPLIT_FILES = {"train": ["cards/001.wav", "cards/002.wav"], "valid": ["cards/003.wav"],
               "test": ["cards/004.wav", "librivox/sense_and_sensibility_01_austen_64kb-0880.wav"]}
SMALL = dict(z_dim=4, h_dim=16, dense_dim=16, v_dim=4, seq_len=20)
HOP = 256


@pytest.fixture(scope="module")
def speech_folder(tmp_path_factory):
    """A folder corpus with fixed splits, and a cache folder of its own."""
    if not TESTDATA.is_dir():
        pytest.skip("needs the pocketsphinx-testdata package (apt-get install pocketsphinx-testdata)")
    root = tmp_path_factory.mktemp("speech")
    for split, files in SPLIT_FILES.items():
        for name in files:
            shutil.copy(TESTDATA / name, root / Path(name).name)
        (root / f"{split}.txt").write_text("\n".join(Path(name).name for name in files))
    return {"corpus": "folder", "data_root": str(root), "cache_dir": str(tmp_path_factory.mktemp("cache"))}


def make_checkpoint(path: Path, data: dict, model: str, **fields) -> Path:
    """An untrained model of `model`, fitted to the data as the trainer would, saved as a checkpoint."""
    cfg = Config().replace(name=model, **SMALL, **data, **fields)
    corpus = prepare_corpus(cfg.data, progress=False)
    cfg = cfg.for_data(corpus.feature_dim)
    torch.manual_seed(0)
    return save_checkpoint({"config": cfg.to_dict(), "model": build_model(cfg.model).state_dict()}, path)


@pytest.fixture(scope="module")
def srnn_checkpoint(speech_folder, tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("srnn") / "checkpoint" / "best.pt", speech_folder, "srnn")


def test_evaluate_checkpoint_scores_writes_json_and_wavs(srnn_checkpoint, speech_folder):
    result = evaluate_checkpoint(srnn_checkpoint, write_wavs=True)
    assert result["n"] == 2
    for name in ("si_sdr", "pesq", "pesq_wb", "estoi"):
        assert math.isfinite(result["metrics"][name]["mean"]) and result["metrics"][name]["n"] == 2
        assert all(math.isfinite(row[name]) for row in result["utterances"])
    assert result["settings"]["resynthesis"] == "original phase"
    assert set(result["protocol"]["metrics"]) == {"si_sdr", "pesq", "pesq_wb", "estoi"}
    assert "raw ITU-T P.862 narrowband" in result["protocol"]["metrics"]["pesq"]

    written = srnn_checkpoint.parent / "eval_test.json"
    assert result["json"] == str(written)
    assert json.loads(written.read_text())["metrics"] == result["metrics"]
    clean = {u.name: len(u.waveform) for u in prepare_corpus(Config().replace(**speech_folder).data,
                                                              progress=False).utterances("test")}
    for name, length in clean.items():
        info = sf.info(srnn_checkpoint.parent / "eval_test" / name)
        assert (info.samplerate, info.frames) == (16000, length)
    assert "SI-SDR" in format_table(result)


def test_generation_mode_evaluation_and_another_corpus(srnn_checkpoint, speech_folder):
    result = evaluate_checkpoint(srnn_checkpoint, split="valid", generation_mode=True, data=speech_folder)
    assert result["n"] == 1 and result["settings"]["generation_mode"]
    assert (srnn_checkpoint.parent / "eval_valid_gm.json").is_file()
    with pytest.raises(ConfigError, match="fixed by the checkpoint"):
        evaluate_checkpoint(srnn_checkpoint, data={"features": "mel"})


def test_generation_mode_is_refused_for_a_model_without_feedback_before_any_work(speech_folder, tmp_path):
    checkpoint = make_checkpoint(tmp_path / "best.pt", speech_folder, "vae")
    # The data folder does not exist: the generation-mode check has to come first.
    with pytest.raises(ConfigError, match="generation mode"):
        evaluate_checkpoint(checkpoint, generation_mode=True, data={"data_root": str(tmp_path / "missing")})
    assert not list(tmp_path.glob("eval_*"))


def test_mel_features_are_resynthesised_with_the_default_phase_estimate(speech_folder, tmp_path):
    from dvae.data.features import DEFAULT_PHASE
    checkpoint = make_checkpoint(tmp_path / "best.pt", speech_folder, "dkf", features="mel", n_mels=40)
    result = evaluate_checkpoint(checkpoint, max_utterances=1)
    assert result["n"] == 1 and result["settings"]["resynthesis"] == DEFAULT_PHASE[0] == "pghi"
    assert "pghi phase (phase-gradient heap integration)" in result["protocol"]["waveform"]
    assert math.isfinite(result["metrics"]["estoi"]["mean"])


def test_cold_and_primed_generation_write_16k_wavs_of_the_right_length(srnn_checkpoint, tmp_path):
    cold = generate_from_checkpoint(srnn_checkpoint, tmp_path / "cold", seconds=1.0, n=2)
    assert sorted(p.name for p in cold) == ["cold_00.png", "cold_00.wav", "cold_01.png", "cold_01.wav"]
    frames = round(1.0 * 16000 / HOP)
    for wav in (p for p in cold if p.suffix == ".wav"):
        info = sf.info(wav)
        assert (info.samplerate, info.frames) == (16000, frames * HOP)
        wave, _ = sf.read(wav)
        assert 0.5 < np.abs(wave).max() < 1.0  # peak-normalised, not clipped

    primed = generate_from_checkpoint(srnn_checkpoint, tmp_path / "primed", seconds=1.0, n=1, prime_seconds=0.5)
    wav = next(p for p in primed if p.suffix == ".wav")
    prime_frames = round(0.5 * 16000 / HOP)
    assert sf.info(wav).frames == (prime_frames + frames) * HOP
    assert all(p.is_file() and p.stat().st_size > 0 for p in cold + primed)


@pytest.fixture(scope="module")
def motion_checkpoint(tmp_path_factory):
    """A checkpoint of an untrained VRNN on a made-up climbing capture: five 3 s takes of
    53 joints wandering at walking speed, in the layout of the mocap corpus."""
    root = tmp_path_factory.mktemp("mocap")
    rng = np.random.default_rng(0)
    for take in range(5):  # takes 0-2 train, 3 valid, 4 test
        steps = rng.normal(0, 0.005, size=(360, 53, 3))  # metres per 1/120 s
        (root / f"mocap_climb_seq_{take}").mkdir()
        np.save(root / f"mocap_climb_seq_{take}" / f"take_joint_positions_{take}.npy", np.cumsum(steps, axis=0))
    data = {"corpus": "mocap", "data_root": str(root), "cache_dir": str(tmp_path_factory.mktemp("cache"))}
    return make_checkpoint(root / "run" / "checkpoint" / "best.pt", data, "vrnn")


def test_motion_evaluation_reports_mpjpe_and_rmse_in_mm(motion_checkpoint):
    result = evaluate_checkpoint(motion_checkpoint)
    assert set(result["metrics"]) == {"mpjpe", "rmse"}
    # scored as the review does: the test take cut into seq_len-frame windows, a short tail left out
    cfg = Config.from_dict(load_checkpoint(motion_checkpoint)["config"])
    frames = len(prepare_corpus(cfg.data, progress=False).utterances("test")[0].features)
    assert frames % SMALL["seq_len"] and result["n"] == frames // SMALL["seq_len"]
    assert [row["frames"] for row in result["utterances"]] == [SMALL["seq_len"]] * result["n"]
    assert "20-frame windows" in result["protocol"]["units"]
    assert all(result["metrics"][m]["mean"] > 0 for m in ("mpjpe", "rmse"))
    assert (motion_checkpoint.parent / "eval_test.json").is_file()
    with pytest.raises(ConfigError, match="speech"):
        evaluate_checkpoint(motion_checkpoint, data={"corpus": "folder"})


def test_motion_generation_writes_joint_sequences_and_plots(motion_checkpoint, tmp_path):
    cold = generate_from_checkpoint(motion_checkpoint, tmp_path, seconds=2.0, n=1)
    assert sorted(p.name for p in cold) == ["cold_00.npy", "cold_00.png"]
    assert np.load(tmp_path / "cold_00.npy").shape == (50, 159)  # 2 s at 25 fps, 53 joints
    primed = generate_from_checkpoint(motion_checkpoint, tmp_path, seconds=2.0, n=1, prime_seconds=1.0)
    joints = np.load(next(p for p in primed if p.suffix == ".npy"))
    assert joints.shape == (25 + 50, 159) and np.isfinite(joints).all()


def test_cold_generation_needs_no_data(tmp_path):
    cfg = Config().replace(name="srnn", corpus="mocap", data_root=str(tmp_path), **SMALL).for_data(159)
    checkpoint = save_checkpoint({"config": cfg.to_dict(), "model": build_model(cfg.model).state_dict()},
                                 tmp_path / "best.pt")
    written = generate_from_checkpoint(checkpoint, seconds=1.0, n=1)  # tmp_path holds no corpus
    assert [p.name for p in written] == ["cold_00.npy", "cold_00.png"] and written[0].parent.name == "generated"


def test_every_config_field_is_a_train_option_with_help():
    helps = field_help()
    assert all(helps[name] for name in all_fields())
    args = build_parser().parse_args(["train", "--z-dim", "8", "--learn-df", "true", "--model", "srnn"])
    given = {name: getattr(args, name) for name in all_fields() if hasattr(args, name)}
    assert given == {"z_dim": "8", "learn_df": "true", "name": "srnn"}  # only what was given
    cfg = Config().replace(**given)
    assert (cfg.model.z_dim, cfg.model.learn_df, cfg.model.name) == (8, True, "srnn")


def test_cli_train_evaluate_generate(speech_folder, tmp_path):
    data = ["--corpus", "folder", "--data-root", speech_folder["data_root"], "--cache-dir", speech_folder["cache_dir"]]
    small = [x for key, value in SMALL.items() for x in (f"--{key.replace('_', '-')}", str(value))]
    run = tmp_path / "run"
    assert main(["train", "--model", "storn", "--epochs", "1", "--media-every", "0", "--run-dir", str(run),
                 *data, *small]) == 0
    best = run / "checkpoint" / "best.pt"
    assert main(["evaluate", str(best), "--max-utterances", "1", "--generation-mode"]) == 0
    assert (best.parent / "eval_test_gm.json").is_file()
    assert main(["generate", str(best), "--seconds", "0.5", "--n", "1", "--out", str(tmp_path / "gen")]) == 0
    assert (tmp_path / "gen" / "cold_00.wav").is_file()


def test_cli_resume_goes_on_with_the_runs_own_config(speech_folder, tmp_path, capsys):
    data = ["--corpus", "folder", "--data-root", speech_folder["data_root"], "--cache-dir", speech_folder["cache_dir"]]
    small = [x for key, value in SMALL.items() for x in (f"--{key.replace('_', '-')}", str(value))]
    run = tmp_path / "run"
    assert main(["train", "--resume", "--run-dir", str(run), "--model", "srnn", "--epochs", "1", "--lr", "0.002",
                 "--media-every", "0", *data, *small]) == 0
    assert "nothing to resume" in capsys.readouterr().err  # so it starts afresh

    assert main(["train", "--resume", "--run-dir", str(run), "--epochs", "2"]) == 0  # only what changes
    state = load_checkpoint(run / "checkpoint" / "last.pt")
    cfg = Config.from_dict(state["config"])
    assert (cfg.model.name, cfg.model.h_dim, cfg.train.lr, cfg.data.corpus) == ("srnn", 16, 0.002, "folder")
    assert (cfg.train.epochs, state["loop"]["epoch"]) == (2, 2)
    assert "resumed from" in capsys.readouterr().out

    for option, value, kept in (("--z-dim", "8", "4"), ("--lr", "0.01", "0.002"), ("--lr-schedule", "plateau", "constant")):
        assert main(["train", "--resume", "--run-dir", str(run), option, value, "--epochs", "3"]) == 2
        err = capsys.readouterr().err
        assert f"{option} {value}: the run in {run} has {kept}, and a resumed run keeps it" in err
    assert load_checkpoint(run / "checkpoint" / "last.pt")["loop"]["epoch"] == 2  # nothing was trained
    assert main(["train", "--run-dir", str(run), "--epochs", "3"]) == 2  # would train over it
    assert f"--run-dir: {run} already holds a run; continue it with --resume" in capsys.readouterr().err

    cosine = tmp_path / "cosine"
    assert main(["train", "--run-dir", str(cosine), "--model", "vae", "--epochs", "1", "--lr-schedule", "cosine",
                 "--media-every", "0", *data, *small]) == 0
    assert main(["train", "--resume", "--run-dir", str(cosine), "--epochs", "2"]) == 2
    assert "cosine learning-rate schedule is laid out over its 1 epochs" in capsys.readouterr().err


def test_cli_train_refuses_run_dirs_that_are_no_runs_folder(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    (tmp_path / "run" / "checkpoint").mkdir(parents=True)
    (tmp_path / "run" / "checkpoint" / "last.pt").write_bytes(b"")
    for run_dir, message in ((tmp_path / "a_file", "is a file, not a folder"),
                             (tmp_path / "run" / "checkpoint", f"is a run's checkpoint folder; give the run's own, "
                                                               f"{tmp_path / 'run'}")):
        assert main(["train", "--resume", "--run-dir", str(run_dir)]) == 2
        assert message in capsys.readouterr().err


def test_cli_train_refuses_windows_longer_than_every_utterance(speech_folder, tmp_path, capsys):
    data = ["--corpus", "folder", "--data-root", speech_folder["data_root"], "--cache-dir", speech_folder["cache_dir"]]
    assert main(["train", *data, "--seq-len", "100000", "--run-dir", str(tmp_path / "run")]) == 2
    assert "has no 100000-frame windows in its train split" in capsys.readouterr().err


def test_a_checkpoint_whose_weights_do_not_fit_its_config_is_refused(srnn_checkpoint, tmp_path, capsys):
    state = load_checkpoint(srnn_checkpoint)
    state["config"]["model"]["h_dim"] = 24
    save_checkpoint(state, tmp_path / "edited.pt")
    for command in (["evaluate", str(tmp_path / "edited.pt")], ["generate", str(tmp_path / "edited.pt")]):
        assert main(command) == 2
        assert "its config and weights do not make a model" in capsys.readouterr().err


def test_generate_refuses_what_it_could_not_write(srnn_checkpoint, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    assert main(["generate", str(srnn_checkpoint), "--out", str(tmp_path / "a_file")]) == 2
    assert "--out: " in capsys.readouterr().err
    assert main(["generate", str(srnn_checkpoint), "--seconds", "0.001"]) == 2
    assert "is shorter than two frames" in capsys.readouterr().err


def test_cli_train_interrupted_says_how_to_go_on(tmp_path, monkeypatch, capsys):
    def interrupted(cfg, run_dir, resume_from):
        raise KeyboardInterrupt
    monkeypatch.setattr("dvae.__main__.train", interrupted)
    assert main(["train", "--run-dir", str(tmp_path / "run"), "--epochs", "3"]) == 130
    assert f"go on from the last finished epoch with: python -m dvae train --resume --run-dir {tmp_path / 'run'}" \
        in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["evaluate", "/nonexistent/best.pt"], "checkpoint not found"),
    (["train", "--lr", "-1"], "lr: -1.0 is out of range"),
])
def test_cli_errors_are_one_line_and_exit_2(args, message):
    done = subprocess.run([sys.executable, "-m", "dvae", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


@pytest.mark.parametrize("args, message", [
    (["train", "--model", "nope"], "invalid choice: 'nope'"),
    (["train", "--z-dim", "0"], "z_dim: 0 is out of range"),
    (["train", "--corpus", "folder", "--data-root", "/nonexistent"], "/nonexistent is not a directory"),
    (["train", "--resume"], "--resume needs"),
    (["generate", "/nonexistent/best.pt", "--n", "0"], "--n: must be a finite number >= 1"),
    (["generate", "/nonexistent/best.pt", "--seconds", "inf"], "--seconds: must be a finite number > 0, got inf"),
    (["train", "--lr", "nan"], "lr: nan is not a finite number"),
    (["train", "--device", "gpu"], "device: 'gpu' is not a device; choose auto, cpu, cuda or cuda:N"),
])
def test_more_cli_errors_in_process(args, message, capsys):
    try:
        status = main(args)
    except SystemExit as exit:  # argparse's own errors
        status = exit.code
    stderr = capsys.readouterr().err
    assert status == 2
    assert len(stderr.strip().splitlines()) == 1 and message in stderr


def test_generation_at_temperature_zero_is_the_same_whatever_the_seed(srnn_checkpoint, tmp_path):
    def wave(seed, temperature):
        written = generate_from_checkpoint(srnn_checkpoint, tmp_path / f"{seed}-{temperature}", seconds=0.5, n=1,
                                           seed=seed, temperature=temperature)
        return sf.read(next(p for p in written if p.suffix == ".wav"))[0]
    assert np.allclose(wave(0, 0.0), wave(1, 0.0))  # the prior's location: nothing left to chance
    assert not np.allclose(wave(0, 1.0), wave(1, 1.0))
