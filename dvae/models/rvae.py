"""RVAE: the recurrent VAE (Leglaive et al., 2020), causal and non-causal.

Generative model:  p(z_t) = N(0, I) (or a standard Student-t) for every t,
    causal:      p(x_{1:T}, z_{1:T}) = ∏_t p(x_t | z_{1:t}) p(z_t),    h_t = forward-RNN(z_{1:t})
    non-causal:  p(x_{1:T}, z_{1:T}) = ∏_t p(x_t | z_{1:T}) p(z_t),    h_t = bidirectional-RNN(z_{1:T})
Inference model:   q(z_t | ·) = N(z_t; μ_φ([g^x_t, g^z_t]), diag σ²_φ(·)),  g^z_t = forward-RNN(z_{1:t-1}),
    causal:      q(z_{1:T} | x_{1:T}) = ∏_t q(z_t | z_{1:t-1}, x_{t:T}),  g^x_t = backward-RNN(x_{t:T})
    non-causal:  q(z_{1:T} | x_{1:T}) = ∏_t q(z_t | z_{1:t-1}, x_{1:T}),  g^x_t = bidirectional-RNN(x_{1:T})
Both follow the exact posterior's dependencies: with the causal decoder each x_τ depends on
z_{1:τ} only, so once z_{1:t-1} is given, x_{1:t-1} says nothing more of z_t.

The RNNs over x and the decoder's RNN over z run in one call, as does g^x's share of q's first
layer; only g^z steps with z.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .base import DVAE, DVAEOutput
from .layers import GaussianHead, after_first_layer, lstm_step, mlp, reparameterise, split_first_layer


class RVAE(DVAE):
    step_methods = ("q_step",)

    def __init__(self, cfg: ModelConfig, causal: bool):
        super().__init__(cfg)
        D, Z, H, M = cfg.x_dim, cfg.z_dim, cfg.h_dim, cfg.dense_dim
        self.causal = causal
        directions = 1 if causal else 2
        self.phi_x = mlp(D, M, dropout=cfg.dropout)
        self.rnn_gx = nn.LSTM(M, H, batch_first=True, bidirectional=not causal)
        self.rnn_gz = nn.LSTM(Z, H, batch_first=True)
        self.encoder = nn.Sequential(mlp(directions * H + H, M, dropout=cfg.dropout), GaussianHead(M, Z))
        self.rnn_dec = nn.LSTM(Z, H, batch_first=True, bidirectional=not causal)
        self.decoder = mlp(directions * H, self.decoder_widths(), D, dropout=cfg.dropout)

    def g_x(self, fx):
        """g^x over the frames' features: backward over x_{t:T} (causal) or both ways over x_{1:T}."""
        return self.rnn_gx(fx.flip(1))[0].flip(1) if self.causal else self.rnn_gx(fx)[0]

    def q_step(self, q_x, eps, z_prev, state, w_gz):
        """One frame of q: g^z_t over z_{t-1}, then z_t ~ q(z_t | g^x_t, g^z_t), given `q_x`, g^x_t's
        share of q's first layer, and `w_gz`, the block of that layer's weight that multiplies g^z_t.
        Returns z_t, q's mean and log-variance, and g^z's state."""
        state = lstm_step(self.rnn_gz, z_prev, state)
        mean, logvar = after_first_layer(self.encoder, torch.addmm(q_x, state[0], w_gz.t()))
        return reparameterise(mean, logvar, eps), mean, logvar, state

    def forward(self, x, feedback_prob=0.0):
        eps = self.noise(x)
        self.feedback_mask(x, feedback_prob)
        gx = self.g_x(self.phi_x(self.likelihood.features(x)))
        q_x, w_gz = split_first_layer(self.encoder, gx)  # g^x's share: one matrix product over all frames
        z_prev, state = eps.new_zeros(eps.shape[0], eps.shape[2]), None
        zs, means, logvars = [], [], []
        for q_x_t, eps_t in zip(q_x.unbind(1), eps.unbind(1)):  # unbind: a slice [:, t] would cost a sequence-sized gradient
            z_prev, mean, logvar, state = self.q_step(q_x_t, eps_t, z_prev, state, w_gz)
            zs.append(z_prev), means.append(mean), logvars.append(logvar)
        z, q_mean, q_logvar = torch.stack(zs, 1), torch.stack(means, 1), torch.stack(logvars, 1)
        return DVAEOutput(self.decode(x, z), self.prior.kl(q_mean, q_logvar, z), {"z": z})

    def decode(self, x, z):
        return self.decoder(self.rnn_dec(z)[0])

    @torch.no_grad()
    def generate(self, n_frames, batch=1, prime=None):
        batch = batch if prime is None else len(prime)
        zeros = self.zeros(batch, n_frames, self.cfg.z_dim)
        z = self.prior.sample(zeros, zeros)
        if prime is not None:  # the decoder's RNN over z carries the context of the prime
            z = torch.cat([self(prime).latents["z"], z], 1)
        return self.likelihood.mean(self.decode(None, z))[:, -n_frames:]
