"""The feature cache: each corpus is decoded and featurised once, then memory-mapped.

`prepare_corpus` lists the corpus (corpora.py), derives a key from the file list
(paths, sizes, modification times) and every parameter that changes the features, and
builds the cache folder ``<cache root>/<corpus>-<features>-<key>/`` if it is not there:

    meta.json              what was prepared and how (the key's parameters)
    report.json            counts, and every skipped file with the reason
    index.json             per split: utterance names, frame and sample counts
    <split>.features.f32   the split's frames, all utterances concatenated, float32 (N, D)
    <split>.waveforms.f32  speech only: the trimmed, peak-scaled 16 kHz waveforms, concatenated

A folder is written under a temporary name and renamed when complete, so a process
that sees it sees all of it. Processes that ask for the same corpus at once take turns
on a lock file beside it: the first prepares, the others wait and read (where the lock
does not hold, as on some network file systems, the first rename wins and the other
copy is discarded). Arrays are raw float32 read
back with np.memmap (read-only): every process shares the operating system's page
cache instead of holding its own copy. Training windows of any length are views of the
frames (`Windows`), so one cache serves every seq_len without writing anything more.

A file that cannot be used (unreadable, empty, truncated, silent, shorter than
MIN_FRAMES frames, ...) is left out and listed in the report; only a corpus of which
no file at all can be used raises DataError.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from tqdm import tqdm

from ..config import MOTION_CORPORA, DataConfig
from . import audio, motion
from .corpora import SPLITS, DataError, Item, corpus_root, list_splits
from .features import HOP_LENGTH, LOG_FLOOR, N_FFT, FeatureExtractor

CACHE_VERSION = 1
MIN_FRAMES = 8  # shorter utterances are skipped: 128 ms of speech, 0.32 s of motion
POOL_MIN_FILES = 64  # fewer files are prepared in-process: starting workers costs more


@dataclass
class Utterance:
    name: str  # path relative to the corpus root
    features: np.ndarray  # (T, D) float32, a read-only view into the cache
    waveform: Optional[np.ndarray]  # (n,) float32 at 16 kHz, trimmed and peak-scaled; None for motion


def cache_root(cfg: DataConfig) -> Path:
    """`cfg.cache_dir`, else $DVAE_CACHE, else ~/.cache/dvae-tune."""
    return Path(cfg.cache_dir or os.environ.get("DVAE_CACHE") or Path.home() / ".cache" / "dvae-tune").expanduser()


def prepare_corpus(cfg: DataConfig, progress: bool = True, workers: Optional[int] = None) -> "PreparedCorpus":
    """The corpus of `cfg`, prepared into the cache on first use, memory-mapped.

    `workers`: processes that decode and featurise (default: every CPU available);
    small corpora (under POOL_MIN_FILES files) are always prepared in-process.
    Raises DataError when the corpus is missing, empty or holds no usable file.
    """
    if cache_root(cfg).exists() and not cache_root(cfg).is_dir():
        raise DataError(f"cache_dir: {cache_root(cfg)} is a file, not a folder")
    splits = list_splits(cfg)
    params = _parameters(cfg)
    folder = cache_root(cfg) / f"{cfg.corpus}-{params['features']}-{_key(splits, params)}"
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock_path = folder.parent / f".{folder.name}.lock"
        with open(lock_path, "a") as lock:
            # Trials that need the same corpus at the same moment: one prepares it, the
            # others wait here and then read what it prepared.
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not folder.is_dir():
                _build(folder, cfg, splits, params, progress, workers)
                lock_path.unlink()  # whoever comes later finds the folder before the lock
    return PreparedCorpus(folder, cfg)


def _parameters(cfg: DataConfig) -> dict:
    """Everything besides the file list that changes what is stored."""
    common = {"version": CACHE_VERSION, "corpus": cfg.corpus, "root": str(corpus_root(cfg)),
              "max_utterances": cfg.max_utterances, "min_frames": MIN_FRAMES}
    if cfg.corpus in MOTION_CORPORA:
        return {**common, "features": "joints", "frame_rate": motion.FRAME_RATE, "split": cfg.split}
    return {**common, "features": cfg.features, "n_mels": cfg.n_mels if cfg.features == "mel" else None,
            "sample_rate": audio.SAMPLE_RATE, "n_fft": N_FFT, "hop_length": HOP_LENGTH, "log_floor": LOG_FLOOR,
            "trim_db": audio.TRIM_DB, "silent_peak": audio.SILENT_PEAK}


def _key(splits: dict[str, list[Item]], params: dict) -> str:
    files = {}
    for split, items in splits.items():
        files[split] = []
        for item in items:
            try:
                stat = item.path.stat()
                files[split].append([str(item.path), stat.st_size, stat.st_mtime_ns])
            except OSError:  # a listed file that is missing: it will be reported as skipped
                files[split].append([str(item.path), None, None])
    text = json.dumps({"params": params, "files": files}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _build(folder: Path, cfg: DataConfig, splits: dict[str, list[Item]], params: dict,
           progress: bool, workers: Optional[int]) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        report, index, feature_dim = _write_arrays(tmp, cfg, splits, progress, workers)
        meta = {"params": params, "kind": "motion" if cfg.corpus in MOTION_CORPORA else "speech",
                "feature_dim": feature_dim}
        for name, content in (("meta", meta), ("report", report), ("index", index)):
            (tmp / f"{name}.json").write_text(json.dumps(content, indent=1))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
        try:
            os.rename(tmp, folder)
        except OSError:
            if not folder.is_dir():
                raise
            # Another process finished the same cache first; its copy is identical.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_arrays(tmp: Path, cfg: DataConfig, splits: dict[str, list[Item]], progress: bool,
                  workers: Optional[int]) -> tuple[dict, dict, int]:
    """Featurises every file into the split's raw arrays; returns (report, index, D)."""
    start = time.monotonic()
    order = [(split, item) for split in SPLITS for item in splits[split]]
    jobs = [(cfg.corpus, str(item.path), cfg.features, cfg.n_mels, item.part) for _, item in order]
    speech = cfg.corpus not in MOTION_CORPORA
    index = {split: {"names": [], "frames": [], "samples": []} for split in SPLITS}
    skipped, feature_dim = [], None
    with ExitStack() as files:
        outputs = {split: {kind: files.enter_context(open(tmp / f"{split}.{kind}.f32", "wb"))
                           for kind in (("features", "waveforms") if speech else ("features",))}
                   for split in SPLITS}
        bar = tqdm(zip(order, _run(jobs, workers)), total=len(jobs), unit="file", disable=not progress,
                   desc=f"preparing {cfg.corpus}" + (f" ({cfg.features})" if speech else ""))
        for (split, item), result in bar:
            if isinstance(result, str):
                skipped.append({"path": str(item.path), "reason": result})
                continue
            frames, wave = result
            feature_dim = frames.shape[1]
            outputs[split]["features"].write(frames.tobytes())
            index[split]["names"].append(item.name)
            index[split]["frames"].append(len(frames))
            if speech:
                outputs[split]["waveforms"].write(wave.tobytes())
                index[split]["samples"].append(len(wave))
    if feature_dim is None:
        reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
        raise DataError(f"none of the {len(jobs)} files of the {cfg.corpus} corpus under {corpus_root(cfg)} "
                        f"could be used, e.g. {reasons}")
    report = {
        "corpus": cfg.corpus, "root": str(corpus_root(cfg)), "prepared": len(jobs) - len(skipped),
        "skipped": skipped,
        "splits": {split: {"utterances": len(index[split]["names"]), "frames": sum(index[split]["frames"])}
                   for split in SPLITS},
        "seconds": round(time.monotonic() - start, 1),
    }
    return report, index, feature_dim


