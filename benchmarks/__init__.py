"""Benchmarks of the training step, of trials sharing a GPU and of a trial's start-up."""
import json
from pathlib import Path


def write_result(result: dict, out: Path) -> None:
    """Writes a benchmark's figures as JSON to `out` and says where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwritten to {out}")
