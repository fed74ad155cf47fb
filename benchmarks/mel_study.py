"""The mel-spectrogram study, answered with seeds: search, confirmation, scores, findings.

    python -m benchmarks.mel_study                     # budget small: about an hour on 2 cores
    python -m benchmarks.mel_study --budget smoke --storage /tmp/ms --out /tmp/ms-results

Runs, each step resumable (a step already done is skipped or continued, so the same command
goes on after an interruption):

1. the search: `tune_runner.py --space mel_study --budget BUDGET --name mel-study-BUDGET`;
2. its confirmation: `tune_runner.py --confirm <search> --seeds 0,1,2` (every picked
   configuration, each once per seed, to the budget's end);
3. the test scores of every confirmed trial: `analysis.evaluate <confirmation> --k 1000
   --max-utterances N` (SI-SDR, PESQ, ESTOI; mel frames back to sound with the default phase);
4. the findings: `analysis.findings <confirmation>`, written to
   benchmarks/results/mel_study_findings.json;
5. generated speech, measured (`dvae score-generation`, temperatures 1, 0.5 and 0) for the
   best confirmed configuration of each model and prior, and for each model's best with
   primes of 0.5 and 2 s besides the 1 s default, collected in
   benchmarks/results/mel_study_generation.json.

Each step's command and wall time go to benchmarks/results/mel_study_run.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", default="small", choices=("smoke", "small", "full"))
    p.add_argument("--storage", default=str(ROOT / "experiments"), help="where the two experiments go")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--test-utterances", type=int, default=40, help="test utterances each trial is scored on (default 40)")
    p.add_argument("--out", default=str(RESULTS), help="folder of the results files (default benchmarks/results)")
    args = p.parse_args(argv)
    storage, out = Path(args.storage).resolve(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    search = storage / f"mel-study-{args.budget}"
    confirmation = storage / f"{search.name}-confirm"
    log_path = out / "mel_study_run.json"
    steps = json.loads(log_path.read_text())["steps"] if log_path.is_file() else {}
    python = sys.executable
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}

    def step(name: str, command: list[str]) -> None:
        print(f"== {name}: {' '.join(command)}", flush=True)
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env=env, check=True)
        spent = time.perf_counter() - started
        steps[name] = {"command": " ".join(command), "wall_s": spent + steps.get(name, {}).get("wall_s", 0.0)}
        log_path.write_text(json.dumps({"budget": args.budget, "machine": machine(), "steps": steps}, indent=1) + "\n")

    runner = [python, "tune_runner.py", "--storage", str(storage), "--no-dashboard"]
    if (search / "search.json").is_file():
        step("search", [*runner, "--resume", "--name", search.name])
    else:
        step("search", [*runner, "--space", "mel_study", "--budget", args.budget, "--name", search.name])
    if (confirmation / "search.json").is_file():
        step("confirmation", [*runner, "--resume", "--name", confirmation.name, "--quick-test", "0"])
    else:
        step("confirmation", [*runner, "--confirm", str(search), "--seeds", args.seeds, "--name", confirmation.name,
                              "--quick-test", "0"])
    step("scores", [python, "-m", "analysis.evaluate", str(confirmation), "--k", "1000", "--max-utterances",
                    str(args.test_utterances), "--jobs", "2", "--finished"])
    step("findings", [python, "-m", "analysis.findings", str(confirmation), "--out", str(out / "mel_study_findings.json")])
    measured = {}
    best = best_per_model_and_prior(confirmation)
    for key, checkpoint in best.items():
        step(f"generation {key}", [python, "-m", "dvae", "score-generation", str(checkpoint), "--temperatures", "1,0.5,0"])
        measured[key] = json.loads((checkpoint.parent / "eval_test_generation.json").read_text())
    for model in dict.fromkeys(key.split("/")[0] for key in best):  # the model's best first: its best prior
        key, checkpoint = next((k, c) for k, c in best.items() if k.startswith(f"{model}/"))
        for prime in ("0.5", "2"):
            step(f"generation {key} prime {prime} s", [python, "-m", "dvae", "score-generation", str(checkpoint),
                                                         "--prime", prime])
            measured[f"{key} prime {prime} s"] = json.loads((checkpoint.parent / "eval_test_generation.json").read_text())
    (out / "mel_study_generation.json").write_text(json.dumps(measured, indent=1) + "\n")
    print(f"wrote {out / 'mel_study_findings.json'}, {out / 'mel_study_generation.json'}, {log_path}")
    return 0


def best_per_model_and_prior(experiment: Path) -> dict[str, Path]:
    """"<model>/<prior>": the best checkpoint of that model and prior's best configuration (by mean
    val_loss), each model's best prior first."""
    from analysis.leaderboard import configurations
    from analysis.results import CONFIG, load_trials
    table = configurations(load_trials(experiment))
    best = {}
    for _, row in table.iterrows():  # ranked within each model, best first
        key = f"{row['model']}/{row[CONFIG + 'prior']}"
        if key not in best and isinstance(row["checkpoint"], str):
            best[key] = Path(row["checkpoint"])
    return best


def machine() -> dict:
    from .main_job import cpu_model
    return {"cpu": cpu_model(), "cores": os.cpu_count()}


if __name__ == "__main__":
    sys.exit(main())
