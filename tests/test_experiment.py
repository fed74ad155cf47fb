"""Where an experiment lives (dvae.experiment.Location): a folder, or a URI storage that the
runner uploads its own files to and the analysis reads through a local copy."""
from __future__ import annotations

import os
import sqlite3
import time

import pytest

from dvae import runner as tune_runner
from dvae.experiment import ExperimentError, Location, evaluation_files, local_copy


def test_an_experiment_on_a_uri_splits_into_storage_and_name_and_back():
    location = Location.parse("s3://bucket/runs/vrnn-small?region=eu-west-3")
    assert (location.storage, location.name) == ("s3://bucket/runs?region=eu-west-3", "vrnn-small")
    assert location.path == "s3://bucket/runs/vrnn-small?region=eu-west-3" and location.remote
    assert location.local != location.copy and location.local.name == location.copy.name == "vrnn-small"
    folder = Location.parse("experiments/vrnn-small")
    assert not folder.remote and folder.local == folder.copy == folder.local.absolute()
    with pytest.raises(ExperimentError, match="no name in this URI"):
        Location.parse("s3://bucket/")


def test_a_local_copy_follows_the_storage_and_keeps_what_it_is_told_to(tmp_path, monkeypatch):
    monkeypatch.setenv("DVAE_MIRROR", str(tmp_path / "mirror"))
    stored = tmp_path / "bucket" / "exp"
    (stored / "vrnn_a" / "checkpoint_000001").mkdir(parents=True)
    (stored / "vrnn_a" / "checkpoint_000001" / "best.pt").write_text("model")
    (stored / "vrnn_a" / "checkpoint_000001" / "eval_test.json").write_text("{}")
    (stored / "optuna.db").write_text("stored study")
    location = Location(f"file://{tmp_path / 'bucket'}", "exp")

    copy = local_copy(location.path)
    assert copy == location.copy and (copy / "vrnn_a" / "checkpoint_000001" / "best.pt").read_text() == "model"
    # stored times are kept: scores written after their checkpoint stay newer than it
    for name in ("best.pt", "eval_test.json"):
        assert (copy / "vrnn_a" / "checkpoint_000001" / name).stat().st_mtime == pytest.approx(
            (stored / "vrnn_a" / "checkpoint_000001" / name).stat().st_mtime, abs=1e-3)
    assert evaluation_files(copy) == ["vrnn_a/checkpoint_000001/eval_test.json"]

    later = time.time() + 5
    (stored / "vrnn_a" / "checkpoint_000001" / "best.pt").write_text("better")
    os.utime(stored / "vrnn_a" / "checkpoint_000001" / "best.pt", (later, later))
    (stored / "optuna.db").write_text("newer study")
    (location.local).mkdir(parents=True)
    (location.local / "optuna.db").write_text("the runner's live study")
    location.download(location.local, keep=("optuna.db",))
    assert (location.local / "optuna.db").read_text() == "the runner's live study"  # kept
    assert (location.local / "vrnn_a" / "checkpoint_000001" / "best.pt").read_text() == "better"
    assert local_copy(location.path) == copy and (copy / "optuna.db").read_text() == "newer study"
    top = location.download(tmp_path / "top", top_level=True)
    assert sorted(p.name for p in top.iterdir()) == ["optuna.db"]
    with pytest.raises(FileNotFoundError, match="no experiment at"):
        local_copy(f"file://{tmp_path / 'bucket'}/other")


def test_the_runners_files_are_uploaded_whole_a_study_through_sqlites_backup(tmp_path, monkeypatch):
    monkeypatch.setenv("DVAE_MIRROR", str(tmp_path / "mirror"))
    location = Location(f"file://{tmp_path / 'bucket'}", "exp")
    location.local.mkdir(parents=True)
    (location.local / "search.json").write_text('{"space": "vrnn_priors"}')
    (location.local / "vrnn_priors.yaml").write_text("description: x\n")
    live = sqlite3.connect(location.local / "optuna.db")
    live.execute("create table trials (number integer)")
    live.execute("insert into trials values (7)")
    live.commit()  # and still open, as the runner's study is
    location.upload_driver_files()
    stored = tmp_path / "bucket" / "exp"
    assert sorted(p.name for p in stored.iterdir()) == ["optuna.db", "search.json", "vrnn_priors.yaml"]
    with sqlite3.connect(stored / "optuna.db") as copy:
        assert copy.execute("select number from trials").fetchall() == [(7,)]
    live.close()


def test_a_storage_no_filesystem_reads_is_refused_before_ray_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DVAE_MIRROR", str(tmp_path / "mirror"))
    assert tune_runner.main(["--space", "vrnn_priors", "--storage", "nosuch://bucket/x", "--dry-run"]) == 2
    assert "--storage nosuch://bucket/x: no filesystem reads it" in capsys.readouterr().err
    storage = f"file://{tmp_path / 'bucket'}"
    assert tune_runner.main(["--resume", "--name", "gone", "--storage", storage, "--dry-run"]) == 2
    assert "no experiment to resume" in capsys.readouterr().err
    assert tune_runner.main(["--space", "vrnn_priors", "--budget", "smoke", "--storage", storage, "--name", "new",
                             "--dry-run"]) == 0
    assert f"experiment  {storage}/new" in capsys.readouterr().out
