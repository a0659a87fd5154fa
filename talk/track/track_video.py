"""A talking video -> training data: speech, per-frame face-model parameters, a preview and a manifest line.

    from talk.track.track_video import Tracker
    tracker = Tracker("data/tracked")                 # the procedural head, written to data/tracked/face_model.pkl
    record = tracker.track("me.mp4")                  # TrackRecord: files, frames, detection rate, residuals
    # data/tracked/manifest.jsonl now lists it: talk fit -c experiments/tracked/flame_tokenizer.yaml

Layout of the output folder (every file written atomically; a video is finished when its ``tracks/<name>.json``
exists, so an interrupted run resumes where it stopped)::

    wav/<name>.wav           the speech, 16 kHz mono
    flame/<name>.npz         shape [S], expression [T, E], jaw [T, 3] (the FLAME dataset keys), head_rotation,
                             head_translation [T, 3] (camera space), focal [] and image_size [2] (H, W) at the
                             video's frame rate
    landmarks/<name>.npz     detected [T, 468, 2], valid [T], fitted [T, L, 2], landmark_indices [L], residual_px [T]
    preview/<name>.mp4       the video with the fitted mesh and the landmarks drawn over it, with its audio
    tracks/<name>.json       the manifest line and the tracking figures
    manifest.jsonl           every finished video (:class:`talk.data.ManifestDataModule`)
    face_model.pkl, FLAME_masks.pkl   the procedural head when no face model is given
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from talk.errors import UserError
from talk.files import write_atomic, write_text_atomic
from talk.track.detect import NUM_LANDMARKS, FaceDetections, default_models
from talk.track.fit_video import SequenceFit, fit_sequence
from talk.track.video import TalkingVideo, VideoReadError, open_video

__all__ = ["TrackRecord", "Tracker", "track_landmarks"]

SAMPLE_RATE = 16000
_MESH_TINT = np.array([0.55, 0.8, 1.0], np.float32)  # the preview's bluish mesh colour
_MESH_ALPHA = 0.45


@dataclass(frozen=True)
class TrackRecord:
    """One tracked video (``tracks/<name>.json``).

    Attributes:
        name, subject, split: The manifest line's.
        video: The source video's path.
        fps, frames: Frame rate and frame count of the video (and of the parameters).
        detection_rate: Fraction of frames with a face.
        mean_residual_px: Mean landmark residual of the fit over frames with a face, pixels.
        normalized_residual: The same divided by each frame's outer-eye-corner distance.
        seconds: Wall time of tracking this video.
    """

    name: str
    subject: str
    split: str
    video: str
    fps: float
    frames: int
    detection_rate: float
    mean_residual_px: float
    normalized_residual: float
    seconds: float

    def manifest_line(self) -> dict:
        return {
            "audio": f"wav/{self.name}.wav", "motion": f"flame/{self.name}.npz", "subject": self.subject,
            "fps": self.fps, "split": self.split, "name": self.name,
        }  # fmt: skip


def track_landmarks(
    video: TalkingVideo,
    chunk: int = 64,
    detect_every: int = 4,
    min_face_size: float = 32.0,
    presence_threshold: float = 0.5,
    on_frames: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Detect the face and its 468 FaceMesh landmarks in every frame.

    The detector runs on every ``detect_every``-th frame (one batch per chunk) and keeps the largest face big
    enough; the frames between take the latest detection's box, as MediaPipe's video mode takes the previous
    frame's region: a face moves little in a few frames, and the landmark crop is 1.5 times the face. A frame
    whose landmarks then fail the presence score is detected on its own and tried again.

    Returns:
        ``(points [T, 468, 2] float32, valid [T] bool)``; rows of invalid frames are zero.
    """
    detector, landmarker = default_models()
    points, valid = [], []
    last: tuple[torch.Tensor, torch.Tensor] | None = None
    seen = 0

    def largest(faces: FaceDetections) -> tuple[torch.Tensor, torch.Tensor] | None:
        if len(faces.scores) == 0:
            return None
        sides = (faces.boxes[:, 2:] - faces.boxes[:, :2]).amax(-1)
        if not bool((sides >= min_face_size).any()):
            return None
        i = int(torch.argmax(torch.where(sides >= min_face_size, sides, -1.0)))
        return faces.boxes[i], faces.keypoints[i]

    def landmarks(frames: np.ndarray, regions: list) -> tuple[np.ndarray, np.ndarray]:
        rows = np.zeros((len(frames), NUM_LANDMARKS, 2), np.float32)
        ok = np.zeros(len(frames), bool)
        index = np.array([i for i, r in enumerate(regions) if r is not None], np.int64)
        if len(index):
            boxes = torch.stack([regions[i][0] for i in index])
            keypoints = torch.stack([regions[i][1] for i in index])
            marks = landmarker.landmarks_frames(frames[index], boxes, keypoints)
            rows[index] = marks.points[..., :2].numpy()
            ok[index] = marks.presence.numpy() >= presence_threshold
        return rows, ok

    for frames in video.chunks(chunk):
        keys = [i for i in range(len(frames)) if (seen + i) % detect_every == 0]
        found = dict(zip(keys, detector.detect_frames(frames[keys]), strict=True)) if keys else {}
        regions = []
        for i in range(len(frames)):
            if i in found:
                last = largest(found[i]) or last
            regions.append(last)
        rows, ok = landmarks(frames, regions)
        retry = [i for i in np.nonzero(~ok)[0] if i not in found]  # a stale box may have lost the face
        if retry:
            fresh = [largest(f) for f in detector.detect_frames(frames[retry])]
            again, again_ok = landmarks(frames[retry], fresh)
            rows[retry], ok[retry] = again, again_ok
        points.append(rows * ok[:, None, None])
        valid.append(ok)
        seen += len(frames)
        if on_frames is not None:
            on_frames(len(frames))
    return np.concatenate(points), np.concatenate(valid)


