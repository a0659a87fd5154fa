"""The TTS engines of ``talk data speech`` beyond espeak-ng: which engine and voice speaks each sentence.

espeak-ng (``talk.synth.tts``) is a formant synthesizer, far from human speech; Festival
(``talk.synth.tts_festival``) and Flite (``talk.synth.tts_flite``) speak with voices built from recordings of
real speakers (diphones and statistical models), so a set that mixes them transfers better to human voices.
All three report the exact time of every phone they speak.

With ``--engines espeak,festival,flite`` every speaker reads its sentences with the listed engines in turn
(from a seed-drawn first one), so each speaker is heard through every engine and the engines share the set
evenly. A speaker has one voice per engine, of its own sex where the engine has one (drawn from the seed, like
its espeak voice), a base speed and a base pitch; each sentence varies them a little.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from talk.synth.phones import Phone, fill_silence
from talk.synth.tts import TTSResult
from talk.synth.tts_festival import STRETCH_RANGE, EngineMissingError, EngineVoiceInfo

ENGINES: tuple[str, ...] = ("espeak", "festival", "flite")
DEFAULT_ENGINES: tuple[str, ...] = ("espeak",)
# Flite's 8 kHz "kal" is the same recording as "kal16"; the augmentation band-limits audio already.
SET_EXCLUDED: Mapping[str, frozenset[str]] = {"festival": frozenset(), "flite": frozenset({"kal"})}
STRETCH = (0.85, 1.2)  # a speaker's duration factor (the espeak voices' 140-200 words per minute, about)
PITCH_FACTOR = (0.85, 1.2)  # a speaker's mean F0 relative to the voice's own
SENTENCE_STRETCH, SENTENCE_PITCH = 0.05, 0.04  # each sentence varies them by up to this fraction
LEAD_KEEP = 0.05  # seconds of the engine's own leading pause kept (the writer adds its own silence)


@dataclass(frozen=True)
class EngineVoice:
    """A Festival or Flite voice identity.

    Args:
        engine: ``"festival"`` or ``"flite"``.
        voice: The engine's voice name (``"kal_diphone"``, ``"slt"``).
        stretch: Duration factor relative to the voice's own speed (>1 is slower).
        pitch: Mean F0 in Hz, or None where the voice cannot change its pitch.
    """

    engine: str
    voice: str
    stretch: float
    pitch: float | None


def parse_engines(engines: str | Sequence[str]) -> tuple[str, ...]:
    """The engines of a comma-separated list (or a sequence), in ``ENGINES`` order so that the order written
    does not change the set.

    Raises:
        ValueError: An unknown name, or no engine.
    """
    names = {n.strip().lower() for n in (engines.split(",") if isinstance(engines, str) else engines)} - {""}
    unknown = sorted(names - set(ENGINES))
    if unknown or not names:
        raise ValueError(
            f"engines={','.join(unknown) or '(none)'} is not a TTS engine here; pass a comma-separated list "
            f"of {', '.join(ENGINES)}."
        )
    return tuple(e for e in ENGINES if e in names)


def _module(engine: str):
    if engine == "festival":
        from talk.synth import tts_festival

        return tts_festival
    if engine == "flite":
        from talk.synth import tts_flite

        return tts_flite
    raise ValueError(f"no engine module for {engine!r}")


def installed_voices(engine: str) -> dict[str, EngineVoiceInfo]:
    """The voices of ``engine`` that the speech set uses, by name.

    Raises:
        EngineMissingError: The engine or all of its voices are missing.
    """
    module = _module(engine)
    names = [v for v in module.voices() if v not in SET_EXCLUDED[engine]]
    if not names:
        packages = sorted({info.package for info in module.VOICES.values()})
        raise EngineMissingError(
            f"{engine} has none of its supported voices installed (Debian packages {', '.join(packages)}); "
            "install them with `make speech-engines`"
        )
    return {name: module.VOICES[name] for name in names}


def engine_config(engines: Sequence[str]) -> dict[str, str]:
    """The settings of the non-espeak engines that decide the audio: version and voices used, per engine."""
    return {
        e: f"{_module(e).version()}; voices {','.join(sorted(installed_voices(e)))}"
        for e in engines
        if e != "espeak"
    }


def sentence_engine(key: Sequence[int], sentence: int, engines: Sequence[str]) -> str:
    """The engine of a speaker's sentence ``sentence``: the engines in turn, from a first one drawn from the
    speaker's random key ``(seed, speaker index, stream)``."""
    if len(engines) == 1:
        return engines[0]
    first = int(np.random.default_rng([*key, 9]).integers(len(engines)))
    return engines[(sentence + first) % len(engines)]


