"""Real-language training speech: English sentences spoken by espeak-ng, with the face motion of their phones.

The synthetic voice (``talk.synth.voice``) is one source-filter model, and models trained on it alone do not
transfer to human voices. This set keeps the same faces and articulation but speaks English text: each
synthetic speaker gets an espeak-ng voice (accent, sex-matched variant, rate, pitch), the engine reports the
exact time of every phone it speaks, ``to_utterance`` maps them onto the synthetic inventory and
``utterance_motion`` turns them into the speaker's face, exactly as ``talk data synth`` does for its own voice.
The audio (not the motion) is then degraded at random: noise, room reverb, band limiting, level.

Written in the layout of ``talk data synth`` (same subject names, so the synthetic configs train on it by
changing ``data.init_args.root``), plus the phone time lines:

    out_dir/wav/, vertices_npy/, flame/, templates.pkl, face_model.pkl, FLAME_masks.pkl, flame_manifest.jsonl
    out_dir/phones/<SUBJECT>_sentenceNN.lab   start end phone (seconds, CMUdict labels, stress digits, "sil")
    out_dir/speech_config.json                the settings the files depend on (checked when resuming)
    out_dir/speech_meta.json                  speakers, voices, per-sequence text, voice and augmentation

Determinism: espeak-ng keeps state in C statics from one call to the next (a pitch-flutter phase that is
never reset, the glottal phase), so a sentence comes out a few samples and milliseconds different depending
on what the process spoke before, and it seeds its noise from the clock. Each sentence is therefore spoken
by a freshly loaded library with a seeded noise generator (:func:`talk.synth.tts.reset`), which makes every file
byte-identical for a given seed and espeak-ng build, whatever the number of workers or the order of the jobs.

``engines`` adds Festival and Flite, whose voices are built from human recordings (``talk.synth.speech_engines``
says which engine and voice speaks each sentence); they run as one process per sentence, deterministic too.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from motion.face.procedural.face import (
    LANDMARKS_FILENAME,
    MASKS_FILENAME,
    MODEL_FILENAME,
    write_procedural_face,
)
from talk.errors import UserError
from talk.files import atomic_write, write_atomic, write_text_atomic
from talk.synth import speech_engines, tts
from talk.synth.augment import apply_augmentation, draw_augmentation
from talk.synth.face import calibrate_lip_contact, lip_pairs, load_face
from talk.synth.phones import Phone, fill_silence, to_utterance, write_lab
from talk.synth.speakers import SpeakerProfile, make_speaker
from talk.synth.speech_engines import DEFAULT_ENGINES, EngineVoice
from talk.synth.writer import (
    FACE_SEED,
    FPS,
    N_SHAPE,
    flame_manifest,
    neutral_template,
    sequence_name,
    utterance_motion,
)

VERSION = 1
SPEECH_STREAM = 3  # random-stream tag (speakers.py uses 1 and 2)
CONFIG_FILE, META_FILE = "speech_config.json", "speech_meta.json"
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "anika", "belinda", "linda",
                   "steph")  # fmt: skip
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "Andy", "Denis", "Lee", "antonio", "michel", "miguel",
                 "travis", "victor", "john", "paul", "robert")  # fmt: skip
RATE_WPM, PITCH = (140, 200), (35, 65)  # a speaker's base rate and espeak pitch; sentences vary around them
LEAD_SILENCE, TRAIL_SILENCE = (0.1, 0.3), (0.0, 0.15)  # seconds added before and after the engine's audio
PEAK = 0.5  # the clean speech is scaled to this peak (as the synthetic voice)
SPEAKER_BLOCK = 30  # speaker i reads the shuffled sentences from i * SPEAKER_BLOCK on


class SpeechSetError(UserError, ValueError):
    """Invalid arguments to the speech-set writer, or an output folder written with other settings."""


@dataclass(frozen=True)
class TTSVoice:
    """An espeak-ng voice identity: accent voice, variant, rate (words per minute) and pitch (0-99)."""

    voice: str
    variant: str
    rate: int
    pitch: int


def speaker_voice(seed: int, speaker: SpeakerProfile, accents: list[str], variants: list[str]) -> TTSVoice:
    """The TTS voice of ``speaker``: an English accent and a variant of the speaker's sex, drawn from the seed.

    Args:
        seed: Dataset seed.
        speaker: The synthetic speaker (its sex picks female or male variants).
        accents: English espeak-ng voices (``tts.voices()``).
        variants: Installed variants (``tts.variants()``).
    """
    rng = np.random.default_rng([seed, speaker.index, SPEECH_STREAM])
    pool = [v for v in (FEMALE_VARIANTS if speaker.sex == "F" else MALE_VARIANTS) if v in variants]
    if not pool or not accents:
        raise SpeechSetError("the installed espeak-ng has no English voice or no f1-f5/m1-m7 variants.")
    accent, variant = accents[int(rng.integers(len(accents)))], pool[int(rng.integers(len(pool)))]
    rate, pitch = int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1)), int(rng.integers(PITCH[0], PITCH[1] + 1))
    return TTSVoice(accent, variant, rate, pitch)


def load_sentences() -> tuple[str, ...]:
    """The shipped English sentences (Harvard sentences, public domain), one per non-comment line."""
    text = resources.files("talk.synth").joinpath("sentences_en.txt").read_text(encoding="utf-8")
    return tuple(ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))


def sentence_text(sentences: tuple[str, ...], seed: int, speaker_index: int, sentence: int) -> str:
    """Sentence ``sentence`` of speaker ``speaker_index``: a seed-shuffled list read from a speaker's block
    onwards, so up to 10 speakers x ``SPEAKER_BLOCK`` sentences are all different, whatever the counts."""
    order = np.random.default_rng([seed, SPEECH_STREAM]).permutation(len(sentences))
    return sentences[int(order[(speaker_index * SPEAKER_BLOCK + sentence) % len(sentences)])]


def sentence_voice(identity: TTSVoice, rng: np.random.Generator) -> TTSVoice:
    """The voice of one sentence: the speaker's, its rate varied by +-10 words per minute and its pitch by +-4."""
    rate, pitch = identity.rate + int(rng.integers(-10, 11)), identity.pitch + int(rng.integers(-4, 5))
    return TTSVoice(identity.voice, identity.variant, rate, int(np.clip(pitch, 0, 99)))


