"""The trainer: schedules, best-weights copy, early stopping, resume, divergence, TensorBoard."""
import math

import pytest
import torch

from dvae import training
from dvae.checkpoint import load_checkpoint
from dvae.config import Config, ConfigError, TrainConfig
from dvae.cuda_graph import make_capturable
from dvae.data import prepare_corpus
from dvae.schedules import feedback_prob, kl_weight, lr_schedule

TINY = dict(h_dim=16, z_dim=4, dense_dim=16, batch_size=32, seq_len=20, max_utterances=12, media_every=0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    cfg = Config.from_dict(dict(TINY, cache_dir=str(tmp_path_factory.mktemp("cache"))))
    return prepare_corpus(cfg.data, progress=False)


def tiny(**overrides) -> Config:
    return Config.from_dict(dict(TINY, **overrides))


def test_staircase_is_the_reviews():
    cfg = TrainConfig(kl_warmup="staircase", kl_warmup_epochs=50)
    weights = [kl_weight(cfg, e) for e in range(70)]
    assert weights[:10] == [0.0] * 10
    assert [round(weights[e], 6) for e in (10, 19, 20, 30, 40, 49, 50, 69)] == [0.2, 0.2, 0.4, 0.6, 0.8, 0.8, 1.0, 1.0]


def test_linear_cyclical_and_none_warmups():
    linear = TrainConfig(kl_warmup="linear", kl_warmup_epochs=4)
    assert [kl_weight(linear, e) for e in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    cyclical = TrainConfig(kl_warmup="cyclical", kl_warmup_epochs=4)
    assert [kl_weight(cyclical, e) for e in range(9)] == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0, 0.0]
    assert kl_weight(TrainConfig(kl_warmup="none"), 0) == 1.0
    assert kl_weight(TrainConfig(kl_warmup="linear", kl_warmup_epochs=0), 0) == 1.0
    assert [kl_weight(TrainConfig(kl_warmup="cyclical", kl_warmup_epochs=2), e) for e in range(4)] == [0, 1, 0, 1]
    with pytest.raises(ConfigError, match="kl_warmup_epochs: 1 is too short for a cyclical warm-up"):
        TrainConfig(kl_warmup="cyclical", kl_warmup_epochs=1)  # its weight would stay 0: no KL term at all


def test_scheduled_sampling_ramp():
    cfg = TrainConfig(ss_epochs=4, ss_start_epoch=2, ss_max_prob=0.8)
    assert [feedback_prob(cfg, e) for e in range(8)] == pytest.approx([0, 0, 0, 0.2, 0.4, 0.6, 0.8, 0.8])
    assert feedback_prob(TrainConfig(), 10) == 0.0


@pytest.mark.parametrize("kind, expected", [
    ("constant", [1e-2] * 6),
    ("step", [1e-2, 1e-2, 5e-3, 5e-3, 2.5e-3, 2.5e-3]),
    ("exponential", [1e-2 * 0.5**e for e in range(6)]),
])
def test_lr_schedules(kind, expected):
    cfg = TrainConfig(lr=1e-2, lr_schedule=kind, lr_step_epochs=2, lr_gamma=0.5, epochs=6)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    sched, seen = lr_schedule(opt, cfg), []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        sched.step()
    assert seen == pytest.approx(expected)


def test_cosine_schedules_ramp_and_reach_the_floor():
    cfg = TrainConfig(lr=1e-2, lr_min=1e-4, lr_schedule="warmup_cosine", lr_warmup_epochs=3, epochs=10)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    sched, seen = lr_schedule(opt, cfg), []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        sched.step()
    assert seen[0] < seen[1] < seen[2] < seen[3] == pytest.approx(1e-2)
    assert all(a > b for a, b in zip(seen[3:], seen[4:]))
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)


