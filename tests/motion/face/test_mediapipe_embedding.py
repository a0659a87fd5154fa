"""MediaPipe embeddings in FLAME's ``mediapipe_landmark_embedding.npz`` format (miniature file written here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motion.face.flame import FLAME, FLAMEParams
from motion.face.flame_io import FlameModelFormatError, load_landmark_embedding, load_mediapipe_embedding
from motion.face.procedural.face import mediapipe_embedding_path, write_procedural_face
from talk.errors import UserError


def test_flame_format_npz_round_trips(tmp_path) -> None:
    rng = np.random.default_rng(0)
    # FLAME's file: 105 rows; int64 / float64 arrays and the FaceMesh index of each row
    fidx = rng.integers(0, 9976, 105).astype(np.int64)
    bary = rng.dirichlet(np.ones(3), 105)
    indices = np.sort(rng.choice(468, 105, replace=False)).astype(np.int64)
    np.savez(
        tmp_path / "mediapipe_landmark_embedding.npz",
        lmk_face_idx=fidx,
        lmk_b_coords=bary,
        landmark_indices=indices,
    )
    f2, b2, i2 = load_mediapipe_embedding(tmp_path / "mediapipe_landmark_embedding.npz")
    assert np.array_equal(f2, fidx) and np.array_equal(b2, bary) and np.array_equal(i2, indices)
    assert f2.dtype == np.int64 and b2.dtype == np.float64 and i2.dtype == np.int64
    f3, b3 = load_landmark_embedding(tmp_path / "mediapipe_landmark_embedding.npz")
    assert np.array_equal(f3, fidx) and np.array_equal(b3, bary)


def test_bad_files_are_user_errors(tmp_path) -> None:
    np.savez(tmp_path / "a.npz", lmk_face_idx=np.zeros(3, np.int64))
    with pytest.raises(FlameModelFormatError, match="lacks"):
        load_mediapipe_embedding(tmp_path / "a.npz")
    np.savez(
        tmp_path / "b.npz",
        lmk_face_idx=np.zeros(3),
        lmk_b_coords=np.ones((3, 3)) / 3,
        landmark_indices=[0, 1, 500],
    )
    with pytest.raises(FlameModelFormatError, match="0-467"):
        load_mediapipe_embedding(tmp_path / "b.npz")
    (tmp_path / "c.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError):
        load_mediapipe_embedding(tmp_path / "c.npz")


def test_procedural_head_poses_all_468_points(tmp_path) -> None:
    fidx, bary, indices = load_mediapipe_embedding(mediapipe_embedding_path())
    assert fidx.shape == (468,) and bary.shape == (468, 3) and np.array_equal(indices, np.arange(468))
    with np.load(mediapipe_embedding_path()) as npz:
        assert "build_procedural_embedding" in str(npz["source"])
    paths = write_procedural_face(tmp_path)
    flame = FLAME(
        str(paths.model), n_shape=10, n_expression=11, landmark_embedding_path=str(mediapipe_embedding_path())
    )
    out = flame(FLAMEParams(jaw_pose=torch.tensor([[[0.2, 0.0, 0.0]]])))
    assert out.landmarks.shape == (1, 1, 468, 3)
    rest = flame(FLAMEParams(jaw_pose=torch.zeros(1, 1, 3))).landmarks[0, 0]
    # FaceMesh 0 / 17 are the outer upper / lower lip midpoints: the jaw moves the lower one only
    drop = rest[:, 1] - out.landmarks[0, 0, :, 1]
    assert abs(float(drop[0])) < 1e-4 and float(drop[17]) > 0.01
