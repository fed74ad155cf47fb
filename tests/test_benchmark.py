"""The step benchmark and its plain references: same function as the fast models, valid output.

Fast checks only: tiny sizes, no wall-clock assertions (the targets are the benchmark's to report).
"""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `benchmarks` is not an installed package

from benchmarks import bench_step  # noqa: E402
from benchmarks.reference_models import build_reference  # noqa: E402
from dvae.config import MODEL_NAMES, ModelConfig  # noqa: E402
from dvae.models import build_model  # noqa: E402
from dvae.models.base import CompiledStep  # noqa: E402

TINY = dict(x_dim=12, z_dim=3, h_dim=16, dense_dim=16, v_dim=3, likelihood="itakura_saito")
TINY_ARGS = ["--batch", "4", "--x-dim", "12", "--z-dim", "3", "--h-dim", "8", "--dense-dim", "8",
             "--reps", "2", "--warmup", "1", "--sgemm-size", "64"]


def batch(seed=1):
    return torch.randn(4, 9, 12, generator=torch.Generator().manual_seed(seed)).exp()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_reference_computes_the_fast_models_loss_and_gradients(name):
    cfg = ModelConfig(name=name, **TINY)
    torch.manual_seed(0)
    fast = build_model(cfg)
    torch.manual_seed(5)  # other initial weights: the reference takes the fast model's state dict
    reference = build_reference(cfg)
    reference.load_state_dict(fast.state_dict())
    assert [(k, v.shape) for k, v in fast.state_dict().items()] == [(k, v.shape) for k, v in reference.state_dict().items()]
    x = batch()
    torch.manual_seed(3)
    a = fast.loss(x, kl_weight=0.7)
    torch.manual_seed(3)  # the same noise
    b = reference.loss(x, kl_weight=0.7)
    torch.testing.assert_close(a.total, b.total, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.kl, b.kl, rtol=1e-5, atol=1e-5)
    a.total.backward()
    b.total.backward()
    for (key, p), q in zip(fast.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=key)


def test_lstm_flops_are_added_by_the_formula():
    cfg = ModelConfig(name="storn", **TINY)
    model, x = build_model(cfg), batch()
    counted, lstm = bench_step.count_flops(model, x, amp=None)
    B, T, H, M, Z = 4, 9, 16, 16, 3
    forward = 2 * B * T * 4 * H * (M + H) + 2 * B * T * 4 * H * (M + Z + H)  # rnn_g over φx, rnn_h over [φx, z]
    assert lstm == 3 * forward  # forward, and twice that backward
    assert counted > 0  # the linear layers, seen by FlopCounterMode
    assert all(p.grad is None for p in model.parameters())  # counting leaves no gradients behind


def test_benchmark_writes_the_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench_step.main([*TINY_ARGS, "--models", "vrnn", "dkf", "--frames", "6", "12", "--in-process", "--out", str(out)])
    result = json.loads(out.read_text())
    assert "speed-up" in capsys.readouterr().out
    assert result["device"] == "cpu" and result["sizes"]["batch"] == 4
    assert [(r["model"], r["frames"]) for r in result["rows"]] == [("vrnn", 6), ("vrnn", 12), ("dkf", 6), ("dkf", 12)]
    for row in result["rows"]:
        for key in ("step_ms", "reference_step_ms", "speedup", "flops", "flops_counted", "flops_lstm_analytic",
                    "achieved_gflops", "matmul_gflops", "matmul_fraction", "threads"):
            assert isinstance(row[key], (int, float)) and row[key] >= 0, key
        assert row["flops"] == row["flops_counted"] + row["flops_lstm_analytic"] > 0
        # the machine's rate is the faster of the BLAS sgemm and oneDNN's float32 kernel
        libraries = [row["sgemm_gflops"]] + ([row["onednn_gflops"]] if "onednn_gflops" in row else [])
        assert row["matmul_gflops"] == max(libraries) > 0
        # at the machine's rate the step would take flops / rate, the reference the time it took
        ideal_ms = 1e3 * row["flops"] / (row["matmul_gflops"] * 1e9)
        assert row["speedup_ceiling"] == pytest.approx(row["reference_step_ms"] / ideal_ms)
        assert row["speedup"] / row["speedup_ceiling"] == pytest.approx(row["matmul_fraction"])
        assert row["peak_mem_mb"] is None  # not measured in-process
        # the step's matrix products timed alone; whether they are faster than the whole step is a
        # measurement (a loaded machine can reverse it), so only the derived columns are checked
        assert row["matrix_products"] > 0 and row["matrix_products_share"] > 0
        assert row["matrix_products_share"] == pytest.approx(row["matrix_products_ms"] / row["step_ms"])
        assert row["speedup_matrix_products_bound"] == pytest.approx(row["reference_step_ms"] / row["matrix_products_ms"])
    targets = {(c["model"], c["target"].split()[0]) for c in result["targets"]}
    assert ("vrnn", "speedup") in targets and ("dkf", "matmul_fraction") in targets
    assert all(isinstance(c["holds"], bool) for c in result["targets"])


