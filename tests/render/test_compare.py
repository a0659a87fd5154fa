import numpy as np
import pytest
import torch
import trimesh

from render.compare import ComparisonRenderer, error_colormap
from render.rasterizer import TorchRasterizer
from render.video import probe_video

WHITE = np.array([255, 255, 255])


@pytest.fixture(scope="module")
def sphere() -> tuple[torch.Tensor, torch.Tensor]:
    mesh = trimesh.creation.icosphere(subdivisions=2)
    return torch.tensor(mesh.vertices, dtype=torch.float32) * 0.1, torch.tensor(mesh.faces, dtype=torch.long)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return linear @ np.array([0.2126, 0.7152, 0.0722])


def _face_pixels(panel: np.ndarray, background=WHITE) -> np.ndarray:
    return panel[(panel != background).any(-1)]


def test_colormap_is_perceptually_ordered_and_in_gamut():
    t = np.linspace(0.0, 1.0, 501)
    rgb = error_colormap(t).astype(np.float64)
    assert rgb.shape == (501, 3) and rgb.dtype == np.float64
    assert bool((np.diff(_luminance(rgb)) > 0).all())  # lightness rises strictly: readable in greyscale
    assert float(np.abs(np.diff(rgb, axis=0)).max()) < 0.01  # smooth: no gamut clipping jumps
    zero, top = error_colormap(0.0), error_colormap(1.0)
    assert zero[2] > 2 * max(zero[0], zero[1]) and min(top[0], top[1]) > 3 * top[2]  # dark blue -> yellow
    assert np.array_equal(
        error_colormap(np.array([-1.0, 7.0, np.nan])), error_colormap(np.array([0.0, 1.0, 0.0]))
    )


def test_layout_sizes(sphere):
    v, f = sphere
    comparer = ComparisonRenderer(panel_size=(48, 40))
    frames = comparer.compare(v[None].expand(3, -1, -1), v[None].expand(3, -1, -1), f)
    bar_width = comparer.colorbar().shape[1]
    assert frames.shape == (3, 48, 3 * 40 + bar_width, 3) and frames.dtype == np.uint8
    assert comparer.frame_size() == frames.shape[1:3] and 16 <= bar_width < 60 and bar_width % 2 == 0
    alone = comparer.prediction(v, f)
    assert alone.shape == (1, 48, 40, 3) and comparer.frame_size(comparison=False) == (48, 40)
    # each panel holds a mesh, framed inside it
    for k in range(3):
        panel = frames[0, :, k * 40 : (k + 1) * 40]
        assert (
            len(_face_pixels(panel)) > 400 and (panel[:, 0] == WHITE).all() and (panel[:, -1] == WHITE).all()
        )


def test_zero_error_gives_the_zero_colour_everywhere_on_the_face(sphere):
    v, f = sphere
    flat = TorchRasterizer(shading="lambert", ambient=1.0)  # ambient 1: the panel shows the albedo itself
    comparer = ComparisonRenderer(heatmap_renderer=flat, panel_size=(40, 40), labels=False)
    zero = np.round(error_colormap(0.0) * 255).astype(int)
    top = np.round(error_colormap(1.0) * 255).astype(int)
    same = _face_pixels(comparer.compare(v, v, f)[0, :, 80:120]).astype(int)
    assert len(same) > 400 and np.abs(same - zero).max() <= 1
    # an error of at least max_error_mm everywhere: the top colour everywhere
    shifted = v + torch.tensor([0.0, 0.0, 0.006])  # 6 mm > 5 mm
    far = _face_pixels(comparer.compare(shifted, v, f)[0, :, 80:120]).astype(int)
    assert len(far) > 400 and np.abs(far - top).max() <= 1
    # default (shaded) heat panel: shading scales the colour but keeps its hue
    shaded = _face_pixels(
        ComparisonRenderer(panel_size=(40, 40), labels=False).compare(v, v, f)[0, :, 80:120]
    )
    direction = shaded / np.linalg.norm(shaded, axis=-1, keepdims=True)
    assert float((direction @ (zero / np.linalg.norm(zero))).min()) > 0.99


def test_heat_map_follows_the_per_vertex_error(sphere):
    v, f = sphere
    flat = TorchRasterizer(shading="lambert", ambient=1.0)
    comparer = ComparisonRenderer(heatmap_renderer=flat, panel_size=(64, 64), labels=False, max_error_mm=4.0)
    # error grows from 0 mm on the left (x = -0.1 m) to 4 mm on the right, in z only
    offset = (v[:, :1] + 0.1) / 0.2 * 0.004
    pred = v + torch.cat([torch.zeros_like(offset), torch.zeros_like(offset), offset], dim=-1)
    heat = comparer.compare(pred, v, f)[0, :, 128:192].astype(np.float64) / 255
    row = heat[32]
    cols = np.nonzero((row != 1.0).any(-1))[0]
    lum = _luminance(row[cols])
    assert lum[-1] > lum[0] + 0.3 and float(np.corrcoef(cols, lum)[0, 1]) > 0.95


