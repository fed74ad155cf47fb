"""One self-contained HTML report of a search: leaderboards, figures, and what each model sounds like.

    python -m analysis.report EXPERIMENT [...] [--out FILE] [--evaluate]

Images and audio are embedded as base64 data URIs, so the file opens from disk (or as
an e-mail attachment) with no server and nothing beside it. It holds:

- how the trials ended, per model, and the error of each trial that raised one;
- the leaderboard: the best configuration of each model and each model's top k;
- with --evaluate, the results table of `analysis.evaluate` on --split (test by default);
- the figures of `analysis.plots`;
- for the best trial of each model, on the first utterance of that split at least as long
  as the prime (--prime-seconds), else its first: the clean
  utterance, its resynthesis through the model, a cold-start generation (latents from
  the prior) and a primed one (the start of a real utterance, then the model on its
  own), each playable with its spectrogram. For motion, each is a strip of skeleton
  poses over time instead.
"""
from __future__ import annotations

import base64
import html
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from dvae import logs
from dvae.config import bounded

from dvae import experiment as experiment_module
from dvae.experiment import generation_result_path

from . import evaluate as evaluation_table
from . import findings
from . import review
from . import plots
from .leaderboard import TABLE_CSS, best_per_model, html_table, sections
from .results import (GENERATION_MODE_MODELS, STATUSES, at_least_one, load, model_label, ordered_models,
                      ranking_parser, upload_evaluations)


@dataclass
class Media:
    """One example: a title, a caption, a PNG, and for speech a wav (both as bytes)."""
    title: str
    caption: str = ""
    image: Optional[bytes] = None
    audio: Optional[bytes] = None
    error: Optional[str] = None


def build_report(experiments: Sequence[str | Path], out: Optional[str | Path] = None, k: int = 3,
                 sort: str = "val_loss", ascending: bool = True, evaluate: bool = False, split: str = "test",
                 max_utterances: Optional[int] = None, seconds: float = 3.0, prime_seconds: float = 1.0,
                 log: Callable[[str], None] | None = None) -> Path:
    """Writes the report of `experiments` to `out` (default <first experiment>/report.html)."""
    log = log or logging.getLogger(__name__).info
    experiments = [Path(e) for e in experiments]
    out = Path(out) if out is not None else experiments[0] / "report.html"
    trials, curves = load(*experiments)
    names = ", ".join(e.name for e in experiments)
    parts = [f"<h1>Search report: {html.escape(names)}</h1>",
             f"<p>{len(trials)} trials, written {time.strftime('%Y-%m-%d %H:%M')} from "
             f"{html.escape(', '.join(str(e.absolute()) for e in experiments))}. "
             f"Configurations are ranked by <code>{html.escape(sort)}</code> at each trial's best epoch "
             f"({'lower' if ascending else 'higher'} is better); val_loss is the negative ELBO per frame "
             "at KL weight 1.</p>",
             "<h2>How the trials ended</h2>", html_table(status_counts(trials))]
    failed = errors(trials)
    if len(failed):
        parts += ["<h3>Errors</h3>", html_table(failed)]

    parts.append("<h2>Leaderboard</h2>")
    for title, table in sections(trials, k, sort, ascending):
        parts += [f"<h3>{html.escape(title)}</h3>", html_table(table)]

    if evaluate:
        log(f"scoring the best configuration of each model on the {split} split")
        scores = evaluation_table.evaluate_top(trials, 1, sort, ascending, split, max_utterances, log=log)
        parts.append(f"<h2>{html.escape(evaluation_table.TITLE)} ({html.escape(split)} split)</h2>")
        parts.append(html_table(evaluation_table.formatted(evaluation_table.results_table(scores)))
                     if len(scores) else "<p>No trial has a checkpoint to score.</p>")
        if len(scores):
            parts += ["<h3>Beside the DVAE review's figures</h3>",
                      review.html_section(review.benchmark(scores, trials, experiments[0]))]

    parts += findings_section(trials, experiments[0])

    parts.append("<h2>Figures</h2>")
    for name, fig in plots.all_figures(experiments, trials, curves, k, sort, ascending).items():
        parts.append(f'<figure class="plot"><img alt="{name}" src="{data_uri(plots.png(fig), "image/png")}">'
                     f"<figcaption>{html.escape(name.replace('_', ' '))}</figcaption></figure>")

    parts.append(f"<h2>Examples from the best trial of each model ({html.escape(split)} split)</h2>")
    best = best_per_model(trials, sort, ascending)
    if best["checkpoint"].isna().all():
        parts.append("<p>No ranked trial has a best checkpoint yet.</p>")
    with tempfile.TemporaryDirectory(prefix="dvae-report-") as work:
        for _, trial in best.iterrows():
            if pd.isna(trial["checkpoint"]):
                continue
            log(f"examples of {trial['model']} (trial {trial['trial_id']})")
            try:
                media = model_media(Path(trial["checkpoint"]), trial["model"] in GENERATION_MODE_MODELS, split,
                                    seconds, prime_seconds, Path(work) / trial["trial_id"])
            except (ValueError, OSError) as e:  # the checkpoint unreadable, its corpus not on this machine
                media = [Media("Examples", error=f"{type(e).__name__}: {e}")]
            parts.append(media_section(f"{model_label(trial['model'])}, trial {trial['trial_id']}", media))
            parts += generation_scores_section(Path(trial["checkpoint"]), split)

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page(f"Search report: {names}", "\n".join(parts)))
    return out


