"""MelEncoder: frame counts, masks, padding/batch invariance, exact framing, bounded receptive field."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audio.features import AudioFeatures
from audio.mel import LOG_EPS, LOG_MEL_MEAN, LOG_MEL_STD, MelEncoder


@pytest.fixture(scope="module")
def enc() -> MelEncoder:
    torch.manual_seed(0)
    return MelEncoder(output_dim=16).eval()


def test_defaults_and_frame_rate() -> None:
    e = MelEncoder()
    assert (e.sample_rate, e.output_dim, e.frame_rate) == (16000, 128, 50.0)
    assert e.lookahead_frames == 2
    assert e.receptive_field_samples == 2 * 2 * 320 + 400
    # The filterbank and window are derived from the config, so they are not saved in checkpoints.
    assert not {"window", "mel_fb"} & set(e.state_dict())


@pytest.mark.parametrize("n", [320, 639, 640, 16000, 16319, 24001])
def test_num_frames_matches_forward(enc: MelEncoder, n: int) -> None:
    feats = enc(torch.randn(2, n))
    assert isinstance(feats, AudioFeatures)
    assert enc.num_frames(n) == n // 320
    assert feats.x.shape == (2, n // 320, 16)
    assert feats.mask.all() and feats.frame_rate == 50.0


def test_log_mel_framing_matches_numpy_reference(enc: MelEncoder) -> None:
    # Frame i is the Hann-windowed STFT of the 400 samples ending at (i + 1) * 320, zeros before the start.
    rng = np.random.default_rng(0)
    wav = rng.standard_normal(3200).astype(np.float32) * 0.1
    got = enc.log_mel(torch.from_numpy(wav)[None])[0].numpy()  # [10, 80]
    padded = np.concatenate([np.zeros(80, np.float32), wav])
    window = np.hanning(401)[:400]  # periodic Hann of length 400
    fb = enc.mel_fb.numpy()
    for i in range(10):
        frame = padded[(i + 1) * 320 + 80 - 400 : (i + 1) * 320 + 80] * window
        power = np.abs(np.fft.rfft(frame, n=512)) ** 2
        ref = (np.log(fb @ power + LOG_EPS) - LOG_MEL_MEAN) / LOG_MEL_STD
        np.testing.assert_allclose(got[i], ref, rtol=1e-4, atol=1e-4)


def test_log_mel_peak_band_follows_tone_frequency(enc: MelEncoder) -> None:
    import librosa

    centers = librosa.mel_frequencies(n_mels=82, fmin=0.0, fmax=8000.0)[1:-1]  # band centre frequencies
    t = torch.arange(8000) / 16000
    for hz in (300.0, 1000.0, 3000.0):
        mel = enc.log_mel(0.3 * torch.sin(2 * torch.pi * hz * t)[None])[0, 5:]
        peak = int(mel.mean(0).argmax())
        assert abs(centers[peak] - hz) < 0.1 * hz


def test_padding_invariance_and_masks(enc: MelEncoder) -> None:
    torch.manual_seed(1)
    lengths = torch.tensor([16000, 9001, 4800])
    wav = torch.randn(3, 16000)  # padding holds noise, not zeros: it must still not leak
    feats = enc(wav, lengths)
    assert feats.x.shape == (3, 50, 16)
    assert feats.mask.sum(1).tolist() == [50, 28, 15]
    assert torch.equal(feats.lengths, torch.tensor([50, 28, 15]))
    for b, n in enumerate(lengths.tolist()):
        alone = enc(wav[b : b + 1, :n])
        t = alone.x.shape[1]
        torch.testing.assert_close(feats.x[b, :t], alone.x[0], atol=1e-5, rtol=1e-5)
        assert torch.all(feats.x[b, t:] == 0)
        assert not feats.mask[b, t:].any() and feats.mask[b, :t].all()


def test_other_batch_elements_do_not_change_features(enc: MelEncoder) -> None:
    torch.manual_seed(2)
    a, b = torch.randn(2, 8000)
    first = enc(torch.stack([a, b])).x[0]
    second = enc(torch.stack([a, 100.0 * b])).x[0]
    torch.testing.assert_close(first, second, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # defaults: 2 layers, kernel 3, win 400 > hop 320
        {"num_layers": 3, "kernel_size": 5, "win_length": 256, "n_fft": 256},  # win < hop
        {"num_layers": 1, "kernel_size": 1},  # no temporal context in the convs at all
    ],
)
def test_receptive_field_is_exactly_as_documented(kwargs: dict) -> None:
    torch.manual_seed(3)
    e = MelEncoder(output_dim=8, n_mels=20, **kwargs).eval()
    hop, win, p = e.hop_length, e.win_length, e.lookahead_frames
    wav = torch.randn(1, 40 * hop) * 0.1
    base = e(wav).x[0]
    num = base.shape[0]
    for s in (5, 70, 13 * hop + 7, 20 * hop, 40 * hop - 1):
        bumped = wav.clone()
        bumped[0, s] += 1.0
        changed = (e(bumped).x[0] - base).abs().amax(dim=1) > 0
        # Spectral frame j sees samples ((j + 1) * hop - win, (j + 1) * hop); the first window sample has
        # weight exactly 0 (periodic Hann). Output frame i mixes spectral frames i - P .. i + P.
        spectral = [(j + 1) * hop - win < s < (j + 1) * hop for j in range(num)]
        exact = torch.tensor([any(spectral[max(i - p, 0) : i + p + 1]) for i in range(num)])
        assert torch.equal(changed, exact), (s, changed.nonzero().flatten(), exact.nonzero().flatten())
        # The documented bound [(i - P + 1) * hop - win, (i + P + 1) * hop) contains every influence.
        bound = torch.tensor([(i - p + 1) * hop - win <= s < (i + p + 1) * hop for i in range(num)])
        assert not (changed & ~bound).any()
        assert int(bound.sum()) <= 2 * p + 1 + -(-win // hop)


def test_gradients_and_dropout() -> None:
    torch.manual_seed(4)
    e = MelEncoder(output_dim=8, dropout=0.5)
    wav = torch.randn(2, 6400, requires_grad=True)
    e.train()
    assert not torch.equal(e(wav).x, e(wav).x)  # dropout active
    e.eval()
    x = e(wav, torch.tensor([6400, 3200])).x
    torch.testing.assert_close(x, e(wav, torch.tensor([6400, 3200])).x)
    x.square().sum().backward()
    assert wav.grad is not None and torch.isfinite(wav.grad).all()
    assert wav.grad[1, 3200:].abs().sum() == 0  # padded samples do not influence the output
    assert all(p.grad is not None for p in e.parameters())


def test_zero_length_rows_are_fully_masked(enc: MelEncoder) -> None:
    feats = enc(torch.randn(2, 3200), torch.tensor([3200, 100]))
    assert feats.mask.sum(1).tolist() == [10, 0]
    assert torch.all(feats.x[1] == 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kernel_size": 4}, "odd"),
        ({"win_length": 600}, "must not exceed n_fft"),
        ({"hop_length": 0}, "hop_length"),
        ({"num_layers": 0}, "num_layers"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MelEncoder(**kwargs)


def test_bad_inputs(enc: MelEncoder) -> None:
    with pytest.raises(ValueError, match=r"shape \[B, N\]"):
        enc(torch.randn(3200))
    with pytest.raises(ValueError, match="float"):
        enc(torch.zeros(1, 3200, dtype=torch.int16))
    with pytest.raises(ValueError, match="at least one frame"):
        enc(torch.randn(1, 319))
    with pytest.raises(ValueError, match=r"lengths must lie in"):
        enc(torch.randn(2, 3200), torch.tensor([3200, 3201]))
    with pytest.raises(ValueError, match="lengths must be an integer tensor"):
        enc(torch.randn(2, 3200), torch.tensor([3200.0, 10.0]))


@pytest.mark.parametrize(
    ("sample_rate", "n_fft", "n_mels"), [(16000, 512, 80), (22050, 1024, 128), (8000, 256, 40)]
)
def test_filterbank_equals_librosa_to_the_bit(sample_rate, n_fft, n_mels):
    """MelEncoder computes librosa's Slaney filterbank itself (importing librosa.filters costs seconds)."""
    import librosa

    from audio.filterbank import mel_filterbank

    expected = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=sample_rate / 2)
    np.testing.assert_array_equal(mel_filterbank(sample_rate, n_fft, n_mels), expected)