def scripted_validation(monkeypatch, losses):
    """Makes `validate` return the given losses in turn, to steer best-epoch and stopping logic."""
    it = iter(losses)

    def fake(model, windows, cfg, device):
        value = next(it)
        return {"val_loss": value, "val_recon": value, "val_kl": 0.0}

    monkeypatch.setattr(training, "validate", fake)


def test_best_weights_are_a_copy_taken_at_the_best_epoch(corpus, tmp_path, monkeypatch):
    scripted_validation(monkeypatch, [3.0, 1.0, 2.0, 2.5])
    at_epoch = {}
    summary = training.train(tiny(name="vrnn", epochs=4), tmp_path, corpus=corpus, log=lambda s: None,
                             on_epoch=lambda m, d: at_epoch.__setitem__(m["epoch"], load_checkpoint(d / "last.pt")["model"]))
    assert summary["best_epoch"] == 2 and summary["stop_reason"] == "completed"
    best, last = load_checkpoint(tmp_path / "checkpoint/best.pt"), load_checkpoint(tmp_path / "checkpoint/last.pt")
    for key, value in best["model"].items():
        assert torch.equal(value, at_epoch[2][key])
        assert torch.equal(last["best_model"][key], value)
    assert any(not torch.equal(best["model"][k], last["model"][k]) for k in best["model"])


def test_early_stopping_after_patience(corpus, tmp_path, monkeypatch):
    scripted_validation(monkeypatch, [1.0, 2.0, 3.0, 0.5, 0.1])
    summary = training.train(tiny(name="vae", epochs=5, patience=2), tmp_path, corpus=corpus, log=lambda s: None)
    assert summary["stop_reason"] == "early_stopped" and summary["epochs_run"] == 3 and summary["best_epoch"] == 1


def resume_config(name: str, **overrides) -> Config:
    """A run that exercises everything a resume must restore: dropout, a learning-rate warm-up
    and schedule, KL warm-up, scheduled sampling (SRNN) and TensorBoard media."""
    return tiny(name=name, epochs=4, dropout=0.1, lr_schedule="warmup_cosine", lr_warmup_epochs=2, media_every=2,
                kl_warmup="linear", kl_warmup_epochs=3, ss_epochs=2 if name == "srnn" else 0, **overrides)


def whole_and_resumed_runs(cfg: Config, corpus, tmp_path) -> tuple[tuple[dict, dict], tuple[dict, dict]]:
    """(summary, last checkpoint) of `cfg` run without a break, and of the same run stopped by
    an exception after its second epoch and resumed from its last checkpoint."""
    whole = training.train(cfg, tmp_path / "whole", corpus=corpus, log=lambda s: None)

    class Crash(Exception):
        pass

    def crash_after_second_epoch(metrics, checkpoint_dir):
        if metrics["epoch"] == 2:
            raise Crash

    with pytest.raises(Crash):
        training.train(cfg, tmp_path / "cut", corpus=corpus, on_epoch=crash_after_second_epoch, log=lambda s: None)
    resumed = training.train(cfg, tmp_path / "cut", corpus=corpus, resume_from=tmp_path / "cut/checkpoint/last.pt",
                             log=lambda s: None)
    return ((whole, load_checkpoint(tmp_path / "whole/checkpoint/last.pt")),
            (resumed, load_checkpoint(tmp_path / "cut/checkpoint/last.pt")))


@pytest.mark.parametrize("name", ["srnn", "dkf"])
def test_resume_equals_an_uninterrupted_run(corpus, tmp_path, name):
    (whole, a), (resumed, b) = whole_and_resumed_runs(resume_config(name), corpus, tmp_path)
    assert resumed["final"]["val_loss"] == whole["final"]["val_loss"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("cuda_graph", [False, True], ids=["eager", "cuda_graph"])
def test_resume_on_cuda_equals_an_uninterrupted_run(corpus, tmp_path, cuda_graph):
    (whole, a), (resumed, b) = whole_and_resumed_runs(resume_config("srnn", device="cuda", cuda_graph=cuda_graph),
                                                      corpus, tmp_path)
    assert resumed["final"]["val_loss"] == pytest.approx(whole["final"]["val_loss"], rel=1e-4)
    for key in a["model"]:  # GPU kernels may sum in another order from run to run: close, not equal
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=1e-4, atol=1e-6, msg=lambda m: f"{key}: {m}")
    assert float(a["optimizer"]["state"][0]["step"]) == float(b["optimizer"]["state"][0]["step"])


