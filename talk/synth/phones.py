"""Phone time lines of real and TTS speech, and their conversion to synthetic-inventory utterances.

A phone time line is a list of :class:`Phone` (ARPAbet label, start and end in seconds) as produced by a TTS
engine that reports its phone timings (``talk.synth.tts``), by forced alignment of a recording
(``talk.synth.aligner``) or read from HTS / Festival label files (:func:`read_lab`). Labels follow CMUdict's
39-phone set, upper case, with pauses as ``"sil"``; vowels carry CMUdict's stress digit (0, 1, 2) only where
the caller asks for stress and the source knows it.

:func:`to_utterance` maps such a time line onto the synthetic phoneme ``INVENTORY`` so that real timings drive
``talk.synth.articulation.build_trajectory`` unchanged.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from talk.errors import UserError
from talk.synth.phonemes import INVENTORY, VOWELS, Segment, Utterance

# CMUdict's 39 phones (stress digits removed) and the pause.
ARPABET_VOWELS: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW",
)  # fmt: skip
ARPABET_CONSONANTS: tuple[str, ...] = (
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH", "T", "TH",
    "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
PAUSE = "sil"
PHONE_SET: tuple[str, ...] = ARPABET_VOWELS + ARPABET_CONSONANTS + (PAUSE,)

# Variants of the Festival (radio), HTS and TIMIT phone sets folded onto CMUdict's symbols, so that labels of
# every source compare symbol for symbol (CMUdict writes the syllabic consonants as AH0 + consonant and the
# flap as T; one label cannot become two, so the syllabic ones keep their consonant).
ALIASES: Mapping[str, str] = {
    "AX": "AH", "AXR": "ER", "IX": "IH", "UX": "UW", "AX-H": "AH", "DX": "T", "NX": "N", "HV": "HH",
    "EL": "L", "EM": "M", "EN": "N", "ENG": "NG",
}  # fmt: skip
PAUSE_LABELS: frozenset[str] = frozenset({"SIL", "PAU", "SP", "H#", "<SIL>", "SILENCE", "_", "#"})

# ARPAbet -> synthetic inventory: (symbol, share of the phone's duration). The inventory has no diphthongs,
# affricates, dental fricatives, velar nasal or ZH; each becomes the inventory phoneme whose visible gesture is
# nearest, or a short sequence that reproduces the movement:
#   AW -> AA UH, AY -> AA IH, EY -> EH IH, OY -> AO IH   (IPA onset + offset; the glide gets 40 %)
#   CH -> T SH, JH -> D SH                               (stop closure, then the rounded postalveolar release)
#   ZH -> SH                                             (same lip rounding; voicing is invisible)
#   TH -> T, DH -> D    (slightly open jaw, neutral lips: the sibilants S/Z would clench the teeth and spread
#                        the lips, which a dental fricative does not do)
#   NG -> N             (a nasal with the same jaw; tongue place is hidden)
# Every other CMUdict phone has an inventory phoneme of the same name. Stress goes to the first vowel part.
TO_INVENTORY: Mapping[str, tuple[tuple[str, float], ...]] = {
    **{p: ((p, 1.0),) for p in PHONE_SET if p in INVENTORY},
    "AW": (("AA", 0.6), ("UH", 0.4)),
    "AY": (("AA", 0.6), ("IH", 0.4)),
    "EY": (("EH", 0.6), ("IH", 0.4)),
    "OY": (("AO", 0.6), ("IH", 0.4)),
    "CH": (("T", 0.4), ("SH", 0.6)),
    "JH": (("D", 0.4), ("SH", 0.6)),
    "ZH": (("SH", 1.0),),
    "TH": (("T", 1.0),),
    "DH": (("D", 1.0),),
    "NG": (("N", 1.0),),
}

# Label times are checked against each other with this slack (seconds): 100 ns label units and decimal seconds
# both round-trip far inside it.
_TIME_TOL = 1e-4


class PhoneError(UserError, ValueError):
    """A phone label or time line is unreadable, unknown or out of order."""


class Phone(NamedTuple):
    """One phone on a time line.

    Args:
        label: ARPAbet symbol of CMUdict's 39-phone set, upper case, no stress digit unless stress was asked
            for (then vowels end in 0, 1 or 2); pauses are ``"sil"``.
        start: Start in seconds from the beginning of the audio.
        end: End in seconds (>= start).
    """

    label: str
    start: float
    end: float


def normalize_label(label: str, stress: bool = False) -> str:
    """Maps a phone label of CMUdict, Festival, HTS or TIMIT spelling to this module's convention.

    Args:
        label: e.g. ``"ax"``, ``"AH0"``, ``"pau"``, ``"hh"``.
        stress: Keep a vowel's stress digit when the label has one.

    Returns:
        The CMUdict symbol (``"AH"``, or ``"AH0"`` with ``stress``) or ``"sil"``.

    Raises:
        PhoneError: The label is not a known phone or pause.
    """
    text = label.strip().upper()
    digit = text[-1] if len(text) > 1 and text[-1] in "012" else ""
    base = text[:-1] if digit else text
    base = ALIASES.get(base, base)
    if base in PAUSE_LABELS:
        return PAUSE
    if base not in PHONE_SET:
        raise PhoneError(
            f"unknown phone label {label!r}; expected CMUdict ARPAbet (AA, HH, ...) or a pause (sil, pau, sp)"
        )
    return base + digit if stress and digit and base in ARPABET_VOWELS else base


def strip_stress(label: str) -> str:
    """The label without its stress digit (``"AY1"`` -> ``"AY"``)."""
    return label[:-1] if len(label) > 1 and label[-1] in "012" else label


def check_order(phones: Sequence[Phone], source: str = "phones") -> None:
    """Raises :class:`PhoneError` unless the phones are in time order without overlaps.

    Args:
        phones: The time line.
        source: What to name in the message (a file path, "TTS output", ...).
    """
    prev_end = 0.0
    for i, p in enumerate(phones):
        if not (np.isfinite(p.start) and np.isfinite(p.end)) or p.start < -_TIME_TOL or p.end < p.start:
            raise PhoneError(f"{source}: phone {i} ({p.label}) has invalid times {p.start:.4f}-{p.end:.4f} s")
        if p.start < prev_end - _TIME_TOL:
            raise PhoneError(
                f"{source}: phone {i} ({p.label}) starts at {p.start:.4f} s, before the previous phone ends "
                f"({prev_end:.4f} s); phones must be in time order without overlaps"
            )
        prev_end = p.end


def covers(phones: Sequence[Phone], duration: float, tol: float = 0.01) -> bool:
    """Whether the phones tile ``[0, duration]``: in order, no gap or overlap over ``tol`` seconds, the first
    starting within ``tol`` of 0 and the last ending within ``tol`` of ``duration``."""
    if not phones:
        return False
    if abs(phones[0].start) > tol or abs(phones[-1].end - duration) > tol:
        return False
    return all(p.end >= p.start for p in phones) and all(
        abs(b.start - a.end) <= tol for a, b in zip(phones[:-1], phones[1:], strict=True)
    )


def fill_silence(phones: Sequence[Phone], duration: float) -> list[Phone]:
    """Clamps phones to ``[0, duration]``, fills every gap with ``"sil"`` and merges adjacent pauses.

    Args:
        phones: In time order (see :func:`check_order`).
        duration: Length of the audio in seconds.

    Returns:
        Phones that cover ``[0, duration]`` exactly.
    """
    out: list[Phone] = []
    t = 0.0

    def put(label: str, start: float, end: float) -> None:
        if end - start <= 1e-9:
            return
        if out and label == PAUSE and out[-1].label == PAUSE:
            out[-1] = Phone(PAUSE, out[-1].start, end)
        else:
            out.append(Phone(label, start, end))

    for p in phones:
        start, end = min(max(p.start, t), duration), min(max(p.end, 0.0), duration)
        put(PAUSE, t, start)
        put(p.label, start, end)
        t = max(t, end)
    put(PAUSE, t, duration)
    return out


def _lab_times(fields: list[list[str]]) -> float:
    """Seconds per label time unit: 100 ns for HTS (integers, full-context, or larger than 1000), else 1."""
    if any("-" in f[2] and "+" in f[2] for f in fields):
        return 1e-7
    times = [v for f in fields for v in f[:2]]
    if all(re.fullmatch(r"\d+", v) for v in times) and max(int(v) for v in times) > 1000:
        return 1e-7
    return 1.0


def _hts_stress(context: str) -> str:
    """CMUdict stress digit of a full-context label's current syllable (its /B: field), or ''."""
    m = re.search(r"/B:([01x])", context)
    return "" if m is None or m.group(1) == "x" else m.group(1)


