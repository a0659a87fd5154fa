"""The synthetic dataset's motion in two more face models: ARKit-52 blendshape weights and BFM 3DMM coefficients.

``talk data synth`` writes, beside the vertices and FLAME parameters of every sequence:

    out_dir/arkit_rig.npz                 the procedural head's ARKit-52 rig (BlendshapeRig.save_npz; the head's
                                          template as neutral)
    out_dir/arkit/<name>.npz              weights [T, 52] (ARKit order, in [0, 1]) and names [52], 60 fps
    out_dir/arkit_manifest.jsonl          wav + weights pairs (talk.data.ManifestDataModule with data.rig)
    out_dir/BFM_model_front.mat           the procedural head in Deep3DFaceRecon's BFM_model_front.mat layout
    out_dir/bfm/<name>.npz                coeff [T, 257] (identity 80, expression 64, texture 80, angles 3,
                                          lighting 27, translation 3; only identity and expression non-zero)
    out_dir/bfm_manifest.jsonl            wav + coefficient pairs (talk.data.ManifestDataModule with data.bfm_model)

**ARKit.** Every sequence's vertices are solved for bounded, temporally smoothed weights of the rig's deltas on the
speaker's own neutral mesh (:class:`~motion.face.blendshapes.solve.BlendshapeSolver`), which is exactly how the
manifest decodes them (``templates.pkl`` + weights @ deltas), so the stored weights are the ones closest to the
stored vertices. The ARKit targets span the head's articulation, not all of it; the reconstruction error of every
sequence is measured and its mean and maximum over the dataset are written to ``synth_meta.json``
(``arkit_error_mm``).

**BFM.** The file follows Deep3DFaceRecon's layout in decimetres: ``meanshape`` is the head's template,
``idBase`` its first 80 identity directions (a speaker's identity coefficients are its FLAME-format shape
coefficients, zero padded to 80), ``exBase`` the 64 principal components of the training speakers' motion
offsets (at most 2000 frames, evenly strided), each scaled by its standard deviation so that the coefficients
are about unit variance (as BFM's own expression basis is built from FaceWarehouse's offsets), ``meantex`` the
head's albedo
(0-255) with an 80-column basis of smooth colour fields, and ``keypoints`` the vertices nearest 68 points laid out
in the iBUG order from the head's measured features (:func:`keypoints_68`). A sequence's expression coefficients
are the least-squares projection of its offsets onto ``exBase``; the error is written to ``synth_meta.json``
(``bfm_error_mm``). Decoding subtracts the meanshape's centroid (Deep3DFaceRecon's recentring), so BFM meshes are
translated from the vertex files by that constant: offsets and every metric are unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from motion.face.blendshapes.arkit import ARKIT_NAMES
from motion.face.blendshapes.rig import BlendshapeRig
from motion.face.blendshapes.solve import BlendshapeSolver, reconstruction_error
from talk.files import atomic_write

__all__ = ["BFM_UNITS_PER_M", "arkit_weights", "keypoints_68", "solve_arkit", "write_arkit_rig", "write_bfm"]

ARKIT_SMOOTH = 0.003  # the solver's temporal penalty (its default)
BFM_UNITS_PER_M = 10.0  # Deep3DFaceRecon's BFM file is in decimetres
N_ID, N_EXP, N_TEX = 80, 64, 80
_PCA_STRIDE = 3  # every 3rd frame of the training speakers' motion
_PCA_MAX_FRAMES = 2000


def write_arkit_rig(root: Path, face_seed: int) -> BlendshapeRig:
    """The procedural head's ARKit rig, written to ``root/arkit_rig.npz`` (atomically) and returned."""
    from motion.face.blendshapes.procedural import procedural_arkit_rig

    rig = procedural_arkit_rig(seed=face_seed)
    arrays = {
        "neutral": rig.neutral.numpy(),
        "deltas": rig.deltas.numpy(),
        "names": np.array(rig.names, dtype=np.str_),
        "faces": rig.faces.numpy().astype(np.int64),
    }
    with atomic_write(root / "arkit_rig.npz") as f:
        np.savez_compressed(f, **arrays)
    return rig


