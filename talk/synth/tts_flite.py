"""Text-to-speech with exact phone timings: Flite (CMU's small Festival) voices, run as a subprocess.

``flite -psdur`` prints every segment of the Segment relation with its end time (``hh:0.302 iy:0.422 ...``)
while it writes the wave, so every phone boundary of the audio is known exactly; ``t2p``, from the same
package and front end, prints the same phones with the stress of their syllables (``iy1``). A fresh process
per sentence keeps the output independent of what was spoken before.

Voices (all compiled into Debian's ``flite`` 2.2 package): ``kal`` (8 kHz) and ``kal16`` (16 kHz), US male
diphone voices; ``awb`` (Scottish English male), ``rms`` (US male) and ``slt`` (US female), clustergen
statistical voices trained on the CMU ARCTIC recordings of those speakers. ``rms`` draws its F0 from its own
model and ignores the pitch target, so it keeps its own pitch. ``sudo apt-get install flite`` or ``make
speech-engines`` installs them.

Licences: Flite and its voices are under CMU's BSD-like licence (use, modify and redistribute with the
copyright notice kept and modifications marked; Debian's copyright file lists a few build scripts under the
GPL, which are not part of the installed programs). ``talk`` does not ship or link Flite: it runs the
installed ``flite`` and ``t2p`` programs; the audio they produce is not covered by their licence.
"""

from __future__ import annotations

import functools
import re
import shutil
import tempfile
from pathlib import Path

from talk.synth.festival_phones import Segment, segments_to_phones, transfer_stress
from talk.synth.phones import check_order
from talk.synth.tts import TTSError, TTSResult
from talk.synth.tts_festival import EngineVoiceInfo, check_args, check_end, missing, read_wave, run_engine

VOICES: dict[str, EngineVoiceInfo] = {
    v.name: v
    for v in (
        EngineVoiceInfo("kal", "M", "flite", 95.0, 1.1),
        EngineVoiceInfo("kal16", "M", "flite", 95.0, 1.1),
        EngineVoiceInfo("awb", "M", "flite", 125.0),
        EngineVoiceInfo("rms", "M", "flite", None),
        EngineVoiceInfo("slt", "F", "flite", 170.0),
    )
}
_SEGMENT = re.compile(r"^([a-z#]+):(-?[0-9.]+)$")


@functools.lru_cache(maxsize=1)
def _installed() -> tuple[str, ...]:
    with tempfile.TemporaryDirectory(prefix="talk-flite-") as tmp:
        done = run_engine(["flite", "-lv"], "flite", Path(tmp))
    listing = done.stdout.decode("utf-8", "replace").split(":", 1)[-1]
    return tuple(sorted(listing.split()))


def voices() -> list[str]:
    """The supported Flite voices that are installed (see ``VOICES``), sorted.

    Raises:
        EngineMissingError: ``flite`` is not installed.
    """
    return [v for v in _installed() if v in VOICES]


@functools.lru_cache(maxsize=1)
def version() -> str:
    """Flite's version (``"flite-2.2-current Sep 2018"``), which with the voices decides the audio."""
    with tempfile.TemporaryDirectory(prefix="talk-flite-") as tmp:
        done = run_engine(["flite", "--version"], "flite", Path(tmp), check=False)  # exits 1
    m = re.search(r"version:\s*(.+?)\s*(\(|$)", done.stdout.decode("utf-8", "replace"), re.MULTILINE)
    return m.group(1) if m else "unknown"


def _parse_segments(stdout: bytes) -> list[Segment]:
    out = []
    for token in stdout.decode("utf-8", "replace").split():
        m = _SEGMENT.match(token)
        if m is not None:
            out.append(Segment(m.group(1), float(m.group(2))))
    return out


def _stressed_phones(text: str, cwd: Path) -> list[str]:
    """t2p's phones of ``text`` (``["pau", "hh", "iy1", ...]``); empty when t2p is missing."""
    if shutil.which("t2p") is None:
        return []
    return run_engine(["t2p", text], "flite", cwd).stdout.decode("utf-8", "replace").split()


def synthesize(
    text: str,
    voice: str = "slt",
    stretch: float = 1.0,
    pitch: float | None = None,
    sample_rate: int = 16000,
    stress: bool = False,
) -> TTSResult:
    """Speaks ``text`` with a Flite voice and reports the time line of the phones spoken.

    The audio starts with Flite's sentence-initial pause (0.1-0.25 s) and ends with its final pause.

    Args:
        text: English text (punctuation shapes pauses and intonation).
        voice: A Flite voice, see :func:`voices` and ``VOICES``.
        stretch: Duration factor relative to the voice's own speed, 0.5-2 (>1 is slower).
        pitch: Mean F0 in Hz, 50-400, for voices with an ``f0`` in ``VOICES``; None keeps the voice's own.
        sample_rate: Sampling rate of the returned audio in Hz (resampled from the voice's own).
        stress: Mark vowels with CMUdict stress digits (1 stressed, 0 not; Flite's lexicon has no secondary
            stress), from ``t2p``.

    Raises:
        TTSError: Empty text, an unknown voice, or stretch / pitch out of range.
        EngineMissingError: ``flite`` or the voice is not installed.
    """
    if voice not in VOICES:
        raise TTSError(f"unknown Flite voice {voice!r}; supported voices: {', '.join(VOICES)}")
    info = VOICES[voice]
    check_args(text, stretch, pitch, sample_rate, info)
    if voice not in _installed():
        raise missing(f"the Flite voice {voice}", info.package)
    text = " ".join(text.split())
    args = ["flite", "-voice", voice, "--setf", f"duration_stretch={info.stretch * stretch:.6f}"]
    if pitch is not None:
        args += ["--setf", f"int_f0_target_mean={pitch:.3f}"]
    with tempfile.TemporaryDirectory(prefix="talk-flite-") as tmp:
        wav = Path(tmp) / "out.wav"
        done = run_engine([*args, "-psdur", "-t", text, "-o", str(wav)], "flite", Path(tmp))
        audio = read_wave(wav, int(sample_rate), "flite")
        segments = _parse_segments(done.stdout)
        if stress:
            segments = transfer_stress(segments, _stressed_phones(text, Path(tmp)))
    duration = len(audio) / int(sample_rate)
    check_end(segments, duration, "flite")
    phones = segments_to_phones(segments, duration, stress=stress, source=f"flite ({voice})")
    check_order(phones, "flite output")
    return TTSResult(audio, int(sample_rate), phones, voice)
