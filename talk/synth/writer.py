"""Writes the synthetic talking-face dataset in the VOCASET processed layout.

    out_dir/wav/<SUBJECT>_sentenceNN.wav            16 kHz mono PCM16
    out_dir/vertices_npy/<SUBJECT>_sentenceNN.npy   float32 [T, V*3], 60 fps, metres
    out_dir/templates.pkl                           {subject: [V,3]} neutral mesh (latin1-readable, protocol
    2) out_dir/face_model.pkl, out_dir/FLAME_masks.pkl the procedural FLAME-format face (shared topology)
    out_dir/flame/<SUBJECT>_sentenceNN.npz          the same motion as FLAME parameters (expression [T,Ne],
                                                    jaw [T,3], shape [Ns]), 60 fps
    out_dir/flame_manifest.jsonl                    a manifest of the wav + .npz pairs (talk.data.ManifestDataModule)
                                                    with the synthetic configs' speaker split: the last two
                                                    speakers test, the two before them val, the rest train
    out_dir/arkit_rig.npz, arkit/, arkit_manifest.jsonl   the same motion as ARKit-52 weights of the head's rig
    out_dir/BFM_model_front.mat, bfm/, bfm_manifest.jsonl the same motion as BFM coefficients (Deep3DFaceRecon
                                                    layout); both in :mod:`talk.synth.face_formats`
    out_dir/synth_meta.json                         seed, speakers, per-sequence phonemes and timings

Every sequence is synthesized from its own random streams derived from (seed, speaker, sentence), so the
output is byte-identical for a given seed whatever the number of workers or the order they finish in.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from motion.face.procedural.face import EXPRESSION_NAMES, write_procedural_face
from talk.errors import UserError
from talk.files import atomic_write, write_atomic, write_text_atomic
from talk.synth.articulation import (
    ArticulatoryTrajectory,
    LipContact,
    build_trajectory,
    draw_idle_motion,
    face_controls,
)
from talk.synth.face import JawFace, calibrate_lip_contact, lip_pairs, load_face
from talk.synth.face_formats import (
    arkit_weights,
    coefficient_manifest,
    solve_arkit,
    write_arkit_rig,
    write_bfm,
)
from talk.synth.phonemes import CLOSURE_FRACTION, Utterance, generate_utterance
from talk.synth.speakers import SENTENCE_STREAM, SpeakerProfile, make_speaker
from talk.synth.voice import synthesize_voice

FPS = 60
VERSION = 1
N_SHAPE = 20  # leading shape coefficients that vary between speakers
FACE_SEED = 0  # every synthetic dataset shares one procedural face topology


class SynthesisError(UserError, ValueError):
    """Invalid arguments to the dataset generator."""


@dataclass(frozen=True)
class SynthSummary:
    """What ``synthesize_dataset`` wrote.

    Args:
        out_dir: Dataset root.
        subjects: Subject names, e.g. ("SYN_01_F", "SYN_02_M").
        n_sequences: Number of (wav, npy) pairs.
        total_seconds: Total audio duration.
        elapsed_seconds: Wall time of the generation.
        files: Every file written.
        total_bytes: Sum of their sizes.
    """

    out_dir: Path
    subjects: tuple[str, ...]
    n_sequences: int
    total_seconds: float
    elapsed_seconds: float
    files: tuple[Path, ...]
    total_bytes: int = 0


@dataclass(frozen=True)
class Sequence:
    """One synthesized sentence held in memory.

    Args:
        name: "<SUBJECT>_sentenceNN".
        utterance: Phoneme segments.
        audio: ``[N]`` float32 waveform.
        sample_rate: Audio sampling rate.
        vertices: ``[T, V, 3]`` float32 mesh per 60 fps frame, metres.
        expression: ``[T, n_expression]`` expression coefficients used for the mesh.
        jaw_pose: ``[T, 3]`` jaw axis-angle used for the mesh.
    """

    name: str
    utterance: Utterance
    audio: np.ndarray
    sample_rate: int
    vertices: np.ndarray
    expression: np.ndarray
    jaw_pose: np.ndarray


def neutral_template(face: JawFace, speaker: SpeakerProfile) -> np.ndarray:
    """The speaker's neutral mesh (zero expression, zero jaw), ``[V, 3]`` float32."""
    return face(np.asarray(speaker.shape), np.zeros((1, face.n_expression)), np.zeros((1, 3)))[0]


