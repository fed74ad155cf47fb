"""The models on a CUDA GPU: the same function as on the CPU, and the GPU options of the step.

Skipped where no GPU is present (CI has none); run on a GPU machine with
`python -m pytest tests/test_cuda.py`.
"""
import copy
from unittest import mock

import pytest
import torch

from dvae.config import MODEL_NAMES
from dvae.cuda_graph import CudaGraphStep, make_capturable
from dvae.models import build_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

SIZES = dict(x_dim=40, z_dim=4, h_dim=32, dense_dim=32, v_dim=4, likelihood="itakura_saito")
B, T = 6, 11


def cpu_drawn_noise(seed: int):
    """torch.randn drawing on the CPU from one generator, then moved: the same noise on any device."""
    generator, randn = torch.Generator().manual_seed(seed), torch.randn

    def draw(*shape, device=None, dtype=None, **kw):
        return randn(*shape, generator=generator, dtype=dtype, **kw).to(device)

    return draw


def loss_and_gradients(model, x, **loss_kw):
    with mock.patch("torch.randn", cpu_drawn_noise(7)):
        loss = model.loss(x, kl_weight=0.6, **loss_kw)
    model.zero_grad(set_to_none=True)
    loss.total.backward()
    return loss, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_loss_and_gradients_on_cuda_equal_the_cpus(name):
    torch.manual_seed(0)
    model = build_model(dict(SIZES, name=name)).double().train()
    x = torch.randn(B, T, SIZES["x_dim"], generator=torch.Generator().manual_seed(1), dtype=torch.float64).exp()
    cpu_loss, cpu_grads = loss_and_gradients(model, x)
    cuda_loss, cuda_grads = loss_and_gradients(copy.deepcopy(model).cuda(), x.cuda())
    torch.testing.assert_close(cuda_loss.total.cpu(), cpu_loss.total)
    torch.testing.assert_close(cuda_loss.kl.cpu(), cpu_loss.kl)
    assert cuda_grads.keys() == cpu_grads.keys() and len(cpu_grads) > 4
    for key, grad in cpu_grads.items():
        torch.testing.assert_close(cuda_grads[key].cpu(), grad, msg=lambda m: f"{key}: {m}")


@pytest.mark.parametrize("name", [m for m in MODEL_NAMES if build_model(dict(SIZES, name=m)).reads_previous_x])
def test_generation_on_cuda_stays_on_the_device(name):
    torch.manual_seed(0)
    model = build_model(dict(SIZES, name=name)).cuda().eval()
    prime = torch.rand(2, 5, SIZES["x_dim"], device="cuda") + 0.1
    for out in (model.generate(8, batch=2), model.generate(8, batch=1, prime=prime)):
        assert out.device.type == "cuda" and out.shape == (2, 8, SIZES["x_dim"]) and out.isfinite().all()


