"""DKF: the deep Kalman filter (Krishnan et al., 2017), a non-linear state-space model.

Generative model:  p(x_{1:T}, z_{1:T}) = ∏_t p(x_t | z_t) p(z_t | z_{t-1}),
    p(z_t | z_{t-1}) = N(z_t; μ_θ(z_{t-1}), diag σ²_θ(z_{t-1})) from a gated transition.
Inference model:   q(z_{1:T} | x_{1:T}) = ∏_t q(z_t | z_{t-1}, x_{t:T}),
    g_t = backward-RNN(x_{t:T}),  q(z_t | ·) = N(z_t; combiner(z_{t-1}, g_t)),
    combiner: ½ (tanh(W z_{t-1} + b) + g_t) -> mean and log-variance.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ModelConfig
from .base import DVAE, DVAEOutput
from .layers import GaussianHead, mlp, reparameterise, shift_right


class GatedTransition(nn.Module):
    """μ = (1 - g) ⊙ (W z_{t-1} + b) + g ⊙ h(z_{t-1}),  σ = softplus(W_σ ReLU(h) + b_σ),
    with a gate g = sigmoid(·): the prior interpolates a linear and a non-linear transition."""

    def __init__(self, z_dim: int, hidden: int):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, z_dim), nn.Sigmoid())
        self.proposal = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, z_dim))
        self.linear = nn.Linear(z_dim, z_dim)
        self.scale = nn.Linear(z_dim, z_dim)
        with torch.no_grad():  # start as the identity transition
            self.linear.weight.copy_(torch.eye(z_dim))
            self.linear.bias.zero_()

    def forward(self, z_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate, proposal = self.gate(z_prev), self.proposal(z_prev)
        mean = (1 - gate) * self.linear(z_prev) + gate * proposal
        std = F.softplus(self.scale(F.relu(proposal))) + 1e-4
        return mean, 2 * torch.log(std)


class DKF(DVAE):
    step_methods = ("q_step",)

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        D, Z, H, M = cfg.x_dim, cfg.z_dim, cfg.h_dim, cfg.dense_dim
        self.phi_x = mlp(D, M, dropout=cfg.dropout)
        self.rnn_g = nn.LSTM(M, H, batch_first=True)  # run on the reversed sequence
        self.combiner_z = nn.Linear(Z, H)
        self.combiner_head = GaussianHead(H, Z)
        self.transition = GatedTransition(Z, M)
        self.decoder = mlp(Z, self.decoder_widths(), D, dropout=cfg.dropout)

    def q_step(self, g, eps, z_prev):
        """One frame of q: the combiner reads z_{t-1} and g_t and gives z_t."""
        mean, logvar = self.combiner_head(0.5 * (torch.tanh(self.combiner_z(z_prev)) + g))
        return reparameterise(mean, logvar, eps), mean, logvar

    def posterior(self, x, eps):
        """Runs q: z_t from z_{t-1} and the backward summary g_t of x_{t:T}."""
        g = self.rnn_g(self.phi_x(self.likelihood.features(x)).flip(1))[0].flip(1)
        z_prev = eps.new_zeros(eps.shape[0], eps.shape[2])
        means, logvars, zs = [], [], []
        for g_t, eps_t in zip(g.unbind(1), eps.unbind(1)):  # unbind: a slice [:, t] would cost a sequence-sized gradient
            z_prev, mean, logvar = self.q_step(g_t, eps_t, z_prev)
            means.append(mean), logvars.append(logvar), zs.append(z_prev)
        return torch.stack(means, 1), torch.stack(logvars, 1), torch.stack(zs, 1)

    def forward(self, x, feedback_prob=0.0):
        self.feedback_mask(x, feedback_prob)
        q_mean, q_logvar, z = self.posterior(x, self.noise(x))
        p_mean, p_logvar = self.transition(shift_right(z))
        return DVAEOutput(self.decoder(z), self.prior.kl(q_mean, q_logvar, z, p_mean, p_logvar), {"z": z})

    def decode(self, x, z):
        return self.decoder(z)

    @torch.no_grad()
    def generate(self, n_frames, batch=1, prime=None):
        z_prev = self.zeros(batch, self.cfg.z_dim)
        if prime is not None:
            z_prev = self.posterior(prime, self.noise(prime))[2][:, -1]
        zs = []
        for _ in range(n_frames):
            z_prev = self.prior.sample(*self.transition(z_prev))
            zs.append(z_prev)
        return self.likelihood.mean(self.decoder(torch.stack(zs, 1)))
