"""Any dataset, described by a jsonl manifest: one sequence per line.

Each line is a JSON object (paths relative to the manifest's folder, or absolute)::

    {"audio": "wav/a01.wav", "motion": "motion/a01.npy", "subject": "spk1", "fps": 30, "split": "train"}
    {"audio": "wav/b07.wav", "motion": "flame/b07.npz", "subject": "spk2", "fps": 25, "split": "test",
     "dataset": "mead", "name": "spk2_b07"}

``split`` is ``train``, ``val`` or ``test``; ``dataset`` (default: the DataModule's ``dataset_name``) travels with
each batch for multi-dataset training; ``name`` (default: the motion file's stem) must be unique.

Motion is either

- vertices: ``.npy`` of ``[T, V*3]`` or ``[T, V, 3]``; the subject's neutral mesh comes from the ``templates``
  pickle (``{subject: [V, 3]}``, the processed-VOCASET format); or
- ARKit-52 blendshape weights (``.npz`` with ``weights``, a Live Link Face ``.csv`` or an Audio2Face ``.json``),
  decoded by the avatar rig ``rig`` (:class:`motion.face.blendshapes.model.ArkitRig`) on the subject's neutral
  mesh from ``templates`` (else the rig's neutral); or BFM coefficients (``.npz`` with ``coeff [T, 257]`` or a
  ``.mat``), decoded by ``bfm_model`` (:class:`motion.face.bfm.BFM`; template: the sequence's mean identity with
  zero expression). Formats: :mod:`talk.data.formats.coefficients`. The parameters travel on the batch as
  ``coefficients`` for the models that work in them; or
- FLAME parameters: ``.npz`` with ``expression [T, Ne]``, ``jaw [T, 3]`` and optionally ``neck [T, 3]``,
  ``eyes [T, 6]`` (left then right eye), ``global_pose [T, 3]``, ``shape [Ns]``, decoded to vertices by
  :class:`motion.face.flame.FLAME` loaded from ``flame_model``. The template is FLAME with the line's ``shape`` and zero
  expression and pose (not the first frame). The raw parameters stay available on the sample
  (:class:`FlameSample`), at the line's own fps; the padded :class:`~talk.data.batch.Batch` carries vertices only.

Frame rates: every line is brought to the DataModule's ``fps``. An integer ratio takes every k-th frame (exactly
how VOCASET's 60 fps is read at 30 fps); any other ratio interpolates the vertices linearly in time, frame ``i``
sitting at time ``i / fps`` and the last frame not past the last source frame. With ``resample=False`` a line
whose fps differs is an error instead. Every validation error names the manifest file and line number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from talk.data.asset_files import load_templates
from talk.data.base import SPLITS, TalkDataModule
from talk.data.formats.manifest_dataset import (
    FlameSample,
    ManifestDataset,
    coefficient_motion,
    flame_neutral,
    resample_frames,
)
from talk.data.formats.manifest_file import ManifestEntry, ManifestError, read_manifest

# the line format's parts, importable from here as before the module was split
__all__ = [
    "FlameSample",
    "ManifestDataModule",
    "ManifestEntry",
    "ManifestError",
    "read_manifest",
    "resample_frames",
]


class ManifestDataModule(TalkDataModule):
    """Sequences listed in a jsonl manifest (see the module docstring for the line format).

    Args:
        manifest: The jsonl file; paths inside it are relative to its folder.
        fps: Motion frame rate to train at; lines at other rates are resampled (see ``resample``).
        resample: Bring lines at another fps to ``fps`` (stride or linear interpolation); False makes such a
            line an error.
        flame_model: FLAME-format model (``generic_model.pkl``, ``flame2023.pkl`` or a file of the same
            structure) that decodes ``.npz`` FLAME-parameter lines; required when there are any.
        templates: ``{subject: [V, 3]}`` pickle of neutral meshes for ``.npy`` vertex lines (required when there
            are any) and for ARKit lines (optional: the subject's own face under the rig's deltas).
        rig: Avatar rig decoding ARKit weight lines (``.glb`` / ``.gltf``, OBJ folder or rig ``.npz``, targets in
            any ARKit spelling); required when there are any.
        bfm_model: Deep3DFaceRecon's ``BFM_model_front.mat`` (or a file of that layout) decoding BFM coefficient
            lines; required when there are any.
        train_subjects: Training subjects; their order defines the style indices. None: the sorted subjects of
            the train split.
        regions_path: Region vertex sets for the metrics (``FLAME_masks.pkl`` format or a folder of
            ``<region>.txt``); defaults to ``FLAME_masks.pkl`` beside the manifest, else beside ``flame_model``.
        dataset_name: Dataset name of lines without ``"dataset"``.
        **kwargs: The arguments every format shares (:class:`~talk.data.base.TalkDataModule`): ``sample_rate``,
            ``batch_size``, ``num_workers``, ``cache``, ``max_audio_seconds``, ``face_model_path`` (mesh or
            FLAME-format file giving the triangles; default: ``flame_model``, else no faces), ``lip_region``,
            ``upper_face_regions``.
    """

    def __init__(
        self,
        manifest: str,
        fps: float = 30.0,
        resample: bool = True,
        flame_model: str | None = None,
        templates: str | None = None,
        train_subjects: list[str] | None = None,
        regions_path: str | None = None,
        dataset_name: str = "manifest",
        rig: str | None = None,
        bfm_model: str | None = None,
        **kwargs: Any,
    ) -> None:
        manifest_path = Path(manifest)
        if regions_path is None:  # resolved here so that metrics.json names the file really used
            beside = [manifest_path.parent / "FLAME_masks.pkl"]
            if flame_model:
                beside.append(Path(flame_model).parent / "FLAME_masks.pkl")
            regions_path = str(next((p for p in beside if p.is_file()), beside[0]))
        super().__init__(
            root=manifest_path.parent,  # metrics.json reports regions relative to this
            train_subjects=train_subjects,
            fps=fps,
            regions_path=regions_path,
            dataset_name=dataset_name,
            **kwargs,
        )
        self.manifest = manifest_path
        self.resample = resample
        self.flame_model = flame_model
        self.templates_path = templates
        self._entries: list[ManifestEntry] | None = None
        self._template_pickle: dict[str, np.ndarray] | None = None
        self._flame: Any = None
        self.rig_path = rig
        self.bfm_model = bfm_model
        self._coefficient_models: dict[str, Any] = {}

    # ---------------------------------------------------------------------------------------------- entries
    @property
    def entries(self) -> list[ManifestEntry]:
        """Validated manifest lines (read once, lazily, with every cross-line check)."""
        if self._entries is None:
            entries = read_manifest(self.manifest, self.dataset_name)
            for e in entries:
                if e.fps != self.fps and not self.resample:
                    raise ManifestError(
                        f"{self.manifest}:{e.line}: fps {e.fps:g} differs from data.fps={self.fps:g}; set "
                        "data.resample=true or convert the file."
                    )
            self._check_vertices(entries)
            self._entries = entries
        return self._entries

    def _check_vertices(self, entries: list[ManifestEntry]) -> None:
        first: tuple[int, int] | None = None  # (V, line)
        for e in entries:
            where = f"{self.manifest}:{e.line}"
            if e.kind == "flame":
                flame = self.flame(where)
                n_verts = flame.num_vertices
                if e.expression_dim > flame.n_expression:
                    raise ManifestError(
                        f"{where}: {e.motion} has {e.expression_dim} expression coefficients but "
                        f"{self.flame_model} holds {flame.n_expression}."
                    )
                if e.shape is not None and len(e.shape) > flame.n_shape:
                    raise ManifestError(
                        f"{where}: {e.motion} has {len(e.shape)} shape coefficients but {self.flame_model} "
                        f"holds {flame.n_shape}."
                    )
            elif e.kind in ("arkit", "bfm"):
                n_verts = self.coefficient_model(e.kind, where).num_vertices
                if e.kind == "arkit" and self.templates_path:
                    template = self._vertex_templates(where).get(e.subject)
                    if template is not None and template.shape[0] != n_verts:
                        raise ManifestError(
                            f"{where}: the template of '{e.subject}' in {self.templates_path} has "
                            f"{template.shape[0]} vertices but the rig {self.rig_path} has {n_verts}."
                        )
            else:
                n_verts = int(e.num_vertices)
                template = self._vertex_templates(where).get(e.subject)
                if template is None:
                    raise ManifestError(
                        f"{where}: subject '{e.subject}' has no template in {self.templates_path}; add it."
                    )
                if template.shape[0] != n_verts:
                    raise ManifestError(
                        f"{where}: {e.motion} has {n_verts} vertices but the template of '{e.subject}' in "
                        f"{self.templates_path} has {template.shape[0]}."
                    )
            if first is None:
                first = (n_verts, e.line)
            elif n_verts != first[0]:
                raise ManifestError(
                    f"{where}: {e.motion} has {n_verts} vertices but line {first[1]} has {first[0]}; all "
                    "sequences of a manifest must share one mesh topology."
                )

    def flame(self, where: str = "") -> Any:
        """The :class:`motion.face.flame.FLAME` decoding ``.npz`` lines (loaded once)."""
        if self._flame is None:
            if not self.flame_model:
                raise ManifestError(
                    f"{where or self.manifest}: FLAME-parameter motion needs a face model; pass "
                    "data.flame_model=<generic_model.pkl or FLAME-format .pkl>."
                )
            from motion.face.flame import FLAME
            from motion.face.flame_io import load_flame_model

            try:
                columns = np.shape(load_flame_model(self.flame_model)["shapedirs"])[2]
                n_shape = min(300, columns)  # FLAME files hold 300 identity columns, then the expression ones
                self._flame = FLAME(self.flame_model, n_shape=n_shape, n_expression=columns - n_shape).eval()
            except (FileNotFoundError, ValueError) as exc:
                raise ManifestError(f"data.flame_model: {str(exc).splitlines()[0]}") from None
        return self._flame

    def coefficient_model(self, kind: str, where: str = "") -> Any:
        """The ``ArkitRig`` (``kind`` ``"arkit"``) or ``BFM`` (``"bfm"``) decoding coefficient lines (loaded once)."""
        if kind not in self._coefficient_models:
            path, option = (self.rig_path, "rig") if kind == "arkit" else (self.bfm_model, "bfm_model")
            if not path:
                what = (
                    "an avatar rig (.glb, OBJ folder or rig .npz)"
                    if kind == "arkit"
                    else "BFM_model_front.mat"
                )
                raise ManifestError(
                    f"{where or self.manifest}: {kind} motion needs {what}; pass data.{option}=<file>."
                )
            if kind == "arkit":
                from motion.face.blendshapes.model import ArkitRig

                self._coefficient_models[kind] = ArkitRig(path).eval()
            else:
                from motion.face.bfm import BFM

                self._coefficient_models[kind] = BFM(path).eval()
        return self._coefficient_models[kind]

    def _vertex_templates(self, where: str) -> dict[str, np.ndarray]:
        if self._template_pickle is None:
            if not self.templates_path:
                raise ManifestError(
                    f"{where}: vertex motion needs the subject's neutral mesh; pass data.templates=<templates.pkl>."
                )
            self._template_pickle = load_templates(Path(self.templates_path))
        return self._template_pickle

    # ------------------------------------------------------------------------------------------ format hooks
    def _read_templates(self) -> dict[str, np.ndarray]:
        """The templates pickle, or FLAME's neutral of the subject's first line."""
        out: dict[str, np.ndarray] = {}
        for e in self.entries:
            if e.subject not in out:
                if e.kind == "vertices":
                    out[e.subject] = self._vertex_templates(f"{self.manifest}:{e.line}")[e.subject]
                elif e.kind == "flame":
                    out[e.subject] = flame_neutral(self.flame(), e.shape)
                else:  # the subject's neutral under the rig, or the BFM identity of its first line
                    known = self._vertex_templates(str(self.manifest)) if self.templates_path else {}
                    where = f"{self.manifest}:{e.line}"
                    template, _ = coefficient_motion(e, self.coefficient_model(e.kind), known, where)
                    out[e.subject] = template.numpy()
        return out

    def _dataset(self, entries: list[ManifestEntry]) -> ManifestDataset:
        kinds = {e.kind for e in entries}
        vertex_templates = {}
        if "vertices" in kinds or ("arkit" in kinds and self.templates_path):
            vertex_templates = self._vertex_templates(str(self.manifest))
        flame = self.flame() if "flame" in kinds else None
        models = {k: self.coefficient_model(k) for k in ("arkit", "bfm") if k in kinds}
        return ManifestDataset(
            self.manifest, entries, vertex_templates, flame, self.style_index, self.fps, self.sample_rate,
            self.max_audio_seconds, self.cache, models,
        )  # fmt: skip

    def _default_train_subjects(self) -> list[str]:
        """The sorted subjects of the train split."""
        return sorted({e.subject for e in self.entries if e.split == "train"})

    def _empty_split_error(self, split: str, stage: str) -> ManifestError:
        return ManifestError(f'{self.manifest} has no line with "split": "{split}", which `{stage}` needs.')

    @property
    def num_vertices(self) -> int:
        """Vertices per mesh, known from the first line (without building every subject's template)."""
        e = self.entries[0]
        if e.kind in ("arkit", "bfm"):
            return int(self.coefficient_model(e.kind).num_vertices)
        return int(e.num_vertices) if e.kind == "vertices" else int(self.flame().num_vertices)

    def face_model_file(self) -> Path | None:
        """``face_model_path``, else ``flame_model``, else None (no faces)."""
        path = self.face_model_path or self.flame_model
        return None if path is None else Path(path)

    def faces(self) -> np.ndarray | None:
        """Triangles from ``face_model_path`` / ``flame_model``, else those of the rig or BFM of the lines."""
        if self.face_model_file() is None:
            kind = self.entries[0].kind
            model = self.coefficient_model(kind) if kind in ("arkit", "bfm") else None
            if model is not None and model.faces is not None and model.faces.numel():
                return model.faces.numpy().astype(np.int64)
        return super().faces()

    # ----------------------------------------------------------------------------------------------- splits
    def setup(self, stage: str | None = None) -> None:
        entries = self.entries
        for split in SPLITS:
            self.datasets[split] = self._dataset([e for e in entries if e.split == split])
        self._require_splits(stage)
