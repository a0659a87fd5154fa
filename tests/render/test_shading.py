import numpy as np
import pytest
import torch
import torch.nn.functional as F_
import trimesh

from render.camera import Camera, fit_camera
from render.rasterizer import TorchRasterizer
from render.shading import DEFAULT_ALBEDO, blinn_phong, interpolate, lambert, vertex_normals


@pytest.fixture(scope="module")
def sphere() -> tuple[torch.Tensor, torch.Tensor]:
    mesh = trimesh.creation.icosphere(subdivisions=3)
    return torch.tensor(mesh.vertices, dtype=torch.float32) * 0.1, torch.tensor(mesh.faces, dtype=torch.long)


def test_vertex_normals_of_a_sphere_point_outwards(sphere):
    v, f = sphere
    n = vertex_normals(v[None], f)[0]
    assert torch.allclose(n.norm(dim=-1), torch.ones(len(v)), atol=1e-5)
    assert float((n * F_.normalize(v, dim=-1)).sum(-1).min()) > 0.99


def test_lambert_is_brighter_where_the_normal_faces_the_light():
    normals = F_.normalize(
        torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]), dim=-1
    )
    rgb = lambert(normals, torch.tensor([1.0, 1.0, 1.0]), (0.0, 0.0, 2.0), ambient=0.2)[:, 0]
    assert torch.allclose(rgb, torch.tensor([1.0, 0.2 + 0.8 * 2**-0.5, 0.2, 0.2]), atol=1e-6)


def test_rendered_sphere_is_brighter_on_the_lit_side(sphere):
    v, f = sphere
    cam = fit_camera(v, image_size=(48, 48))
    for shading in ("lambert", "phong"):
        img = TorchRasterizer(shading=shading, light_direction=(1.0, 0.0, 0.3)).render(v, f, cam).image[0]
        row = img[24, :, 0]
        lit, dark = row[30:40].mean(), row[8:18].mean()
        assert float(lit) > float(dark) + 0.3
    headlight = TorchRasterizer(shading="lambert", light_direction=(0.0, 0.0, 1.0)).render(v, f, cam).image[0]
    assert float(headlight[24, 24, 0]) > float(headlight[24, 10, 0]) > float(headlight[24, 4, 0])


@pytest.mark.parametrize("orthographic", [False, True])
def test_numba_shading_matches_the_torch_reference(sphere, orthographic):
    v, f = sphere
    v = v * torch.tensor([1.0, 1.3, 0.9])  # non-spherical so normals differ from view rays
    cam = fit_camera(v, image_size=(40, 40), view="three_quarter", orthographic=orthographic)
    renderer = TorchRasterizer(
        shading="phong", light_direction=(0.3, 0.4, 1.0), ambient=0.3, specular=0.4, shininess=12.0
    )
    out = renderer.render(v, f, cam)
    mask = out.mask[0]
    pts = cam.world_to_camera(v)
    normals = F_.normalize(interpolate(vertex_normals(pts, f), f, out.face_ids, out.bary)[0][mask], dim=-1)
    if orthographic:
        view = torch.tensor([0.0, 0.0, 1.0]).expand_as(normals)
    else:
        # the surface point itself gives the view direction: towards the pinhole at the origin
        view = -F_.normalize(interpolate(pts, f, out.face_ids, out.bary)[0][mask], dim=-1)
    albedo = torch.tensor(DEFAULT_ALBEDO)
    ref = blinn_phong(normals, view, albedo, (0.3, 0.4, 1.0), 0.3, 0.4, 12.0).clamp(0, 1)
    assert torch.allclose(out.image[0][mask][:, :3], ref, atol=2e-4)
    assert float(ref.max()) > float(ref.min()) + 0.3  # the comparison covers a real range of shades


def test_vertex_colors_are_interpolated(sphere):
    v, f = sphere
    colors = (v / 0.2 + 0.5).clamp(0, 1)
    cam = Camera.look_at(eye=(0.0, 0.0, 1.0), fov_deg=30.0, image_size=(32, 32))
    # ambient 1 makes shading the identity on the albedo
    out = TorchRasterizer(shading="lambert", ambient=1.0).render(v, f, cam, colors=colors)
    mask = out.mask[0]
    ref = interpolate(colors, f, out.face_ids, out.bary)[0][mask]
    assert torch.allclose(out.image[0][mask][:, :3], ref, atol=1e-5)
    assert float(ref[:, 0].max() - ref[:, 0].min()) > 0.5
    batched = TorchRasterizer(shading="lambert", ambient=1.0).render(v, f, cam, colors=colors[None])
    assert torch.equal(batched.image, out.image)


def test_normals_mode_encodes_camera_space_normals(sphere):
    v, f = sphere
    cam = fit_camera(v, image_size=(32, 32))
    img = TorchRasterizer(shading="normals").render(v, f, cam).image[0]
    # centre faces the camera (+z): (0.5, 0.5, 1.0); the right rim has +x normals; the top rim +y
    assert np.allclose(img[16, 16, :3].numpy(), [0.5, 0.5, 1.0], atol=0.08)
    mask_cols = torch.nonzero(img[16, :, 3] > 0).squeeze(1)
    assert float(img[16, int(mask_cols.max()), 0]) > 0.85
    mask_rows = torch.nonzero(img[:, 16, 3] > 0).squeeze(1)
    assert float(img[int(mask_rows.min()), 16, 1]) > 0.85
