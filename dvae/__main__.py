"""The command line: ``python -m dvae {train,evaluate,generate,score-generation} ...``.

`train` has one option per Config field (``--z-dim 32``, ``--prior student_t``),
generated from the Config itself so that a new field is on the command line at once;
values go in as strings and `Config.replace` converts and checks them. Only the options
given count: a fresh run puts them over the Config defaults, `--resume` over the config
saved in the run's last.pt (so a run goes on as it started, and `--epochs 200` extends it). A bad value, a
missing corpus or an unreadable checkpoint ends the command with one error line on
stderr and exit status 2 before any work starts.
"""
from __future__ import annotations

import argparse
import inspect
import io
import json
import re
import sys
import time
import tokenize
from pathlib import Path

from . import config, logs
from .checkpoint import CheckpointError
from .config import Config, ConfigError, all_fields, allowed_values, bounded
from .cpu import tune_process
from .data import DataError
from .data.corpora import SPLITS
from .data import check_data_root
from .evaluation import evaluate_checkpoint, format_table
from .generation import generate_from_checkpoint
from .training import readable_checkpoint, train

# What each field is, where its comment in config.py (also shown) does not say it alone.
FIELD_HELP = {
    "name": "the DVAE to train",
    "x_dim": "features per frame (the trainer sets it from the data)",
    "z_dim": "latent size per frame",
    "prior": "family of the latent prior p(z_t | ·)",
    "student_df": "degrees of freedom of the Student-t prior",
    "learn_df": "learn the Student-t degrees of freedom",
    "likelihood": "observation model p(x_t | ·)",
    "gaussian_variance": "gaussian likelihood: a learned per-feature variance, or fixed at each feature's variance in the training data",
    "dropout": "dropout rate of the MLPs",
    "corpus": "the data set",
    "data_root": "where the corpus lives",
    "features": "speech features: STFT power spectrogram or log-mel",
    "n_mels": "mel bands (features=mel)",
    "seq_len": "training window length in frames",
    "max_utterances": "use at most N utterances",
    "cache_dir": "where prepared features are kept",
    "epochs": "most epochs to train",
    "batch_size": "windows per batch",
    "optimizer": "the optimiser",
    "lr": "learning rate",
    "weight_decay": "weight decay (L2 for adam, decoupled for adamw)",
    "grad_clip": "largest gradient norm",
    "lr_schedule": "learning-rate schedule",
    "lr_warmup_epochs": "epochs of linear learning-rate warm-up",
    "kl_warmup": "schedule of the KL weight",
    "ss_start_epoch": "scheduled sampling: epoch at which the ramp starts",
    "ss_max_prob": "scheduled sampling: feedback probability at the end of the ramp",
    "seed": "random seed",
    "device": "where to train",
}
# Extra spellings: `--model vrnn` reads better than `--name vrnn`.
ALIASES = {"name": ["--model"]}
ERRORS = (ConfigError, CheckpointError, DataError)


