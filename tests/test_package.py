"""The package as its users get it: a wheel installed into a fresh virtualenv and run from a
folder outside the checkout, and parameter importances under both Optuna versions it allows."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
OPTUNA_LOWEST = "4.0.0"  # the lower bound of pyproject.toml's range


def run(command: list[str], cwd: Path, env: dict | None = None, timeout: int = 600) -> str:
    done = subprocess.run(command, cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed ({done.returncode}):\n" \
                                 f"{(done.stdout + done.stderr)[-3000:]}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_virtualenv_and_runs_from_anywhere(tmp_path):
    # built from a copy of the sources: a build/ folder left in the checkout could carry stale modules
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "experiments", "runs",
                                                                "__pycache__", "*.egg-info", ".pytest_cache"))
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
         str(source)], cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("dvae_tune-*.whl"))
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    # The dependencies come from this environment's site-packages (a path, so its editable install of
    # this checkout is not active there); the project itself only from the wheel.
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], cwd=tmp_path)

    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    where = run([str(python), "-c", "import dvae, analysis; print(dvae.__file__); print(analysis.__file__)"], elsewhere)
    assert all(Path(line).is_relative_to(site) for line in where.split()), where
    listed = run([str(venv / "bin" / "dvae-tune"), "--list"], elsewhere)
    assert "vrnn_priors" in listed and "review_benchmark" in listed
    run([str(venv / "bin" / "dvae-tune"), "--space", "vrnn_priors", "--budget", "smoke", "--storage",
         str(elsewhere / "experiments"), "--name", "smoke", "--no-dashboard"], elsewhere)
    board = run([str(python), "-m", "analysis.leaderboard", "experiments/smoke", "--out", "board"], elsewhere)
    assert "VRNN" in board and (elsewhere / "board" / "leaderboard_best.csv").is_file()
    assert "--epochs" in run([str(venv / "bin" / "dvae"), "train", "--help"], elsewhere)


IMPORTANCES = textwrap.dedent("""
    import optuna
    from analysis.plots import param_importances
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (100 * t.suggest_float("lr", 1e-4, 1e-2, log=True) - 0.3) ** 2
                   + 0.01 * t.suggest_int("z", 1, 8), n_trials=30)
    values, why = param_importances(study)
    assert why is None and max(values, key=values.get) == "lr", (values, why)
    print(optuna.__version__)
""")


@pytest.mark.parametrize("version", [OPTUNA_LOWEST, None], ids=["optuna-lowest", "optuna-installed"])
def test_parameter_importances_under_each_optuna_the_package_allows(version, tmp_path):
    env = dict(ENV)
    if version:  # Optuna alone at its lowest allowed version, in front of the installed one
        run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "optuna"),
             f"optuna=={version}"], cwd=tmp_path, timeout=300)
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "optuna"), str(ROOT)])
    else:
        env["PYTHONPATH"] = str(ROOT)
    import optuna

    assert run([sys.executable, "-c", IMPORTANCES], cwd=tmp_path, env=env).strip() == (version or optuna.__version__)