def _auto_split(name: str) -> str:
    """A stable split from the name: about 80% train, 10% val, 10% test."""
    bucket = zlib.crc32(name.encode()) % 10
    return "val" if bucket == 0 else "test" if bucket == 1 else "train"


class Tracker:
    """Tracks talking videos into one output folder (see the module docstring for its layout).

    Args:
        out: The output folder (created).
        face_model: FLAME-format model file; None = the procedural head, written to ``out/face_model.pkl``.
        landmark_embedding: MediaPipe landmark embedding of ``face_model`` (FLAME's
            ``mediapipe_landmark_embedding.npz``); None = the procedural head's (only for the procedural head).
        n_shape: Identity coefficients fitted.
        n_expression: Expression coefficients fitted.
        preview: Write ``preview/<name>.mp4``.
        min_detection_rate: Refuse a video whose face is found in fewer of its frames.
        fit_options: Extra keyword arguments of :func:`~talk.track.fit_video.fit_sequence` (weights, ...).
    """

    def __init__(
        self,
        out: str | Path,
        face_model: str | Path | None = None,
        landmark_embedding: str | Path | None = None,
        n_shape: int = 20,
        n_expression: int = 11,
        preview: bool = True,
        min_detection_rate: float = 0.5,
        fit_options: dict | None = None,
    ) -> None:
        from motion.face.flame import FLAME
        from motion.face.flame_io import load_mediapipe_embedding
        from motion.face.procedural.face import mediapipe_embedding_path, write_procedural_face

        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out {self.out} is a file; pass a folder for the tracking outputs.")
        self.out.mkdir(parents=True, exist_ok=True)
        if face_model is None:
            if landmark_embedding is not None:
                raise UserError("--landmark_embedding needs --face_model (the procedural head has its own).")
            if not (self.out / "face_model.pkl").is_file():
                write_procedural_face(self.out)
            face_model, landmark_embedding = self.out / "face_model.pkl", mediapipe_embedding_path()
        elif landmark_embedding is None:
            raise UserError(
                f"--face_model {face_model} needs --landmark_embedding (FLAME's mediapipe_landmark_embedding.npz)."
            )
        self.face_model_path = Path(face_model)
        try:
            self.model = FLAME(
                str(face_model), n_shape=n_shape, n_expression=n_expression,
                landmark_embedding_path=str(landmark_embedding),
            ).eval()  # fmt: skip
            self.landmark_indices = load_mediapipe_embedding(landmark_embedding)[2]
        except (FileNotFoundError, ValueError, KeyError) as exc:
            raise UserError(f"cannot load the face model: {str(exc).splitlines()[0]}") from None
        self.preview = preview
        self.min_detection_rate = min_detection_rate
        self.fit_options = dict(fit_options or {})

    # ---------------------------------------------------------------------------------------------- records
    def record_path(self, name: str) -> Path:
        return self.out / "tracks" / f"{name}.json"

    def finished(self, name: str) -> TrackRecord | None:
        """The record of video ``name`` when it is already tracked, else None."""
        path = self.record_path(name)
        return TrackRecord(**json.loads(path.read_text())) if path.is_file() else None

    def records(self) -> list[TrackRecord]:
        """Every finished video of the folder, by name."""
        return [self.finished(path.stem) for path in sorted((self.out / "tracks").glob("*.json"))]

    def write_manifest(self) -> Path:
        lines = [json.dumps(r.manifest_line()) for r in self.records()]
        path = self.out / "manifest.jsonl"
        write_text_atomic(path, "".join(line + "\n" for line in lines))
        return path

    # -------------------------------------------------------------------------------------------- tracking
    def track(
        self,
        video_path: str | Path | TalkingVideo,
        name: str | None = None,
        subject: str | None = None,
        split: str = "auto",
        overwrite: bool = False,
        on_frames: Callable[[int], None] | None = None,
    ) -> TrackRecord:
        """Track one video (skipped when already finished, unless ``overwrite``) and update the manifest."""
        video = video_path if isinstance(video_path, TalkingVideo) else None
        video_path = video.path if video is not None else Path(video_path)
        name = name or video_path.stem
        done = None if overwrite else self.finished(name)
        if done is not None:
            return done
        start = time.perf_counter()
        video = video or open_video(video_path)
        wav = video.audio(SAMPLE_RATE)
        points, valid = track_landmarks(video, on_frames=on_frames)
        rate = float(valid.mean())
        if rate < self.min_detection_rate:
            raise VideoReadError(
                f"{video_path}: a face was found in {int(valid.sum())} of {len(valid)} frames (below "
                f"{self.min_detection_rate:.0%}); use a video with a visible frontal face."
            )
        fit = fit_sequence(
            points, valid, self.model, video.size, landmark_indices=self.landmark_indices, **self.fit_options
        )
        self._write_outputs(name, video, wav, points, valid, fit)
        record = TrackRecord(
            name=name, subject=subject or name, split=_auto_split(name) if split == "auto" else split,
            video=str(video_path), fps=float(video.fps), frames=len(valid), detection_rate=rate,
            mean_residual_px=fit.mean_residual_px, normalized_residual=fit.normalized_residual,
            seconds=time.perf_counter() - start,
        )  # fmt: skip
        write_text_atomic(self.record_path(name), json.dumps(asdict(record), indent=1) + "\n")
        self.write_manifest()
        return record

    def _write_outputs(
        self, name: str, video: TalkingVideo, wav: np.ndarray, points: np.ndarray, valid: np.ndarray,
        fit: SequenceFit,
    ) -> None:  # fmt: skip
        import soundfile

        for sub in ("wav", "flame", "landmarks", "preview", "tracks"):
            (self.out / sub).mkdir(exist_ok=True)
        write_atomic(
            self.out / "wav" / f"{name}.wav", lambda fh: soundfile.write(fh, wav, SAMPLE_RATE, format="WAV")
        )
        params = {
            "shape": fit.shape, "expression": fit.expression, "jaw": fit.jaw, "head_rotation": fit.rotation,
            "head_translation": fit.translation, "focal": np.float32(fit.focal),
            "image_size": np.asarray(fit.image_size, np.int64),
        }  # fmt: skip
        write_atomic(self.out / "flame" / f"{name}.npz", lambda fh: np.savez(fh, **params))
        diagnostics = {
            "detected": points, "valid": valid, "fitted": fit.landmarks,
            "landmark_indices": fit.landmark_indices, "residual_px": fit.residual_px,
        }  # fmt: skip
        write_atomic(self.out / "landmarks" / f"{name}.npz", lambda fh: np.savez(fh, **diagnostics))
        if self.preview:
            self._write_preview(self.out / "preview" / f"{name}.mp4", video, points, valid, fit)

    def _write_preview(
        self, path: Path, video: TalkingVideo, points: np.ndarray, valid: np.ndarray, fit: SequenceFit
    ) -> None:
        from motion.face.flame import FLAMEParams
        from render import Camera, TorchRasterizer, VideoWriter
        from talk.track.overlay import draw_points

        params = fit.params()
        camera = Camera(R=torch.eye(3)[None], T=torch.zeros(1, 3), focal=fit.focal, image_size=fit.image_size)
        renderer = TorchRasterizer(shading="lambert", background=(0, 0, 0), ambient=0.5)
        start = 0
        with VideoWriter(path, fps=video.fps, audio=video.path) as writer:
            for frames in video.chunks(32):
                rows = slice(start, start + len(frames))
                with torch.no_grad():
                    verts = self.model(
                        FLAMEParams(
                            shape=params.shape, expression=params.expression[:, rows], jaw_pose=params.jaw_pose[:, rows],
                            global_pose=params.global_pose[:, rows], translation=params.translation[:, rows],
                        )
                    ).vertices[0]  # fmt: skip
                out = renderer.render(verts, self.model.faces, camera)
                # blend the shaded mesh over the face pixels only (the rest of the frame is copied)
                image = frames.copy()
                on = out.mask.numpy()
                tinted = out.image[..., :3].numpy()[on] * (_MESH_TINT * 255 * _MESH_ALPHA)
                image[on] = (image[on] * (1 - _MESH_ALPHA) + tinted).clip(0, 255).astype(np.uint8)
                draw_points(image, points[rows], (40, 230, 40), radius=1, frames=valid[rows])
                draw_points(image, fit.landmarks[rows], (240, 40, 40), radius=1)
                writer.write(image)
                start += len(frames)
