"""SRNN: the stochastic recurrent neural network (Fraccaro et al., 2016).

Generative model:  p(x_{1:T}, z_{1:T}) = ∏_t p(x_t | z_t, h_t) p(z_t | z_{t-1}, h_t),
    h_t = d(h_{t-1}, x_{t-1}) a deterministic RNN over past frames,
    p(z_t | ·) = N(z_t; μ_θ([h_t, z_{t-1}]), diag σ²_θ(·)) (or Student-t),  p(x_t | ·) from [h_t, z_t].
Inference model:   q(z_{1:T} | x_{1:T}) = ∏_t q(z_t | z_{t-1}, x_{1:T}),
    g_t = backward-RNN([h_t, x_t], g_{t+1}),  q(z_t | ·) = N(z_t; μ_φ([g_t, z_{t-1}]), diag σ²_φ(·)).

h and g do not depend on z: each runs over the whole sequence in one call, as does g's share
of q's first layer, and only the chain z_{t-1} -> z_t steps. In generation mode h_t reads the
model's own previous output, so the decoder's recursion steps too (q keeps reading the data).
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .base import DVAE, DVAEOutput
from .layers import (GaussianHead, after_first_layer, last_state, lstm_step, mlp, reparameterise, shift_right,
                     split_first_layer)


class SRNN(DVAE):
    reads_previous_x = True
    step_methods = ("q_step",)

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        D, Z, H, M = cfg.x_dim, cfg.z_dim, cfg.h_dim, cfg.dense_dim
        self.phi_x = mlp(D, M, dropout=cfg.dropout)
        self.rnn_h = nn.LSTM(M, H, batch_first=True)
        self.rnn_g = nn.LSTM(H + M, H, batch_first=True)  # run on the reversed sequence
        self.encoder = nn.Sequential(mlp(H + Z, M, dropout=cfg.dropout), GaussianHead(M, Z))
        self.prior_net = nn.Sequential(mlp(H + Z, M, dropout=cfg.dropout), GaussianHead(M, Z))
        self.decoder = mlp(H + Z, self.decoder_widths(), D, dropout=cfg.dropout)

    def q_step(self, q_g, eps, z_prev, w_z):
        """One frame of q: z_t ~ q(z_t | z_{t-1}, g_t), given `q_g`, g_t's share of q's first layer,
        and `w_z`, the block of that layer's weight that multiplies z_{t-1}."""
        mean, logvar = after_first_layer(self.encoder, torch.addmm(q_g, z_prev, w_z.t()))
        return reparameterise(mean, logvar, eps), mean, logvar

    def posterior(self, fx, eps):
        """h over x_{1:t-1}, then z_t ~ q(z_t | z_{t-1}, g_t): returns h, z, q's mean, log-variance, h's state."""
        h, h_state = self.rnn_h(shift_right(fx))
        g = self.rnn_g(torch.cat([h, fx], -1).flip(1))[0].flip(1)
        q_g, w_z = split_first_layer(self.encoder, g)  # g's share: one matrix product over all frames
        z_prev = eps.new_zeros(eps.shape[0], eps.shape[2])
        zs, means, logvars = [], [], []
        for q_g_t, eps_t in zip(q_g.unbind(1), eps.unbind(1)):  # unbind: a slice [:, t] would cost a sequence-sized gradient
            z_prev, mean, logvar = self.q_step(q_g_t, eps_t, z_prev, w_z)
            zs.append(z_prev), means.append(mean), logvars.append(logvar)
        return h, torch.stack(zs, 1), torch.stack(means, 1), torch.stack(logvars, 1), last_state(h_state)

    def free_run(self, fx, mask, z=None, fx_prev=None, z_prev=None, state=None):
        """Steps h_t, reading the data's `fx` except where `mask` marks the model's own previous
        output. With `z` given it decodes those latents; without, it samples them from the prior."""
        B, T, _ = fx.shape
        fx_prev = fx.new_zeros(B, fx.shape[2]) if fx_prev is None else fx_prev
        z_prev = fx.new_zeros(B, self.cfg.z_dim) if z_prev is None else z_prev
        given = [None] * T if z is None else z.unbind(1)  # unbind: a slice [:, t] would cost a sequence-sized gradient
        hs, zs = [], []
        for fx_t, mask_t, z_t in zip(fx.unbind(1), mask.unbind(1), given):
            state = lstm_step(self.rnn_h, fx_prev, state)
            h = state[0]
            z_t = self.prior.sample(*self.prior_net(torch.cat([h, z_prev], -1))) if z_t is None else z_t
            fx_prev = self.feed(self.decoder(torch.cat([h, z_t], -1)), self.phi_x, fx_t, mask_t)
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
            batch = len(prime)
            fx = self.phi_x(self.likelihood.features(prime))
            _, z, _, _, state = self.posterior(fx, self.noise(prime))
            carry = dict(fx_prev=fx[:, -1], z_prev=z[:, -1], state=state)
        h, z = self.free_run(*self.no_data(batch, n_frames), **carry)
        return self.likelihood.mean(self.decoder(torch.cat([h, z], -1)))
