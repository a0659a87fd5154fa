import subprocess
import sys

import numpy as np
import pytest
import torch

from render.camera import fit_camera
from render.rasterizer import TorchRasterizer, to_uint8
from render.video import VideoWriter
from render.worker import RenderProcessError, RenderWorker
from tests.render.test_video import _sine


def _surface(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """A bumpy square patch facing the camera: [n*n, 3] vertices, [2(n-1)^2, 3] faces."""
    y, x = torch.meshgrid(torch.linspace(-0.1, 0.1, n), torch.linspace(-0.1, 0.1, n), indexing="ij")
    z = 0.02 * torch.cos(20 * x) * torch.cos(15 * y)
    vertices = torch.stack([x, y, z], -1).reshape(-1, 3)
    idx = torch.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = torch.cat([torch.stack([a, b, d], -1), torch.stack([a, d, c], -1)]).reshape(-1, 3)
    return vertices, faces


def _frames(path) -> np.ndarray:
    from render.ffmpeg_bin import ffmpeg_exe

    cmd = [ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    return np.frombuffer(subprocess.run(cmd, capture_output=True, check=True).stdout, np.uint8)


def test_the_render_process_writes_the_video_this_process_would(tmp_path):
    vertices, faces = _surface()
    motion = torch.stack([vertices * (1 + 0.05 * k) + torch.tensor([0.0, 0.004 * k, 0.0]) for k in range(6)])
    camera = fit_camera(motion, image_size=(48, 64))
    renderer = TorchRasterizer(background=(0.2, 0.3, 0.4), shading="lambert", light_direction=(0.1, 0.5, 1.0))
    audio = _sine(tmp_path / "a.wav", 6 / 25)
    with VideoWriter(tmp_path / "local.mp4", fps=25, audio=audio, frames=6) as writer:
        for frame in motion:
            writer.write(to_uint8(renderer.render(frame[None], faces, camera), renderer.background))
    with RenderWorker.start() as worker:
        remote = worker.video(tmp_path / "remote.mp4", 25, faces.numpy(), renderer.settings, audio, frames=6)
        with remote as video:
            video.write(renderer.project(motion[:2], faces, camera))  # a batch is drawn a frame at a time
            for frame in motion[2:]:
                video.write(renderer.project(frame[None], faces, camera))
        assert video.frames == 6
        # a video left by an exception is aborted: no file, no hidden temporary file beside it
        with (
            pytest.raises(KeyError),
            worker.video(tmp_path / "aborted.mp4", 25, faces.numpy(), renderer.settings) as v,
        ):
            v.write(renderer.project(motion[:1], faces, camera))
            raise KeyError("stop")
        # ... and it ended the worker: another video says so in one line
        with pytest.raises(RenderProcessError, match="start another"):
            worker.video(tmp_path / "next.mp4", 25, faces.numpy(), renderer.settings).write(
                renderer.project(motion[:1], faces, camera)
            )
    assert (tmp_path / "remote.mp4").read_bytes() == (tmp_path / "local.mp4").read_bytes()
    assert _frames(tmp_path / "remote.mp4").size == 6 * 48 * 64 * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "local.mp4", "remote.mp4"]


def test_a_failure_in_the_render_process_is_one_line(tmp_path):
    vertices, faces = _surface(4)
    camera = fit_camera(vertices, image_size=(16, 16))
    renderer = TorchRasterizer()
    not_audio = tmp_path / "speech.wav"
    not_audio.write_text("not audio")
    with RenderWorker.start() as worker:
        with pytest.raises(RenderProcessError) as caught:
            with worker.video(tmp_path / "out.mp4", 25, faces.numpy(), renderer.settings, not_audio) as video:
                video.write(renderer.project(vertices[None], faces, camera))
    assert "\n" not in str(caught.value) and str(caught.value)
    assert not (tmp_path / "out.mp4").exists()


def test_the_render_process_modules_import_neither_torch_nor_numba():
    code = (
        "import sys, render.worker, render.raster_core; print(sorted({'torch', 'numba'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
