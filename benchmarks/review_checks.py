"""Checks behind the differences between our review benchmark and the review's figures.

    python -m benchmarks.review_checks motion experiments/review-mocap-small
    python -m benchmarks.review_checks motion experiments/review-mocap-within-small --out review_mocap_within_checks.json
    python -m benchmarks.review_checks budget experiments/budget-check/dkf-100 experiments/budget-check/vae-100 ...
    python -m benchmarks.review_checks variants experiments/variant-check/dkf-review-decoder ...
    python -m benchmarks.review_checks terms experiments/review-asterisk-small

motion: for every trial of a review_mocap experiment, MPJPE of its best checkpoint on the
training split beside the test split (the same 50-frame windows side by side, teacher-forced),
and three reference predictors of the test windows: the training data's mean pose, each
window's own mean pose, and the previous frame. Writes results/review_mocap_checks.json (or
--out).

budget: the test scores (eval_test.json), best epochs and the validation ELBO's two terms
(reconstruction and KL, per frame) of runs trained with `dvae train` at the benchmark's
settings but more epochs. Writes results/review_asterisk_budget.json.

variants: the same for runs at the benchmark's settings with one thing changed (the review's
decoder layers, no gradient clipping). Writes results/review_asterisk_variants.json.

terms: per row of a review_benchmark experiment, the validation ELBO's two terms at each
seed's best epoch (reconstruction and KL, nats per frame) beside the row's test SI-SDR, and
the Spearman correlation of SI-SDR with each term and with the ELBO over the rows whose
decoder reads no previous frame (VAE, DKF, the RVAEs, DSAE: every frame goes through z).
Writes results/review_asterisk_terms.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from analysis.results import load_trials
from dvae import metrics
from dvae.checkpoint import load_model
from dvae.cpu import tune_process
from dvae.data import prepare_corpus
from dvae.evaluation import reconstruct

from . import write_result
from .review import RESULTS


def windows(frames: np.ndarray, seq_len: int) -> list[np.ndarray]:
    return [frames[s:s + seq_len] for s in range(0, len(frames) - seq_len + 1, seq_len)]


def motion(experiment: Path) -> dict:
    trials = load_trials(experiment)
    rows, references = [], None
    for _, trial in trials.sort_values(["model", "config/seed"]).iterrows():
        model, cfg = load_model(trial["checkpoint"])
        model.eval()
        corpus = prepare_corpus(cfg.data, progress=False)
        splits = {split: [w for u in corpus.utterances(split) for w in windows(u.features, cfg.data.seq_len)]
                  for split in ("train", "test")}
        torch.manual_seed(cfg.train.seed)
        with torch.no_grad():
            scores = {split: float(np.mean([metrics.mpjpe(w, reconstruct(model, torch.from_numpy(np.array(w))).numpy())
                                            for w in ws])) for split, ws in splits.items()}
        rows.append({"model": trial["model"], "seed": int(trial["config/seed"]), "trial_id": trial["trial_id"],
                     "split": cfg.data.split, "mpjpe_train": scores["train"], "mpjpe_test": scores["test"]})
        if references is None:
            train = np.concatenate([u.features for u in corpus.utterances("train")])
            test = splits["test"]
            references = {
                "training mean pose": float(np.mean([metrics.mpjpe(w, np.tile(train.mean(0), (len(w), 1))) for w in test])),
                "each test window's own mean pose": float(np.mean([metrics.mpjpe(w, np.tile(w.mean(0), (len(w), 1)))
                                                                   for w in test])),
                "the previous frame": float(np.mean([metrics.mpjpe(w[1:], w[:-1]) for w in test])),
                "training frames": int(len(train)), "test windows": len(test)}
    return {"experiment": str(experiment), "trials": rows, "references_on_the_test_split_mm": references}


def decoder_widths(weights: dict) -> list[int]:
    """The output width of each linear layer of the decoder p(x_t | ·), read from the weights."""
    layers = sorted((int(k.split(".")[1]), w.shape[0]) for k, w in weights.items()
                    if k.startswith("decoder.") and k.endswith(".weight") and w.dim() == 2)
    return [width for _, width in layers]


def trained_runs(runs: list[Path]) -> dict:
    rows = []
    for run in runs:
        checkpoint = run / "checkpoint" / "best.pt"
        state = torch.load(checkpoint, weights_only=True, map_location="cpu")
        scores = json.loads((checkpoint.parent / "eval_test.json").read_text())
        cfg = state["config"]
        rows.append({"run": str(run), "model": cfg["model"]["name"], "seed": cfg["train"]["seed"],
                     "epochs": cfg["train"]["epochs"], "grad_clip": cfg["train"]["grad_clip"],
                     "decoder_widths": decoder_widths(state["model"]), "best_epoch": state["loop"]["best_epoch"],
                     "best_val_loss": state["loop"]["best_val_loss"],
                     # the ELBO's two terms at the best epoch (a best checkpoint holds that epoch's figures)
                     **{k: state["metrics"].get(k) for k in ("val_recon", "val_kl")},
                     "test": {m: v["mean"] for m, v in scores["metrics"].items()}, "utterances": scores["n"]})
    return {"runs": rows}


# the rows whose decoder reads no previous frame: all they reconstruct passes through z
THROUGH_Z = ("vae", "dkf", "rvae_causal", "rvae_noncausal", "dsae")


def elbo_terms(experiment: Path) -> dict:
    import scipy.stats
    trials = load_trials(experiment)
    scores = json.loads((RESULTS / "review_asterisk.json").read_text())["rows"]
    rows = {}
    for model, group in trials.groupby("model"):
        if model not in scores:
            continue
        rows[model] = {"seeds": int(len(group)), "val_recon": float(group["val_recon"].mean()),
                       "val_kl": float(group["val_kl"].mean()), "val_loss": float(group["val_loss"].mean()),
                       "test_si_sdr": scores[model]["mean"]["si_sdr"]}
    through_z = [rows[m] for m in THROUGH_Z if m in rows]
    si_sdr = [r["test_si_sdr"] for r in through_z]
    better = {"val_recon": -1, "val_loss": -1, "val_kl": 1}  # the recon term and the loss: lower is better
    spearman = {term: float(scipy.stats.spearmanr(si_sdr, [sign * r[term] for r in through_z]).statistic)
                for term, sign in better.items()}
    return {"experiment": str(experiment), "rows": rows, "rows_through_z": [m for m in THROUGH_Z if m in rows],
            "spearman_of_si_sdr_over_rows_through_z": spearman,
            "note": "val_recon and val_loss negated for the correlation (lower is better); val_kl as it is"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("check", choices=("motion", "budget", "variants", "terms"))
    p.add_argument("folders", nargs="+", type=Path, help="the review_mocap experiment, or the runs trained longer")
    p.add_argument("--out", help="the results file's name in benchmarks/results (default review_mocap_checks.json "
                                 "for motion, review_asterisk_<check>.json for the others)")
    args = p.parse_args(argv)
    tune_process()
    torch.set_num_threads(1)
    if args.check == "motion":
        write_result(motion(args.folders[0]), RESULTS / (args.out or "review_mocap_checks.json"))
    elif args.check == "terms":
        write_result(elbo_terms(args.folders[0]), RESULTS / (args.out or "review_asterisk_terms.json"))
    else:
        write_result(trained_runs(args.folders), RESULTS / (args.out or f"review_asterisk_{args.check}.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
