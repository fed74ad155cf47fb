"""The data layer: corpora and their splits, features and their inversion, the cache,
motion loading, and bad input."""
from __future__ import annotations

import json
import pickle
import time

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional

from dvae.config import DataConfig
from dvae.data import DataError, FeatureExtractor, PreparedCorpus, Utterance, prepare_corpus
from dvae.data import audio, cache, corpora, install, motion
from dvae.data.corpora import ASTERISK_ROOT, SPLITS, hash_split, list_splits

VOICES = {"en_US_f_Allison", "es_MX_f_Allison", "fr_CA_f_June", "it_IT_m_Carlo", "ru_RU_f_IvrvoiceRU"}
needs_asterisk = pytest.mark.skipif(
    not all((ASTERISK_ROOT / v).is_dir() for v in VOICES),
    reason="Asterisk prompts not installed: python -m dvae.data.install asterisk")


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Scale-invariant signal-to-distortion ratio in dB."""
    target = (estimate @ reference) / (reference @ reference) * reference
    return float(10 * torch.log10((target @ target) / ((estimate - target) @ (estimate - target))))


def noise_burst(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Speech-like test signal: noise under a slow envelope, loud from start to end."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * rng.standard_normal(len(t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


# --- asterisk: splits, shapes -------------------------------------------------------

@pytest.fixture(scope="module")
def asterisk(tmp_path_factory) -> PreparedCorpus:
    cfg = DataConfig(corpus="asterisk", max_utterances=10, seq_len=20, cache_dir=str(tmp_path_factory.mktemp("cache")))
    return prepare_corpus(cfg, progress=False)


@needs_asterisk
def test_asterisk_subset_counts_and_shapes(asterisk):
    assert (asterisk.kind, asterisk.feature_dim, asterisk.frame_rate) == ("speech", 513, 62.5)
    assert isinstance(asterisk.extractor, FeatureExtractor)
    report = asterisk.report
    assert report["prepared"] + len(report["skipped"]) == 30
    for split in SPLITS:
        utterances = asterisk.utterances(split)
        assert 9 <= len(utterances) <= 10  # the corpus holds one empty file, which may be among them
        for u in utterances:
            assert isinstance(u, Utterance)
            assert u.features.dtype == np.float32 and u.features.shape[1] == 513
            assert u.waveform.dtype == np.float32 and np.abs(u.waveform).max() == pytest.approx(1.0)
            assert len(u.features) == 1 + len(u.waveform) // 256  # one frame per 256-sample hop, and the first
            assert (u.features >= 0).all()  # a power spectrogram
        windows = asterisk.windows(split)
        assert windows.shape == (sum(len(u.features) // 20 for u in utterances), 20, 513)
        first = utterances[0]
        if len(first.features) >= 20:
            np.testing.assert_array_equal(windows[0], first.features[:20])


@needs_asterisk
def test_windows_of_any_length_are_views_of_the_one_cache(asterisk):
    files = sorted(p.name for p in asterisk.path.iterdir())
    for seq_len in (20, 33):
        corpus = prepare_corpus(DataConfig(corpus="asterisk", max_utterances=10, seq_len=seq_len,
                                           cache_dir=str(asterisk.path.parent)), progress=False)
        assert corpus.path == asterisk.path
        windows = corpus.windows("train")
        expected = np.concatenate([u.features[:len(u.features) // seq_len * seq_len].reshape(-1, seq_len, 513)
                                   for u in corpus.utterances("train")])
        assert windows.shape == expected.shape and len(windows) == len(expected)
        np.testing.assert_array_equal(windows[len(windows) - 1], expected[-1])
        picked = np.array([0, 3, len(windows) - 1])
        np.testing.assert_array_equal(windows[picked], expected[picked])
        np.testing.assert_array_equal(windows[1:4], expected[1:4])
    assert sorted(p.name for p in asterisk.path.iterdir()) == files  # nothing written per length


@needs_asterisk
def test_asterisk_splits_disjoint_stable_and_cover_every_voice(asterisk, monkeypatch):
    names = {split: [u.name for u in asterisk.utterances(split)] for split in SPLITS}
    assert not set(names["train"]) & set(names["valid"])
    assert not set(names["train"]) & set(names["test"])
    assert not set(names["valid"]) & set(names["test"])
    for split in SPLITS:
        assert {n.split("/")[0] for n in names[split]} == VOICES, split
    # The rule itself is pinned: a change to it would silently move files between splits.
    assert hash_split("en_US_f_Allison/digits/1.g722") == "train"
    assert hash_split("it_IT_m_Carlo/beeperr.g722") == "valid"
    assert hash_split("en_US_f_Allison/beeperr.g722") == "test"
    full = list_splits(DataConfig(corpus="asterisk"))
    assert sum(len(items) for items in full.values()) == 2831
    for split in SPLITS:
        assert {item.group for item in full[split]} == VOICES
    assert 0.75 < len(full["train"]) / 2831 < 0.85
    # Independent of the order in which the file system lists files.
    listed = corpora._files
    monkeypatch.setattr(corpora, "_files", lambda folder, suffixes: listed(folder, suffixes)[::-1])
    assert list_splits(DataConfig(corpus="asterisk")) == full
    skipped = {s["path"] for s in asterisk.report["skipped"]}
    subset = list_splits(DataConfig(corpus="asterisk", max_utterances=10))
    for split in SPLITS:
        assert [i.name for i in subset[split] if str(i.path) not in skipped] == names[split]


@needs_asterisk
def test_missing_asterisk_names_the_installer(tmp_path):
    with pytest.raises(DataError, match=r"python -m dvae\.data\.install asterisk"):
        prepare_corpus(DataConfig(corpus="asterisk", data_root=str(tmp_path / "nowhere")), progress=False)
    with pytest.raises(DataError, match=r"\.g722.*python -m dvae\.data\.install asterisk"):
        prepare_corpus(DataConfig(corpus="asterisk", data_root=str(tmp_path)), progress=False)


# --- features ------------------------------------------------------------------------

@needs_asterisk
def test_stft_round_trip_with_original_phase(asterisk):
    wave = torch.from_numpy(np.array(asterisk.utterances("test")[0].waveform))
    extractor = FeatureExtractor("stft")
    features, spectrum = extractor.analyse(wave), extractor.stft(wave)
    assert features.shape == spectrum.shape == (1 + len(wave) // 256, 513)
    torch.testing.assert_close(spectrum.abs() ** 2, features, rtol=1e-4, atol=1e-6)
    assert si_sdr(wave, extractor.resynthesise(features, spectrum, length=len(wave))) > 30
    assert si_sdr(wave, extractor.resynthesise(features, spectrum.angle(), length=len(wave))) > 30
    griffin_lim = extractor.resynthesise(features, length=len(wave))
    assert griffin_lim.shape == wave.shape and torch.isfinite(griffin_lim).all()


def test_mel_features_and_resynthesis():
    wave = torch.from_numpy(noise_burst(0.7))
    extractor = FeatureExtractor("mel", n_mels=40)
    features = extractor.analyse(wave)
    assert features.shape == (1 + len(wave) // 256, 40) and extractor.feature_dim == 40
    assert torch.isfinite(features).all() and features.min() >= np.log(1e-5) - 1e-4  # log(mel + 1e-5)
    for phase in (None, extractor.stft(wave)):
        out = extractor.resynthesise(features, phase, length=len(wave))
        assert out.shape == wave.shape and torch.isfinite(out).all() and out.abs().max() > 0.01
    # Griffin-Lim gives any length asked for: its own, cut or padded with silence
    T = len(features)
    own = extractor.resynthesise(features)
    assert own.shape == (256 * (T - 1),)
    for length in (256 * T, 256 * (T - 3)):
        out = extractor.resynthesise(features, length=length)
        n = min(length, len(own))
        assert out.shape == (length,) and torch.equal(out[:n], own[:n]) and not out[n:].any()


# --- the cache -----------------------------------------------------------------------

@needs_asterisk
def test_cache_is_reused_memory_mapped_and_read_only(asterisk, monkeypatch):
    def no_decoding(path):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(audio, "load_utterance", no_decoding)
    cfg = DataConfig(corpus="asterisk", max_utterances=10, seq_len=20, cache_dir=str(asterisk.path.parent))
    again = prepare_corpus(cfg, progress=False)
    assert again.path == asterisk.path and again.report == asterisk.report
    assert json.loads((again.path / "report.json").read_text())["prepared"] == asterisk.report["prepared"]
    assert [p.name for p in again.path.parent.iterdir()] == [again.path.name]  # no temporary leftovers
    windows = again.windows("train")
    assert isinstance(windows[0], np.memmap) and not windows[0].flags.writeable  # a view into the cache
    with pytest.raises(ValueError):
        windows[0][0, 0] = 1.0
    utterance = again.utterances("train")[0]
    for array in (utterance.features, utterance.waveform):
        assert isinstance(array.base, np.memmap) and not array.flags.writeable
    # Pickling (to a Ray trial) sends the path, not the arrays.
    assert len(pickle.dumps(again)) < windows.nbytes / 10
    assert pickle.loads(pickle.dumps(again)).windows("train").shape == windows.shape


@needs_asterisk
def test_cache_key_follows_max_utterances_and_features(asterisk):
    root = asterisk.path.parent
    mel = prepare_corpus(DataConfig(corpus="asterisk", features="mel", n_mels=40, max_utterances=3,
                                    cache_dir=str(root)), progress=False)
    assert mel.path != asterisk.path
    assert (mel.feature_dim, mel.frame_rate) == (40, 62.5)
    assert all(u.features.shape[1] == 40 for u in mel.utterances("valid"))
    assert len(mel.utterances("train")) <= 3


def test_a_second_writer_of_the_same_cache_gives_way(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(3):
        sf.write(folder / f"{i}.wav", noise_burst(0.5, seed=i), 16000)
    (folder / "train.txt").write_text("0.wav\n1.wav\n")
    (folder / "test.txt").write_text("2.wav\n")
    cfg = DataConfig(corpus="folder", data_root=str(folder), seq_len=10, cache_dir=str(tmp_path / "cache"))
    first = prepare_corpus(cfg, progress=False)
    # Another process that finishes the same cache later finds the folder taken.
    splits = list_splits(cfg)
    cache._build(first.path, cfg, splits, cache._parameters(cfg), progress=False, workers=1)
    assert [p.name for p in first.path.parent.iterdir()] == [first.path.name]
    assert prepare_corpus(cfg, progress=False).report == first.report


def test_trials_preparing_the_same_corpus_at_once_prepare_it_once(tmp_path, monkeypatch):
    import threading

    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(3):
        sf.write(folder / f"{i}.wav", noise_burst(0.5, seed=i), 16000)
    cfg = DataConfig(corpus="folder", data_root=str(folder), seq_len=10, cache_dir=str(tmp_path / "cache"))
    builds, write_arrays = [], cache._write_arrays

    def slow_write_arrays(*args, **kwargs):
        builds.append(1)
        time.sleep(0.5)  # long enough for the other preparations to arrive while it runs
        return write_arrays(*args, **kwargs)

    monkeypatch.setattr(cache, "_write_arrays", slow_write_arrays)
    corpora = []
    threads = [threading.Thread(target=lambda: corpora.append(prepare_corpus(cfg, progress=False))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len(corpora) == 3
    assert len({c.path for c in corpora}) == 1 and all(c.report == corpora[0].report for c in corpora)
    assert [p.name for p in corpora[0].path.parent.iterdir()] == [corpora[0].path.name]  # no lock left behind


# --- VCTK and WSJ0 layouts -------------------------------------------------------------

def test_vctk_splits_by_speaker_and_uses_mic1_only(tmp_path):
    for speaker in (f"p{n}" for n in range(225, 245)):
        for i in (1, 2):
            for mic in (1, 2):
                path = tmp_path / "wav48_silence_trimmed" / speaker / f"{speaker}_{i:03d}_mic{mic}.flac"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")  # listing only
    splits = list_splits(DataConfig(corpus="vctk", data_root=str(tmp_path)))
    speakers = {split: {item.group for item in items} for split, items in splits.items()}
    assert set.union(*speakers.values()) == {f"p{n}" for n in range(225, 245)}
    assert not (speakers["train"] & speakers["valid"] or speakers["train"] & speakers["test"]
                or speakers["valid"] & speakers["test"])
    assert all(hash_split(speaker) == split for split in SPLITS for speaker in speakers[split])
    items = [item for split in SPLITS for item in splits[split]]
    assert len(items) == 40 and all(item.name.endswith("_mic1.flac") for item in items)


def test_wsj0_layout_and_nist_sphere(tmp_path):
    layout = {"si_tr_s": ["011/011a0101", "011/011a0102", "012/012c0201"], "si_dt_05": ["050/050a0501"],
              "si_et_05": ["440/440c0201"]}
    for folder, stems in layout.items():
        for i, stem in enumerate(stems):
            path = tmp_path / "wsj0" / folder / f"{stem}.wv1"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, noise_burst(0.4, seed=i), 16000, format="NIST", subtype="PCM_16")
    sf.write(tmp_path / "wsj0" / "si_tr_s" / "011" / "011a0101.wav", noise_burst(0.6), 16000)  # wins over .wv1
    corpus = prepare_corpus(DataConfig(corpus="wsj0", data_root=str(tmp_path), seq_len=5,
                                       cache_dir=str(tmp_path / "cache")), progress=False)
    names = {split: sorted(u.name for u in corpus.utterances(split)) for split in SPLITS}
    assert names == {"train": ["wsj0/si_tr_s/011/011a0101.wav", "wsj0/si_tr_s/011/011a0102.wv1",
                               "wsj0/si_tr_s/012/012c0201.wv1"],
                     "valid": ["wsj0/si_dt_05/050/050a0501.wv1"], "test": ["wsj0/si_et_05/440/440c0201.wv1"]}
    assert not corpus.report["skipped"]


# --- bad input -----------------------------------------------------------------------

def test_bad_files_are_skipped_and_reported(tmp_path, monkeypatch):
    folder = tmp_path / "corpus"
    (folder / "spk").mkdir(parents=True)
    for i in range(3):
        sf.write(folder / "spk" / f"good{i}.wav", noise_burst(1.0, seed=i), 16000)
    sf.write(folder / "good.flac", noise_burst(0.8, seed=7), 16000)
    stereo = noise_burst(1.0, rate=44100, seed=3)
    sf.write(folder / "stereo44k.wav", np.stack([stereo, 0.5 * stereo], axis=1), 44100)
    (folder / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    (folder / "empty.wav").write_bytes(b"")
    sf.write(folder / "whole.wav", noise_burst(1.0, seed=4), 16000, subtype="PCM_16")
    whole = (folder / "whole.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(whole[: len(whole) // 2])
    (folder / "whole.wav").unlink()
    sf.write(folder / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(folder / "short.wav", noise_burst(0.05), 16000)
    (folder / "notes.md").write_text("not audio")
    bad = {"corrupt.wav": "unreadable", "empty.wav": "empty", "truncated.wav": "truncated",
           "silent.wav": "silent", "short.wav": "too short", "missing.wav": "not found"}
    (folder / "train.txt").write_text("\n".join(["spk/good0.wav", "spk/good1.wav", "stereo44k.wav", *bad]) + "\n")
    (folder / "valid.txt").write_text("spk/good2.wav\n")
    (folder / "test.txt").write_text("good.flac\n")
    monkeypatch.setattr(cache, "POOL_MIN_FILES", 1)  # go through the worker processes
    corpus = prepare_corpus(DataConfig(corpus="folder", data_root=str(folder), seq_len=10,
                                       cache_dir=str(tmp_path / "cache")), progress=False, workers=2)
    names = {split: [u.name for u in corpus.utterances(split)] for split in SPLITS}
    assert sorted(names["train"]) == ["spk/good0.wav", "spk/good1.wav", "stereo44k.wav"]
    assert names["valid"] == ["spk/good2.wav"] and names["test"] == ["good.flac"]
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in corpus.report["skipped"]}
    assert reasons.keys() == bad.keys()
    for name, word in bad.items():
        assert word in reasons[name], (name, reasons[name])
    saved = json.loads((corpus.path / "report.json").read_text())
    assert saved["skipped"] == corpus.report["skipped"] and saved["prepared"] == 5
    # 44.1 kHz stereo: downmixed, resampled to 16 kHz, still the same signal.
    resampled = next(u for u in corpus.utterances("train") if u.name == "stereo44k.wav").waveform
    assert abs(len(resampled) - 16000) <= 1
    expected = torchaudio.functional.resample(torch.from_numpy(stereo), 44100, 16000).numpy()
    assert np.corrcoef(resampled, expected[: len(resampled)])[0, 1] > 0.99


def test_folder_without_lists_splits_by_hash(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(20):
        sf.write(folder / f"{i:02d}.wav", noise_burst(0.3, seed=i), 16000)
    splits = list_splits(DataConfig(corpus="folder", data_root=str(folder)))
    assert sorted(i.name for items in splits.values() for i in items) == [f"{i:02d}.wav" for i in range(20)]
    for split, items in splits.items():
        assert all(hash_split(i.name) == split for i in items)


def test_missing_or_empty_folder_raises_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        prepare_corpus(DataConfig(corpus="folder", data_root=str(tmp_path / "absent")), progress=False)
    (tmp_path / "notes.md").write_text("no audio here")
    with pytest.raises(DataError, match=r"no files under .*audio files \(") as error:
        prepare_corpus(DataConfig(corpus="folder", data_root=str(tmp_path)), progress=False)
    assert str(tmp_path) in str(error.value)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really")
    with pytest.raises(DataError, match="none of the 1 files"):
        prepare_corpus(DataConfig(corpus="folder", data_root=str(tmp_path), cache_dir=str(tmp_path / "c")),
                       progress=False)


# --- Human3.6M -----------------------------------------------------------------------

def write_h36m(path, frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 0.3, (frames, 99))
    values[:, :3] = [120.0, -340.0, 910.0]  # global translation: must be ignored
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, values, delimiter=",", fmt="%.8f")
    return values


def test_h36m_forward_kinematics_and_subject_splits(tmp_path):
    for subject, seed in (("S1", 0), ("S9", 1), ("S5", 2), ("S11", 3), ("S2", 4)):
        write_h36m(tmp_path / subject / "walking_1.txt", 40, seed)
    write_h36m(tmp_path / "S1" / "eating_2.txt", 30, 5)
    corpus = prepare_corpus(DataConfig(corpus="h36m", data_root=str(tmp_path), seq_len=8,
                                       cache_dir=str(tmp_path / "cache")), progress=False)
    assert (corpus.kind, corpus.feature_dim, corpus.frame_rate) == ("motion", 96, 25.0)
    assert corpus.extractor is None
    names = {split: sorted(u.name for u in corpus.utterances(split)) for split in SPLITS}
    assert names == {"train": ["S1/eating_2.txt", "S1/walking_1.txt", "S9/walking_1.txt"],
                     "valid": ["S5/walking_1.txt"], "test": ["S11/walking_1.txt"]}  # S2 is in no split
    lengths = {u.name: len(u.features) for u in corpus.utterances("train")}
    assert lengths == {"S1/eating_2.txt": 15, "S1/walking_1.txt": 20, "S9/walking_1.txt": 20}  # 50 -> 25 fps
    assert corpus.windows("train").shape == (2 + 2 + 1, 8, 96)
    for u in corpus.utterances("train"):
        joints = u.features.reshape(len(u.features), 32, 3)
        assert u.waveform is None
        np.testing.assert_allclose(joints[:, 0], 0.0, atol=1e-6)  # no global translation
        children = np.flatnonzero(motion.H36M_PARENTS >= 0)
        bones = np.linalg.norm(joints[:, children] - joints[:, motion.H36M_PARENTS[children]], axis=-1)
        np.testing.assert_allclose(bones.std(axis=0), 0.0, atol=1e-3)
        np.testing.assert_allclose(bones[0], np.linalg.norm(motion.H36M_OFFSETS[children], axis=-1), rtol=1e-4)


def test_h36m_rotation_convention_and_zeroed_global_rotation():
    rest = motion.h36m_forward_kinematics(np.zeros((1, 99)))[0]
    np.testing.assert_allclose(rest[3] - rest[2], [0, -454.206447, 0])  # rest pose: the offsets
    values = np.zeros((1, 99))
    values[0, 3:6] = [0.0, 0.0, 1.3]  # global rotation: ignored
    values[0, 9:12] = [0.0, 0.0, 0.5]  # joint 2 (right knee), 0.5 rad about z
    joints = motion.h36m_forward_kinematics(values)[0]
    np.testing.assert_allclose(joints[:3], rest[:3], atol=1e-9)
    # Row-vector convention of the data: child = offset @ R_parent + parent.
    np.testing.assert_allclose(joints[3] - joints[2], [-454.206447 * np.sin(0.5), -454.206447 * np.cos(0.5), 0],
                               atol=1e-6)


# --- climbing motion capture ---------------------------------------------------------

@pytest.fixture(scope="module")
def mocap_root():
    try:
        return install.install_mocap()
    except RuntimeError as error:
        pytest.skip(f"the holosoma-retargeting wheel could not be downloaded: {error}")


def test_a_within_split_cuts_every_take_into_train_valid_and_test_in_time(tmp_path):
    from dvae.config import ConfigError
    root = tmp_path / "mocap"
    rng = np.random.default_rng(0)
    takes = {}
    for take, frames in enumerate((480, 600)):  # at 120 fps: 100 and 125 frames at 25 fps
        (root / f"mocap_climb_seq_{take}").mkdir(parents=True)
        np.save(root / f"mocap_climb_seq_{take}" / f"t_joint_positions_{take}.npy",
                np.cumsum(rng.normal(0, 0.005, size=(frames, 53, 3)), axis=0))
        takes[f"mocap_climb_seq_{take}"] = None
    common = dict(corpus="mocap", data_root=str(root), cache_dir=str(tmp_path / "cache"))
    whole = prepare_corpus(DataConfig(**common), progress=False)  # takes 0 to train, 1 to valid
    within = prepare_corpus(DataConfig(**common, split="within"), progress=False)
    assert within.path != whole.path  # a cache of its own
    for split in SPLITS:
        assert sorted(u.name.split("/")[0] for u in within.utterances(split)) == sorted(takes)
    for u in [*whole.utterances("train"), *whole.utterances("valid")]:
        parts = {split: next(p.features for p in within.utterances(split) if p.name == u.name) for split in SPLITS}
        # the three parts are the whole take, in order, in shares of 70, 15 and 15%
        np.testing.assert_array_equal(np.concatenate([parts[s] for s in SPLITS]), u.features)
        for split, share in zip(SPLITS, (0.7, 0.15, 0.15)):
            assert abs(len(parts[split]) - share * len(u.features)) <= 1
    with pytest.raises(ConfigError, match="split: within"):
        DataConfig(corpus="asterisk", split="within")


def test_mocap_joints_in_mm_at_25_fps(mocap_root, tmp_path):
    corpus = prepare_corpus(DataConfig(corpus="mocap", seq_len=50, cache_dir=str(tmp_path)), progress=False)
    assert (corpus.kind, corpus.feature_dim, corpus.frame_rate) == ("motion", 159, 25.0)
    assert [len(corpus.utterances(s)) for s in SPLITS] == [3, 1, 1]
    assert corpus.utterances("valid")[0].name.startswith("mocap_climb_seq_3/")
    assert corpus.utterances("test")[0].name.startswith("mocap_climb_seq_4/")
    source_frames = {"mocap_climb_seq_3": 2401, "mocap_climb_seq_4": 2303}
    for split in ("valid", "test"):
        u = corpus.utterances(split)[0]
        assert len(u.features) == -(-source_frames[u.name.split("/")[0]] * 25 // 120)  # 120 -> 25 fps
    joints = np.concatenate([u.features for u in corpus.utterances("train")]).reshape(-1, 53, 3)
    np.testing.assert_allclose(joints[:, 0], 0.0, atol=1e-3)  # root-centred on the hips
    # Upper arms, forearms, thighs and shins (MOCAP_DEMO_JOINTS indices): human sizes in mm.
    for parent, child in ((6, 7), (7, 8), (25, 26), (26, 27), (43, 44), (44, 45), (47, 48), (48, 49)):
        length = np.linalg.norm(joints[:, child] - joints[:, parent], axis=-1)
        assert 50 < np.median(length) < 600 and length.std() < 0.05 * np.median(length)
    assert corpus.windows("train").shape[1:] == (50, 159)


def test_overlapping_windows_start_every_window_hop_frames_within_each_sequence(tmp_path):
    for subject, seed in (("S1", 0), ("S9", 1), ("S5", 2), ("S11", 3)):
        write_h36m(tmp_path / subject / "walking_1.txt", 40, seed)  # 20 frames at 25 fps
    write_h36m(tmp_path / "S1" / "eating_2.txt", 30, 5)  # 15 frames
    settings = dict(corpus="h36m", data_root=str(tmp_path), seq_len=8, cache_dir=str(tmp_path / "cache"))
    apart = prepare_corpus(DataConfig(**settings), progress=False)
    overlapping = prepare_corpus(DataConfig(**settings, window_hop=3), progress=False)
    # 15 frames: starts 0, 3, 6; 20 frames: 0, 3, ..., 12 (a window never crosses into the next sequence)
    assert len(overlapping.windows("train")) == 3 + 5 + 5 and len(apart.windows("train")) == 1 + 2 + 2
    assert overlapping.report["windows"]["train"] == 13 and apart.report["windows"]["train"] == 5
    frames = {u.name: u.features for u in overlapping.utterances("train")}
    windows = overlapping.windows("train")
    expected = [frames[name][start:start + 8] for name in frames for start in range(0, len(frames[name]) - 7, 3)]
    np.testing.assert_array_equal(windows[np.arange(len(windows))], np.stack(expected))
    assert len(overlapping.windows("valid")) == 5  # validation windows overlap too
    from dvae.config import ConfigError
    with pytest.raises(ConfigError, match="window_hop"):
        DataConfig(**settings, window_hop=0)
