"""The procedural head's shipped MediaPipe embedding against the detector on a fresh render of the template."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motion.face.flame_io import load_mediapipe_embedding
from motion.face.procedural.face import build_procedural_face, mediapipe_embedding_path
from talk.track import detect_landmarks
from talk.track.embedding import backproject, render_template_view, surface_points
from tests.talk.track.test_detect import requires_models

pytestmark = pytest.mark.usefixtures("one_thread")


@requires_models
def test_shipped_embedding_lands_on_the_detector_points() -> None:
    model = build_procedural_face().model
    vertices = torch.as_tensor(model["v_template"], dtype=torch.float32)
    faces = torch.as_tensor(model["f"].astype(np.int64))
    fidx, bary, indices = load_mediapipe_embedding(mediapipe_embedding_path())
    assert np.array_equal(indices, np.arange(468)) and np.allclose(bary.sum(1), 1.0) and (bary >= 0).all()
    # a framing and size the embedding was not built from
    image, posed, camera, face_ids = render_template_view(
        vertices, faces, yaw=3.0, pitch=-2.0, margin=1.5, size=480
    )
    detected = detect_landmarks(image).points[:, :2]
    points = surface_points(posed.double(), faces, torch.as_tensor(fidx), torch.as_tensor(bary))
    uv = camera.project(points[None])[0, :, :2].numpy()
    err = np.linalg.norm(uv - detected, axis=1)
    print(f"embedding reprojection on a fresh render: mean {err.mean():.2f} px, max {err.max():.2f} px")
    assert err.mean() < 1.5 and err.max() < 5.0
    # back-projecting the detected points gives surface points that reproject onto them (to the clamping)
    f2, b2 = backproject(detected.astype(np.float64), posed, faces, camera, face_ids)
    uv2 = camera.project(
        surface_points(posed.double(), faces, torch.as_tensor(f2), torch.as_tensor(b2))[None]
    )
    assert np.median(np.linalg.norm(uv2[0, :, :2].numpy() - detected, axis=1)) < 0.05
