"""Aligning audio feature frames to motion frames: frame counts, linear interpolation, BIWI attention masks."""

from __future__ import annotations

from fractions import Fraction

import torch
from torch import Tensor

from audio.features import AudioFeatures


def _as_fraction(value: float, name: str) -> Fraction:
    """Exact rational form of a rate; limit_denominator turns 29.97 or 30000/1001 floats into their intended ratio."""
    if isinstance(value, bool) or not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}.")
    return Fraction(value).limit_denominator(100_000)


def motion_frame_count(num_samples: int, sample_rate: int, fps: float) -> int:
    """Number of motion frames that cover ``num_samples`` audio samples.

    Convention: motion frame t spans the time interval ``[t / fps, (t + 1) / fps)``, and a frame counts only
    when it lies entirely inside the audio, so ``T = floor(num_samples * fps / sample_rate)``. The product is
    computed in exact rational arithmetic, so a 2 s clip at 16 kHz gives exactly 60 frames at 30 fps (no float
    round-off to 59), and ``T / fps <= duration``: a rendered video never outlasts its audio. For example 16000
    samples at 16 kHz give 25 / 30 / 60 frames at 25 / 30 / 60 fps, and 16001 samples still give 30 at 30 fps.

    Args:
        num_samples: Audio length N in samples (>= 0).
        sample_rate: Audio sample rate in Hz (> 0).
        fps: Motion frame rate (> 0); non-integer rates such as 29.97 are accepted.

    Returns:
        T, the number of motion frames.
    """
    if isinstance(num_samples, bool) or int(num_samples) != num_samples or num_samples < 0:
        raise ValueError(f"num_samples must be a non-negative integer, got {num_samples!r}.")
    rate = _as_fraction(sample_rate, "sample_rate")
    # int() of a non-negative Fraction floors it exactly.
    return int(Fraction(int(num_samples)) * _as_fraction(fps, "fps") / rate)


def interpolate_features(
    features: AudioFeatures, num_frames: Tensor | list[int] | int, fps: float | None = None
) -> AudioFeatures:
    """Resample each sequence's valid audio frames to its own number of motion frames by linear interpolation.

    This is the FaceFormer / VOCASET convention (``F.interpolate(..., mode="linear", align_corners=True)``):
    with ``Ta_b`` valid audio frames and ``T_b`` motion frames, motion frame t reads the audio at fractional
    position ``t * (Ta_b - 1) / (T_b - 1)``, so the first and last motion frames coincide with the first and
    last valid audio frames and padding frames are never read. ``T_b == 1`` reads audio frame 0; ``Ta_b == 1``
    repeats its single frame. The operation is differentiable with respect to ``features.x``.

    Args:
        features: Audio features x [B, Ta, D] with mask [B, Ta].
        num_frames: Motion frame count per sequence: a [B] tensor, a list of B ints, or one int for all.
        fps: Motion frame rate stored in the result. None estimates it as the mean over the batch of
            ``features.frame_rate * T_b / Ta_b`` (prefer passing the true fps).

    Returns:
        AudioFeatures with x [B, max(T_b), D] (zero beyond T_b), mask True on the first T_b frames of row b.
    """
    x, mask = features.x, features.mask
    batch, _, dim = x.shape
    if isinstance(num_frames, int):
        num_frames = [num_frames] * batch
    counts = torch.as_tensor(num_frames, device=x.device)
    if counts.shape != (batch,) or counts.is_floating_point():
        raise ValueError(f"num_frames must be an int or hold {batch} integers, got {num_frames!r}.")
    counts = counts.long()
    if bool((counts < 0).any()):
        raise ValueError(f"num_frames must be non-negative, got {counts.tolist()}.")
    src = mask.sum(dim=1)  # Ta_b, [B]
    if bool(((src == 0) & (counts > 0)).any()):
        raise ValueError(
            f"Cannot interpolate a sequence with no valid audio frames to motion frames (audio frames "
            f"{src.tolist()}, motion frames {counts.tolist()})."
        )
    if fps is not None:
        _as_fraction(fps, "fps")  # validates
        frame_rate = float(fps)
    else:
        ratios = counts.double() / src.clamp(min=1).double()
        frame_rate = (
            features.frame_rate * float(ratios[counts > 0].mean()) if bool((counts > 0).any()) else 1.0
        )

    out_len = int(counts.max()) if batch > 0 else 0
    t = torch.arange(out_len, device=x.device, dtype=torch.float64)[None, :]  # [1, T]
    # align_corners=True: t * (Ta - 1) / (T - 1), with T == 1 mapping to position 0. float64 positions keep
    # exact hits on integer positions for long sequences (e.g. 10 min at 60 fps).
    scale = (src - 1).clamp(min=0).double() / (counts - 1).clamp(min=1).double()  # [B]
    return _lerp(x, src, counts, t * scale[:, None], frame_rate)


