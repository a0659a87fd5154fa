"""Lip-sync metrics on real speech with phone labels: bilabial closure, gap/phone correlation, silence stillness.

Inputs per utterance: a predicted animation ``[T, V, 3]`` at ``fps`` (frame ``t`` covers ``[t/fps, (t+1)/fps)``;
a phone overlaps frame ``t`` when their intervals intersect) and phone labels ``(label, start_s, end_s)`` in
ARPAbet upper case without stress digits, pauses as ``"sil"``. All gaps and speeds are reported in millimetres.

- **Lip gap** (``lip_gap``): per frame, the mean over the middle half of the matched upper / lower lip-edge pairs
  (ordered along the slit, as ``talk.synth.face.lip_pairs`` returns them) of the vertical (y) distance, upper
  minus lower; negative when the lips press into each other. The corners are left out because they touch at
  every mouth opening and would only dilute the figure (the synthetic generator calibrates contact the same way).
- **Open-vowel gap**: per open vowel (``OPEN_VOWELS``: AA AE AH AO AW AY), the maximum gap over the frames the
  vowel overlaps; the utterance's reference is the median of these maxima (robust to one badly aligned vowel).
- **Bilabial closure** (P, B, M): the minimum gap over the frames the phone overlaps, widened by
  ``widen_frames`` (default 1) on either side, because forced alignment is good to about a frame and the lips
  close slightly before the labelled closure; the bilabial is closed when that minimum is below
  ``closure_fraction`` (default 0.25) times the reference. Rate = closed / judged, pooled over all bilabials.
  An utterance without an open vowel has no reference: its rate is NaN, a ``LipSyncWarning`` says so, and its
  bilabials are left out of the pooled rate (they still count in the gap ratio).
- **Gap ratio**: mean open-vowel gap / max(mean bilabial minimum gap, ``gap_floor_mm`` = 0.5 mm): lips within
  half a millimetre count as touching, so a perfect closure scores the open-vowel gap in mm divided by 0.5.
- **Gap-phone correlation**: Pearson correlation between the gap and ``aperture_target`` (``APERTURE`` per phone at
  each frame centre, 0 where no phone covers it, smoothed by a 0.1 s Hann window for coarticulation) over the
  frames whose centre lies in the labelled span. NaN when either curve is constant. Pooled: mean over utterances.
- **Silence stillness**: over "sil" phones longer than ``min_silence_s`` (0.3 s), leading and trailing ones
  included, minus ``silence_margin_s`` (0.1 s) at both ends (where the mouth prepares for speech or relaxes
  after it), the mean over frame steps of ``|gap[t+1] - gap[t]| * fps`` (mm/s) and of the lip-region vertex
  speed (mean over its vertices, by default every lip pair, of ``||v[t+1] - v[t]|| * fps``). A step counts when both frame centres lie in
  the window; speech steps are those with both centres inside non-"sil" phones. The silence / speech ratio is
  lower for a stiller mouth in pauses. Pooled speeds weight each utterance by its duration of steps.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from talk.errors import UserError

PhoneLabel = tuple[str, float, float]  # (label, start_s, end_s); a NamedTuple Phone(label, start, end) fits

SILENCE = "sil"
OPEN_VOWELS: tuple[str, ...] = ("AA", "AE", "AH", "AO", "AW", "AY")
BILABIALS: tuple[str, ...] = ("P", "B", "M")
_MID_VOWELS = ("EH", "ER", "EY", "OW", "OY")
_CLOSE_VOWELS = ("IH", "IY", "UH", "UW")
_NARROW = ("F", "V", "W")  # labiodentals, and W's rounded narrow lips
_OTHERS = ("CH", "D", "DH", "G", "HH", "JH", "K", "L", "N", "NG", "R", "S", "SH", "T", "TH", "Y", "Z", "ZH")

# Relative lip aperture per phone (0 closed, 1 widest): the target the gap is correlated with.
APERTURE: Mapping[str, float] = {
    **dict.fromkeys(OPEN_VOWELS, 1.0),
    **dict.fromkeys(_MID_VOWELS, 0.6),
    **dict.fromkeys(_CLOSE_VOWELS, 0.35),
    **dict.fromkeys(_OTHERS, 0.25),
    **dict.fromkeys(_NARROW, 0.1),
    **dict.fromkeys(BILABIALS, 0.0),
    SILENCE: 0.0,
}
_EPS = 1e-6  # frames: phone times on frame boundaries must not reach the next frame through rounding


class LipSyncError(UserError, ValueError):
    """The animation or its phone labels cannot be scored."""


class LipSyncWarning(UserWarning):
    """An utterance lacks what one metric needs; that metric is NaN for it."""


@dataclass(frozen=True)
class LipSyncSettings:
    """The choices behind the metrics; every utterance pooled together must share them.

    Args:
        closure_fraction: A bilabial is closed when its minimum gap is below this times the open-vowel gap.
        widen_frames: Frames added on either side of a bilabial's window (alignment tolerance).
        gap_floor_mm: Floor of the mean bilabial gap in the gap ratio's denominator (mm).
        aperture_smooth_s: Hann window of the aperture target (seconds; coarticulation).
        min_silence_s: Silences must be longer than this to enter the stillness figures (seconds).
        silence_margin_s: Left out at both ends of each silence as transitions (seconds).
        gap_middle: Fraction of the lip pairs, centred along the slit, that the gap averages.
    """

    closure_fraction: float = 0.25
    widen_frames: int = 1
    gap_floor_mm: float = 0.5
    aperture_smooth_s: float = 0.1
    min_silence_s: float = 0.3
    silence_margin_s: float = 0.1
    gap_middle: float = 0.5

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value >= 0:
                raise LipSyncError(f"{name}={value} must be a non-negative number.")
        if not 0.0 < self.gap_middle <= 1.0:
            raise LipSyncError(
                f"gap_middle={self.gap_middle} must be in (0, 1]; 1.0 averages every lip pair."
            )
        if self.gap_floor_mm == 0:
            raise LipSyncError("gap_floor_mm must be positive: it guards the gap ratio's division.")
        if not self.silence_margin_s < self.min_silence_s / 2:
            raise LipSyncError(
                f"silence_margin_s={self.silence_margin_s} must be below half of min_silence_s."
            )


def lip_gap(vertices: np.ndarray, upper: np.ndarray, lower: np.ndarray, middle: float = 0.5) -> np.ndarray:
    """Vertical lip gap per frame: mean over the middle pairs of ``y[upper] - y[lower]`` (vertex units).

    Args:
        vertices: ``[T, V, 3]`` meshes, y up.
        upper: ``[n]`` upper-lip edge ids ordered along the slit (``talk.synth.face.lip_pairs``).
        lower: ``[n]`` matching lower-lip ids.
        middle: Fraction of the pairs kept, centred (``n // 4`` dropped at each end for 0.5, as the synthetic
            generator's contact calibration does); 1.0 keeps all, for pairs in no particular order.

    Returns:
        ``[T]`` float64 gap; negative where the lips press into each other.
    """
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 3 or v.shape[2] != 3:
        raise LipSyncError(f"vertices must be [T, V, 3], got {v.shape}.")
    up, lo = _pairs(upper, lower, v.shape[1])
    k = int(len(up) * (1.0 - middle) / 2)
    keep = slice(k, len(up) - k)
    return (v[:, up[keep], 1] - v[:, lo[keep], 1]).mean(axis=1)


def aperture_target(
    phones: Sequence[PhoneLabel], frames: int, fps: float, smooth_s: float = 0.1
) -> np.ndarray:
    """The phone-derived aperture ``[T]``: ``APERTURE`` at each frame centre, Hann-smoothed over ``smooth_s``.

    Frames whose centre no phone covers count as silence (0). The window spans ``round(smooth_s * fps)``
    frames, made odd, with weights ``np.hanning(n + 2)[1:-1]`` normalised (``[0.25, 0.5, 0.25]`` at 0.1 s and
    30 fps); the ends are padded with their own value.
    """
    labels, starts, ends = _parse(phones, frames, fps, "the utterance")
    owner = _owner(starts, ends, frames, fps)
    values = np.asarray([APERTURE[label] for label in labels] + [0.0])  # index -1: uncovered
    raw = values[owner]
    n = max(1, round(smooth_s * fps))
    n += 1 - n % 2
    weights = np.hanning(n + 2)[1:-1]
    weights /= weights.sum()
    return np.convolve(np.pad(raw, n // 2, mode="edge"), weights, mode="valid")


@dataclass(frozen=True)
class UtteranceLipSync:
    """Lip-sync figures of one utterance (gaps in mm, speeds in mm/s; NaN where undefined).

    ``bilabials`` lists the P/B/M labels in order, with each one's minimum gap over its widened window and
    whether it closed (``bilabial_closed`` is empty when no open vowel gives a reference); ``open_vowel_gaps_mm``
    holds each open vowel's maximum gap and ``open_vowel_gap_mm`` their median. The speeds are means over the
    ``silence_steps`` / ``speech_steps`` frame steps; ``*_gap_speed`` is ``|d gap / dt|``, ``*_lip_speed`` the
    lip-region vertex speed. The rest follows the module docstring.
    """

    name: str
    frames: int
    fps: float
    bilabials: tuple[str, ...]
    bilabial_min_gaps_mm: tuple[float, ...]
    bilabial_closed: tuple[bool, ...]
    open_vowel_gaps_mm: tuple[float, ...]
    open_vowel_gap_mm: float
    bilabial_closure_rate: float
    gap_ratio: float
    gap_phone_corr: float
    silence_steps: int
    speech_steps: int
    silence_gap_speed_mm_s: float
    speech_gap_speed_mm_s: float
    silence_lip_speed_mm_s: float
    speech_lip_speed_mm_s: float
    settings: LipSyncSettings

    @property
    def gap_speed_ratio(self) -> float:
        """Silence / speech gap speed (lower = stiller in pauses)."""
        return _div(self.silence_gap_speed_mm_s, self.speech_gap_speed_mm_s)

    @property
    def lip_speed_ratio(self) -> float:
        """Silence / speech lip-vertex speed."""
        return _div(self.silence_lip_speed_mm_s, self.speech_lip_speed_mm_s)


def evaluate_utterance(
    vertices: np.ndarray,
    fps: float,
    phones: Sequence[PhoneLabel],
    upper: np.ndarray,
    lower: np.ndarray,
    name: str,
    scale_to_mm: float = 1000.0,
    lip_region: np.ndarray | None = None,
    settings: LipSyncSettings = LipSyncSettings(),
) -> UtteranceLipSync:
    """Scores one predicted animation against its phone labels (definitions in the module docstring).

    Args:
        vertices: ``[T, V, 3]`` predicted meshes, y up.
        fps: Frame rate of ``vertices``.
        phones: ``(label, start_s, end_s)`` per phone; may end up to one frame after the animation.
        upper: ``[n]`` upper-lip edge ids ordered along the slit (``talk.synth.face.lip_pairs``).
        lower: ``[n]`` matching lower-lip ids.
        name: Utterance name, used in reports and errors.
        scale_to_mm: Millimetres per vertex unit (1000 for metres).
        lip_region: Vertex ids whose speed is measured; default the lip pairs (``upper`` and ``lower``).
        settings: Metric choices.

    Raises:
        LipSyncError: Bad shapes or ids, no phones, unknown labels, or phones past the animation.
    """
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 3 or v.shape[2] != 3 or len(v) == 0 or not np.isfinite(v).all():
        raise LipSyncError(f"vertices of '{name}' must be finite [T, V, 3] with T >= 1, got {v.shape}.")
    if not (math.isfinite(fps) and fps > 0 and scale_to_mm > 0):
        raise LipSyncError(f"fps={fps} and scale_to_mm={scale_to_mm} of '{name}' must be positive.")
    frames = len(v)
    labels, starts, ends = _parse(phones, frames, fps, f"'{name}'")
    up, lo = _pairs(upper, lower, v.shape[1])
    region = np.union1d(up, lo) if lip_region is None else _ids(lip_region, v.shape[1], "lip_region")
    gap = lip_gap(v, up, lo, settings.gap_middle) * scale_to_mm

    kinds = np.asarray(labels)
    is_open, is_bilabial = np.isin(kinds, OPEN_VOWELS), np.isin(kinds, BILABIALS)
    vowel_gaps = tuple(
        float(gap[_span(starts[i], ends[i], fps, frames, 0)].max()) for i in np.flatnonzero(is_open)
    )
    widen = settings.widen_frames
    min_gaps = tuple(
        float(gap[_span(starts[i], ends[i], fps, frames, widen)].min()) for i in np.flatnonzero(is_bilabial)
    )
    reference = float(np.median(vowel_gaps)) if vowel_gaps else math.nan
    closed = tuple(g < settings.closure_fraction * reference for g in min_gaps) if vowel_gaps else ()
    if min_gaps and not vowel_gaps:
        warnings.warn(
            f"'{name}' has no open vowel ({' '.join(OPEN_VOWELS)}), so its bilabial closures are not judged.",
            LipSyncWarning,
            stacklevel=2,
        )

    target = aperture_target(phones, frames, fps, settings.aperture_smooth_s)
    centres = (np.arange(frames) + 0.5) / fps
    labelled = (centres >= starts.min()) & (centres < ends.max())
    corr = pearson(gap[labelled], target[labelled])

    owner = _owner(starts, ends, frames, fps)
    speech = (owner >= 0) & (kinds[owner] != SILENCE)  # owner -1 reads the last label, masked by owner >= 0
    silence = np.zeros(frames, dtype=bool)
    for s, e in zip(starts[kinds == SILENCE], ends[kinds == SILENCE], strict=True):
        if e - s > settings.min_silence_s + _EPS / fps:  # 1.5 - 1.2 must not pass as longer than 0.3
            silence |= (centres >= s + settings.silence_margin_s) & (centres < e - settings.silence_margin_s)
    gap_speed = np.abs(np.diff(gap)) * fps
    lip_speed = np.linalg.norm(np.diff(v[:, region], axis=0), axis=-1).mean(axis=1) * fps * scale_to_mm
    in_sil, in_speech = silence[:-1] & silence[1:], speech[:-1] & speech[1:]
    return UtteranceLipSync(
        name=name,
        frames=frames,
        fps=float(fps),
        bilabials=tuple(kinds[is_bilabial].tolist()),
        bilabial_min_gaps_mm=min_gaps,
        bilabial_closed=tuple(bool(c) for c in closed),
        open_vowel_gaps_mm=vowel_gaps,
        open_vowel_gap_mm=reference,
        bilabial_closure_rate=_div(sum(closed), len(closed)),
        gap_ratio=_gap_ratio(vowel_gaps, min_gaps, settings.gap_floor_mm),
        gap_phone_corr=corr,
        silence_steps=int(in_sil.sum()),
        speech_steps=int(in_speech.sum()),
        silence_gap_speed_mm_s=_mean(gap_speed[in_sil]),
        speech_gap_speed_mm_s=_mean(gap_speed[in_speech]),
        silence_lip_speed_mm_s=_mean(lip_speed[in_sil]),
        speech_lip_speed_mm_s=_mean(lip_speed[in_speech]),
        settings=settings,
    )


def _parse(
    phones: Sequence[PhoneLabel], frames: int, fps: float, what: str
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Checked labels, start and end times of the phones."""
    if len(phones) == 0:
        raise LipSyncError(f"the phone list of {what} is empty; pass its (label, start_s, end_s) labels.")
    labels, starts, ends = [], [], []
    for label, start, end in phones:
        if label not in APERTURE:
            raise LipSyncError(
                f"phone {label!r} of {what} is not an ARPAbet phone or 'sil'; use upper case without stress "
                "digits ('AA1' -> 'AA') and map pauses to 'sil'."
            )
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start <= end):
            raise LipSyncError(f"phone {label!r} of {what} spans {start}..{end} s; need 0 <= start <= end.")
        labels.append(label)
        starts.append(float(start))
        ends.append(float(end))
    last = max(ends)
    if last * fps > frames + 1 + _EPS:
        raise LipSyncError(
            f"the phones of {what} end at {last:.3f} s, more than a frame after its {frames} frames at {fps:g} fps "
            f"({frames / fps:.3f} s); animate the whole utterance or trim the labels."
        )
    return labels, np.asarray(starts), np.asarray(ends)