# ------------------------------------------------------------------------------------------------ one sequence
@dataclass(frozen=True)
class SpokenSentence:
    """A sentence spoken by a TTS voice, with silence added around it and its length snapped to frames.

    Args:
        phones: Phone time line covering ``[0, N / sample_rate]`` (CMUdict labels with stress digits, "sil").
        audio: ``[N]`` float32 clean speech (peak ``PEAK``), ``N = round(frames / FPS * sample_rate)``.
        sample_rate: Audio sampling rate.
    """

    phones: list[Phone]
    audio: np.ndarray
    sample_rate: int


def speak_sentence(
    text: str, voice: TTSVoice | EngineVoice, rng: np.random.Generator, sample_rate: int
) -> SpokenSentence:
    """Speaks ``text`` with a freshly loaded espeak-ng (or Festival / Flite) and places it between ``LEAD_SILENCE``
    and ``TRAIL_SILENCE`` (the engine's audio itself starts within about 50 ms and ends with a sentence pause).

    Args:
        text: English sentence.
        voice: The voice of this sentence: an espeak-ng voice, or a Festival / Flite one.
        rng: Draws the silences and espeak-ng's noise seed.
        sample_rate: Audio sampling rate.
    """
    noise_seed = int(rng.integers(1, 2**31 - 1))
    if isinstance(voice, EngineVoice):
        spoken = speech_engines.synthesize(voice, text, sample_rate)
    else:
        tts.reset(noise_seed)
        spoken = tts.synthesize(
            text, voice.voice, voice.rate, voice.pitch, voice.variant, sample_rate, stress=True
        )
    n_lead = int(round(rng.uniform(*LEAD_SILENCE) * sample_rate))
    frames = int(round((n_lead / sample_rate + spoken.duration + rng.uniform(*TRAIL_SILENCE)) * FPS))
    n = int(round(frames / FPS * sample_rate))
    clean = spoken.audio[: n - n_lead]
    audio = np.zeros(n, dtype=np.float32)
    audio[n_lead : n_lead + len(clean)] = clean * (PEAK / max(float(np.abs(clean).max(initial=0.0)), 1e-9))
    shift = n_lead / sample_rate
    shifted = [Phone(p.label, p.start + shift, p.end + shift) for p in spoken.phones]
    return SpokenSentence(fill_silence(shifted, n / sample_rate), audio, sample_rate)


