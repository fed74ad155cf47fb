"""Phase for a magnitude spectrogram that has none (a generated one, or one rebuilt from mel bands).

The STFT is the features' (dvae.data.features: 1024-sample sine window, hop 256, centred
frames). Methods, by name (`PHASE_METHODS`):

- ``griffin_lim``: Griffin and Lim (1984): alternately impose the magnitude and project on
  the set of consistent spectrograms (inverse STFT, then STFT), from zero phase.
- ``fast_griffin_lim``: the same with Perraudin et al.'s (2013) momentum α = 0.99:
  c_n = P(X_n), X_{n+1} = c_n + α / (1 + α) (c_n - c_{n-1}) taken on the phase.
- ``pghi``: phase-gradient heap integration (Průša et al., 2017), non-iterative: the phase's
  time and frequency derivatives follow from those of the log-magnitude for a Gaussian
  window, integrated from the largest coefficients down (the `pghipy` package). The sine
  window is treated as the Gaussian of the same time spread of its square: γ = 4π σ² with
  σ² = Σ t² w(t)² / Σ w(t)², which gives 0.251 L² for a Hann window (0.256 L² in the paper).
- ``pghi_fast_griffin_lim``: PGHI's phase as the start of fast Griffin-Lim.

`iterations` counts the Griffin-Lim steps (none for ``pghi``).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .features import HOP_LENGTH, N_FFT, sine_window

PHASE_NAMES = {"griffin_lim": "Griffin-Lim", "fast_griffin_lim": "fast Griffin-Lim",
               "pghi": "phase-gradient heap integration", "pghi_fast_griffin_lim": "PGHI, then fast Griffin-Lim"}
PHASE_METHODS = tuple(PHASE_NAMES)
MOMENTUM = 0.99


def _window(magnitude: torch.Tensor) -> torch.Tensor:
    return sine_window(N_FFT, magnitude.dtype).to(magnitude.device)


def istft(spec: torch.Tensor, length: int) -> torch.Tensor:
    """(..., 513, T) complex -> (..., length) waveform."""
    flat = spec.reshape(-1, *spec.shape[-2:])
    wave = torch.istft(flat, N_FFT, HOP_LENGTH, window=_window(spec.real), center=True, length=length)
    return wave.reshape(*spec.shape[:-2], length)


def stft(wave: torch.Tensor) -> torch.Tensor:
    """(..., n) waveform -> (..., 513, T) complex."""
    flat = wave.reshape(-1, wave.shape[-1])
    spec = torch.stft(flat, N_FFT, HOP_LENGTH, window=_window(wave), center=True, return_complex=True,
                      pad_mode="reflect")
    return spec.reshape(*wave.shape[:-1], *spec.shape[-2:])


def griffin_lim(magnitude: torch.Tensor, iterations: int, momentum: float = 0.0,
                phase: torch.Tensor | None = None) -> torch.Tensor:
    """(..., 513, T) magnitude -> the same with a phase (complex), after `iterations` projections
    from `phase` (radians; zero phase if None), with Perraudin's momentum if above 0."""
    length = HOP_LENGTH * (magnitude.shape[-1] - 1)
    angles = torch.polar(torch.ones_like(magnitude), phase if phase is not None else torch.zeros_like(magnitude))
    previous = torch.zeros_like(angles)
    for _ in range(iterations):
        rebuilt = stft(istft(magnitude * angles, length))
        step = rebuilt - (momentum / (1 + momentum)) * previous if momentum else rebuilt
        previous = rebuilt
        angles = step / step.abs().clamp(min=1e-16)
    return magnitude * angles


def gaussian_gamma(window: np.ndarray) -> float:
    """γ of the Gaussian window exp(-π t² / γ) with the time spread of `window`'s square."""
    t = np.arange(len(window)) - (len(window) - 1) / 2
    energy = window.astype(np.float64) ** 2
    return float(4 * math.pi * (t ** 2 * energy).sum() / energy.sum())


def pghi_phase(magnitude: torch.Tensor) -> torch.Tensor:
    """(..., 513, T) magnitude -> PGHI's phase in radians, same shape."""
    from pghipy import pghi
    gamma = gaussian_gamma(sine_window(N_FFT, torch.float64).numpy())
    frames = magnitude.detach().cpu().double().reshape(-1, *magnitude.shape[-2:]).numpy()
    phases = [pghi(np.ascontiguousarray(m.T), win_length=N_FFT, hop_length=HOP_LENGTH, gamma=gamma).T for m in frames]
    return torch.from_numpy(np.stack(phases)).reshape(magnitude.shape).to(magnitude.dtype).to(magnitude.device)


def with_phase(magnitude: torch.Tensor, method: str, iterations: int) -> torch.Tensor:
    """(..., 513, T) magnitude -> complex spectrogram whose phase `method` estimated."""
    if method not in PHASE_METHODS:
        raise ValueError(f"unknown phase method {method!r}; choose from {', '.join(PHASE_METHODS)}")
    if method == "griffin_lim":
        return griffin_lim(magnitude, iterations)
    if method == "fast_griffin_lim":
        return griffin_lim(magnitude, iterations, MOMENTUM)
    phase = pghi_phase(magnitude)
    if method == "pghi":
        return torch.polar(magnitude, phase)
    return griffin_lim(magnitude, iterations, MOMENTUM, phase)
