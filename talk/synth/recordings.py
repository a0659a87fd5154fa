"""Real recordings as training pairs of a TTS speech set: ``talk data speech --out DIR --recordings FOLDER``.

A folder of recordings, ``<name>.wav`` (any format :func:`audio.io.load_audio` reads) each with either phone labels
``<name>.lab`` (``start end phone`` in seconds, or any format :func:`talk.synth.phones.read_lab` reads) or a
transcript ``<name>.txt``, which the project's forced aligner (:func:`talk.synth.aligner.align`, the acoustic model
of the pocketsphinx wheel) turns into phone labels. Each recording is resampled to the set's rate and animated
like a TTS sentence: its phone time line becomes the face motion of a training speaker through the articulatory
model (:func:`talk.synth.writer.utterance_motion`, the speaker's calibrated lip contact), and it joins the set as
the next sentences of the training speakers in turn (``SYN_01_F_sentence21``, ``SYN_02_M_sentence21``, ... in the
order of the sorted names), with ``phones/<name>.lab``, vertices, FLAME parameters, a ``speech_meta.json`` record
(``source``: the original file) and its manifest line. The audio is kept as recorded (no degradation).

Resumable like the rest of the set (a sequence whose files exist is kept), deterministic (sorted names, seeded
idle motion). Train on them by widening ``data.init_args.train_sentences``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from talk.errors import UserError
from talk.files import atomic_write, write_atomic, write_text_atomic
from talk.synth.phones import Phone, fill_silence, read_lab, to_utterance, write_lab
from talk.synth.speakers import make_speaker
from talk.synth.writer import FPS, N_SHAPE, flame_manifest, sequence_name, speaker_split, utterance_motion

RECORDING_STREAM = 4  # random-stream tag (speakers.py uses 1 and 2, the TTS sentences 3)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


class RecordingsError(UserError, ValueError):
    """The recordings folder or the speech set it is added to cannot be used."""


@dataclass(frozen=True)
class Recording:
    """One recording and what says which phones it holds."""

    name: str
    audio: Path
    labels: Path | None
    transcript: Path | None


def find_recordings(folder: str | Path) -> list[Recording]:
    """The recordings of ``folder`` in name order; a one-line error for a recording with neither labels nor a
    transcript, or a folder without recordings."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RecordingsError(f"--recordings {folder} is not a folder; pass a folder of <name>.wav with <name>.txt "
                              "transcripts or <name>.lab phone labels.")  # fmt: skip
    out = []
    for audio in sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES):
        lab, txt = audio.with_suffix(".lab"), audio.with_suffix(".txt")
        if not lab.is_file() and not txt.is_file():
            raise RecordingsError(f"{audio} has neither {lab.name} (phone labels) nor {txt.name} (its transcript); "
                                  "add one, or move the recording out of the folder.")  # fmt: skip
        out.append(Recording(audio.stem, audio, lab if lab.is_file() else None, txt if txt.is_file() else None))
    if not out:
        raise RecordingsError(f"--recordings {folder} holds no audio ({', '.join(AUDIO_SUFFIXES)}).")
    return out


def phone_labels(recording: Recording, audio: np.ndarray, sample_rate: int) -> list[Phone]:
    """The recording's phone time line covering its audio: its labels, or its transcript force-aligned."""
    duration = len(audio) / sample_rate
    if recording.labels is not None:
        return fill_silence(read_lab(recording.labels, stress=True), duration)
    from talk.synth.aligner import align

    text = recording.transcript.read_text(encoding="utf-8").strip()
    if not text:
        raise RecordingsError(f"{recording.transcript} is empty; write what {recording.audio.name} says.")
    return align(audio, sample_rate, text)


