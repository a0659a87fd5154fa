"""Text-to-speech with exact phone timings: Festival voices built from human recordings, run as a subprocess.

Each call runs ``festival -b`` on a generated Scheme script that selects the voice, sets its speed and pitch,
synthesizes the sentence, saves the wave and writes the Segment relation (radio phone name, end time, stress
of the syllable) to a file; ``talk.synth.festival_phones`` turns the segments into an ARPAbet time line. A
fresh process per sentence keeps the output independent of what was spoken before: the same arguments give
the same samples, in any order and any worker.

Voices (Debian bookworm packages; the voice data are recordings of one speaker each): ``kal_diphone``
(festvox-kallpc16k, US male, residual-excited LPC diphones), ``ked_diphone`` (festvox-kdlpc16k, US male
diphones) and ``cmu_us_slt_arctic_hts`` (festvox-us-slt-hts, US female, an HTS statistical voice trained on
the CMU ARCTIC "slt" recordings). Festival 2.5 drives the HTS voice through hts_engine API 1.07, which takes
the speaking rate but no pitch shift, so that voice keeps its own pitch. ``sudo apt-get install festival
festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts`` or ``make speech-engines`` installs them.

Licences: Festival and the Edinburgh Speech Tools are under a BSD-like licence (use, modify and redistribute
with the copyright notice kept and modifications marked), as are the three voices and the CMU lexicon
(festlex-cmu; the HTS voice adds NITECH's BSD-3-clause files). ``talk`` does not ship or link them: it runs
the installed ``festival`` program; the audio it produces is not covered by them.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

from talk.errors import UserError
from talk.synth.festival_phones import Segment, segments_to_phones
from talk.synth.phones import PAUSE, check_order
from talk.synth.tts import TTSError, TTSResult

STRETCH_RANGE = (0.5, 2.0)  # duration factor relative to the voice's own speed
PITCH_RANGE = (50.0, 400.0)  # mean F0 in Hz
INSTALL = "sudo apt-get install flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"
_TIMEOUT = 120.0  # seconds a single sentence may take (the HTS voice speaks ~20x faster than real time)
_END_SLACK = 0.03  # the last spoken phone may end this far past the audio (diphone joins)


class EngineMissingError(UserError, RuntimeError):
    """A speech engine or one of its voices is not installed."""


@dataclass(frozen=True)
class EngineVoiceInfo:
    """A voice of a Festival-family engine.

    Args:
        name: The engine's name of the voice (``"kal_diphone"``, ``"slt"``).
        sex: ``"F"`` or ``"M"``, the recorded speaker's.
        package: Debian package that installs it.
        f0: Approximate mean F0 in Hz of the voice's own intonation, or None when the engine cannot change its
            pitch (then ``synthesize(pitch=...)`` is refused).
        stretch: The voice's own duration factor; ``synthesize(stretch=s)`` speaks at ``s`` times it.
    """

    name: str
    sex: str
    package: str
    f0: float | None
    stretch: float = 1.0


VOICES: dict[str, EngineVoiceInfo] = {
    v.name: v
    for v in (
        EngineVoiceInfo("kal_diphone", "M", "festvox-kallpc16k", 105.0, 1.1),
        EngineVoiceInfo("ked_diphone", "M", "festvox-kdlpc16k", 105.0, 1.1),
        EngineVoiceInfo("cmu_us_slt_arctic_hts", "F", "festvox-us-slt-hts", None),
    )
}


def missing(program: str, package: str) -> EngineMissingError:
    """The one-line error for a program or voice that is not installed."""
    return EngineMissingError(
        f"{program} is not installed (Debian package {package}); install it with `{INSTALL}` or `make "
        "speech-engines`"
    )


def run_engine(args: list[str], package: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Runs an engine program; a missing program is an :class:`EngineMissingError`, a failure (non-zero exit
    status, unless ``check`` is False) a RuntimeError."""
    if shutil.which(args[0]) is None:
        raise missing(args[0], package)
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, timeout=_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"{args[0]} took over {_TIMEOUT:.0f} s for one sentence") from e
    if check and done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{args[0]} failed with status {done.returncode}: {' | '.join(tail)}")
    return done