def _span(start: float, end: float, fps: float, frames: int, widen: int) -> slice:
    """Frames that ``[start, end)`` overlaps (at least the one it starts in), widened, clipped to the clip."""
    first = math.floor(start * fps + _EPS)
    last = max(math.ceil(end * fps - _EPS) - 1, first)
    first = min(max(first - widen, 0), frames - 1)
    return slice(first, max(min(last + widen, frames - 1), first) + 1)


def _owner(starts: np.ndarray, ends: np.ndarray, frames: int, fps: float) -> np.ndarray:
    """``[T]`` index of the phone whose interval holds each frame centre (the later one on overlap), else -1."""
    centres = (np.arange(frames) + 0.5) / fps
    owner = np.full(frames, -1)
    for i, (s, e) in enumerate(zip(starts, ends, strict=True)):
        owner[np.searchsorted(centres, s) : np.searchsorted(centres, e)] = i
    return owner


def _ids(ids: np.ndarray, n_vertices: int, what: str) -> np.ndarray:
    out = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(out) == 0 or out.min() < 0 or out.max() >= n_vertices:
        raise LipSyncError(f"{what} must hold vertex ids in [0, {n_vertices}); check it matches the mesh.")
    return out


def _pairs(upper: np.ndarray, lower: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    up, lo = _ids(upper, n_vertices, "upper"), _ids(lower, n_vertices, "lower")
    if len(up) != len(lo):
        raise LipSyncError(f"upper and lower lip ids must pair up, got {len(up)} and {len(lo)}.")
    return up, lo


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN for fewer than two samples or a constant series."""
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def _gap_ratio(vowel_gaps: Sequence[float], min_gaps: Sequence[float], floor_mm: float) -> float:
    """Mean open-vowel gap / max(mean bilabial minimum gap, floor); NaN when either set is empty."""
    if not vowel_gaps or not min_gaps:
        return math.nan
    return float(np.mean(vowel_gaps)) / max(float(np.mean(min_gaps)), floor_mm)


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else math.nan


def _div(a: float, b: float) -> float:
    return a / b if b else math.nan
