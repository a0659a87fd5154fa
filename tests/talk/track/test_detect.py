"""Face detection + FaceMesh landmarks on a real photo, the user-facing errors, and the TFLite interpreter.

The photo is matplotlib's ``grace_hopper.jpg`` (600 x 512). Reference figures are official MediaPipe 0.10.21's
(``mediapipe.solutions.face_mesh`` / ``face_detection`` in a numpy-1 venv, research note
``landmarks_research.md``): our port reproduces them to 0.04 px on average, so the tolerances below are tight.

Tests needing the model files skip when ``pip install --no-deps mediapipe==0.10.21`` was not run, unless
``TALK_REQUIRE_TRACK=1`` turns that skip into a failure.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from matplotlib import cbook

from talk.track import (
    FaceDetector,
    FaceLandmarker,
    FaceTooSmallError,
    ImageReadError,
    NoFaceError,
    TrackModelError,
    detect_landmarks,
    read_image,
)
from talk.track.model_files import DETECTOR, LANDMARKER, locate
from tests.talk.track.tiny_tflite import build_model


def _missing_models() -> str | None:
    try:
        locate(DETECTOR)
        locate(LANDMARKER)
    except TrackModelError as err:
        return str(err)
    return None


pytestmark = pytest.mark.usefixtures("one_thread")  # small networks, and the suite shares 2 cores

MISSING = _missing_models()
requires_models = pytest.mark.skipif(
    MISSING is not None and os.environ.get("TALK_REQUIRE_TRACK") != "1",
    reason=f"MediaPipe face model files are not installed ({MISSING})",
)

GRACE = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
# Official MediaPipe 0.10.21 on grace_hopper.jpg: detection box (x0, y0, x1, y1) px and score, and FaceMesh
# points (x, y, z px): 1 nose tip, 10 forehead top, 33/133 right eye outer/inner corner, 263/362 left eye
# outer/inner corner, 61/291 mouth corners, 152 chin.
OFFICIAL_BOX, OFFICIAL_SCORE = (171.4, 146.9, 365.8, 341.4), 0.935
OFFICIAL_POINTS = {
    1: (268.07, 245.63, -45.22),
    10: (261.98, 131.91, -11.68),
    33: (201.61, 194.23, 12.46),
    133: (239.95, 193.21, 5.69),
    152: (271.62, 333.06, 8.23),
    263: (326.37, 187.28, 13.23),
    362: (288.44, 190.49, 5.97),
    61: (232.28, 277.26, 4.27),
    291: (304.66, 273.92, 4.89),
}


@pytest.fixture(scope="module")
def grace() -> np.ndarray:
    return read_image(GRACE)


@requires_models
def test_grace_hopper_matches_official_mediapipe(grace):
    face = detect_landmarks(GRACE)
    assert face.image_size == (600, 512)
    assert face.points.shape == (468, 3) and face.points.dtype == np.float32
    np.testing.assert_allclose(face.box, OFFICIAL_BOX, atol=1.0)
    assert abs(face.score - OFFICIAL_SCORE) < 0.01 and face.presence > 0.99
    for i, expected in OFFICIAL_POINTS.items():
        np.testing.assert_allclose(face.points[i], expected, atol=0.3, err_msg=f"landmark {i}")
    # Geometry, independent of the reference figures: the eyes, nose and mouth lie inside the detection box
    # (the forehead rises above it), the whole mesh within a quarter box side of it, the subject's right eye
    # on the image's left, and an inter-ocular distance of about 0.64 box sides.
    x0, y0, x1, y1 = face.box
    side = x1 - x0
    inner = face.points[[1, 33, 133, 263, 362, 61, 291], :2]
    assert ((inner >= (x0, y0)) & (inner <= (x1, y1))).all()
    margin = 0.25 * side
    assert (
        (face.points[:, :2] >= (x0 - margin, y0 - margin))
        & (face.points[:, :2] <= (x1 + margin, y1 + margin))
    ).all()
    assert face.points[33, 0] < face.points[263, 0]
    assert 0.55 < np.linalg.norm(face.points[33, :2] - face.points[263, :2]) / side < 0.75
    # A path and the decoded array give the same result.
    np.testing.assert_array_equal(detect_landmarks(grace).points, face.points)


@requires_models
def test_batched_landmarks_equal_one_at_a_time(grace):
    faces = FaceDetector()(grace)
    assert len(faces.scores) == 1
    landmarker = FaceLandmarker()
    one = landmarker(grace, faces.boxes, faces.keypoints)
    shifted = faces.boxes + torch.tensor([6.0, -4.0, 6.0, -4.0])
    both = landmarker(grace, torch.cat([faces.boxes, shifted]), faces.keypoints.repeat(2, 1, 1))
    torch.testing.assert_close(both.points[:1], one.points, atol=1e-3, rtol=0)
    # Another crop of the same face (box moved by 3 % of its side) gives landmarks within 1.5 % of the box side
    # (1.7 px measured): they follow the face, not the box.
    assert (both.points[1, :, :2] - one.points[0, :, :2]).norm(dim=-1).mean() < 3.0


@requires_models
def test_a_read_only_photo_is_read_without_a_warning(grace):
    # np.asarray(PIL image) and memory-mapped frames are read-only; torch would print a two-line warning on them
    import warnings

    photo = grace.copy()
    photo.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        faces = FaceDetector()(photo)
        points = FaceLandmarker()(photo, faces.boxes, faces.keypoints).points
    assert len(faces.scores) == 1 and points.shape == (1, 468, 3)


@requires_models
@pytest.mark.parametrize("kind", ["blank", "noise"])
def test_no_face(kind):
    rng = np.random.default_rng(0)
    image = (
        np.full((240, 320, 3), 128, np.uint8)
        if kind == "blank"
        else rng.integers(0, 256, (240, 320, 3), np.uint8)
    )
    with pytest.raises(
        NoFaceError, match=r"no face found in the image array; use a photo with a frontal face"
    ):
        detect_landmarks(image)


@requires_models
def test_face_too_small(grace, tmp_path):
    from PIL import Image

    path = tmp_path / "tiny.png"
    Image.fromarray(grace).resize((64, 75), Image.BILINEAR).save(path)
    with pytest.raises(FaceTooSmallError, match=r"tiny\.png is 2\d px wide, below the minimum of 48 px"):
        detect_landmarks(path)
    assert detect_landmarks(path, min_face_size=16).points.shape == (468, 3)


def test_unreadable_images(tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"this is not a JPEG")
    with pytest.raises(ImageReadError, match=r"cannot read .*corrupt\.jpg as an image"):
        detect_landmarks(corrupt)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(open(GRACE, "rb").read()[:5000])
    with pytest.raises(ImageReadError, match=r"truncated\.jpg"):
        detect_landmarks(truncated)
    with pytest.raises(ImageReadError, match=r"missing\.png does not exist"):
        detect_landmarks(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match=r"H x W x 3 uint8"):
        detect_landmarks(np.zeros((32, 32), np.float32))


@requires_models
def test_model_checksum_is_checked(tmp_path):
    copy = tmp_path / "face_detection_short_range.tflite"
    shutil.copy(locate(DETECTOR), copy)
    data = bytearray(copy.read_bytes())
    data[-100] ^= 1
    copy.write_bytes(bytes(data))
    with pytest.raises(TrackModelError, match=r"has sha256 [0-9a-f]{64}, not the face_detection_short_range"):
        FaceDetector(model_path=copy)


def _tf_conv_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """TF CONV_2D, stride 2, SAME, fused ReLU, written out tap by tap in NHWC (independent of the interpreter)."""
    n, h, wd, _ = x.shape
    out_h, out_w = -(-h // 2), -(-wd // 2)
    pad_h, pad_w = (out_h - 1) * 2 + 3 - h, (out_w - 1) * 2 + 3 - wd
    xp = np.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    y = np.zeros((n, out_h, out_w, w.shape[0]))
    for dy in range(3):
        for dx in range(3):
            y += np.einsum(
                "nhwc,oc->nhwo", xp[:, dy : dy + 2 * out_h : 2, dx : dx + 2 * out_w : 2], w[:, dy, dx]
            )
    return np.maximum(y + b, 0)


def test_interpreter_conv_equals_direct_computation(tmp_path):
    from talk.track import TFLiteGraph

    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 3, 3, 2)).astype(
        np.float16
    )  # OHWI, stored fp16 behind a DEQUANTIZE as in MediaPipe
    b = rng.normal(size=4).astype(np.float32)
    path = tmp_path / "conv.tflite"
    path.write_bytes(
        build_model("CONV_2D", w, b, input_shape=(1, 8, 8, 2))
    )  # 8 -> 4: asymmetric SAME padding
    graph = TFLiteGraph(path)
    assert graph.input_shape == (8, 8, 2) and graph.output_shapes == ((4, 4, 4),)
    x = rng.normal(size=(3, 8, 8, 2)).astype(np.float32)  # batch 3 through a graph declared with batch 1
    (y,) = graph(torch.from_numpy(x))
    np.testing.assert_allclose(y.numpy(), _tf_conv_reference(x, w.astype(np.float32), b), atol=1e-5)


def test_interpreter_rejects_unsupported_op(tmp_path):
    from talk.track import TFLiteGraph, TFLiteGraphError

    path = tmp_path / "softmax.tflite"
    path.write_bytes(build_model("SOFTMAX", None, None, input_shape=(1, 4)))
    with pytest.raises(
        TFLiteGraphError, match=r"softmax\.tflite uses the TFLite op SOFTMAX, which .* does not support"
    ):
        TFLiteGraph(path)
    bad = tmp_path / "garbage.tflite"
    bad.write_bytes(b"\x00" * 16)
    with pytest.raises(TFLiteGraphError, match=r"garbage\.tflite is not a readable TFLite model"):
        TFLiteGraph(bad)
