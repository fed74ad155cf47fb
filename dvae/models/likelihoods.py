"""Observation models p(x_t | ·) and the domain in which the networks read x.

- `itakura_saito`: x_t is a power spectrogram frame |s_t|^2 and each STFT coefficient is a
  zero-mean complex Gaussian, s_ft ~ N_c(0, σ²_ft). The decoder outputs log σ²_t; the
  negative log-likelihood -log p(x_t) = Σ_f [x_ft / σ²_ft + log σ²_ft + log π] is the
  Itakura-Saito divergence up to terms constant in the parameters. Networks read log-power.
- `gaussian`: x_t ~ N(μ_t, diag σ²) for real-valued frames (log-mel, joint positions);
  σ² is a learned per-feature parameter or fixed (at the feature's own variance).

Networks read their features standardised per dimension (log-power for itakura_saito, x
itself for gaussian), and the decoder's output is read in the same standardised units, so
that an untrained decoder already predicts the average frame. The statistics are buffers
set once from training data (`standardise`) and saved with the model; the likelihood
itself stays a density over x in the data's own units.
"""
from __future__ import annotations

import math

import torch
from torch import nn

LOG_EPS = 1e-8


class Likelihood(nn.Module):
    def __init__(self, x_dim: int):
        super().__init__()
        self.register_buffer("shift", torch.zeros(x_dim))
        self.register_buffer("scale", torch.ones(x_dim))

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def standardise(self, x: torch.Tensor) -> None:
        """Sets the per-feature shift and scale from a sample of training frames (..., x_dim)."""
        f = self.raw_features(x).reshape(-1, x.shape[-1])
        self.shift.copy_(f.mean(0))
        self.scale.copy_(f.std(0).clamp_min(1e-3))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the networks read of x: (raw - shift) / scale, as one pass over the frames."""
        return torch.addcmul(-self.shift / self.scale, self.raw_features(x), self.scale.reciprocal())


class ItakuraSaito(Likelihood):
    def raw_features(self, x):
        return torch.log(x + LOG_EPS)

    def log_variance(self, out: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, out, self.scale)

    def nll(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """-log p(x_t | ·) per frame, summed over features: (batch, time)."""
        return ItakuraSaitoNLL.apply(x, out, self.shift, self.scale)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_variance(out))

    def output_features(self, out: torch.Tensor) -> torch.Tensor:
        """What the networks would read had the model's expected frame been the data."""
        return self.features(self.mean(out))


class ItakuraSaitoNLL(torch.autograd.Function):
    """Σ_f [x_f / σ²_f + log σ²_f + log π] with log σ² = out * scale + shift, and its gradient
    d/d out = scale (1 - x / σ²), written out by hand: 8 passes over the step's largest
    tensors (batch, time, 513) with one temporary, where autograd's version of the same
    expression took twice the time. x and the statistics take no gradient.
    """

    @staticmethod
    def forward(ctx, x, out, shift, scale):
        if ctx.needs_input_grad[0]:
            raise ValueError("the Itakura-Saito likelihood gives no gradient for the data x")
        neg_logvar = torch.addcmul(-shift, out, -scale)
        sum_logvar = neg_logvar.sum(-1).neg_()
        ratio = neg_logvar.exp_().mul_(x)  # x / σ², in the same memory
        ctx.save_for_backward(ratio, scale)
        return ratio.sum(-1) + sum_logvar + x.shape[-1] * math.log(math.pi)  # log π once per frame

    @staticmethod
    def backward(ctx, grad):
        ratio, scale = ctx.saved_tensors
        return None, torch.rsub(ratio, 1).mul_(scale).mul_(grad.unsqueeze(-1)), None, None


class GaussianLikelihood(Likelihood):
    def __init__(self, x_dim: int, learned_variance: bool):
        super().__init__(x_dim)
        logvar = torch.zeros(x_dim)  # in standardised units: at first, each feature's own variance
        if learned_variance:
            self.logvar = nn.Parameter(logvar)
        else:
            self.register_buffer("logvar", logvar)

    def raw_features(self, x):
        return x

    def nll(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        err = self.features(x) - out
        per_dim = 0.5 * (math.log(2 * math.pi) + self.logvar + err**2 * torch.exp(-self.logvar)) + torch.log(self.scale)
        return per_dim.sum(-1)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return out * self.scale + self.shift

    def output_features(self, out: torch.Tensor) -> torch.Tensor:
        return out


def build_likelihood(name: str, x_dim: int, learned_variance: bool = True) -> Likelihood:
    if name == "itakura_saito":
        return ItakuraSaito(x_dim)
    if name == "gaussian":
        return GaussianLikelihood(x_dim, learned_variance)
    raise ValueError(f"likelihood '{name}' must be resolved to itakura_saito or gaussian (Config does it from the data)")
