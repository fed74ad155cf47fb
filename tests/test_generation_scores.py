"""Measures of generated speech (dvae.generation_scores) on frames whose answer is known."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dvae.generation_scores import frechet_distance, log_spectral_distance, score_generation, with_deltas

FRAME_RATE = 62.5


def smooth_utterances(n: int, frames: int, bands: int = 12, seed: int = 0) -> list[np.ndarray]:
    """Log-mel-like sequences that drift slowly, so that their deltas are small."""
    rng = np.random.default_rng(seed)
    return [np.cumsum(rng.normal(0, 0.1, (frames, bands)), axis=0) + rng.normal(0, 1, bands) for _ in range(n)]


class Oracle:
    """Continues each prime with its utterance's true next frames (cold: real utterances)."""

    def __init__(self, utterances):
        self.utterances = utterances

    def modules(self):
        return []  # no latent prior to set a temperature on

    def generate(self, n_frames, batch=1, prime=None):
        if prime is None:
            return torch.from_numpy(np.stack([u[:n_frames] for u in self.utterances[-batch:]]))
        p = prime.shape[1]
        match = next(u for u in self.utterances if np.allclose(u[:p], prime[0].numpy(), atol=1e-5))
        return torch.from_numpy(match[p:p + n_frames][None])


def test_the_log_spectral_distance_is_the_rms_difference_in_db():
    a = np.zeros((3, 4))
    b = np.full((3, 4), np.log(10.0))  # ten times the magnitude in every band: 20 dB
    assert log_spectral_distance(a, b) == pytest.approx([20.0] * 3)


def test_the_frechet_distance_of_two_gaussians_is_known():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (200_000, 1))
    b = rng.normal(3, 2, (200_000, 1))
    assert frechet_distance(a, b) == pytest.approx(9 + (2 - 1) ** 2, rel=0.02)  # m² + (σa - σb)²
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-9)


def test_real_continuations_score_best_and_shuffled_frames_worse():
    utterances = smooth_utterances(10, 250)
    corpus = SimpleNamespace(extractor=SimpleNamespace(kind="mel"), frame_rate=FRAME_RATE,
                             utterances=lambda split: [SimpleNamespace(features=u.astype(np.float32)) for u in utterances])
    scores = score_generation(Oracle([u.astype(np.float32) for u in utterances]), corpus, n_cold=4, cold_s=2.0)
    primed = {row: s["lsd_1s"] for row, s in scores["primed"].items()}
    assert primed["model"] == pytest.approx(0, abs=1e-3)  # the oracle's continuation is the truth
    assert primed["model"] < primed["last prime frame held"] < primed["noise"]
    assert primed["model"] < primed["true continuation shuffled"]
    # a held frame drifts further from the truth the longer it is held
    assert scores["primed"]["last prime frame held"]["lsd_0.25s"] < primed["last prime frame held"]
    cold = {row: s["frechet"] for row, s in scores["cold"].items()}
    # frames beside their deltas: a shuffle keeps the frames' statistics but not their changes
    assert cold["real frames shuffled"] > 2 * cold["real speech (the other half)"]
    assert cold["noise"] > cold["real speech (the other half)"]
    assert with_deltas(np.arange(6.0).reshape(3, 2)).tolist() == [[2, 3, 2, 2], [4, 5, 2, 2]]


@pytest.mark.parametrize("family", ["gaussian", "student_t"])
def test_a_sampling_temperature_scales_each_draws_deviation_from_the_priors_location(family):
    from dvae.models.distributions import LatentPrior, sampling_temperature
    prior = LatentPrior(family, df=4.0)
    mean, logvar = torch.full((1000, 3), 2.0), torch.zeros(1000, 3)
    torch.manual_seed(0)
    full = prior.sample(mean, logvar)
    with sampling_temperature(prior, 0.5):
        torch.manual_seed(0)
        half = prior.sample(mean, logvar)
    with sampling_temperature(prior, 0.0):
        location = prior.sample(mean, logvar)
    assert torch.allclose(half - mean, 0.5 * (full - mean), atol=1e-6) and torch.equal(location, mean)
    assert prior.temperature == 1.0  # restored after the block
    with pytest.raises(ValueError, match="0 or more"):
        with sampling_temperature(prior, -1.0):
            pass