def add_recordings(out_dir: str | Path, folder: str | Path, progress: bool = True) -> int:
    """Adds the recordings of ``folder`` to the speech set at ``out_dir`` (module docstring); returns how many
    were written now.

    Raises:
        RecordingsError: No speech set at ``out_dir``, a recording without labels or transcript, too many
            recordings for the sentence numbering.
        UserError: Unreadable audio or labels (from the readers), an alignment that fails.
    """
    from audio.io import load_audio
    from talk.synth.face import calibrate_lip_contact, lip_pairs, load_face
    from talk.synth.speech_set import CONFIG_FILE, META_FILE

    root = Path(out_dir)
    if not (root / META_FILE).is_file():
        raise RecordingsError(f"{root} holds no speech set ({META_FILE}); `talk data speech --out {root}` writes one.")
    recordings = find_recordings(folder)
    config = json.loads((root / CONFIG_FILE).read_text())
    meta = json.loads((root / META_FILE).read_text())
    seed, rate = int(config["seed"]), int(config["sample_rate"])
    subjects = [s["name"] for s in meta["speakers"]]
    profiles = {s: make_speaker(seed, i, N_SHAPE) for i, s in enumerate(subjects)}
    train = [s for s, split in speaker_split(subjects).items() if split == "train"]
    if not train:
        raise RecordingsError(f"{root} has {len(subjects)} speakers and none for training; write it with 5 or more.")
    tts = [r for r in meta["sequences"] if r.get("source") is None]
    first = max(int(r["sentence"][len("sentence"):]) for r in tts)  # 1-based: the recordings follow
    if first + -(-len(recordings) // len(train)) > 99:
        raise RecordingsError(f"{len(recordings)} recordings do not fit sentence numbers up to 99 over "
                              f"{len(train)} training speakers; add fewer at a time.")  # fmt: skip
    face = load_face(root / "face_model.pkl", N_SHAPE)
    lips = lip_pairs(root / "FLAME_masks.pkl")
    contacts: dict = {}
    records, written = [], 0
    for k, rec in enumerate(tqdm(recordings, desc="recordings", unit="rec", disable=not progress)):
        spk = profiles[train[k % len(train)]]
        sentence = first + k // len(train)  # 0-based index of the sentence after the TTS ones
        name = sequence_name(spk, sentence)
        paths = {kind: root / folder_ / f"{name}.{ext}" for kind, (folder_, ext) in
                 {"wav": ("wav", "wav"), "npy": ("vertices_npy", "npy"), "npz": ("flame", "npz"),
                  "lab": ("phones", "lab")}.items()}  # fmt: skip
        if not all(p.is_file() for p in paths.values()):
            audio = load_audio(rec.audio, rate)
            phones = phone_labels(rec, audio, rate)
            if spk.name not in contacts:
                contacts[spk.name] = calibrate_lip_contact(face, np.asarray(spk.shape), *lips)
            utterance = to_utterance(phones, len(audio) / rate, FPS)
            rng = np.random.default_rng([seed, spk.index, sentence, RECORDING_STREAM])
            motion = utterance_motion(face, spk, utterance, rng, contacts[spk.name])
            with atomic_write(paths["npz"]) as f:
                np.savez(f, expression=motion.expression.astype(np.float32), jaw=motion.jaw_pose.astype(np.float32),
                         shape=np.asarray(spk.shape, dtype=np.float32))  # fmt: skip
            write_lab(paths["lab"], phones)
            write_atomic(paths["npy"], lambda f, v=motion.vertices: np.save(f, v.reshape(len(v), -1)))
            with atomic_write(paths["wav"]) as f:  # the wav last: a sequence whose four files exist is complete
                sf.write(f, audio, rate, format="WAV", subtype="PCM_16")
            written += 1
        frames = int(np.load(paths["npy"], mmap_mode="r").shape[0])
        records.append({"name": name, "subject": spk.name, "sentence": f"sentence{sentence + 1:02d}",
                        "source": str(rec.audio), "labels": "labels" if rec.labels else "aligned transcript",
                        "frames": frames, "duration": round(frames / FPS, 6),
                        "samples": sf.info(str(paths["wav"])).frames})  # fmt: skip
    meta["sequences"] = tts + records
    write_text_atomic(root / META_FILE, json.dumps(meta, indent=1, sort_keys=True))
    write_text_atomic(root / "flame_manifest.jsonl", flame_manifest(meta["sequences"], subjects))
    return written
