"""Reading speech files: any format in, one mono 16 kHz float32 utterance out.

`load_utterance` is the whole speech front end of the corpus preparation: decode,
downmix, resample to 16 kHz, reject silent files, trim leading and trailing silence
and scale the utterance by its own peak (as the DVAE review does).

Decoders: soundfile (libsndfile) reads WAV, FLAC, OGG and NIST SPHERE (WSJ0's .wv1;
only uncompressed SPHERE: shorten-compressed files must first be expanded with
`sph2pipe`); PyAV (FFmpeg) reads everything else, among it Asterisk's headerless
G.722 files. Any file that cannot be used raises ValueError with a short reason,
which the preparation records in its report instead of crashing.
"""
from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import torch
import torchaudio.functional

SAMPLE_RATE = 16000
WAV_PEAK = 0.9  # written wavs are scaled to this peak: loud, never clipped
TRIM_DB = 30.0  # leading/trailing frames this far below the loudest frame are cut
SILENT_PEAK = 1e-4  # a file whose peak is below this (-80 dBFS) holds no speech
SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".wv1", ".wv2", ".sph", ".nist", ".aif", ".aiff"}
AUDIO_SUFFIXES = SOUNDFILE_SUFFIXES | {".g722", ".mp3", ".m4a", ".opus", ".webm", ".mp4"}

# libsndfile logs "data : <declared> (should be <available>)" when a WAV's data chunk
# is longer than the file; it then silently returns the part that is there.
_SHORT_DATA_CHUNK = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def load_utterance(path: str | Path) -> np.ndarray:
    """The file as a (n,) float32 waveform at 16 kHz: mono, trimmed, peak equal to 1."""
    channels, rate = read_audio(path)
    wave = torch.from_numpy(channels).mean(dim=0)
    if rate != SAMPLE_RATE:
        wave = torchaudio.functional.resample(wave, rate, SAMPLE_RATE)
    wave = wave.numpy()
    peak = float(np.max(np.abs(wave)))
    if not np.isfinite(peak):
        raise ValueError("non-finite samples")
    if peak < SILENT_PEAK:
        raise ValueError(f"silent: peak amplitude {peak:.2g} < {SILENT_PEAK:g}")
    wave = trim_silence(wave, TRIM_DB)
    return (wave / np.max(np.abs(wave))).astype(np.float32)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decodes a file as it is: (channels, n) float32 in [-1, 1] and its sample rate."""
    path = Path(path)
    if not path.is_file():
        raise ValueError("file not found")
    if path.stat().st_size == 0:
        raise ValueError("empty file (0 bytes)")
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        channels, rate = _read_soundfile(path)
    else:
        channels, rate = _read_pyav(path)
    if channels.shape[1] == 0:
        raise ValueError("empty: no audio samples")
    return channels, rate


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    try:
        with sf.SoundFile(path) as f:
            short = _SHORT_DATA_CHUNK.search(f.extra_info)
            if short and int(short.group(1)) > int(short.group(2)):
                raise ValueError(
                    f"truncated: header declares {short.group(1)} data bytes, file holds {short.group(2)}")
            return f.read(dtype="float32", always_2d=True).T, f.samplerate
    except sf.SoundFileError as error:
        hint = " (shorten-compressed NIST SPHERE? expand it with sph2pipe)" if path.suffix.lower() in {
            ".wv1", ".wv2", ".sph"} else ""
        raise ValueError(f"unreadable: {error}{hint}") from None


def _read_pyav(path: Path) -> tuple[np.ndarray, int]:
    # Raw G.722 has no header, so FFmpeg must be told the format; it decodes to 16 kHz.
    fmt = "g722" if path.suffix.lower() == ".g722" else None
    try:
        with av.open(str(path), format=fmt) as container:
            if not container.streams.audio:
                raise ValueError("unreadable: no audio stream")
            stream = container.streams.audio[0]
            # Planar float keeps each channel in its own row and the original rate,
            # so downmixing and resampling stay in torch (not in FFmpeg's resampler).
            to_float = av.AudioResampler(format="fltp")
            chunks = [out.to_ndarray() for frame in container.decode(stream) for out in to_float.resample(frame)]
            chunks += [out.to_ndarray() for out in to_float.resample(None)]
            rate = stream.rate
    except av.FFmpegError as error:
        raise ValueError(f"unreadable: {error}") from None
    if not chunks:
        raise ValueError("empty: no audio samples")
    return np.concatenate(chunks, axis=1).astype(np.float32), rate


def trim_silence(wave: np.ndarray, top_db: float = TRIM_DB, frame: int = 2048, hop: int = 512) -> np.ndarray:
    """Cuts the leading and trailing frames whose energy is `top_db` below the loudest.

    The rule of librosa.effects.trim (which the DVAE review uses, with these frame
    sizes): frames are centred on multiples of `hop`; the kept span runs from the first
    loud frame's centre to one hop past the last loud frame's centre.
    """
    padded = np.pad(wave.astype(np.float64), frame // 2)
    # Energy of every frame from a running sum of squares: one pass, no frame copies.
    cumulative = np.concatenate([[0.0], np.cumsum(padded**2)])
    starts = np.arange(0, len(wave) + 1, hop)
    energy = (cumulative[starts + frame] - cumulative[starts]) / frame
    loud = np.flatnonzero(energy > energy.max() * 10 ** (-top_db / 10))
    return wave[loud[0] * hop: min(len(wave), (loud[-1] + 1) * hop)]


def write_wav(path: str | Path, wave: np.ndarray) -> Path:
    """A 16 kHz 16-bit wav of `wave` scaled to a peak of WAV_PEAK (silence is written as is)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = np.asarray(wave, dtype=np.float32)
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    sf.write(path, wave * (WAV_PEAK / peak) if peak > 0 else wave, SAMPLE_RATE, subtype="PCM_16")
    return path


def file_stem(name: str) -> str:
    """An utterance name (a relative path) as one file name."""
    return re.sub(r"[^\w.-]+", "_", str(Path(name).with_suffix("")))
