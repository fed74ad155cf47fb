"""The data layer: speech and motion corpora, prepared once into a memory-mapped cache.

    corpus = prepare_corpus(cfg.data)        # a PreparedCorpus
    corpus.windows("train")                  # (N, seq_len, D) float32 training windows
    corpus.utterances("test")                # whole utterances, with their waveforms for speech
    corpus.extractor.resynthesise(...)       # speech features back to a waveform

Install the built-in corpora with ``python -m dvae.data.install asterisk mocap``.
"""
from .cache import PreparedCorpus, Utterance, prepare_corpus
from .corpora import DataError, check_data_root
from .features import FeatureExtractor

__all__ = ["prepare_corpus", "PreparedCorpus", "Utterance", "DataError", "FeatureExtractor", "check_data_root"]
