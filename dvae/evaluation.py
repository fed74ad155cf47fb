"""Test-set evaluation: whole utterances through a model, scored against the clean signal.

The DVAE review's protocol: each speech utterance goes through the model whole (batch of
one, no windowing), with the posterior's latents drawn from a fixed seed; reconstructions
are turned back into waveforms (with the clean utterance's STFT phase for power-spectrogram
features, with a phase estimated from the decoded frames for mel features (dvae.data.phase's
default, PGHI), as a mel vocoder would have to) and scored with
SI-SDR, PESQ (raw P.862 narrowband, the review's), wideband PESQ and ESTOI. Motion is
scored as the review did, on the test sequences cut into seq_len-frame windows, with
MPJPE and RMSE in mm. Every result states its protocol (`protocol`).

Generation mode (the -GM rows of the DVAE review) feeds the decoder its own previous
output instead of the data: only models whose generative recursion reads x_{t-1} have it.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from . import metrics
from .checkpoint import load_model
from .config import MOTION_CORPORA, Config, ConfigError, DataConfig
from .data import check_data_root, prepare_corpus
from .data.audio import file_stem, write_wav
from .experiment import result_path
from .data.audio import SAMPLE_RATE
from .data.corpora import SPLITS
from .data.features import DEFAULT_PHASE
from .data.phase import PHASE_NAMES
from .models import DVAE

SPEECH_METRICS = {"si_sdr": metrics.si_sdr, "pesq": metrics.pesq, "pesq_wb": metrics.pesq_wb,
                  "estoi": metrics.estoi}
MOTION_METRICS = {"mpjpe": metrics.mpjpe, "rmse": metrics.rmse}
METRIC_LABELS = {"si_sdr": "SI-SDR (dB)", "pesq": "PESQ (P.862 raw)", "pesq_wb": "PESQ-WB (P.862.2)",
                 "estoi": "ESTOI", "mpjpe": "MPJPE (mm)", "rmse": "RMSE (mm)"}
FLOORS = {"si_sdr": metrics.SI_SDR_MIN_DB}  # failed estimates count at these values
# Data settings a checkpoint fixes: other values would give features the model never saw.
FEATURE_FIELDS = ("features", "n_mels")


def protocol(corpus_kind: str, features: str, seq_len: int) -> dict:
    """How an evaluation scores: what it reconstructs from, over which units, each metric's definition."""
    names = SPEECH_METRICS if corpus_kind == "speech" else MOTION_METRICS
    if corpus_kind == "speech":
        units = "whole utterances, one at a time"
        waveform = ("inverse STFT of the decoded power with the clean utterance's phase" if features == "stft"
                    else f"{DEFAULT_PHASE[0]} phase ({PHASE_NAMES[DEFAULT_PHASE[0]]}) from the decoded mel frames")
    else:
        units, waveform = f"non-overlapping {seq_len}-frame windows of each test sequence", None
    return {"latents": "sampled from the posterior q(z | x), fixed seed", "units": units, "waveform": waveform,
            "metrics": {name: metrics.PROTOCOL[name] for name in names}}