def test_training_lowers_the_validation_loss_and_logs_to_tensorboard(corpus, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    history = []
    training.train(tiny(name="srnn", epochs=3, media_every=1, lr=3e-3), tmp_path, corpus=corpus,
                   on_epoch=lambda m, d: history.append(m["val_loss"]), log=lambda s: None)
    assert history[-1] < history[0]
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "audio": 0}).Reload()
    tags = events.Tags()
    for name in ("val_loss", "val_recon", "val_kl", "train_loss", "kl_weight", "lr"):
        assert name in tags["scalars"]
        assert len(events.Scalars(name)) == 3
    assert [e.value for e in events.Scalars("kl_weight")] == pytest.approx([kl_weight(TrainConfig(), e) for e in range(3)])
    assert "reconstruction" in tags["images"] and "reconstruction" in tags["audio"]


def test_divergence_stops_the_run_with_a_clear_reason(corpus, tmp_path):
    # an absurd learning rate without clipping drives the Itakura-Saito log-variances to overflow
    cfg = tiny(name="vae", epochs=20, lr=1e4, grad_clip=0.0, batch_size=8)
    summary = training.train(cfg, tmp_path, corpus=corpus, log=lambda s: None)
    assert summary["stop_reason"].startswith("diverged at epoch ")
    assert summary["epochs_run"] < 20 and summary["final"]["diverged"]
    assert math.isnan(summary["final"]["val_loss"])  # what a search sees: a failed trial, not a value
    best = load_checkpoint(tmp_path / "checkpoint/last.pt")["best_model"]
    assert all(torch.isfinite(v).all() for v in best.values() if v.is_floating_point())
    assert math.isfinite(summary["best_val_loss"]) or summary["best_epoch"] == 0


