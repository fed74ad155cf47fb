"""Listening to (and looking at) what a trained model generates on its own.

Cold start: latents from the prior, the decoder feeding back its own output from the
first frame. Primed: the first `prime_seconds` of real utterances of a split set the
model's state, then it runs free. Speech comes out as 16 kHz wavs (features back to a
waveform with an estimated phase (dvae.data.phase), since a generated spectrogram has none) with a spectrogram
PNG of each; a primed wav holds the real prime followed by the continuation. Motion
comes out as .npy joint sequences (frames, joints * 3) in mm with a PNG of a few joints'
trajectories.
"""
from __future__ import annotations

import logging
import itertools
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from matplotlib.figure import Figure  # no pyplot: figures render with Agg, no display or global state

from .checkpoint import load_model
from .config import MOTION_CORPORA, Config, ConfigError
from .data import FeatureExtractor, prepare_corpus
from .data.audio import SAMPLE_RATE
from .data.motion import FRAME_RATE as MOTION_FRAME_RATE
from .data.audio import file_stem, write_wav
from .evaluation import check_split, with_data
from .models.distributions import sampling_temperature

_log = logging.getLogger(__name__)
PLOTTED_JOINTS = 4  # the joints that move most are drawn; more lines would be unreadable


def generate_from_checkpoint(path: str | Path, out_dir: Optional[str | Path] = None, seconds: float = 3.0,
                             n: int = 2, prime_seconds: float = 0.0, seed: int = 0, split: str = "test",
                             data: Optional[dict] = None, log: Callable[[str], None] | None = None,
                             temperature: float = 1.0) -> list[Path]:
    """Generates `n` sequences of `seconds` each from a checkpoint; returns the files written.

    `prime_seconds` 0 is a cold start; above 0 each sequence continues one utterance of
    `split` (the first `n` that are long enough) of the checkpoint's corpus, or of another
    one with the same features given by `data` (DataConfig overrides). Files go to
    `out_dir` (default: generated/ beside the checkpoint): cold_<i>.* and primed_<i>_<utterance>.*.
    Fewer than `n` primed sequences come out, with a note to `log`, when fewer utterances are
    long enough. `temperature` scales the latents' spread around the prior's location
    (dvae.models.distributions.sampling_temperature; 0: the location itself).
    """
    log = log or _log.info
    if seconds <= 0 or n < 1 or prime_seconds < 0:
        raise ConfigError(f"need seconds > 0, n >= 1 and prime >= 0 (got {seconds}, {n}, {prime_seconds})")
    check_split(split)
    model, cfg = load_model(path)
    cfg = with_data(cfg, data)
    out_dir = Path(out_dir) if out_dir is not None else Path(path).parent / "generated"
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out: {out_dir} is a file, not a folder")
    extractor, frame_rate = signal_format(cfg)
    n_frames = round(seconds * frame_rate)
    if n_frames < 2:  # the phase estimate and the plots need two frames
        raise ConfigError(f"--seconds: {seconds} is shorter than two frames ({2 / frame_rate:.3g} s)")
    if extractor is not None:
        n_frames += 1  # centred STFT frames: n frames span n - 1 hops of audio
    primes = _primes(cfg, split, max(1, round(prime_seconds * frame_rate)), n) if prime_seconds > 0 else []
    if primes and len(primes) < n:
        log(f"only {len(primes)} {split} utterances last {prime_seconds} s or more: generating {len(primes)}")

    # Each sample: (file name, real prime frames or None, its waveform or None, generated frames).
    with torch.random.fork_rng(devices=[]), sampling_temperature(model, temperature):
        torch.manual_seed(seed)
        if not primes:
            generated = model.generate(n_frames, batch=n).numpy()
            samples = [(f"cold_{i:02d}", None, None, generated[i]) for i in range(n)]
        else:
            samples = [(f"primed_{i:02d}_{file_stem(name)}", prime, wave,
                        model.generate(n_frames, batch=1, prime=torch.from_numpy(prime)[None])[0].numpy())
                       for i, (name, prime, wave) in enumerate(primes)]

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, prime, prime_wave, frames in samples:
        prime_end = 0.0 if prime is None else len(prime) / frame_rate
        if extractor is None:
            joints = frames if prime is None else np.concatenate([prime, frames])
            np.save(out_dir / f"{name}.npy", joints.astype(np.float32))
            written.append(out_dir / f"{name}.npy")
            written.append(plot_joints(joints, frame_rate, out_dir / f"{name}.png", name, prime_end))
        else:
            hop = extractor.hop_length
            wave = extractor.resynthesise(torch.from_numpy(frames)).numpy()
            if prime is not None:
                wave = np.concatenate([prime_wave[:len(prime) * hop], wave])
            written.append(write_wav(out_dir / f"{name}.wav", wave))
            written.append(plot_spectrogram(wave, out_dir / f"{name}.png", name, prime_end))
    return written


