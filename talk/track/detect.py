"""Face detection (BlazeFace short range) and 468 face landmarks (FaceMesh) from MediaPipe's pretrained models.

    from talk.track import detect_landmarks
    face = detect_landmarks("portrait.jpg")      # the largest face
    face.points                                  # [468, 3] float32: x, y in image pixels, z relative depth

The two networks run in torch through :class:`~talk.track.tflite_torch.TFLiteGraph`, and everything around
them follows MediaPipe's CPU graphs (``face_detection_short_range``, ``face_landmark_front_cpu``) step by step:
letterboxed 128 x 128 detector input in [-1, 1], 896 SSD anchors, sigmoid scores above 0.5, weighted non-maximum
suppression at IoU 0.3; then a square crop 1.5 times the box's long side, rotated so that the eyes are level,
192 x 192 in [0, 1], and the landmarks mapped back through the same affine; crops are sampled the way
MediaPipe's OpenCV converter samples them (:func:`talk.track.image.crop`). On two test photos (scikit-image's
astronaut, matplotlib's grace_hopper) boxes agree with official MediaPipe 0.10.21 to 0.1 px and landmarks to
0.006 and 0.04 px on average (0.1 px at most). Keypoints and landmark indices follow the subject's left and
right (keypoint 0 is the subject's right eye, on the image's left).

The short-range detector is made for faces that fill a good part of the frame (selfies, portraits, within about
2 m of the camera). Models are loaded once per process (:func:`talk.track.model_files.load_graph`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from talk.errors import UserError
from talk.track.image import as_image, crop
from talk.track.model_files import DETECTOR, LANDMARKER, load_graph

__all__ = [
    "FaceDetections",
    "FaceDetector",
    "FaceLandmarker",
    "FaceLandmarks",
    "FaceTooSmallError",
    "LandmarkBatch",
    "NoFaceError",
    "detect_landmarks",
]

NUM_LANDMARKS = 468
KEYPOINT_NAMES = (
    "right_eye",
    "left_eye",
    "nose_tip",
    "mouth_center",
    "right_ear_tragion",
    "left_ear_tragion",
)


def _as_tensor(images: Tensor | np.ndarray) -> Tensor:
    """``torch.as_tensor`` of images, copying a read-only array (a photo from PIL, a memory-mapped video) on which
    torch would print a two-line warning."""
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()
    return torch.as_tensor(images)


class NoFaceError(UserError, ValueError):
    """No face was detected in the image."""


class FaceTooSmallError(UserError, ValueError):
    """The largest detected face is smaller than the minimum size for reliable landmarks."""


@dataclass(frozen=True)
class FaceDetections:
    """Faces found by :class:`FaceDetector`, best score first.

    Attributes:
        boxes: [N, 4] float32, ``(x0, y0, x1, y1)`` in image pixels.
        scores: [N] float32 detection confidences in (0, 1).
        keypoints: [N, 6, 2] float32 ``(x, y)`` image pixels, in :data:`KEYPOINT_NAMES` order.
    """

    boxes: Tensor
    scores: Tensor
    keypoints: Tensor


@dataclass(frozen=True)
class LandmarkBatch:
    """What :class:`FaceLandmarker` returns for N faces of one image.

    Attributes:
        points: [N, 468, 3] float32: x, y in image pixels; z relative depth in the same pixel scale (smaller is
            nearer the camera, roughly zero at the face's centre plane).
        presence: [N] float32 probability that the crop holds a face (MediaPipe keeps landmarks above 0.5).
    """

    points: Tensor
    presence: Tensor


@dataclass(frozen=True)
class FaceLandmarks:
    """One face of a photo: MediaPipe's 468 FaceMesh landmarks and the detection they came from.

    Attributes:
        points: [468, 3] float32: x, y in image pixels, z relative depth in the same pixel scale.
        box: [4] float32 detection box ``(x0, y0, x1, y1)`` in image pixels.
        keypoints: [6, 2] float32 detection keypoints in image pixels (:data:`KEYPOINT_NAMES`).
        score: Detection confidence in (0, 1).
        presence: Face-presence probability of the landmark network in (0, 1).
        image_size: ``(H, W)`` of the image the coordinates refer to.
    """

    points: np.ndarray
    box: np.ndarray
    keypoints: np.ndarray
    score: float
    presence: float
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        if self.points.shape != (NUM_LANDMARKS, 3) or self.points.dtype != np.float32:
            raise ValueError(
                f"FaceLandmarks.points must be [468, 3] float32, got {self.points.shape} {self.points.dtype}."
            )
        if self.box.shape != (4,) or self.keypoints.shape != (6, 2):
            raise ValueError(
                f"FaceLandmarks.box must be [4] and keypoints [6, 2], got {self.box.shape}, {self.keypoints.shape}."
            )


def ssd_anchors() -> Tensor:
    """Anchor centres of BlazeFace short range, [896, 2] in [0, 1] (anchor width and height are 1).

    MediaPipe's SsdAnchorsCalculator with 4 layers of strides 8, 16, 16, 16 on a 128 input and 2 anchors per
    layer and cell: the three stride-16 layers share one 8 x 8 grid, so 16 x 16 cells x 2 then 8 x 8 cells x 6.
    """
    centres = []
    for cells, per_cell in ((16, 2), (8, 6)):
        axis = (torch.arange(cells, dtype=torch.float32) + 0.5) / cells
        y, x = torch.meshgrid(axis, axis, indexing="ij")
        centres.append(torch.stack([x, y], -1).reshape(-1, 1, 2).expand(-1, per_cell, -1).reshape(-1, 2))
    return torch.cat(centres)


def box_iou(box: Tensor, boxes: Tensor) -> Tensor:
    """IoU of one box [4] with boxes [M, 4] (``x0, y0, x1, y1``) -> [M]; 0 where either is empty."""
    lo, hi = torch.maximum(box[:2], boxes[:, :2]), torch.minimum(box[2:], boxes[:, 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)
    area = (box[2:] - box[:2]).clamp(min=0).prod()
    union = area + (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(-1) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


class FaceDetector(nn.Module):
    """BlazeFace short-range face detector: one RGB image -> face boxes, scores and 6 keypoints.

    Args:
        model_path: ``face_detection_short_range.tflite``; None = the file of the installed mediapipe wheel.
            Either way its sha256 must be that of mediapipe 0.10.21.
        score_threshold: Minimum detection confidence (MediaPipe: 0.5).
        nms_threshold: IoU above which detections merge into one by score-weighted averaging (MediaPipe: 0.3).
    """

    def __init__(
        self, model_path: str | Path | None = None, score_threshold: float = 0.5, nms_threshold: float = 0.3
    ) -> None:
        super().__init__()
        self.graph = load_graph(DETECTOR, model_path)
        self.size = self.graph.input_shape[0]  # 128
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.register_buffer("anchors", ssd_anchors())
        self._outputs = tuple(self.graph.output_names.index(n) for n in ("regressors", "classificators"))

    def forward(self, image: Tensor | np.ndarray) -> FaceDetections:
        """Detect faces.

        Args:
            image: RGB [H, W, 3] uint8.

        Returns:
            The faces, best score first (possibly none).
        """
        return self.detect_frames(_as_tensor(image)[None])[0]

    def detect_frames(self, frames: Tensor | np.ndarray) -> list[FaceDetections]:
        """Detect the faces of N images of one size as one network batch (a video's frames).

        Args:
            frames: RGB [N, H, W, 3] uint8.

        Returns:
            Per frame, its faces, best score first (possibly none).
        """
        frames = _as_tensor(frames)
        h, w = frames.shape[1:3]
        side = max(h, w)
        # Letterbox: the centred square of side max(H, W) (black outside the image) scaled to 128 x 128.
        scale = side / self.size
        origin = ((w - side) / 2, (h - side) / 2)
        matrix = torch.tensor([[[scale, 0.0, origin[0]], [0.0, scale, origin[1]]]], dtype=torch.float64)
        x = torch.cat([crop(f, matrix, self.size, "zeros") for f in frames])
        outputs = self.graph(x.round() / 127.5 - 1)  # round: MediaPipe warps in uint8
        shift = torch.tensor(origin, dtype=torch.float32)
        found = []
        for raw, logits in zip(outputs[self._outputs[0]], outputs[self._outputs[1]][..., 0], strict=True):
            scores = torch.sigmoid(logits.clamp(-100, 100))
            keep = scores >= self.score_threshold
            raw, scores, anchors = raw[keep] / self.size, scores[keep], self.anchors[keep]
            centre, half = raw[:, :2] + anchors, raw[:, 2:4] / 2
            boxes = torch.cat([centre - half, centre + half], -1)
            keypoints = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None]
            boxes, keypoints, scores = self._weighted_nms(boxes, keypoints, scores)
            found.append(FaceDetections(boxes * side + shift.repeat(2), scores, keypoints * side + shift))
        return found

    def _weighted_nms(
        self, boxes: Tensor, keypoints: Tensor, scores: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """MediaPipe's WEIGHTED non-max suppression: each group of boxes overlapping the best remaining one by
        more than ``nms_threshold`` becomes their score-weighted mean box and keypoints, with the best score."""
        order = torch.argsort(scores, descending=True)
        out_boxes, out_keypoints, out_scores = [], [], []
        while len(order):
            merge = box_iou(boxes[order[0]], boxes[order]) > self.nms_threshold
            merge[0] = True  # the best box always belongs to its own group, even when degenerate
            group = order[merge]
            weights = scores[group] / scores[group].sum()
            out_boxes.append((boxes[group] * weights[:, None]).sum(0))
            out_keypoints.append((keypoints[group] * weights[:, None, None]).sum(0))
            out_scores.append(scores[order[0]])
            order = order[~merge]
        if not out_scores:
            return boxes.new_zeros(0, 4), keypoints.new_zeros(0, 6, 2), scores.new_zeros(0)
        return torch.stack(out_boxes), torch.stack(out_keypoints), torch.stack(out_scores)


class FaceLandmarker(nn.Module):
    """FaceMesh: 468 landmarks for each detected face of one image, computed as a batch.

    Args:
        model_path: ``face_landmark.tflite``; None = the file of the installed mediapipe wheel. Either way its
            sha256 must be that of mediapipe 0.10.21.
        scale: Crop side relative to the detection box's long side (MediaPipe: 1.5).
    """

    def __init__(self, model_path: str | Path | None = None, scale: float = 1.5) -> None:
        super().__init__()
        self.graph = load_graph(LANDMARKER, model_path)
        self.size = self.graph.input_shape[0]  # 192
        self.scale = scale
        sizes = [math.prod(s) for s in self.graph.output_shapes]
        self._outputs = (sizes.index(NUM_LANDMARKS * 3), sizes.index(1))

    def regions(self, boxes: Tensor, keypoints: Tensor) -> Tensor:
        """Affine maps from crop pixels to image pixels, [N, 2, 3] float64.

        The crop is the square of side ``scale`` x the box's long side, centred on the box and turned by the
        angle of the line from keypoint 0 to keypoint 1 (the eyes), so the face is upright in the crop.

        Args:
            boxes: [N, 4] image pixels. keypoints: [N, 6, 2] image pixels.
        """
        boxes, keypoints = boxes.to(torch.float64), keypoints.to(torch.float64)
        eyes = keypoints[:, 1] - keypoints[:, 0]
        angle = torch.atan2(eyes[:, 1], eyes[:, 0])  # MediaPipe: 0 - atan2(-dy, dx), image y pointing down
        cos, sin = torch.cos(angle), torch.sin(angle)
        side = self.scale * (boxes[:, 2:] - boxes[:, :2]).amax(-1)
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        step = side / self.size
        # (u, v) -> centre + R(angle) @ ((u, v) * step - side / 2)
        tx = centre[:, 0] - (cos - sin) * side / 2
        ty = centre[:, 1] - (sin + cos) * side / 2
        row0 = torch.stack([cos * step, -sin * step, tx], -1)
        row1 = torch.stack([sin * step, cos * step, ty], -1)
        return torch.stack([row0, row1], 1)

    def forward(self, image: Tensor | np.ndarray, boxes: Tensor, keypoints: Tensor) -> LandmarkBatch:
        """Landmarks of N faces of one image.

        Args:
            image: RGB [H, W, 3] uint8.
            boxes: [N, 4] face boxes in image pixels (:class:`FaceDetections`).
            keypoints: [N, 6, 2] detection keypoints in image pixels (0 and 1 = the eyes).

        Returns:
            Points [N, 468, 3] and presence [N].
        """
        image = _as_tensor(image)
        return self.landmarks_frames(image[None].expand(len(boxes), -1, -1, -1), boxes, keypoints)

    def landmarks_frames(
        self, frames: Tensor | np.ndarray, boxes: Tensor, keypoints: Tensor
    ) -> LandmarkBatch:
        """Landmarks of one face in each of N images (a video's frames), as one network batch.

        Args:
            frames: RGB [N, H, W, 3] uint8.
            boxes: [N, 4] the face's box in each frame, image pixels.
            keypoints: [N, 6, 2] its detection keypoints (0 and 1 = the eyes), image pixels.

        Returns:
            Points [N, 468, 3] and presence [N].
        """
        if len(boxes) == 0:
            return LandmarkBatch(torch.zeros(0, NUM_LANDMARKS, 3), torch.zeros(0))
        frames = _as_tensor(frames)
        matrices = self.regions(boxes, keypoints)
        # Replicated border: MediaPipe's default for the landmark crop (unlike the detector's black letterbox).
        x = torch.cat([crop(f, m[None], self.size, "border") for f, m in zip(frames, matrices, strict=True)])
        outputs = self.graph(x.round() / 255)  # uint8 as well
        uvz = outputs[self._outputs[0]].reshape(-1, NUM_LANDMARKS, 3).to(torch.float64)
        presence = torch.sigmoid(outputs[self._outputs[1]].reshape(-1))
        uv1 = torch.cat([uvz[..., :2], torch.ones_like(uvz[..., :1])], -1)
        xy = torch.einsum("nij,nlj->nli", matrices, uv1)
        z = (
            uvz[..., 2] * matrices[:, 0, :2].norm(dim=-1)[:, None]
        )  # crop pixels -> image pixels, like x and y
        return LandmarkBatch(torch.cat([xy, z[..., None]], -1).float(), presence)


@lru_cache(maxsize=1)
def default_models() -> tuple[FaceDetector, FaceLandmarker]:
    """The detector and landmarker on the installed model files, built once per process."""
    return FaceDetector(), FaceLandmarker()


def detect_landmarks(
    image: str | Path | np.ndarray, min_face_size: float = 48.0, presence_threshold: float = 0.5
) -> FaceLandmarks:
    """The 468 FaceMesh landmarks of the largest face in a photo.

    Args:
        image: Image file (any format Pillow reads), or an RGB array [H, W, 3] uint8.
        min_face_size: Smallest accepted side of the face's detection box, in pixels; smaller faces give
            unreliable landmarks.
        presence_threshold: Minimum face-presence probability of the landmark network (MediaPipe: 0.5).

    Returns:
        The largest face (by the long side of its box) whose landmarks pass ``presence_threshold``.

    Raises:
        ImageReadError: the file cannot be read, or the array is not H x W x 3 uint8.
        NoFaceError: no face is detected.
        FaceTooSmallError: every detected face is smaller than ``min_face_size``.
        TrackModelError, TrackDependencyError: the model files or the ``tflite`` package are not installed.
    """
    pixels, name = as_image(image)
    detector, landmarker = default_models()
    faces = detector(pixels)
    if len(faces.scores) == 0:
        raise NoFaceError(f"no face found in {name}; use a photo with a frontal face.")
    sides = (faces.boxes[:, 2:] - faces.boxes[:, :2]).amax(-1)
    big = torch.nonzero(sides >= min_face_size).flatten()
    if len(big) == 0:
        raise FaceTooSmallError(
            f"the face in {name} is {float(sides.max()):.0f} px wide, below the minimum of {min_face_size:.0f} px; "
            "use a larger photo or one with the face closer to the camera."
        )
    big = big[torch.argsort(sides[big], descending=True)]
    marks = landmarker(pixels, faces.boxes[big], faces.keypoints[big])
    passing = torch.nonzero(marks.presence >= presence_threshold).flatten()
    if len(passing) == 0:
        raise NoFaceError(f"no face found in {name}; use a photo with a frontal face.")
    k, i = int(passing[0]), int(big[passing[0]])
    return FaceLandmarks(
        points=marks.points[k].numpy().astype(np.float32),
        box=faces.boxes[i].numpy().astype(np.float32),
        keypoints=faces.keypoints[i].numpy().astype(np.float32),
        score=float(faces.scores[i]),
        presence=float(marks.presence[k]),
        image_size=(int(pixels.shape[0]), int(pixels.shape[1])),
    )
