"""Lip-sync figures pooled over a set of utterances (:func:`pool` of :func:`talk.lipsync.evaluate_utterance`
results): closure over bilabials, gaps over phones, speeds over time."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

from talk.lipsync import LipSyncError, LipSyncSettings, UtteranceLipSync, _div, _gap_ratio, _mean


@dataclass(frozen=True)
class LipSyncReport:
    """Lip-sync figures pooled over a set of utterances (gaps in mm, speeds in mm/s; NaN where undefined).

    Each bilabial weighs the same in ``bilabial_closure_rate`` (closed / judged, judged = in utterances with an
    open vowel); ``open_vowel_gap_mm`` and ``bilabial_min_gap_mm`` average all open vowels and all bilabials of
    the set and ``gap_ratio`` divides them (denominator floored at ``gap_floor_mm``); ``gap_phone_corr`` is the
    mean over the ``gap_phone_corr_utterances`` where it is defined; the speeds are means weighted by the
    ``silence_s`` / ``speech_s`` each utterance contributes.
    """

    utterances: int
    bilabials: int
    bilabials_judged: int
    bilabials_closed: int
    bilabial_closure_rate: float
    open_vowels: int
    open_vowel_gap_mm: float
    bilabial_min_gap_mm: float
    gap_ratio: float
    gap_phone_corr: float
    gap_phone_corr_utterances: int
    silence_s: float
    speech_s: float
    silence_gap_speed_mm_s: float
    speech_gap_speed_mm_s: float
    silence_lip_speed_mm_s: float
    speech_lip_speed_mm_s: float
    settings: LipSyncSettings

    def as_dict(self) -> dict[str, float | int | None]:
        """JSON-friendly figures with units in the key names (and the settings); NaN becomes None."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "settings"}
        out["silence_speech_gap_speed_ratio"] = _div(self.silence_gap_speed_mm_s, self.speech_gap_speed_mm_s)
        out["silence_speech_lip_speed_ratio"] = _div(self.silence_lip_speed_mm_s, self.speech_lip_speed_mm_s)
        out.update(asdict(self.settings))
        return {k: (None if isinstance(x, float) and math.isnan(x) else x) for k, x in out.items()}


def pool(utterances: Sequence[UtteranceLipSync]) -> LipSyncReport:
    """Pools per-utterance figures: closure over bilabials, gaps over phones, speeds over time.

    Raises:
        LipSyncError: No utterances, or utterances scored with different settings.
    """
    if not utterances:
        raise LipSyncError("no utterances to pool; evaluate at least one with evaluate_utterance.")
    settings = utterances[0].settings
    if any(u.settings != settings for u in utterances):
        raise LipSyncError("the utterances were scored with different LipSyncSettings; score them all alike.")
    vowels = [g for u in utterances for g in u.open_vowel_gaps_mm]
    min_gaps = [g for u in utterances for g in u.bilabial_min_gaps_mm]
    judged = sum(len(u.bilabial_closed) for u in utterances)
    closed = sum(sum(u.bilabial_closed) for u in utterances)
    corrs = [u.gap_phone_corr for u in utterances if not math.isnan(u.gap_phone_corr)]
    return LipSyncReport(
        utterances=len(utterances),
        bilabials=len(min_gaps),
        bilabials_judged=judged,
        bilabials_closed=closed,
        bilabial_closure_rate=_div(closed, judged),
        open_vowels=len(vowels),
        open_vowel_gap_mm=_mean(np.asarray(vowels)),
        bilabial_min_gap_mm=_mean(np.asarray(min_gaps)),
        gap_ratio=_gap_ratio(vowels, min_gaps, settings.gap_floor_mm),
        gap_phone_corr=_mean(np.asarray(corrs)),
        gap_phone_corr_utterances=len(corrs),
        silence_s=sum(u.silence_steps / u.fps for u in utterances),
        speech_s=sum(u.speech_steps / u.fps for u in utterances),
        silence_gap_speed_mm_s=_time_weighted(utterances, "silence_gap_speed_mm_s", "silence_steps"),
        speech_gap_speed_mm_s=_time_weighted(utterances, "speech_gap_speed_mm_s", "speech_steps"),
        silence_lip_speed_mm_s=_time_weighted(utterances, "silence_lip_speed_mm_s", "silence_steps"),
        speech_lip_speed_mm_s=_time_weighted(utterances, "speech_lip_speed_mm_s", "speech_steps"),
        settings=settings,
    )


def _time_weighted(utterances: Sequence[UtteranceLipSync], name: str, steps: str) -> float:
    """Mean of a per-utterance speed weighted by the duration of its frame steps (``steps / fps``)."""
    w = [getattr(u, steps) / u.fps for u in utterances]
    total = sum(w)
    return (
        sum(getattr(u, name) * t for u, t in zip(utterances, w, strict=True) if t) / total
        if total
        else math.nan
    )