def read_wave(path: Path, sample_rate: int, program: str) -> np.ndarray:
    """An engine's wav file as float32 ``[N]`` at ``sample_rate`` (polyphase resampling from its own rate)."""
    import soundfile as sf

    if not path.is_file():
        raise RuntimeError(f"{program} wrote no audio (is the voice installed and working?)")
    audio, source = sf.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if source != sample_rate:
        from scipy.signal import resample_poly

        g = gcd(int(source), sample_rate)
        audio = resample_poly(audio, sample_rate // g, int(source) // g)
    return np.ascontiguousarray(audio, dtype=np.float32)


def check_args(
    text: str, stretch: float, pitch: float | None, sample_rate: int, info: EngineVoiceInfo
) -> None:
    """Raises :class:`TTSError` for empty text or values out of range (shared by the Festival-family engines)."""
    if not text.strip():
        raise TTSError("text to synthesize is empty; pass the sentence to speak")
    if not STRETCH_RANGE[0] <= stretch <= STRETCH_RANGE[1]:
        raise TTSError(f"stretch must be {STRETCH_RANGE[0]}-{STRETCH_RANGE[1]}, got {stretch}")
    if pitch is not None and info.f0 is None:
        raise TTSError(f"voice {info.name} cannot change its pitch; pass pitch=None")
    if pitch is not None and not PITCH_RANGE[0] <= pitch <= PITCH_RANGE[1]:
        raise TTSError(f"pitch must be {PITCH_RANGE[0]:.0f}-{PITCH_RANGE[1]:.0f} Hz, got {pitch}")
    if sample_rate <= 0 or sample_rate != int(sample_rate):
        raise TTSError(f"sample_rate must be a positive whole number of Hz, got {sample_rate}")


def check_end(segments: list[Segment], duration: float, program: str) -> None:
    """Raises RuntimeError unless the last spoken segment ends within the audio (the timings describe it)."""
    speech = [s for s in segments if s.name not in ("pau", "h#", "brth", "ssil", PAUSE)]
    if not speech:
        raise RuntimeError(f"{program} spoke no phones")
    if speech[-1].end > duration + _END_SLACK:
        raise RuntimeError(
            f"{program} reported phones up to {speech[-1].end:.3f} s but its audio lasts {duration:.3f} s"
        )


def _scheme_string(text: str) -> str:
    return '"' + " ".join(text.split()).replace("\\", "\\\\").replace('"', '\\"') + '"'


@functools.lru_cache(maxsize=1)
def _installed() -> tuple[str, ...]:
    with tempfile.TemporaryDirectory(prefix="talk-festival-") as tmp:
        out = Path(tmp) / "voices.txt"
        script = Path(tmp) / "list.scm"
        script.write_text(f'(set! fd (fopen {_scheme_string(str(out))} "w"))\n(format fd "%l" (voice.list))\n'
                          "(fclose fd)\n")  # fmt: skip
        run_engine(["festival", "-b", str(script)], "festival", Path(tmp))
        names = out.read_text().strip().strip("()").split() if out.is_file() else []
    return tuple(sorted(names))


def voices() -> list[str]:
    """The supported Festival voices that are installed (see ``VOICES``), sorted.

    Raises:
        EngineMissingError: ``festival`` is not installed.
    """
    return [v for v in _installed() if v in VOICES]


@functools.lru_cache(maxsize=1)
def version() -> str:
    """Festival's version line (``"2.5.0:release December 2017"``), which with the voices decides the audio."""
    with tempfile.TemporaryDirectory(prefix="talk-festival-") as tmp:
        done = run_engine(["festival", "--version"], "festival", Path(tmp))
    return done.stdout.decode("utf-8", "replace").strip().rsplit(": ", 1)[-1].strip() or "unknown"


def _script(
    text: str, info: EngineVoiceInfo, stretch: float, pitch: float | None, wav: Path, segs: Path
) -> str:
    lines = [f"(voice_{info.name})"]
    if info.name.endswith("_hts"):  # hts_engine's speaking rate: >1 is faster
        lines.append(
            f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {1.0 / stretch:.6f}))))'
        )
    else:
        lines.append(f"(Parameter.set 'Duration_Stretch (* {stretch:.6f} (Parameter.get 'Duration_Stretch)))")
    if pitch is not None:  # the int_lr intonation model's target mean, its spread scaled along
        lines.append(
            f"(set! int_lr_params (list (list 'target_f0_mean {pitch:.3f}) (list 'target_f0_std (* {pitch:.3f} "
            "(/ (cadr (assoc 'target_f0_std int_lr_params)) (cadr (assoc 'target_f0_mean int_lr_params))))) "
            "(assoc 'model_f0_mean int_lr_params) (assoc 'model_f0_std int_lr_params)))"
        )
    lines += [
        f"(set! utt (utt.synth (Utterance Text {_scheme_string(text)})))",
        f"(utt.save.wave utt {_scheme_string(str(wav))} 'riff)",
        f'(set! fd (fopen {_scheme_string(str(segs))} "w"))',
        '(mapcar (lambda (s) (format fd "%s %f %s\\n" (item.name s) (item.feat s "end") '
        '(item.feat s "R:SylStructure.parent.stress"))) (utt.relation.items utt \'Segment))',
        "(fclose fd)",
    ]
    return "\n".join(lines) + "\n"


