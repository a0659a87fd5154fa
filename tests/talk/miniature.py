"""A miniature, faithful copy of the VOCASET processed layout for tests (tiny mesh, short clips)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
V = 12
LIPS = np.array([0, 1, 2, 3])
UPPER = np.array([8, 9, 10, 11])


def write_miniature(root: Path, subjects: dict[str, int], seconds: float = 0.6, seed: int = 0) -> Path:
    """Writes ``wav/``, ``vertices_npy/`` (60 fps, ``[T, V*3]``), ``templates.pkl`` and ``FLAME_masks.pkl``.

    Args:
        subjects: subject name -> number of sentences (sentence01..).
    """
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    (root / "vertices_npy").mkdir(parents=True, exist_ok=True)
    templates = {}
    for s, (subject, n) in enumerate(subjects.items()):
        template = rng.normal(size=(V, 3)).astype(np.float32) * 0.05
        templates[subject] = template
        for k in range(1, n + 1):
            n_samples = int(seconds * SR)
            t = np.arange(n_samples) / SR
            envelope = 0.5 + 0.5 * np.sin(2 * np.pi * (1.5 + s + k) * t)
            wav = (0.3 * envelope * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
            sf.write(root / "wav" / f"{subject}_sentence{k:02d}.wav", wav, SR, subtype="PCM_16")
            frames = int(round(seconds * 60))
            ft = np.arange(frames) / 60
            open_amount = 0.5 + 0.5 * np.sin(2 * np.pi * (1.5 + s + k) * ft)
            verts = np.repeat(template[None], frames, axis=0)
            verts[:, LIPS, 1] -= 0.01 * open_amount[:, None]
            np.save(root / "vertices_npy" / f"{subject}_sentence{k:02d}.npy", verts.reshape(frames, V * 3))
    with open(root / "templates.pkl", "wb") as f:
        pickle.dump(templates, f, protocol=2)
    with open(root / "FLAME_masks.pkl", "wb") as f:
        pickle.dump(
            {"lips": LIPS, "forehead": UPPER[:2], "eye_region": UPPER[2:], "face": np.arange(V)},
            f,
            protocol=2,
        )
    return root


# ---------------------------------------------------------------------------------------- release-format replicas
def py2_pickle_dumps(obj: object) -> bytes:
    """Pickles ``obj`` with the opcodes Python 2 (protocol 2) and its numpy emitted.

    Python 2 ``str`` becomes ``SHORT_BINSTRING``/``BINSTRING`` (raw bytes, no encoding recorded), and numpy arrays
    are ``numpy.core.multiarray._reconstruct`` + a ``BUILD`` whose payload is such a byte string. Python 3 can only
    read this with ``encoding="latin1"``, exactly like the VOCASET and FLAME pickles. Supports dict, str, int,
    float, bool, None, tuple, list and numpy arrays.
    """
    import struct

    out = bytearray(b"\x80\x02")

    def binstring(raw: bytes) -> None:
        if len(raw) < 256:
            out.extend(b"U" + bytes([len(raw)]) + raw)
        else:
            out.extend(b"T" + struct.pack("<i", len(raw)) + raw)

    def write(o: object) -> None:
        if o is None:
            out.extend(b"N")
        elif isinstance(o, bool | np.bool_):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int | np.integer):
            out.extend(b"J" + struct.pack("<i", int(o)))
        elif isinstance(o, float | np.floating):
            out.extend(b"G" + struct.pack(">d", float(o)))
        elif isinstance(o, str):
            binstring(o.encode("latin1"))
        elif isinstance(o, tuple):
            out.extend(b"(")
            for item in o:
                write(item)
            out.extend(b"t")
        elif isinstance(o, list):
            out.extend(b"](")
            for item in o:
                write(item)
            out.extend(b"e")
        elif isinstance(o, dict):
            out.extend(b"}(")
            for k, v in o.items():
                write(k)
                write(v)
            out.extend(b"u")
        elif isinstance(o, np.ndarray):
            a = np.ascontiguousarray(o)
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            write((0,))
            binstring(b"b")
            out.extend(b"\x87R(")  # TUPLE3, REDUCE, then the BUILD state
            write(1)
            write(tuple(a.shape))
            out.extend(b"cnumpy\ndtype\n")
            binstring(a.dtype.str[1:].encode())
            write(0)
            write(1)
            out.extend(b"\x87R(")
            write(3)
            binstring(a.dtype.str[:1].encode())
            out.extend(b"NNN")
            write(-1)
            write(-1)
            write(0)
            out.extend(b"tb\x89")  # dtype state built; is_fortran False
            binstring(a.tobytes())
            out.extend(b"tb")
        else:  # pragma: no cover - test helper
            raise TypeError(f"py2_pickle_dumps cannot write {type(o).__name__}")

    write(obj)
    out.extend(b".")
    return bytes(out)


RAW_V = 9  # vertices of the miniature VOCASET release
RAW_SR = 22000


def write_vocaset_release(
    root: Path,
    subjects: dict[str, int],
    *,
    frames: int = 20,
    gap: str | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Writes a miniature VOCASET release: ``data_verts.npy``, ``raw_audio_fixed.pkl``, ``subj_seq_to_idx.pkl``,
    ``templates.pkl`` with the published dtypes (float32 vertices, int16 audio at 22 kHz) and key structure.

    Sequences are stored in ``data_verts`` in shuffled order and each index dict is filled in reverse frame
    order, so only a converter that follows the frame numbers gets the rows right.

    Args:
        subjects: subject -> number of sentences (``sentence01`` ...).
        frames: 60 fps frames per sequence (sequence k of a subject has ``frames + k`` frames).
        gap: Name ``<SUBJECT>_<sentenceNN>`` of a sequence whose frame number 3 is missing from its index dict.

    Returns:
        ``{name: expected float32 [T, RAW_V * 3]}`` in frame order (the gap frame left out), plus
        ``{name + ".wav": int16 audio}``.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = [(s, f"sentence{k:02d}", frames + k) for s in subjects for k in range(1, subjects[s] + 1)]
    order = rng.permutation(len(names))
    rows_per_seq = [n for _, _, n in names]
    starts = np.zeros(len(names), np.int64)
    offset = 0
    for i in order:  # shuffled placement in data_verts
        starts[i] = offset
        offset += rows_per_seq[i]
    verts = rng.normal(size=(offset, RAW_V, 3)).astype(np.float32) * 0.01
    templates = {s: (rng.normal(size=(RAW_V, 3)) * 0.05).astype(np.float64) for s in subjects}
    index: dict[str, dict[str, dict[int, int]]] = {s: {} for s in subjects}
    audio: dict[str, dict[str, dict[str, object]]] = {s: {} for s in subjects}
    expected: dict[str, np.ndarray] = {}
    for i, (subject, sentence, n) in enumerate(names):
        name = f"{subject}_{sentence}"
        verts[starts[i] : starts[i] + n] += templates[subject].astype(np.float32)
        numbers = [f for f in range(n) if not (name == gap and f == 3)]
        index[subject][sentence] = {f: int(starts[i] + f) for f in reversed(numbers)}
        expected[name] = verts[[starts[i] + f for f in numbers]].reshape(len(numbers), RAW_V * 3)
        t = np.arange(int(n / 60 * RAW_SR)) / RAW_SR
        wav = 8000 * np.sin(2 * np.pi * (150 + 20 * i) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
        audio[subject][sentence] = {"audio": wav.astype(np.int16), "sample_rate": RAW_SR}
        expected[name + ".wav"] = wav.astype(np.int16)
    np.save(root / "data_verts.npy", verts)
    (root / "subj_seq_to_idx.pkl").write_bytes(py2_pickle_dumps(index))
    (root / "raw_audio_fixed.pkl").write_bytes(py2_pickle_dumps(audio))
    (root / "templates.pkl").write_bytes(py2_pickle_dumps(templates))
    return expected


BIWI_V = 15  # vertices of the miniature BIWI meshes (the real ones have 23370)
BIWI_LIPS = np.array([0, 1, 2, 3, 4])
BIWI_UPPER = np.array([10, 11, 12, 13, 14])


def write_biwi_miniature(
    root: Path, subjects: list[str], sentences: list[int], seconds: float = 0.4, seed: int = 0
) -> Path:
    """Writes the FaceFormer/CodeTalker BIWI layout in miniature: ``wav/<S>_eNN.wav`` (16 kHz PCM_16),
    ``vertices_npy/<S>_eNN.npy`` (float32 ``[T, V*3]`` at 25 fps), ``templates.pkl`` (py2-style latin1 pickle),
    CodeTalker's ``regions/lve.txt`` and ``regions/fdd.txt`` ("2, 6, 21, ..." format) and ``BIWI.ply``.
    """
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    (root / "vertices_npy").mkdir(parents=True, exist_ok=True)
    (root / "regions").mkdir(exist_ok=True)
    templates = {}
    frames = int(round(seconds * 25))
    for subject in subjects:
        template = (rng.normal(size=(BIWI_V, 3)) * 0.05).astype(np.float32)
        templates[subject] = template
        for k in sentences:
            t = np.arange(int(seconds * SR)) / SR
            wav = (0.3 * np.sin(2 * np.pi * (120 + 7 * k) * t)).astype(np.float32)
            sf.write(root / "wav" / f"{subject}_e{k:02d}.wav", wav, SR, subtype="PCM_16")
            verts = template[None] + rng.normal(size=(frames, BIWI_V, 3)).astype(np.float32) * 0.002
            np.save(root / "vertices_npy" / f"{subject}_e{k:02d}.npy", verts.reshape(frames, BIWI_V * 3))
    (root / "templates.pkl").write_bytes(py2_pickle_dumps(templates))
    (root / "regions" / "lve.txt").write_text(", ".join(str(i) for i in BIWI_LIPS))
    (root / "regions" / "fdd.txt").write_text(", ".join(str(i) for i in BIWI_UPPER))
    write_fan_ply(root / "BIWI.ply", next(iter(templates.values())))
    return root


def write_fan_ply(path: Path, vertices: np.ndarray) -> np.ndarray:
    """Writes an ascii ``.ply`` of ``vertices [V, 3]`` meshed as a fan around vertex 0; returns its faces."""
    faces = np.array([(0, i, i + 1) for i in range(1, len(vertices) - 1)], dtype=np.int64)
    ply = ["ply", "format ascii 1.0", f"element vertex {len(vertices)}", "property float x", "property float y",
           "property float z", f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]  # fmt: skip
    ply += [" ".join(f"{c:.6f}" for c in v) for v in vertices]
    ply += [f"3 {a} {b} {c}" for a, b, c in faces]
    path.write_text("\n".join(ply) + "\n")
    return faces