@pytest.mark.parametrize("name", ["vae", "vrnn", "storn"])
def test_the_replayed_matrix_products_are_the_steps_own(name):
    """What the benchmark times as the step's matrix products alone is every product of its
    forward and backward passes, nothing more: the same FLOPs as the step's own count, and
    nn.LSTM's fused kernels (which the counter does not see) among them, forward and back."""
    model, x = build_model(ModelConfig(name=name, **TINY)), batch()
    calls = bench_step.record_matrix_products(bench_step.make_step(model, x, amp=None))
    with FlopCounterMode(display=False) as counter:
        for func, args, kwargs in calls:
            func(*args, **kwargs)
    assert counter.get_total_flops() == bench_step.count_flops(model, x, amp=None)[0]
    ops = {func.overloadpacket.__name__ for func, _, _ in calls}
    has_lstm = any(isinstance(m, torch.nn.LSTM) for m in model.modules()) and name != "vrnn"  # VRNN steps its own
    assert ({"mkldnn_rnn_layer", "mkldnn_rnn_layer_backward"} <= ops) == has_lstm
    assert bench_step.replay_seconds(calls, torch.device("cpu"), reps=1) > 0


def test_benchmark_measures_peak_memory_in_a_fresh_process(tmp_path):
    out = tmp_path / "bench.json"
    bench_step.main([*TINY_ARGS, "--models", "srnn", "--frames", "6", "--out", str(out)])
    row = json.loads(out.read_text())["rows"][0]
    assert row["model"] == "srnn" and row["peak_mem_mb"] is not None and row["peak_mem_mb"] >= 0


def test_a_step_that_fails_to_compile_runs_eagerly(monkeypatch):
    def broken_compile(fn, **kwargs):
        def compiled(*args):
            raise RuntimeError("no compiler here")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    torch.manual_seed(0)
    eager = build_model(dict(TINY, name="vrnn"))
    torch.manual_seed(0)
    compiled = build_model(dict(TINY, name="vrnn")).compile_steps()
    assert isinstance(compiled.q_step, CompiledStep)
    x = batch()
    torch.manual_seed(3)
    with pytest.warns(UserWarning, match="running it eagerly"):
        b = compiled.loss(x)
    torch.manual_seed(3)
    a = eager.loss(x)
    assert torch.equal(a.total, b.total)
    assert compiled.q_step.compiled is None  # it stays eager, without retrying every step


@pytest.mark.slow
def test_trial_startup_benchmark_times_every_trial(tmp_path):
    """Two trials of the smoke space through the search's own tuner, in a Ray of its own."""
    import os
    import subprocess
    import tempfile

    from dvae.data import DataError, prepare_corpus
    from dvae.spaces import load_space

    space = load_space("vrnn_priors", "smoke")
    try:
        prepare_corpus(space.config(space.variants[0]).data, progress=False)
    except DataError as e:
        pytest.skip(f"built-in corpus not available: {e}")
    out = tmp_path / "trial.json"
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's socket paths must stay short
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_trial", "--trials", "2", "--storage", str(tmp_path),
                           "--out", str(out)], cwd=Path(bench_step.ROOT), env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert len(result["trials"]) == 2 and result["first_s"] == result["trials"][0]["overhead_s"]
    assert all(t["overhead_s"] > 0 and t["epoch_time_s"] > 0 for t in result["trials"])
    assert result["holds"] == (result["max_s"] < result["target_s"])
    assert "from scheduled to first epoch" in done.stdout


