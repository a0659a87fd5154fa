"""Phoneme inventory and random sentence generator for the synthetic talking-face dataset.

Each phoneme carries articulatory targets (what the face and tongue aim for) and source behaviour (voicing,
nasality, frication band, burst), so that both the synthesized audio and the mesh motion derive from the same
per-phoneme description. Sentences are random syllable strings: no words and no language, but the statistics
that matter for learning audio -> mouth motion (vowel/consonant alternation, bilabial closures, pauses) are
speech-like.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

# Articulatory channels of the continuous trajectory. The first six are visible: jaw_pose x in radians, the
# face model's expression components of the same names, and lip_closure in [0, 1], the fraction of the current
# jaw gap that the lips close (1 = lips in contact whatever the jaw; it becomes the lip_press expression, see
# articulation.face_controls). The last two only shape the sound (the tongue is hidden inside the mouth),
# which keeps the audio -> motion mapping realistic: not every acoustic change is a visible one.
VISIBLE_CHANNELS: tuple[str, ...] = (
    "jaw",
    "lip_round",
    "lip_closure",
    "stretch",
    "upper_lip_raise",
    "lower_lip_depress",
)
HIDDEN_CHANNELS: tuple[str, ...] = ("tongue_front", "rhotic")
CHANNELS: tuple[str, ...] = VISIBLE_CHANNELS + HIDDEN_CHANNELS

# Value a channel relaxes to when a phoneme does not care about it (its dominance is then tiny, so
# neighbouring phonemes decide the value: this is what produces anticipatory lip rounding).
NEUTRAL_TARGETS: Mapping[str, float] = {
    "jaw": 0.06,
    "lip_round": 0.0,
    "lip_closure": 0.0,
    "stretch": 0.0,
    "upper_lip_raise": 0.0,
    "lower_lip_depress": 0.0,
    "tongue_front": 0.0,
    "rhotic": 0.0,
}

# A plosive's closure (silent, lips or tongue shut) covers this fraction of its segment; the burst follows.
CLOSURE_FRACTION = 0.7

KINDS = ("vowel", "plosive", "nasal", "fricative", "approximant", "aspirate", "pause")


@dataclass(frozen=True)
class Phoneme:
    """One entry of the inventory.

    Args:
        symbol: ARPAbet-like name ("AA", "P", "SH", "sil").
        kind: One of ``KINDS``.
        place: Place of articulation ("bilabial", "labiodental", "alveolar", "postalveolar", "velar",
            "glottal", "vowel", "none").
        voiced: Whether the glottal source runs during the phoneme (for plosives: during the release only;
            the closure of p/b is silent).
        duration: Mean duration in seconds at speaking rate 1.
        targets: Articulatory channel -> target value; unspecified channels use ``NEUTRAL_TARGETS``.
        dominance: Channel -> dominance weight; specified channels default to 1, unspecified to 0.05.
        noise_band: (low_hz, high_hz) of the frication noise (fricatives) or release burst (plosives).
        noise_gain: Linear gain of that noise.
        tau: Channel -> coarticulation time constant (seconds) overriding the channel default for this
            phoneme's own influence; a short one makes a strong gesture local.
    """

    symbol: str
    kind: str
    place: str
    voiced: bool
    duration: float
    targets: Mapping[str, float] = field(default_factory=dict)
    dominance: Mapping[str, float] = field(default_factory=dict)
    noise_band: tuple[float, float] | None = None
    noise_gain: float = 0.0
    tau: Mapping[str, float] = field(default_factory=dict)

    def target(self, channel: str) -> float:
        """Target of ``channel`` (the neutral value when the phoneme leaves it free)."""
        return float(self.targets.get(channel, NEUTRAL_TARGETS[channel]))

    def weight(self, channel: str) -> float:
        """Dominance of this phoneme over ``channel`` in the coarticulation blend."""
        if channel in self.dominance:
            return float(self.dominance[channel])
        return 1.0 if channel in self.targets else 0.05


def _vowel(
    symbol: str,
    duration: float,
    jaw: float,
    tongue: float,
    round_: float = 0.0,
    stretch: float = 0.0,
    rhotic: float = 0.0,
) -> Phoneme:
    targets = {
        "jaw": jaw,
        "tongue_front": tongue,
        "lip_round": round_,
        "stretch": stretch,
        "rhotic": rhotic,
        "lip_closure": 0.0,
        "upper_lip_raise": 0.0,
        "lower_lip_depress": 0.25 * jaw / 0.22,
    }
    # Vowels own the jaw and tongue; their lip shape is weaker so that consonant gestures win at transitions.
    dominance = {
        "jaw": 2.0,
        "tongue_front": 2.0,
        "lip_round": 1.5 if round_ > 0 else 0.6,
        "stretch": 1.0,
        "rhotic": 1.0,
        "lip_closure": 1.0,
        "upper_lip_raise": 0.3,
        "lower_lip_depress": 0.5,
    }
    return Phoneme(symbol, "vowel", "vowel", True, duration, targets, dominance)


# Jaw in radians (0.25 is wide open). Formants follow from jaw (F1), tongue/rounding/spreading (F2, F3): see
# voice.formant_tracks. Tongue and rounding values are chosen so a reference male tract lands near the
# Peterson & Barney averages.
_VOWELS = [
    _vowel("AA", 0.14, jaw=0.22, tongue=-0.45),
    _vowel("AE", 0.13, jaw=0.19, tongue=0.4, stretch=0.3),
    _vowel("AH", 0.10, jaw=0.15, tongue=-0.2),
    _vowel("AO", 0.14, jaw=0.18, tongue=-0.7, round_=0.45),
    _vowel("EH", 0.11, jaw=0.12, tongue=0.5, stretch=0.35),
    _vowel("IH", 0.08, jaw=0.07, tongue=0.75, stretch=0.45),
    _vowel("IY", 0.11, jaw=0.04, tongue=1.0, stretch=0.85),
    _vowel("UH", 0.09, jaw=0.08, tongue=-0.3, round_=0.55),
    _vowel("UW", 0.12, jaw=0.05, tongue=-0.4, round_=1.0),
    _vowel("OW", 0.13, jaw=0.12, tongue=-0.5, round_=0.8),
    _vowel("ER", 0.12, jaw=0.09, tongue=0.1, round_=0.3, rhotic=0.9),
]

# fmt: off
_CLOSED = {"jaw": 0.03, "lip_closure": 1.0, "lip_round": 0.0, "stretch": 0.0, "upper_lip_raise": 0.0,
           "lower_lip_depress": 0.0}
# Bilabial closure must really close the lips whatever the neighbours want: overwhelming dominance on the lip
# channels and a strong one on the jaw (full closure = lips in contact whatever the jaw; see face_controls).
_CLOSED_DOM = {"jaw": 25.0, "lip_closure": 12.0, "lip_round": 20.0, "stretch": 5.0, "upper_lip_raise": 12.0,
               "lower_lip_depress": 12.0}
# Rounding spreads far by default (anticipation); the closure's own pull on it is made short-range, so it
# flattens the lips during the closure (a rounded lip shape would leave a central opening) without
# unrounding the neighbouring vowels.
_CLOSED_TAU = {"lip_round": 0.02, "stretch": 0.02}
_LABIODENTAL = {"jaw": 0.035, "lip_closure": 0.3, "upper_lip_raise": 0.45, "lower_lip_depress": -0.3}
_LABIODENTAL_DOM = {"jaw": 6.0, "lip_closure": 4.0, "upper_lip_raise": 8.0, "lower_lip_depress": 8.0}
_ALVEOLAR = {"jaw": 0.05, "tongue_front": 0.6}
_SIBILANT = {"jaw": 0.03, "stretch": 0.35, "tongue_front": 0.8}
_SIBILANT_DOM = {"jaw": 8.0, "stretch": 1.5, "tongue_front": 3.0}
_VELAR = {"jaw": 0.07, "tongue_front": -0.6}
_VELAR_DOM = {"jaw": 2.0, "tongue_front": 3.0}

_CONSONANTS = [
    Phoneme("P", "plosive", "bilabial", False, 0.095, _CLOSED, _CLOSED_DOM, (300.0, 3000.0), 0.5,
            _CLOSED_TAU),
    Phoneme("B", "plosive", "bilabial", True, 0.080, _CLOSED, _CLOSED_DOM, (200.0, 2500.0), 0.25,
            _CLOSED_TAU),
    Phoneme("M", "nasal", "bilabial", True, 0.080, _CLOSED, _CLOSED_DOM, tau=_CLOSED_TAU),
    Phoneme("F", "fricative", "labiodental", False, 0.105, _LABIODENTAL, _LABIODENTAL_DOM,
            (1200.0, 7000.0), 0.12),
    Phoneme("V", "fricative", "labiodental", True, 0.075, _LABIODENTAL, _LABIODENTAL_DOM,
            (1200.0, 7000.0), 0.07),
    Phoneme("T", "plosive", "alveolar", False, 0.085, _ALVEOLAR, {"jaw": 3.0, "tongue_front": 3.0},
            (3000.0, 7000.0), 0.6),
    Phoneme("D", "plosive", "alveolar", True, 0.070, _ALVEOLAR, {"jaw": 3.0, "tongue_front": 3.0},
            (2500.0, 6000.0), 0.3),
    Phoneme("N", "nasal", "alveolar", True, 0.070, _ALVEOLAR, {"jaw": 3.0, "tongue_front": 3.0}),
    Phoneme("S", "fricative", "alveolar", False, 0.115, _SIBILANT, _SIBILANT_DOM, (4000.0, 7800.0), 0.5),
    Phoneme("Z", "fricative", "alveolar", True, 0.085, _SIBILANT, _SIBILANT_DOM, (4000.0, 7800.0), 0.3),
    Phoneme("SH", "fricative", "postalveolar", False, 0.115,
            {"jaw": 0.04, "lip_round": 0.65, "upper_lip_raise": 0.3, "tongue_front": 0.4},
            {"jaw": 6.0, "lip_round": 4.0, "upper_lip_raise": 3.0, "tongue_front": 3.0},
            (1800.0, 6000.0), 0.45),
    Phoneme("L", "approximant", "alveolar", True, 0.065, {"jaw": 0.07, "tongue_front": -0.2},
            {"jaw": 1.0, "tongue_front": 2.0}),
    Phoneme("R", "approximant", "postalveolar", True, 0.065,
            {"jaw": 0.06, "lip_round": 0.45, "rhotic": 1.0, "tongue_front": 0.0},
            {"jaw": 1.0, "lip_round": 2.0, "rhotic": 3.0, "tongue_front": 1.0}),
    Phoneme("W", "approximant", "bilabial", True, 0.065, {"jaw": 0.035, "lip_round": 1.1, "tongue_front": -0.7},
            {"jaw": 3.0, "lip_round": 5.0, "tongue_front": 2.0}),
    Phoneme("Y", "approximant", "postalveolar", True, 0.060, {"jaw": 0.03, "stretch": 0.6, "tongue_front": 1.0},
            {"jaw": 3.0, "stretch": 2.0, "tongue_front": 3.0}),
    Phoneme("K", "plosive", "velar", False, 0.090, _VELAR, _VELAR_DOM, (1500.0, 3500.0), 0.55),
    Phoneme("G", "plosive", "velar", True, 0.075, _VELAR, _VELAR_DOM, (1300.0, 3200.0), 0.3),
    Phoneme("HH", "aspirate", "glottal", False, 0.060),
]
# fmt: on

# A pause closes the mouth in a relaxed way (jaw 0, no press): dominance high enough to win over neighbours.
PAUSE = Phoneme("sil", "pause", "none", False, 0.2, {c: 0.0 for c in CHANNELS}, {c: 6.0 for c in CHANNELS})

INVENTORY: Mapping[str, Phoneme] = {p.symbol: p for p in [*_VOWELS, *_CONSONANTS, PAUSE]}
VOWELS: tuple[str, ...] = tuple(p.symbol for p in _VOWELS)
BILABIAL_CLOSURES: tuple[str, ...] = ("P", "B", "M")

# Onset / coda consonant frequencies. Bilabials are over-represented relative to English because they are the
# visually decisive events a model has to learn from the audio.
# fmt: off
_ONSETS = {"P": 3, "B": 3, "M": 3, "F": 1.5, "V": 1, "T": 2, "D": 2, "N": 1.5, "S": 2, "Z": 0.7, "SH": 1,
           "L": 1.5, "R": 1.5, "W": 1.2, "Y": 0.7, "K": 2, "G": 1, "HH": 1}
_CODAS = {"P": 1, "B": 0.5, "M": 2, "N": 2, "T": 1.5, "D": 1, "S": 1.5, "Z": 0.8, "K": 1, "F": 0.6, "L": 1,
          "R": 0.8}
_VOWEL_FREQ = {"AA": 1.2, "AE": 1.0, "AH": 1.5, "AO": 0.8, "EH": 1.0, "IH": 1.3, "IY": 1.2, "UH": 0.5,
               "UW": 0.9, "OW": 0.9, "ER": 0.5}
# fmt: on


@dataclass(frozen=True)
class Segment:
    """One phoneme instance on the time line (seconds from the start of the sentence).

    Args:
        symbol: Key into ``INVENTORY``.
        start: Start time in seconds.
        end: End time in seconds.
        stressed: Carries a pitch accent (vowels only).
    """

    symbol: str
    start: float
    end: float
    stressed: bool = False

    @property
    def phoneme(self) -> Phoneme:
        """The inventory entry."""
        return INVENTORY[self.symbol]

    @property
    def release(self) -> float:
        """Time at which a plosive's closure ends (its burst); the segment end for other phonemes."""
        if self.phoneme.kind == "plosive":
            return self.start + CLOSURE_FRACTION * (self.end - self.start)
        return self.end


