"""FeatureCache: hits and misses, invalidation by audio / weights / hyperparameters, frozen check, atomic writes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from audio.cache import FeatureCache, FeatureCacheError, encoder_config
from audio.io import AudioFileNotFoundError, load_audio
from audio.mel import MelEncoder

ASSET = Path(__file__).resolve().parents[2] / "assets" / "speech" / "arctic_a0009.wav"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def frozen_mel(seed: int = 0, **kwargs) -> MelEncoder:
    torch.manual_seed(seed)
    return MelEncoder(output_dim=8, **kwargs).requires_grad_(False).eval()


@pytest.fixture()
def wav_file(tmp_path: Path) -> Path:
    path = tmp_path / "speech.wav"
    shutil.copy(ASSET, path)
    return path


def test_miss_then_hit_for_files_and_waveforms(tmp_path: Path, wav_file: Path) -> None:
    enc = frozen_mel()
    cache = FeatureCache(tmp_path / "cache", enc)
    expected = enc(torch.from_numpy(load_audio(wav_file))[None]).x[0]
    first = cache.get(wav_file)
    assert (cache.hits, cache.misses) == (0, 1)
    assert first.shape == expected.shape == (enc.num_frames(len(load_audio(wav_file))), 8)
    assert torch.equal(first, expected)
    second = cache.get(str(wav_file))
    assert (cache.hits, cache.misses) == (1, 1) and torch.equal(second, expected)

    wav = torch.randn(8000) * 0.1
    assert torch.equal(cache.get(wav), enc(wav[None]).x[0])
    assert torch.equal(cache.get(wav.numpy().copy()), enc(wav[None]).x[0])  # same bytes as an array: a hit
    assert torch.equal(cache.get(wav[None]), enc(wav[None]).x[0])  # [1, N] is accepted too
    assert (cache.hits, cache.misses) == (3, 2)
    # A fresh cache object over the same directory (a new process, a new epoch) finds the entries.
    again = FeatureCache(tmp_path / "cache", frozen_mel())
    again.get(wav_file), again.get(wav)
    assert (again.hits, again.misses) == (2, 0)


def test_audio_edits_and_key_extra_invalidate(tmp_path: Path, wav_file: Path) -> None:
    cache = FeatureCache(tmp_path / "c", frozen_mel())
    wav = torch.randn(4000) * 0.1
    cache.get(wav), cache.get(wav_file)
    edited = wav.clone()
    edited[1234] += 1e-3
    cache.get(edited)
    data, rate = sf.read(wav_file, dtype="int16")
    data[100] += 1  # one sample, one LSB
    sf.write(wav_file, data, rate, subtype="PCM_16")
    cache.get(wav_file)
    cache.get(wav, key_extra="v2")
    assert (cache.hits, cache.misses) == (0, 5)
    cache.get(wav, key_extra="v2")
    assert cache.hits == 1
    assert len(list((tmp_path / "c").rglob("*.pt"))) == 5


def test_encoder_edits_invalidate(tmp_path: Path) -> None:
    enc = frozen_mel()
    cache = FeatureCache(tmp_path, enc)
    wav = torch.randn(4000) * 0.1
    base = cache.fingerprint
    before = cache.get(wav)
    with torch.no_grad():
        enc.convs[0].bias[0] += 0.5  # in place: the version counter changes
    assert cache.fingerprint != base
    after = cache.get(wav)
    assert cache.misses == 2 and not torch.equal(before, after)
    enc.load_state_dict(frozen_mel(seed=0).state_dict())  # back to the original weights: the old entry again
    assert cache.fingerprint == base and torch.equal(cache.get(wav), before) and cache.hits == 1
    # Writes through .data bypass the version counter; refresh() picks them up.
    enc.norm.weight.data.mul_(2.0)
    cache.refresh()
    assert cache.fingerprint != base
    # Same weights and buffers, different hyperparameters (hop_length changes no tensor, only the framing).
    other = frozen_mel(hop_length=160)
    other.load_state_dict(frozen_mel().state_dict())
    assert FeatureCache(tmp_path, other).fingerprint != base
    # Same class, config and weights in a new instance: the same fingerprint (stable across processes).
    assert FeatureCache(tmp_path, frozen_mel()).fingerprint == base
    assert FeatureCache(tmp_path, frozen_mel(seed=1)).fingerprint != base


def test_config_of_transformers_models_is_part_of_the_fingerprint() -> None:
    class Config:
        def __init__(self, **kw):
            self.kw = kw

        def to_dict(self):
            return dict(self.kw)

    class Wrapped(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.config = config
            self.layer = nn.Linear(2, 2)

    a = encoder_config(Wrapped(Config(hidden_act="gelu", _name_or_path="/a", transformers_version="5")))
    b = encoder_config(Wrapped(Config(hidden_act="gelu", _name_or_path="/b", transformers_version="6")))
    c = encoder_config(Wrapped(Config(hidden_act="relu", _name_or_path="/a", transformers_version="5")))
    assert a == b and a != c  # where it was loaded from does not matter, the activation does
    assert a["modules"][""]["config"] == {"hidden_act": "gelu"}
    assert a["modules"]["layer"]["in_features"] == 2


def test_refuses_trainable_encoder_unless_forced(tmp_path: Path) -> None:
    enc = MelEncoder(output_dim=8)
    with pytest.raises(FeatureCacheError, match=r"requires_grad_\(False\) or pass force=True"):
        FeatureCache(tmp_path, enc)
    assert issubclass(FeatureCacheError, ValueError)
    forced = FeatureCache(tmp_path, enc, force=True)
    assert forced.get(torch.randn(2000)).shape == (6, 8)
    frozen = frozen_mel()
    cache = FeatureCache(tmp_path, frozen)
    frozen.norm.weight.requires_grad_(True)  # unfrozen after construction: get() checks again
    with pytest.raises(FeatureCacheError, match="norm.weight"):
        cache.get(torch.randn(2000))


def test_encodes_in_eval_mode_and_restores_training(tmp_path: Path) -> None:
    enc = frozen_mel(dropout=0.5).train()
    cache = FeatureCache(tmp_path, enc)
    wav = torch.randn(4000) * 0.1
    got = cache.get(wav)
    assert enc.training  # the caller's mode is restored
    assert torch.equal(got, enc.eval()(wav[None]).x[0])  # no dropout in the stored features


def test_atomic_writes_and_corrupt_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = FeatureCache(tmp_path, frozen_mel())
    wav = torch.randn(4000) * 0.1
    entry = cache.entry_path(cache.key(wav))

    def crash(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt  # the process dies mid-write

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.get(wav)
    monkeypatch.undo()
    assert not entry.exists() and list(tmp_path.rglob("*.tmp")) == []  # nothing half-written is visible

    good = cache.get(wav)
    assert entry.is_file() and list(tmp_path.rglob("*.tmp")) == []
    entry.write_bytes(b"garbage")  # a foreign or truncated file counts as a miss and is rewritten
    assert torch.equal(cache.get(wav), good)
    assert torch.equal(cache.get(wav), good)
    assert (cache.hits, cache.misses) == (1, 3)


def test_user_errors(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "c", frozen_mel())
    with pytest.raises(AudioFileNotFoundError, match="missing.wav"):
        cache.get(tmp_path / "missing.wav")
    with pytest.raises(FeatureCacheError, match="NaN"):
        cache.get(torch.tensor([0.0, float("nan")] * 500))
    with pytest.raises(FeatureCacheError, match=r"\[N\]"):
        cache.get(torch.zeros(2, 1000))
    with pytest.raises(FeatureCacheError, match="waveform tensor"):
        cache.get(12)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FeatureCacheError, match="is a file"):
        FeatureCache(tmp_path / "file", frozen_mel())
    assert cache.get(np.zeros(640, dtype=np.float64)).shape == (2, 8)
