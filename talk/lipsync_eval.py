"""Lip sync of a trained model on real speech with phone labels: the evaluation behind ``talk lipsync``.

An evaluation set is a folder of recordings ``<name>.wav`` with phone labels ``<name>.lab`` (``start end phone``
in seconds, or any format ``talk.synth.phones.read_lab`` reads), optionally listed in a manifest ``eval.jsonl``
(one ``{"name", "wav", "lab", ...}`` object per line, paths relative to the manifest). The bundled set is
``assets/speech/eval`` (CMU ARCTIC, LibriVox and CMU Sphinx test recordings, 59 bilabials; see its README).

Each recording is animated by the model (its own sampling, the chosen subject's template and style) and scored
with :mod:`talk.lipsync` against the upper / lower lip pairs of the model's face (:func:`slit_pairs`).

Nothing here imports Lightning; torch and the inference pipeline are imported when a model is evaluated.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from talk.errors import UserError
from talk.lipsync import LipSyncSettings, UtteranceLipSync, evaluate_utterance
from talk.lipsync_report import LipSyncReport, pool

if TYPE_CHECKING:
    from talk.pipeline import Assets, AudioToMotion

BUNDLED_SET = Path(__file__).resolve().parents[1] / "assets" / "speech" / "eval"
MANIFEST = "eval.jsonl"
JSON_NAME = "lipsync.json"
CSV_NAME = "lipsync_per_utterance.csv"


class EvalSetError(UserError, ValueError):
    """The evaluation set or the lip vertices of the model's face cannot be used."""


@dataclass(frozen=True)
class EvalRecording:
    """One recording of an evaluation set.

    Args:
        name: Unique name (the file stem).
        audio: The speech file.
        labels: Its phone label file.
        source: Where it comes from (manifest only).
        licence: Its licence (manifest only).
    """

    name: str
    audio: Path
    labels: Path
    source: str = ""
    licence: str = ""


def read_eval_set(path: str | Path) -> tuple[EvalRecording, ...]:
    """The recordings of a set: a manifest ``.jsonl``, a folder holding ``eval.jsonl``, or a folder of wav + lab.

    Raises:
        EvalSetError: The path does not exist, the set is empty, a wav has no label file, or a manifest line is
            unreadable or names a missing file.
    """
    path = Path(path)
    if path.is_dir() and (path / MANIFEST).is_file():
        path = path / MANIFEST
    if path.is_file():
        recordings = _read_manifest(path)
    elif path.is_dir():
        recordings = []
        for wav in sorted(path.glob("*.wav")):
            lab = wav.with_suffix(".lab")
            if not lab.is_file():
                raise EvalSetError(
                    f"{wav} has no phone labels; write {lab.name} next to it (start end phone)."
                )
            recordings.append(EvalRecording(wav.stem, wav, lab))
    else:
        raise EvalSetError(
            f"evaluation set {path} not found; pass a folder of wav + lab files or a manifest."
        )
    if not recordings:
        raise EvalSetError(
            f"evaluation set {path} is empty; it needs <name>.wav files with <name>.lab labels."
        )
    names = [r.name for r in recordings]
    if len(set(names)) != len(names):
        raise EvalSetError(f"evaluation set {path} names a recording twice; names must be unique.")
    return tuple(recordings)


def _read_manifest(path: Path) -> list[EvalRecording]:
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            wav = path.parent / entry.get("wav", entry.get("audio"))
            lab = path.parent / entry.get("lab", entry.get("labels", Path(str(wav)).with_suffix(".lab").name))
            name = str(entry.get("name", wav.stem))
        except (ValueError, TypeError, AttributeError):
            raise EvalSetError(
                f"{path} line {i} is not a JSON object with 'wav' and 'lab' paths (relative to the manifest)."
            ) from None
        if not wav.is_file():
            raise EvalSetError(f"{path} line {i}: audio file {wav} not found.")
        if not lab.is_file():
            raise EvalSetError(f"{path} line {i}: {wav.name} has no phone labels ({lab} not found).")
        out.append(EvalRecording(name, wav, lab, str(entry.get("source", "")), str(entry.get("licence", ""))))
    return out