def evaluate(model: DVAE, corpus, split: str = "test", generation_mode: bool = False,
             out_dir: Optional[str | Path] = None, write_wavs: bool = False,
             max_utterances: Optional[int] = None, seed: int = 0, progress: bool = False) -> dict:
    """Scores `model` on the `split` of `corpus` (its first `max_utterances` utterances, if
    given), its latents drawn from `seed`, with a progress bar if `progress`.

    Returns {"settings", "protocol", "n", "metrics": {name: {"mean", "ci95", "n", "floored",
    "unscored"}}, "utterances": [...], "seconds"}: per metric the mean over the units scored
    (utterances; windows for motion) and the half-width of its 95% interval, from the `n`
    units it could score (`unscored` left out) with `floored` failed estimates counted at
    the metric's floor; per unit its name, frames and every metric (None where unscored;
    floored values at the floor, their metrics listed under "floored"). With `write_wavs`,
    each speech reconstruction goes to `out_dir`/<name>.wav.
    """
    check_generation_mode(model, generation_mode)
    if model.cfg.x_dim != corpus.feature_dim:
        raise ConfigError(f"the model reads {model.cfg.x_dim} features a frame but the corpus has "
                          f"{corpus.feature_dim}")
    if write_wavs and out_dir is None:
        raise ValueError("write_wavs needs an out_dir")
    speech = corpus.kind == "speech"
    with_phase = speech and corpus.extractor.kind == "stft"
    utterances = corpus.utterances(split)[:max_utterances]
    device = next(model.parameters()).device
    started = time.perf_counter()
    names = SPEECH_METRICS if speech else MOTION_METRICS

    rows = []
    model.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for utterance in tqdm(utterances, desc=f"evaluating {split}", unit="utt", disable=not progress):
            x = torch.from_numpy(np.array(utterance.features, dtype=np.float32))
            if speech:
                clean = np.array(utterance.waveform, dtype=np.float32)  # a writable copy of the cache
                resynthesis = resynthesise(corpus, reconstruct(model, x, generation_mode), clean)
                rows.append(_scored({"name": utterance.name, "frames": len(x)},
                                    {name: metric(clean, resynthesis) for name, metric in SPEECH_METRICS.items()}))
                if write_wavs:
                    write_wav(Path(out_dir) / f"{file_stem(utterance.name)}.wav", resynthesis)
                continue
            seq_len = corpus.seq_len
            for start in range(0, len(x) - seq_len + 1, seq_len):  # the review's windows; a short tail is left out
                window = x[start:start + seq_len]
                estimate = reconstruct(model, window, generation_mode)
                rows.append(_scored({"name": f"{utterance.name}@{start}", "frames": seq_len},
                                    {name: metric(window.numpy(), estimate.numpy())
                                     for name, metric in MOTION_METRICS.items()}))

    summary = {}
    for name in names:
        values = [-math.inf if name in row.get("floored", ()) else math.nan if row[name] is None else row[name]
                  for row in rows]
        summary[name] = {k: _json_float(v) if k in ("mean", "ci95") else v
                         for k, v in metrics.summarise(values, FLOORS.get(name)).items()}
    settings = {"split": split, "generation_mode": generation_mode, "seed": seed, "max_utterances": max_utterances,
                "model": model.cfg.name, "corpus": corpus.name, "corpus_split": corpus.split, "kind": corpus.kind,
                "resynthesis": ("original phase" if with_phase else DEFAULT_PHASE[0]) if speech else None}
    return {"settings": settings,
            "protocol": protocol(corpus.kind, corpus.extractor.kind if speech else None, corpus.seq_len),
            "n": len(rows), "metrics": summary, "utterances": rows,
            "seconds": round(time.perf_counter() - started, 2)}


def reconstruct(model: DVAE, x: torch.Tensor, generation_mode: bool = False) -> torch.Tensor:
    """The decoded mean of one sequence x (T, D) through the model, latents from the posterior
    (the caller seeds them); generation mode feeds the decoder its own previous output."""
    device = next(model.parameters()).device
    out = model(x[None].to(device), feedback_prob=1.0 if generation_mode else 0.0)
    return model.likelihood.mean(out.x_out)[0].cpu()


def resynthesise(corpus, estimate: torch.Tensor, clean: np.ndarray) -> np.ndarray:
    """The waveform of decoded speech frames: with the clean utterance's STFT phase for power
    spectrograms (the review's analysis-resynthesis), with an estimated phase for mel frames."""
    phase = corpus.extractor.stft(torch.from_numpy(clean)) if corpus.extractor.kind == "stft" else None
    return corpus.extractor.resynthesise(estimate, phase=phase, length=len(clean)).numpy()


def _scored(row: dict, scores: dict) -> dict:
    """A unit's row with its scores as plain JSON: None where unscored, failed estimates at
    their metric's floor and named under "floored"."""
    floored = [name for name, value in scores.items() if name in FLOORS and value < FLOORS[name]]
    row.update({name: FLOORS[name] if name in floored else _json_float(value) for name, value in scores.items()})
    if floored:
        row["floored"] = floored
    return row