@dataclass(frozen=True)
class Utterance:
    """A synthetic sentence: phoneme segments covering ``[0, duration]`` without gaps.

    Args:
        segments: Segments in time order; the first and last are pauses.
        duration: Total length in seconds (an exact multiple of 1/60 so that 60 fps frames tile it).
    """

    segments: tuple[Segment, ...]
    duration: float

    @property
    def text(self) -> str:
        """Space-separated phoneme string, stressed vowels marked with a trailing '1'."""
        return " ".join(s.symbol + ("1" if s.stressed else "") for s in self.segments)


def _pick(rng: np.random.Generator, table: Mapping[str, float]) -> str:
    keys = list(table)
    p = np.asarray([table[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _syllable(rng: np.random.Generator) -> list[str]:
    out: list[str] = []
    if rng.random() < 0.85:
        out.append(_pick(rng, _ONSETS))
    out.append(_pick(rng, _VOWEL_FREQ))
    if rng.random() < 0.35:
        out.append(_pick(rng, _CODAS))
    return out


def generate_utterance(
    rng: np.random.Generator,
    rate: float = 1.0,
    min_seconds: float = 1.5,
    max_seconds: float = 3.5,
    fps: int = 60,
) -> Utterance:
    """Draws a random syllable-string sentence.

    The total length is drawn uniformly in ``[min_seconds, max_seconds]`` and snapped to a whole number of
    ``fps`` frames; leading and trailing silences last 0.15-0.4 s; phrases of 2-5 syllables are separated by
    short pauses; phoneme durations are jittered and then scaled so the speech exactly fills the remaining
    time.

    Args:
        rng: Source of randomness (the caller derives it from the dataset seed).
        rate: Speaking rate (> 1 is faster); sets how many syllables fit in the sentence.
        min_seconds: Shortest sentence.
        max_seconds: Longest sentence.
        fps: Frame rate the duration is snapped to.
    """
    total = round(rng.uniform(min_seconds, max_seconds) * fps) / fps
    lead, trail = rng.uniform(0.15, 0.4, size=2)
    speech = total - lead - trail
    symbols: list[str] = []
    stress: list[bool] = []
    expected = 0.0  # expected duration of what has been drawn so far, pauses counted at their mean 0.175 s
    phrase_left = int(rng.integers(2, 6))
    while expected < speech * 0.97 or not symbols:
        if phrase_left == 0:
            symbols.append("sil")
            stress.append(False)
            expected += 0.175
            phrase_left = int(rng.integers(2, 6))
        syl = _syllable(rng)
        accent = rng.random() < 0.3
        symbols += syl
        stress += [accent and s in VOWELS for s in syl]
        expected += sum(INVENTORY[s].duration for s in syl) / rate
        phrase_left -= 1
    # Internal pauses are 0.1-0.25 s; phonemes are jittered +-20 %.
    durs = np.asarray(
        [
            rng.uniform(0.1, 0.25) if s == "sil" else INVENTORY[s].duration / rate * rng.uniform(0.8, 1.2)
            for s in symbols
        ]
    )
    # Stressed syllables are longer; then everything is rescaled to fill the time between the silences.
    durs *= np.asarray([1.3 if st else 1.0 for st in stress])
    durs *= speech / durs.sum()
    bounds = lead + np.concatenate([[0.0], np.cumsum(durs)])
    segments = [Segment("sil", 0.0, float(lead))]
    segments += [
        Segment(s, float(bounds[i]), float(bounds[i + 1]), st)
        for i, (s, st) in enumerate(zip(symbols, stress, strict=True))
    ]
    segments.append(Segment("sil", float(bounds[-1]), float(total)))
    return Utterance(tuple(segments), float(total))