# ------------------------------------------------------------------------------------------------- lip pairs
@dataclass(frozen=True)
class LipPairs:
    """Upper / lower lip vertices facing each other across the mouth slit, ordered along it (by x).

    Args:
        upper: ``[n]`` upper-lip vertex ids.
        lower: ``[n]`` matching lower-lip ids (one may serve several upper ones).
        rule: How they were found, for the report.
    """

    upper: np.ndarray
    lower: np.ndarray
    rule: str


def slit_pairs(template: np.ndarray, lips: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper / lower lip pairs along the mouth slit of a mesh, found from its rest shape and triangles.

    The rule: the slit is where the lip surface is cut, so its vertices are the ``lips`` vertices that lie on
    a boundary edge of the mesh (an edge of one triangle only: the mouth hole of FLAME) or that coincide with
    another ``lips`` vertex (within 1e-4 of the region's extent: the two copies of each slit vertex of the
    procedural head, whose mouth is closed at rest). A slit vertex belongs to the upper lip when its lip
    neighbours off the slit lie above it on average (mean y greater), to the lower lip when below. Each upper
    vertex is paired with the lower vertex nearest to it horizontally (x and z), and the pairs are ordered by x.
    On the procedural head this finds exactly its ``lip_upper_edge`` / ``lip_lower_edge`` regions, whose gap is 0
    with the mouth closed.

    Args:
        template: ``[V, 3]`` rest mesh, y up, face looking along +z.
        lips: Vertex ids of the lip region.
        faces: ``[F, 3]`` triangles.

    Returns:
        ``(upper, lower)``, each ``[n]`` int64.

    Raises:
        EvalSetError: No slit vertices above or below in the lip region.
    """
    v = np.asarray(template, dtype=np.float64)
    lips = np.unique(np.asarray(lips, dtype=np.int64).reshape(-1))
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    in_lips = np.zeros(len(v), dtype=bool)
    in_lips[lips] = True
    edges, counts = np.unique(
        np.sort(f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0, return_counts=True
    )
    on_boundary = np.zeros(len(v), dtype=bool)
    on_boundary[edges[counts == 1].reshape(-1)] = True

    from scipy.spatial import cKDTree

    extent = float(np.ptp(v[lips], axis=0).max()) if len(lips) else 0.0
    twins = cKDTree(v[lips]).query_pairs(max(1e-4 * extent, 1e-12), output_type="ndarray")
    slit = in_lips & on_boundary
    slit[lips[twins.reshape(-1)]] = True

    # mean height of each slit vertex's lip neighbours off the slit, minus its own height
    both = np.concatenate([edges, edges[:, ::-1]])
    keep = slit[both[:, 0]] & in_lips[both[:, 1]] & ~slit[both[:, 1]]
    a, b = both[keep, 0], both[keep, 1]
    above = np.bincount(a, weights=v[b, 1] - v[a, 1], minlength=len(v))
    upper, lower = np.flatnonzero(slit & (above > 0)), np.flatnonzero(slit & (above < 0))
    if len(upper) == 0 or len(lower) == 0:
        raise EvalSetError(
            f"cannot find the mouth slit in the {len(lips)}-vertex lip region (no hole or split vertices with lip "
            "above and below); pass --masks with lip_upper_edge / lip_lower_edge regions."
        )
    horizontal = v[upper][:, None, [0, 2]] - v[lower][None, :, [0, 2]]
    matched = lower[np.linalg.norm(horizontal, axis=-1).argmin(axis=1)]
    order = np.argsort(v[upper, 0], kind="stable")
    return upper[order], matched[order]


def model_lip_pairs(assets: Assets, subject: str | None = None, masks: str | Path | None = None) -> LipPairs:
    """The lip pairs of a model's face: from ``masks`` (a FLAME_masks.pkl with ``lip_upper_edge`` /
    ``lip_lower_edge``, via ``talk.synth.face.lip_pairs``), else from those regions in the checkpoint's assets,
    else :func:`slit_pairs` of the subject's template and the ``lips`` region.

    Raises:
        EvalSetError: The checkpoint has no mesh faces or lip region, or the ids do not fit its mesh.
    """
    template = assets.template(subject).numpy()
    regions = dict(assets.regions or {})
    if masks is not None:
        from talk.synth.face import lip_pairs

        upper, lower = lip_pairs(masks)
        pairs = LipPairs(upper, lower, f"lip_upper_edge / lip_lower_edge of {masks}")
    elif "lip_upper_edge" in regions and "lip_lower_edge" in regions:
        upper, lower = regions["lip_upper_edge"].numpy(), regions["lip_lower_edge"].numpy()
        pairs = LipPairs(upper, lower, "lip_upper_edge / lip_lower_edge regions of the checkpoint")
    else:
        if assets.faces is None or "lips" not in regions:
            raise EvalSetError(
                "the checkpoint carries no mesh faces or 'lips' region to find the lips in; pass --masks "
                "FLAME_masks.pkl with lip_upper_edge / lip_lower_edge regions."
            )
        upper, lower = slit_pairs(template, regions["lips"].numpy(), assets.faces.numpy())
        pairs = LipPairs(upper, lower, "mouth slit of the 'lips' region (talk.lipsync_eval.slit_pairs)")
    ids = np.concatenate([pairs.upper, pairs.lower])
    if len(pairs.upper) != len(pairs.lower) or len(ids) == 0 or ids.min() < 0 or ids.max() >= len(template):
        raise EvalSetError(
            f"the lip pairs ({pairs.rule}) do not fit the {len(template)}-vertex mesh of the checkpoint."
        )
    return LipPairs(pairs.upper.astype(np.int64), pairs.lower.astype(np.int64), pairs.rule)


# ------------------------------------------------------------------------------------------------ evaluation
@dataclass(frozen=True)
class LipSyncEvaluation:
    """A model's lip-sync figures on a set: pooled, per utterance, and what they were measured with."""

    report: LipSyncReport
    utterances: tuple[UtteranceLipSync, ...]
    recordings: tuple[EvalRecording, ...]
    subject: str
    pairs: LipPairs


