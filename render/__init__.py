"""Rendering: vertices -> pixels (mesh renderers) and frames + audio -> video. Pure torch/numpy + ffmpeg."""

from render.camera import Camera, fit_camera
from render.compare import ComparisonRenderer, error_colormap
from render.differentiable import (
    DifferentiableRasterizer,
    DiffFragments,
    rasterize_differentiable,
    soft_silhouette,
)
from render.export import MeshExportError, export_meshes
from render.pytorch3d_backend import Pytorch3DNotInstalledError, Pytorch3DRenderer, to_pytorch3d_cameras
from render.rasterizer import Fragments, MeshRenderer, RenderOutput, TorchRasterizer, rasterize, to_uint8
from render.shading import blinn_phong, interpolate, lambert, vertex_normals
from render.video import VideoInfo, VideoWriter, probe_video

__all__ = [
    "Pytorch3DNotInstalledError",
    "Pytorch3DRenderer",
    "to_pytorch3d_cameras",
    "Camera",
    "fit_camera",
    "ComparisonRenderer",
    "error_colormap",
    "DifferentiableRasterizer",
    "DiffFragments",
    "rasterize_differentiable",
    "soft_silhouette",
    "MeshExportError",
    "export_meshes",
    "Fragments",
    "MeshRenderer",
    "RenderOutput",
    "TorchRasterizer",
    "rasterize",
    "to_uint8",
    "blinn_phong",
    "interpolate",
    "lambert",
    "vertex_normals",
    "VideoInfo",
    "VideoWriter",
    "probe_video",
]
