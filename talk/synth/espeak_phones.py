"""espeak-ng phoneme mnemonics -> ARPAbet, and espeak phoneme events -> a phone time line.

espeak-ng reports each phoneme it speaks by its mnemonic in the voice's phoneme table (``"h"``, ``"i:"``,
``"'3:"``, ``"@L"``), prefixed by a stress mark on stressed vowels. This module maps every mnemonic of the
English tables (``base1``, ``en`` and the regional ``en-*`` tables) onto CMUdict's ARPAbet, following CMUdict's
own transcription of the same words where the two differ (the US flap is T, syllabic n is AH N, an r-coloured
vowel is vowel + R). A few mnemonics stand for two phones (``"A@"`` -> AA R, ``"aI3"`` -> AY ER); their time
span is then shared, vowels taking ``_VOWEL_WEIGHT`` parts to a consonant's one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from talk.synth.phones import ARPABET_VOWELS, PAUSE, Phone, fill_silence, strip_stress

# Rhotic General American, which is also the default for every English voice.
# fmt: off
ESPEAK_TO_ARPABET: Mapping[str, tuple[str, ...]] = {
    # pauses
    "_": (PAUSE,), "_:": (PAUSE,), "_::": (PAUSE,), "_!": (PAUSE,), "_|": (PAUSE,), "||": (PAUSE,),
    "_^_": (PAUSE,), "_X1": (PAUSE,), "_;_": (PAUSE,),
    # schwas and reduced vowels
    "@": ("AH",), "@-": ("AH",), "@2": ("AH",), "@5": ("AH",), "@#": ("AH",), "a#": ("AH",), "a2": ("AH",),
    "a#2": ("AH",), "@L": ("AH", "L"), "3": ("ER",), "3:": ("ER",),
    # monophthongs
    "a": ("AE",), "aa": ("AE",), "a/": ("AA",), "A:": ("AA",), "A#": ("AA",), "0": ("AA",), "0#": ("AA",),
    "02": ("AA",), "E": ("EH",), "E#": ("EH",), "E2": ("EH",), "e": ("EH",), "e#": ("EH",), "e:": ("EY",),
    "I": ("IH",), "I#": ("IH",), "I2": ("IH",), "I2#": ("IH",), "i": ("IY",), "i:": ("IY",), "O": ("AO",),
    "O:": ("AO",), "O2": ("AO",), "o": ("OW",), "o:": ("OW",), "V": ("AH",), "U": ("UH",), "u": ("UW",),
    "u:": ("UW",), "y": ("UW",), "Y": ("UW",),
    # diphthongs and vowel sequences
    "aI": ("AY",), "aI2": ("AY",), "eI": ("EY",), "EI": ("EY",), "OI": ("OY",), "oI": ("OY",), "aU": ("AW",),
    "oU": ("OW",), "oU#": ("OW",), "eU": ("EH", "UW"), "iU": ("IY", "UW"), "uI": ("UW", "IY"),
    "i@": ("IY", "AH"), "aI@": ("AY", "AH"),
    # r-coloured vowels
    "A@": ("AA", "R"), "O@": ("AO", "R"), "o@": ("AO", "R"), "e@": ("EH", "R"), "i@3": ("IH", "R"),
    "U@": ("UH", "R"), "aI3": ("AY", "ER"), "aU@": ("AW", "ER"), "IR": ("IH", "R"), "VR": ("AH", "R"),
    # nasalised vowels of French loans
    "A~": ("AA", "N"), "O~": ("AO", "N"),
    # syllabic consonants
    "n-": ("AH", "N"), "m-": ("AH", "M"), "l-": ("AH", "L"), "N-": ("NG",), "r-": ("R",),
    # stops and affricates
    "p": ("P",), "b": ("B",), "t": ("T",), "t#": ("T",), "t2": ("T",), "t[": ("T",), "?": ("T",),
    "*": ("T",), "d": ("D",), "d#": ("D",), "d[": ("D",), "k": ("K",), "c": ("K",), "q": ("K",),
    "g": ("G",), "J": ("JH",), "tS": ("CH",), "tS;": ("CH",), "dZ": ("JH",), "dZ;": ("JH",), "ts": ("T", "S"),
    # fricatives
    "f": ("F",), "v": ("V",), "v#": ("V",), "B": ("V",), "T": ("TH",), "D": ("DH",), "s": ("S",),
    "s.": ("S",), "s;": ("S",), "z": ("Z",), "z#": ("Z",), "z/2": ("Z",), "z.": ("Z",), "z;": ("Z",),
    "S": ("SH",), "S;": ("SH",), "Z": ("ZH",), "Z;": ("ZH",), "J^": ("ZH",), "h": ("HH",), "C": ("HH",),
    "X": ("HH",), "#X1": ("HH",), "x": ("K",), "Q": ("G",), "Q^": ("G",), 'Q"': ("G",), "l#": ("L",),
    'r"': ("R",),
    # nasals and approximants
    "m": ("M",), "n": ("N",), "n.": ("N",), "n^": ("N",), "N": ("NG",), "l": ("L",), "l/": ("L",),
    "l/2": ("L",), "l/3": ("L",), "l^": ("L",), "l.": ("L",), "L": ("L",), "L/": ("L",), "r": ("R",),
    "r/": ("R",), "r.": ("R",), "R": ("R",), "R2": ("R",), "R3": ("R",), "**": ("R",), "w": ("W",),
    "w#": ("W",), "w2": ("W",), "j": ("Y",), ";": ("Y",),
}

# Non-rhotic accents (every English voice but the US and Scottish ones) drop the R of r-coloured vowels.
NON_RHOTIC: Mapping[str, tuple[str, ...]] = {
    "A@": ("AA",), "O@": ("AO",), "o@": ("AO",), "e@": ("EH",), "i@3": ("IH", "AH"), "U@": ("UH", "AH"),
    "aI3": ("AY", "AH"), "aU@": ("AW", "AH"), "3": ("AH",),
}
# fmt: on
RHOTIC_VOICES: frozenset[str] = frozenset({"en-us", "en-us-nyc", "en-gb-scotland"})
# Southern British "bath" (espeak "aa") is the vowel of "palm" (AA); elsewhere it is the vowel of "trap".
BROAD_A_VOICES: frozenset[str] = frozenset({"en-gb", "en-gb-x-rp"})

_STRESS_MARKS: Mapping[str, str] = {"'": "1", "=": "1", ",": "2", "%": "0"}
_VOWEL_WEIGHT = 1.5


def espeak_to_arpabet(mnemonic: str, voice: str = "en-us") -> tuple[str, ...]:
    """ARPAbet phones of one espeak-ng phoneme, vowels with a CMUdict stress digit.

    Args:
        mnemonic: The phoneme event's name, stress marks included (``"'A@"``).
        voice: The espeak language voice (``"en-us"``, ``"en-gb"``, ...), which selects the accent.

    Returns:
        e.g. ``("AA1", "R")`` for ``"'A@"`` in a rhotic voice; ``("sil",)`` for pauses.

    Raises:
        KeyError: The mnemonic is not in the English tables.
    """
    digit = "0"
    while mnemonic[:1] in _STRESS_MARKS and len(mnemonic) > 1:
        digit, mnemonic = _STRESS_MARKS[mnemonic[0]], mnemonic[1:]
    phones = ESPEAK_TO_ARPABET[mnemonic]
    if voice not in RHOTIC_VOICES:
        phones = NON_RHOTIC.get(mnemonic, phones)
    if voice in BROAD_A_VOICES and mnemonic == "aa":
        phones = ("AA",)
    # The stress mark belongs to the first vowel; a second vowel in the same mnemonic is unstressed.
    out, stressed = [], False
    for p in phones:
        if p in ARPABET_VOWELS:
            out.append(p + ("0" if stressed else digit))
            stressed = True
        else:
            out.append(p)
    return tuple(out)


def events_to_phones(
    events: Sequence[tuple[str, float]], duration: float, voice: str = "en-us", stress: bool = False
) -> list[Phone]:
    """Phone time line from espeak's phoneme events.

    Each phoneme lasts from its event to the next one (the last one to ``duration``); time before the first
    event is a pause.

    Args:
        events: ``(mnemonic, time in seconds)`` of each phoneme event, in order.
        duration: Length of the audio in seconds.
        voice: The espeak language voice (selects the accent, see :func:`espeak_to_arpabet`).
        stress: Keep the stress digits on vowels.

    Returns:
        Phones covering ``[0, duration]``, adjacent pauses merged.
    """
    phones: list[Phone] = []
    for i, (name, start) in enumerate(events):
        end = events[i + 1][1] if i + 1 < len(events) else duration
        labels = espeak_to_arpabet(name, voice)
        weights = [_VOWEL_WEIGHT if strip_stress(lb) in ARPABET_VOWELS else 1.0 for lb in labels]
        t = start
        for label, w in zip(labels, weights, strict=True):
            t_end = t + (end - start) * w / sum(weights)
            phones.append(Phone(label if stress else strip_stress(label), t, t_end))
            t = t_end
    return fill_silence(phones, duration)