def evaluate_model(
    model: AudioToMotion,
    recordings: Sequence[EvalRecording],
    subject: str | None = None,
    masks: str | Path | None = None,
    settings: LipSyncSettings = LipSyncSettings(),
) -> LipSyncEvaluation:
    """Animates every recording with ``model`` and scores its lip sync against the recording's phone labels.

    Args:
        model: The inference model (``talk.pipeline.Pipeline.from_checkpoint``); its meshes are in metres.
        recordings: The set (:func:`read_eval_set`).
        subject: Subject whose template and style are animated (default: the first training subject).
        masks: A FLAME_masks.pkl whose lip edge regions give the lip pairs (default: see :func:`model_lip_pairs`).
        settings: Metric choices (``talk.lipsync.LipSyncSettings``).

    Raises:
        UserError: Unreadable audio or labels, labels that do not fit the audio, or no lips to measure.
    """
    import torch

    from audio.io import load_audio
    from talk.synth.phones import read_lab

    assets = model.require_assets()
    subject = assets.subject(subject)
    pairs = model_lip_pairs(assets, subject, masks)
    scored = []
    for rec in recordings:
        phones = [(p.label, p.start, p.end) for p in read_lab(rec.labels)]
        wav = torch.from_numpy(load_audio(rec.audio, assets.sample_rate)).to(model.device)
        with torch.inference_mode():
            vertices = model.generate(wav, subject=subject).vertices[0].float().cpu().numpy()
        scored.append(
            evaluate_utterance(
                vertices, model.fps, phones, pairs.upper, pairs.lower, rec.name, settings=settings
            )
        )
    return LipSyncEvaluation(pool(scored), tuple(scored), tuple(recordings), subject, pairs)


