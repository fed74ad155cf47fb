"""Where each corpus lives and which of its files go to train, valid and test.

A split never changes between runs: it is decided from names alone (a SHA-1 of the
path relative to the corpus root, a speaker id, a subject, a sequence number), never
from the order in which the file system lists files. Within a split, files are
ordered so that `max_utterances` takes a spread of speakers: each group's (speaker,
voice, subject, sequence) files are ranked by their hash and the groups are then
interleaved (every group's first file, then every group's second, ...).

Corpora:

- ``asterisk``: Asterisk's prompt recordings, 16 kHz G.722 (Debian packages
  asterisk-core-sounds-{en,es,fr,it,ru}-g722), ``<root>/<voice>/**/*.g722``. Split by
  utterance within each voice, 80/10/10 by hash, so every voice is in every split.
- ``vctk``: a VCTK folder as distributed, ``<root>/wav48*/p225/*.wav|flac`` (or
  ``wav/``). Split by speaker, 80/10/10 by a hash of the speaker id, so no speaker is
  in two splits. In VCTK 0.92 only the mic1 recordings are used (mic2 repeats them).
- ``wsj0``: the DVAE review's WSJ0 layout: si_tr_s -> train, si_dt_05 -> valid,
  si_et_05 -> test, anywhere under the root, files .wav or .wv1 (a .wav beside a .wv1
  of the same name wins). .wv1 files are NIST SPHERE, which soundfile reads when they
  are not shorten-compressed; compressed ones must be expanded (sph2pipe) first.
- ``folder``: any directory of audio files (recursive). With ``train.txt``,
  ``valid.txt`` and ``test.txt`` in it (one relative path a line) those lists are the
  splits; otherwise 80/10/10 by hash of the relative path.
- ``h36m``: Human3.6M exponential-map text files ``<root>/S1/<action>_<n>.txt``.
  Subjects S1, S6, S7, S8, S9 train, S5 valid, S11 test.
- ``mocap``: the climbing capture of the holosoma-retargeting wheel, installed by
  ``python -m dvae.data.install mocap`` as ``<root>/mocap_climb_seq_<i>/*.npy``.
  Sequences 0, 1, 2 train, 3 valid, 4 test (i mod 5 for any further ones).

A motion corpus can instead be split within its sequences (``split: within``): every
sequence is in every split, its first 70% of frames training, the next 15% validation
and the last 15% test (WITHIN_PARTS), so that the test frames are unseen moments of the
motions trained on, where the corpus's own split holds too few sequences for a model to
generalise from (the climbing capture's 3 training takes). Each part of 15% of the
shortest climbing take is 72 frames: a 50-frame window of each take for validation and
for test.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from ..config import DataConfig
from .audio import AUDIO_SUFFIXES

SPLITS = ("train", "valid", "test")
ASTERISK_ROOT = Path("/usr/share/asterisk/sounds")
H36M_SUBJECTS = {"S1": "train", "S6": "train", "S7": "train", "S8": "train", "S9": "train",
                 "S5": "valid", "S11": "test"}
WSJ0_FOLDERS = {"train": "si_tr_s", "valid": "si_dt_05", "test": "si_et_05"}
MOCAP_FOLDER = "mocap_climb"
WITHIN_PARTS = {"train": (0.0, 0.7), "valid": (0.7, 0.85), "test": (0.85, 1.0)}  # of each sequence's frames


class DataError(ValueError):
    """A corpus that cannot be prepared at all: missing, empty, or with no usable file."""


@dataclass(frozen=True)
class Item:
    """One file of a corpus."""
    name: str  # path relative to the corpus root, with '/' separators: unique, stable
    path: Path
    group: str  # speaker, voice, subject or sequence
    part: tuple[float, float] = (0.0, 1.0)  # the stretch of the file's frames it stands for


def data_dir() -> Path:
    """Where downloaded corpora live: $DVAE_DATA, else ~/.cache/dvae-tune/data."""
    return Path(os.environ.get("DVAE_DATA") or Path.home() / ".cache" / "dvae-tune" / "data")


def corpus_root(cfg: DataConfig) -> Path:
    """`cfg.data_root`, else the corpus's default location."""
    if cfg.data_root:
        return Path(cfg.data_root).expanduser()
    if cfg.corpus == "asterisk":
        return ASTERISK_ROOT
    if cfg.corpus == "mocap":
        return data_dir() / MOCAP_FOLDER
    return data_dir() / cfg.corpus


def list_splits(cfg: DataConfig) -> dict[str, list[Item]]:
    """The files of each split, in their stable order, at most `cfg.max_utterances` each.

    Raises DataError, naming what was looked for, when the corpus is missing or empty.
    """
    root = corpus_root(cfg)
    if not root.is_dir():
        raise DataError(f"{cfg.corpus} corpus not found: {root} is not a directory. {_how_to_get(cfg.corpus)}")
    splits = _LISTERS[cfg.corpus](root)
    if not any(splits.values()):
        raise DataError(f"{cfg.corpus} corpus has no files under {root}: looked for {_LOOKED_FOR[cfg.corpus]}. "
                        f"{_how_to_get(cfg.corpus)}")
    if cfg.split == "within":
        every = [item for split in SPLITS for item in splits.get(split, [])]
        splits = {split: [replace(item, part=WITHIN_PARTS[split]) for item in every] for split in SPLITS}
    return {split: _interleave(splits.get(split, []))[: cfg.max_utterances] for split in SPLITS}