def sequence_name(speaker: SpeakerProfile, sentence: int) -> str:
    """File stem of sentence ``sentence`` (0-based) of ``speaker``: "SYN_01_F_sentence01"."""
    return f"{speaker.name}_sentence{sentence + 1:02d}"


def synthesize_sequence(
    face: JawFace,
    speaker: SpeakerProfile,
    seed: int,
    sentence: int,
    sample_rate: int = 16000,
    contact: LipContact | None = None,
) -> Sequence:
    """Synthesizes one sentence: audio and meshes from one articulatory trajectory.

    Args:
        face: Loaded face model.
        speaker: The speaker.
        seed: Dataset seed.
        sentence: 0-based sentence index.
        sample_rate: Audio sampling rate.
        contact: The speaker's calibrated lip contact (``calibrate_lip_contact``); None drives lip_press
            with the closure directly.
    """

    def stream(k: int) -> np.random.Generator:
        return np.random.default_rng([seed, speaker.index, sentence, SENTENCE_STREAM, k])

    utterance = generate_utterance(stream(0), rate=speaker.rate, fps=FPS)
    trajectory = build_trajectory(utterance, speaker)
    voice = synthesize_voice(utterance, trajectory, speaker, stream(1), sample_rate)
    motion = utterance_motion(face, speaker, utterance, stream(2), contact, trajectory)
    return Sequence(
        sequence_name(speaker, sentence),
        utterance,
        voice.audio,
        sample_rate,
        motion.vertices,
        motion.expression,
        motion.jaw_pose,
    )


@dataclass(frozen=True)
class Motion:
    """The face motion of one utterance at ``FPS``.

    Args:
        vertices: ``[T, V, 3]`` float32 mesh per frame, metres (``T = round(duration * FPS)``).
        expression: ``[T, n_expression]`` expression coefficients used for the mesh.
        jaw_pose: ``[T, 3]`` jaw axis-angle used for the mesh.
    """

    vertices: np.ndarray
    expression: np.ndarray
    jaw_pose: np.ndarray


def utterance_motion(
    face: JawFace,
    speaker: SpeakerProfile,
    utterance: Utterance,
    idle_rng: np.random.Generator,
    contact: LipContact | None = None,
    trajectory: ArticulatoryTrajectory | None = None,
) -> Motion:
    """The speaker's face saying ``utterance``: articulation plus idle motion (blinks, brows), sampled at ``FPS``.

    Args:
        face: Loaded face model.
        speaker: The speaker (articulation style and head shape).
        utterance: Phoneme segments, synthetic or mapped from real phone timings (``talk.synth.phones``).
        idle_rng: Source of the idle motion.
        contact: The speaker's calibrated lip contact; None drives lip_press with the closure directly.
        trajectory: ``build_trajectory(utterance, speaker)`` when the caller already has it.
    """
    trajectory = build_trajectory(utterance, speaker) if trajectory is None else trajectory
    n_frames = int(round(utterance.duration * FPS))
    times = np.arange(n_frames) / FPS
    idle = draw_idle_motion(idle_rng, speaker, utterance.duration)
    controls = face_controls(trajectory, idle, times, EXPRESSION_NAMES, face.n_expression, contact)
    verts = face(np.asarray(speaker.shape), controls.expression, controls.jaw_pose)
    return Motion(verts, controls.expression, controls.jaw_pose)


# Per-process state of the worker pool (the face model is loaded once per process).
_WORKER: dict = {}


def _init_worker(out_dir: str) -> None:
    torch.set_num_threads(1)
    if _WORKER.get("root") == out_dir:  # a forked worker inherits the parent's loaded face
        return
    _WORKER["root"] = out_dir
    _WORKER["face"] = load_face(Path(out_dir) / "face_model.pkl", N_SHAPE)
    _WORKER["lips"] = lip_pairs(Path(out_dir) / "FLAME_masks.pkl")
    _WORKER["contact"] = {}
    with np.load(Path(out_dir) / "arkit_rig.npz") as rig:
        _WORKER["arkit_deltas"] = torch.from_numpy(rig["deltas"])


