"""Behaviour of the model zoo: causality, KL values, learning, generation mode, persistence."""
import io

import pytest
import torch

from dvae.config import MODEL_NAMES, ConfigError
from dvae.models import build_model
from dvae.models.distributions import LatentPrior, gaussian_kl

D, Z, T, B = 12, 3, 9, 4
SMALL = dict(x_dim=D, z_dim=Z, h_dim=16, dense_dim=16, v_dim=3)
READS_X = ("storn", "vrnn", "srnn")
CAUSAL_IN_Z = [m for m in MODEL_NAMES if m != "rvae_noncausal"]
CAUSAL_POSTERIOR = ("vae", "storn", "vrnn")  # q(z_t | x_{1:t}, ...)


def make(name, prior="gaussian", likelihood="gaussian", **kw):
    torch.manual_seed(0)
    return build_model(dict(SMALL, name=name, prior=prior, likelihood=likelihood, **kw)).eval()


def data(likelihood="gaussian", seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D, generator=g)
    return x.exp() if likelihood == "itakura_saito" else x


def latents_for(model, x):
    return model(x).latents


@pytest.mark.parametrize("name", READS_X)
def test_decoder_output_at_t_ignores_frames_from_t_on(name):
    model, x = make(name), data()
    latents = latents_for(model, x)
    k = 4
    x2 = x.clone()
    x2[:, k:] += 5.0
    with torch.no_grad():
        y, y2 = model.decode(x, **latents), model.decode(x2, **latents)
    assert torch.equal(y[:, : k + 1], y2[:, : k + 1])  # x_t is generated from x_{1:t-1} only
    assert not torch.allclose(y[:, k + 1:], y2[:, k + 1:])  # but it does read the past


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_decoder_causality_in_z(name):
    model, x = make(name), data()
    latents = latents_for(model, x)
    k = 4
    z2 = latents["z"].clone()
    z2[:, k:] += 3.0
    with torch.no_grad():
        y, y2 = model.decode(x, **latents), model.decode(x, **{**latents, "z": z2})
    if name in CAUSAL_IN_Z:
        assert torch.equal(y[:, :k], y2[:, :k])
    else:  # the non-causal RVAE decodes x_t from all of z_{1:T}
        assert not torch.allclose(y[:, :k], y2[:, :k])
    assert not torch.allclose(y[:, k:], y2[:, k:])


@pytest.mark.parametrize("name", CAUSAL_POSTERIOR)
def test_causal_posteriors_ignore_future_frames(name):
    model, x = make(name), data()
    k = 4
    x2 = x.clone()
    x2[:, k:] -= 2.0
    with torch.no_grad():
        torch.manual_seed(5)
        z = model(x).latents["z"]
        torch.manual_seed(5)
        z2 = model(x2).latents["z"]
    assert torch.equal(z[:, :k], z2[:, :k])
    assert not torch.allclose(z[:, k:], z2[:, k:])


def test_other_posteriors_read_future_frames():
    for name in ("dkf", "srnn", "rvae_causal", "rvae_noncausal", "dsae"):
        model, x = make(name), data()
        x2 = x.clone()
        x2[:, -1] += 3.0
        with torch.no_grad():
            torch.manual_seed(5)
            z = model(x).latents["z"]
            torch.manual_seed(5)
            z2 = model(x2).latents["z"]
        assert not torch.allclose(z[:, 0], z2[:, 0]), name


def test_causal_rvae_posterior_reads_x_from_t_on():
    """x_{1:t-1} tells nothing of z_t once z_{1:t-1} is given (each x_τ depends on z_{1:τ}), so
    q(z_t | z_{1:t-1}, x_{t:T}): g^x_t summarises x_{t:T}."""
    model, x = make("rvae_causal"), data()
    fx = model.phi_x(model.likelihood.features(x))
    changed = fx.clone()
    changed[:, :4] += 1.0
    with torch.no_grad():
        g, g_changed = model.g_x(fx), model.g_x(changed)
    assert torch.equal(g[:, 4:], g_changed[:, 4:]) and not torch.allclose(g[:, :4], g_changed[:, :4])


