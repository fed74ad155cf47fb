"""Waveforms from mel frames: how much of the speech survives each way of finding the phase.

    python -m benchmarks.phase_reconstruction                    # 40 test utterances of asterisk, 80 mel bands
    python -m benchmarks.phase_reconstruction --utterances 5 --out /tmp/phase.json

Analysis-resynthesis of real test utterances: the mel features of the true audio (as the
mel study's models see them), back to a magnitude spectrogram by the features' own inverse
mel scale, then to sound with the phase from each method of dvae.data.phase (at several
iteration counts), scored against the original with PESQ, ESTOI and SI-SDR. Two reference
rows bound the scale: the true phase on the mel-rebuilt magnitude (the best any phase
method can do from mel frames) and a random phase (what no method should do worse than).
Each method is also compared with the previous default (fast Griffin-Lim, 32 iterations)
utterance by utterance: the mean paired difference of each score with its 95% interval.
The study's aim is intelligibility, so ESTOI chooses the default among the methods that are
no clearly worse on PESQ. Writes benchmarks/results/phase_reconstruction.json (with every
utterance's scores) and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
BASELINE = "fast_griffin_lim (32)"  # the default before this comparison
CANDIDATES = (("griffin_lim", 32), ("griffin_lim", 100), ("fast_griffin_lim", 32), ("fast_griffin_lim", 100),
              ("pghi", 0), ("pghi_fast_griffin_lim", 32), ("pghi_fast_griffin_lim", 100))


def scores(reference: np.ndarray, wave: np.ndarray) -> dict:
    from dvae import metrics
    return {"pesq": metrics.pesq(reference, wave), "estoi": metrics.estoi(reference, wave),
            "si_sdr": metrics.si_sdr(reference, wave)}


def compare(waves: list[np.ndarray], n_mels: int, candidates=CANDIDATES, seed: int = 0) -> list[dict]:
    """One row per method: its mean scores over `waves` and seconds per second of audio."""
    import torch

    from dvae.data import FeatureExtractor
    from dvae.data.phase import with_phase
    extractor = FeatureExtractor("mel", n_mels).double()
    generator = torch.Generator().manual_seed(seed)
    rows: dict[str, dict] = {}

    def add(label: str, method: str, iterations, reference, wave, seconds):
        row = rows.setdefault(label, {"method": method, "iterations": iterations, "scores": [], "seconds": 0.0,
                                      "audio_s": 0.0})
        row["scores"].append(scores(reference, wave))
        row["seconds"] += seconds
        row["audio_s"] += len(reference) / extractor.sample_rate

    with_phase(torch.ones(513, 8, dtype=torch.float64), "pghi", 0)  # numba compiles PGHI here, not in the timing
    for wave in waves:
        signal = torch.from_numpy(wave).double()
        magnitude = extractor.magnitude(extractor.analyse(signal))
        true_phase = extractor.stft(signal).transpose(-1, -2).angle()
        length = len(wave)
        add("true phase", "true_phase", None, wave,
            extractor.inverse_spectrogram(torch.polar(magnitude, true_phase), length).numpy(), 0.0)
        random_phase = (torch.rand(magnitude.shape, generator=generator, dtype=torch.float64) * 2 - 1) * math.pi
        add("random phase", "random_phase", None, wave,
            extractor.inverse_spectrogram(torch.polar(magnitude, random_phase), length).numpy(), 0.0)
        for method, iterations in candidates:
            started = time.perf_counter()
            spec = with_phase(magnitude, method, iterations)
            rebuilt = extractor.inverse_spectrogram(spec, length).numpy()
            add(f"{method} ({iterations})" if iterations else method, method, iterations, wave, rebuilt,
                time.perf_counter() - started)
    from dvae.metrics import mean_ci
    table = []
    for label, row in rows.items():
        per_utterance = {k: [s[k] for s in row["scores"]] for k in ("pesq", "estoi", "si_sdr")}
        entry = {"label": label, "method": row["method"], "iterations": row["iterations"],
                 **{k: float(np.nanmean(v)) for k, v in per_utterance.items()},
                 "utterances": len(row["scores"]), "real_time_factor": row["seconds"] / row["audio_s"]}
        if BASELINE in rows and label != BASELINE:
            for k, values in per_utterance.items():
                mean, half = mean_ci(np.subtract(values, [s[k] for s in rows[BASELINE]["scores"]]))
                entry[f"delta_{k}"] = {"mean": mean, "ci95": [mean - half, mean + half]}
        entry["per_utterance"] = per_utterance
        table.append(entry)
    return table


def markdown(table: list[dict]) -> str:
    def delta(row, key, digits):
        d = row.get(f"delta_{key}")
        return "" if d is None else f" ({d['mean']:+.{digits}f} [{d['ci95'][0]:+.{digits}f}, {d['ci95'][1]:+.{digits}f}])"
    lines = [f"| phase | PESQ (Δ vs {BASELINE}, 95% CI) | ESTOI (Δ) | SI-SDR (dB) | seconds per second of audio |",
             "|---|---|---|---|---|"]
    for row in table:
        lines.append(f"| {row['label']} | {row['pesq']:.2f}{delta(row, 'pesq', 2)} | "
                     f"{row['estoi']:.3f}{delta(row, 'estoi', 3)} | {row['si_sdr']:.1f} | {row['real_time_factor']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default="asterisk")
    p.add_argument("--n-mels", type=int, default=80)
    p.add_argument("--utterances", type=int, default=40, help="the first N test utterances (default 40)")
    p.add_argument("--out", default=str(RESULTS / "phase_reconstruction.json"))
    args = p.parse_args(argv)
    import torch

    from dvae.config import DataConfig
    from dvae.data import DataError
    from dvae.data.audio import load_utterance
    from dvae.data.corpora import check_data_root, list_splits
    torch.set_num_threads(1)
    data = DataConfig(corpus=args.corpus, features="mel", n_mels=args.n_mels)
    try:
        check_data_root(data)
        items = list_splits(data)["test"][:args.utterances]
    except (DataError, ValueError) as e:
        print(f"benchmarks.phase_reconstruction: {e}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    table = compare([load_utterance(item.path) for item in items], args.n_mels)
    result = {"corpus": args.corpus, "split": "test", "utterances": len(items), "n_mels": args.n_mels,
              "threads": 1, "wall_s": time.perf_counter() - started, "rows": table}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(table))
    print(f"wrote {args.out} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
