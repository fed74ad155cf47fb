"""VAE: the frame-independent baseline.

Generative model:  p(x_{1:T}, z_{1:T}) = ∏_t p(x_t | z_t) p(z_t),  p(z_t) = N(0, I) (or a standard Student-t)
Inference model:   q(z_{1:T} | x_{1:T}) = ∏_t q(z_t | x_t) = ∏_t N(z_t; μ_φ(x_t), diag σ²_φ(x_t))
"""
from __future__ import annotations

import torch

from ..config import ModelConfig
from .base import DVAE, DVAEOutput
from .layers import GaussianHead, mlp, reparameterise


class VAE(DVAE):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        D, Z, M = cfg.x_dim, cfg.z_dim, cfg.dense_dim
        self.encoder = torch.nn.Sequential(mlp(D, M, dropout=cfg.dropout), GaussianHead(M, Z))
        self.decoder = mlp(Z, self.decoder_widths(), D, dropout=cfg.dropout)

    def forward(self, x, feedback_prob=0.0):
        self.feedback_mask(x, feedback_prob)
        q_mean, q_logvar = self.encoder(self.likelihood.features(x))
        z = reparameterise(q_mean, q_logvar, self.noise(x))
        return DVAEOutput(self.decoder(z), self.prior.kl(q_mean, q_logvar, z), {"z": z})

    def decode(self, x, z):
        return self.decoder(z)

    @torch.no_grad()
    def generate(self, n_frames, batch=1, prime=None):
        batch = batch if prime is None else len(prime)  # frames are independent: a prime sets only the batch
        zeros = self.zeros(batch, n_frames, self.cfg.z_dim)
        z = self.prior.sample(zeros, zeros)
        return self.likelihood.mean(self.decoder(z))