# ----------------------------------------------------------------------------------------------------- dataset
@dataclass(frozen=True)
class SpeechSetSummary:
    """What ``write_speech_set`` did.

    Args:
        out_dir: Dataset root.
        subjects: Subject names ("SYN_01_F", ...).
        n_sequences: Sequences in the set.
        written: Sequences synthesized by this run (the others were complete already).
        total_seconds: Total audio duration of the set.
        elapsed_seconds: Wall time of this run.
    """

    out_dir: Path
    subjects: tuple[str, ...]
    n_sequences: int
    written: int
    total_seconds: float
    elapsed_seconds: float


@dataclass(frozen=True)
class _Job:
    """One sequence to write; its random streams derive from (seed, speaker, sentence) only."""

    root: str
    speaker: SpeakerProfile
    voice: TTSVoice | EngineVoice
    text: str
    seed: int
    sentence: int
    sample_rate: int
    augment: bool
    tagged: bool = False  # records name the engine and voice (any engines but espeak alone)

    @property
    def name(self) -> str:
        return sequence_name(self.speaker, self.sentence)

    def path(self, kind: str) -> Path:
        folder, ext = {"wav": ("wav", "wav"), "npy": ("vertices_npy", "npy"), "npz": ("flame", "npz"),
                       "lab": ("phones", "lab")}[kind]  # fmt: skip
        return Path(self.root) / folder / f"{self.name}.{ext}"

    def stream(self, k: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.speaker.index, self.sentence, SPEECH_STREAM, k])


_WORKER: dict = {}  # per-process face model and lip contacts


def _init_worker(root: str) -> None:
    torch.set_num_threads(1)
    if _WORKER.get("root") != root:  # a forked worker inherits the parent's loaded face
        face = load_face(Path(root) / "face_model.pkl", N_SHAPE)
        _WORKER.update(root=root, face=face, lips=lip_pairs(Path(root) / "FLAME_masks.pkl"), contact={})


def _write_job(job: _Job) -> bool:
    """Synthesizes and writes one sequence unless its files exist; returns whether it wrote them."""
    if all(job.path(kind).is_file() for kind in ("npz", "lab", "npy", "wav")):
        return False
    spk, face = job.speaker, _WORKER["face"]
    if spk.name not in _WORKER["contact"]:
        _WORKER["contact"][spk.name] = calibrate_lip_contact(face, np.asarray(spk.shape), *_WORKER["lips"])
    spoken = speak_sentence(job.text, job.voice, job.stream(1), job.sample_rate)
    utterance = to_utterance(spoken.phones, len(spoken.audio) / job.sample_rate, FPS)
    motion = utterance_motion(face, spk, utterance, job.stream(2), _WORKER["contact"][spk.name])
    audio = spoken.audio
    if job.augment:
        rng = job.stream(3)
        audio = apply_augmentation(audio, job.sample_rate, draw_augmentation(rng, job.sample_rate), rng)
    # Every file is written atomically and the wav last: a sequence whose four files exist is complete.
    with atomic_write(job.path("npz")) as f:
        np.savez(f, expression=motion.expression.astype(np.float32), jaw=motion.jaw_pose.astype(np.float32),
                 shape=np.asarray(spk.shape, dtype=np.float32))  # fmt: skip
    write_lab(job.path("lab"), spoken.phones)
    write_atomic(job.path("npy"), lambda f: np.save(f, motion.vertices.reshape(len(motion.vertices), -1)))
    with atomic_write(job.path("wav")) as f:
        sf.write(f, audio, job.sample_rate, format="WAV", subtype="PCM_16")
    return True


