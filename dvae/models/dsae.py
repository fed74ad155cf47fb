"""DSAE: the disentangled sequential autoencoder (Li and Mandt, 2018).

Generative model:  p(x_{1:T}, z_{1:T}, v) = p(v) ∏_t p(x_t | z_t, v) p(z_t | z_{1:t-1}),
    p(v) = N(0, I) (or a standard Student-t),  p(z_t | z_{1:t-1}) = N(z_t; μ_θ(h_t), diag σ²_θ(h_t))
    (or Student-t) with h_t = forward-RNN(z_{1:t-1}).
Inference model:   q(z_{1:T}, v | x_{1:T}) = q(v | x_{1:T}) ∏_t q(z_t | x_{1:T}, v),
    q(v | ·) from the last states of a bidirectional RNN over x,
    q(z_t | ·) from a forward RNN over the outputs of a bidirectional RNN over [x_t, v].

v is a static latent for the whole sequence, z_t a dynamic one. Given v, q(z_t | ·) reads no
earlier z, so every RNN runs over the whole sequence in one call: there is no step loop.
The KL of v is spread evenly over the frames so that the loss stays per frame.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .base import DVAE, DVAEOutput
from .layers import GaussianHead, last_state, lstm_step, mlp, reparameterise, shift_right


class DSAE(DVAE):
    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        D, Z, H, M, V = cfg.x_dim, cfg.z_dim, cfg.h_dim, cfg.dense_dim, cfg.v_dim
        self.phi_x = mlp(D, M, dropout=cfg.dropout)
        self.rnn_v = nn.LSTM(M, H, batch_first=True, bidirectional=True)
        self.head_v = GaussianHead(2 * H, V)
        self.rnn_zx = nn.LSTM(M + V, H, batch_first=True, bidirectional=True)
        self.rnn_z = nn.LSTM(2 * H, H, batch_first=True)
        self.head_z = GaussianHead(H, Z)
        self.rnn_prior = nn.LSTM(Z, H, batch_first=True)
        self.prior_head = GaussianHead(H, Z)
        self.decoder = mlp(Z + V, self.decoder_widths(), D, dropout=cfg.dropout)

    def posterior_v(self, fx, eps_v):
        last = self.rnn_v(fx)[1][0]  # final hidden states of both directions, (2, batch, H)
        mean, logvar = self.head_v(torch.cat([last[0], last[1]], -1))
        return mean, logvar, reparameterise(mean, logvar, eps_v)

    def forward(self, x, feedback_prob=0.0):
        B, T, _ = x.shape
        eps_z, eps_v = self.noise(x), torch.randn(B, self.cfg.v_dim, device=x.device, dtype=x.dtype)
        self.feedback_mask(x, feedback_prob)
        fx = self.phi_x(self.likelihood.features(x))
        v_mean, v_logvar, v = self.posterior_v(fx, eps_v)
        g = self.rnn_z(self.rnn_zx(torch.cat([fx, v.unsqueeze(1).expand(B, T, -1)], -1))[0])[0]
        q_mean, q_logvar = self.head_z(g)
        z = reparameterise(q_mean, q_logvar, eps_z)
        p_mean, p_logvar = self.prior_head(self.rnn_prior(shift_right(z))[0])
        kl = self.prior.kl(q_mean, q_logvar, z, p_mean, p_logvar) + self.prior.kl(v_mean, v_logvar, v).unsqueeze(1) / T
        return DVAEOutput(self.decode(x, z, v), kl, {"z": z, "v": v})

    def decode(self, x, z, v):
        return self.decoder(torch.cat([z, v.unsqueeze(1).expand(-1, z.shape[1], -1)], -1))

    @torch.no_grad()
    def generate(self, n_frames, batch=1, prime=None):
        """Cold: v and z from their priors. Primed: v and the prior's state from the prime's posterior."""
        zeros = self.zeros(batch, self.cfg.v_dim)
        z_prev, state = self.zeros(batch, self.cfg.z_dim), None
        if prime is None:
            v = self.prior.sample(zeros, zeros)
        else:
            latents = self(prime).latents
            v, z_seen = latents["v"], latents["z"]
            state = last_state(self.rnn_prior(shift_right(z_seen))[1])
            z_prev = z_seen[:, -1]
        zs = []
        for _ in range(n_frames):
            state = lstm_step(self.rnn_prior, z_prev, state)
            z_prev = self.prior.sample(*self.prior_head(state[0]))
            zs.append(z_prev)
        return self.likelihood.mean(self.decode(None, torch.stack(zs, 1), v))