def _contact(speaker: SpeakerProfile) -> LipContact:
    if speaker.name not in _WORKER["contact"]:
        _WORKER["contact"][speaker.name] = calibrate_lip_contact(
            _WORKER["face"], np.asarray(speaker.shape), *_WORKER["lips"]
        )
    return _WORKER["contact"][speaker.name]


def _write_job(job: tuple[str, SpeakerProfile, int, int, int]) -> dict:
    out_dir, speaker, seed, sentence, sample_rate = job
    seq = synthesize_sequence(_WORKER["face"], speaker, seed, sentence, sample_rate, _contact(speaker))
    root = Path(out_dir)
    wav = root / "wav" / f"{seq.name}.wav"
    npy = root / "vertices_npy" / f"{seq.name}.npy"
    # Every file goes through a temporary one, so a killed run never leaves a truncated file under a final name.
    with atomic_write(wav) as f:
        sf.write(f, seq.audio, sample_rate, format="WAV", subtype="PCM_16")
    write_atomic(npy, lambda f: np.save(f, seq.vertices.reshape(len(seq.vertices), -1)))
    npz = root / "flame" / f"{seq.name}.npz"
    with atomic_write(npz) as f:
        np.savez(f, expression=seq.expression.astype(np.float32), jaw=seq.jaw_pose.astype(np.float32),
                 shape=np.asarray(speaker.shape, dtype=np.float32))  # fmt: skip
    template = neutral_template(_WORKER["face"], speaker)
    weights, arkit_mean, arkit_max = solve_arkit(_WORKER["arkit_deltas"], template, seq.vertices)
    arkit = root / "arkit" / f"{seq.name}.npz"
    arkit_weights(arkit, weights)
    return {
        "name": seq.name,
        "subject": speaker.name,
        "sentence": f"sentence{sentence + 1:02d}",
        "duration": round(seq.utterance.duration, 6),
        "frames": int(len(seq.vertices)),
        "samples": int(len(seq.audio)),
        "phonemes": seq.utterance.text,
        "segments": [[s.symbol, round(s.start, 5), round(s.end, 5)] for s in seq.utterance.segments],
        "arkit_error_mm": [arkit_mean, arkit_max, int(seq.vertices.shape[0] * seq.vertices.shape[1])],
        "files": [str(wav), str(npy), str(npz), str(arkit)],
    }


def speaker_split(subjects: list[str]) -> dict[str, str]:
    """The synthetic configs' split: the last two speakers test, the two before them val, the rest train."""
    n = len(subjects)
    return {s: "test" if i >= n - 2 else "val" if i >= n - 4 else "train" for i, s in enumerate(subjects)}


def flame_manifest(records: list[dict], subjects: list[str]) -> str:
    """jsonl lines pairing each wav with its FLAME-parameter file (paths relative to the dataset root), split by
    :func:`speaker_split`."""
    return coefficient_manifest(records, speaker_split(subjects), "flame", FPS)


def _check_args(out_dir: Path, speakers: int, sentences: int, workers: int, sample_rate: int) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise SynthesisError(f"out_dir '{out_dir}' is a file; pass a directory path for the dataset.")
    if not 1 <= speakers <= 99:
        raise SynthesisError(f"speakers={speakers}; pass a number between 1 and 99.")
    if not 1 <= sentences <= 99:
        raise SynthesisError(f"sentences={sentences}; pass a number between 1 and 99 (names are sentenceNN).")
    if workers < 1:
        raise SynthesisError(f"workers={workers}; pass 1 (in-process) or more.")
    if not 8000 <= sample_rate <= 48000:
        raise SynthesisError(
            f"sample_rate={sample_rate}; pass a rate between 8000 and 48000 Hz (16000 is usual)."
        )


