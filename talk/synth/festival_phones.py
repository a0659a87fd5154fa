"""Festival / Flite phone segments -> ARPAbet, and the engines' segment lists -> a phone time line.

Festival's US English voices and every Flite voice speak the ``radio`` phone set: CMUdict's 39 phones in lower
case plus the reductions and allophones of TIMIT (``ax``, ``axr``, ``dx``, ``el``, ``em``, ``en``, ``hv``, ``nx``)
and the pauses ``pau``, ``h#`` and ``brth``. The engines report each segment with its end time (the Segment
relation), so every boundary of their audio is known exactly; a segment starts where the previous one ends.

The mapping follows CMUdict's own transcription where the two differ, as ``talk.synth.espeak_phones`` does:
the flap is T, the nasal flap N, a syllabic consonant is AH + consonant (its span shared, the vowel taking
``_VOWEL_WEIGHT`` parts to the consonant's one). Festival marks stress on the syllable, not the phone; callers
pass it along with each segment and it goes to the segment's (first) vowel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from talk.synth.phones import ARPABET_CONSONANTS, ARPABET_VOWELS, PAUSE, Phone, PhoneError, fill_silence

# fmt: off
RADIO_TO_ARPABET: Mapping[str, tuple[str, ...]] = {
    **{p.lower(): (p,) for p in ARPABET_VOWELS + ARPABET_CONSONANTS},
    "ax": ("AH",), "axr": ("ER",), "ix": ("IH",), "ux": ("UW",), "dx": ("T",), "nx": ("N",), "hv": ("HH",),
    "el": ("AH", "L"), "em": ("AH", "M"), "en": ("AH", "N"),
    "pau": (PAUSE,), "h#": (PAUSE,), "brth": (PAUSE,), "ssil": (PAUSE,), "sil": (PAUSE,),
}
# fmt: on
_VOWEL_WEIGHT = 1.5


class Segment(NamedTuple):
    """One segment as a Festival-family engine reports it.

    Args:
        name: Radio phone name (``"ax"``, ``"pau"``).
        end: End time in seconds from the start of the engine's audio.
        stress: Stress of the segment's syllable (``"0"``, ``"1"``, ``"2"``), or ``""`` when unknown.
    """

    name: str
    end: float
    stress: str = ""


def radio_to_arpabet(name: str, stress: str = "") -> tuple[str, ...]:
    """ARPAbet phones of one radio-set segment, the first vowel with ``stress`` appended.

    Args:
        name: Segment name, any case (``"el"``, ``"PAU"``).
        stress: CMUdict stress digit of the segment's syllable, or ``""``.

    Returns:
        e.g. ``("AH0", "L")`` for ``"el"`` with stress ``"0"``; ``("sil",)`` for pauses.

    Raises:
        PhoneError: The name is not in the radio phone set.
    """
    try:
        phones = RADIO_TO_ARPABET[name.strip().lower()]
    except KeyError:
        raise PhoneError(f"unknown Festival/Flite phone {name!r}; expected a radio phone set name") from None
    digit = stress if stress in ("0", "1", "2") else ""
    out, first = [], True
    for p in phones:
        if p in ARPABET_VOWELS:
            out.append(p + (digit if first else ("0" if digit else "")))
            first = False
        else:
            out.append(p)
    return tuple(out)


def segments_to_phones(
    segments: Sequence[Segment], duration: float, stress: bool = False, source: str = "engine output"
) -> list[Phone]:
    """Phone time line of an engine's Segment relation.

    Segment ``i`` lasts from the end of segment ``i - 1`` (0 for the first) to its own end. Phones past
    ``duration`` are clamped to it (a diphone voice may drop the second half of its final pause), and a gap
    before ``duration`` becomes a pause.

    Args:
        segments: In order, as the engine reports them.
        duration: Length of the engine's audio in seconds.
        stress: Keep stress digits on vowels (unknown stress is left off).
        source: What to name in error messages.

    Returns:
        Phones covering ``[0, duration]`` exactly, adjacent pauses merged.

    Raises:
        PhoneError: An unknown segment name, or end times that go backwards.
    """
    phones: list[Phone] = []
    start = 0.0
    for seg in segments:
        if seg.end < start - 1e-6:
            raise PhoneError(f"{source}: segment {seg.name} ends at {seg.end:.4f} s, before it starts")
        labels = radio_to_arpabet(seg.name, seg.stress if stress else "")
        weights = [_VOWEL_WEIGHT if lb.rstrip("012") in ARPABET_VOWELS else 1.0 for lb in labels]
        t = start
        for label, w in zip(labels, weights, strict=True):
            t_end = t + (seg.end - start) * w / sum(weights)
            phones.append(Phone(label, t, t_end))
            t = t_end
        start = max(start, seg.end)
    return fill_silence(phones, duration)


def transfer_stress(segments: Sequence[Segment], stressed: Sequence[str]) -> list[Segment]:
    """Gives ``segments`` the stress digits of a phone string of the same utterance (Flite's ``t2p`` output,
    vowels ``"iy1"``, unstressed vowels without a digit).

    The two sequences are matched name for name; when they differ (another phrasing), the segments keep no
    stress rather than a wrong one.

    Args:
        segments: The engine's segments, names without digits.
        stressed: Phone names of the same text, stressed vowels ending in a digit.
    """
    names = [s.rstrip("012") for s in stressed]
    if names != [s.name for s in segments]:
        return list(segments)
    out = []
    for seg, phone in zip(segments, stressed, strict=True):
        vowel = any(p.rstrip("012") in ARPABET_VOWELS for p in RADIO_TO_ARPABET.get(seg.name, ()))
        digit = phone[-1] if phone[-1:] in ("1", "2") else "0"
        out.append(Segment(seg.name, seg.end, digit if vowel else ""))
    return out