def test_colour_bar_is_drawn_with_ticks_in_mm(sphere):
    v, f = sphere
    comparer = ComparisonRenderer(panel_size=(96, 64))
    strip = comparer.colorbar()
    assert strip.shape[0] == 96
    margin, bar_width = max(3, comparer.font_size // 2), max(8, 64 // 20)
    column = strip[:, margin + bar_width // 2].astype(int)
    rows = np.nonzero(column.max(-1) - column.min(-1) > 15)[0]  # coloured rows (the title "mm" is grey)
    assert len(rows) > 50 and bool((np.diff(rows) == 1).all())  # one long vertical bar
    top, bottom = column[rows[0]], column[rows[-1]]
    assert np.abs(top - np.round(error_colormap(1.0) * 255)).max() <= 2
    assert np.abs(bottom - np.round(error_colormap(0.0) * 255)).max() <= 2
    assert bool((np.diff(_luminance(column[rows] / 255.0)) < 0).all())  # light on top, dark at the bottom
    labels = strip[:, margin + bar_width + 4 :]
    assert int((labels.sum(-1) < 200).sum()) > 40  # dark tick-label ink right of the bar
    other = ComparisonRenderer(panel_size=(96, 64), max_error_mm=2.0).colorbar()
    assert not np.array_equal(other[:, strip.shape[1] // 2 :], strip[: other.shape[0], strip.shape[1] // 2 :])
    frame = comparer.compare(v, v, f)[0]
    assert np.array_equal(frame[:, 3 * 64 :], strip)  # the strip closes every comparison frame


def test_caption_and_labels_change_pixels(sphere):
    v, f = sphere
    comparer = ComparisonRenderer(panel_size=(64, 64), labels=False)
    plain = comparer.compare(v, v, f)
    captioned = comparer.compare(v, v, f, caption="FaceTalk_170809_00138 LVE 3.1 mm")
    diff = (plain != captioned).any(-1)[0]
    assert int(diff.sum()) > 50
    assert not diff[: 64 // 2].any()  # the caption sits at the bottom
    per_frame = comparer.prediction(torch.stack([v, v]), f, caption=["frame 1", "frame 22"])
    assert not np.array_equal(per_frame[0], per_frame[1])
    labelled = ComparisonRenderer(panel_size=(64, 64)).prediction(v, f)
    assert int((labelled != comparer.prediction(v, f)).any(-1).sum()) > 30  # "prediction" title
    with pytest.raises(ValueError, match="caption"):
        comparer.prediction(torch.stack([v, v]), f, caption=["only one"])


def test_background_and_text_colour(sphere):
    v, f = sphere
    comparer = ComparisonRenderer(panel_size=(64, 64), background=(0.1, 0.2, 0.3))
    frames = comparer.compare(v, v, f, caption="x")
    expected = np.floor(np.array([0.1, 0.2, 0.3]) * 255 + 0.5)
    assert np.array_equal(frames[0, 40, 1], expected) and np.array_equal(frames[0, -1, -1], expected)
    assert comparer.text_color == (255, 255, 255)  # light text on a dark background
    assert int((frames[0, :20, :64].min(-1) > 200).sum()) > 10  # the white "prediction" title


def test_camera_checks_and_errors(sphere):
    v, f = sphere
    comparer = ComparisonRenderer(panel_size=(32, 32))
    cam = comparer.fit_camera(v[None], v[None] * 1.2)
    assert cam.image_size == (32, 32)
    assert np.array_equal(comparer.prediction(v, f, camera=cam), comparer.prediction(v, f, camera=cam))
    with pytest.raises(ValueError, match="panel_size"):
        comparer.prediction(v, f, camera=ComparisonRenderer(panel_size=(40, 40)).fit_camera(v))
    with pytest.raises(ValueError, match="same shape"):
        comparer.compare(v, v[:-1], f)
    with pytest.raises(ValueError, match="NaN"):
        comparer.prediction(torch.full_like(v, float("nan")), f)
    with pytest.raises(ValueError, match="panel_size"):
        ComparisonRenderer(panel_size=(8, 8))


def test_write_video_streams_comparison_frames(sphere, tmp_path):
    v, f = sphere
    frames = torch.stack([v * (1.0 + 0.02 * k) for k in range(5)])
    comparer = ComparisonRenderer(panel_size=(32, 32))
    path = comparer.write_video(tmp_path / "cmp.mp4", frames, f, fps=25, ground_truth=frames, chunk_size=2)
    info = probe_video(path)
    height, width = comparer.frame_size()
    assert info.n_frames == 5 and (info.height, info.width) == (height, width + width % 2)
    alone = comparer.write_video(tmp_path / "pred.mp4", frames, f, fps=25, caption="subject")
    assert probe_video(alone).width == 32
