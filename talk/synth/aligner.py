"""Forced alignment of a recording to its transcript: a phone time line of real speech, offline.

PocketSphinx aligns in two passes, as its documentation prescribes: a word-level pass over a finite-state
grammar of the transcript (optional silences between words, pronunciation variants such as "and(2)"), then a
sub-word pass that places every phone of the chosen pronunciations. Frames are 10 ms, so boundaries are
quantised to 10 ms; on the bundled CMU ARCTIC utterance the median onset error against its published labels
is 10 ms (90th percentile 25 ms, worst 35 ms). The US English acoustic model has no stress, so neither do the phones.

Licences: pocketsphinx 5 (its library, Python bindings, the bundled CMU US English acoustic model and
CMUdict-based dictionary) is under CMU's BSD-style licence (redistribution with the copyright notice; see the
wheel's LICENSE). It installs ``sounddevice`` (MIT), which is only imported for live microphone input and
never by this module.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from math import gcd

import numpy as np

from talk.errors import UserError
from talk.synth.phones import ARPABET_CONSONANTS, ARPABET_VOWELS, PAUSE, Phone, fill_silence, strip_stress

SAMPLE_RATE = 16000  # the acoustic model's rate
_MIN_SECONDS = 0.1
# Alignment search settings. The decoder's defaults are tuned for recognition: its word beam is narrower than
# its state beam, and its lattice best-path pass may end an alignment early with a one-frame "</s>"; both make
# the word pass stop short of the transcript's last word on clean or synthetic speech. Equal, wide beams and
# no best-path pass align 125 of 126 espeak-ng sentences (7 voices, 3 rates) where the defaults align 83; the
# search stays far faster than real time (0.13 s for the 3.1 s ARCTIC sentence).
_BEAM = 1e-100


class AlignmentError(UserError, ValueError):
    """The recording cannot be aligned to the text (unknown words, empty audio, text that does not match)."""


def words(text: str) -> list[str]:
    """The transcript as dictionary words: lower case, punctuation dropped, apostrophes inside words kept."""
    return [w.strip("'") for w in re.findall(r"[a-z0-9']+", text.lower()) if w.strip("'")]


def _new_decoder():  # -> pocketsphinx.Decoder
    try:
        from pocketsphinx import Decoder
    except ImportError as e:
        raise ImportError(
            "talk.synth.aligner needs pocketsphinx 5 (acoustic model and dictionary included): "
            "pip install 'talk[speech]' (or pip install pocketsphinx)"
        ) from e
    return Decoder(
        lm=None, samprate=SAMPLE_RATE, loglevel="FATAL", beam=_BEAM, wbeam=_BEAM, pbeam=_BEAM, bestpath=False
    )


# A decoder takes ~0.2 s to load the model and dictionary, so the plain one is kept for the process; it is not
# thread-safe, hence the lock. Decoders with extra pronunciations are built per call (they change the dictionary).
_LOCK = threading.Lock()
_SHARED = None


def _shared_decoder():
    global _SHARED
    if _SHARED is None:
        _SHARED = _new_decoder()
    return _SHARED


def _add_pronunciations(decoder, pronunciations: Mapping[str, str]) -> None:
    """Adds entries to the decoder's dictionary; a word it has gets an alternative "word(k)" pronunciation."""
    for word, phones in pronunciations.items():
        name, k = word, 2
        if decoder.lookup_word(word) is not None:
            while decoder.lookup_word(f"{word}({k})") is not None:
                k += 1
            name = f"{word}({k})"
        decoder.add_word(name, phones, update=True)


def _check_pronunciations(pronunciations: Mapping[str, str]) -> dict[str, str]:
    known = set(ARPABET_VOWELS + ARPABET_CONSONANTS)
    out = {}
    for word, spelled in pronunciations.items():
        phones = [strip_stress(p) for p in spelled.upper().split()]
        bad = [p for p in phones if p not in known]
        if not phones or bad:
            raise AlignmentError(
                f"pronunciation of {word!r} must be ARPAbet phones separated by spaces "
                f"(e.g. 'G R EH G S AH N'), got {spelled!r}"
            )
        out[word.lower()] = " ".join(phones)
    return out