def test_analytic_gaussian_kl_matches_monte_carlo():
    torch.manual_seed(0)
    q_mean, q_logvar = torch.randn(5), torch.randn(5) * 0.5
    p_mean, p_logvar = torch.randn(5), torch.randn(5) * 0.5
    q = torch.distributions.Normal(q_mean, (0.5 * q_logvar).exp())
    p = torch.distributions.Normal(p_mean, (0.5 * p_logvar).exp())
    z = q.sample((400_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).mean(0)
    analytic = gaussian_kl(q_mean, q_logvar, p_mean, p_logvar)
    torch.testing.assert_close(analytic, mc, atol=0.02, rtol=0.02)
    # and the prior's KL, summed over dimensions, is the analytic one for a Gaussian prior
    prior = LatentPrior("gaussian")
    torch.testing.assert_close(prior.kl(q_mean, q_logvar, z[0], p_mean, p_logvar), analytic.sum())


def test_itakura_saito_nll_and_its_gradient_are_the_densitys():
    import math

    from dvae.models.likelihoods import ItakuraSaito, ItakuraSaitoNLL

    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, D, generator=g, dtype=torch.float64).exp()
    out = torch.randn(B, T, D, generator=g, dtype=torch.float64, requires_grad=True)
    shift, scale = torch.randn(D, generator=g, dtype=torch.float64), torch.rand(D, generator=g, dtype=torch.float64) + 0.5
    variance = torch.exp(out * scale + shift)
    # -log p(x) for x_f = |s_f|^2 with s_f ~ N_c(0, σ²_f): the exponential density of x over σ² times π
    expected = -(torch.distributions.Exponential(1 / variance).log_prob(x) - math.log(math.pi)).sum(-1)
    torch.testing.assert_close(ItakuraSaitoNLL.apply(x, out, shift, scale), expected)
    assert torch.autograd.gradcheck(lambda o: ItakuraSaitoNLL.apply(x, o, shift, scale), (out,))
    likelihood = ItakuraSaito(D).double()
    likelihood.shift.copy_(shift), likelihood.scale.copy_(scale)
    torch.testing.assert_close(likelihood.nll(x, out), expected)
    with pytest.raises(ValueError, match="no gradient for the data"):
        ItakuraSaitoNLL.apply(x.clone().requires_grad_(), out, shift, scale)


def test_vrnn_written_out_recursion_equals_the_stepped_loop_with_its_gradients():
    model = make("vrnn").train().double()
    x = data(seed=3).double()
    fx = model.phi_x(model.likelihood.features(x)).detach().requires_grad_()
    eps = model.noise(x)
    written_out = model.recur(fx, eps)
    assert type(written_out[0].grad_fn).__name__ == "TeacherForcedRecursionBackward"
    zeros = fx.new_zeros(B, SMALL["dense_dim"])
    stepped = model.recur(fx, eps, fx_prev=zeros, fz_prev=zeros, state=(zeros, zeros))  # a given state: the loop
    assert type(stepped[0].grad_fn).__name__ != "TeacherForcedRecursionBackward"
    for a, b in zip(written_out[:5], stepped[:5]):
        torch.testing.assert_close(a, b)
    for a, b in zip(written_out[5][2], stepped[5][2]):  # the final (h, c)
        torch.testing.assert_close(a, b)
    g = torch.Generator().manual_seed(4)
    upstream = [torch.randn(o.shape, generator=g, dtype=o.dtype) for o in written_out[:5]]
    inputs = [fx, *model.parameters()]
    expected = torch.autograd.grad(stepped[:5], inputs, upstream, allow_unused=True)
    got = torch.autograd.grad(written_out[:5], inputs, upstream, allow_unused=True)
    names = ["features", *(n for n, _ in model.named_parameters())]
    for name, a, b in zip(names, got, expected):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, msg=lambda m: f"{name}: {m}")
    assert sum(a is not None for a in got) >= 10  # features, and every weight and bias of the recursion


