"""Alignment: exact motion frame counts, linear interpolation (FaceFormer convention), BIWI masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from audio.align import biwi_alignment_mask, interpolate_features, motion_frame_count
from audio.features import AudioFeatures
from audio.mel import MelEncoder


@pytest.mark.parametrize(
    ("num_samples", "sample_rate", "fps", "expected"),
    [
        (16000, 16000, 25, 25),
        (16000, 16000, 30, 30),
        (16000, 16000, 60, 60),
        (16001, 16000, 30, 30),
        (15999, 16000, 30, 29),  # 29.998 frames: the last one is not fully covered by audio
        (18560, 16000, 25, 29),  # float N / sr * fps gives 28.999999999999996 here
        (65600, 16000, 30, 123),  # and 122.99999999999999 here
        (66000, 22000, 30, 90),  # VOCASET raw audio rate
        (160000, 16000, 29.97, 299),
        (160000, 16000, 30000 / 1001, 299),
        (0, 16000, 30, 0),
        (533, 16000, 30, 0),
        (534, 16000, 30, 1),  # 534 * 30 / 16000 = 1.00125
    ],
)
def test_motion_frame_count(num_samples: int, sample_rate: int, fps: float, expected: int) -> None:
    assert motion_frame_count(num_samples, sample_rate, fps) == expected


def test_motion_frame_count_never_outlasts_audio() -> None:
    for n in range(0, 50000, 997):
        for fps in (25, 30, 60, 29.97):
            t = motion_frame_count(n, 16000, fps)
            assert t / fps <= n / 16000 + 1e-12 < (t + 1) / fps


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((-1, 16000, 30), "num_samples"),
        ((10, 0, 30), "sample_rate"),
        ((10, 16000, 0), "fps"),
        ((1.5, 16000, 30), "num_samples"),
    ],
)
def test_motion_frame_count_rejects_bad_arguments(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        motion_frame_count(*args)


def reference(x: torch.Tensor, size: int) -> torch.Tensor:
    """FaceFormer's own call on one unpadded sequence x [Ta, D] -> [size, D]."""
    return F.interpolate(x.T[None], size=size, mode="linear", align_corners=True)[0].T


@pytest.mark.parametrize("fps", [25, 30, 60])
def test_interpolation_matches_faceformer_with_exact_counts(fps: int) -> None:
    torch.manual_seed(0)
    enc = MelEncoder(output_dim=6, n_mels=16).eval()
    lengths = torch.tensor([32000, 24321, 16001, 7777])  # odd lengths on purpose
    feats = enc(torch.randn(4, 32000), lengths)
    counts = [motion_frame_count(int(n), 16000, fps) for n in lengths]
    out = interpolate_features(feats, counts, fps=fps)
    assert out.frame_rate == fps
    assert out.x.shape == (4, max(counts), 6)
    assert out.mask.sum(1).tolist() == counts
    for b, t in enumerate(counts):
        ta = int(feats.mask[b].sum())
        # F.interpolate computes positions in float32, this module in float64: agree to float32 precision.
        torch.testing.assert_close(out.x[b, :t], reference(feats.x[b, :ta], t), atol=1e-5, rtol=1e-5)
        assert torch.all(out.x[b, t:] == 0) and out.mask[b, :t].all() and not out.mask[b, t:].any()
        # align_corners=True: the ends coincide with the first and last valid audio frames.
        torch.testing.assert_close(out.x[b, 0], feats.x[b, 0])
        torch.testing.assert_close(out.x[b, t - 1], feats.x[b, ta - 1])


def test_linear_ramp_is_reproduced_exactly() -> None:
    ta, t = 11, 7
    ramp = torch.arange(ta, dtype=torch.float64)[None, :, None].repeat(1, 1, 2)
    x = torch.cat([ramp, torch.full((1, 5, 2), 1e6, dtype=torch.float64)], dim=1)  # padding must not be read
    mask = torch.arange(16)[None] < ta
    out = interpolate_features(AudioFeatures(x, mask, 50.0), 7)
    expected = torch.arange(t, dtype=torch.float64) * (ta - 1) / (t - 1)
    torch.testing.assert_close(out.x[0, :, 0], expected)
    assert out.frame_rate == pytest.approx(50.0 * t / ta)  # estimate when fps is not given


def test_degenerate_lengths() -> None:
    x = torch.randn(3, 4, 2)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    out = interpolate_features(AudioFeatures(x, mask, 50.0), torch.tensor([1, 3, 0]), fps=30)
    assert out.x.shape == (3, 3, 2)
    torch.testing.assert_close(out.x[0, 0], x[0, 0])  # T = 1 reads frame 0
    torch.testing.assert_close(out.x[1], x[1, :1].expand(3, 2))  # Ta = 1 repeats its frame
    assert out.mask.sum(1).tolist() == [1, 3, 0] and torch.all(out.x[2] == 0)
    # Downsampling is supported too (more audio frames than motion frames is the usual case).
    down = interpolate_features(AudioFeatures(x[:1], mask[:1], 50.0), 2)
    torch.testing.assert_close(down.x[0], x[0, [0, 3]])


