"""On-disk cache of frozen-encoder features, keyed by audio content and an encoder fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from audio.encoder import AudioEncoder
from audio.io import AudioFileNotFoundError, UnreadableAudioError, load_audio
from talk.errors import UserError
from talk.files import atomic_write

# Bumped when the on-disk layout or the keying changes, so old entries are simply never hit again.
CACHE_FORMAT = 1
# Config keys of transformers models that do not change the computation (where a checkpoint was loaded from,
# which library version wrote it); leaving them out keeps a moved checkpoint's entries valid.
_IGNORED_CONFIG_KEYS = ("_name_or_path", "transformers_version")
_SIMPLE = (bool, int, float, str, type(None))


class FeatureCacheError(UserError, ValueError):
    """A FeatureCache was misconfigured or misused; the message names the argument and the fix."""


def _is_simple(value: Any) -> bool:
    if isinstance(value, _SIMPLE):
        return True
    if isinstance(value, (tuple, list)):
        return all(_is_simple(v) for v in value)
    return False


def encoder_config(encoder: nn.Module) -> dict[str, Any]:
    """The hyperparameters that define ``encoder``'s computation, as a JSON-serialisable dict.

    Collected from every submodule: public attributes of plain types (ints, floats, strings, tuples of them:
    hop lengths, kernel sizes, eps, dropout p, freeze mode, ...) and any ``config`` object with ``to_dict()``
    (transformers models), minus keys that do not affect the output. The ``training`` flag is left out because
    the cache always encodes in eval mode.

    Args:
        encoder: The module to describe.

    Returns:
        {"class": "module.Qualname", "modules": {submodule name: {attr: value}}}.
    """
    modules: dict[str, Any] = {}
    seen_configs: set[int] = set()
    for name, module in encoder.named_modules():
        attrs: dict[str, Any] = {"class": f"{type(module).__module__}.{type(module).__qualname__}"}
        for key, value in sorted(vars(module).items()):
            if key.startswith("_") or key == "training":
                continue
            if _is_simple(value):
                attrs[key] = value
            elif key == "config" and hasattr(value, "to_dict") and id(value) not in seen_configs:
                seen_configs.add(id(value))  # every transformers submodule holds the same config object
                config = {k: v for k, v in value.to_dict().items() if k not in _IGNORED_CONFIG_KEYS}
                attrs[key] = json.loads(json.dumps(config, sort_keys=True, default=str))
        modules[name] = attrs
    return {"class": f"{type(encoder).__module__}.{type(encoder).__qualname__}", "modules": modules}


def tensor_digest(module: nn.Module) -> str:
    """sha256 over every parameter and buffer (persistent or not): names, dtypes, shapes and raw bytes."""
    digest = hashlib.sha256()
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    for name, tensor in tensors:
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(memoryview(t.view(torch.uint8).numpy()))
    return digest.hexdigest()


class FeatureCache:
    """Stores a frozen encoder's features on disk so that later epochs skip the encoder.

    Key: sha256 of (the file's bytes, or the float32 waveform's bytes and shape) + the encoder fingerprint +
    ``key_extra``. The fingerprint is a sha256 of the encoder's class, its hyperparameters (``encoder_config``)
    and all its parameter and buffer tensors (``tensor_digest``), so changing the audio, a hyperparameter or any
    weight gives a new key; stale entries are never read (delete the directory to reclaim space). Entries are
    written to a temporary file in the same directory and moved into place atomically (``talk.files``), so
    concurrent workers and crashes never leave a partial entry visible; an unreadable entry counts as a miss
    and is rewritten.

    Hashing a 95M-parameter model takes about half a second, so the tensor digest is memoised on each tensor's
    identity, data pointer and in-place version counter: optimiser steps, ``load_state_dict`` and in-place edits
    under ``torch.no_grad()`` are noticed automatically. Writes through ``tensor.data`` bypass the version
    counter; call ``refresh()`` after such edits.

    Features are computed in eval mode (the encoder's mode is restored afterwards) without autograd, from
    ``load_audio(path, encoder.sample_rate)`` for paths, and stored as float32 on the CPU.

    Args:
        directory: Cache directory, created if missing.
        encoder: The encoder whose features are cached. It must be frozen (no parameter requires grad), since
            the features of a model being trained go stale at every step.
        force: Cache even though some parameter requires grad (e.g. a frozen backbone whose trainable layer
            weights are applied later); the fingerprint still changes whenever the weights do.
    """

    def __init__(self, directory: str | Path, encoder: AudioEncoder, force: bool = False) -> None:
        if not isinstance(encoder, AudioEncoder):
            raise FeatureCacheError(
                f"FeatureCache encoder must be an AudioEncoder, got {type(encoder).__name__}."
            )
        self.directory = Path(directory).expanduser()
        if self.directory.exists() and not self.directory.is_dir():
            raise FeatureCacheError(
                f"FeatureCache directory {self.directory} is a file; pass a directory path instead."
            )
        self.encoder = encoder
        self.force = bool(force)
        self._check_frozen()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self._digest_token: tuple | None = None
        self._digest = ""

    # ---------------------------------------------------------------------------------------------- fingerprint

    def _check_frozen(self) -> None:
        if self.force:
            return
        trainable = [n for n, p in self.encoder.named_parameters() if p.requires_grad]
        if trainable:
            shown = ", ".join(trainable[:3]) + (", ..." if len(trainable) > 3 else "")
            raise FeatureCacheError(
                f"FeatureCache refuses to cache {type(self.encoder).__name__} because {len(trainable)} of its "
                f"parameters require grad ({shown}); freeze it with encoder.requires_grad_(False) or pass "
                f"force=True."
            )

    def _token(self) -> tuple:
        tensors = list(self.encoder.named_parameters()) + list(self.encoder.named_buffers())
        return tuple(
            (n, id(t), t.data_ptr(), t._version, tuple(t.shape), str(t.dtype), str(t.device))
            for n, t in tensors
        )

    def refresh(self) -> None:
        """Forget the memoised tensor digest (needed only after writes through ``tensor.data``)."""
        self._digest_token = None

    @property
    def fingerprint(self) -> str:
        """sha256 hex digest identifying the encoder's class, hyperparameters and weights."""
        token = self._token()
        if token != self._digest_token:
            self._digest = tensor_digest(self.encoder)
            self._digest_token = token
        config = json.dumps(encoder_config(self.encoder), sort_keys=True, default=str)
        return hashlib.sha256(f"{config}|{self._digest}".encode()).hexdigest()

    # -------------------------------------------------------------------------------------------------- lookup

    def key(self, path_or_wav: str | Path | Tensor | np.ndarray, key_extra: str = "") -> str:
        """The cache key (sha256 hex) of an input; see the class docstring."""
        return self._key(self._source(path_or_wav)[0], key_extra)

    def _key(self, source: str, key_extra: str) -> str:
        payload = json.dumps(
            {"format": CACHE_FORMAT, "source": source, "encoder": self.fingerprint, "extra": str(key_extra)},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def entry_path(self, key: str) -> Path:
        """File that holds (or would hold) the entry for ``key``."""
        return self.directory / key[:2] / f"{key}.pt"

    def get(self, path_or_wav: str | Path | Tensor | np.ndarray, key_extra: str = "") -> Tensor:
        """Features of an audio file or waveform, from the cache when present, else encoded and stored.

        Args:
            path_or_wav: An audio file path, or a mono waveform [N] (or [1, N]) at ``encoder.sample_rate``.
            key_extra: Extra text mixed into the key (e.g. a preprocessing version) to separate variants.

        Returns:
            Features [Ta, D], float32 on the CPU, Ta = ``encoder.num_frames(N)``.
        """
        self._check_frozen()
        source, wav = self._source(path_or_wav)
        key = self._key(source, key_extra)
        path = self.entry_path(key)
        cached = self._read(path)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        if wav is None:  # a path: decode only on a miss
            wav = torch.from_numpy(load_audio(Path(path_or_wav), sample_rate=self.encoder.sample_rate))
        features = self._encode(wav)
        self._write(path, {"features": features, "key": key, "source": source, "key_extra": str(key_extra)})
        return features

    def _source(self, path_or_wav: str | Path | Tensor | np.ndarray) -> tuple[str, Tensor | None]:
        """(content hash, waveform or None for files) of an input."""
        if isinstance(path_or_wav, (str, os.PathLike)):
            path = Path(path_or_wav).expanduser()
            if not path.exists():
                raise AudioFileNotFoundError(f"audio file {path} does not exist; check the path.")
            if not path.is_file():
                raise UnreadableAudioError(f"audio path {path} is not a file; pass an audio file.")
            digest = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            return f"file:{digest.hexdigest()}", None
        if isinstance(path_or_wav, np.ndarray):
            path_or_wav = torch.from_numpy(np.ascontiguousarray(path_or_wav))
        if not isinstance(path_or_wav, Tensor):
            raise FeatureCacheError(
                f"FeatureCache.get expects an audio path or a waveform tensor, got {type(path_or_wav).__name__}."
            )
        wav = path_or_wav.detach()
        if wav.dim() == 2 and wav.shape[0] == 1:
            wav = wav[0]
        if wav.dim() != 1 or not wav.is_floating_point():
            raise FeatureCacheError(
                f"FeatureCache.get expects a float mono waveform [N], got {tuple(wav.shape)} {wav.dtype}."
            )
        if not bool(torch.isfinite(wav).all()):
            raise FeatureCacheError(
                "FeatureCache.get got a waveform with NaN or Inf samples; clean the input."
            )
        wav = wav.to(device="cpu", dtype=torch.float32).contiguous()
        digest = hashlib.sha256(f"{tuple(wav.shape)}|".encode())
        digest.update(memoryview(wav.numpy()))
        return f"wav:{digest.hexdigest()}", wav

    def _encode(self, wav: Tensor) -> Tensor:
        param = next(iter(self.encoder.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
        was_training = self.encoder.training
        self.encoder.eval()  # dropout would make the stored features one random draw
        try:
            with torch.no_grad():
                feats = self.encoder(wav[None].to(device))
        finally:
            self.encoder.train(was_training)
        return feats.x[0].detach().to(device="cpu", dtype=torch.float32).contiguous()

    @staticmethod
    def _read(path: Path) -> Tensor | None:
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # truncated or foreign file: recompute and overwrite it
            return None
        features = entry.get("features") if isinstance(entry, dict) else None
        if not isinstance(features, Tensor) or features.dim() != 2:
            return None
        return features

    @staticmethod
    def _write(path: Path, entry: dict[str, Any]) -> None:
        # Readers (other workers) see the old entry or the whole new one, never a part.
        with atomic_write(path) as f:
            torch.save(entry, f)
