"""Metrics on signals whose answer is known: a real utterance against itself, scaled,
with noise at a set level; joint offsets of known length; a textbook t interval."""
import math
from pathlib import Path

import numpy as np
import pytest
import pesq as pesq_package
import soundfile as sf

from dvae import metrics

# A 3 s, 16 kHz read-speech utterance from Debian's pocketsphinx-testdata package.
UTTERANCE = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav")


@pytest.fixture(scope="module")
def speech():
    if not UTTERANCE.is_file():
        pytest.skip("needs the pocketsphinx-testdata package (apt-get install pocketsphinx-testdata)")
    wave, rate = sf.read(UTTERANCE, dtype="float32")
    assert rate == 16000
    return wave


def noise_like(wave, snr_db, seed=0):
    """White noise at `snr_db` below the wave's power."""
    noise = np.random.default_rng(seed).standard_normal(len(wave))
    return (noise * np.sqrt(np.mean(wave.astype(np.float64) ** 2) / 10 ** (snr_db / 10))).astype(np.float32)


def test_si_sdr_of_a_copy_is_very_large_and_finite(speech):
    assert 100 < metrics.si_sdr(speech, speech) < math.inf
    assert metrics.si_sdr(speech, 0.3 * speech) > 100


def test_si_sdr_is_scale_invariant_and_measures_the_noise_level(speech):
    noisy = speech + noise_like(speech, 20.0)
    assert metrics.si_sdr(speech, noisy) == pytest.approx(20.0, abs=0.3)
    assert metrics.si_sdr(speech, 0.3 * noisy) == pytest.approx(metrics.si_sdr(speech, noisy), abs=1e-6)


def test_si_sdr_of_noise_is_low(speech):
    assert metrics.si_sdr(speech, noise_like(speech, 0.0)) < -10


def test_pesq_and_estoi_of_clean_speech_with_itself_are_near_their_maxima(speech):
    assert metrics.pesq_wb(speech, speech) > 4.4
    assert metrics.pesq(speech, speech) == pytest.approx(4.5, abs=1e-6)  # raw P.862's ceiling
    assert metrics.estoi(speech, speech) > 0.99


def test_pesq_and_estoi_fall_with_noise(speech):
    noisy = speech + noise_like(speech, 5.0)
    assert metrics.pesq_wb(speech, noisy) < 2.0
    assert metrics.pesq(speech, noisy) < 3.0
    assert metrics.estoi(speech, noisy) < 0.9


def test_pesq_of_silence_or_too_short_input_is_nan():
    silence = np.zeros(16000, dtype=np.float32)
    assert math.isnan(metrics.pesq_wb(silence, silence))
    assert math.isnan(metrics.pesq(silence, silence))
    blip = np.random.default_rng(0).standard_normal(100).astype(np.float32)
    assert math.isnan(metrics.pesq_wb(blip, blip))


# Raw P.862 narrowband MOS from pypesq 1.2.4 (`pypesq.pesq(clean, noisy, 16000)`, the DVAE
# review's PESQ), computed once on the utterance above with white noise (numpy's default_rng(0))
# at 10 and 20 dB SNR.
PYPESQ_RAW = {10.0: 2.123317003250122, 20.0: 2.8226566314697266}


@pytest.mark.parametrize("snr_db", sorted(PYPESQ_RAW))
def test_pesq_is_the_raw_narrowband_score_pypesq_gives(speech, snr_db):
    noisy = (speech + noise_like(speech, snr_db)).astype(np.float32)
    assert metrics.pesq(speech, noisy) == pytest.approx(PYPESQ_RAW[snr_db], abs=1e-5)
    # the pesq package's own narrowband score is the P.862.1 MOS-LQO: another scale
    assert abs(pesq_package.pesq(16000, speech, noisy, "nb") - PYPESQ_RAW[snr_db]) > 0.2


def test_si_sdr_keeps_the_mean_as_the_review_does(speech):
    offset = speech + 0.05  # a DC offset is a distortion when means are not removed
    assert metrics.si_sdr(speech, offset) < 20
    assert metrics.si_sdr(speech - speech.mean(), offset - offset.mean()) > 100


def test_estoi_leaves_an_utterance_too_short_to_score_unscored(speech):
    short = speech[:4000]  # 250 ms: under ESTOI's 384 ms of analysis
    assert math.isnan(metrics.estoi(short, short))
    assert metrics.estoi(speech, speech) > 0.99


def test_a_failed_estimate_is_floored_and_counted_an_unscorable_one_left_out():
    summary = metrics.summarise([10.0, -math.inf, 4.0, math.nan], floor=metrics.SI_SDR_MIN_DB)
    assert summary["n"] == 3 and summary["floored"] == 1 and summary["unscored"] == 1
    assert summary["mean"] == pytest.approx((10.0 + metrics.SI_SDR_MIN_DB + 4.0) / 3)
    assert metrics.si_sdr(np.ones(100), np.zeros(100)) == -math.inf
    with pytest.raises(ValueError, match="floor"):
        metrics.summarise([1.0, math.inf])


def test_mpjpe_of_known_offsets_is_the_offset():
    truth = np.random.default_rng(0).normal(0, 300, size=(10, 4 * 3))
    shifted = truth + np.tile([3.0, 4.0, 0.0], 4)  # every joint moved 5 mm
    assert metrics.mpjpe(truth, shifted) == pytest.approx(5.0)
    one_joint = truth.copy()
    one_joint[:, 0:3] += [0.0, 0.0, 8.0]  # one joint of four moved 8 mm: 2 mm on average
    assert metrics.mpjpe(truth, one_joint) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        metrics.mpjpe(truth[:, :10], shifted[:, :10])


def test_rmse():
    assert metrics.rmse(np.zeros((2, 3)), np.full((2, 3), 2.0)) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        metrics.rmse(np.zeros(3), np.zeros(4))


def test_mean_ci_of_a_known_sample():
    mean, half_width = metrics.mean_ci([1, 2, 3, 4, 5])
    # t(0.975, 4 dof) = 2.776445, sample sd sqrt(2.5), n = 5
    assert mean == pytest.approx(3.0)
    assert half_width == pytest.approx(2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)


def test_mean_ci_leaves_out_failed_values():
    assert metrics.mean_ci([1.0, math.nan, 3.0]) == pytest.approx((2.0, 12.7062047))  # sd sqrt(2), n 2
    mean, half_width = metrics.mean_ci([4.0, math.nan])
    assert mean == 4.0 and math.isnan(half_width)
    assert all(math.isnan(v) for v in metrics.mean_ci([]))
