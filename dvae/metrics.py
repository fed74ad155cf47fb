"""Per-utterance quality metrics and their 95% confidence interval over a test set.

Speech metrics compare a resynthesised waveform with the clean one, both 16 kHz and of
the same length, as the DVAE review computed them (`PROTOCOL` states each definition):
SI-SDR without mean removal, PESQ as raw P.862 narrowband MOS at 16 kHz (what the review's
`pypesq` returns), wideband PESQ (P.862.2 MOS-LQO) as a column of its own, and ESTOI
(`pystoi`). Motion metrics compare joint positions in millimetres: MPJPE and RMSE.

A metric that cannot score an utterance (PESQ refusing a silent or too short signal,
ESTOI with under 384 ms of speech left after its silence removal) gives NaN: that
utterance is left out of that metric's mean and counted as unscored. A failed estimate
is another thing: a silent or orthogonal reconstruction has SI-SDR -inf, which `summarise`
floors at SI_SDR_MIN_DB and counts, so the worst utterances stay in the mean.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pesq as pesq_package
import pystoi
import scipy.stats

SAMPLE_RATE = 16000
# SI-SDR of an exact copy divides by a zero residual; the residual energy is floored at this
# fraction of the target's, so a perfect estimate scores a finite 300 dB (float64 rounding
# noise is around -320 dB) and the metric stays scale-invariant.
SI_SDR_FLOOR = 1e-30
# A failed estimate (silent, orthogonal: SI-SDR -inf) counts in the mean at this value, the
# SI-SDR of a target 100 000 times weaker than its residual.
SI_SDR_MIN_DB = -50.0
# P.862.1's mapping of raw P.862 MOS to MOS-LQO, which the `pesq` package applies in narrowband mode.
P862_1 = (0.999, 4.0, 1.4945, 4.6607)  # lqo = a + b / (1 + exp(-c * raw + d))

PROTOCOL = {
    "si_sdr": "SI-SDR in dB, the reference scaled to best fit the estimate, no mean removal (as the review); "
              f"a silent or orthogonal estimate (-inf) counted at {SI_SDR_MIN_DB:g} dB",
    "pesq": "PESQ as the review: raw ITU-T P.862 narrowband MOS (no P.862.1 mapping) of the 16 kHz signals, "
            "the value pypesq returns; from the pesq package's 16 kHz narrowband MOS-LQO through the inverse "
            "of the P.862.1 mapping",
    "pesq_wb": "wideband PESQ, ITU-T P.862.2 MOS-LQO of the 16 kHz signals (pesq package)",
    "estoi": "ESTOI (pystoi, extended=True); an utterance with under 384 ms of speech after pystoi's "
             "silence removal is not scored",
    "mpjpe": "mean per-joint position error in mm over joints and frames",
    "rmse": "root mean squared error over all coordinates, mm",
}


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., 2019).

    The reference is scaled to best fit the estimate, and the ratio is that scaled
    reference's energy over the residual's. As in the DVAE review, the signals' means are
    not removed first (Le Roux et al. remove them; for speech they are near zero). NaN for
    a silent reference, for which no scaling is defined; -inf for an estimate with nothing
    of the reference in it.
    """
    reference, estimate = _pair(reference, estimate)
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


def pesq(reference: np.ndarray, degraded: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """PESQ as the DVAE review computed it: the raw ITU-T P.862 narrowband MOS (about -0.5
    to 4.5) of 16 kHz signals, without the P.862.1 mapping to MOS-LQO; NaN where PESQ refuses.

    The signals are first quantised as pypesq does (both scaled by 1/peak when their joint
    peak exceeds 1, times 32767, truncated to 16-bit integers). The `pesq` package runs the
    same P.862 narrowband model and returns its score mapped by P.862.1, a strictly
    increasing logistic function whose inverse gives back the raw score.
    """
    if rate != SAMPLE_RATE:
        raise ValueError(f"PESQ as the review computed it needs {SAMPLE_RATE} Hz audio, got {rate} Hz")
    reference, degraded = _pair(reference, degraded)
    peak = max(np.abs(reference).max(initial=0.0), np.abs(degraded).max(initial=0.0))
    scale = 32767.0 / peak if peak > 1.0 else 32767.0
    reference, degraded = (np.trunc(x * scale) for x in (reference, degraded))
    lqo = _pesq(reference, degraded, SAMPLE_RATE, "nb")
    if math.isnan(lqo):
        return lqo
    a, b, c, d = P862_1
    return (d - math.log(b / (lqo - a) - 1.0)) / c


def estoi(reference: np.ndarray, degraded: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Extended short-time objective intelligibility (Jensen & Taal, 2016), about 0 to 1;
    NaN for an utterance too short to score (pystoi would warn and return 1e-5)."""
    reference, degraded = _pair(reference, degraded)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = float(pystoi.stoi(reference, degraded, rate, extended=True))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return math.nan
    return score


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

    NaN and infinite values are left out. Half-width NaN with fewer than two values, both
    NaN with none.
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


def summarise(values, floor: float | None = None) -> dict:
    """A metric over a test set: {"mean", "ci95", "n", "floored", "unscored"}.

    NaN marks an utterance the metric could not score: it is left out and counted in
    `unscored`. With `floor`, values below it (-inf included: failed estimates) count at
    `floor` and in `floored`; without, an infinite value is an error of the metric.
    """
    values = np.asarray(values, dtype=np.float64)
    scored = values[~np.isnan(values)]
    floored = 0
    if floor is not None:
        floored = int((scored < floor).sum())
        scored = np.maximum(scored, floor)
    elif not np.isfinite(scored).all():
        raise ValueError("an infinite score needs a floor to be counted")
    mean, half_width = mean_ci(scored)
    return {"mean": mean, "ci95": half_width, "n": int(len(scored)), "floored": floored,
            "unscored": int(len(values) - len(scored))}


def _pesq(reference: np.ndarray, degraded: np.ndarray, rate: int, mode: str) -> float:
    reference, degraded = _pair(reference, degraded)
    # Both silent: the package would divide by their zero peak before PESQ could refuse.
    if not (np.isfinite(reference).all() and np.isfinite(degraded).all()) or not (reference.any() or degraded.any()):
        return math.nan
    try:
        return float(pesq_package.pesq(rate, reference, degraded, mode))
    except pesq_package.PesqError:  # no utterance found, buffer too short
        return math.nan


def _pair(reference, estimate) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 arrays (float32 sums lose the precision SI-SDR needs), of one shape."""
    reference = np.asarray(reference, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    if reference.shape != estimate.shape:
        raise ValueError(f"reference and estimate differ in shape: {reference.shape} vs {estimate.shape}")
    return reference, estimate