def findings_section(trials: pd.DataFrame, experiment: Path) -> list[str]:
    """What each studied factor does, where seeded configurations allow it (analysis.findings)."""
    try:
        found = findings.findings(trials, findings.space_params(experiment))
    except (findings.FindingError, FileNotFoundError, experiment_module.ExperimentError):
        return []
    if not found:
        return []
    return ["<h2>Findings across seeds</h2>",
            "<ul>" + "".join(f"<li>{html.escape(findings.sentence(f))}</li>" for f in found) + "</ul>"]


def generation_scores_section(checkpoint: Path, split: str) -> list[str]:
    """The measures of the checkpoint's generated speech, once `dvae score-generation` has written them."""
    path = generation_result_path(checkpoint, split)
    if not path.is_file():
        return []
    scored = json.loads(path.read_text())
    primed = pd.DataFrame(scored["primed"]).T.rename(columns=lambda c: f"LSD first {c[4:]} (dB)")
    cold = pd.DataFrame(scored["cold"]).T.rename(columns={"frechet": "Fréchet distance"})
    return [f"<h4>Generated speech, measured ({scored['utterances']} {html.escape(scored['split'])} utterances; "
            f"primed with {scored['prime_s']:g} s)</h4>",
            html_table(primed.rename_axis("primed").reset_index()), html_table(cold.rename_axis("cold").reset_index())]


def status_counts(trials: pd.DataFrame) -> pd.DataFrame:
    """A row per model, a column per way a trial can end, and the total."""
    counts = pd.crosstab(trials["model"], trials["status"])
    known = [s for s in STATUSES if s in counts.columns]
    counts = counts.reindex(index=ordered_models(trials["model"]),
                            columns=known + sorted(set(counts.columns) - set(known)))
    counts.columns = [c.replace("_", " ") for c in counts.columns]
    counts["trials"] = counts.sum(axis=1)
    counts.index = counts.index.map(model_label)
    return counts.rename_axis("model").reset_index()


def errors(trials: pd.DataFrame) -> pd.DataFrame:
    """A row per trial that left an error (the last line of its error.txt), with how it
    ended: a restarted trial keeps the error of its earlier failure."""
    failed = trials[trials["error"].notna()]
    shown = failed[["model", "trial_id", "status", "epochs_run", "error"]].rename(columns={"trial_id": "trial"})
    return shown.assign(model=shown["model"].map(model_label), status=shown["status"].str.replace("_", " "))


