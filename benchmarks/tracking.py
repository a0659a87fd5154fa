"""Tracking speed and accuracy: frames/s of detection, landmarks, fitting and the whole `talk track`, and the error
of a round trip through a rendered talking video whose motion is known.

Run: ``python benchmarks/tracking.py [--seconds 10] [--size 256]`` (2 torch threads; a few minutes on 2 cores).

In one run:
* a synthetic sentence (``talk.synth``) is rendered with the textured procedural head, head motion and light
  (``talk.synth.video.render_talking_video``) to an mp4 with its speech;
* speed: detection (one batch per 64 frames) against one frame at a time (the baseline), FaceMesh landmarks
  batched against one at a time, :func:`fit_sequence` (batched Levenberg-Marquardt) against :func:`fit_image` on
  each frame alone (the baseline), and ``talk track`` end to end (reading, audio, landmarks, fit, npz, preview);
* accuracy: detection rate, landmark residual of the fit (pixels and % of the outer-eye-corner distance), the
  detector's distance to the true projected landmarks, and against the truth: jaw correlation and error, lip
  vertex motion error (mm, relative to each identity's neutral) and head-rotation error, for the fit to the
  detector's landmarks and for a fit to the true landmarks (what the fitting alone loses).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from motion.face.flame import FLAME, FLAMEParams  # noqa: E402
from motion.face.procedural.face import mediapipe_embedding_path  # noqa: E402
from talk.synth import synthesize_dataset  # noqa: E402
from talk.synth.video import render_talking_video  # noqa: E402
from talk.track.detect import default_models  # noqa: E402
from talk.track.fit import fit_image  # noqa: E402
from talk.track.fit_video import fit_sequence  # noqa: E402
from talk.track.track_video import Tracker, track_landmarks  # noqa: E402
from talk.track.video import open_video  # noqa: E402


def lip_motion(
    model: FLAME, shape: np.ndarray, expression: np.ndarray, jaw: np.ndarray, lips: np.ndarray
) -> torch.Tensor:
    """Lip vertices [T, K, 3] relative to the identity's neutral."""
    s = torch.zeros(1, model.n_shape)
    s[0, : len(shape)] = torch.as_tensor(shape[: model.n_shape])
    with torch.no_grad():
        moving = model(
            FLAMEParams(
                shape=s, expression=torch.as_tensor(expression)[None], jaw_pose=torch.as_tensor(jaw)[None]
            )
        )
        neutral = model(FLAMEParams(shape=s, jaw_pose=torch.zeros(1, 1, 3)))
    return (moving.vertices[0] - neutral.vertices[0])[:, lips]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the rendered video")
    parser.add_argument("--size", type=int, default=256, help="frame size in pixels")
    args = parser.parse_args()
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="talk_tracking_"))
    sentences = max(1, int(np.ceil(args.seconds / 2.5)))
    synthesize_dataset(work / "synth", speakers=1, sentences=sentences, seed=0, workers=1, progress=False)
    # one long take: the speaker's sentences end to end, at 30 fps (the dataset's 60 fps, every other frame)
    names = sorted(p.stem for p in (work / "synth" / "flame").glob("*.npz"))
    arrays = [dict(np.load(work / "synth" / "flame" / f"{n}.npz")) for n in names]
    import soundfile as sf

    wavs = [sf.read(work / "synth" / "wav" / f"{n}.wav")[0] for n in names]
    n_frames = int(args.seconds * 30)
    params = {k: np.concatenate([a[k][::2] for a in arrays])[:n_frames] for k in ("expression", "jaw")}
    params["shape"] = arrays[0]["shape"]
    sf.write(work / "speech.wav", np.concatenate(wavs)[: int(16000 * args.seconds)], 16000)
    t0 = time.perf_counter()
    truth = render_talking_video(
        work / "videos" / "take.mp4", work / "speech.wav", params, 30, work / "synth" / "face_model.pkl",
        size=args.size, seed=1,
    )  # fmt: skip
    n = len(params["jaw"])
    print(f"rendered {n} frames at {args.size} px in {time.perf_counter() - t0:.1f} s ({work})")

    video = open_video(truth.video_path)
    frames = np.concatenate(list(video.chunks(64)))
    detector, landmarker = default_models()
    detector.detect_frames(frames[:2])
    k = min(64, n)
    t0 = time.perf_counter()
    found = detector.detect_frames(frames[:k])
    batched = k / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for f in frames[:16]:
        detector(f)
    single = 16 / (time.perf_counter() - t0)
    print(f"detection:  {batched:6.1f} frames/s batched (64)   baseline one at a time {single:6.1f} frames/s")
    boxes = torch.stack([d.boxes[0] for d in found])
    keypoints = torch.stack([d.keypoints[0] for d in found])
    t0 = time.perf_counter()
    landmarker.landmarks_frames(frames[:k], boxes, keypoints)
    batched = k / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(16):
        landmarker(frames[i], boxes[i : i + 1], keypoints[i : i + 1])
    single = 16 / (time.perf_counter() - t0)
    print(f"landmarks:  {batched:6.1f} frames/s batched (64)   baseline one at a time {single:6.1f} frames/s")

    points, valid = track_landmarks(video)
    model = FLAME(
        str(work / "synth" / "face_model.pkl"), n_shape=20, n_expression=11,
        landmark_embedding_path=str(mediapipe_embedding_path()),
    )  # fmt: skip
    t0 = time.perf_counter()
    fit = fit_sequence(points, valid, model, video.size)
    seq_fps = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(8):
        fit_image(points[i], model, image_size=video.size)
    image_fps = 8 / (time.perf_counter() - t0)
    print(
        f"fitting:    {seq_fps:6.1f} frames/s fit_sequence     baseline fit_image per frame {image_fps:6.1f} frames/s"
    )

    t0 = time.perf_counter()
    record = Tracker(work / "tracked").track(video)
    whole = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    Tracker(work / "tracked_nopreview", preview=False).track(video)
    no_preview = n / (time.perf_counter() - t0)
    print(
        f"talk track: {whole:6.1f} frames/s end to end ({no_preview:.1f} without the preview); video {video.fps:g} fps"
    )

    masks = pickle.load(open(work / "synth" / "FLAME_masks.pkl", "rb"))  # noqa: SIM115 - written by this run
    lips = masks["lips"]
    true_lips = lip_motion(model, params["shape"], params["expression"], params["jaw"], lips)
    detected_err = np.linalg.norm(points - truth.landmarks, axis=-1)[valid].mean()
    print(
        f"\naccuracy over {n} frames: face found in {valid.mean():.0%}; detector vs true landmarks {detected_err:.2f} px; "
        f"fit residual {record.mean_residual_px:.2f} px = {100 * record.normalized_residual:.2f}% of the eye distance"
    )
    oracle = fit_sequence(truth.landmarks, None, model, video.size)
    for label, result in (("detector landmarks", fit), ("true landmarks", oracle)):
        mine = lip_motion(model, result.shape, result.expression, result.jaw, lips)
        err = (mine - true_lips).norm(dim=-1)
        jaw_c = np.corrcoef(result.jaw[:, 0], params["jaw"][:, 0])[0, 1]
        rot = np.degrees(np.abs(result.rotation - truth.global_pose).mean())
        print(
            f"  fit to {label:18s}: lip motion error {1e3 * float(err.mean()):.2f} mm (motion {1e3 * float(true_lips.norm(dim=-1).mean()):.2f} mm), "
            f"jaw corr {jaw_c:.3f}, jaw error {np.abs(result.jaw[:, 0] - params['jaw'][:, 0]).mean():.4f} rad, "
            f"head rotation error {rot:.2f} deg"
        )


if __name__ == "__main__":
    main()