def evaluate_checkpoint(path: str | Path, split: str = "test", data: Optional[dict] = None,
                        generation_mode: bool = False, write_wavs: bool = False,
                        max_utterances: Optional[int] = None, progress: bool = False) -> dict:
    """Evaluates a checkpoint on its own corpus or, with `data` (DataConfig overrides such as
    {"corpus": "folder", "data_root": DIR}), another one with the same features.

    Writes eval_<split>[_gm].json next to the checkpoint (eval_<corpus>_<split>[_gm].json
    when the corpus is not the checkpoint's, so its own result is not overwritten), and with
    `write_wavs` the reconstructions into a folder of the same name beside it.
    """
    path = Path(path)
    check_split(split)
    model, trained = load_model(path)
    check_generation_mode(model, generation_mode)
    cfg = with_data(trained, data)
    json_path = result_path(path, split, generation_mode,
                            cfg.data.corpus if cfg.data.corpus != trained.data.corpus else None)
    corpus = prepare_corpus(cfg.data, progress=progress)
    result = evaluate(model, corpus, split, generation_mode, out_dir=json_path.with_suffix(""), write_wavs=write_wavs,
                      max_utterances=max_utterances, seed=cfg.train.seed, progress=progress)
    sections = cfg.to_dict()
    result["settings"].update(checkpoint=str(path.absolute()), data=sections["data"], train=sections["train"])
    json_path.write_text(json.dumps(result, indent=1, allow_nan=False))
    result["json"] = str(json_path)
    return result


def format_table(result: dict) -> str:
    """The summary of an `evaluate` result as an aligned text table, with each metric's
    count of units scored, floored (failed estimates) and left unscored."""
    s = result["settings"]
    lines = [f"{s['model']} on {s['corpus']} {s['split']}{' in generation mode' if s['generation_mode'] else ''}: "
             f"{result['n']} {'utterances' if s['kind'] == 'speech' else 'windows'}",
             f"{'metric':<18} {'mean':>9} {'± 95% CI':>9} {'n':>5} {'floored':>8} {'unscored':>9}"]
    for name, m in result["metrics"].items():
        mean = "nan" if m["mean"] is None else f"{m['mean']:.3f}"
        ci = "nan" if m["ci95"] is None else f"{m['ci95']:.3f}"
        lines.append(f"{METRIC_LABELS.get(name, name):<18} {mean:>9} {ci:>9} {m['n']:>5} {m.get('floored', 0):>8} "
                     f"{m.get('unscored', 0):>9}")
    lines += [f"  {METRIC_LABELS.get(name, name)}: {text}" for name, text in result.get("protocol", {}).get(
        "metrics", {}).items()]
    return "\n".join(lines)


def check_generation_mode(model: DVAE, generation_mode: bool) -> None:
    """Refuses generation mode, before any work, for a model that cannot feed back its output."""
    if generation_mode and not model.reads_previous_x:
        raise ConfigError(f"generation mode needs a model whose decoder reads x_(t-1) (storn, vrnn, srnn); "
                          f"{model.cfg.name} does not")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


def with_data(cfg: Config, data: Optional[dict]) -> Config:
    """`cfg` with its data section changed by `data`, keeping the features the model was trained on."""
    if not data:
        return cfg
    unknown = sorted(set(data) - set(DataConfig.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"not data settings: {', '.join(unknown)}")
    changed = [k for k in FEATURE_FIELDS if k in data and data[k] != getattr(cfg.data, k)]
    if changed:
        raise ConfigError(f"{', '.join(changed)} are fixed by the checkpoint "
                          f"({', '.join(f'{k}={getattr(cfg.data, k)}' for k in changed)})")
    corpus = data.get("corpus", cfg.data.corpus)
    kinds = ["motion" if name in MOTION_CORPORA else "speech" for name in (corpus, cfg.data.corpus)]
    if kinds[0] != kinds[1]:
        raise ConfigError(f"corpus {corpus} holds {kinds[0]}; the model was trained on {cfg.data.corpus}, {kinds[1]}")
    if corpus != cfg.data.corpus:
        data = {"data_root": None, **data}  # the trained corpus's folder is not the new one's
    new = cfg.replace(**data)
    check_data_root(new.data)
    return new


def _json_float(value: float) -> Optional[float]:
    return float(value) if math.isfinite(value) else None