def synthesize_dataset(
    out_dir: str | Path,
    speakers: int = 10,
    sentences: int = 20,
    seed: int = 0,
    workers: int = 2,
    sample_rate: int = 16000,
    progress: bool = True,
) -> SynthSummary:
    """Generates the synthetic talking-face dataset (no licensed assets needed).

    Args:
        out_dir: Dataset root; created if missing, existing files of the same names are overwritten.
        speakers: Number of synthetic speakers (sexes alternate F, M, ...).
        sentences: Sentences per speaker (1.5-3.5 s each).
        seed: Seed of everything (same seed -> byte-identical wav and npy files).
        workers: Processes synthesizing sequences in parallel (1 = in this process).
        sample_rate: Audio sampling rate of the wav files.
        progress: Show a progress bar on stderr.
    """
    start = time.perf_counter()
    root = Path(out_dir)
    _check_args(root, speakers, sentences, workers, sample_rate)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    (root / "vertices_npy").mkdir(parents=True, exist_ok=True)
    for folder in ("flame", "arkit", "bfm"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    face_paths = write_procedural_face(root, seed=FACE_SEED)
    write_arkit_rig(root, FACE_SEED)
    profiles = [make_speaker(seed, i, N_SHAPE) for i in range(speakers)]

    jobs = [(str(root), spk, seed, j, sample_rate) for spk in profiles for j in range(sentences)]
    threads = torch.get_num_threads()
    records: list[dict] = []
    try:
        _init_worker(str(root))  # the parent needs the face for templates anyway
        templates = {spk.name: neutral_template(_WORKER["face"], spk) for spk in profiles}
        bar = tqdm(total=len(jobs), desc="synthesizing", unit="seq", disable=not progress)
        if workers == 1:
            for job in jobs:
                records.append(_write_job(job))
                bar.update()
        else:
            # fork is cheap (no re-import of torch); each worker uses one thread (torch threads are set in the
            # initializer, and intra-op parallelism is what is unsafe after fork).
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            with mp.get_context(method).Pool(workers, _init_worker, (str(root),)) as pool:
                for rec in pool.imap(_write_job, jobs, chunksize=1):
                    records.append(rec)
                    bar.update()
        bar.close()
    finally:
        torch.set_num_threads(threads)

    write_atomic(root / "templates.pkl", lambda f: pickle.dump(templates, f, protocol=2))
    subjects = [spk.name for spk in profiles]
    split = speaker_split(subjects)
    bfm_files, bfm_mean, bfm_max = write_bfm(
        root, records, templates, {spk.name: np.asarray(spk.shape, np.float32) for spk in profiles},
        [s for s in subjects if split[s] == "train"], FACE_SEED,
    )  # fmt: skip
    arkit_err = np.array([r.pop("arkit_error_mm") for r in records], np.float64)
    meta = {
        "version": VERSION,
        "seed": seed,
        "fps": FPS,
        "sample_rate": sample_rate,
        "face_seed": FACE_SEED,
        "plosive_closure_fraction": CLOSURE_FRACTION,
        "expression_names": list(EXPRESSION_NAMES),
        "arkit_error_mm": {
            "mean": round(float((arkit_err[:, 0] * arkit_err[:, 2]).sum() / arkit_err[:, 2].sum()), 5),
            "max": round(float(arkit_err[:, 1].max()), 4),
        },
        "bfm_error_mm": {"mean": round(bfm_mean, 5), "max": round(bfm_max, 4)},
        "speakers": [spk.to_json() for spk in profiles],
        "sequences": [{k: v for k, v in rec.items() if k != "files"} for rec in records],
    }
    write_text_atomic(root / "synth_meta.json", json.dumps(meta, indent=1, sort_keys=True))
    manifest = root / "flame_manifest.jsonl"
    write_text_atomic(manifest, flame_manifest(records, subjects))
    manifests = [manifest]
    for kind in ("arkit", "bfm"):
        manifests.append(root / f"{kind}_manifest.jsonl")
        write_text_atomic(manifests[-1], coefficient_manifest(records, split, kind, FPS))

    files = [Path(f) for rec in records for f in rec["files"]] + bfm_files
    files += [root / "templates.pkl", root / "synth_meta.json", root / "arkit_rig.npz", *manifests]
    files += [Path(getattr(face_paths, f.name)) for f in dataclasses.fields(face_paths)]
    return SynthSummary(
        out_dir=root,
        subjects=tuple(spk.name for spk in profiles),
        n_sequences=len(records),
        total_seconds=float(sum(rec["duration"] for rec in records)),
        elapsed_seconds=time.perf_counter() - start,
        files=tuple(files),
        total_bytes=int(sum(f.stat().st_size for f in files)),
    )
