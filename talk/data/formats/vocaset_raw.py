"""Converts the VOCASET release (as downloaded from voca.is.tue.mpg.de) to the processed layout.

Release files (DESIGN.md §5), read exactly as published::

    data_verts.npy        float32 [N, V, 3], every captured frame of every sequence at 60 fps (about 7 GB)
    raw_audio_fixed.pkl   {subject: {"sentenceNN": {"audio": int16 [S], "sample_rate": 22000}}}
    subj_seq_to_idx.pkl   {subject: {"sentenceNN": {frame number: row of data_verts}}}
    templates.pkl         {subject: [V, 3]}

The pickles were written by Python 2, so they are read with ``encoding="latin1"`` (which is what turns Python 2
``str`` keys into text and lets numpy rebuild the arrays' byte payloads), and through the restricted unpickler of
:mod:`motion.face.pickles`, which admits numpy data only: a pickle naming any other global is refused, unrun.
``data_verts.npy`` is memory-mapped and only one sequence's rows are copied at a time, so the conversion needs
memory for one sequence, not 7 GB.

Output (what :class:`talk.data.formats.vocaset.VocasetDataModule` reads)::

    <out>/wav/<SUBJECT>_<sentenceNN>.wav             int16 PCM at the audio's own sample rate
    <out>/vertices_npy/<SUBJECT>_<sentenceNN>.npy    float32 [T, V*3] at 60 fps
    <out>/templates.pkl                              {subject: [V, 3]} (protocol 2, like the release)

Frames are written in increasing frame-number order of the index dict. A gap in the frame numbers is reported
as a warning and the frames that exist are written back to back, as the FaceFormer/CodeTalker preprocessing does,
so that metrics stay comparable with published numbers. Every file is written to a hidden temporary file and
renamed into place, so a killed run never leaves a half-written output that a later run would take as finished.
"""

from __future__ import annotations

import io
import pickle
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf
from tqdm import tqdm

from talk.errors import DatasetError
from talk.files import write_atomic

RELEASE_FILES = ("data_verts.npy", "raw_audio_fixed.pkl", "subj_seq_to_idx.pkl", "templates.pkl")
_RELEASE_HINT = (
    "the VOCASET release (voca.is.tue.mpg.de, 'Training Data') ships data_verts.npy, raw_audio_fixed.pkl, "
    "subj_seq_to_idx.pkl and templates.pkl in one folder; pass that folder as --raw"
)
_PARTIAL = ".partial"  # suffix of in-progress files: never matched by the *.npy / *.wav globs of the loaders


class VocasetConversionError(DatasetError):
    """The release files are missing or malformed, or an output would be silently overwritten."""


class VocasetConversionWarning(UserWarning):
    """A sequence was skipped or converted with missing frames; the conversion continued."""


@dataclass(frozen=True)
class ConversionSummary:
    """What :func:`convert_vocaset` did.

    Attributes:
        out_dir: The processed-layout folder.
        subjects: Subjects converted.
        written: Sequences whose files were (re)written in this run.
        skipped: Sequences whose files already existed with identical content.
        frames: 60 fps frames of all converted sequences (written and skipped).
        audio_seconds: Seconds of audio of all converted sequences.
        warnings: One line per problem that did not stop the conversion (missing audio, frame gaps, ...).
        elapsed_seconds: Wall-clock time.
    """

    out_dir: Path
    subjects: tuple[str, ...]
    written: int
    skipped: int
    frames: int
    audio_seconds: float
    warnings: tuple[str, ...]
    elapsed_seconds: float

    @property
    def sequences(self) -> int:
        """Sequences present in the output after this run (written + skipped)."""
        return self.written + self.skipped


# ------------------------------------------------------------------------------------------------ release files
def _text(key: Any) -> str:
    return key.decode("latin1") if isinstance(key, bytes) else str(key)


