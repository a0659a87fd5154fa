"""Rendering: vertices -> pixels (mesh renderers) and frames + audio -> video. Pure torch/numpy + ffmpeg."""

from render.camera import Camera, fit_camera
from render.rasterizer import Fragments, MeshRenderer, RenderOutput, TorchRasterizer, rasterize, to_uint8
from render.shading import blinn_phong, interpolate, lambert, vertex_normals
from render.video import VideoInfo, VideoWriter, probe_video

__all__ = [
    "Camera",
    "fit_camera",
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