def _record(job: _Job) -> dict:
    """speech_meta.json's record of a written sequence, from its files and the seed (a resumed run agrees)."""
    frames = int(np.load(job.path("npy"), mmap_mode="r").shape[0])
    aug = draw_augmentation(job.stream(3), job.sample_rate).to_json() if job.augment else {}
    return {"name": job.name, "subject": job.speaker.name, "sentence": f"sentence{job.sentence + 1:02d}",
            "text": job.text, **speech_engines.voice_record(job.voice, job.tagged), "frames": frames,
            "duration": round(frames / FPS, 6), "samples": sf.info(str(job.path("wav"))).frames,
            "augmentation": aug}  # fmt: skip


def _check(root: Path, counts: dict[str, int], sample_rate: int, config: dict) -> None:
    if root.exists() and not root.is_dir():
        raise SpeechSetError(f"out_dir '{root}' is a file; pass a directory path for the dataset.")
    for name, value in counts.items():
        if not 1 <= value <= 99:
            raise SpeechSetError(f"{name}={value}; pass a number between 1 and 99.")
    if not 8000 <= sample_rate <= 48000:
        raise SpeechSetError(
            f"sample_rate={sample_rate}; pass a rate between 8000 and 48000 Hz (16000 is usual)."
        )
    if (root / CONFIG_FILE).is_file():
        old = json.loads((root / CONFIG_FILE).read_text())
        keys = [*config, *(k for k in old if k not in config)]  # (a key of other engines counts too)
        diff = [f"{k}={old.get(k)!r} (not {config.get(k)!r})" for k in keys if old.get(k) != config.get(k)]
        if diff:
            raise SpeechSetError(f"{root} was written with {', '.join(diff)}; pass the same settings to resume "
                                 "it, or choose a new --out.")  # fmt: skip
    elif any(any((root / sub).glob("*")) for sub in ("wav", "vertices_npy") if (root / sub).is_dir()):
        raise SpeechSetError(
            f"{root} holds a dataset that `talk data speech` did not write; choose a new --out."
        )


def _run(jobs: list[_Job], root: Path, workers: int, progress: bool) -> int:
    """Runs the jobs in this process or a pool (fork: torch and scipy are not imported again); returns the
    number written."""
    bar = tqdm(total=len(jobs), desc="speaking", unit="seq", disable=not progress)
    written = 0
    if workers == 1:
        for job in jobs:
            written += _write_job(job)
            bar.update()
    else:
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with mp.get_context(method).Pool(workers, _init_worker, (str(root),)) as pool:
            for done in pool.imap(_write_job, jobs, chunksize=1):
                written += done
                bar.update()
    bar.close()
    return written


