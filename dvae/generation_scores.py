"""How close generated speech comes to real speech, measured on log-mel frames.

Primed generation continues a real utterance: the continuation is compared frame by frame
with the true continuation by the log-spectral distance (dB) over its first 0.25, 0.5 and
1 s. Cold generation has nothing to be compared with frame by frame: the statistics of its
frames and their deltas (first differences, which carry the temporal structure that a
shuffle destroys) are compared with those of real test frames by the Fréchet distance of
the two Gaussians fitted to them.

Each measure comes with reference rows that give its scale, computed the same way:
- primed: another real utterance's frames after the same prime length (real speech, wrong
  content), the last prime frame held, the true continuation shuffled in time, and noise
  with the real frames' per-band mean and spread;
- cold: one half of the real test utterances against the other (real speech), the same
  half shuffled in time, and the same noise.

Frames are compared as natural-log mel magnitudes on the corpus's mel bands (for stft
features, the power spectrogram is first summed onto 80 Slaney mel bands).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import scipy.linalg
import torch

from .data.features import LOG_FLOOR, N_FREQS
from .models.distributions import sampling_temperature
from .data.audio import SAMPLE_RATE

DB_PER_NEPER = 20 / math.log(10)  # a natural-log magnitude difference in dB
HORIZONS_S = (0.25, 0.5, 1.0)
STFT_MEL_BANDS = 80


def log_mel(frames: np.ndarray, kind: str) -> np.ndarray:
    """(T, D) feature frames -> (T, bands) natural-log mel magnitudes."""
    if kind == "mel":
        return np.asarray(frames, dtype=np.float64)
    import torchaudio.transforms as T
    to_mel = T.MelScale(n_mels=STFT_MEL_BANDS, sample_rate=SAMPLE_RATE, n_stft=N_FREQS, norm="slaney",
                        mel_scale="slaney").double()
    magnitude = torch.from_numpy(np.asarray(frames, dtype=np.float64)).clamp(min=0).sqrt().T
    return torch.log(to_mel(magnitude) + LOG_FLOOR).T.numpy()


def log_spectral_distance(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Per frame, the root mean square over bands of the log-mel difference, in dB."""
    return DB_PER_NEPER * np.sqrt(np.mean((np.asarray(reference) - np.asarray(estimate)) ** 2, axis=-1))


def with_deltas(frames: np.ndarray) -> np.ndarray:
    """(T, B) -> (T - 1, 2B): each frame beside its change from the previous one."""
    return np.concatenate([frames[1:], np.diff(frames, axis=0)], axis=1)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the rows of `a` and of `b`:
    |μa - μb|² + tr(Σa + Σb - 2 (Σa Σb)^½)."""
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    distance = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * np.real(root))
    return float(max(distance, 0.0))


def noise_like(frames: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` frames of independent Gaussian noise with `frames`' per-band mean and spread."""
    return rng.normal(frames.mean(axis=0), frames.std(axis=0) + 1e-12, size=(n, frames.shape[1]))


def primed_scores(continuations: dict[str, list[np.ndarray]], truths: list[np.ndarray], frame_rate: float) -> dict:
    """{row: {"lsd_0.25s": mean dB, ...}} for lists of continuations aligned with `truths`."""
    scores = {}
    for row, estimates in continuations.items():
        scores[row] = {}
        for horizon in HORIZONS_S:
            n = max(1, round(horizon * frame_rate))
            per_utterance = [float(log_spectral_distance(t[:n], e[:n]).mean()) for t, e in zip(truths, estimates)]
            scores[row][f"lsd_{horizon:g}s"] = float(np.mean(per_utterance))
    return scores


