"""Speech features at 16 kHz and their way back to a waveform.

Two representations, both computed with torchaudio transforms:

- ``stft``: the power spectrogram |S|^2 of a 64 ms sine-window STFT (1024 samples,
  hop 256, 513 bins), the input of the DVAE review's Itakura-Saito models. Back to a
  waveform with the original phase (analysis-resynthesis: sqrt(power) e^{i phase},
  inverse STFT), or with an estimated one (dvae.data.phase) when no phase is given.
- ``mel``: log(mel + 1e-5) of the magnitude spectrogram on `n_mels` Slaney mel bands,
  as in mel-spectrogram vocoders. Back through InverseMelScale (least squares) and
  the original phase or an estimated one.

Frames are centred (``center=True``, reflect padding): n samples give 1 + n // 256
frames, and the inverse STFT with ``length=n`` returns exactly n samples. The squared
sine window sums to a constant at hop N/4, so analysis-resynthesis is exact up to
float rounding.
"""
from __future__ import annotations

import math
from typing import Literal, Optional

import torch
import torchaudio.transforms as T

from .audio import SAMPLE_RATE

N_FFT = 1024
HOP_LENGTH = 256
N_FREQS = N_FFT // 2 + 1
LOG_FLOOR = 1e-5
# How a waveform gets a phase it lacks: dvae.data.phase's method and its iterations
# (chosen by benchmarks/phase_reconstruction.py; see benchmarks/README.md)
DEFAULT_PHASE = ("pghi", 0)


def sine_window(length: int, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """sin(pi (n + 1/2) / N): the window of the DVAE review's STFT."""
    return torch.sin(math.pi * (torch.arange(length, dtype=torch.float64) + 0.5) / length).to(
        dtype or torch.get_default_dtype())


class FeatureExtractor(torch.nn.Module):
    """Turns 16 kHz waveforms into (T, D) feature frames and back.

    A Module only so that ``.to(device)`` moves its window and mel filters along.
    Inputs may carry leading batch dimensions: (..., n) -> (..., T, D) and back.
    """

    def __init__(self, kind: Literal["stft", "mel"] = "stft", n_mels: int = 80,
                 phase_method: str = DEFAULT_PHASE[0], phase_iterations: int = DEFAULT_PHASE[1]):
        super().__init__()
        if kind not in ("stft", "mel"):
            raise ValueError(f"unknown feature kind {kind!r}; choose 'stft' or 'mel'")
        self.kind = kind
        self.n_mels = n_mels
        self.phase_method, self.phase_iterations = phase_method, phase_iterations
        self.sample_rate = SAMPLE_RATE
        self.hop_length = HOP_LENGTH
        self.frame_rate = SAMPLE_RATE / HOP_LENGTH
        stft_args = dict(n_fft=N_FFT, hop_length=HOP_LENGTH, window_fn=sine_window)
        # stft features are the power spectrogram; mel bands are summed magnitudes.
        self.spectrogram = T.Spectrogram(power=2.0 if kind == "stft" else 1.0, **stft_args)
        self.complex_spectrogram = T.Spectrogram(power=None, **stft_args)
        self.inverse_spectrogram = T.InverseSpectrogram(**stft_args)
        if kind == "mel":
            mel_args = dict(n_mels=n_mels, sample_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney")
            self.mel_scale = T.MelScale(n_stft=N_FREQS, **mel_args)
            self.inverse_mel_scale = T.InverseMelScale(n_stft=N_FREQS, **mel_args)

    @property
    def feature_dim(self) -> int:
        return N_FREQS if self.kind == "stft" else self.n_mels

    def analyse(self, wave: torch.Tensor) -> torch.Tensor:
        """(..., n) waveform -> (..., T, D) features."""
        spec = self.spectrogram(wave)
        if self.kind == "mel":
            spec = torch.log(self.mel_scale(spec) + LOG_FLOOR)
        return spec.transpose(-1, -2)

    def stft(self, wave: torch.Tensor) -> torch.Tensor:
        """(..., n) waveform -> (..., T, 513) complex STFT, frames aligned with `analyse`."""
        return self.complex_spectrogram(wave).transpose(-1, -2)

    def magnitude(self, features: torch.Tensor) -> torch.Tensor:
        """(..., T, D) features -> (..., 513, T) STFT magnitude (for mel, InverseMelScale's estimate)."""
        spec = features.transpose(-1, -2)
        if self.kind == "stft":
            return spec.clamp(min=0).sqrt()
        return self.inverse_mel_scale((spec.exp() - LOG_FLOOR).clamp(min=0))

    def resynthesise(self, features: torch.Tensor, phase: Optional[torch.Tensor] = None,
                     length: Optional[int] = None) -> torch.Tensor:
        """(..., T, D) features -> (..., n) waveform.

        `phase` is (..., T, 513), either the complex STFT of the original (from `stft`)
        or its angle in radians. Given, it is combined with the features' magnitude
        and inverted exactly; absent, the phase is estimated by `phase_method`
        (dvae.data.phase). `length` is the number of samples wanted (default: what T
        frames give, 256 (T - 1)).
        """
        from .phase import with_phase
        magnitude = self.magnitude(features)
        if phase is not None:
            angle = phase.angle() if phase.is_complex() else phase
            complex_spec = torch.polar(magnitude, angle.transpose(-1, -2).to(magnitude.dtype))
            return self.inverse_spectrogram(complex_spec, length)
        # The estimate runs at the length its T frames give; a `length` whose STFT would
        # have another frame count is fitted after.
        wave = self.inverse_spectrogram(with_phase(magnitude, self.phase_method, self.phase_iterations),
                                        HOP_LENGTH * (magnitude.shape[-1] - 1))
        if length is None or length == wave.shape[-1]:
            return wave
        return wave[..., :length] if length < wave.shape[-1] else torch.nn.functional.pad(wave, (0, length - wave.shape[-1]))