def test_gpu_share_benchmark_sums_the_trials_rates(tmp_path, capsys):
    from benchmarks import bench_gpu_share
    with pytest.raises(SystemExit):
        bench_gpu_share.main(["--trials", "1", "--device", "cpu"])
    out = tmp_path / "share.json"
    result = bench_gpu_share.main(["--device", "cpu", "--models", "vae", "--trials", "2", "--seconds", "0.5",
                                   "--warmup", "1", "--batch", "2", "--frames", "4", "--out", str(out)])
    row = json.loads(out.read_text())["rows"][0]
    assert row == result["rows"][0] and len(row["shared_per_trial_steps_per_s"]) == 2
    assert row["shared_steps_per_s"] == pytest.approx(sum(row["shared_per_trial_steps_per_s"]))
    assert row["ratio"] == pytest.approx(row["shared_steps_per_s"] / row["alone_steps_per_s"]) and row["ratio"] > 0
    assert row["holds"] is None  # the 2.5x target is for 4 trials
    assert "vae" in capsys.readouterr().out


def test_step_benchmark_refuses_cuda_graphs_on_the_cpu():
    with pytest.raises(SystemExit, match="--cuda-graph needs --device cuda"):
        bench_step.main([*TINY_ARGS, "--cuda-graph"])


def test_search_efficiency_counts_epochs_to_the_target_from_replayed_reports():
    from benchmarks import search_efficiency as eff
    from dvae.curves import Curve, CurveTable
    table = CurveTable([Curve(0, {"variant": "vrnn"}, (10.0, 8.0, 7.0), (1.0,) * 3),
                        Curve(1, {"variant": "vrnn"}, (9.0, 5.0, 4.0), (1.0,) * 3),
                        Curve(2, {"variant": "vrnn"}, (12.0, 11.0, 2.0), (1.0,) * 3)])
    # config 0 runs to its end, config 2 is stopped after one epoch, config 1 runs to its end
    events = [(1, 0), (2, 0), (3, 0), (1, 2), (1, 1), (2, 1), (3, 1)]
    points = eff.trajectory(events, table, max_t=3)
    assert points == [(3, 7.0, 0), (7, 4.0, 1)]  # a stopped trial's good low-budget value never counts
    assert eff.epochs_to(points, 4.0) == 7 and eff.epochs_to(points, 2.0) == float("inf")
    runs = [{"method": "random", "points": [(6, 4.0)]}, {"method": "random", "points": [(9, 2.0)]},
            {"method": "random", "points": [(8, 3.0)]},
            {"method": "asha_tpe", "points": [(3, 2.0)]}, {"method": "asha_tpe", "points": [(5, 2.01)]}]
    summary = eff.summarise(runs, table, max_t=3, epochs=10)
    assert summary["table"]["best_val_loss"] == 2.0 and summary["table"]["target"] == 2.02
    random, ours = summary["methods"]["random"], summary["methods"]["asha_tpe"]
    assert random["epochs_to_target"]["median"] is None and random["reached_target"] == 1  # two never got there
    assert ours["epochs_to_target"] == {"median": 4.0, "q1": 3.5, "q3": 4.5} and ours["reached_target"] == 2
    assert summary["random_final_best"] == 3.0 and random["epochs_to_random_final"]["median"] == 9.0
    assert ours["epochs_to_random_final"]["median"] == 4.0 and ours["ratio_to_random_random_final"] == 4.0 / 9.0
    assert ours["ratio_to_random"] is None  # random search's median never reached the target
    assert eff.best_by(points, 6) == 7.0 and eff.best_by(points, 2) == float("inf")


def test_on_a_surrogate_a_search_is_also_judged_by_what_its_configuration_scores_on_average():
    from benchmarks import search_efficiency as eff
    from dvae.curves import Curve, CurveTable
    # configuration 1 scored best once (2.0) but scores 6.0 on average; configuration 0, 3.0 once, 1.0 on average
    table = CurveTable([Curve(0, {}, (3.0,), (1.0,)), Curve(1, {}, (2.0,), (1.0,)), Curve(2, {}, (9.0,), (1.0,))])
    expected = [1.0, 6.0, 8.0]
    runs = [{"method": "random", "points": [(4, 3.0, 0), (9, 2.0, 1)]},   # ends on the lucky run
            {"method": "asha_tpe", "points": [(2, 9.0, 2), (5, 3.0, 0)]}]  # ends on the good configuration
    summary = eff.summarise(runs, table, max_t=1, epochs=10, expected=expected)
    assert summary["expected"] == {"optimum": 1.0, "target": 1.01}
    random, ours = summary["methods"]["random"], summary["methods"]["asha_tpe"]
    assert random["expected_final"]["median"] == 6.0 and ours["expected_final"]["median"] == 1.0
    # random search held the best configuration from epoch 4 to 9, then traded it for a luckier run
    assert random["epochs_to_expected_target"]["median"] == 4.0 and ours["epochs_to_expected_target"]["median"] == 5.0
    assert ours["ratio_to_random_expected_target"] == 5.0 / 4.0
    assert random["epochs_to_target"]["median"] == 9.0  # by the runs' own scores, random search got there
    assert "| asha_tpe | 1.0 [1.0, 1.0] | 5 [5, 5] | 1.25" in eff.markdown(summary)


