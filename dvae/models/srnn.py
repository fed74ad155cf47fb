"""SRNN: the stochastic recurrent neural network (Fraccaro et al., 2016).

Generative model:  p(x_{1:T}, z_{1:T}) = ∏_t p(x_t | z_t, h_t) p(z_t | z_{t-1}, h_t),
    h_t = d(h_{t-1}, x_{t-1}) a deterministic RNN over past frames,
    p(z_t | ·) = N(z_t; μ_θ([h_t, z_{t-1}]), diag σ²_θ(·)) (or Student-t),  p(x_t | ·) from [h_t, z_t].
Inference model:   q(z_{1:T} | x_{1:T}) = ∏_t q(z_t | z_{t-1}, x_{1:T}),
    g_t = backward-RNN([h_t, x_t], g_{t+1}),  q(z_t | ·) = N(z_t; μ_φ([g_t, z_{t-1}]), diag σ²_φ(·)).

h and g do not depend on z: each runs over the whole sequence in one call, and only the
chain z_{t-1} -> z_t steps. In generation mode h_t reads the model's own previous output,
so the decoder's recursion steps too (q keeps reading the data).
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .base import DVAE, DVAEOutput
from .layers import GaussianHead, mlp, reparameterise, shift_right, step


class SRNN(DVAE):
    reads_previous_x = True

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        D, Z, H, M = cfg.x_dim, cfg.z_dim, cfg.h_dim, cfg.dense_dim
        self.phi_x = mlp(D, M, dropout=cfg.dropout)
        self.rnn_h = nn.LSTM(M, H, batch_first=True)
        self.rnn_g = nn.LSTM(H + M, H, batch_first=True)  # run on the reversed sequence
        self.encoder = nn.Sequential(mlp(H + Z, M, dropout=cfg.dropout), GaussianHead(M, Z))
        self.prior_net = nn.Sequential(mlp(H + Z, M, dropout=cfg.dropout), GaussianHead(M, Z))
        self.decoder = mlp(H + Z, M, D, dropout=cfg.dropout)

    def posterior(self, fx, eps):
        """h over x_{1:t-1}, then z_t ~ q(z_t | z_{t-1}, g_t): returns h, z, q's mean, log-variance, h's state."""
        h, h_state = self.rnn_h(shift_right(fx))
        g = self.rnn_g(torch.cat([h, fx], -1).flip(1))[0].flip(1)
        z_prev = eps.new_zeros(eps.shape[0], eps.shape[2])
        zs, means, logvars = [], [], []
        for t in range(fx.shape[1]):
            mean, logvar = self.encoder(torch.cat([g[:, t], z_prev], -1))
            z_prev = reparameterise(mean, logvar, eps[:, t])
            zs.append(z_prev), means.append(mean), logvars.append(logvar)
        return h, torch.stack(zs, 1), torch.stack(means, 1), torch.stack(logvars, 1), h_state

    def free_run(self, fx, mask, z=None, fx_prev=None, z_prev=None, state=None):
        """Steps h_t, reading the data's `fx` except where `mask` marks the model's own previous
        output. With `z` given it decodes those latents; without, it samples them from the prior."""
        B, T, _ = fx.shape
        fx_prev = fx.new_zeros(B, fx.shape[2]) if fx_prev is None else fx_prev
        z_prev = fx.new_zeros(B, self.cfg.z_dim) if z_prev is None else z_prev
        hs, zs = [], []
        for t in range(T):
            h, state = step(self.rnn_h, fx_prev, state)
            z_t = self.prior.sample(*self.prior_net(torch.cat([h, z_prev], -1))) if z is None else z[:, t]
            fx_prev = self.feed(self.decoder(torch.cat([h, z_t], -1)), self.phi_x, fx[:, t], mask[:, t])
            hs.append(h), zs.append(z_t)
            z_prev = z_t
        return torch.stack(hs, 1), torch.stack(zs, 1)

    def forward(self, x, feedback_prob=0.0):
        eps = self.noise(x)
        mask = self.feedback_mask(x, feedback_prob)
        fx = self.phi_x(self.likelihood.features(x))
        h, z, q_mean, q_logvar, _ = self.posterior(fx, eps)
        if mask is not None:
            h, _ = self.free_run(fx, mask, z)
        p_mean, p_logvar = self.prior_net(torch.cat([h, shift_right(z)], -1))
        x_out = self.decoder(torch.cat([h, z], -1))
        return DVAEOutput(x_out, self.prior.kl(q_mean, q_logvar, z, p_mean, p_logvar), {"z": z})

    def decode(self, x, z):
        h = self.rnn_h(shift_right(self.phi_x(self.likelihood.features(x))))[0]
        return self.decoder(torch.cat([h, z], -1))

    @torch.no_grad()
    def generate(self, n_frames, batch=1, prime=None):
        carry = {}
        if prime is not None:
            fx = self.phi_x(self.likelihood.features(prime))
            _, z, _, _, state = self.posterior(fx, self.noise(prime))
            carry = dict(fx_prev=fx[:, -1], z_prev=z[:, -1], state=state)
        h, z = self.free_run(*self.no_data(batch, n_frames), **carry)
        return self.likelihood.mean(self.decoder(torch.cat([h, z], -1)))
