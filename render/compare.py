"""Frames for result videos: prediction alone, or prediction | ground truth | per-vertex error heat map.

The heat map colours every vertex by its error in millimetres through :func:`error_colormap`, a sequential map
whose CIELAB lightness rises monotonically from dark blue (no error) over teal and green to yellow (``max_error_mm``
and above), so the order of the colours reads the same in greyscale and for colour-blind viewers. A vertical
colour bar with tick labels in mm sits to the right of the panels. Text (panel titles, colour bar labels, an
optional caption) is drawn with Pillow's built-in default font, imported lazily so that ``render`` itself does
not need Pillow.

All frames come out as ``[B,H,W,3]`` uint8, ready for :class:`render.video.VideoWriter`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from render.camera import Camera, fit_camera
from render.rasterizer import MeshRenderer, TorchRasterizer, to_uint8
from render.video import VideoWriter

__all__ = ["ComparisonRenderer", "error_colormap"]

# Control points of the error colour map in CIELAB (L, a, b): lightness increases strictly, every point and every
# linear segment between them lies inside the sRGB gamut (checked by a test).
_LAB_POINTS = np.array(
    [[20, 40, -55], [38, 11, -50], [54, -22, -22], [68, -45, 20], [82, -22, 62], [92, -15, 75]], np.float64
)
_XYZ_TO_LINEAR_SRGB = np.array(
    [[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]], np.float64
)
_D65_WHITE = (0.95047, 1.0, 1.08883)


def error_colormap(values: np.ndarray | Tensor) -> np.ndarray:
    """Map values in [0,1] (clipped) to sRGB colours in [0,1]; perceptually ordered (lightness rises with value).

    Args:
        values: any shape ``[...]``; NaN counts as 0.

    Returns:
        ``[...,3]`` float32 RGB.
    """
    t = np.nan_to_num(np.asarray(values, np.float64), nan=0.0).clip(0.0, 1.0) * (len(_LAB_POINTS) - 1)
    k = np.minimum(t.astype(np.int64), len(_LAB_POINTS) - 2)
    frac = (t - k)[..., None]
    # Interpolated in Lab, not RGB: equal steps in value give roughly equal perceived steps.
    lab = _LAB_POINTS[k] * (1.0 - frac) + _LAB_POINTS[k + 1] * frac
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    delta = 6.0 / 29.0
    xyz = np.where(f > delta, f**3, 3.0 * delta**2 * (f - 4.0 / 29.0)) * np.asarray(_D65_WHITE)
    linear = (xyz @ _XYZ_TO_LINEAR_SRGB.T).clip(0.0, 1.0)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1.0 / 2.4) - 0.055)
    return srgb.astype(np.float32)


def _nice_ticks(top: float, max_ticks: int = 6) -> np.ndarray:
    """Tick values 0, s, 2s, ... <= top with s in {1, 2, 2.5, 5} x 10^k and at most ``max_ticks`` ticks."""
    raw = top / max(max_ticks - 1, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw * (1 - 1e-9))
    return np.arange(0.0, top + step * 1e-6, step)


class ComparisonRenderer:
    """Render result frames: :meth:`prediction` alone, or :meth:`compare` (prediction | ground truth | error).

    Args:
        renderer: backend of the prediction and ground-truth panels; ``None`` is a Phong :class:`TorchRasterizer`.
        heatmap_renderer: backend of the error panel (drawn with per-vertex colours); ``None`` is a Lambert
            :class:`TorchRasterizer` with ambient 0.6, so that dark colours stay readable.
        panel_size: ``(H, W)`` of each panel in pixels.
        background: RGB in [0,1] behind the meshes and the colour bar.
        max_error_mm: error shown at the top of the colour scale; larger errors get the top colour.
        units_to_mm: factor from vertex units to millimetres (1000 for vertices in metres).
        labels: draw the panel titles ("prediction", "ground truth", "error").
        font_size: text height in pixels; ``None`` picks ``max(10, H // 20)``.
        view: view of the camera fitted when none is passed (``"front"`` or ``"three_quarter"``).
    """

    def __init__(
        self,
        renderer: MeshRenderer | None = None,
        heatmap_renderer: MeshRenderer | None = None,
        panel_size: tuple[int, int] = (256, 256),
        background: Sequence[float] = (1.0, 1.0, 1.0),
        max_error_mm: float = 5.0,
        units_to_mm: float = 1000.0,
        labels: bool = True,
        font_size: int | None = None,
        view: Literal["front", "three_quarter"] = "front",
    ) -> None:
        if len(panel_size) != 2 or min(int(s) for s in panel_size) < 16:
            raise ValueError(
                f"ComparisonRenderer: `panel_size` must be (H, W) of at least 16, got {panel_size}."
            )
        if len(background) != 3 or not all(0.0 <= float(c) <= 1.0 for c in background):
            raise ValueError(
                f"ComparisonRenderer: `background` must be an RGB triple in [0,1], got {background}."
            )
        if not max_error_mm > 0 or not units_to_mm > 0:
            raise ValueError("ComparisonRenderer: `max_error_mm` and `units_to_mm` must be positive.")
        self.renderer = renderer if renderer is not None else TorchRasterizer()
        self.heatmap_renderer = (
            heatmap_renderer
            if heatmap_renderer is not None
            else TorchRasterizer(shading="lambert", ambient=0.6)
        )
        self.panel_size = (int(panel_size[0]), int(panel_size[1]))
        self.background = tuple(float(c) for c in background)
        self.max_error_mm = float(max_error_mm)
        self.units_to_mm = float(units_to_mm)
        self.labels = bool(labels)
        self.font_size = int(font_size) if font_size is not None else max(10, self.panel_size[0] // 20)
        self.view = view
        luminance = 0.2126 * self.background[0] + 0.7152 * self.background[1] + 0.0722 * self.background[2]
        self.text_color = (0, 0, 0) if luminance > 0.5 else (255, 255, 255)
        self._font = None
        self._colorbar: np.ndarray | None = None
        self._text_cache: dict[str, np.ndarray] = {}

    # ----------------------------------------------------------------------------------------------- public API
    def fit_camera(self, *sequences: Tensor) -> Camera:
        """One still camera framing every frame of every ``[T,V,3]`` sequence, at the panel size."""
        points = torch.cat([s.detach().reshape(-1, 3).float().cpu() for s in sequences])
        return fit_camera(points, image_size=self.panel_size, view=self.view)

    def frame_size(self, comparison: bool = True) -> tuple[int, int]:
        """``(H, W)`` of the frames of :meth:`compare` (``comparison=True``) or :meth:`prediction`."""
        height, width = self.panel_size
        return (height, 3 * width + self.colorbar().shape[1]) if comparison else (height, width)

    def prediction(
        self,
        vertices: Tensor,
        faces: Tensor,
        camera: Camera | None = None,
        caption: str | Sequence[str] | None = None,
    ) -> np.ndarray:
        """Frames of the predicted meshes alone: ``[B,H,W,3]`` uint8 with ``(H, W) = panel_size``.

        Args:
            vertices: ``[B,V,3]`` (or ``[V,3]``) predicted vertices.
            faces: ``[F,3]`` long vertex indices.
            camera: camera at ``panel_size``; ``None`` fits one to these frames (pass one fitted to the whole
                sequence with :meth:`fit_camera` when rendering it chunk by chunk, so that it stays still).
            caption: text drawn at the bottom left, one string for all frames or one per frame.
        """
        vertices = self._check_vertices(vertices, "vertices")
        camera = self._camera(camera, vertices)
        frames = self._panel(self.renderer, vertices, faces, camera, None)
        if self.labels:
            self._blit_text(frames, "prediction", 0, top=True, width=self.panel_size[1])
        return self._caption(frames, caption)

    def compare(
        self,
        prediction: Tensor,
        ground_truth: Tensor,
        faces: Tensor,
        camera: Camera | None = None,
        caption: str | Sequence[str] | None = None,
    ) -> np.ndarray:
        """Frames ``prediction | ground truth | error heat map | colour bar``: ``[B,H,3W+Wc,3]`` uint8.

        The heat map is drawn on the predicted mesh; a vertex's error is ``||prediction - ground_truth||`` in mm.

        Args:
            prediction: ``[B,V,3]`` (or ``[V,3]``) predicted vertices.
            ground_truth: ``[B,V,3]`` (or ``[V,3]``) ground-truth vertices of the same shape.
            faces: ``[F,3]`` long vertex indices.
            camera: camera at ``panel_size``; ``None`` fits one to both sets of frames (see :meth:`prediction`).
            caption: text drawn at the bottom left, one string for all frames or one per frame.
        """
        prediction = self._check_vertices(prediction, "prediction")
        ground_truth = self._check_vertices(ground_truth, "ground_truth")
        if prediction.shape != ground_truth.shape:
            raise ValueError(
                f"ComparisonRenderer.compare: `prediction` {tuple(prediction.shape)} and `ground_truth` "
                f"{tuple(ground_truth.shape)} must have the same shape."
            )
        camera = self._camera(camera, prediction, ground_truth)
        error_mm = (prediction.double() - ground_truth.double()).norm(dim=-1) * self.units_to_mm  # [B,V]
        colors = torch.from_numpy(error_colormap(error_mm.numpy() / self.max_error_mm))
        panels = [
            self._panel(self.renderer, prediction, faces, camera, None),
            self._panel(self.renderer, ground_truth, faces, camera, None),
            self._panel(self.heatmap_renderer, prediction, faces, camera, colors),
        ]
        strip = self.colorbar()
        bar = np.broadcast_to(strip, (prediction.shape[0], *strip.shape))
        frames = np.concatenate([*panels, bar], axis=2)
        if self.labels:
            for k, title in enumerate(("prediction", "ground truth", "error")):
                self._blit_text(frames, title, k * self.panel_size[1], top=True, width=self.panel_size[1])
        return self._caption(frames, caption)

    def write_video(
        self,
        path: str | Path,
        prediction: Tensor,
        faces: Tensor,
        fps: float,
        ground_truth: Tensor | None = None,
        audio: str | Path | None = None,
        caption: str | Sequence[str] | None = None,
        chunk_size: int = 16,
    ) -> Path:
        """Render a ``[T,V,3]`` sequence chunk by chunk with one still camera and stream it into an mp4.

        Args:
            path: output ``.mp4`` path.
            prediction: ``[T,V,3]`` predicted vertices.
            faces: ``[F,3]`` long vertex indices.
            fps: frame rate of the sequence.
            ground_truth: optional ``[T,V,3]``; given, the frames are :meth:`compare` frames, else :meth:`prediction`.
            audio: optional audio file muxed into the video.
            caption: one string, or one per frame.
            chunk_size: frames rendered at once (bounds the memory).
        """
        prediction = self._check_vertices(prediction, "prediction")
        n_frames = prediction.shape[0]
        captions = self._captions(caption, n_frames)
        sequences = (prediction,) if ground_truth is None else (prediction, ground_truth)
        camera = self.fit_camera(*sequences)
        with VideoWriter(path, fps=fps, audio=audio) as writer:
            for start in range(0, n_frames, max(1, int(chunk_size))):
                stop = min(start + max(1, int(chunk_size)), n_frames)
                text = None if captions is None else captions[start:stop]
                if ground_truth is None:
                    writer.write(self.prediction(prediction[start:stop], faces, camera, text))
                else:
                    writer.write(
                        self.compare(prediction[start:stop], ground_truth[start:stop], faces, camera, text)
                    )
        return Path(path)

    def colorbar(self) -> np.ndarray:
        """The colour bar strip ``[H,Wc,3]`` uint8 (bar, ticks, labels in mm)."""
        if self._colorbar is None:
            self._colorbar = self._draw_colorbar()  # static: drawn once per renderer
        return self._colorbar.copy()

    # -------------------------------------------------------------------------------------------------- helpers
    def _check_vertices(self, vertices: Tensor, name: str) -> Tensor:
        vertices = torch.as_tensor(vertices)
        if vertices.ndim == 2:
            vertices = vertices[None]
        if vertices.ndim != 3 or vertices.shape[-1] != 3 or vertices.shape[0] == 0:
            raise ValueError(
                f"ComparisonRenderer: `{name}` must be [B,V,3], got shape {tuple(vertices.shape)}."
            )
        vertices = vertices.detach().float().cpu()
        if not bool(torch.isfinite(vertices).all()):
            raise ValueError(f"ComparisonRenderer: `{name}` contains NaN or infinite values.")
        return vertices

    def _camera(self, camera: Camera | None, *sequences: Tensor) -> Camera:
        if camera is None:
            return self.fit_camera(*sequences)
        if tuple(camera.image_size) != self.panel_size:
            raise ValueError(
                f"ComparisonRenderer: the camera's image_size {tuple(camera.image_size)} must equal panel_size "
                f"{self.panel_size}; build it with ComparisonRenderer.fit_camera."
            )
        return camera

    def _panel(
        self, renderer: MeshRenderer, vertices: Tensor, faces: Tensor, camera: Camera, colors: Tensor | None
    ) -> np.ndarray:
        # One frame per call: a batched render runs torch ops big enough to wake torch's thread pool, which
        # measured ~5x slower per frame than single-frame renders on 2 cores.
        frames = [
            to_uint8(
                renderer.render(vertices[b], faces, camera, None if colors is None else colors[b]),
                background=self.background,
            )
            for b in range(vertices.shape[0])
        ]
        return np.concatenate(frames, axis=0)

    def _captions(self, caption: str | Sequence[str] | None, n_frames: int) -> list[str] | None:
        if caption is None:
            return None
        if isinstance(caption, str):
            return [caption] * n_frames
        captions = [str(c) for c in caption]
        if len(captions) != n_frames:
            raise ValueError(
                f"ComparisonRenderer: `caption` must be one string or one per frame ({n_frames}), got {len(captions)}."
            )
        return captions

    def _caption(self, frames: np.ndarray, caption: str | Sequence[str] | None) -> np.ndarray:
        captions = self._captions(caption, frames.shape[0])
        if captions is not None:
            for b, text in enumerate(captions):
                self._blit_text(frames[b : b + 1], text, 0, top=False)
        return frames

    def _font_obj(self):
        if self._font is None:
            try:
                from PIL import ImageFont
            except ImportError as err:  # pragma: no cover - Pillow ships with the training stack
                raise ImportError("ComparisonRenderer draws text with Pillow: pip install pillow") from err
            try:
                self._font = ImageFont.load_default(size=self.font_size)  # scalable when FreeType is there
            except (ImportError, OSError):  # pragma: no cover - Pillow built without FreeType
                self._font = ImageFont.load_default()
        return self._font

    def _text_alpha(self, text: str) -> np.ndarray:
        """Coverage ``[h,w]`` float32 in [0,1] of ``text`` drawn in the default font, cropped to its ink."""
        cached = self._text_cache.get(text)
        if cached is not None:
            return cached
        from PIL import Image, ImageDraw

        font = self._font_obj()
        left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
        canvas = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
        ImageDraw.Draw(canvas).text((-left, -top), text, fill=255, font=font)
        alpha = np.asarray(canvas, np.float32) / 255.0
        if len(self._text_cache) < 1024:  # titles and repeated captions are drawn once
            self._text_cache[text] = alpha
        return alpha

    def _blit_text(self, frames: np.ndarray, text: str, x: int, top: bool, width: int | None = None) -> None:
        """Draw ``text`` into ``frames`` ``[B,H,W,3]`` in place: column ``x`` + a margin, top or bottom edge.

        Text longer than ``width`` pixels (less the margins) is cut, so a title never spills into the next panel.
        """
        if not text:
            return
        alpha = self._text_alpha(text)
        margin = max(2, self.font_size // 3)
        if width is not None:
            alpha = alpha[:, : max(0, width - 2 * margin)]
        y = margin if top else frames.shape[1] - margin - alpha.shape[0]
        self._blit_alpha(frames, alpha, x + margin, y)

    def _blit_alpha(self, frames: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
        """Blend the text colour into ``frames`` with coverage ``alpha`` ``[h,w]`` at ``(x, y)``, clipped."""
        height, width = frames.shape[1:3]
        y_lo, x_lo = max(y, 0), max(x, 0)
        y_hi, x_hi = min(y + alpha.shape[0], height), min(x + alpha.shape[1], width)
        if y_lo >= y_hi or x_lo >= x_hi:
            return
        a = alpha[y_lo - y : y_hi - y, x_lo - x : x_hi - x, None]
        region = frames[:, y_lo:y_hi, x_lo:x_hi].astype(np.float32)
        blended = region * (1.0 - a) + np.asarray(self.text_color, np.float32) * a
        frames[:, y_lo:y_hi, x_lo:x_hi] = (blended + 0.5).astype(np.uint8)

    def _draw_colorbar(self) -> np.ndarray:
        height = self.panel_size[0]
        ticks = _nice_ticks(self.max_error_mm)
        labels = [f"{t:g}" for t in ticks]
        label_alpha = [self._text_alpha(s) for s in labels]
        title = self._text_alpha("mm")
        margin = max(3, self.font_size // 2)
        bar_width = max(8, self.panel_size[1] // 20)
        tick_len = max(3, bar_width // 3)
        label_width = max(a.shape[1] for a in label_alpha)
        width = margin + bar_width + tick_len + margin // 2 + label_width + margin
        width += width % 2  # keeps the full frame even-sized for yuv420p
        y0 = margin + title.shape[0] + margin  # top of the bar: max_error_mm
        y1 = height - margin - max(a.shape[0] for a in label_alpha) // 2  # one past the bottom row: 0 mm
        strip = np.empty((1, height, width, 3), np.uint8)
        strip[:] = (np.asarray(self.background) * 255.0 + 0.5).astype(np.uint8)
        span = max(y1 - 1 - y0, 1)
        values = (y1 - 1 - np.arange(y0, y1)) / span  # 1 at the top row, 0 at the bottom row
        bar = (error_colormap(values) * 255.0 + 0.5).astype(np.uint8)  # [rows,3]
        strip[0, y0:y1, margin : margin + bar_width] = bar[:, None, :]
        ink = np.asarray(self.text_color, np.uint8)
        for value, alpha in zip(ticks, label_alpha, strict=True):
            row = int(round(y1 - 1 - value / self.max_error_mm * span))
            strip[0, row, margin + bar_width : margin + bar_width + tick_len] = ink
            self._blit_alpha(
                strip, alpha, margin + bar_width + tick_len + margin // 2, row - alpha.shape[0] // 2
            )
        self._blit_alpha(strip, title, margin, margin)
        return strip[0]
