import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.spatial.transform import Rotation

from motion.face.flame_io import load_mediapipe_embedding
from motion.face.procedural.face import build_procedural_face, mediapipe_embedding_path, write_procedural_face
from render import Camera, TorchRasterizer, probe_video
from render.ffmpeg_bin import ffmpeg_exe
from render.textured import textured_background
from talk.synth.video import TalkingVideoTruth, head_motion, procedural_albedo, render_talking_video
from talk.track.embedding import surface_points

FPS, T, SIZE = 25, 25, 128
NOSE_TIP = 1  # FaceMesh index


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    root = tmp_path_factory.mktemp("talking_video")
    model = write_procedural_face(root / "face").model
    t = np.arange(T) / FPS
    wav = root / "speech.wav"
    sf.write(wav, (0.2 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32), 16000)
    expression = np.zeros((T, 11), np.float32)
    expression[:, 2] = 0.5 * (1 + np.sin(2 * np.pi * t))  # smile
    jaw = np.zeros((T, 3), np.float32)
    jaw[:, 0] = 0.1 * (1 + np.sin(2 * np.pi * 2 * t))
    params = {"expression": expression, "jaw": jaw, "shape": np.linspace(-1, 1, 20).astype(np.float32)}
    truth = render_talking_video(root / "clip.mp4", wav, params, FPS, model, size=SIZE, seed=3, chunk=10)
    return truth, params


def _decode(path, size):
    raw = subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, size, size, 3)


def test_video_has_every_frame_and_the_audio(video):
    truth, _ = video
    info = probe_video(truth.video_path)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.n_frames, info.width, info.height, info.fps) == (T, SIZE, SIZE, FPS)
    assert abs(info.audio_duration - T / FPS) < 1 / FPS


def test_truth_file_has_the_keys_and_shapes(video):
    truth, params = video
    assert truth.truth_path == truth.video_path.with_name("clip_truth.npz")
    with np.load(truth.truth_path) as npz:
        shapes = {k: npz[k].shape for k in npz.files}
    n_v = len(procedural_albedo())
    expected = {
        "expression": (T, 11), "jaw": (T, 3), "shape": (20,), "global_pose": (T, 3), "translation": (T, 3),
        "focal": (), "image_size": (2,), "landmarks": (T, 468, 2), "vertices": (T, n_v, 3),
    }  # fmt: skip
    assert {k: shapes[k] for k in expected} == expected
    loaded = TalkingVideoTruth.load(truth.truth_path)
    assert loaded.video_path == truth.video_path and loaded.focal == pytest.approx(1.2 * SIZE)
    np.testing.assert_array_equal(loaded.image_size, [SIZE, SIZE])
    np.testing.assert_array_equal(loaded.expression, params["expression"])
    np.testing.assert_array_equal(loaded.shape, params["shape"])
    np.testing.assert_array_equal(loaded.landmark_indices, np.arange(468))
    assert loaded.vertices.dtype == np.float32
    # the pose is not trivial and the head sits in front of the camera
    assert np.abs(loaded.global_pose).max() > np.radians(1.0)
    assert (loaded.vertices[..., 2] < -0.3).all()


def test_truth_landmarks_and_vertices_match_the_frames(video):
    truth, _ = video
    camera = Camera(R=torch.eye(3)[None], T=torch.zeros(1, 3), focal=truth.focal, image_size=(SIZE, SIZE))
    faces = torch.as_tensor(build_procedural_face().model["f"].astype(np.int64))
    mask = TorchRasterizer().render(torch.as_tensor(truth.vertices), faces, camera).mask.numpy()
    nose = np.floor(truth.landmarks[:, NOSE_TIP]).astype(int)
    assert mask[np.arange(T), nose[:, 1], nose[:, 0]].all()
    # the nose tip sits in the middle of the face, and the face is a good part of the frame
    assert np.abs(nose - SIZE / 2).max() < SIZE / 4
    assert 0.1 < mask.mean() < 0.5
    # every landmark is the embedding's surface point of the truth vertices, seen through the tracker's camera
    fidx, bary, _ = load_mediapipe_embedding(mediapipe_embedding_path())
    points = surface_points(
        torch.as_tensor(truth.vertices).double(), faces, torch.as_tensor(fidx), torch.as_tensor(bary)
    )
    np.testing.assert_allclose(camera.project(points)[..., :2].numpy(), truth.landmarks, atol=1e-2)
    # the video shows the head where the truth vertices put it, and the backdrop elsewhere
    frames = _decode(truth.video_path, SIZE).astype(float)
    head = np.abs(frames - textured_background((SIZE, SIZE), 3)).max(-1) > 25
    iou = (head & mask).sum((1, 2)) / (head | mask).sum((1, 2))
    assert iou.min() > 0.9, iou.min()


def test_head_motion_is_seeded_bounded_and_smooth():
    a, b, c = head_motion(300, 30, seed=1), head_motion(300, 30, seed=1), head_motion(300, 30, seed=2)
    for name in ("global_pose", "translation", "light_direction", "euler_deg"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert getattr(a, name).shape == (300, 3)
    assert np.abs(a.global_pose - c.global_pose).max() > 0.01
    yaw, pitch, roll = np.abs(a.euler_deg).max(0)
    assert 3 < yaw <= 10 and pitch <= 6 and roll <= 4
    # global_pose is the rotation Rz(roll) Ry(yaw) Rx(pitch)
    euler = Rotation.from_rotvec(a.global_pose).as_euler("ZYX", degrees=True)
    np.testing.assert_allclose(euler, a.euler_deg[:, [2, 0, 1]], atol=1e-3)
    # slow: at most 2 pi max_hz amplitude per second, i.e. under a degree per frame
    assert np.abs(np.diff(a.euler_deg, axis=0)).max() < 2 * np.pi * 0.4 * 10 / 30 + 1e-3
    assert np.abs(np.diff(a.translation, axis=0)).max() < 1e-3
    np.testing.assert_allclose(np.linalg.norm(a.light_direction, axis=1), 1.0, rtol=1e-5)
    assert (a.light_direction[:, 2] > 0.5).all()  # lit from the camera's side


def test_procedural_albedo_is_seeded_and_paints_the_regions():
    masks = build_procedural_face().masks
    a = procedural_albedo(0)
    assert a.dtype == np.float32 and a.shape == (4948, 3) and 0 <= a.min() and a.max() <= 1
    np.testing.assert_array_equal(a, procedural_albedo(0))
    assert np.abs(a - procedural_albedo(1)).mean() > 0.01
    lum = a.mean(1)
    skin = np.median(lum[masks["face"]])
    assert lum[masks["mouth_interior"]].mean() < 0.5 * skin
    lips = a[masks["lips"]]
    assert (lips[:, 0] - lips[:, 1]).max() > 0.25  # red
    ball = masks["left_eyeball"]
    assert lum[ball].max() > 0.85 and lum[ball].min() < 0.1  # white sclera, dark pupil


def test_bad_params_raise(tmp_path):
    with pytest.raises(ValueError, match="jaw"):
        render_talking_video(
            tmp_path / "x.mp4", tmp_path / "a.wav", {"expression": np.zeros((5, 11)), "jaw": np.zeros((4, 3))},
            25, tmp_path / "face_model.pkl",
        )  # fmt: skip