def score_generation(model, corpus, split: str = "test", prime_s: float = 1.0, cold_s: float = 3.0,
                     n_cold: int = 8, max_utterances: Optional[int] = 40, seed: int = 0,
                     temperatures: tuple[float, ...] = (1.0,)) -> dict:
    """Primed and cold generation of `model` on `corpus`'s `split`, with the reference rows;
    one model row per sampling temperature of the latents ("model" at 1, "model, T=0.5" ...)."""
    kind = corpus.extractor.kind
    frame_rate = corpus.frame_rate
    n_prime, n_next = round(prime_s * frame_rate), round(max(HORIZONS_S) * frame_rate)
    utterances = [u for u in corpus.utterances(split) if len(u.features) >= n_prime + n_next]
    utterances = utterances[:max_utterances] if max_utterances else utterances
    if len(utterances) < 4:
        raise ValueError(f"only {len(utterances)} {split} utterances last {prime_s + max(HORIZONS_S):g} s; "
                         "at least 4 are needed")
    rng = np.random.default_rng(seed)
    real = [log_mel(np.asarray(u.features), kind) for u in utterances]
    truths = [r[n_prime:n_prime + n_next] for r in real]
    all_real = np.concatenate(real)

    generated, cold = {}, {}
    for temperature in temperatures:
        row = "model" if temperature == 1.0 else f"model, T={temperature:g}"
        generated[row] = []
        with torch.random.fork_rng(devices=[]), sampling_temperature(model, temperature):
            torch.manual_seed(seed)
            for u in utterances:
                prime = torch.from_numpy(np.array(u.features[:n_prime], dtype=np.float32))[None]
                generated[row].append(log_mel(model.generate(n_next, batch=1, prime=prime)[0].numpy(), kind))
            cold[row] = model.generate(round(cold_s * frame_rate), batch=n_cold).numpy()
    continuations = {
        **generated,
        "another utterance": [truths[(i + 1) % len(truths)] for i in range(len(truths))],
        "last prime frame held": [np.repeat(r[n_prime - 1:n_prime], n_next, axis=0) for r in real],
        "true continuation shuffled": [t[rng.permutation(len(t))] for t in truths],
        "noise": [noise_like(all_real, n_next, rng) for _ in truths],
    }
    half = len(real) // 2
    reference = with_deltas_of(real[:half])
    other_half = np.concatenate(real[half:])
    cold_rows = {
        **{row: with_deltas_of([log_mel(c, kind) for c in sequences]) for row, sequences in cold.items()},
        "real speech (the other half)": with_deltas_of(real[half:]),
        "real frames shuffled": with_deltas(other_half[rng.permutation(len(other_half))]),
        "noise": with_deltas(noise_like(np.concatenate(real[:half]), len(other_half), rng)),
    }
    return {
        "split": split, "utterances": len(utterances), "prime_s": prime_s, "cold_s": cold_s, "n_cold": n_cold,
        "seed": seed, "temperatures": list(temperatures), "frames": f"log mel ({'the features' if kind == 'mel' else f'{STFT_MEL_BANDS} Slaney bands'})",
        "primed": primed_scores(continuations, truths, frame_rate),
        "cold": {row: {"frechet": frechet_distance(reference, stats)} for row, stats in cold_rows.items()},
    }


def with_deltas_of(sequences: list[np.ndarray]) -> np.ndarray:
    """Frames beside their deltas, each sequence on its own (no delta across two sequences)."""
    return np.concatenate([with_deltas(s) for s in sequences])


def score_checkpoint(path: str | Path, split: str = "test", prime_s: float = 1.0, cold_s: float = 3.0,
                     n_cold: int = 8, max_utterances: Optional[int] = 40, seed: int = 0,
                     temperatures: tuple[float, ...] = (1.0,)) -> dict:
    """`score_generation` of a checkpoint on its own corpus, written to
    eval_<split>_generation.json beside it (`generation_result_path`)."""
    from .checkpoint import load_model
    from .config import MOTION_CORPORA, ConfigError
    from .data import prepare_corpus
    from .evaluation import check_split
    from .experiment import generation_result_path
    check_split(split)
    model, cfg = load_model(path)
    if cfg.data.corpus in MOTION_CORPORA:
        raise ConfigError(f"{cfg.data.corpus} is motion capture; generated speech is what is measured here")
    result = score_generation(model, prepare_corpus(cfg.data), split, prime_s, cold_s, n_cold, max_utterances, seed,
                              temperatures)
    result["checkpoint"] = str(Path(path).absolute())
    out = generation_result_path(Path(path), split)
    out.write_text(json.dumps(result, indent=1))
    result["json"] = str(out)
    return result


def format_scores(result: dict) -> str:
    """The primed and cold rows as two aligned text tables."""
    horizons = [f"lsd_{h:g}s" for h in HORIZONS_S]
    lines = [f"primed ({result['prime_s']:g} s of {result['utterances']} {result['split']} utterances), "
             "log-spectral distance to the true continuation (dB):",
             f"  {'':<28}" + "".join(f"{'first ' + h[4:]:>14}" for h in horizons)]
    lines += [f"  {row:<28}" + "".join(f"{s[h]:>14.2f}" for h in horizons) for row, s in result["primed"].items()]
    lines.append(f"cold ({result['n_cold']} x {result['cold_s']:g} s), Fréchet distance of frames and deltas "
                 "to half the real utterances:")
    lines += [f"  {row:<28}{s['frechet']:>14.1f}" for row, s in result["cold"].items()]
    return "\n".join(lines)