@pytest.mark.parametrize("name", ["vrnn", "srnn"])
def test_bf16_autocast_step_is_close_to_float32_and_learns_alike(name):
    torch.manual_seed(0)
    model = build_model(dict(SIZES, name=name)).cuda().train()
    x = torch.randn(B, T, SIZES["x_dim"], generator=torch.Generator().manual_seed(1)).exp().cuda()
    exact, _ = loss_and_gradients(model, x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        approximate, _ = loss_and_gradients(model, x)
    assert abs(approximate.total.item() - exact.total.item()) < 0.02 * abs(exact.total.item())
    final = {}
    for bf16 in (False, True):
        trained = copy.deepcopy(model)
        optimizer = torch.optim.Adam(trained.parameters(), lr=3e-3)
        for _ in range(60):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                loss = trained.loss(x)
            optimizer.zero_grad()
            loss.total.backward()
            optimizer.step()
        final[bf16] = loss.total.item()
    assert final[False] < 0.95 * exact.total.item()  # it learns
    assert abs(final[True] - final[False]) < 0.03 * abs(final[False])  # and bf16 learns as float32 does


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_compiled_steps_on_cuda_compute_the_eager_loss(mode):
    torch.manual_seed(0)
    eager = build_model(dict(SIZES, name="srnn")).cuda().train()
    compiled = build_model(dict(SIZES, name="srnn")).cuda().train()
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_steps(mode)
    x = torch.randn(B, T, SIZES["x_dim"], generator=torch.Generator().manual_seed(1)).exp().cuda()
    want, want_grads = loss_and_gradients(eager, x)
    for _ in range(3):  # reduce-overhead records its CUDA graphs over the first calls
        got, got_grads = loss_and_gradients(compiled, x)
    torch.testing.assert_close(got.total, want.total, rtol=1e-4, atol=1e-4)
    for key, grad in want_grads.items():
        torch.testing.assert_close(got_grads[key], grad, rtol=1e-3, atol=1e-5, msg=lambda m: f"{key}: {m}")


def replayed_and_eager_steps(name, feedback_prob=0.0, steps=4, bf16=False, **model_kw):
    """(losses, final weights) of `steps` training steps replayed as a CUDA graph and stepped
    eagerly, from the same weights, optimiser state and RNG state."""
    torch.manual_seed(0)
    model = build_model(dict(SIZES, name=name, **model_kw)).cuda().train()
    x = torch.randn(B, T, SIZES["x_dim"], generator=torch.Generator().manual_seed(1)).exp().cuda()
    runs = {}
    for mode in ("graph", "eager"):
        trained = copy.deepcopy(model)
        optimizer = torch.optim.Adam(trained.parameters(), lr=1e-3)
        make_capturable(optimizer, True, x.device)  # both alike: the eager run steps the capturable Adam
        graph_step = CudaGraphStep(trained, optimizer, grad_clip=5.0, bf16=bf16)
        torch.cuda.manual_seed(11)
        losses = []
        for _ in range(steps):
            if mode == "graph":
                loss = graph_step(x, kl_weight=0.3, feedback_prob=feedback_prob)
            else:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16, cache_enabled=False):
                    loss = trained.loss(x, kl_weight=0.3, feedback_prob=feedback_prob)
                optimizer.zero_grad(set_to_none=True)
                loss.total.backward()
                torch.nn.utils.clip_grad_norm_(trained.parameters(), 5.0)
                optimizer.step()
            losses.append(loss.total.item())
        runs[mode] = losses, {k: v.clone() for k, v in trained.state_dict().items()}
    return runs["graph"], runs["eager"]


GRAPH_CASES = [(name, {}) for name in MODEL_NAMES] + [
    ("vrnn", {"prior": "student_t", "learn_df": True}),  # a Monte-Carlo KL through Student-t densities, df learned
    ("srnn", {"dropout": 0.2}),  # dropout masks drawn inside the graph: new ones at every replay
    ("rvae_noncausal", {"prior": "student_t", "dropout": 0.2}),
    ("vrnn", {"bf16": True}),
    ("dkf", {"bf16": True}),
]


@pytest.mark.parametrize("name, options", GRAPH_CASES,
                         ids=[name + "".join(f"-{k}" for k in options) for name, options in GRAPH_CASES])
def test_the_replayed_step_graph_trains_as_the_eager_step(name, options):
    (graph_losses, graph_weights), (eager_losses, eager_weights) = replayed_and_eager_steps(name, **options)
    assert len(set(graph_losses)) == len(graph_losses)  # every replay is a new step, not the recorded one again
    torch.testing.assert_close(torch.tensor(graph_losses), torch.tensor(eager_losses), rtol=1e-4, atol=1e-4)
    for key, value in eager_weights.items():
        torch.testing.assert_close(graph_weights[key], value, rtol=1e-4, atol=1e-5, msg=lambda m: f"{key}: {m}")


def test_the_step_graph_is_recorded_again_for_a_new_feedback_probability():
    (graph_losses, _), (eager_losses, _) = replayed_and_eager_steps("srnn", feedback_prob=0.5, steps=3)
    torch.testing.assert_close(torch.tensor(graph_losses), torch.tensor(eager_losses), rtol=1e-4, atol=1e-4)
    torch.manual_seed(0)
    model = build_model(dict(SIZES, name="srnn")).cuda().train()
    optimizer = torch.optim.Adam(model.parameters())
    make_capturable(optimizer, True, torch.device("cuda"))
    graph_step = CudaGraphStep(model, optimizer, grad_clip=0.0, bf16=False)
    x = torch.rand(B, T, SIZES["x_dim"], device="cuda") + 0.1
    graph_step(x, kl_weight=1.0, feedback_prob=0.0)
    first = graph_step.graph
    graph_step(x, kl_weight=1.0, feedback_prob=0.0)
    assert graph_step.graph is first
    graph_step(x, kl_weight=1.0, feedback_prob=0.5)
    assert graph_step.graph is not first and graph_step.key[-1] == 0.5