def test_an_informed_search_draws_from_the_best_on_average_until_one_run_reaches_the_target():
    from benchmarks import search_efficiency as eff
    from dvae.curves import Curve, CurveTable
    # by expected value the order is 3, 0, 2, 1; only configuration 0's run (1.0) comes within 1.5
    runs = {0: 1.0, 1: 1.2, 2: 5.0, 3: 4.0}
    table = CurveTable([Curve(i, {}, (v,), (1.0,)) for i, v in runs.items()])
    expected = [2.0, 9.0, 3.0, 1.0]
    one, two, all_ = eff.informed_search(table, expected, target=1.5, max_t=4, random_median=16.0, shares=(0.25, 0.5, 1.0))
    assert one == {"share": 0.25, "configurations": 1, "within_target": 0, "median_epochs": None, "ratio_to_random": None}
    # two configurations, one of them a hit: the first training hits with chance 1/2
    assert two["within_target"] == 1 and two["median_epochs"] == 4 and two["ratio_to_random"] == 0.25
    # configuration 1's lucky run (1.2) counts too: 2 hits of 4, the first training hits with chance 1/2
    assert all_["within_target"] == 2 and all_["median_epochs"] == 4
    assert eff.informed_search(table, expected, target=1.1, max_t=4, random_median=None, shares=(1.0,))[0][
        "median_epochs"] == 8  # one hit of 4: missed twice with chance 3/4 * 2/3 = 1/2


def test_the_ratio_to_random_search_has_a_bootstrap_interval():
    from benchmarks import search_efficiency as eff
    assert eff.ratio_interval([10.0] * 5, [30.0] * 5) == [1 / 3, 1 / 3]  # no spread, no width
    low, high = eff.ratio_interval([10.0, 12.0, 14.0, 16.0, 18.0], [20.0, 30.0, 40.0, 50.0, 60.0])
    assert 10 / 60 <= low < 14 / 40 < high <= 18 / 20
    # most of our runs never got there: the interval has no upper bound
    assert eff.ratio_interval([10.0, math.inf, math.inf], [20.0, 30.0, 40.0])[1] is None


def _three_curve_space(tmp_path):
    """A one-parameter space with ASHA over 4 epochs, and a table of 3 curves on it: the
    lower the learning rate, the better (config 0 is the best, 7.0 at its last epoch)."""
    from dvae.curves import Curve, CurveTable
    from dvae.spaces import load_space
    space_file = tmp_path / "space.yaml"
    space_file.write_text("description: x\nmodels: [vrnn]\nfixed: {epochs: 4}\n"
                          "search:\n  lr: {loguniform: [1.0e-3, 1.0e-2]}\n"
                          "asha: {max_t: 4, grace_period: 1, reduction_factor: 2}\nnum_samples: 4\n"
                          "budgets: {smoke: {}, small: {}, full: {}}\n")
    table = CurveTable([Curve(i, {"variant": "vrnn", "lr": lr}, tuple(10.0 * (i + 1) - e for e in range(4)), (1.0,) * 4)
                        for i, lr in enumerate((1e-3, 3e-3, 1e-2))])
    return load_space(str(space_file), "smoke"), table


def test_a_replayed_search_counts_its_trials_and_the_recorded_curves_they_replayed(tmp_path):
    from benchmarks import search_efficiency as eff
    space, table = _three_curve_space(tmp_path)
    run = eff.replayed_search("optuna_hyperband", space, table, tmp_path / "unused.csv", rep=0, epochs=40, concurrent=1)
    assert run["consumed"] == 40 and run["method"] == "optuna_hyperband"
    # 40 epochs of trials of at most 4 epochs: at least 10 trials, on no more than the 3 curves
    assert run["trials"] >= 10 and 1 <= run["distinct_configs"] <= 3
    assert run["points"] and run["points"][-1][1] in {7.0, 17.0, 27.0}  # a curve's best at its last epoch