def _run(jobs: list[tuple], workers: Optional[int]) -> Iterator:
    """_featurise over the jobs, in order; in a pool of spawned processes if worth it."""
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if workers < 2 or len(jobs) < POOL_MIN_FILES:
        yield from map(_featurise, jobs)
        return
    # spawn, not fork: the caller (a Ray worker, a test run) may hold torch threads.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=torch.set_num_threads, initargs=(1,))
    try:
        yield from pool.map(_featurise, jobs, chunksize=8)
    finally:
        pool.shutdown(cancel_futures=True)  # on an error, do not finish the whole corpus first


def _featurise(job: tuple) -> tuple[np.ndarray, Optional[np.ndarray]] | str:
    """(features (T, D) float32, waveform or None), or the reason the file is skipped."""
    corpus, path, features, n_mels, (start, end) = job
    try:
        if corpus in MOTION_CORPORA:
            frames = motion.load_h36m(path) if corpus == "h36m" else motion.load_mocap(path)
            frames, wave = frames[round(start * len(frames)):round(end * len(frames))], None
        else:
            wave = audio.load_utterance(path)
            frames = _extractor(features, n_mels).analyse(torch.from_numpy(wave)).numpy()
        if len(frames) < MIN_FRAMES:
            return f"too short: {len(frames)} frames (< {MIN_FRAMES})"
        if not np.isfinite(frames).all():
            return "non-finite features"
    except Exception as error:  # whatever one bad file raises, the rest of the corpus goes on
        return str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
    return frames, wave


@functools.lru_cache(maxsize=None)
def _extractor(kind: str, n_mels: int) -> FeatureExtractor:
    return FeatureExtractor(kind, n_mels)