def model_media(checkpoint: Path, generation_mode: bool, split: str, seconds: float, prime_seconds: float,
                work: Path) -> list[Media]:
    """The clean utterance, its reconstruction, a cold-start and a primed generation of
    `seconds`. The utterance is the first of `split` long enough to prime the model, the
    one the primed generation starts from. An example that cannot be made carries its
    error instead, so that one failure does not take the rest of the report with it."""
    from dvae.checkpoint import load_model
    from dvae.data import prepare_corpus

    model, cfg = load_model(checkpoint)
    corpus = prepare_corpus(cfg.data, progress=False)
    utterances = corpus.utterances(split)
    utterance = next((u for u in utterances if len(u.features) / corpus.frame_rate >= prime_seconds), utterances[0])
    work.mkdir(parents=True, exist_ok=True)
    examples = [
        ("Clean utterance", lambda: clean_example(utterance, corpus, cfg.data.corpus, work)),
        ("Resynthesis" if corpus.kind == "speech" else "Reconstruction",
         lambda: reconstruction_example(model, corpus, utterance, generation_mode, cfg.data.corpus, work,
                                        cfg.train.seed)),
        ("Cold start", lambda: generated_example(checkpoint, split, seconds, 0.0, cfg.data.corpus, work / "cold")),
        ("Primed", lambda: generated_example(checkpoint, split, seconds, prime_seconds, cfg.data.corpus, work / "primed")),
    ]
    media = []
    for title, make in examples:
        try:
            media.append(Media(title, *make()))
        except (ValueError, RuntimeError, OSError) as e:  # ConfigError, DataError, a model that cannot generate
            media.append(Media(title, error=f"{type(e).__name__}: {e}"))
    return media


def clean_example(utterance, corpus, corpus_name: str, work: Path) -> tuple[str, bytes, Optional[bytes]]:
    """(caption, image, audio) of the real utterance."""
    from dvae.data.audio import write_wav
    from dvae.generation import plot_spectrogram

    caption = f"{utterance.name}, {len(utterance.features) / corpus.frame_rate:.2f} s"
    if corpus.kind == "speech":
        wave = np.array(utterance.waveform, dtype=np.float32)
        wav = write_wav(work / "clean.wav", wave)
        return caption, plot_spectrogram(wave, work / "clean.png", "clean").read_bytes(), wav.read_bytes()
    return caption, plots.png(plots.pose_strip(utterance.features, corpus.frame_rate, "real motion", corpus_name)), None


def reconstruction_example(model, corpus, utterance, generation_mode: bool, corpus_name: str,
                           work: Path, seed: int = 0) -> tuple[str, bytes, Optional[bytes]]:
    """(caption, image, audio) of the utterance through the model, with its scores on it.
    As in dvae.evaluation: latents from `seed` (the run's, as evaluation draws them), speech
    resynthesised with the clean STFT phase (an estimated one for mel features: dvae.data.phase)."""
    import torch

    from dvae import metrics
    from dvae.data.audio import write_wav
    from dvae.evaluation import reconstruct, resynthesise
    from dvae.generation import plot_spectrogram

    x = torch.from_numpy(np.array(utterance.features, dtype=np.float32))
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        estimate = reconstruct(model, x, generation_mode)
    mode = " in generation mode (its own output fed back)" if generation_mode else ""
    if corpus.kind != "speech":
        fig = plots.pose_strip(estimate.numpy(), corpus.frame_rate, "reconstruction", corpus_name)
        return f"through the model{mode}: MPJPE {metrics.mpjpe(x.numpy(), estimate.numpy()):.1f} mm", plots.png(fig), None
    clean = np.array(utterance.waveform, dtype=np.float32)
    wave = resynthesise(corpus, estimate, clean)
    caption = (f"through the model{mode}: SI-SDR {metrics.si_sdr(clean, wave):.2f} dB, "
               f"PESQ {metrics.pesq(clean, wave):.2f}, ESTOI {metrics.estoi(clean, wave):.2f}")
    wav = write_wav(work / "resynthesis.wav", wave)
    return caption, plot_spectrogram(wave, work / "resynthesis.png", "resynthesis").read_bytes(), wav.read_bytes()


