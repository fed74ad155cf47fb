"""Latent priors and the KL divergence between the Gaussian posterior and the prior.

The prior over z_t is Gaussian or Student-t: its location and scale come from the prior
network (or are 0 and 1 for models with a standard prior), its degrees of freedom are a
hyperparameter, optionally learned. The posterior q is always a diagonal Gaussian.
KL(q || p) is analytic when p is Gaussian and otherwise a one-sample reparameterised
Monte-Carlo estimate log q(z) - log p(z) at the z that the decoder sees.
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn
from torch.distributions import Normal, StudentT
from torch.nn import functional as F


def gaussian_kl(q_mean, q_logvar, p_mean, p_logvar) -> torch.Tensor:
    """KL(N(q_mean, e^q_logvar) || N(p_mean, e^p_logvar)) elementwise."""
    return 0.5 * (p_logvar - q_logvar + (q_logvar.exp() + (q_mean - p_mean) ** 2) / p_logvar.exp() - 1.0)


class LatentPrior(nn.Module):
    """The family of p(z_t | ·): 'gaussian' or 'student_t' (with `df` degrees of freedom)."""

    # How far generated latents stray from the prior's location: 1 draws from the prior, 0
    # takes its location, in between scales each draw's deviation (`sampling_temperature`).
    # Only generation samples from the prior; training decodes posterior latents.
    temperature: float = 1.0

    def __init__(self, family: str, df: float = 5.0, learn_df: bool = False):
        super().__init__()
        self.family = family
        if family == "student_t":
            raw = torch.tensor(math.log(math.expm1(df)))  # inverse softplus
            if learn_df:
                self.raw_df = nn.Parameter(raw)
            else:
                self.register_buffer("raw_df", raw)

    @property
    def df(self) -> torch.Tensor:
        return F.softplus(self.raw_df)

    def distribution(self, mean: torch.Tensor, logvar: torch.Tensor):
        scale = torch.exp(0.5 * logvar)
        if self.family == "gaussian":
            return Normal(mean, scale, validate_args=False)
        return StudentT(self.df, mean, scale, validate_args=False)

    def kl(self, q_mean, q_logvar, z, p_mean=None, p_logvar=None) -> torch.Tensor:
        """KL(q || p) summed over latent dimensions; p is standard when p_mean is None."""
        if p_mean is None:
            p_mean, p_logvar = torch.zeros_like(q_mean), torch.zeros_like(q_logvar)
        if self.family == "gaussian":
            kl = gaussian_kl(q_mean, q_logvar, p_mean, p_logvar)
        else:
            log_q = Normal(q_mean, torch.exp(0.5 * q_logvar), validate_args=False).log_prob(z)
            kl = log_q - self.distribution(p_mean, p_logvar).log_prob(z)
        return kl.sum(-1)

    def sample(self, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        draw = self.distribution(mean, logvar).sample()
        return draw if self.temperature == 1.0 else mean + self.temperature * (draw - mean)


@contextlib.contextmanager
def sampling_temperature(model: nn.Module, temperature: float):
    """Within the block, every latent prior of `model` samples at `temperature`."""
    if not temperature >= 0:
        raise ValueError(f"a sampling temperature is 0 or more, got {temperature}")
    priors = [m for m in model.modules() if isinstance(m, LatentPrior)]
    before = [p.temperature for p in priors]
    for p in priors:
        p.temperature = temperature
    try:
        yield model
    finally:
        for p, value in zip(priors, before):
            p.temperature = value
