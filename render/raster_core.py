"""The CPU renderer's array core: projected vertices and normals (numpy) -> fragments and shaded frames (numpy).

:class:`render.rasterizer.TorchRasterizer` moves vertices to camera space, projects them and computes their
normals in torch, then calls :func:`rasterize_arrays` and :func:`shade_arrays` here, which launch the numba kernels
of :mod:`render._raster_kernel` and :mod:`render._shade_kernel`; for video frames alone, :func:`draw_uint8` does
both and the quantisation in one pass (:mod:`render._draw_kernel`). This module imports neither torch nor, until a
kernel first runs, numba: the render process of :mod:`render.worker` draws frames with it without paying for
torch, and the parent process, which only projects, never pays numba's start-up.

numba's threads: the kernels run on numba's thread pool (``numba.set_num_threads``); results do not depend on
the thread count. Every launch holds :data:`LAUNCH_LOCK` (see :func:`prefer_workqueue_layer`).
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from types import ModuleType

import numpy as np

__all__ = [
    "ZNEAR",
    "Shading",
    "Projected",
    "RasterArrays",
    "rasterize_arrays",
    "shade_arrays",
    "draw",
    "draw_uint8",
    "composite",
    "warm_up",
]

ZNEAR = 1e-4  # metres; faces closer than this to the camera plane are dropped
SHADING_MODES = ("phong", "lambert", "normals")  # the kernel's MODE_* constants, in order
DEFAULT_ALBEDO = (0.80, 0.64, 0.56)  # skin-like albedo of meshes without vertex colours (every backend's)
LAUNCH_LOCK = threading.Lock()


def prefer_workqueue_layer() -> None:
    """Use numba's ``workqueue`` threading layer unless the user chose one (``NUMBA_THREADING_LAYER``).

    With numba's default pick (OpenMP here, sharing torch's libgomp) idle workers spin between parallel regions.
    A frame alternates short numba regions with torch, Python and ffmpeg work, and on a small or shared machine
    the spinning threads take the cores that work needs: on 2 loaded cores, rasterizing 256x256 cost 16 ms of
    CPU with OpenMP and 3.6 ms with workqueue. ``OMP_WAIT_POLICY`` cannot help from here (libgomp reads it when
    torch is imported). numba picks the layer at its first parallel launch or ``numba.set_num_threads`` call, so
    this runs when this module is imported: before numba is imported it sets the environment variable numba
    reads then (inherited by child processes, which is what they want too). workqueue is fork-safe but rejects
    concurrent launches from several Python threads, hence :data:`LAUNCH_LOCK`.
    """
    numba = sys.modules.get("numba")
    if numba is None:
        os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
    elif numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "workqueue"


prefer_workqueue_layer()


def _kernels() -> tuple[ModuleType, ModuleType, ModuleType]:
    """numba, the raster kernels and the shade kernels, imported on first use (numba's import costs ~0.3 s)."""
    import numba

    from render import _raster_kernel, _shade_kernel

    return numba, _raster_kernel, _shade_kernel


@dataclass(frozen=True, eq=False)
class _Setup:
    """Triangle setup and band lists of one batch (:func:`render._raster_kernel.setup_faces` and ``bin_faces``):
    the arguments ``raster_bands`` and ``draw_bands`` share."""

    fixed: np.ndarray
    keys: np.ndarray
    inv_area: np.ndarray
    bbox: np.ndarray
    flags: np.ndarray
    offsets: np.ndarray
    items: np.ndarray
    order: np.ndarray
    band_height: int

    def arguments(self) -> tuple:
        return (self.fixed, self.keys, self.inv_area, self.bbox, self.flags, self.offsets, self.items, self.order,
                self.band_height)  # fmt: skip


def _setup(
    uvz: np.ndarray, faces: np.ndarray, height: int, width: int, perspective: bool, cull: bool, znear: float
) -> _Setup:
    """Runs the serial passes (call it holding :data:`LAUNCH_LOCK`)."""
    numba, raster, _ = _kernels()
    n_batch, n_faces = uvz.shape[0], faces.shape[0]
    fixed = np.empty((n_batch, n_faces, 6), np.int64)
    keys = np.empty((n_batch, n_faces, 3), np.float64)
    inv_area = np.empty((n_batch, n_faces), np.float64)
    bbox = np.empty((n_batch, n_faces, 4), np.int64)
    flags = np.empty((n_batch, n_faces), np.int8)
    raster.setup_faces(
        uvz, faces, height, width, bool(cull), bool(perspective), float(znear), fixed, keys, inv_area, bbox, flags
    )
    n_threads = numba.get_num_threads()
    # Bands of <= 16 rows keep the band-local z-buffer in cache; >= ~4 bands per thread balance the load.
    band_height = max(1, min(16, -(-height // (4 * n_threads))))
    n_bands = -(-height // band_height)
    offsets, items = raster.bin_faces(bbox, flags, band_height, n_bands)
    order = _band_order(n_bands, n_threads)
    return _Setup(fixed, keys, inv_area, bbox, flags, offsets, items, order, band_height)


@dataclass(frozen=True)
class Shading:
    """How :func:`shade_arrays` lights covered pixels (see :class:`render.rasterizer.TorchRasterizer`, whose
    arguments these are). ``light`` is the unit direction towards the light in camera space."""

    mode: str = "phong"
    light: tuple[float, float, float] = (0.3, 0.4, 1.0)
    ambient: float = 0.35
    specular: float = 0.15
    shininess: float = 20.0
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        light = np.asarray(self.light, np.float64)
        object.__setattr__(self, "light", tuple(float(x) for x in light / np.linalg.norm(light)))
        object.__setattr__(self, "background", tuple(float(x) for x in self.background))

    @classmethod
    def exactly(cls, fields: dict) -> Shading:
        """The shading whose fields (``dataclasses.asdict``) are ``fields``, as they are: the light is not normalised
        a second time, which could move it by a rounding step (how :mod:`render.worker` rebuilds its caller's)."""
        shading = object.__new__(cls)
        for name, value in fields.items():
            object.__setattr__(shading, name, tuple(value) if isinstance(value, list) else value)
        return shading


@dataclass(frozen=True, eq=False)
class Projected:
    """A batch of meshes as the kernels take them: what :meth:`render.rasterizer.TorchRasterizer.project` gives.

    Attributes:
        uvz: ``[B,V,3]`` float64 pixel coordinates and camera depth per vertex.
        normals: ``[B,V,3]`` float32 unit vertex normals in camera space.
        focal: ``[B]`` float64 focal lengths in pixels.
        center: Principal point ``(cx, cy)`` in pixels.
        image_size: ``(H, W)``.
        orthographic: The camera is orthographic.
    """

    uvz: np.ndarray
    normals: np.ndarray
    focal: np.ndarray
    center: tuple[float, float]
    image_size: tuple[int, int]
    orthographic: bool


@dataclass(frozen=True, eq=False)
class RasterArrays:
    """Per-pixel result of :func:`rasterize_arrays` (numpy; see :class:`render.rasterizer.Fragments`)."""

    face_ids: np.ndarray  # [B,H,W] int64, -1 where empty
    bary: np.ndarray  # [B,H,W,3] float32 perspective-correct barycentrics
    depth: np.ndarray  # [B,H,W] float32, +inf where empty
    flags: np.ndarray  # [B,F] int8: 1 drawn front-facing, 2 drawn back-facing, 0 skipped


def _band_order(n_bands: int, n_threads: int) -> np.ndarray:
    # numba's prange hands each thread a contiguous chunk; interleave bands so every thread gets rows from
    # the top, middle and bottom of the image (a face is rarely uniform over the frame).
    order = [np.arange(k, n_bands, n_threads) for k in range(min(n_threads, n_bands))]
    return np.concatenate(order).astype(np.int64)


def rasterize_arrays(
    uvz: np.ndarray,
    faces: np.ndarray,
    height: int,
    width: int,
    perspective: bool = True,
    cull_backfaces: bool = False,
    znear: float = ZNEAR,
) -> RasterArrays:
    """Z-buffer rasterization of ``uvz`` ``[B,V,3]`` (pixels and depth, float64) with ``faces`` ``[F,3]`` (int64,
    in range: the caller checks). See :func:`render.rasterizer.rasterize`."""
    _, raster, _ = _kernels()
    uvz = np.ascontiguousarray(uvz, np.float64)
    faces = np.ascontiguousarray(faces, np.int64)
    n_batch = uvz.shape[0]
    zbuf = np.empty((n_batch, height, width), np.float32)  # every pixel is written by the kernel
    face_ids = np.empty((n_batch, height, width), np.int64)
    bary = np.empty((n_batch, height, width, 3), np.float32)
    with LAUNCH_LOCK:
        setup = _setup(uvz, faces, height, width, perspective, cull_backfaces, znear)
        raster.raster_bands(*setup.arguments(), bool(perspective), zbuf, face_ids, bary)
    flags = setup.flags
    return RasterArrays(face_ids, bary, zbuf, flags)


def shade_arrays(
    frags: RasterArrays,
    faces: np.ndarray,
    normals: np.ndarray,
    shading: Shading,
    orthographic: bool,
    focal: np.ndarray,
    center: tuple[float, float],
    colors: np.ndarray | None = None,
) -> np.ndarray:
    """RGBA ``[B,H,W,4]`` float32 of the covered pixels, lit by ``shading`` (alpha 0 and the background colour on
    empty pixels).

    Args:
        frags: The fragments of the frame.
        faces: ``[F,3]`` int64.
        normals: ``[B,V,3]`` float32 unit vertex normals in camera space.
        shading: The lighting.
        orthographic: The view direction is +z everywhere instead of towards the pinhole.
        focal: ``[B]`` float64 focal lengths in pixels.
        center: Principal point ``(cx, cy)`` in pixels.
        colors: Optional ``[1 or B,V,3]`` float32 per-vertex albedo.
    """
    _, _, shade = _kernels()
    n_batch, height, width = frags.face_ids.shape
    faces, normals, colors, albedo, mode, light, constants, background, focal = _shading_arguments(
        faces, normals, shading, focal, n_batch, colors
    )
    image = np.empty((n_batch, height, width, 4), np.float32)
    with LAUNCH_LOCK:
        shade.shade_pixels(
            frags.face_ids, frags.bary, faces, normals, colors, albedo, frags.flags == 1, mode, light, *constants,
            background, bool(orthographic), focal, float(center[0]), float(center[1]), image,
        )  # fmt: skip
    return image


def _shading_arguments(
    faces: np.ndarray,
    normals: np.ndarray,
    shading: Shading,
    focal: np.ndarray,
    n_batch: int,
    colors: np.ndarray | None,
) -> tuple:
    """The arguments of :func:`render._shade_kernel.shade_pixel` that every shading kernel passes on, as arrays of
    the kernel's dtypes: faces, normals, colours, albedo, mode, light, (ambient, specular, shininess, integer
    exponent), background and focal lengths."""
    _, _, shade = _kernels()
    shininess = float(shading.shininess)
    return (
        np.ascontiguousarray(faces, np.int64),
        np.ascontiguousarray(normals, np.float32),
        np.ascontiguousarray(
            np.zeros((0, normals.shape[1], 3), np.float32) if colors is None else colors, np.float32
        ),
        np.asarray(DEFAULT_ALBEDO, np.float64),
        SHADING_MODES.index(shading.mode),
        np.asarray(shading.light, np.float64),
        (float(shading.ambient), float(shading.specular), shininess, shade.exponent_of(shininess)),
        np.asarray(shading.background, np.float64),
        np.ascontiguousarray(np.broadcast_to(np.asarray(focal, np.float64).reshape(-1), (n_batch,))),
    )


def draw(
    projected: Projected,
    faces: np.ndarray,
    shading: Shading,
    colors: np.ndarray | None = None,
    cull_backfaces: bool = False,
) -> tuple[np.ndarray, RasterArrays]:
    """Rasterizes and shades ``projected`` meshes: RGBA ``[B,H,W,4]`` float32 and the fragments."""
    height, width = projected.image_size
    frags = rasterize_arrays(
        projected.uvz, faces, int(height), int(width), not projected.orthographic, cull_backfaces
    )
    image = shade_arrays(
        frags,
        faces,
        projected.normals,
        shading,
        projected.orthographic,
        projected.focal,
        projected.center,
        colors,
    )
    return image, frags


def draw_uint8(
    projected: Projected,
    faces: np.ndarray,
    shading: Shading,
    colors: np.ndarray | None = None,
    cull_backfaces: bool = False,
) -> np.ndarray:
    """The frames ``[B,H,W,3]`` uint8 of ``projected`` meshes over ``shading.background``: what
    ``composite(draw(...)[0], shading.background)`` gives, bit for bit, in one pass that writes neither fragments
    nor the float image (:mod:`render._draw_kernel`): a 512x512 frame allocates 0.8 MB instead of 10 MB, which in
    a fresh process are mostly page faults. For video."""
    from render import _draw_kernel

    height, width = (int(x) for x in projected.image_size)
    uvz = np.ascontiguousarray(projected.uvz, np.float64)
    n_batch = uvz.shape[0]
    faces, normals, colors, albedo, mode, light, constants, background, focal = _shading_arguments(
        faces, projected.normals, shading, projected.focal, n_batch, colors
    )
    out = np.empty((n_batch, height, width, 3), np.uint8)
    perspective = not projected.orthographic
    with LAUNCH_LOCK:
        setup = _setup(uvz, faces, height, width, perspective, cull_backfaces, ZNEAR)
        _draw_kernel.draw_bands(
            *setup.arguments(), perspective, faces, normals, colors, albedo, mode, light, *constants,
            bool(projected.orthographic), background, focal, float(projected.center[0]),
            float(projected.center[1]), out,
        )  # fmt: skip
    return out


def composite(image: np.ndarray, background: tuple[float, float, float]) -> np.ndarray:
    """RGBA ``[B,H,W,4]`` float32 over a background colour, quantised: ``[B,H,W,3]`` uint8."""
    _, _, shade = _kernels()
    image = np.ascontiguousarray(image, np.float32)
    out = np.empty(image.shape[:3] + (3,), np.uint8)
    shade.composite_uint8(image, np.asarray([float(c) for c in background], np.float64), out)
    return out


def warm_up() -> None:
    """Draws a one-triangle frame with :func:`draw_uint8`, so that numba has loaded its kernel (from its cache, or
    compiled it) before the first real frame: about a second in a cold process, most of it numba's own start-up
    (what the render process of :mod:`render.worker` does while its caller imports torch)."""
    normals = np.tile(np.array([0.0, 0.0, 1.0], np.float32), (1, 3, 1))
    uvz = np.array([[[1.0, 1.0, 1.0], [6.0, 1.0, 1.0], [1.0, 6.0, 1.0]]])
    frame = Projected(uvz, normals, np.ones(1), (4.0, 4.0), (8, 8), False)
    draw_uint8(frame, np.array([[0, 1, 2]], np.int64), Shading())
