"""Phase for magnitude spectrograms (dvae.data.phase), on a signal whose phase is known."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dvae.data import FeatureExtractor
from dvae.data.features import HOP_LENGTH, N_FFT
from dvae.data.phase import PHASE_METHODS, gaussian_gamma, istft, stft, with_phase


def voiced(seconds: float = 1.0, rate: int = 16_000) -> torch.Tensor:
    """A speech-like test signal: a gliding 120-180 Hz harmonic source under two moving formants."""
    t = np.arange(int(seconds * rate) // HOP_LENGTH * HOP_LENGTH) / rate  # whole hops: frames give it back exactly
    f0 = 120 + 60 * t / seconds
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave = np.zeros_like(t)
    for k in range(1, 30):
        frequency = k * f0
        formants = np.exp(-((frequency - (500 + 300 * t)) / 200) ** 2) + 0.5 * np.exp(-((frequency - 1500) / 300) ** 2)
        wave += formants * np.sin(k * phase) / k
    return torch.from_numpy(wave / np.abs(wave).max())


def inconsistency(magnitude: torch.Tensor, spec: torch.Tensor) -> float:
    """How far the STFT of spec's waveform is from the magnitude asked for (spectral convergence)."""
    rebuilt = stft(istft(spec, HOP_LENGTH * (magnitude.shape[-1] - 1))).abs()
    return float((rebuilt - magnitude).norm() / magnitude.norm())


@pytest.fixture(scope="module")
def magnitude():
    return stft(voiced()).abs()


def test_the_window_spread_gives_the_papers_gamma_for_a_hann_window():
    hann = np.sin(np.pi * (np.arange(N_FFT) + 0.5) / N_FFT) ** 2
    assert gaussian_gamma(hann) / N_FFT ** 2 == pytest.approx(0.25645, rel=0.03)  # Průša et al., table 1


def test_each_method_finds_a_phase_nearer_the_truth_than_a_random_one(magnitude):
    generator = torch.Generator().manual_seed(0)
    random_phase = (torch.rand(magnitude.shape, generator=generator, dtype=magnitude.dtype) * 2 - 1) * math.pi
    true = inconsistency(magnitude, stft(voiced()))
    random = inconsistency(magnitude, torch.polar(magnitude, random_phase))
    found = {method: inconsistency(magnitude, with_phase(magnitude, method, 32)) for method in PHASE_METHODS}
    assert true < 1e-6 and random > 0.5
    assert all(true < value < random / 2 for value in found.values()), found
    # more projections, a more consistent spectrogram; momentum gets there faster
    assert inconsistency(magnitude, with_phase(magnitude, "griffin_lim", 8)) > found["griffin_lim"]
    assert found["fast_griffin_lim"] < found["griffin_lim"]
    assert found["pghi_fast_griffin_lim"] < found["pghi"]  # Griffin-Lim refines PGHI's start


def test_resynthesis_without_a_phase_uses_the_chosen_method_at_the_frames_length():
    wave = voiced(0.5).float()
    for method in PHASE_METHODS:
        extractor = FeatureExtractor("mel", n_mels=40, phase_method=method, phase_iterations=4)
        frames = extractor.analyse(wave)
        out = extractor.resynthesise(frames, length=len(wave))
        assert out.shape == wave.shape and torch.isfinite(out).all(), method
    with pytest.raises(ValueError, match="unknown phase method 'vocoder'"):
        FeatureExtractor("mel", n_mels=40, phase_method="vocoder").resynthesise(frames)
