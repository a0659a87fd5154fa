"""Face tracking from photos: face detection and MediaPipe's 468 FaceMesh landmarks, in pure torch.

    from talk.track import detect_landmarks
    face = detect_landmarks("portrait.jpg")   # FaceLandmarks: points [468, 3] in image pixels, box, score
    fit = fit_image(face, flame)              # FitResult: FLAMEParams, camera, vertices, residuals (talk.track.fit)
    Tracker("data/tracked").track("talk.mp4") # a talking video -> wav, per-frame parameters, preview, manifest line

The pretrained models are MediaPipe's (Apache-2.0), taken from the official wheel installed for its files only;
install with ``pip install "talk[track]"`` and ``pip install --no-deps mediapipe==0.10.21`` (``make setup`` does
both). Nothing here imports Lightning or mediapipe itself.
"""

from talk.track.detect import (
    FaceDetections,
    FaceDetector,
    FaceLandmarker,
    FaceLandmarks,
    FaceTooSmallError,
    LandmarkBatch,
    NoFaceError,
    detect_landmarks,
)
from talk.track.embedding import Embedding, build_procedural_embedding, save_embedding
from talk.track.fit import FitError, FitResult, fit_image
from talk.track.fit_video import SequenceFit, fit_sequence
from talk.track.image import ImageReadError, read_image
from talk.track.model_files import TrackModelError
from talk.track.tflite_torch import TFLiteGraph, TFLiteGraphError, TrackDependencyError
from talk.track.track_video import Tracker, TrackRecord, track_landmarks
from talk.track.video import TalkingVideo, VideoReadError, open_video

__all__ = [
    "Embedding",
    "FitError",
    "FitResult",
    "build_procedural_embedding",
    "fit_image",
    "SequenceFit",
    "fit_sequence",
    "Tracker",
    "TrackRecord",
    "track_landmarks",
    "TalkingVideo",
    "VideoReadError",
    "open_video",
    "save_embedding",
    "FaceDetections",
    "FaceDetector",
    "FaceLandmarker",
    "FaceLandmarks",
    "FaceTooSmallError",
    "ImageReadError",
    "LandmarkBatch",
    "NoFaceError",
    "TFLiteGraph",
    "TFLiteGraphError",
    "TrackDependencyError",
    "TrackModelError",
    "detect_landmarks",
    "read_image",
]
