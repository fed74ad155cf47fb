"""VRNN: the variational recurrent neural network (Chung et al., 2015).

Generative model:  p(x_{1:T}, z_{1:T}) = ∏_t p(x_t | x_{1:t-1}, z_{1:t}) p(z_t | x_{1:t-1}, z_{1:t-1}),
    h_t = d(h_{t-1}, [φx(x_{t-1}), φz(z_{t-1})]) summarises (x_{1:t-1}, z_{1:t-1}),
    p(z_t | ·) = N(z_t; μ_θ(h_t), diag σ²_θ(h_t)) (or Student-t),  p(x_t | ·) from [φz(z_t), h_t].
Inference model:   q(z_{1:T} | x_{1:T}) = ∏_t q(z_t | x_{1:t}, z_{1:t-1})
    = ∏_t N(z_t; μ_φ([φx(x_t), h_t]), diag σ²_φ([φx(x_t), h_t])).

h_t depends on the sampled z_{t-1}, so the recursion steps in time; φx runs over all
frames at once, and the prior and decoder run once over the stacked states.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .base import DVAE, DVAEOutput
from .layers import GaussianHead, mlp, reparameterise, shift_right, step


class VRNN(DVAE):
    reads_previous_x = True

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        D, Z, H, M = cfg.x_dim, cfg.z_dim, cfg.h_dim, cfg.dense_dim
        self.phi_x = mlp(D, M, dropout=cfg.dropout)
        self.phi_z = mlp(Z, M, dropout=cfg.dropout)
        self.rnn = nn.LSTM(2 * M, H, batch_first=True)
        self.encoder = nn.Sequential(mlp(M + H, M, dropout=cfg.dropout), GaussianHead(M, Z))
        self.prior_net = nn.Sequential(mlp(H, M, dropout=cfg.dropout), GaussianHead(M, Z))
        self.decoder = mlp(M + H, M, D, dropout=cfg.dropout)

    def recur(self, fx, eps, mask=None, from_prior=False, fx_prev=None, fz_prev=None, state=None):
        """Steps h_t and z_t through time.

        z_t is drawn from q(z_t | x_t, h_t) with noise `eps`, or from the prior p(z_t | h_t).
        x_{t-1} is the data's (features `fx`) unless `mask` marks the model's own output instead.
        Returns the stacked h, z, φz(z), q's mean and log-variance, and the final recursion state.
        """
        B, T, _ = fx.shape
        fx_prev = fx.new_zeros(B, fx.shape[2]) if fx_prev is None else fx_prev
        fz_prev = fx.new_zeros(B, fx.shape[2]) if fz_prev is None else fz_prev
        hs, zs, fzs, means, logvars = [], [], [], [], []
        for t in range(T):
            h, state = step(self.rnn, torch.cat([fx_prev, fz_prev], -1), state)
            if from_prior:
                z = self.prior.sample(*self.prior_net(h))
            else:
                mean, logvar = self.encoder(torch.cat([fx[:, t], h], -1))
                z = reparameterise(mean, logvar, eps[:, t])
                means.append(mean), logvars.append(logvar)
            fz_prev = self.phi_z(z)
            hs.append(h), zs.append(z), fzs.append(fz_prev)
            fx_prev = fx[:, t] if mask is None else self.feed(self.decoder(torch.cat([fz_prev, h], -1)), self.phi_x, fx[:, t], mask[:, t])
        stack = lambda xs: torch.stack(xs, 1) if xs else None
        return stack(hs), stack(zs), stack(fzs), stack(means), stack(logvars), (fx_prev, fz_prev, state)

    def forward(self, x, feedback_prob=0.0):
        eps = self.noise(x)
        mask = self.feedback_mask(x, feedback_prob)
        h, z, fz, q_mean, q_logvar, _ = self.recur(self.phi_x(self.likelihood.features(x)), eps, mask)
        p_mean, p_logvar = self.prior_net(h)
        x_out = self.decoder(torch.cat([fz, h], -1))
        return DVAEOutput(x_out, self.prior.kl(q_mean, q_logvar, z, p_mean, p_logvar), {"z": z})

    def decode(self, x, z):
        fx_prev = shift_right(self.phi_x(self.likelihood.features(x)))
        fz = self.phi_z(z)
        h = self.rnn(torch.cat([fx_prev, shift_right(fz)], -1))[0]
        return self.decoder(torch.cat([fz, h], -1))

    @torch.no_grad()
    def generate(self, n_frames, batch=1, prime=None):
        carry = {}
        if prime is not None:
            *_, (fx_prev, fz_prev, state) = self.recur(self.phi_x(self.likelihood.features(prime)), self.noise(prime))
            carry = dict(fx_prev=fx_prev, fz_prev=fz_prev, state=state)
        fx, mask = self.no_data(batch, n_frames)
        h, _, fz, *_ = self.recur(fx, None, mask, from_prior=True, **carry)
        return self.likelihood.mean(self.decoder(torch.cat([fz, h], -1)))
