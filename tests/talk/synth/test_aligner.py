"""Tests of forced alignment of recordings to their transcripts (talk.synth.aligner)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from talk.errors import UserError
from talk.synth.aligner import AlignmentError, align, words
from talk.synth.phones import PHONE_SET, boundary_errors, covers, read_lab, to_utterance
from talk.synth.tts import synthesize

SPEECH = Path(__file__).resolve().parents[3] / "assets" / "speech"
ARCTIC_TEXT = "He turned sharply and faced Gregson across the table."


@pytest.fixture(scope="module")
def arctic() -> tuple[np.ndarray, int]:
    audio, sr = sf.read(str(SPEECH / "arctic_a0009.wav"), dtype="float32")
    return audio, sr


def _speech(phones) -> list[str]:
    return [p.label for p in phones if p.label != "sil"]


@pytest.mark.parametrize("sample_rate", [16000, 48000])
def test_arctic_alignment_agrees_with_the_published_labels(arctic, sample_rate: int):
    audio, sr = arctic
    if sample_rate != sr:
        audio = resample_poly(audio, sample_rate // 1000, sr // 1000).astype(np.float32)
    phones = align(audio, sample_rate, ARCTIC_TEXT)
    reference = read_lab(SPEECH / "arctic_a0009_phone.lab")
    assert covers(phones, len(audio) / sample_rate, tol=1e-9)
    assert all(p.label in PHONE_SET for p in phones)
    assert phones[0].label == "sil" and phones[-1].label == "sil"
    assert _speech(phones) == _speech(reference)
    # Measured: median onset error 10 ms, 90th percentile 25 ms, worst 35 ms (10 ms frames).
    errors = boundary_errors(reference, phones)
    assert len(errors) == len(_speech(reference))
    assert np.median(errors) < 0.02 and np.percentile(errors, 90) < 0.04 and errors.max() < 0.06
    utt = to_utterance(phones, len(audio) / sample_rate)
    assert utt.segments[0].symbol == "sil" and any(s.symbol == "P" for s in utt.segments)
    if sample_rate == sr:  # int16 PCM is read as such
        assert align((audio * 32768).round().astype(np.int16), sr, ARCTIC_TEXT) == phones


@pytest.mark.parametrize("voice", ["en-us", "en-gb+m3"])
def test_alignment_of_tts_recovers_its_timings(voice: str):
    text = "Please call Stella. Ask her to bring these things with her from the store."
    spoken = synthesize(text, voice=voice)
    phones = align(spoken.audio, spoken.sample_rate, text)
    assert covers(phones, spoken.duration, tol=1e-9)
    errors = boundary_errors(spoken.phones, phones)
    # espeak's pronunciations differ from the dictionary's in a phone or two; nearly all phones match. Measured
    # over 5 voices x 3 sentences: median 8-17 ms, 90 % or more of the onsets within 50 ms.
    assert len(errors) >= 0.85 * len(_speech(spoken.phones))
    assert np.median(errors) < 0.025 and np.mean(errors < 0.05) > 0.85


def test_words_not_in_the_dictionary_are_named_and_can_be_added(arctic):
    audio, sr = arctic
    text = "He turned sharply and faced Gregsonne across the table 42"
    with pytest.raises(AlignmentError) as err:
        align(audio, sr, text)
    message = str(err.value)
    assert isinstance(err.value, UserError) and "\n" not in message
    assert "42, gregsonne" in message and "pronunciations" in message
    phones = align(audio, sr, ARCTIC_TEXT.replace("Gregson", "Gregsonne"), {"Gregsonne": "G R EH1 G S AH0 N"})
    assert _speech(phones) == _speech(read_lab(SPEECH / "arctic_a0009_phone.lab"))
    # A word the dictionary has gets the pronunciation as an alternative.
    assert len(align(audio, sr, ARCTIC_TEXT, {"table": "T EY B AH L"})) == len(phones)
    with pytest.raises(AlignmentError, match="ARPAbet"):
        align(audio, sr, ARCTIC_TEXT, {"gregson": "G R X"})


def test_unalignable_input_is_a_one_line_user_error(arctic):
    audio, sr = arctic
    noise = np.random.default_rng(0).normal(0.0, 0.1, 16000).astype(np.float32)
    cases = [
        (noise, 16000, "hello world and a long sentence that cannot fit into one second", "cannot align"),
        (np.zeros(0, np.float32), 16000, "hello", "non-empty"),
        (np.zeros((2, 16000), np.float32), 16000, "hello", "mono"),
        (audio[:800], sr, "hello", "at least 100 ms"),
        (np.full(16000, np.nan, np.float32), 16000, "hello", "NaN"),
        (audio, sr, " ... ", "empty"),
        (audio, 0, "hello", "sample_rate"),
    ]
    for wav, rate, text, fragment in cases:
        with pytest.raises(AlignmentError) as err:
            align(wav, rate, text)
        assert fragment in str(err.value) and "\n" not in str(err.value)


def test_words_normalises_the_transcript():
    assert words("He said: \"Don't!\" -- then 'left'.") == ["he", "said", "don't", "then", "left"]