def stable_hash(text: str) -> int:
    """A hash of `text` that is the same on every machine and run (unlike hash())."""
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big")


def hash_split(text: str) -> str:
    """train, valid or test with probabilities 0.8, 0.1, 0.1, fixed by `text`."""
    bucket = stable_hash(text) % 100
    return "train" if bucket < 80 else "valid" if bucket < 90 else "test"


def _interleave(items: list[Item]) -> list[Item]:
    by_group = defaultdict(list)
    for item in items:
        by_group[item.group].append(item)
    ranked = []
    for group, members in by_group.items():
        members.sort(key=lambda item: (stable_hash(item.name), item.name))
        ranked += [(rank, group, item) for rank, item in enumerate(members)]
    return [item for _, _, item in sorted(ranked, key=lambda entry: entry[:2])]


def _item(root: Path, path: Path, group: str) -> Item:
    return Item(path.relative_to(root).as_posix(), path, group)


def _files(folder: Path, suffixes: set[str]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file())


def _list_asterisk(root: Path) -> dict[str, list[Item]]:
    splits = defaultdict(list)
    for path in _files(root, {".g722"}):
        item = _item(root, path, group=path.relative_to(root).parts[0])
        splits[hash_split(item.name)].append(item)
    return splits


def _list_vctk(root: Path) -> dict[str, list[Item]]:
    bases = [p for p in sorted(root.glob("wav48*")) + [root / "wav"] if p.is_dir()] or [root]
    splits = defaultdict(list)
    for speaker_dir in sorted(p for p in bases[0].iterdir() if p.is_dir()):
        split = hash_split(speaker_dir.name)
        for path in _files(speaker_dir, {".wav", ".flac"}):
            if not path.stem.endswith("_mic2"):
                splits[split].append(_item(root, path, group=speaker_dir.name))
    return splits


def _list_wsj0(root: Path) -> dict[str, list[Item]]:
    splits = defaultdict(list)
    for split, folder_name in WSJ0_FOLDERS.items():
        for folder in sorted(p for p in root.rglob(folder_name) if p.is_dir()):
            chosen = {}
            for path in _files(folder, {".wav", ".wv1"}):
                key = path.with_suffix("")
                if key not in chosen or path.suffix.lower() == ".wav":
                    chosen[key] = path
            splits[split] += [_item(root, p, group=p.parent.name) for p in chosen.values()]
    return splits


def _list_folder(root: Path) -> dict[str, list[Item]]:
    lists = {split: root / f"{split}.txt" for split in SPLITS}
    splits = defaultdict(list)
    if any(p.is_file() for p in lists.values()):
        # A listed file that is missing stays in: preparation reports it as skipped.
        for split, list_file in lists.items():
            if list_file.is_file():
                names = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
                splits[split] += [_item(root, root / n, group=Path(n).parent.as_posix()) for n in names]
        return splits
    for path in _files(root, AUDIO_SUFFIXES):
        item = _item(root, path, group=path.parent.relative_to(root).as_posix())
        splits[hash_split(item.name)].append(item)
    return splits


def _list_h36m(root: Path) -> dict[str, list[Item]]:
    splits = defaultdict(list)
    for subject, split in H36M_SUBJECTS.items():
        if (root / subject).is_dir():
            splits[split] += [_item(root, p, group=subject) for p in _files(root / subject, {".txt"})]
    return splits


def _list_mocap(root: Path) -> dict[str, list[Item]]:
    splits = defaultdict(list)
    for path in sorted(root.glob("mocap_climb_seq_*/*_joint_positions_*.npy")):
        match = re.fullmatch(r"mocap_climb_seq_(\d+)", path.parent.name)
        if match:
            split = ("train", "train", "train", "valid", "test")[int(match.group(1)) % 5]
            splits[split].append(_item(root, path, group=path.parent.name))
    return splits


_LISTERS = {"asterisk": _list_asterisk, "vctk": _list_vctk, "wsj0": _list_wsj0, "folder": _list_folder,
            "h36m": _list_h36m, "mocap": _list_mocap}

_LOOKED_FOR = {
    "asterisk": "<voice>/**/*.g722",
    "vctk": "wav48*/<speaker>/*.wav|*.flac (or wav/<speaker>/...)",
    "wsj0": "si_tr_s/, si_dt_05/, si_et_05/ folders holding *.wav or *.wv1",
    "folder": f"audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) or train.txt/valid.txt/test.txt lists",
    "h36m": f"<subject>/*.txt for subjects {', '.join(H36M_SUBJECTS)}",
    "mocap": "mocap_climb_seq_<i>/*_joint_positions_*.npy",
}


def _how_to_get(corpus: str) -> str:
    if corpus in ("asterisk", "mocap"):
        return f"Install it with `python -m dvae.data.install {corpus}`."
    if corpus == "folder":
        return "Set data_root to a folder of audio files."
    return f"The {corpus} corpus cannot be downloaded here (licence): set data_root to your copy."


def check_data_root(data: DataConfig) -> None:
    """Fails fast on a data folder that is not there (the corpus's default location is
    the data layer's to check)."""
    if data.data_root is not None and not Path(data.data_root).expanduser().is_dir():
        raise DataError(f"data_root: {data.data_root} is not a directory")