class Parser(argparse.ArgumentParser):
    """Reports a usage error as one line, like every other error of this command line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def field_comments() -> dict[str, str]:
    """The comment that ends each field's line in config.py: what the field means, in the one
    place where it is defined."""
    source = inspect.getsource(config)
    comments = {tok.start[0]: tok.string.lstrip("# ").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    fields = all_fields()
    found = {}
    for number, line in enumerate(source.splitlines(), start=1):
        match = re.match(r"\s+(\w+)\s*:", line)
        if match and match[1] in fields and number in comments:
            found[match[1]] = comments[number]
    return found


def field_help() -> dict[str, str]:
    """Help text of every Config field: FIELD_HELP and its comment in config.py."""
    comments = field_comments()
    return {name: "; ".join(filter(None, (FIELD_HELP.get(name), comments.get(name)))) or name.replace("_", " ")
            for name in all_fields()}


def build_parser() -> Parser:
    parser = Parser(prog="python -m dvae", description="Train, evaluate and sample Dynamical VAEs.",
                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate,generate,score-generation}")
    for name, (summary, description, add_options) in {
        "train": ("train one model", "Train one model; every Config field is an option.", add_train_options),
        "evaluate": ("score a checkpoint on a split", "Score a checkpoint on whole utterances; writes "
                     "eval_<split>[_gm].json next to it.", add_evaluate_options),
        "generate": ("sample from a checkpoint", "Generate speech (wav + spectrogram PNG) or motion "
                     "(npy + trajectory PNG) from a checkpoint.", add_generate_options),
        "score-generation": ("measure generated speech", "Measure a checkpoint's primed and cold generation "
                             "against real speech and reference rows; writes eval_<split>_generation.json next "
                             "to it.", add_score_generation_options),
    }.items():
        command = commands.add_parser(name, help=summary, description=description,
                                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        add_options(command)
        logs.add_arguments(command)
    return parser


def add_train_options(parser: argparse.ArgumentParser) -> None:
    helps = field_help()
    for name, f in all_fields().items():
        choices = allowed_values(name)
        if config.field_type(name) is bool:
            choices = ("true", "false")  # what the help shows; Config also takes yes/no/1/0
        # Choices go in the help, not the usage line, which would otherwise run to a page.
        help_text = (helps[name] + (f"; one of: {', '.join(map(str, choices))}" if choices else "")
                     + f" (default: {f.default}; on --resume: the run's own)")
        # SUPPRESS: an option left out is absent from the namespace, so a resumed run keeps its own value
        parser.add_argument(f"--{name.replace('_', '-')}", *ALIASES.get(name, []), dest=name,
                            default=argparse.SUPPRESS, choices=allowed_values(name), metavar=name.upper(),
                            help=help_text)
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="where checkpoints and logs go; None: runs/<model>-<timestamp>")
    parser.add_argument("--resume", action="store_true",
                        help="continue from RUN_DIR/checkpoint/last.pt if it exists (needs --run-dir), with its "
                             "saved config; options given change what may change (epochs, patience, device, ...)")


def add_evaluate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a best.pt or last.pt")
    parser.add_argument("--split", default="test", choices=SPLITS, help="which split to score")
    parser.add_argument("--generation-mode", action="store_true",
                        help="the decoder reads its own previous output (storn, vrnn, srnn only)")
    add_data_options(parser)
    parser.add_argument("--write-wavs", action="store_true",
                        help="write each reconstruction as a wav in a folder beside the checkpoint")
    parser.add_argument("--max-utterances", type=bounded(int, 1), default=None,
                        help="score only the split's first N utterances")


def add_generate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a best.pt or last.pt")
    parser.add_argument("--prime", type=bounded(float, 0), default=0.0,
                        help="seconds of a real utterance to start from; 0: cold start from the prior")
    parser.add_argument("--seconds", type=bounded(float, 0, strict=True), default=3.0, help="seconds to generate")
    parser.add_argument("--n", type=bounded(int, 1), default=2, help="how many sequences")
    parser.add_argument("--out", type=Path, default=None, help="output folder; None: generated/ beside the checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--split", default="test", choices=SPLITS, help="where primes come from")
    parser.add_argument("--temperature", type=bounded(float, 0), default=1.0,
                        help="spread of the latents around the prior's location (0: the location itself)")
    add_data_options(parser)


def add_score_generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a best.pt or last.pt")
    parser.add_argument("--split", default="test", choices=SPLITS, help="where primes and real frames come from")
    parser.add_argument("--prime", type=bounded(float, 0, strict=True), default=1.0, help="seconds of prime")
    parser.add_argument("--cold-seconds", type=bounded(float, 0, strict=True), default=3.0,
                        help="seconds of each cold-start sequence")
    parser.add_argument("--n-cold", type=bounded(int, 2), default=8, help="cold-start sequences")
    parser.add_argument("--max-utterances", type=bounded(int, 4), default=40,
                        help="primes from the split's first N utterances long enough")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--temperatures", type=temperature_list, default=(1.0,),
                        help="sampling temperatures of the latents to compare, e.g. 1,0.5,0 (0: the prior's location)")


def temperature_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or not all(v >= 0 and v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"temperatures are finite numbers of 0 or more, got {text!r}")
    return values


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", default=None, choices=allowed_values("corpus"),
                        help="another corpus with the checkpoint's features; None: the checkpoint's own")
    parser.add_argument("--data-root", default=None, help="where that corpus lives; None: its default location")


# What a resumed run may change: where it runs, what it logs, where its data lives and when it
# stops. Anything else would make it another run than the one it continues.
CHANGEABLE_ON_RESUME = ("epochs", "patience", "device", "num_threads", "compile", "cuda_graph", "amp",
                        "matmul_precision", "media_every", "data_root", "cache_dir")


def run_train(args) -> int:
    given = {name: getattr(args, name) for name in all_fields() if hasattr(args, name)}
    if args.resume and args.run_dir is None:
        raise ConfigError("--resume needs the --run-dir of the run to continue")
    if args.run_dir is not None:
        check_run_dir(args.run_dir, args.resume)
    last = args.run_dir / "checkpoint" / "last.pt" if args.run_dir else None
    resume_from = last if args.resume and last.is_file() else None
    cfg = resumed_config(resume_from, given) if resume_from else Config().replace(**given)
    check_data_root(cfg.data)
    run_dir = args.run_dir or Path("runs") / f"{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.resume and resume_from is None:
        print(f"nothing to resume in {run_dir}: starting afresh", file=sys.stderr)
    try:
        summary = train(cfg, run_dir, resume_from=resume_from)
    except KeyboardInterrupt:
        print(f"\ninterrupted; go on from the last finished epoch with: python -m dvae train --resume "
              f"--run-dir {run_dir}", file=sys.stderr)
        return 130
    print(json.dumps(summary, indent=1, default=str))
    return 0


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuses a --run-dir that is a file, the checkpoint folder of a run, or (without --resume)
    a run already there, which training would overwrite."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run-dir: {run_dir} is a file, not a folder")
    if (run_dir / "last.pt").is_file():
        raise ConfigError(f"--run-dir: {run_dir} is a run's checkpoint folder; give the run's own, {run_dir.parent}")
    if not resume and (run_dir / "checkpoint" / "last.pt").is_file():
        raise ConfigError(f"--run-dir: {run_dir} already holds a run; continue it with --resume, "
                          "or choose another --run-dir")


def resumed_config(last: Path, given: dict) -> Config:
    """The config saved in `last` with the options `given` over it; refuses any that would make
    it another run (CHANGEABLE_ON_RESUME lists what may change)."""
    _, state = readable_checkpoint(last, "cpu", log=lambda line: None)  # train() reports a damaged last.pt
    saved = Config.from_dict(state["config"])
    cfg = saved.replace(**given)
    before, after = saved.flat(), cfg.flat()
    changed = [key for key in given if before[key] != after[key]]
    for key in changed:
        if key not in CHANGEABLE_ON_RESUME:
            raise ConfigError(f"--{key.replace('_', '-')} {after[key]}: the run in {last.parent.parent} has "
                              f"{before[key]}, and a resumed run keeps it (it may change only "
                              f"{', '.join(CHANGEABLE_ON_RESUME)}); leave it out")
    if "epochs" in changed and cfg.train.lr_schedule in ("cosine", "warmup_cosine"):
        raise ConfigError(f"--epochs {after['epochs']}: the run's {cfg.train.lr_schedule} learning-rate schedule "
                          f"is laid out over its {before['epochs']} epochs; leave --epochs out")
    return cfg


def run_evaluate(args) -> None:
    result = evaluate_checkpoint(args.checkpoint, split=args.split, data=data_overrides(args),
                                 generation_mode=args.generation_mode, write_wavs=args.write_wavs,
                                 max_utterances=args.max_utterances, progress=True)
    print(format_table(result))
    print(f"written to {result['json']}")


def run_generate(args) -> None:
    written = generate_from_checkpoint(args.checkpoint, out_dir=args.out, seconds=args.seconds, n=args.n,
                                       prime_seconds=args.prime, seed=args.seed, split=args.split,
                                       data=data_overrides(args), log=lambda line: print(line, file=sys.stderr),
                                       temperature=args.temperature)
    print("\n".join(map(str, written)))


def run_score_generation(args) -> None:
    from .generation_scores import format_scores, score_checkpoint
    result = score_checkpoint(args.checkpoint, args.split, args.prime, args.cold_seconds, args.n_cold,
                              args.max_utterances, args.seed, args.temperatures)
    print(format_scores(result))
    print(f"written to {result['json']}")


def data_overrides(args) -> dict:
    return {key: value for key, value in (("corpus", args.corpus), ("data_root", args.data_root)) if value is not None}


COMMANDS = {"train": run_train, "evaluate": run_evaluate, "generate": run_generate,
            "score-generation": run_score_generation}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    tune_process()  # before the first matrix product (dvae.cpu: the switches to leave it out)
    try:
        return COMMANDS[args.command](args) or 0
    except ERRORS as error:
        message = " ".join(str(error).split())  # one line, whatever the message holds
        print(f"{parser.prog} {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
