"""VRNN: the variational recurrent neural network (Chung et al., 2015).

Generative model:  p(x_{1:T}, z_{1:T}) = ∏_t p(x_t | x_{1:t-1}, z_{1:t}) p(z_t | x_{1:t-1}, z_{1:t-1}),
    h_t = d(h_{t-1}, [φx(x_{t-1}), φz(z_{t-1})]) summarises (x_{1:t-1}, z_{1:t-1}),
    p(z_t | ·) = N(z_t; μ_θ(h_t), diag σ²_θ(h_t)) (or Student-t),  p(x_t | ·) from [φz(z_t), h_t].
Inference model:   q(z_{1:T} | x_{1:T}) = ∏_t q(z_t | x_{1:t}, z_{1:t-1})
    = ∏_t N(z_t; μ_φ([φx(x_t), h_t]), diag σ²_φ([φx(x_t), h_t])).

h_t depends on the sampled z_{t-1}, so the recursion steps in time, one `q_step` per frame.
Everything that reads only the data runs over all frames at once: φx, and φx's shares of the
LSTM's gates and of q's first layer. The prior and decoder run once over the stacked states.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .base import DVAE, DVAEOutput
from .layers import (GaussianHead, after_first_layer, lstm_cell, lstm_input, lstm_step, mlp, reparameterise,
                     shift_right, split_first_layer, zero_state)


class VRNN(DVAE):
    reads_previous_x = True
    step_methods = ("q_step",)

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        D, Z, H, M = cfg.x_dim, cfg.z_dim, cfg.h_dim, cfg.dense_dim
        self.phi_x = mlp(D, M, dropout=cfg.dropout)
        self.phi_z = mlp(Z, M, dropout=cfg.dropout)
        self.rnn = nn.LSTM(2 * M, H, batch_first=True)
        self.encoder = nn.Sequential(mlp(M + H, M, dropout=cfg.dropout), GaussianHead(M, Z))
        self.prior_net = nn.Sequential(mlp(H, M, dropout=cfg.dropout), GaussianHead(M, Z))
        self.decoder = mlp(M + H, M, D, dropout=cfg.dropout)

    def q_step(self, gates_x, q_x, eps, fz_prev, state, w_z, w_qh):
        """One frame: h_t = d(h_{t-1}, [φx(x_{t-1}), φz(z_{t-1})]), then z_t ~ q(z_t | x_t, h_t).
        `gates_x` and `q_x` are x's shares of d's gates and of q's first layer; `w_z` and `w_qh`
        the weight blocks that multiply φz(z_{t-1}) and h_t there.
        Returns (h_t, c_t), z_t, φz(z_t), q's mean and log-variance."""
        h, c = lstm_cell(torch.addmm(gates_x, fz_prev, w_z.t()), state, self.rnn.weight_hh_l0)
        mean, logvar = after_first_layer(self.encoder, torch.addmm(q_x, h, w_qh.t()))
        z = reparameterise(mean, logvar, eps)
        return (h, c), z, self.phi_z(z), mean, logvar

    def recur(self, fx, eps, mask=None, fx_prev=None, fz_prev=None, state=None):
        """Steps h_t and z_t ~ q(z_t | x_t, h_t) (noise `eps`) through time.

        x_{t-1} is the data's (features `fx`) unless `mask` marks the model's own output instead.
        Returns the stacked h, z, φz(z), q's mean and log-variance, and the final recursion state.
        """
        B, T, M = fx.shape
        fx_prev = fx.new_zeros(B, M) if fx_prev is None else fx_prev
        fz_prev = fx.new_zeros(B, M) if fz_prev is None else fz_prev
        state = zero_state(fx, self.rnn) if state is None else state
        # x's shares of d's gates (from x_{t-1}) and of q's first layer (from x_t): one matrix
        # product each over all frames. The loop takes its frames by unbind, not [:, t]: the
        # gradient of each slice would be as large as the whole sequence.
        gates_x, w_z = lstm_input(self.rnn, shift_right(fx, fx_prev))
        q_x, w_qh = split_first_layer(self.encoder, fx)
        masks = [None] * T if mask is None else mask.unbind(1)
        hs, zs, fzs, means, logvars = [], [], [], [], []
        for gates_x_t, q_x_t, eps_t, fx_t, mask_t in zip(gates_x.unbind(1), q_x.unbind(1), eps.unbind(1), fx.unbind(1), masks):
            if mask_t is not None:  # generation mode: x_{t-1} may be the model's own, known only now
                gates_x_t = lstm_input(self.rnn, fx_prev)[0]
            state, z, fz_prev, mean, logvar = self.q_step(gates_x_t, q_x_t, eps_t, fz_prev, state, w_z, w_qh)
            if mask_t is not None:
                fx_prev = self.feed(self.decoder(torch.cat([fz_prev, state[0]], -1)), self.phi_x, fx_t, mask_t)
            hs.append(state[0]), zs.append(z), fzs.append(fz_prev), means.append(mean), logvars.append(logvar)
        fx_prev = fx[:, -1] if mask is None else fx_prev
        return (*(torch.stack(xs, 1) for xs in (hs, zs, fzs, means, logvars)), (fx_prev, fz_prev, state))

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
        """The recursion with z_t from the prior p(z_t | h_t) and x_{t-1} the model's own output."""
        fx_prev, fz_prev, state = self.zeros(batch, self.cfg.dense_dim), self.zeros(batch, self.cfg.dense_dim), None
        if prime is not None:
            *_, (fx_prev, fz_prev, state) = self.recur(self.phi_x(self.likelihood.features(prime)), self.noise(prime))
        outs = []
        for _ in range(n_frames):
            state = lstm_step(self.rnn, torch.cat([fx_prev, fz_prev], -1), state)
            fz_prev = self.phi_z(self.prior.sample(*self.prior_net(state[0])))
            outs.append(self.decoder(torch.cat([fz_prev, state[0]], -1)))
            fx_prev = self.phi_x(self.likelihood.output_features(outs[-1]))
        return self.likelihood.mean(torch.stack(outs, 1))
