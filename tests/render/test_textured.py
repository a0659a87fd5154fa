import numpy as np
import pytest
import torch

from render.camera import Camera
from render.rasterizer import TorchRasterizer
from render.textured import render_textured, textured_background

SIZE = (48, 64)  # H, W


def _sphere(n_lat: int = 12, n_lon: int = 16, radius: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """A UV sphere centred 3 m in front of the camera (which looks down -z), faces counter-clockwise outside."""
    lat = np.linspace(0, np.pi, n_lat + 1)[1:-1]
    lon = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    ring = np.stack(
        [
            np.sin(lat)[:, None] * np.cos(lon),
            np.cos(lat)[:, None] + 0 * lon,
            np.sin(lat)[:, None] * np.sin(lon),
        ],
        -1,
    ).reshape(-1, 3)
    verts = np.concatenate([[[0, 1, 0]], ring, [[0, -1, 0]]]) * radius + [0, 0, -3.0]
    faces = []
    idx = lambda i, j: 1 + i * n_lon + j % n_lon  # noqa: E731
    for j in range(n_lon):
        faces.append([0, idx(0, j + 1), idx(0, j)])
        faces.append([len(verts) - 1, idx(n_lat - 2, j), idx(n_lat - 2, j + 1)])
        for i in range(n_lat - 2):
            faces += [
                [idx(i, j), idx(i, j + 1), idx(i + 1, j)],
                [idx(i + 1, j), idx(i, j + 1), idx(i + 1, j + 1)],
            ]
    return torch.tensor(verts, dtype=torch.float32), torch.tensor(faces, dtype=torch.long)


def _camera() -> Camera:
    return Camera(R=torch.eye(3)[None], T=torch.zeros(1, 3), focal=1.2 * max(SIZE), image_size=SIZE)


def _mask(verts: torch.Tensor, faces: torch.Tensor) -> np.ndarray:
    return TorchRasterizer().render(verts, faces, _camera()).mask.numpy()


def test_shapes_and_background_shows_where_the_mesh_is_absent():
    verts, faces = _sphere()
    batch = torch.stack([verts, verts + torch.tensor([0.3, 0.0, 0.0])])
    background = textured_background(SIZE, seed=1)
    out = render_textured(batch, faces, _camera(), torch.full((len(verts), 3), 0.6), background)
    assert out.shape == (2, *SIZE, 3) and out.dtype == np.uint8
    mask = _mask(batch, faces)
    assert 0.05 < mask.mean() < 0.6
    for b in range(2):
        np.testing.assert_array_equal(out[b][~mask[b]], background[~mask[b]])
        assert np.abs(out[b][mask[b]].astype(int) - background[mask[b]]).mean() > 10
    # a colour triple (float) as background, and a per-frame [B,V,3] albedo
    albedo = torch.stack([torch.full((len(verts), 3), 0.2), torch.full((len(verts), 3), 0.9)])
    out = render_textured(batch, faces, _camera(), albedo, (0.0, 1.0, 0.0))
    assert (out[0][~mask[0]] == [0, 255, 0]).all()
    assert out[1][mask[1]].mean() > out[0][mask[0]].mean() + 50


def test_light_direction_per_frame_changes_shading_and_matches_a_shared_light():
    verts, faces = _sphere()
    batch = verts[None].expand(2, -1, -1)
    albedo = np.full((len(verts), 3), 0.7, np.float32)
    lights = np.array([[1.0, 0.0, 0.3], [-1.0, 0.0, 0.3]])
    out = render_textured(batch, faces, _camera(), albedo, (0.0, 0.0, 0.0), lights, ambient=0.2).astype(float)
    mask = _mask(batch[:1], faces)[0]
    cols = np.nonzero(mask.any(0))[0]
    centre = (cols.min() + cols.max()) // 2
    right = out[:, :, centre + 3 :][:, mask[:, centre + 3 :]].mean((1, 2))
    left = out[:, :, : centre - 3][:, mask[:, : centre - 3]].mean((1, 2))
    assert right[0] > left[0] + 40 and left[1] > right[1] + 40  # lit from +x, then from -x
    # the per-frame path gives what one shared light gives for that frame
    single = render_textured(batch[1:], faces, _camera(), albedo, (0.0, 0.0, 0.0), lights[1], ambient=0.2)
    np.testing.assert_array_equal(out[1].astype(np.uint8), single[0])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"albedo": np.zeros((5, 3))}, "albedo"),
        ({"light_direction": np.ones((3, 3))}, "light_direction"),
        ({"light_direction": (0.0, 0.0, 0.0)}, "light_direction"),
        ({"background": np.zeros((10, 10, 3), np.uint8)}, "background"),
        ({"vertices": torch.zeros(10, 3)}, "vertices"),
    ],
)
def test_bad_shapes_raise_one_line_value_errors(kwargs, name):
    verts, faces = _sphere()
    args = {
        "vertices": verts[None].expand(2, -1, -1),
        "faces": faces,
        "camera": _camera(),
        "albedo": np.full((len(verts), 3), 0.5),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=name) as info:
        render_textured(**args)
    assert "\n" not in str(info.value)


def test_textured_background_is_deterministic_and_textured():
    a, b = textured_background((40, 56), seed=3), textured_background((40, 56), seed=3)
    assert a.shape == (40, 56, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - textured_background((40, 56), seed=4)).mean() > 5
    assert a.reshape(-1, 3).std(0).max() > 5  # not a flat colour
    # smooth at large scale: neighbouring pixels differ far less than the image varies overall
    assert np.abs(np.diff(a.astype(float), axis=1)).mean() < a.std()
    with pytest.raises(ValueError, match="size"):
        textured_background((0, 10))
