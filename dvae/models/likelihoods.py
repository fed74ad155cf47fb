"""Observation models p(x_t | ·) and the domain in which the networks read x.

- `itakura_saito`: x_t is a power spectrogram frame |s_t|^2 and each STFT coefficient is a
  zero-mean complex Gaussian, s_ft ~ N_c(0, σ²_ft). The decoder outputs log σ²_t; the
  negative log-likelihood -log p(x_t) = Σ_f [x_ft / σ²_ft + log σ²_ft + log π] is the
  Itakura-Saito divergence up to terms constant in the parameters. Networks read log-power.
- `gaussian`: x_t ~ N(μ_t, diag σ²) for real-valued frames (log-mel, joint positions);
  σ² is a learned per-feature parameter or fixed at 1 (in network units). Networks read
  x / scale, where `scale` (e.g. 1000 for millimetres) keeps their inputs near unit size;
  the likelihood is still a density over x in its own units.
"""
from __future__ import annotations

import math

import torch
from torch import nn

LOG_EPS = 1e-8


class ItakuraSaito(nn.Module):
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x + LOG_EPS)

    def nll(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """-log p(x_t | ·) per frame, summed over features: (batch, time)."""
        return (x * torch.exp(-out) + out + math.log(math.pi)).sum(-1)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.exp(out)

    def output_features(self, out: torch.Tensor) -> torch.Tensor:
        """What the networks would read had the model's expected frame been the data."""
        return torch.log(torch.exp(out) + LOG_EPS)


class GaussianLikelihood(nn.Module):
    def __init__(self, x_dim: int, learned_variance: bool, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        logvar = torch.zeros(x_dim)
        if learned_variance:
            self.logvar = nn.Parameter(logvar)
        else:
            self.register_buffer("logvar", logvar)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.scale

    def nll(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        err = x / self.scale - out
        per_dim = 0.5 * (math.log(2 * math.pi) + self.logvar + err**2 * torch.exp(-self.logvar))
        return per_dim.sum(-1) + x.shape[-1] * math.log(self.scale)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return out * self.scale

    def output_features(self, out: torch.Tensor) -> torch.Tensor:
        return out


def build_likelihood(name: str, x_dim: int, learned_variance: bool = True, scale: float = 1.0) -> nn.Module:
    if name == "itakura_saito":
        return ItakuraSaito()
    if name == "gaussian":
        return GaussianLikelihood(x_dim, learned_variance, scale)
    raise ValueError(f"likelihood '{name}' must be resolved to itakura_saito or gaussian (Config does it from the data)")