def test_a_variant_of_the_default_search_is_named_by_its_settings_and_refused_when_malformed(tmp_path, capsys):
    from benchmarks import search_efficiency as eff
    name = eff.variant_method("reduction_factor=4, grace_period=1")
    assert name == eff.variant_method("grace_period=1,reduction_factor=4") == "asha_tpe[grace_period=1,reduction_factor=4]"
    assert eff.variant_settings(name) == ({"grace_period": 1, "reduction_factor": 4}, {})
    assert eff.variant_settings(eff.variant_method("multivariate=true,n_startup_trials=5")) == (
        {}, {"multivariate": True, "n_startup_trials": 5})
    assert eff.variant_settings("asha_tpe") == ({}, {})
    for bad, says in (("max_t=3", "is not field=value"), ("grace_period", "is not field=value"),
                      ("multivariate=yes", "true or false"), ("grace_period=0", "at least 1"), ("", "give field=value")):
        with pytest.raises(ValueError, match=says):
            eff.variant_method(bad)
    space, table = _three_curve_space(tmp_path)
    recorded = tmp_path / "table.csv"
    from dvae.curves import CurveTable
    CurveTable.write(recorded, table.curves, ["lr"])
    assert eff.main(["--space", str(tmp_path / "space.yaml"), "--budget", "smoke", "--table", str(recorded),
                     "--variant", "grace_period=9", "--out", str(tmp_path / "eff")]) == 2
    assert "grace_period 9 is past the full budget (4 epochs)" in capsys.readouterr().err
    assert not (tmp_path / "eff").exists()  # refused before any work


def test_syne_tunes_asha_replays_the_nearest_curves_and_stops_at_the_epoch_budget(tmp_path):
    pytest.importorskip("syne_tune", reason="Syne Tune is a peer of the search benchmark, not a dependency")
    from benchmarks import search_efficiency as eff
    space, table = _three_curve_space(tmp_path)
    events = eff.syne_run("syne_asha", space, table, rep=0, epochs=30, concurrent=2)
    assert len(events) == 30 and {config for _, config in events} <= {0, 1, 2}
    assert all(1 <= epoch <= 4 for epoch, _ in events)
    assert any(epoch == 4 for epoch, _ in events)  # some trials ran to the full budget


def test_a_distinct_replay_gives_each_new_trial_the_nearest_curve_not_yet_replayed(tmp_path):
    from ray.tune.search import Searcher

    from benchmarks import search_efficiency as eff
    space, table = _three_curve_space(tmp_path)

    class SameProposal(Searcher):  # a searcher stuck on one configuration, as a collapsed TPE is
        def suggest(self, trial_id):
            return {"variant": "vrnn", "lr": 1.1e-3}

    limiter = eff.DistinctLimiter(SameProposal(metric="val_loss", mode="min"), 10,
                                  eff.DistinctCurves(table, space.params), shared={"epochs": 4})
    suggestions = [limiter.suggest(str(i)) for i in range(4)]
    # the nearest, then the next nearest...; once all are replayed, the nearest again
    assert [s["lr"] for s in suggestions] == [1e-3, 3e-3, 1e-2, 1e-3]
    # the trial's configuration is its curve's: the replay trainable finds that curve
    assert [table.nearest(s, space.params).config_id for s in suggestions] == [0, 1, 2, 0]

    events = eff.optuna_run(space, table, rep=0, epochs=40, distinct=eff.DistinctCurves(table, space.params))
    started = [config for epoch, config in events if epoch == 1]
    assert sorted(started[:3]) == [0, 1, 2] and len(started) > 3  # then the curves repeat
    run = eff.replayed_search("optuna_hyperband", space, table, tmp_path / "unused.csv", rep=0, epochs=40,
                              concurrent=1, replay="distinct")
    assert run["replay"] == "distinct" and run["distinct_configs"] == 3


