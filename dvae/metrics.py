"""Per-utterance quality metrics and their 95% confidence interval over a test set.

Speech metrics compare a resynthesised waveform with the clean one, both 16 kHz and of
the same length: SI-SDR (computed here: it is a few lines), PESQ wideband and narrowband
(ITU-T P.862.2 / P.862 through the `pesq` package) and ESTOI (`pystoi`). Motion metrics
compare joint positions in millimetres: MPJPE and RMSE.

PESQ refuses some inputs (silent or too short signals); it then scores NaN instead of
stopping an evaluation, and `mean_ci` leaves NaNs out. The caller reports how many
values went into each mean.
"""
from __future__ import annotations

import math

import numpy as np
import pesq as pesq_package
import pystoi
import scipy.stats
import torch
import torchaudio.functional

SAMPLE_RATE = 16000
NARROWBAND_RATE = 8000
# SI-SDR of an exact copy divides by a zero residual; the residual energy is floored at this
# fraction of the target's, so a perfect estimate scores a finite 300 dB (float64 rounding
# noise is around -320 dB) and the metric stays scale-invariant.
SI_SDR_FLOOR = 1e-30


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., 2019).

    Both signals are made zero-mean; the reference is scaled to best fit the estimate, and
    the ratio is that scaled reference's energy over the residual's. NaN for a silent
    reference, for which no scaling is defined.
    """
    reference, estimate = _pair(reference, estimate)
    reference = reference - reference.mean()
    estimate = estimate - estimate.mean()
    reference_energy = np.dot(reference, reference)
    if reference_energy == 0.0:
        return math.nan
    target = np.dot(estimate, reference) / reference_energy * reference
    target_energy = np.dot(target, target)
    if target_energy == 0.0:  # silent, or orthogonal to the reference: nothing of it is there
        return -math.inf
    residual = estimate - target
    residual_energy = max(np.dot(residual, residual), target_energy * SI_SDR_FLOOR)
    return float(10.0 * np.log10(target_energy / residual_energy))


def pesq_wb(reference: np.ndarray, degraded: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Wideband PESQ (P.862.2, MOS-LQO from about 1.04 to 4.64) of 16 kHz signals; NaN where PESQ refuses."""
    if rate != SAMPLE_RATE:
        raise ValueError(f"wideband PESQ needs {SAMPLE_RATE} Hz audio, got {rate} Hz")
    return _pesq(reference, degraded, SAMPLE_RATE, "wb")


def pesq_nb(reference: np.ndarray, degraded: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Narrowband PESQ (P.862 with the P.862.1 MOS-LQO mapping, about 1.02 to 4.55) on the
    signals resampled to 8 kHz, the telephone band it was defined for; NaN where PESQ refuses."""
    reference, degraded = (_resample(x, rate, NARROWBAND_RATE) for x in _pair(reference, degraded))
    return _pesq(reference, degraded, NARROWBAND_RATE, "nb")


def estoi(reference: np.ndarray, degraded: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Extended short-time objective intelligibility (Jensen & Taal, 2016), about 0 to 1."""
    reference, degraded = _pair(reference, degraded)
    return float(pystoi.stoi(reference, degraded, rate, extended=True))


def rmse(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Root mean squared error over all elements, in the data's units."""
    reference, estimate = _pair(reference, estimate)
    return float(np.sqrt(np.mean((reference - estimate) ** 2)))


def mpjpe(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Mean per-joint position error: the Euclidean distance between true and estimated
    joints, averaged over joints and frames. Inputs are (T, J*3) with x, y, z of each
    joint side by side; the result is in their units (mm)."""
    reference, estimate = _pair(reference, estimate)
    if reference.ndim != 2 or reference.shape[1] % 3:
        raise ValueError(f"MPJPE needs (frames, joints * 3) arrays, got shape {reference.shape}")
    error = (reference - estimate).reshape(len(reference), -1, 3)
    return float(np.linalg.norm(error, axis=-1).mean())


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float]:
    """Mean of the finite values and the half-width of its Student-t confidence interval.

    NaN and infinite values (failed metrics) are left out. Half-width NaN with fewer than
    two values, both NaN with none.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    if n == 1:
        return float(values[0]), math.nan
    quantile = scipy.stats.t.ppf(0.5 + confidence / 2, df=n - 1)
    return float(values.mean()), float(quantile * values.std(ddof=1) / math.sqrt(n))


def _pesq(reference: np.ndarray, degraded: np.ndarray, rate: int, mode: str) -> float:
    reference, degraded = _pair(reference, degraded)
    # Both silent: the package would divide by their zero peak before PESQ could refuse.
    if not (np.isfinite(reference).all() and np.isfinite(degraded).all()) or not (reference.any() or degraded.any()):
        return math.nan
    try:
        return float(pesq_package.pesq(rate, reference, degraded, mode))
    except pesq_package.PesqError:  # no utterance found, buffer too short
        return math.nan


def _resample(wave: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    if rate == new_rate:
        return wave
    return torchaudio.functional.resample(torch.from_numpy(wave), rate, new_rate).numpy()


def _pair(reference, estimate) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 arrays (float32 sums lose the precision SI-SDR needs), of one shape."""
    reference = np.asarray(reference, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    if reference.shape != estimate.shape:
        raise ValueError(f"reference and estimate differ in shape: {reference.shape} vs {estimate.shape}")
    return reference, estimate