def generated_example(checkpoint: Path, split: str, seconds: float, prime_seconds: float, corpus_name: str,
                      work: Path) -> tuple[str, bytes, Optional[bytes]]:
    """(caption, image, audio) of one generated sequence: cold (prime_seconds 0) or primed."""
    from dvae.data.motion import FRAME_RATE
    from dvae.generation import generate_from_checkpoint

    files = generate_from_checkpoint(checkpoint, work, seconds=seconds, n=1, prime_seconds=prime_seconds, split=split)
    if prime_seconds > 0:
        caption = f"the first {prime_seconds:g} s of {files[0].stem.split('_', 2)[-1]}, then {seconds:g} s by the model"
    else:
        caption = f"{seconds:g} s from the prior, the model feeding back its own output"
    sequence, image = files
    if sequence.suffix == ".wav":
        return caption, image.read_bytes(), sequence.read_bytes()
    fig = plots.pose_strip(np.load(sequence), FRAME_RATE, "generated", corpus_name, prime_end=prime_seconds)
    return caption, plots.png(fig), None


def media_section(title: str, media: list[Media]) -> str:
    cards = []
    for item in media:
        body = [f"<h4>{html.escape(item.title)}</h4>"]
        if item.error:
            body.append(f'<p class="error">could not be made: {html.escape(item.error)}</p>')
        else:
            body.append(f'<p class="caption">{html.escape(item.caption)}</p>')
            if item.audio is not None:
                body.append(f'<audio controls preload="auto" src="{data_uri(item.audio, "audio/wav")}"></audio>')
            body.append(f'<img alt="{html.escape(item.title)}" src="{data_uri(item.image, "image/png")}">')
        cards.append('<div class="card">' + "".join(body) + "</div>")
    return f'<section class="model"><h3>{html.escape(title)}</h3><div class="cards">{"".join(cards)}</div></section>'


def data_uri(content: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(content).decode('ascii')}"


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{TABLE_CSS}{REPORT_CSS}</style></head><body>\n{body}\n</body></html>\n")


REPORT_CSS = """
figure.plot img { max-width: 100%; }
figure.plot { margin: 1em 0 2em; }
.cards { display: flex; flex-wrap: wrap; gap: 1em; }
.card { flex: 1 1 420px; max-width: 640px; border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 1em; }
.card img { max-width: 100%; }
.card audio { width: 100%; }
.card h4 { margin: 0.3em 0; }
.caption { color: #555; font-size: 0.9em; margin: 0.2em 0 0.5em; }
.error { color: #a00; }
"""


def main(argv=None) -> int:
    from dvae.cpu import tune_process

    tune_process()  # the report scores and generates: MKL's fast kernels, before the first product
    parser = ranking_parser("python -m analysis.report", __doc__.split("\n\n")[0], k=3,
                            k_help="configurations per model in the top tables and curves",
                            out_help="the HTML file (default: <first experiment>/report.html)", out_is_file=True)
    parser.add_argument("--evaluate", action="store_true",
                        help="score each model's best checkpoint on the test split (SI-SDR, PESQ, ESTOI / MPJPE)")
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"),
                        help="the split for examples and scores (default test)")
    parser.add_argument("--max-utterances", type=at_least_one,
                        help="with --evaluate: score only the first N utterances")
    parser.add_argument("--seconds", type=bounded(float, 0, strict=True), default=3.0,
                        help="length of the generated examples (default 3)")
    parser.add_argument("--prime-seconds", type=bounded(float, 0), default=1.0,
                        help="real signal before a primed generation (default 1; 0 for none)")
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    try:
        out = build_report(args.experiments, args.out, args.k, args.sort, not args.descending, args.evaluate,
                           args.split, args.max_utterances, args.seconds, args.prime_seconds)
    except (FileNotFoundError, KeyError) as e:
        print(f"analysis.report: {e.args[0]}", file=sys.stderr)
        return 2
    upload_evaluations(args)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