def read_lab(path: str | Path, stress: bool = False) -> list[Phone]:
    """Reads a phone label file.

    Three layouts are recognised: HTS full-context labels (``start end ctx`` in 100 ns units, the current phone
    between ``-`` and ``+`` of ``ctx``), simple ``start end phone`` labels (seconds, or 100 ns units when all
    times are integers and the largest exceeds 1000 as in HTS mono labels), and Festival / xwaves ``.lab`` files
    (a header ending in a ``#`` line, then ``end_time colour phone``). Pause labels (``pau``, ``sil``, ``h#``,
    ...) become ``"sil"`` and Festival/TIMIT variants are folded onto CMUdict (see ``ALIASES``).

    Args:
        path: The label file.
        stress: Keep vowel stress: the digit written in simple labels, the current syllable's stress flag
            (``/B:`` field) of full-context labels.

    Raises:
        PhoneError: The file is missing or unreadable, a label is unknown, or the phones are out of order.
    """
    path = Path(path)
    try:
        lines = [ln.split() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError as e:
        raise PhoneError(f"cannot read label file {path}: {e.strerror or e}") from e
    lines = [ln for ln in lines if ln]
    xwaves = [i for i, ln in enumerate(lines) if ln == ["#"]]
    fields: list[list[str]] = []
    if xwaves:
        prev = "0"
        for ln in lines[xwaves[0] + 1 :]:
            if len(ln) < 3:
                raise PhoneError(
                    f"{path}: unreadable line {' '.join(ln)!r}; expected 'end_time colour phone'"
                )
            fields.append([prev, ln[0], ln[2]])
            prev = ln[0]
    else:
        for ln in lines:
            if len(ln) != 3:
                raise PhoneError(f"{path}: unreadable line {' '.join(ln)!r}; expected 'start end phone'")
            fields.append(ln)
    if not fields:
        raise PhoneError(f"{path}: no phone labels found")
    unit = _lab_times(fields)
    phones: list[Phone] = []
    for start, end, name in fields:
        try:
            t0, t1 = float(start) * unit, float(end) * unit
        except ValueError:
            raise PhoneError(f"{path}: unreadable times {start!r} {end!r}; expected numbers") from None
        digit = ""
        if "-" in name and "+" in name:
            m = re.search(r"-([^+\-]+)\+", name)
            if m is None:
                raise PhoneError(f"{path}: cannot find the current phone (between '-' and '+') in {name!r}")
            digit, name = _hts_stress(name), m.group(1)
        try:
            label = normalize_label(name, stress=stress)
        except PhoneError as e:
            raise PhoneError(f"{path}: {e}") from None
        if stress and digit and label in ARPABET_VOWELS:
            label += digit
        phones.append(Phone(label, t0, t1))
    check_order(phones, str(path))
    return phones


def write_lab(path: str | Path, phones: Sequence[Phone]) -> None:
    """Writes ``start end phone`` lines in seconds, atomically (:func:`read_lab` reads them)."""
    from talk.files import write_text_atomic

    write_text_atomic(Path(path), "".join(f"{p.start:.6f} {p.end:.6f} {p.label}\n" for p in phones))


def to_utterance(
    phones: Sequence[Phone], duration: float, fps: int = 60, min_pause: float = 0.04
) -> Utterance:
    """Maps a phone time line onto the synthetic inventory (see ``TO_INVENTORY``).

    The duration is snapped to a whole number of ``fps`` frames as ``generate_utterance`` does, phones are
    clamped to it, and the time between phones becomes ``"sil"``. Gaps (and input pauses) between two phones
    shorter than ``min_pause`` are shared between their neighbours instead: a pause closes the mouth, and a
    few milliseconds of alignment slack between two words must not; the time before the first and after the
    last phone stays a pause however short. Vowels stressed in the labels (digit 1) are marked stressed.

    Args:
        phones: In time order; labels as in :class:`Phone` (stress digits allowed).
        duration: Length of the audio in seconds.
        fps: Frame rate the duration is snapped to.
        min_pause: Shortest gap kept as a pause, seconds.

    Returns:
        An utterance whose segments cover ``[0, duration]`` without gaps, for ``build_trajectory``.

    Raises:
        PhoneError: A label is unknown, the phones are out of order, or the duration is not positive.
    """
    total = round(duration * fps) / fps
    if not total > 0:
        raise PhoneError(f"duration must be at least half a frame at {fps} fps, got {duration} s")
    check_order(phones)
    # (symbol, start, end, stressed) of the speech parts, pauses dropped: they come back from the gaps.
    parts: list[tuple[str, float, float, bool]] = []
    for p in phones:
        label = normalize_label(p.label, stress=True)
        base = strip_stress(label)
        start, end = min(max(p.start, 0.0), total), min(max(p.end, 0.0), total)
        if base == PAUSE or end - start <= 1e-9:
            continue
        t, first_vowel = start, True
        for symbol, share in TO_INVENTORY[base]:
            stressed = label.endswith("1") and symbol in VOWELS and first_vowel
            first_vowel = first_vowel and symbol not in VOWELS
            t_end = t + share * (end - start)
            parts.append((symbol, t, t_end, stressed))
            t = t_end
    segments: list[Segment] = []
    t = 0.0
    for symbol, start, end, stressed in parts:
        start = max(start, t)  # overlaps within the order check's slack
        end = max(end, start)
        gap = start - t
        if gap >= min_pause or (gap > 1e-9 and not segments):
            segments.append(Segment(PAUSE, t, start))  # the rest before speech is always a pause
        elif gap > 0:
            mid = t + 0.5 * gap  # share a short gap between the two neighbours
            last = segments[-1]
            segments[-1] = Segment(last.symbol, last.start, mid, last.stressed)
            start = mid
        segments.append(Segment(symbol, start, end, stressed))
        t = end
    if total - t > 1e-9:
        segments.append(Segment(PAUSE, t, total))
    return Utterance(tuple(segments), float(total))


def boundary_errors(reference: Sequence[Phone], hypothesis: Sequence[Phone]) -> np.ndarray:
    """Onset errors of the phones two time lines share, pauses ignored.

    The label sequences (stress removed, pauses dropped) are matched with a longest-common-subsequence diff, so
    a few pronunciation differences do not shift the comparison.

    Returns:
        ``[M]`` absolute start-time differences in seconds, one per matched phone.
    """
    ref = [p for p in reference if p.label != PAUSE]
    hyp = [p for p in hypothesis if p.label != PAUSE]
    matcher = difflib.SequenceMatcher(
        a=[strip_stress(p.label) for p in ref], b=[strip_stress(p.label) for p in hyp], autojunk=False
    )
    errors = [
        abs(ref[block.a + k].start - hyp[block.b + k].start)
        for block in matcher.get_matching_blocks()
        for k in range(block.size)
    ]
    return np.asarray(errors, dtype=np.float64)