def _read_segments(path: Path) -> list[Segment]:
    if not path.is_file():
        raise RuntimeError("festival wrote no segments (is the voice installed and working?)")
    out = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) == 3:
            out.append(
                Segment(fields[0], float(fields[1]), fields[2] if fields[2] in ("0", "1", "2") else "")
            )
    return out


def synthesize(
    text: str,
    voice: str = "kal_diphone",
    stretch: float = 1.0,
    pitch: float | None = None,
    sample_rate: int = 16000,
    stress: bool = False,
) -> TTSResult:
    """Speaks ``text`` with a Festival voice and reports the time line of the phones spoken.

    The audio starts with Festival's sentence-initial pause (about 0.2 s) and ends with its final pause.

    Args:
        text: English text (punctuation shapes pauses and intonation).
        voice: A Festival voice, see :func:`voices` and ``VOICES``.
        stretch: Duration factor relative to the voice's own speed, 0.5-2 (>1 is slower).
        pitch: Mean F0 in Hz, 50-400, for voices with an ``f0`` in ``VOICES``; None keeps the voice's own.
        sample_rate: Sampling rate of the returned audio in Hz (resampled from the voice's own).
        stress: Mark vowels with CMUdict stress digits from Festival's syllable stress.

    Raises:
        TTSError: Empty text, an unknown voice, or stretch / pitch out of range.
        EngineMissingError: ``festival`` or the voice is not installed.
    """
    if voice not in VOICES:
        raise TTSError(f"unknown Festival voice {voice!r}; supported voices: {', '.join(VOICES)}")
    info = VOICES[voice]
    check_args(text, stretch, pitch, sample_rate, info)
    if voice not in _installed():
        raise missing(f"the Festival voice {voice}", info.package)
    with tempfile.TemporaryDirectory(prefix="talk-festival-") as tmp:
        wav, segs, script = Path(tmp) / "out.wav", Path(tmp) / "out.segs", Path(tmp) / "say.scm"
        script.write_text(_script(text, info, stretch, pitch, wav, segs), encoding="utf-8")
        done = run_engine(["festival", "-b", str(script)], "festival", Path(tmp))
        if not segs.is_file():  # festival -b reports Scheme errors on stderr and exits 0
            err = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"festival could not speak {text!r} with {voice}: {err[0]}")
        audio = read_wave(wav, int(sample_rate), "festival")
        segments = _read_segments(segs)
    duration = len(audio) / int(sample_rate)
    check_end(segments, duration, "festival")
    phones = segments_to_phones(segments, duration, stress=stress, source=f"festival ({voice})")
    check_order(phones, "festival output")
    return TTSResult(audio, int(sample_rate), phones, voice)
