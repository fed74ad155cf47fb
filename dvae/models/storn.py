"""STORN: the stochastic recurrent network (Bayer and Osendorfer, 2014).

Generative model:  p(x_{1:T}, z_{1:T}) = ∏_t p(x_t | x_{1:t-1}, z_{1:t}) p(z_t),
    h_t = d(h_{t-1}, [x_{t-1}, z_t]),  p(x_t | ·) from h_t,  p(z_t) = N(0, I) (or a standard Student-t).
Inference model:   q(z_{1:T} | x_{1:T}) = ∏_t q(z_t | x_{1:t}),
    g_t = e(g_{t-1}, x_t),  q(z_t | x_{1:t}) = N(z_t; μ_φ(g_t), diag σ²_φ(g_t)).

q does not depend on earlier z, so under teacher forcing both RNNs run over the whole
sequence in one call; only generation mode (feeding back the model's output) steps.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .base import DVAE, DVAEOutput
from .layers import GaussianHead, last_state, lstm_step, mlp, reparameterise, shift_right


class STORN(DVAE):
    reads_previous_x = True

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        D, Z, H, M = cfg.x_dim, cfg.z_dim, cfg.h_dim, cfg.dense_dim
        self.phi_x = mlp(D, M, dropout=cfg.dropout)
        self.rnn_g = nn.LSTM(M, H, batch_first=True)
        self.encoder = nn.Sequential(mlp(H, M, dropout=cfg.dropout), GaussianHead(M, Z))
        self.rnn_h = nn.LSTM(M + Z, H, batch_first=True)
        self.decoder = mlp(H, self.decoder_widths(), D, dropout=cfg.dropout)

    def forward(self, x, feedback_prob=0.0):
        eps = self.noise(x)
        mask = self.feedback_mask(x, feedback_prob)
        fx = self.phi_x(self.likelihood.features(x))
        q_mean, q_logvar = self.encoder(self.rnn_g(fx)[0])
        z = reparameterise(q_mean, q_logvar, eps)
        x_out = self.decode(x, z) if mask is None else self.free_run(z, fx, mask)
        return DVAEOutput(x_out, self.prior.kl(q_mean, q_logvar, z), {"z": z})

    def decode(self, x, z):
        fx_prev = shift_right(self.phi_x(self.likelihood.features(x)))
        return self.decoder(self.rnn_h(torch.cat([fx_prev, z], -1))[0])

    def free_run(self, z, fx, mask, fx_prev=None, state=None):
        """The generative recursion stepped in time: it reads the data's features `fx` except
        where `mask` (batch, time, 1) is set, and its own previous output there."""
        fx_prev = z.new_zeros(z.shape[0], self.cfg.dense_dim) if fx_prev is None else fx_prev
        outs = []
        for z_t, fx_t, mask_t in zip(z.unbind(1), fx.unbind(1), mask.unbind(1)):  # not [:, t]: see VRNN.recur
            state = lstm_step(self.rnn_h, torch.cat([fx_prev, z_t], -1), state)
            outs.append(self.decoder(state[0]))
            fx_prev = self.feed(outs[-1], self.phi_x, fx_t, mask_t)
        return torch.stack(outs, 1)

    @torch.no_grad()
    def generate(self, n_frames, batch=1, prime=None):
        state = fx_prev = None
        if prime is not None:
            batch = len(prime)
            fx = self.phi_x(self.likelihood.features(prime))
            q_mean, q_logvar = self.encoder(self.rnn_g(fx)[0])
            z = reparameterise(q_mean, q_logvar, self.noise(prime))
            state = last_state(self.rnn_h(torch.cat([shift_right(fx), z], -1))[1])
            fx_prev = fx[:, -1]
        zeros = self.zeros(batch, n_frames, self.cfg.z_dim)
        z = self.prior.sample(zeros, zeros)
        return self.likelihood.mean(self.free_run(z, *self.no_data(batch, n_frames), fx_prev, state))
