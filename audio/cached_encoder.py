"""An AudioEncoder that serves a frozen encoder's features from an on-disk :class:`~audio.cache.FeatureCache`.

Use it in YAML in place of the encoder it wraps, so epochs after the first never re-run a frozen wav2vec2::

    audio_encoder:
      class_path: audio.CachedEncoder
      init_args:
        directory: outputs/feature_cache
        encoder:
          class_path: audio.HFSpeechEncoder
          init_args: {name_or_path: facebook/wav2vec2-base-960h, freeze: all}
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from audio.cache import FeatureCache
from audio.encoder import AudioEncoder
from audio.features import AudioFeatures


class CachedEncoder(AudioEncoder):
    """Caches a frozen encoder's per-utterance features, keyed by waveform content and encoder fingerprint.

    Each batch row is looked up on its own (its valid samples only), so padding never changes a key, and the
    result is padded back into a batch with a mask. Editing the waveform or the encoder's weights or config
    changes the key, so stale features are never served.

    Args:
        encoder: The encoder to cache; all of its parameters must be frozen.
        directory: Cache directory (created if missing).
    """

    def __init__(self, encoder: AudioEncoder, directory: str = "outputs/feature_cache") -> None:
        super().__init__()
        self.encoder = encoder
        self.directory = Path(directory)
        self.sample_rate = encoder.sample_rate
        self.output_dim = encoder.output_dim
        self.frame_rate = encoder.frame_rate
        self._cache: FeatureCache | None = None

    @property
    def cache(self) -> FeatureCache:
        if self._cache is None:
            self._cache = FeatureCache(self.directory, self.encoder)  # checks that the encoder is frozen
        return self._cache

    def num_frames(self, num_samples: int) -> int:
        return self.encoder.num_frames(num_samples)

    def forward(self, wav: Tensor, lengths: Tensor | None = None) -> AudioFeatures:
        """``wav [B, N]`` -> features ``[B, Ta, D]`` from the cache (encoding and storing misses)."""
        wav, lengths = self._check_input(wav, lengths)
        rows = [self.cache.get(wav[b, : int(lengths[b])].detach().float().cpu()) for b in range(wav.shape[0])]
        ta = max(r.shape[0] for r in rows)
        x = torch.zeros(len(rows), ta, self.output_dim)
        mask = torch.zeros(len(rows), ta, dtype=torch.bool)
        for b, r in enumerate(rows):
            x[b, : r.shape[0]] = r
            mask[b, : r.shape[0]] = True
        return AudioFeatures(x.to(wav.device), mask.to(wav.device), self.frame_rate)