def test_interpolation_is_differentiable() -> None:
    x = torch.randn(2, 9, 3, requires_grad=True)
    mask = torch.ones(2, 9, dtype=torch.bool)
    interpolate_features(AudioFeatures(x, mask, 50.0), [5, 13]).x.sum().backward()
    # Upsampling 9 -> 13 reads every audio frame; the weights of each output frame sum to one.
    assert torch.all(x.grad[1] > 0)
    # Downsampling 9 -> 5 lands exactly on frames 0, 2, 4, 6, 8.
    assert x.grad[0, :, 0].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    torch.testing.assert_close(x.grad.sum(dim=1), torch.tensor([[5.0] * 3, [13.0] * 3]))


def test_interpolation_errors() -> None:
    x = torch.randn(2, 4, 2)
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    with pytest.raises(ValueError, match="no valid audio frames"):
        interpolate_features(AudioFeatures(x, mask, 50.0), [3, 2])
    ok = interpolate_features(AudioFeatures(x, mask, 50.0), [3, 0])
    assert ok.mask.sum(1).tolist() == [3, 0]
    with pytest.raises(ValueError, match="num_frames"):
        interpolate_features(AudioFeatures(x, mask, 50.0), [3])
    with pytest.raises(ValueError, match="non-negative"):
        interpolate_features(AudioFeatures(x, mask, 50.0), [3, -1])
    with pytest.raises(ValueError, match="fps"):
        interpolate_features(AudioFeatures(x, mask, 50.0), [3, 0], fps=0)


def test_features_validation() -> None:
    with pytest.raises(ValueError, match="bool"):
        AudioFeatures(torch.zeros(1, 2, 3), torch.ones(1, 2), 50.0)
    with pytest.raises(ValueError, match="mask has shape"):
        AudioFeatures(torch.zeros(1, 2, 3), torch.ones(1, 3, dtype=torch.bool), 50.0)
    with pytest.raises(ValueError, match=r"\[B, Ta, D\]"):
        AudioFeatures(torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool), 50.0)


def faceformer_biwi_mask(t: int, s: int) -> torch.Tensor:
    """FaceFormer's enc_dec_mask for BIWI (True = masked), written out for comparison."""
    mask = torch.ones(t, s)
    for i in range(t):
        mask[i, i * 2 : i * 2 + 2] = 0
    return mask == 1


@pytest.mark.parametrize(("t", "s"), [(5, 10), (5, 11), (1, 2), (7, 30)])
def test_biwi_mask_matches_faceformer(t: int, s: int) -> None:
    mask = biwi_alignment_mask(t, s)
    assert mask.shape == (t, s) and mask.dtype == torch.bool
    assert torch.equal(mask, ~faceformer_biwi_mask(t, s))
    assert mask.sum(1).tolist() == [2] * t


def test_biwi_mask_short_audio_has_no_empty_rows() -> None:
    mask = biwi_alignment_mask(4, 5)
    assert mask.int().tolist() == [[1, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1]]
    # Used as an attention mask it gives finite attention everywhere.
    scores = torch.randn(4, 5).masked_fill(~mask, float("-inf"))
    assert torch.isfinite(torch.softmax(scores, dim=-1)).all()
    assert biwi_alignment_mask(0, 3).shape == (0, 3)
    with pytest.raises(ValueError, match="num_audio_frames"):
        biwi_alignment_mask(3, 0)


def test_resample_features_reads_fixed_rate_positions() -> None:
    from audio.align import resample_features

    ramp = torch.arange(10, dtype=torch.float32)[None, :, None].repeat(2, 1, 3)  # value = audio frame index
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    out = resample_features(AudioFeatures(ramp, mask, frame_rate=50.0), [8, 8], fps=30)
    expected = torch.arange(8, dtype=torch.float32) * 50 / 30
    assert torch.allclose(out.x[0, :, 0], expected.clamp(max=9))
    assert torch.allclose(out.x[1, :, 0], expected.clamp(max=5))  # clamped to the last valid frame
    assert out.frame_rate == 30.0 and out.mask.all()


def test_resample_features_is_causal() -> None:
    """Frame t depends on audio frames <= ceil(t * rate / fps) only: a growing stream gives the same prefix."""
    from audio.align import resample_features

    x = torch.randn(1, 40, 4)
    full = resample_features(AudioFeatures(x, torch.ones(1, 40, dtype=torch.bool), 50.0), 24, fps=30).x
    for t in range(24):
        need = -(-t * 50 // 30) + 1
        part = AudioFeatures(x[:, :need], torch.ones(1, need, dtype=torch.bool), 50.0)
        assert torch.allclose(resample_features(part, t + 1, fps=30).x[0, t], full[0, t])