def utterance_row(u: UtteranceLipSync) -> dict[str, Any]:
    """The scalar figures of one utterance, with the pooled report's keys (NaN as None), settings left out."""
    figures = pool([u]).as_dict()
    for key in asdict(u.settings):
        figures.pop(key, None)
    figures.pop("utterances", None)
    return {"name": u.name, "duration_s": round(u.frames / u.fps, 4), **figures}


def evaluation_dict(evaluation: LipSyncEvaluation, about: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``lipsync.json``'s content: what was measured (``about``, subject, lip pairs, settings), pooled figures
    and per utterance the figures plus each bilabial's minimum gap and closure."""
    e = evaluation
    utterances = []
    for u, rec in zip(e.utterances, e.recordings, strict=True):
        row = utterance_row(u)
        row["bilabial_labels"] = list(u.bilabials)
        row["bilabial_min_gaps_mm"] = [round(g, 4) for g in u.bilabial_min_gaps_mm]
        row["bilabial_closed"] = list(u.bilabial_closed)
        row["audio"], row["labels"] = str(rec.audio), str(rec.labels)
        utterances.append(row)
    return {
        **dict(about or {}),
        "subject": e.subject,
        "lip_pairs": {
            "rule": e.pairs.rule,
            "upper": e.pairs.upper.tolist(),
            "lower": e.pairs.lower.tolist(),
        },
        "settings": asdict(e.report.settings),
        "pooled": e.report.as_dict(),
        "utterances": utterances,
    }


def write_evaluation(
    evaluation: LipSyncEvaluation, out: str | Path, about: Mapping[str, Any] | None = None
) -> tuple[Path, Path]:
    """Writes ``<out>/lipsync.json`` (:func:`evaluation_dict`) and ``<out>/lipsync_per_utterance.csv`` (one
    :func:`utterance_row` per line, empty cells for undefined figures); returns both paths."""
    from talk.files import atomic_write

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out / JSON_NAME, out / CSV_NAME
    with atomic_write(json_path, "w") as f:
        json.dump(evaluation_dict(evaluation, about), f, indent=1, allow_nan=False)
    rows = [utterance_row(u) for u in evaluation.utterances]
    with atomic_write(csv_path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return json_path, csv_path


def format_table(evaluation: LipSyncEvaluation) -> str:
    """A plain-text table: per utterance and pooled, bilabials closed / judged, gap ratio, gap-phone correlation
    and the silence / speech lip-speed ratio (lower = stiller in pauses)."""

    def num(x: float | None, fmt: str) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)

    def line(name: str, seconds: float, d: Mapping[str, Any]) -> list[str]:
        closed = f"{d['bilabials_closed']}/{d['bilabials_judged']}" if d["bilabials_judged"] else "-"
        return [
            name,
            f"{seconds:.1f}",
            closed,
            num(d["bilabial_closure_rate"], "{:.2f}"),
            num(d["gap_ratio"], "{:.1f}"),
            num(d["gap_phone_corr"], "{:+.2f}"),
            num(d["silence_speech_lip_speed_ratio"], "{:.2f}"),
        ]

    rows = [["utterance", "s", "P/B/M closed", "rate", "gap ratio", "corr", "still (sil/speech)"]]
    rows += [line(u.name, u.frames / u.fps, utterance_row(u)) for u in evaluation.utterances]
    total = sum(u.frames / u.fps for u in evaluation.utterances)
    rows.append(line(f"pooled ({len(evaluation.utterances)})", total, evaluation.report.as_dict()))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return "\n".join([*text[:-1], "-" * len(text[0]), text[-1]])