def test_vrnn_steps_its_loop_where_the_written_out_recursion_does_not_hold():
    fx, eps = torch.randn(B, T, SMALL["dense_dim"]), torch.randn(B, T, Z)
    assert make("vrnn").train().teacher_forced_recursion_applies(fx, None, None, None, None)
    assert not make("vrnn", dropout=0.2).train().teacher_forced_recursion_applies(fx, None, None, None, None)
    assert make("vrnn", dropout=0.2).eval().teacher_forced_recursion_applies(fx, None, None, None, None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not make("vrnn").teacher_forced_recursion_applies(fx, None, None, None, None)
    mask = torch.zeros(B, T, 1, dtype=torch.bool)
    assert not make("vrnn").teacher_forced_recursion_applies(fx, mask, None, None, None)
    assert type(make("vrnn").recur(fx, eps, mask)[0].grad_fn).__name__ != "TeacherForcedRecursionBackward"


def test_student_t_kl_estimate_is_finite_with_finite_gradients():
    torch.manual_seed(0)
    prior = LatentPrior("student_t", df=3.0, learn_df=True)
    q_mean = torch.randn(64, 4, requires_grad=True)
    q_logvar = torch.randn(64, 4).requires_grad_()
    p_mean, p_logvar = torch.randn(64, 4), torch.randn(64, 4)
    z = q_mean + (0.5 * q_logvar).exp() * torch.randn(64, 4)
    kl = prior.kl(q_mean, q_logvar, z, p_mean, p_logvar)
    kl.mean().backward()
    assert torch.isfinite(kl).all()
    for grad in (q_mean.grad, q_logvar.grad, prior.raw_df.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    # its expectation approaches the true KL(q || t): check against a large-sample estimate
    qm, qlv = torch.zeros(1), torch.zeros(1)
    samples = torch.randn(200_000, 1)
    estimate = prior.kl(qm.expand(200_000, 1), qlv.expand(200_000, 1), samples).mean()
    exact_gauss_part = -0.5 * (1 + torch.log(torch.tensor(2 * torch.pi)))  # E_q log q for N(0,1)
    expected_log_t = torch.distributions.StudentT(prior.df.detach(), 0.0, 1.0).log_prob(samples).mean()
    torch.testing.assert_close(estimate, exact_gauss_part - expected_log_t, atol=1e-3, rtol=1e-3)


def structured_batch(likelihood):
    """Sequences with temporal structure (drifting sinusoids) that a model can learn."""
    t = torch.arange(T).float()[None, :, None]
    f = torch.arange(D).float()[None, None, :]
    phase = torch.linspace(0, 3, B)[:, None, None]
    x = torch.sin(0.6 * t + 0.4 * f + phase)
    return (2 * x).exp() if likelihood == "itakura_saito" else x


@pytest.mark.parametrize("likelihood", ["gaussian", "itakura_saito"])
@pytest.mark.parametrize("prior", ["gaussian", "student_t"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_learns_a_small_batch(name, prior, likelihood):
    model = make(name, prior, likelihood).train()
    x = structured_batch(likelihood)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    with torch.no_grad():
        before = torch.stack([model.loss(x).total for _ in range(8)]).mean()
    for _ in range(150):
        loss = model.loss(x)
        optimizer.zero_grad()
        loss.total.backward()
        optimizer.step()
    with torch.no_grad():
        after = torch.stack([model.loss(x).total for _ in range(8)]).mean()
    # per-frame NLL over 12 features: a clear margin is several nats per frame
    assert after < before - 5.0, (before.item(), after.item())


@pytest.mark.parametrize("name", READS_X)
def test_generation_mode_at_probability_zero_equals_teacher_forcing(name):
    model, x = make(name), data()
    torch.manual_seed(3)
    forced = model(x)
    torch.manual_seed(3)
    stepped = model(x, feedback_prob=1e-12)  # the feedback path, reading the data everywhere
    torch.testing.assert_close(stepped.x_out, forced.x_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stepped.kl, forced.kl, atol=1e-5, rtol=1e-5)
    torch.manual_seed(3)
    fed_back = model(x, feedback_prob=1.0)
    assert not torch.allclose(fed_back.x_out[:, 1:], forced.x_out[:, 1:])


@pytest.mark.parametrize("name", [m for m in MODEL_NAMES if m not in READS_X])
def test_generation_mode_is_refused_where_it_does_not_apply(name):
    with pytest.raises(ValueError, match="generation mode"):
        make(name)(data(), feedback_prob=0.5)


@pytest.mark.parametrize("prior", ["gaussian", "student_t"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_generate_cold_and_primed(name, prior):
    model = make(name, prior, "itakura_saito")
    cold = model.generate(7, batch=2)
    primed = model.generate(5, batch=3, prime=data("itakura_saito"))  # the batch is then the prime's
    assert cold.shape == (2, 7, D) and primed.shape == (B, 5, D)
    assert torch.isfinite(cold).all() and torch.isfinite(primed).all()
    assert (cold > 0).all()  # expected power is positive


@pytest.mark.parametrize("name", ["vrnn", "srnn", "dkf", "dsae", "storn"])
def test_priming_conditions_the_continuation(name):
    model = make(name)
    a, b = data(seed=1), data(seed=2) * 3
    torch.manual_seed(0)
    ga = model.generate(4, batch=B, prime=a)
    torch.manual_seed(0)
    gb = model.generate(4, batch=B, prime=b)
    assert not torch.allclose(ga, gb)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_save_load_round_trip_gives_identical_outputs(name):
    model = make(name, "student_t", "gaussian", learn_df=True)
    with torch.no_grad():
        model.prior.raw_df.add_(0.3)  # a learned parameter away from its initial value
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    clone = make(name, "student_t", "gaussian", learn_df=True)
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    x = data()
    torch.manual_seed(9)
    a = model(x)
    torch.manual_seed(9)
    b = clone(x)
    assert torch.equal(a.x_out, b.x_out) and torch.equal(a.kl, b.kl)


def test_registry_errors_name_what_is_valid():
    with pytest.raises(ConfigError, match="choose one of vae, dkf, storn, vrnn, srnn"):
        build_model({"name": "lstm"})
    with pytest.raises(ConfigError, match="valid fields: .*z_dim"):
        build_model({"name": "vrnn", "zdim": 3})
    with pytest.raises(ConfigError, match="z_dim"):
        build_model({"name": "vrnn", "z_dim": 0})


def decoder_linear_widths(model):
    return [layer.out_features for layer in model.decoder if isinstance(layer, torch.nn.Linear)]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_decoder_layers_set_the_decoders_hidden_widths(name):
    assert decoder_linear_widths(make(name)) == [SMALL["dense_dim"], D]
    assert decoder_linear_widths(make(name, decoder_layers="8, 4")) == [8, 4, D]
    assert make(name, decoder_layers="8,4")(data()).x_out.shape == (B, T, D)


@pytest.mark.parametrize("bad", ["auto", "0", "32,,64", "-4", "wide", "32,"])
def test_decoder_layers_that_are_no_widths_are_refused(bad):
    with pytest.raises(ConfigError, match="decoder_layers: .*positive integers"):
        build_model(dict(SMALL, name="dkf", decoder_layers=bad))


def test_a_checkpoint_from_before_decoder_layers_loads_with_its_one_layer_decoder(tmp_path):
    from dvae.checkpoint import load_model, save_checkpoint
    from dvae.config import Config
    cfg = Config.from_dict(dict(SMALL, name="dkf", likelihood="gaussian"))
    old = build_model(cfg.model)
    saved = cfg.to_dict()
    del saved["model"]["decoder_layers"]
    save_checkpoint({"config": saved, "model": old.state_dict()}, tmp_path / "old.pt")
    model, loaded = load_model(tmp_path / "old.pt")
    assert loaded.model.decoder_layers == ""
    assert decoder_linear_widths(model) == [SMALL["dense_dim"], D]