def _to_int16(audio: np.ndarray, sample_rate: int) -> bytes:
    audio = np.asarray(audio, dtype=np.float64)
    if sample_rate != SAMPLE_RATE:
        from scipy.signal import resample_poly

        g = gcd(sample_rate, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, sample_rate // g)
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def align(
    audio: np.ndarray,
    sample_rate: int,
    text: str,
    pronunciations: Mapping[str, str] | None = None,
) -> list[Phone]:
    """Phone time line of a recording of ``text``.

    Args:
        audio: ``[N]`` mono waveform, float in [-1, 1] or int16 PCM.
        sample_rate: Sampling rate of ``audio`` in Hz; resampled to 16 kHz for the acoustic model.
        text: What is said, in plain words (numbers and abbreviations spelled out).
        pronunciations: Extra dictionary entries, word -> ARPAbet (``{"gregson": "G R EH G S AH N"}``), for
            names and words the CMU dictionary lacks; for a word it has, an alternative it may choose.

    Returns:
        Phones covering ``[0, N / sample_rate]``, pauses (and non-speech noise) as ``"sil"``.

    Raises:
        AlignmentError: Empty or non-finite audio, empty text, words missing from the dictionary (named),
            or audio that cannot be aligned to the text.
    """
    audio = np.asarray(audio)
    if audio.dtype == np.int16:
        audio = audio.astype(np.float32) / 32768.0
    if audio.ndim != 1 or audio.size == 0:
        raise AlignmentError(f"audio must be a non-empty mono waveform [N], got shape {audio.shape}")
    if sample_rate <= 0 or sample_rate != int(sample_rate):
        raise AlignmentError(f"sample_rate must be a positive whole number of Hz, got {sample_rate}")
    sample_rate = int(sample_rate)
    duration = audio.size / sample_rate
    if duration < _MIN_SECONDS:
        raise AlignmentError(f"audio is {duration * 1000:.0f} ms long; alignment needs at least 100 ms")
    if not np.all(np.isfinite(audio)):
        raise AlignmentError("audio contains NaN or infinite samples; clean the waveform before aligning")
    tokens = words(text)
    if not tokens:
        raise AlignmentError("text to align is empty; pass the transcript of the recording")
    extra = _check_pronunciations(pronunciations or {})
    data = _to_int16(audio, sample_rate)
    if extra:
        decoder = _new_decoder()
        _add_pronunciations(decoder, extra)
        return _align(decoder, data, tokens, duration)
    with _LOCK:
        return _align(_shared_decoder(), data, tokens, duration)


def _align(decoder, data: bytes, tokens: list[str], duration: float) -> list[Phone]:
    missing = sorted({w for w in tokens if decoder.lookup_word(w) is None})
    if missing:
        raise AlignmentError(
            f"words not in the pronunciation dictionary: {', '.join(missing)}; spell them out or pass "
            "pronunciations={word: 'ARPAbet phones'}"
        )

    def decode() -> None:
        decoder.start_utt()
        decoder.process_raw(data, full_utt=True)
        decoder.end_utt()

    try:
        decoder.set_align_text(" ".join(tokens))
        decode()  # word pass
        # When the search cannot reach the end of the transcript it reports the best partial word sequence.
        # (hyp() is read after the word pass only: the phone-pass search does not implement it.)
        hyp = decoder.hyp()
        if hyp is None or re.sub(r"\(\d+\)", "", hyp.hypstr).split() != tokens:
            raise RuntimeError("the word pass stopped short of the transcript")
        decoder.set_alignment()
        decode()  # phone pass over the same audio, within the word boundaries
        alignment = decoder.get_alignment()
        if alignment is None:
            raise RuntimeError("no phone alignment")
    except RuntimeError:
        raise AlignmentError(
            f"cannot align the {duration:.2f} s recording to {' '.join(tokens)!r}; check that the text is what "
            "is said and that the audio is speech"
        ) from None
    frame_rate = float(decoder.config["frate"])
    phones = []
    for entry in alignment.phones():
        name = entry.name.upper()
        label = name if name in ARPABET_VOWELS or name in ARPABET_CONSONANTS else PAUSE  # SIL, +NSN+, ...
        start = entry.start / frame_rate
        phones.append(Phone(label, start, start + entry.duration / frame_rate))
    return fill_silence(phones, duration)