def _load_pickle(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise VocasetConversionError(f"{path.name} not found in {path.parent}; {_RELEASE_HINT}.")
    from motion.face.pickles import UnsafePickleError, load_pickle, refusal_message

    try:
        data = load_pickle(path)
    except UnsafePickleError as exc:
        raise VocasetConversionError(refusal_message(path, "VOCASET", exc)) from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a damaged or foreign file
        raise VocasetConversionError(
            f"{path} is not a readable VOCASET pickle ({type(exc).__name__}: {exc}); download it again."
        ) from None
    if not isinstance(data, dict) or not data:
        raise VocasetConversionError(
            f"{path} must hold a non-empty dict keyed by subject; download it again."
        )
    return {_text(k): v for k, v in data.items()}


def _open_verts(path: Path) -> np.ndarray:
    if not path.is_file():
        raise VocasetConversionError(f"{path.name} not found in {path.parent}; {_RELEASE_HINT}.")
    try:
        verts = np.load(path, mmap_mode="r")  # never read whole: it is about 7 GB
    except Exception as exc:  # noqa: BLE001
        raise VocasetConversionError(
            f"{path} is not a readable .npy file ({type(exc).__name__}: {exc}); download it again."
        ) from None
    if verts.ndim != 3 or verts.shape[2] != 3:
        raise VocasetConversionError(
            f"{path} has shape {tuple(verts.shape)}; expected [frames, vertices, 3] as in the VOCASET release."
        )
    return verts


@dataclass(frozen=True)
class _Job:
    subject: str
    sentence: str
    frames: dict[Any, Any]

    @property
    def name(self) -> str:
        return f"{self.subject}_{self.sentence}"


# ----------------------------------------------------------------------------------------------- atomic output
def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Writes through a hidden temporary file in the same folder (ending in ``.partial``), renamed into place."""
    write_atomic(path, write, suffix=_PARTIAL)


def _same_npy(path: Path, rows: np.ndarray) -> bool:
    try:
        existing = np.load(path, mmap_mode="r")
    except Exception:  # noqa: BLE001 - an unreadable file is a different file
        return False
    return existing.dtype == rows.dtype and existing.shape == rows.shape and np.array_equal(existing, rows)


def _wav_bytes(audio: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _same_wav(path: Path, audio: np.ndarray, rate: int) -> bool:
    try:
        existing, existing_rate = sf.read(path, dtype="int16", always_2d=False)
    except Exception:  # noqa: BLE001
        return False
    if existing_rate != rate:
        return False
    # Compare decoded samples (not bytes): a file written by another tool with the same samples is the same data.
    expected, _ = sf.read(io.BytesIO(_wav_bytes(audio, rate)), dtype="int16", always_2d=False)
    return existing.shape == expected.shape and np.array_equal(existing, expected)


def _conflict(path: Path) -> VocasetConversionError:
    return VocasetConversionError(
        f"{path} already exists with different content; pass --overwrite (overwrite=True) to replace it, or "
        "choose another --out folder."
    )


# ------------------------------------------------------------------------------------------------- conversion
def _write_templates(path: Path, templates: dict[str, Any], subjects: Sequence[str], overwrite: bool) -> None:
    new = {s: np.asarray(templates[s]) for s in subjects if s in templates}
    if path.exists():
        from motion.face.pickles import load_pickle

        try:
            loaded = load_pickle(path)  # restricted: a refused file is unreadable, i.e. different content
            existing = {_text(k): np.asarray(v) for k, v in loaded.items()}
        except Exception:  # noqa: BLE001 - unreadable: treated as different content
            existing = None
        if existing is None:
            if not overwrite:
                raise _conflict(path)
        else:
            conflicts = [
                k for k, v in new.items()
                if k in existing and not (existing[k].shape == v.shape and np.array_equal(existing[k], v))
            ]  # fmt: skip
            if conflicts and not overwrite:
                raise _conflict(path)
            if not conflicts and set(new) <= set(existing):
                return  # finished in an earlier run
            new = {**existing, **new}  # an earlier run converted other subjects: keep them
    data = pickle.dumps(new, protocol=2)
    _atomic_write(path, lambda f: f.write(data))


def convert_vocaset(
    raw_dir: str | Path,
    out_dir: str | Path,
    *,
    subjects: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ConversionSummary:
    """Converts the VOCASET release in ``raw_dir`` to the processed layout in ``out_dir``.

    Re-running skips outputs that already exist with identical content; an existing output with different
    content is an error unless ``overwrite`` is set. Problems that affect single sequences (no audio, no frames,
    frame rows outside ``data_verts.npy``, frame-number gaps, subjects without a template) are warnings
    (:class:`VocasetConversionWarning`, also listed in the summary), not failures.

    Args:
        raw_dir: Folder holding the four release files.
        out_dir: Output folder (created if needed).
        subjects: Subjects to convert; None converts every subject of ``subj_seq_to_idx.pkl``.
        overwrite: Replace existing outputs whose content differs.
        progress: Show a progress bar on stderr.

    Returns:
        A :class:`ConversionSummary`.

    Raises:
        VocasetConversionError: a release file is missing or malformed, a requested subject is not in the
            release, or an output would be overwritten without ``overwrite``.
    """
    start = time.perf_counter()
    raw, out = Path(raw_dir), Path(out_dir)
    if not raw.is_dir():
        problem = "is a file, not a folder" if raw.exists() else "does not exist"
        raise VocasetConversionError(f"--raw folder {raw} {problem}; {_RELEASE_HINT}.")
    missing = [name for name in RELEASE_FILES if not (raw / name).is_file()]
    if missing:
        raise VocasetConversionError(f"{', '.join(missing)} not found in {raw}; {_RELEASE_HINT}.")
    verts = _open_verts(raw / "data_verts.npy")
    index = _load_pickle(raw / "subj_seq_to_idx.pkl")
    audio = {
        subject: _text_dict(sentences) if isinstance(sentences, dict) else {}
        for subject, sentences in _load_pickle(raw / "raw_audio_fixed.pkl").items()
    }
    templates = _load_pickle(raw / "templates.pkl")
    n_rows, n_verts = verts.shape[0], verts.shape[1]
    for subject, template in templates.items():
        shape = np.shape(template)
        if shape != (n_verts, 3):
            raise VocasetConversionError(
                f"template of '{subject}' in {raw / 'templates.pkl'} has shape {shape} but data_verts.npy has "
                f"{n_verts} vertices per frame; the files come from different releases."
            )

    chosen = list(index) if subjects is None else list(subjects)
    unknown = [s for s in chosen if s not in index]
    if unknown:
        raise VocasetConversionError(
            f"subject(s) {unknown} are not in {raw / 'subj_seq_to_idx.pkl'}; it holds {sorted(index)}."
        )
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        warnings.warn(message, VocasetConversionWarning, stacklevel=3)

    jobs: list[_Job] = []
    for subject in chosen:
        if subject not in templates:
            note(f"{subject}: no template in templates.pkl; its sequences were skipped.")
            continue
        sentences = index[subject]
        if not isinstance(sentences, dict):
            note(f"{subject}: entry in subj_seq_to_idx.pkl is not a dict of sentences; skipped.")
            continue
        for sentence in sorted(sentences, key=_text):
            jobs.append(_Job(subject, _text(sentence), sentences[sentence]))
        for sentence in sorted(set(audio.get(subject, {})) - set(map(_text, sentences))):
            note(f"{subject}_{sentence}: audio without frames in subj_seq_to_idx.pkl; skipped.")

    wav_dir, npy_dir = out / "wav", out / "vertices_npy"
    for d in (wav_dir, npy_dir):
        d.mkdir(parents=True, exist_ok=True)
        for stale in d.glob(f".*{_PARTIAL}"):  # left behind by a run that was killed mid-write
            stale.unlink(missing_ok=True)
    _write_templates(out / "templates.pkl", templates, chosen, overwrite)

    written = skipped = frames_total = 0
    audio_seconds = 0.0
    bar = tqdm(jobs, desc="converting VOCASET", unit="seq", disable=not progress)
    for job in bar:
        name = job.name
        clip = audio.get(job.subject, {}).get(job.sentence)
        if not isinstance(job.frames, dict) or not job.frames:
            note(f"{name}: no frames in subj_seq_to_idx.pkl; skipped.")
            continue
        if clip is None:
            note(f"{name}: no audio in raw_audio_fixed.pkl; skipped.")
            continue
        try:
            numbers = sorted(job.frames, key=int)
            rows = np.asarray([int(job.frames[k]) for k in numbers], dtype=np.int64)
        except (TypeError, ValueError):
            note(f"{name}: frame numbers or rows in subj_seq_to_idx.pkl are not integers; skipped.")
            continue
        outside = int(((rows < 0) | (rows >= n_rows)).sum())
        if outside:
            note(f"{name}: {outside} frame rows lie outside data_verts.npy ({n_rows} rows); skipped.")
            continue
        gap = int(numbers[-1]) - int(numbers[0]) + 1 - len(numbers)
        if gap:
            note(f"{name}: {gap} frame number(s) missing between {numbers[0]} and {numbers[-1]}; the "
                 f"{len(numbers)} captured frames were written back to back.")  # fmt: skip
        try:
            entry = _text_dict(clip)
            wav, rate = np.asarray(entry["audio"]), int(entry["sample_rate"])
        except (AttributeError, KeyError, TypeError, ValueError):
            note(f"{name}: audio entry lacks 'audio' / 'sample_rate'; skipped.")
            continue
        if wav.size == 0:
            note(f"{name}: audio is empty; skipped.")
            continue
        # one sequence at a time: fancy indexing a memmap reads only these rows
        seq = np.ascontiguousarray(verts[rows], dtype=np.float32).reshape(len(rows), n_verts * 3)

        changed = False
        npy_path = npy_dir / f"{name}.npy"
        if not npy_path.exists() or not _same_npy(npy_path, seq):
            if npy_path.exists() and not overwrite:
                raise _conflict(npy_path)
            _atomic_write(npy_path, lambda f, a=seq: np.save(f, a))
            changed = True
        wav_path = wav_dir / f"{name}.wav"
        if not wav_path.exists() or not _same_wav(wav_path, wav, rate):
            if wav_path.exists() and not overwrite:
                raise _conflict(wav_path)
            data = _wav_bytes(wav, rate)
            _atomic_write(wav_path, lambda f, d=data: f.write(d))
            changed = True
        written += int(changed)
        skipped += int(not changed)
        frames_total += len(rows)
        audio_seconds += wav.shape[0] / rate
    bar.close()
    return ConversionSummary(
        out_dir=out,
        subjects=tuple(s for s in chosen if s in templates),
        written=written,
        skipped=skipped,
        frames=frames_total,
        audio_seconds=audio_seconds,
        warnings=tuple(notes),
        elapsed_seconds=time.perf_counter() - start,
    )


def _text_dict(entry: Any) -> dict[str, Any]:
    return {_text(k): v for k, v in entry.items()}
