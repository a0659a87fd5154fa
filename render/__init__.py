"""Rendering: vertices -> pixels (mesh renderers) and frames + audio -> video. Pure torch/numpy + ffmpeg.

The names below are loaded from their modules on first use (PEP 562), so that importing one torch-free module
of the package (:mod:`render.raster_core`, :mod:`render.worker`, :mod:`render.video`) does not import torch,
numba and pytorch3d's wrappers with it: the render process of ``talk animate`` starts in a fraction of a second.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "render.camera": ("Camera", "fit_camera"),
    "render.compare": ("ComparisonRenderer", "error_colormap"),
    "render.differentiable": (
        "DifferentiableRasterizer",
        "DiffFragments",
        "rasterize_differentiable",
        "soft_silhouette",
    ),
    "render.export": ("MeshExportError", "export_meshes"),
    "render.pytorch3d_backend": ("Pytorch3DNotInstalledError", "Pytorch3DRenderer", "to_pytorch3d_cameras"),
    "render.rasterizer": (
        "Fragments",
        "MeshRenderer",
        "RenderOutput",
        "TorchRasterizer",
        "rasterize",
        "to_uint8",
    ),
    "render.shading": ("blinn_phong", "interpolate", "lambert", "vertex_normals"),
    "render.video": ("VideoInfo", "VideoWriter", "probe_video"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = list(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'render' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ loads them
    from render.camera import Camera, fit_camera  # noqa: F401
    from render.compare import ComparisonRenderer, error_colormap  # noqa: F401
    from render.differentiable import (  # noqa: F401
        DifferentiableRasterizer,
        DiffFragments,
        rasterize_differentiable,
        soft_silhouette,
    )
    from render.export import MeshExportError, export_meshes  # noqa: F401
    from render.pytorch3d_backend import Pytorch3DNotInstalledError, Pytorch3DRenderer, to_pytorch3d_cameras  # noqa: F401
    from render.rasterizer import Fragments, MeshRenderer, RenderOutput, TorchRasterizer, rasterize, to_uint8  # noqa: F401
    from render.shading import blinn_phong, interpolate, lambert, vertex_normals  # noqa: F401
    from render.video import VideoInfo, VideoWriter, probe_video  # noqa: F401