class PreparedCorpus:
    """A prepared corpus: features (and waveforms) memory-mapped from its cache folder.

    Pickling it (to send it to a Ray trial) carries the folder's path, not the arrays;
    the receiving process maps the files again.
    """

    def __init__(self, path: Path, cfg: DataConfig):
        self.path = Path(path)
        self.name = cfg.corpus
        self.split = cfg.split  # how the corpus is divided into its splits (DataConfig.split)
        self.seq_len = cfg.seq_len
        self.window_hop = cfg.window_hop or cfg.seq_len
        meta = json.loads((self.path / "meta.json").read_text())
        self._index = json.loads((self.path / "index.json").read_text())
        self.kind = meta["kind"]
        self.feature_dim = meta["feature_dim"]
        if self.kind == "speech":
            self.extractor = FeatureExtractor(cfg.features, cfg.n_mels)
            self.frame_rate = self.extractor.frame_rate
        else:
            self.extractor = None
            self.frame_rate = float(motion.FRAME_RATE)
        self.report = json.loads((self.path / "report.json").read_text())
        frames = {split: np.asarray(self._index[split]["frames"], dtype=np.int64) for split in SPLITS}
        self.report["seq_len"] = self.seq_len
        self.report["windows"] = {split: int(self._window_counts(frames[split]).sum()) for split in SPLITS}
        self.report["shorter_than_seq_len"] = {split: int((frames[split] < self.seq_len).sum()) for split in SPLITS}
        self._maps = {}

    def __getstate__(self):
        return {**self.__dict__, "_maps": {}}

    def utterances(self, split: str) -> list[Utterance]:
        """Every utterance (or motion sequence) of the split, as views into the cache."""
        entry = self._entry(split)
        features = self._array(split, "features")
        frame_at = np.concatenate([[0], np.cumsum(entry["frames"], dtype=np.int64)])
        if self.kind == "motion":
            return [Utterance(name, features[frame_at[i]:frame_at[i + 1]], None)
                    for i, name in enumerate(entry["names"])]
        waveforms = self._array(split, "waveforms")
        sample_at = np.concatenate([[0], np.cumsum(entry["samples"], dtype=np.int64)])
        return [Utterance(name, features[frame_at[i]:frame_at[i + 1]], waveforms[sample_at[i]:sample_at[i + 1]])
                for i, name in enumerate(entry["names"])]

    def windows(self, split: str) -> "Windows":
        """The split's training windows, (N, seq_len, D): each utterance cut into windows of
        seq_len frames from its start, one every window_hop frames (side by side by default; a
        remainder shorter than seq_len is left out)."""
        frames = np.asarray(self._entry(split)["frames"], dtype=np.int64)
        first_frame = np.concatenate([[0], np.cumsum(frames)[:-1]])
        starts = np.concatenate([first + self.window_hop * np.arange(count, dtype=np.int64)
                                 for first, count in zip(first_frame, self._window_counts(frames))]
                                or [np.zeros(0, np.int64)])
        return Windows(self._array(split, "features"), starts, self.seq_len)

    def _window_counts(self, frames: np.ndarray) -> np.ndarray:
        """How many windows each utterance of `frames` frames gives."""
        return np.where(frames >= self.seq_len, (frames - self.seq_len) // self.window_hop + 1, 0)

    def training_windows(self) -> tuple["Windows", "Windows"]:
        """The train and valid splits' windows; a DataError where either has none at this seq_len."""
        train, valid = self.windows("train"), self.windows("valid")
        for split, windows in (("train", train), ("valid", valid)):
            if len(windows) == 0:
                raise DataError(f"corpus '{self.name}' has no {self.seq_len}-frame windows in its {split} "
                                f"split (its longest utterance has {max(self._entry(split)['frames'], default=0)} "
                                "frames); lower seq_len")
        return train, valid

    def _entry(self, split: str) -> dict:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        return self._index[split]

    def _array(self, split: str, kind: str) -> np.ndarray:
        """The split's concatenated features (N, D) or waveforms (n,), memory-mapped read-only."""
        key = (kind, split)
        if key not in self._maps:
            entry = self._entry(split)
            shape = (sum(entry["frames"]), self.feature_dim) if kind == "features" else (sum(entry["samples"]),)
            if shape[0] == 0:  # np.memmap cannot map an empty file
                self._maps[key] = np.empty(shape, dtype=np.float32)
                self._maps[key].flags.writeable = False
            else:
                self._maps[key] = np.memmap(self.path / f"{split}.{kind}.f32", dtype=np.float32, mode="r",
                                            shape=shape)
        return self._maps[key]

    def __repr__(self) -> str:
        counts = ", ".join(f"{s} {len(self._index[s]['names'])}" for s in SPLITS)
        return f"PreparedCorpus({self.name}, {self.kind}, D={self.feature_dim}, {counts}; {self.path})"


class Windows:
    """Windows of seq_len frames read from a split's memory-mapped frames: window i is
    frames[starts[i] : starts[i] + seq_len]. A view, not a copy, so that trials with any
    seq_len share the one cache in the page cache and none writes a file of its own.

    windows[i] is a read-only (seq_len, D) view into the cache; windows[indices] or
    windows[a:b] a (n, seq_len, D) array of its own.
    """

    def __init__(self, frames: np.ndarray, starts: np.ndarray, seq_len: int):
        self.frames, self.starts, self.seq_len = frames, starts, seq_len
        self.shape = (len(starts), seq_len, frames.shape[1])
        self.dtype = frames.dtype
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            start = self.starts[index]
            return self.frames[start:start + self.seq_len]
        starts = self.starts[index]
        out = np.empty((len(starts), *self.shape[1:]), dtype=self.dtype)
        for row, start in zip(out, starts):  # a block copy per window: faster than gathering frames
            row[...] = self.frames[start:start + self.seq_len]
        return out