def write_speech_set(
    out_dir: str | Path,
    speakers: int = 10,
    sentences: int = 20,
    seed: int = 0,
    workers: int = 2,
    sample_rate: int = 16000,
    augment: bool = True,
    progress: bool = True,
    engines: str | Sequence[str] = DEFAULT_ENGINES,
) -> SpeechSetSummary:
    """Writes the TTS speech set (see the module docstring), or completes one written with the same settings.

    Args:
        out_dir: Dataset root; created if missing. Sequences whose files exist are kept, not synthesized again.
        speakers: Number of speakers (sexes alternate F, M, ...; the faces of ``talk data synth`` with the seed).
        sentences: Sentences per speaker (Harvard sentences, 1.5-4 s each).
        seed: Seed of everything (same seed and espeak-ng build -> byte-identical files).
        workers: Processes synthesizing sequences in parallel (1 = in this process).
        sample_rate: Audio sampling rate of the wav files.
        augment: Degrade the audio at random (reverb, noise, band limit, level); the motion is the same.
        progress: Show a progress bar on stderr.
        engines: TTS engines that share the sentences, ``"espeak,festival,flite"`` or a sequence of those
            names (see ``talk.synth.speech_engines``); Festival and Flite are Debian packages.

    Raises:
        SpeechSetError: Bad arguments, a folder written with other settings, or espeak-ng not installed.
        EngineMissingError: Festival or Flite (or all of its voices) is listed but not installed.
    """
    start = time.perf_counter()
    root = Path(out_dir)
    try:
        engines = speech_engines.parse_engines(engines)
    except ValueError as e:
        raise SpeechSetError(str(e)) from None
    config: dict = {"version": VERSION, "seed": seed, "sample_rate": sample_rate, "augment": augment}
    accents, variants = [], []  # (the espeak voices, only looked up when espeak speaks)
    if "espeak" in engines:
        try:
            accents, variants = tts.voices(), tts.variants()
            engine = metadata.version("espeakng-loader")  # its espeak-ng build decides the audio
        except metadata.PackageNotFoundError:  # (an ImportError too) importable, not installed as a package
            engine = "unknown"
        except ImportError as e:
            raise SpeechSetError(str(e).splitlines()[0]) from e
        config["espeakng_loader"] = engine
    engine_voices = {e: speech_engines.installed_voices(e) for e in engines if e != "espeak"}
    if engines != DEFAULT_ENGINES:  # (the keys of an espeak-only set stay as they were)
        config.update(engines=",".join(engines), **speech_engines.engine_config(engines))
    _check(root, {"speakers": speakers, "sentences": sentences, "workers": workers}, sample_rate, config)
    write_text_atomic(root / CONFIG_FILE, json.dumps(config, indent=1, sort_keys=True))
    if not all((root / f).is_file() for f in (MODEL_FILENAME, MASKS_FILENAME, LANDMARKS_FILENAME)):
        write_procedural_face(root, seed=FACE_SEED)  # (kept when resuming: the written motion used it)
    profiles = [make_speaker(seed, i, N_SHAPE) for i in range(speakers)]
    texts = load_sentences()
    jobs, speaker_meta, tagged = [], [], engines != DEFAULT_ENGINES
    for spk in profiles:
        identity = speaker_voice(seed, spk, accents, variants) if "espeak" in engines else None
        others = speech_engines.speaker_voices([seed, spk.index, SPEECH_STREAM], spk.sex, engine_voices)
        speaker_meta.append(speech_engines.speaker_record(spk.to_json(), identity, others))
        for j in range(sentences):
            voice = speech_engines.sentence_voice(  # (None on espeak's turn)
                [seed, spk.index, SPEECH_STREAM], j, engines, others
            ) or sentence_voice(identity, np.random.default_rng([seed, spk.index, j, SPEECH_STREAM, 0]))
            text = sentence_text(texts, seed, spk.index, j)
            jobs.append(_Job(str(root), spk, voice, text, seed, j, sample_rate, augment, tagged))
    threads = torch.get_num_threads()
    try:
        _init_worker(str(root))
        templates = {spk.name: neutral_template(_WORKER["face"], spk) for spk in profiles}
        written = _run(jobs, root, workers, progress)
    finally:
        torch.set_num_threads(threads)
    write_atomic(root / "templates.pkl", lambda f: pickle.dump(templates, f, protocol=2))
    old = json.loads((root / META_FILE).read_text())["sequences"] if (root / META_FILE).is_file() else []
    records = [_record(job) for job in jobs] + [r for r in old if r.get("source")]  # (talk.synth.recordings)
    meta = {**config, "fps": FPS, "face_seed": FACE_SEED, "speakers": speaker_meta, "sequences": records}
    write_text_atomic(root / META_FILE, json.dumps(meta, indent=1, sort_keys=True))
    write_text_atomic(root / "flame_manifest.jsonl", flame_manifest(records, [spk.name for spk in profiles]))
    total = float(sum(r["duration"] for r in records))
    return SpeechSetSummary(root, tuple(p.name for p in profiles), len(records), written, total,
                            time.perf_counter() - start)  # fmt: skip