def signal_format(cfg: Config) -> tuple[Optional[FeatureExtractor], float]:
    """The feature extractor (None for motion) and frame rate of a config's data, without
    preparing the corpus: a cold start needs no data at all."""
    if cfg.data.corpus in MOTION_CORPORA:
        return None, float(MOTION_FRAME_RATE)
    extractor = FeatureExtractor(cfg.data.features, cfg.data.n_mels)
    return extractor, extractor.frame_rate


def plot_spectrogram(wave: np.ndarray, path: Path, title: str, prime_end: float = 0.0) -> Path:
    """The wav's spectrogram in dB, with a line where the real prime ends (if any)."""
    fig = Figure(figsize=(8, 3.5))
    ax = fig.subplots()
    # 64 ms windows, 16 ms hop: the features' own time-frequency resolution.
    ax.specgram(wave, NFFT=1024, Fs=SAMPLE_RATE, noverlap=768, cmap="magma", scale="dB")
    _mark_prime(ax, prime_end)
    ax.set(title=title, xlabel="time (s)", ylabel="frequency (Hz)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_joints(joints: np.ndarray, frame_rate: float, path: Path, title: str, prime_end: float = 0.0) -> Path:
    """x, y and z over time of the PLOTTED_JOINTS joints that move most (largest position variance)."""
    positions = joints.reshape(len(joints), -1, 3)
    moving = np.argsort(positions.var(axis=0).sum(axis=1))[::-1][:PLOTTED_JOINTS]
    time = np.arange(len(joints)) / frame_rate
    fig = Figure(figsize=(8, 6))
    axes = fig.subplots(3, 1, sharex=True)
    for axis, (ax, label) in enumerate(zip(axes, "xyz")):
        for joint in moving:
            ax.plot(time, positions[:, joint, axis], label=f"joint {joint}")
        _mark_prime(ax, prime_end)
        ax.set_ylabel(f"{label} (mm)")
    axes[0].set_title(title)
    axes[0].legend(loc="upper right", fontsize="small", ncol=PLOTTED_JOINTS)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _mark_prime(ax, prime_end: float) -> None:
    if prime_end > 0:
        ax.axvline(prime_end, color="tab:cyan", linestyle="--", label="end of prime")


def _primes(cfg: Config, split: str, n_prime: int, n: int) -> list[tuple[str, np.ndarray, Optional[np.ndarray]]]:
    """(name, first `n_prime` frames, waveform or None) of the first `n` utterances of the
    split that are at least that long."""
    corpus = prepare_corpus(cfg.data)
    long_enough = (u for u in corpus.utterances(split) if len(u.features) >= n_prime)
    primes = [(u.name, np.array(u.features[:n_prime], dtype=np.float32), u.waveform)
              for u in itertools.islice(long_enough, n)]
    if not primes:
        raise ConfigError(f"no {split} utterance of the {cfg.data.corpus} corpus lasts "
                          f"{n_prime / corpus.frame_rate:.2f} s: choose a shorter prime")
    return primes