def _lerp(x: Tensor, src: Tensor, counts: Tensor, pos: Tensor, frame_rate: float) -> AudioFeatures:
    """Linear read of ``x [B, Ta, D]`` at fractional positions ``pos [B, T]`` clamped to each row's valid frames."""
    batch, _, dim = x.shape
    out_len = pos.shape[1]
    last = (src - 1).clamp(min=0)[:, None]
    pos = torch.minimum(pos, last.double())
    lo = torch.minimum(pos.floor().long(), last)
    hi = torch.minimum(lo + 1, last)
    w = (pos - lo.double()).clamp(0.0, 1.0).to(x.dtype)[..., None]  # [B, T, 1]
    x_lo = torch.gather(x, 1, lo[..., None].expand(batch, out_len, dim))
    x_hi = torch.gather(x, 1, hi[..., None].expand(batch, out_len, dim))
    y = x_lo * (1 - w) + x_hi * w
    out_mask = torch.arange(out_len, device=x.device)[None] < counts[:, None]  # [B, T]
    y = y * out_mask[..., None].to(y.dtype)
    return AudioFeatures(x=y, mask=out_mask, frame_rate=frame_rate)


def resample_features(
    features: AudioFeatures, num_frames: Tensor | list[int] | int, fps: float
) -> AudioFeatures:
    """Fixed-rate linear resampling: motion frame t reads the audio at time ``t / fps``.

    Unlike :func:`interpolate_features`, the position of frame t (``t * frame_rate / fps`` audio frames, clamped
    to the last valid frame) does not depend on the sequence length, so it is causal and streamable: frame t
    needs audio frames up to ``ceil(t * frame_rate / fps)`` only, and encoding a growing stream gives the same
    features as encoding the whole file (used by the flagship model, whose ``stream()`` must equal
    ``generate()``). The two conventions differ by less than one audio frame over a sequence.

    Args:
        features: Audio features x [B, Ta, D] with mask [B, Ta].
        num_frames: Motion frame count per sequence: a [B] tensor, a list of B ints, or one int for all.
        fps: Motion frame rate.

    Returns:
        AudioFeatures with x [B, max(T_b), D] (zero beyond T_b), mask True on the first T_b frames of row b.
    """
    x, mask = features.x, features.mask
    batch = x.shape[0]
    rate = _as_fraction(fps, "fps")
    if isinstance(num_frames, int):
        num_frames = [num_frames] * batch
    counts = torch.as_tensor(num_frames, device=x.device)
    if counts.shape != (batch,) or counts.is_floating_point() or bool((counts < 0).any()):
        raise ValueError(
            f"num_frames must be an int or hold {batch} non-negative integers, got {num_frames!r}."
        )
    counts = counts.long()
    src = mask.sum(dim=1)
    if bool(((src == 0) & (counts > 0)).any()):
        raise ValueError(
            f"Cannot resample a sequence with no valid audio frames (audio frames {src.tolist()})."
        )
    out_len = int(counts.max()) if batch > 0 else 0
    t = torch.arange(out_len, device=x.device, dtype=torch.float64)[None, :].expand(batch, out_len)
    return _lerp(x, src, counts, t * (features.frame_rate / float(rate)), float(rate))


def biwi_alignment_mask(
    num_motion_frames: int, num_audio_frames: int, device: torch.device | None = None
) -> Tensor:
    """Cross-attention mask of the FaceFormer BIWI convention (50 Hz audio, 25 fps motion).

    Motion frame t may attend audio frames 2t and 2t + 1 only (True = allowed). When the audio is shorter than
    ``2 * num_motion_frames`` frames, a motion frame whose two frames are both missing attends the last audio
    frame instead, so that no row is empty (an all-masked row would make softmax return NaN).

    Args:
        num_motion_frames: T, number of motion frames (>= 0).
        num_audio_frames: Ta, number of audio frames (>= 1).
        device: Device of the returned mask.

    Returns:
        Bool mask [T, Ta], True where motion frame t may attend audio frame s.
    """
    if int(num_motion_frames) != num_motion_frames or num_motion_frames < 0:
        raise ValueError(f"num_motion_frames must be a non-negative integer, got {num_motion_frames!r}.")
    if int(num_audio_frames) != num_audio_frames or num_audio_frames < 1:
        raise ValueError(f"num_audio_frames must be a positive integer, got {num_audio_frames!r}.")
    t = torch.arange(int(num_motion_frames), device=device)[:, None]  # [T, 1]
    s = torch.arange(int(num_audio_frames), device=device)[None, :]  # [1, Ta]
    allowed = (s == 2 * t) | (s == 2 * t + 1)
    empty = 2 * t >= num_audio_frames  # [T, 1], rows with no frame of their own
    return allowed | (empty & (s == num_audio_frames - 1))
