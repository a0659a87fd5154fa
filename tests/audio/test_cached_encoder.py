import pytest
import torch

from audio import CachedEncoder, MelEncoder
from audio.cache import FeatureCacheError


def frozen_mel() -> MelEncoder:
    torch.manual_seed(0)
    return MelEncoder(output_dim=16, num_layers=2, dropout=0.0).eval().requires_grad_(False)


def test_cached_features_equal_the_encoder_and_hit_on_second_epoch(tmp_path):
    encoder = frozen_mel()
    cached = CachedEncoder(encoder, str(tmp_path / "cache"))
    wav = torch.randn(2, 8000) * 0.1
    lengths = torch.tensor([8000, 5120])
    direct = encoder(wav, lengths)
    first = cached(wav, lengths)
    assert cached.cache.misses == 2 and cached.cache.hits == 0
    second = cached(wav, lengths)
    assert cached.cache.hits == 2
    for out in (first, second):
        assert torch.equal(out.mask, direct.mask)
        torch.testing.assert_close(out.x[out.mask], direct.x[direct.mask], atol=1e-5, rtol=1e-5)
    # a fresh wrapper (next process) reads what the first one stored
    again = CachedEncoder(frozen_mel(), str(tmp_path / "cache"))
    again(wav, lengths)
    assert again.cache.hits == 2 and again.cache.misses == 0


def test_changed_weights_miss(tmp_path):
    cached = CachedEncoder(frozen_mel(), str(tmp_path / "cache"))
    wav = torch.randn(1, 4000) * 0.1
    cached(wav)
    other = frozen_mel()
    with torch.no_grad():
        other.convs[0].weight.add_(0.1)
    changed = CachedEncoder(other, str(tmp_path / "cache"))
    changed(wav)
    assert changed.cache.misses == 1


def test_trainable_encoder_is_refused(tmp_path):
    cached = CachedEncoder(MelEncoder(output_dim=16), str(tmp_path / "cache"))
    with pytest.raises(FeatureCacheError):
        cached(torch.randn(1, 4000))