def solve_arkit(
    deltas: torch.Tensor, template: np.ndarray, vertices: np.ndarray
) -> tuple[np.ndarray, float, float]:
    """Weights ``[T, 52]`` in [0, 1] whose ``template + weights @ deltas`` is closest to ``vertices`` ``[T, V, 3]``,
    and the mean and maximum vertex error in millimetres."""
    rig = BlendshapeRig(template, deltas, ARKIT_NAMES)
    weights = BlendshapeSolver(rig, smooth=ARKIT_SMOOTH).solve(vertices).weights.numpy().astype(np.float32)
    err = reconstruction_error(rig, weights, vertices)
    return weights, err.mean_mm, err.max_mm


def arkit_weights(path: Path, weights: np.ndarray) -> None:
    """Write ``weights`` ``[T, 52]`` and the ARKit names as ``.npz`` (atomically)."""
    with atomic_write(path) as f:
        np.savez(f, weights=weights.astype(np.float32), names=np.array(ARKIT_NAMES, dtype=np.str_))


def _nearest(points: np.ndarray, vertices: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Per point ``[N, 3]``: the candidate vertex nearest it in the frontal (x, y) plane, front-most on ties."""
    cand = vertices[candidates]
    d = np.linalg.norm(cand[None, :, :2] - points[:, None, :2], axis=-1) - 1e-3 * cand[None, :, 2]
    return candidates[d.argmin(axis=1)]


def keypoints_68(vertices: np.ndarray, masks: dict[str, np.ndarray]) -> np.ndarray:
    """68 vertex ids in the iBUG order (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67), nearest to
    points laid out from the head's own measurements: eye openings from the eyeballs, mouth from the lip edges,
    nose tip as the nose's front-most vertex, jaw line as the face region's outline from ear level round the chin.
    Image left first, as in the iBUG annotation (the subject's right, -x on this head)."""
    v = vertices
    face = np.asarray(masks["face"])
    eyes = [v[masks[k]].mean(0) for k in ("right_eyeball", "left_eyeball")]  # -x first
    eye_w = float(np.ptp(v[masks["left_eyeball"], 0]))
    up, low = v[masks["lip_upper_edge"]], v[masks["lip_lower_edge"]]
    mouth_c = np.concatenate([up, low]).mean(0)
    mouth_hw = float(np.ptp(np.concatenate([up, low])[:, 0])) / 2
    nose = v[masks["nose"]]
    tip = nose[nose[:, 2].argmax()]
    pts: list[np.ndarray] = []
    outline = v[face]
    eye_y = (eyes[0][1] + eyes[1][1]) / 2
    chin_y = float(outline[np.abs(outline[:, 0]) < 0.01, 1].min())
    centre_y = eye_y - 0.15 * (eye_y - chin_y)  # the jaw line starts a little below the eyes, at the ears
    half_w = float(np.abs(outline[np.abs(outline[:, 1] - centre_y) < 0.005, 0]).max())
    for ang in np.linspace(np.pi, 2 * np.pi, 17):  # jaw: an ellipse through the ears and the chin
        pts.append(np.array([half_w * np.cos(ang), centre_y + (centre_y - chin_y) * np.sin(ang), 0.0]))
    for eye in eyes:  # brows: an arc above each eye, image left to right (iBUG 17-21, 22-26)
        for x in np.linspace(-0.9, 0.9, 5):
            pts.append(eye + np.array([x * eye_w, (0.9 - 0.25 * x * x) * eye_w, 0.0]))
    bridge_top = np.array([0.0, (eyes[0][1] + eyes[1][1]) / 2, tip[2]])
    for t in np.linspace(0.0, 1.0, 4):  # nose bridge down to the tip
        pts.append(bridge_top + t * (tip - bridge_top))
    for x in np.linspace(-0.55, 0.55, 5) * mouth_hw:  # nostril base
        pts.append(np.array([x, tip[1] - 0.35 * (tip[1] - mouth_c[1]), tip[2]]))
    ring = [(-1.0, 0.0), (-0.35, 0.3), (0.35, 0.3), (1.0, 0.0), (0.35, -0.3), (-0.35, -0.3)]
    for eye in eyes:  # eye openings from the image-left corner over the upper lid and back under it
        pts += [eye + np.array([x * 0.5 * eye_w, y * 0.35 * eye_w, 0.0]) for x, y in ring]
    h_out = 0.6 * mouth_hw
    for a in np.linspace(np.pi, -np.pi, 13)[
        :12
    ]:  # outer lip: image-left corner, upper lip, other corner, lower
        pts.append(mouth_c + np.array([np.cos(a) * mouth_hw, np.sin(a) * h_out, 0.0]))
    for a in np.linspace(np.pi, -np.pi, 9)[:8]:  # inner lip
        pts.append(mouth_c + np.array([np.cos(a) * 0.8 * mouth_hw, np.sin(a) * 0.1 * h_out, 0.0]))
    front = face[v[face, 2] > np.median(v[face, 2]) - 0.02]
    return np.concatenate([_nearest(np.stack(pts[:17]), v, face), _nearest(np.stack(pts[17:]), v, front)])


def _smooth_fields(vertices: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``[3V, n]`` colour fields (0-255 units): random low-order polynomials of the position times a colour."""
    rng = np.random.default_rng(seed)
    x = (vertices - vertices.mean(0)) / np.abs(vertices - vertices.mean(0)).max()
    feats = np.concatenate([x, x**2, x[:, [0]] * x[:, [1]], x[:, [1]] * x[:, [2]], np.ones((len(x), 1))], 1)
    out = np.zeros((len(x) * 3, n), np.float32)
    for k in range(n):
        field = feats @ rng.normal(size=feats.shape[1])
        colour = rng.normal(size=3) * 6.0
        out[:, k] = (field[:, None] * colour[None]).reshape(-1)
    return out


def _expression_basis(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 64 principal directions ``[D, 64]`` (unit) of ``offsets`` ``[N, D]`` and their standard deviations."""
    x = torch.from_numpy(offsets).float()
    gram = (x @ x.T).double()  # [N, N]: N is far below D
    values, vectors = torch.linalg.eigh(gram)
    vectors = vectors.float()
    top = values.flip(0)[:N_EXP].clamp(min=1e-18).float()
    # Fewer sampled frames than N_EXP (a tiny set): the directions past them are zero (sigma 0), so their
    # coefficients stay 0 and decode to nothing.
    rank = len(top)
    u = torch.zeros(x.shape[1], N_EXP)
    u[:, :rank] = (x.T @ vectors.flip(1)[:, :rank]) / top.sqrt()  # unit columns
    sign = torch.sign(u[u.abs().argmax(0), torch.arange(N_EXP)])  # a deterministic sign per column
    sigma = torch.zeros(N_EXP)
    sigma[:rank] = (top / len(offsets)).sqrt()
    return (u * sign).numpy(), sigma.numpy()


def write_bfm(
    root: Path,
    records: list[dict],
    templates: dict[str, np.ndarray],
    shapes: dict[str, np.ndarray],
    train_subjects: list[str],
    face_seed: int,
) -> tuple[list[Path], float, float]:
    """Write ``BFM_model_front.mat`` and ``bfm/<name>.npz`` for every record (see the module docstring).

    Args:
        root: The dataset folder (holding ``face_model.pkl``, ``FLAME_masks.pkl`` and ``vertices_npy/``).
        records: One dict per sequence with ``name`` and ``subject``.
        templates: Each subject's neutral mesh ``[V, 3]`` (metres).
        shapes: Each subject's shape coefficients.
        train_subjects: Subjects whose motion defines the expression basis (all when empty).
        face_seed: Seed of the head's albedo.

    Returns:
        The files written, and the mean and maximum vertex error of the coefficients in millimetres.
    """
    from motion.face.bfm_io import BFMArrays, point_buf_from_faces, save_bfm_mat
    from motion.face.flame_io import load_flame_masks, load_flame_model
    from talk.synth.albedo import procedural_albedo

    model = load_flame_model(root / "face_model.pkl")
    v_template = np.asarray(model["v_template"], np.float64)
    n_v = len(v_template)
    shapedirs = np.asarray(model["shapedirs"], np.float64)[:, :, :N_ID]  # [V, 3, 80] identity columns
    faces = np.asarray(model["f"]).astype(np.int64)

    def offsets_of(name: str, subject: str, stride: int = 1) -> np.ndarray:
        vertices = np.load(root / "vertices_npy" / f"{name}.npy").reshape(-1, n_v, 3)[::stride]
        return (vertices - templates[subject]).reshape(len(vertices), -1)

    basis_from = [r for r in records if r["subject"] in train_subjects] or records
    total = sum(r["frames"] for r in basis_from)
    stride = max(_PCA_STRIDE, int(np.ceil(total / _PCA_MAX_FRAMES)))
    if total // stride < 2 * N_EXP:  # a tiny set: every frame counts
        stride = 1
    sample = np.concatenate([offsets_of(r["name"], r["subject"], stride) for r in basis_from])
    directions, sigma = _expression_basis(sample)
    ex_base = directions * sigma  # metres per coefficient, coefficients ~ unit variance

    arrays = BFMArrays(
        meanshape=(v_template * BFM_UNITS_PER_M).astype(np.float32),
        id_base=(shapedirs.reshape(n_v * 3, N_ID) * BFM_UNITS_PER_M).astype(np.float32),
        exp_base=(ex_base * BFM_UNITS_PER_M).astype(np.float32),
        mean_tex=(procedural_albedo(face_seed) * 255.0).astype(np.float32),
        tex_base=_smooth_fields(v_template, N_TEX, face_seed),
        faces=faces,
        point_buf=point_buf_from_faces(faces, n_v),
        keypoints=keypoints_68(v_template, load_flame_masks(root / "FLAME_masks.pkl")),
    )
    written = [save_bfm_mat(root / "BFM_model_front.mat", arrays)]
    pinv = directions / np.maximum(sigma, 1e-12)  # coefficient k = (offsets . u_k) / sigma_k
    errors, worst, count = 0.0, 0.0, 0
    for r in records:
        offsets = offsets_of(r["name"], r["subject"])
        exp = offsets @ pinv
        err = np.linalg.norm((exp @ ex_base.T - offsets).reshape(len(offsets), n_v, 3), axis=-1) * 1000.0
        errors, worst, count = errors + float(err.sum()), max(worst, float(err.max())), count + err.size
        coeff = np.zeros((len(exp), 257), np.float32)
        coeff[:, : len(shapes[r["subject"]])] = shapes[r["subject"]]
        coeff[:, N_ID : N_ID + N_EXP] = exp
        path = root / "bfm" / f"{r['name']}.npz"
        with atomic_write(path) as f:
            np.savez(f, coeff=coeff)
        written.append(path)
    return written, errors / max(count, 1), worst


def coefficient_manifest(records: list[dict], split: dict[str, str], folder: str, fps: float) -> str:
    """jsonl lines pairing each wav with its ``<folder>/<name>.npz`` (paths relative to the dataset root)."""
    lines = []
    for r in records:
        line = {"audio": f"wav/{r['name']}.wav", "motion": f"{folder}/{r['name']}.npz", "subject": r["subject"],
                "fps": fps, "split": split[r["subject"]], "dataset": "synthetic"}  # fmt: skip
        lines.append(json.dumps(line) + "\n")
    return "".join(lines)
