"""Text-to-speech with exact phone timings: espeak-ng driven through its C API.

espeak-ng synthesizes synchronously into a callback that receives the samples together with an event per
phoneme (its mnemonic and its position in the audio), so every phone boundary of the output is known exactly;
``talk.synth.espeak_phones`` turns the events into an ARPAbet time line. The library and its voice data come
from the ``espeakng-loader`` wheel (no system install); it is loaded with ctypes on first use.

Licences: espeak-ng (libespeak-ng and espeak-ng-data, version 1.52 in espeakng-loader 0.2.4) is GPL-3.0-or-later.
``talk`` does not ship or modify it: the separately installed shared library is loaded at run time, and only
when speech is synthesized. The GPL treats a program that links a library into one process as a combined
work, so whoever distributes ``talk`` together with espeak-ng must meet GPL-3.0 for that distribution; audio
produced by the engine is not covered by it. The loader package itself is by thewh1teagle (its wheel declares
no licence; its distribution packages list MIT) and does not include espeak-ng's licence text.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass, field
from math import gcd

import numpy as np

from talk.errors import UserError
from talk.synth.espeak_phones import events_to_phones
from talk.synth.phones import Phone, check_order

# espeak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000  # end the text with a sentence pause, as between sentences
_RATE, _PITCH = 1, 3
RATE_RANGE = (80, 450)  # words per minute that espeak-ng accepts
PITCH_RANGE = (0, 99)


class TTSError(UserError, ValueError):
    """Invalid arguments to the speech synthesizer (unknown voice or variant, rate or pitch out of range)."""


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds from the start of the output
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),  # phoneme mnemonic for phoneme events
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, name, NUL) repeated, ending with a 0 priority
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class TTSResult:
    """Synthesized speech and its phone time line.

    Args:
        audio: ``[N]`` float32 waveform in [-1, 1].
        sample_rate: Sampling rate of ``audio`` in Hz.
        phones: Phones covering ``[0, N / sample_rate]`` exactly, pauses as ``"sil"``.
        voice: The espeak voice that spoke, with its variant (``"en-us+f3"``).
    """

    audio: np.ndarray
    sample_rate: int
    phones: list[Phone] = field(default_factory=list)
    voice: str = ""

    def __post_init__(self) -> None:
        if self.audio.ndim != 1 or self.audio.dtype != np.float32:
            raise ValueError(f"audio must be float32 [N], got {self.audio.dtype} {self.audio.shape}")
        if self.phones and abs(self.phones[-1].end - self.duration) > 1e-6:
            raise ValueError("phones must end with the audio")

    @property
    def duration(self) -> float:
        """Length of the audio in seconds."""
        return len(self.audio) / self.sample_rate


class _Espeak:
    """The process-wide espeak-ng instance (the C library keeps global state; callers hold ``_LOCK``)."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:
            raise ImportError(
                "talk.synth.tts needs the espeakng-loader package (espeak-ng library and voice data): "
                "pip install 'talk[speech]' (or pip install espeakng-loader)"
            ) from e
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_Callback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ListVoices.argtypes = [ctypes.POINTER(_Voice)]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), options
        )
        if rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise from the espeakng-loader data")
        self.lib, self.sample_rate = lib, int(rate)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, float]] = []
        self._callback = _Callback(self._receive)  # kept referenced: the C library calls it later
        lib.espeak_SetSynthCallback(self._callback)
        self.voices = self._list(None)
        self.variants = self._list(b"variant")

    def _receive(self, wav: ctypes._Pointer, n: int, events: ctypes._Pointer) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                self._events.append((ev.id.decode("utf-8", "replace"), ev.audio_position / 1000.0))
            i += 1
        return 0

    def _list(self, languages: bytes | None) -> dict[str, str]:
        """Language (or variant) name -> identifier of the installed voices."""
        spec = None
        if languages is not None:
            spec = _Voice()
            keep = ctypes.c_char_p(languages)
            spec.languages = ctypes.cast(keep, ctypes.c_void_p)
        table = self.lib.espeak_ListVoices(ctypes.byref(spec) if spec is not None else None)
        out: dict[str, str] = {}
        i = 0
        while table[i]:
            voice = table[i].contents
            identifier = voice.identifier.decode()
            if languages is not None:
                out[identifier.rsplit("/", 1)[-1]] = identifier
            elif voice.languages:
                # The first language of the list is the voice's own (later ones are fallbacks).
                out.setdefault(ctypes.string_at(voice.languages + 1).decode().lower(), identifier)
            i += 1
        return out

    def speak(self, text: str, identifier: str, rate: int, pitch: int) -> tuple[np.ndarray, list]:
        """Synthesizes ``text``: int16 samples at ``self.sample_rate`` and (mnemonic, seconds) events."""
        if self.lib.espeak_SetVoiceByName(identifier.encode()) != 0:
            raise RuntimeError(f"espeak-ng could not load voice {identifier}")
        self.lib.espeak_SetParameter(_RATE, rate, 0)
        self.lib.espeak_SetParameter(_PITCH, pitch, 0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8") + b"\0"
        status = self.lib.espeak_Synth(data, len(data), 0, 0, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
        if status != 0:
            raise RuntimeError(f"espeak-ng synthesis failed with status {status}")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio, self._events


_LOCK = threading.Lock()
_ENGINE: _Espeak | None = None


def _engine() -> _Espeak:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Espeak()
    return _ENGINE


def voices() -> list[str]:
    """The English espeak-ng voices, by language name (``"en-us"``, ``"en-gb"``, ``"en-gb-scotland"``, ...)."""
    with _LOCK:
        names = _engine().voices
    # en-shaw reads the Shavian alphabet, not English text.
    return sorted(n for n in names if (n == "en" or n.startswith("en-")) and n != "en-shaw")


def variants() -> list[str]:
    """Voice variants that modify any voice: ``"f1"``-``"f5"``, ``"m1"``-``"m7"``, ``"klatt"``, named ones."""
    with _LOCK:
        return sorted(_engine().variants)


def _resample(audio: np.ndarray, source: int, target: int) -> np.ndarray:
    if source == target:
        return audio
    from scipy.signal import resample_poly

    g = gcd(source, target)
    return resample_poly(audio, target // g, source // g).astype(np.float32)


def synthesize(
    text: str,
    voice: str = "en-us",
    rate: int = 175,
    pitch: int = 50,
    variant: str | None = None,
    sample_rate: int = 16000,
    stress: bool = False,
) -> TTSResult:
    """Speaks ``text`` with espeak-ng and reports the time line of the phones spoken.

    The audio ends with a sentence pause. Thread-safe: espeak-ng is one global C library, so calls are
    serialised by a lock (a sentence takes about 10 ms). Not bit-exact across calls: the library keeps some waveform
    state from one call to the next, so repeating a sentence moves its phone boundaries by up to a few
    milliseconds (measured: 1-5 ms); the reported phones always describe the audio returned.

    Args:
        text: English text (UTF-8; punctuation shapes pauses and intonation).
        voice: English language voice, see :func:`voices`; ``"en-us+f3"`` selects a variant too.
        rate: Speaking rate in words per minute, 80-450.
        pitch: Base pitch, 0-99 (50 is the voice's default).
        variant: Voice variant, see :func:`variants` (``"f3"``, ``"m3"``, ...); None keeps the voice's own.
        sample_rate: Sampling rate of the returned audio in Hz (espeak-ng speaks at 22050 Hz).
        stress: Mark vowels with CMUdict stress digits (1 primary, 2 secondary, 0 unstressed).

    Raises:
        TTSError: Empty text, an unknown voice or variant, or rate / pitch out of range.
    """
    if not text.strip():
        raise TTSError("text to synthesize is empty; pass the sentence to speak")
    if "+" in voice:
        voice, variant = voice.split("+", 1)[0], variant or voice.split("+", 1)[1]
    voice, variant = voice.lower(), variant.lstrip("+") if variant else None
    if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise TTSError(f"rate must be {RATE_RANGE[0]}-{RATE_RANGE[1]} words per minute, got {rate}")
    if not PITCH_RANGE[0] <= pitch <= PITCH_RANGE[1]:
        raise TTSError(f"pitch must be {PITCH_RANGE[0]}-{PITCH_RANGE[1]}, got {pitch}")
    if sample_rate <= 0 or sample_rate != int(sample_rate):
        raise TTSError(f"sample_rate must be a positive whole number of Hz, got {sample_rate}")
    sample_rate = int(sample_rate)
    english = voices()
    if voice not in english:
        raise TTSError(f"unknown espeak-ng voice {voice!r}; English voices: {', '.join(english)}")
    with _LOCK:
        engine = _engine()
        if variant is not None and variant not in engine.variants:
            some = ", ".join(
                v for v in ("f1", "f2", "f3", "f4", "m1", "m2", "m3", "klatt") if v in engine.variants
            )
            raise TTSError(f"unknown espeak-ng voice variant {variant!r}; try one of {some} (see variants())")
        identifier = engine.voices[voice] + (f"+{variant}" if variant else "")
        samples, events = engine.speak(text, identifier, int(rate), int(pitch))
        source_rate = engine.sample_rate
    audio = _resample(samples.astype(np.float32) / 32768.0, source_rate, sample_rate)
    phones = events_to_phones(events, len(audio) / sample_rate, voice=voice, stress=stress)
    check_order(phones, "espeak-ng output")
    name = voice + (f"+{variant}" if variant else "")
    return TTSResult(np.ascontiguousarray(audio, dtype=np.float32), sample_rate, phones, name)


def reset(rand_seed: int) -> None:
    """Reloads espeak-ng so that the next sentence starts from the library's initial state, noise seeded.

    ``espeak_Terminate`` does not reset the C statics that carry over between calls; unloading the library
    (its last reference goes, so the dynamic loader unmaps it) and loading it again does. Not for processes
    where other threads use ``talk.synth.tts`` at the same time.

    Args:
        rand_seed: Seed of espeak-ng's noise generator (breathy variants); it is seeded from the clock otherwise.
    """
    import _ctypes

    global _ENGINE
    with _LOCK:
        old, _ENGINE = _ENGINE, None
        if old is not None:
            old.lib.espeak_Terminate()
            close = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary", None)
            if close is not None:
                close(old.lib._handle)
        engine = _engine()
        engine.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        engine.lib.espeak_ng_SetRandSeed(rand_seed)