def test_search_table_records_and_resumes_from_an_empty_cache(tmp_path):
    """The table's command on a machine that has not prepared the corpus yet (its trainings run in
    daemonic pool workers, which may not start the cache's own workers), then a resume that
    keeps the recorded configurations and trains only the new one."""
    import os
    import subprocess

    from benchmarks.search_table import sampled_configurations
    from dvae.curves import CurveTable
    from dvae.spaces import load_space
    table = tmp_path / "table.csv"
    env = {**os.environ, "DVAE_CACHE": str(tmp_path / "cache")}

    def run(configs: int, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "benchmarks.search_table", "--space", "vrnn_priors", "--budget", "smoke",
             "--configs", str(configs), "--jobs", "2", "--out", str(table), *extra],
            cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True, timeout=600)

    first = run(2)
    assert first.returncode == 0, first.stderr[-3000:]
    curves = CurveTable.read(table).curves
    sampled = sampled_configurations(load_space("vrnn_priors", "smoke"), 3)
    assert [c.params for c in curves] == sampled[:2]
    assert all(len(c.val_loss) == 4 and all(math.isfinite(v) for v in c.val_loss) for c in curves)
    assert run(3).returncode == 2  # an existing table is not overwritten without --resume
    fewer = run(1, "--resume")
    assert fewer.returncode == 2 and "already holds 2 configurations" in fewer.stderr
    resumed = run(3, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "3 configurations, 2 recorded, 1 to train" in resumed.stdout
    again = CurveTable.read(table).curves
    assert [c.params for c in again] == sampled and again[:2] == curves


def test_search_efficiency_replays_the_tables_first_configurations_and_resumes_only_on_the_same(tmp_path):
    from benchmarks import search_efficiency as eff
    from dvae.curves import CurveTable
    space, table = _three_curve_space(tmp_path)
    recorded = tmp_path / "table.csv"
    CurveTable.write(recorded, table.curves, ["lr"])
    out = tmp_path / "eff"

    def run(*extra: str) -> int:
        return eff.main(["--space", str(tmp_path / "space.yaml"), "--budget", "smoke", "--table", str(recorded),
                         "--methods", "optuna_hyperband", "--repetitions", "1", "--epochs", "20",
                         "--out", str(out), *extra])

    assert run("--configs", "4") == 2  # more than the table holds
    assert run("--configs", "2") == 0
    summary = json.loads((out / "search_efficiency.json").read_text())
    runs = [json.loads(line) for line in (out / "search_efficiency_runs.jsonl").read_text().splitlines()]
    assert summary["table"]["configurations"] == 2 and [r["configurations"] for r in runs] == [2]
    assert runs[0]["distinct_configs"] <= 2  # config 2 (the third curve) was not in the replayed table
    # curve 0 alone is within 1% of the best; it is the nearest for lr below sqrt(1e-3 * 3e-3)
    assert summary["table"]["curves_within_target"] == 1
    assert summary["table"]["uniform_share_within_target"] == pytest.approx(math.log10(3) / 2, abs=0.03)
    assert run("--resume") == 2  # the whole table is another benchmark: the runs are kept, not mixed
    assert len((out / "search_efficiency_runs.jsonl").read_text().splitlines()) == 1
    assert run("--configs", "2", "--resume", "--repetitions", "2") == 0
    assert len((out / "search_efficiency_runs.jsonl").read_text().splitlines()) == 2


def _lr_only_space(tmp_path, n=40):
    """A space of a learning rate and a prior, and a table of `n` curves on it whose loss
    depends on the learning rate alone (best at 3e-3), the prior sampled at random."""
    import random

    from dvae.curves import Curve, CurveTable
    from dvae.spaces import load_space
    space_file = tmp_path / "space.yaml"
    space_file.write_text("description: x\nmodels: [vrnn]\nfixed: {epochs: 4}\n"
                          "search:\n  lr: {loguniform: [1.0e-4, 1.0e-1]}\n  prior: {choice: [gaussian, student_t]}\n"
                          "asha: {max_t: 4, grace_period: 1, reduction_factor: 2}\nnum_samples: 4\n"
                          "budgets: {smoke: {}, small: {}, full: {}}\n")
    rng = random.Random(0)
    curves = []
    for i in range(n):
        lr = 10 ** rng.uniform(-4, -1)
        gap = 20.0 * (math.log10(lr) - math.log10(3e-3)) ** 2
        curves.append(Curve(i, {"variant": "vrnn", "lr": lr, "prior": rng.choice(["gaussian", "student_t"])},
                            tuple(100.0 - 10 * e + gap for e in range(4)), (1.0,) * 4))
    return load_space(str(space_file), "smoke"), CurveTable(curves)


def test_the_surrogate_learns_which_fields_move_the_curves(tmp_path):
    from benchmarks import search_surrogate
    space, table = _lr_only_space(tmp_path)
    fitted = search_surrogate.fit(table, space.params, max_t=4)
    assert fitted["field_weights"]["prior"] == 0.0 and fitted["field_weights"]["lr"] > 0
    assert fitted["leave_one_out_median_abs_error"] < fitted["leave_one_out_median_abs_error_unweighted"]
    dense, expected, made = search_surrogate.surrogate(table, space, size=200)
    assert made["configurations"] == len(dense.curves) == len(expected) == 200 and made["residuals"] == 40
    # the expected value is the neighbours' mean without roughness: nearer the truth than the curve
    truth = [70.0 + 20.0 * (math.log10(c.params["lr"]) - math.log10(3e-3)) ** 2 for c in dense.curves]
    assert np.median(np.abs(np.array(expected) - truth)) <= np.median(
        np.abs(np.array([c.best(4) for c in dense.curves]) - truth))
    # inside the recorded range, the dense curves follow the truth (the gap spans 0 to 45 there;
    # the table has no noise, so what they add is the interpolation's own error)
    errors = [abs(c.val_loss[3] - 70.0 - 20.0 * (math.log10(c.params["lr"]) - math.log10(3e-3)) ** 2)
              for c in dense.curves if -3.5 < math.log10(c.params["lr"]) < -1.5]
    assert np.median(errors) < 1.5 and max(errors) < 8.0
    # the best of the dense table is near the best learning rate, whatever the prior
    best = min(dense.curves, key=lambda c: c.best(4))
    assert abs(math.log10(best.params["lr"]) - math.log10(3e-3)) < 0.3


def test_the_surrogates_mean_is_a_recorded_curve_at_its_own_configuration_and_ends_where_one_diverges():
    from benchmarks import search_surrogate
    from dvae.curves import Curve
    a = Curve(0, {}, (10.0, 8.0, 6.0), (1.0, 1.0, 1.0))
    b = Curve(1, {}, (20.0, float("nan")), (3.0, 3.0))
    loss, seconds = search_surrogate.weighted_mean([a, b], np.array([0.0, 1.0]))
    assert list(loss) == [10.0, 8.0, 6.0]
    loss, seconds = search_surrogate.weighted_mean([a, b], np.array([1.0, 1.0]))
    assert loss[0] == 15.0 and math.isnan(loss[1]) and len(loss) == 2 and seconds[0] == 2.0
    loss, _ = search_surrogate.weighted_mean([a, b], np.array([1.0, 2.0]))  # weights 1/d^2: 4 to 1
    assert loss[0] == pytest.approx((4 * 10.0 + 20.0) / 5)


def test_the_surrogates_noise_is_how_far_each_recorded_curve_strays_from_its_neighbours():
    from benchmarks import search_surrogate
    from dvae.curves import Curve, CurveTable
    from dvae.spaces import Param
    lr = (Param("lr", "uniform", low=0.0, high=1.0),)
    table = CurveTable([Curve(i, {"variant": "vrnn", "lr": x}, (y, y - 1.0), (1.0, 1.0))
                        for i, (x, y) in enumerate([(0.1, 10.0), (0.2, 14.0), (0.3, 10.0)])])
    # the middle curve is 4 above both its neighbours; each end is predicted from the other two
    end, middle, _ = search_surrogate.residuals(table, lr, neighbours=2, weights={"lr": 1.0}, max_t=2)
    assert list(middle) == pytest.approx([4.0, 4.0])
    assert end[0] == pytest.approx(10.0 - (4 * 14.0 + 10.0) / 5)  # weights 1/d^2: 0.1 and 0.2 away
    diverged = CurveTable([*table.curves[:2], Curve(2, {"variant": "vrnn", "lr": 0.3}, (10.0, math.nan), (1.0, 1.0))])
    assert search_surrogate.residuals(diverged, lr, neighbours=2, weights={"lr": 1.0}, max_t=2)[2] is None


def test_early_ranks_say_whether_an_early_epoch_orders_the_best_configurations_as_the_last_does():
    from benchmarks import search_surrogate
    from dvae.curves import Curve, CurveTable
    # six configurations: by epoch 1 ordered as at the end overall, but the best three in reverse
    ends = [1.0, 2.0, 3.0, 10.0, 11.0, 12.0]
    firsts = [22.0, 21.0, 20.0, 30.0, 31.0, 32.0]
    table = CurveTable([Curve(i, {}, (first, end), (1.0, 1.0)) for i, (first, end) in enumerate(zip(firsts, ends))])
    ranks = search_surrogate.early_ranks(table, max_t=2, epochs=(1, 2), best=3)
    assert ranks["1"]["best_3"] == pytest.approx(-1.0)
    assert 0.5 < ranks["1"]["all"] < 1.0
    assert ranks["2"] == {"all": pytest.approx(1.0), "best_3": pytest.approx(1.0)}


def test_the_seed_repeats_separate_a_seeds_effect_on_every_configuration_from_noise():
    from benchmarks import search_surrogate
    from dvae.curves import Curve, CurveTable
    table = CurveTable([Curve(0, {}, (10.0, 10.0), (1.0,) * 2), Curve(1, {}, (5.0, 5.0), (1.0,) * 2),
                        Curve(2, {}, (7.0, 7.0), (1.0,) * 2)])
    # seed 1 adds 4 to both configurations it trained: a seed's effect on all of them, no noise
    same = CurveTable([Curve(0, {"seed": 1}, (14.0, 14.0), (1.0,) * 2), Curve(1, {"seed": 1}, (9.0, 9.0), (1.0,) * 2)])
    assert search_surrogate.seed_spread(table, [same], max_t=2) == {
        "seed_configurations": [0, 1], "seeds": 2, "seed_effect_last_epoch": [-2.0, 2.0],
        "seed_interaction_sd_last_epoch": 0.0}
    # at the last epoch seed 1 moves configuration 0 by +2 and configuration 1 by +6: residuals of 1,
    # one curve's spread 2 (C = S = 2: the residuals shrink by half)
    apart = CurveTable([Curve(0, {"seed": 1}, (14.0, 12.0), (1.0,) * 2), Curve(1, {"seed": 1}, (9.0, 11.0), (1.0,) * 2)])
    assert search_surrogate.seed_spread(table, [apart], max_t=2)["seed_interaction_sd_last_epoch"] == pytest.approx(2.0)
    assert search_surrogate.seed_spread(table, [CurveTable([same.curves[0]])], max_t=2) == {}  # one configuration
    with pytest.raises(ValueError, match="configuration 7"):
        search_surrogate.seed_spread(table, [CurveTable([Curve(7, {"seed": 1}, (1.0,), (1.0,))])], max_t=2)
    rows = search_surrogate.seed_repeats_markdown(table, [same], max_t=2).splitlines()[2:]
    assert rows == ["| 1 | 1 | 5.0 | 9.0 |", "| 0 | 3 | 10.0 | 14.0 |"]  # by rank: the lowest loss first


def test_search_efficiency_replays_a_surrogate_made_of_the_table(tmp_path, capsys):
    from benchmarks import search_efficiency as eff
    from benchmarks import search_surrogate
    from dvae.curves import Curve, CurveTable
    space, table = _lr_only_space(tmp_path, n=12)
    recorded = tmp_path / "table.csv"
    CurveTable.write(recorded, table.curves, ["lr", "prior"])
    out = tmp_path / "eff"

    def run(*extra: str) -> int:
        return eff.main(["--space", str(tmp_path / "space.yaml"), "--budget", "smoke", "--table", str(recorded),
                         "--methods", "optuna_hyperband", "--repetitions", "1", "--epochs", "20", "--replay",
                         "surrogate", "--surrogate-size", "60", "--out", str(out), *extra])

    again = [Curve(c.config_id, {**c.params, "seed": 1}, tuple(v + 1.0 for v in c.val_loss), c.epoch_time_s)
             for c in table.curves[:3]]
    CurveTable.write(tmp_path / "table_seed1.csv", again, ["lr", "prior", "seed"])  # seed repeats beside it
    assert run() == 0
    summary = json.loads((out / "search_efficiency_surrogate.json").read_text())
    assert summary["replay"] == "surrogate" and summary["surrogate"]["residuals"] == 12
    assert summary["surrogate"]["seed_effect_last_epoch"] == [-0.5, 0.5]  # seed 1 adds 1 to all three
    assert summary["table"]["configurations"] == 60 and summary["surrogate"]["recorded_configurations"] == 12
    # the target is the recorded table's best; the curves replayed are the surrogate's
    assert summary["table"]["best_val_loss"] == min(c.best(4) for c in table.curves)
    dense, expected, _ = search_surrogate.surrogate(table, space, 60)  # made again: the same curves
    assert summary["expected"]["optimum"] == min(expected) and "expected_final" in summary["methods"]["optuna_hyperband"]
    assert [row["share"] for row in summary["informed"]] == list(eff.INFORMED_SHARES)
    within = sum(c.best(4) <= summary["table"]["target"] for c in dense.curves)
    assert summary["table"]["curves_within_target"] == within
    assert {c.val_loss for c in dense.curves}.isdisjoint({c.val_loss for c in table.curves})
    (line,) = (out / "search_efficiency_surrogate_runs.jsonl").read_text().splitlines()
    assert json.loads(line)["surrogate_size"] == 60 and json.loads(line)["configurations"] == 12
    assert "a surrogate of 60 configurations interpolated from 12 recorded" in eff.markdown(summary)
    assert run("--resume", "--surrogate-size", "80") == 2  # another surrogate: its runs are not mixed in
    assert "replayed surrogates of 60 configurations" in capsys.readouterr().err