def sentence_voice(
    key: Sequence[int], sentence: int, engines: Sequence[str], voices: Mapping[str, EngineVoice]
) -> EngineVoice | None:
    """The Festival / Flite voice of a speaker's sentence, or None when it is espeak-ng's turn.

    Args:
        key: The speaker's random key ``(seed, speaker index, stream)``.
        sentence: Index of the sentence.
        engines: The engines of the set.
        voices: The speaker's voices, by engine (see :func:`speaker_voices`).
    """
    engine = sentence_engine(key, sentence, engines)
    if engine == "espeak":
        return None
    return sentence_engine_voice(voices[engine], np.random.default_rng([*key, 20, sentence]))


def speaker_voices(
    key: Sequence[int], sex: str, engine_voices: Mapping[str, Mapping[str, EngineVoiceInfo]]
) -> dict[str, EngineVoice]:
    """A speaker's voice for each Festival-family engine, each drawn from its own stream of the speaker's
    random key ``(seed, speaker index, stream)``, so that listing another engine does not change it."""
    return {
        e: speaker_engine_voice(np.random.default_rng([*key, 10 + ENGINES.index(e)]), sex, e, voices)
        for e, voices in engine_voices.items()
    }


def speaker_engine_voice(
    rng: np.random.Generator, sex: str, engine: str, voices: Mapping[str, EngineVoiceInfo]
) -> EngineVoice:
    """A speaker's voice of one engine: a voice of the speaker's sex (any voice where the engine has none of
    that sex), a speed and a pitch around the voice's own.

    Args:
        rng: The speaker's generator for this engine.
        sex: ``"F"`` or ``"M"``.
        engine: ``"festival"`` or ``"flite"``.
        voices: The engine's voices, see :func:`installed_voices`.
    """
    names = sorted(voices)
    pool = [n for n in names if voices[n].sex == sex] or names
    name = pool[int(rng.integers(len(pool)))]
    stretch = round(float(rng.uniform(*STRETCH)), 3)
    f0 = voices[name].f0
    pitch = None if f0 is None else round(f0 * float(rng.uniform(*PITCH_FACTOR)), 1)
    return EngineVoice(engine, name, stretch, pitch)


def sentence_engine_voice(identity: EngineVoice, rng: np.random.Generator) -> EngineVoice:
    """The voice of one sentence: the speaker's, its speed varied by up to 5 % and its pitch by up to 4 %."""
    stretch = identity.stretch * (1.0 + float(rng.uniform(-SENTENCE_STRETCH, SENTENCE_STRETCH)))
    stretch = round(float(np.clip(stretch, *STRETCH_RANGE)), 3)
    pitch = identity.pitch
    if pitch is not None:
        pitch = round(
            float(np.clip(pitch * (1.0 + rng.uniform(-SENTENCE_PITCH, SENTENCE_PITCH)), 50, 400)), 1
        )
    return EngineVoice(identity.engine, identity.voice, stretch, pitch)


def speaker_record(speaker: dict, espeak: object | None, voices: Mapping[str, EngineVoice]) -> dict:
    """speech_meta.json's record of a speaker: its profile, its espeak-ng voice (``"tts"``, a dataclass) and
    its other voices (``"voices"``), each key only when the speaker has such voices."""
    out = dict(speaker)
    if espeak is not None:
        out["tts"] = asdict(espeak)
    if voices:
        out["voices"] = {e: asdict(v) for e, v in voices.items()}
    return out


def voice_record(voice: object, tagged: bool) -> dict:
    """The voice fields of a sequence's record: ``rate`` and ``pitch`` of an espeak-ng voice (a
    ``speech_set.TTSVoice``), with ``engine`` and ``voice`` when ``tagged``; engine, voice, stretch and pitch of
    a Festival / Flite one."""
    if isinstance(voice, EngineVoice):
        return {"engine": voice.engine, "voice": voice.voice, "stretch": voice.stretch, "pitch": voice.pitch}
    out = {"rate": voice.rate, "pitch": voice.pitch}
    if tagged:
        out.update(engine="espeak", voice=f"{voice.voice}+{voice.variant}")
    return out


def synthesize(voice: EngineVoice, text: str, sample_rate: int) -> TTSResult:
    """Speaks ``text`` with a Festival or Flite voice, stress digits on the vowels, the engine's leading pause
    shortened to ``LEAD_KEEP`` seconds.

    Raises:
        EngineMissingError: The engine or the voice is not installed.
    """
    spoken = _module(voice.engine).synthesize(
        text, voice.voice, voice.stretch, voice.pitch, sample_rate, stress=True
    )
    first = next((p.start for p in spoken.phones if p.label != "sil"), 0.0)
    cut = int(round(max(0.0, first - LEAD_KEEP) * sample_rate))
    audio = spoken.audio[cut:]
    shift = cut / sample_rate
    phones = [
        Phone(p.label, max(p.start - shift, 0.0), p.end - shift) for p in spoken.phones if p.end > shift
    ]
    return TTSResult(audio, sample_rate, fill_silence(phones, len(audio) / sample_rate), spoken.voice)