def test_a_truncated_last_checkpoint_falls_back_to_the_best_one(corpus, tmp_path):
    cfg = tiny(name="vrnn", epochs=4, lr=3e-3)
    whole = training.train(cfg, tmp_path / "whole", corpus=corpus, log=lambda s: None)

    def crash_after_third_epoch(metrics, checkpoint_dir):
        if metrics["epoch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(cfg, tmp_path / "cut", corpus=corpus, on_epoch=crash_after_third_epoch, log=lambda s: None)
    last = tmp_path / "cut/checkpoint/last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    lines = []
    resumed = training.train(cfg, tmp_path / "cut", corpus=corpus, resume_from=last.parent, log=lines.append)
    assert lines[0].startswith("skipping cannot read checkpoint") and "best.pt" in lines[1]
    assert resumed["final"]["val_loss"] == whole["final"]["val_loss"]


def test_bf16_autocast_trains_and_lowers_the_loss(corpus, tmp_path):
    history = []
    training.train(tiny(name="srnn", epochs=3, lr=3e-3, amp="bf16"), tmp_path, corpus=corpus,
                   on_epoch=lambda m, d: history.append(m["val_loss"]), log=lambda s: None)
    assert all(math.isfinite(v) for v in history) and history[-1] < history[0]


def test_matmul_precision_holds_while_training_and_is_restored(corpus, tmp_path, monkeypatch):
    seen, train_epoch = [], training.train_epoch

    def recording_epoch(*args, **kwargs):
        seen.append(torch.get_float32_matmul_precision())
        return train_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", recording_epoch)
    before = torch.get_float32_matmul_precision()
    history = []
    training.train(tiny(epochs=2, matmul_precision="medium"), tmp_path, corpus=corpus,
                   on_epoch=lambda m, d: history.append(m["val_loss"]), log=lambda s: None)
    assert seen == ["medium", "medium"] and torch.get_float32_matmul_precision() == before
    assert all(math.isfinite(v) for v in history)


def test_train_leaves_the_process_settings_to_its_caller(corpus, tmp_path, monkeypatch):
    """MKL's rewrite and glibc's settings change the whole process: a notebook calling train()
    keeps its own; the fronts apply them (dvae.cpu.tune_process) before any work."""
    from dvae import cpu

    calls = []
    monkeypatch.setattr(cpu, "keep_freed_memory", lambda: calls.append("malloc"))
    monkeypatch.setattr(cpu, "unlock_mkl_on_amd", lambda: calls.append("mkl"))
    import matplotlib
    backend = matplotlib.get_backend()
    training.train(tiny(epochs=1, media_every=1), tmp_path, corpus=corpus, log=lambda s: None)
    assert calls == [] and matplotlib.get_backend() == backend

    import dvae.__main__ as cli
    import dvae.data
    prepare = dvae.data.prepare_corpus
    monkeypatch.setattr(dvae.data, "prepare_corpus", lambda *a, **k: calls.append("data") or prepare(*a, **k))
    small = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    assert cli.main(["train", *small, "--epochs", "1", "--media-every", "0", "--cache-dir", str(corpus.path.parent),
                     "--run-dir", str(tmp_path / "cli")]) == 0
    assert calls[:3] == ["mkl", "malloc", "data"]  # the command line: first thing, before any product


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_graph_without_a_gpu_is_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="cuda_graph: needs a CUDA device"):
        tiny(cuda_graph=True, device="cpu")
    with pytest.raises(ConfigError, match="cuda_graph: needs a CUDA device, and this run's device is cpu"):
        training.train(tiny(cuda_graph=True, cache_dir=str(tmp_path / "cache")), tmp_path / "run", log=lambda s: None)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def test_a_capturable_optimiser_reads_its_learning_rate_from_a_tensor_the_schedule_fills():
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([weight], lr=0.01)
    weight.grad = torch.ones(3)
    optimizer.step()  # Adam's state exists, as after a resumed checkpoint
    make_capturable(optimizer, True, torch.device("cpu"))
    group = optimizer.param_groups[0]
    lr = group["lr"]
    assert group["capturable"] and torch.is_tensor(lr) and lr.item() == pytest.approx(0.01)
    scheduler = lr_schedule(optimizer, TrainConfig(lr=0.01, lr_schedule="exponential", lr_gamma=0.5))
    scheduler.step()
    assert group["lr"] is lr and lr.item() == pytest.approx(0.005)  # filled in place: a recorded graph sees it
    make_capturable(optimizer, False, torch.device("cpu"))
    assert group["lr"] == pytest.approx(0.005) and not torch.is_tensor(group["lr"]) and not group["capturable"]
    assert optimizer.state[weight]["step"].device.type == "cpu"


def test_the_library_logs_and_the_command_line_sets_the_level(corpus, tmp_path, capsys, caplog):
    import logging

    import dvae.__main__ as cli

    with caplog.at_level(logging.INFO, logger="dvae"):
        training.train(tiny(epochs=1), tmp_path / "lib", corpus=corpus)
    assert any(r.name == "dvae.training" and "epoch   1/1" in r.getMessage() for r in caplog.records)
    capsys.readouterr()

    small = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    common = ["train", *small, "--epochs", "1", "--cache-dir", str(corpus.path.parent)]
    assert cli.main([*common, "--run-dir", str(tmp_path / "default")]) == 0
    assert "epoch   1/1" in capsys.readouterr().out
    assert cli.main([*common, "--run-dir", str(tmp_path / "quiet"), "--quiet"]) == 0
    assert "epoch   1/1" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main([*common, "--run-dir", str(tmp_path / "both"), "--quiet", "--verbose"])
    from dvae import logs

    assert logs.configure() == "INFO"
