import numpy as np
import pytest
import torch
import trimesh

from render.camera import Camera, fit_camera
from render.differentiable import DifferentiableRasterizer, rasterize_differentiable, soft_silhouette
from render.rasterizer import TorchRasterizer, rasterize


@pytest.fixture(scope="module")
def sphere() -> tuple[torch.Tensor, torch.Tensor]:
    mesh = trimesh.creation.icosphere(subdivisions=2)
    v = torch.tensor(mesh.vertices, dtype=torch.float32) * 0.1 * torch.tensor([1.0, 1.3, 0.9])
    return v, torch.tensor(mesh.faces, dtype=torch.long)


# A non-planar quad ("tent") of two faces, seen in perspective: normals and depth vary over it.
TENT = [[-0.447, -0.339, 0.142], [0.404, -0.376, -0.281], [0.351, 0.449, 0.288], [-0.363, 0.342, -0.051]]
TENT_FACES = torch.tensor([[0, 1, 2], [0, 2, 3]])


def _tent_camera(orthographic: bool = False) -> Camera:
    if orthographic:
        return Camera.look_at(eye=(0.1, 0.05, 3.0), image_size=(9, 10), orthographic=True, view_height=1.3)
    return Camera.look_at(eye=(0.1, 0.05, 3.0), fov_deg=25.0, image_size=(9, 10))


def _min_edge_distance(uv: np.ndarray, faces: np.ndarray, height: int, width: int) -> float:
    """Smallest distance (pixels) from any pixel centre to any projected edge line."""
    jj, ii = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    best = np.inf
    for face in faces:
        for k in range(3):
            a, b = uv[face[k]], uv[face[(k + 1) % 3]]
            d = b - a
            dist = np.abs(d[0] * (ii - a[1]) - d[1] * (jj - a[0])) / np.linalg.norm(d)
            best = min(best, float(dist.min()))
    return best


@pytest.mark.parametrize("orthographic", [False, True])
def test_torch_barycentrics_match_the_numba_pass(sphere, orthographic):
    v, f = sphere
    cam = fit_camera(v, image_size=(40, 40), view="three_quarter", orthographic=orthographic)
    uvz = cam.project(v.double())
    frags = rasterize_differentiable(uvz, f, cam.image_size, perspective=not orthographic)
    hard = rasterize(uvz, f, cam.image_size, perspective=not orthographic)
    assert torch.equal(frags.face_ids, hard.face_ids) and int(frags.mask.sum()) > 400
    # only the numba pass's 1/256 px vertex snapping separates the two
    assert torch.allclose(frags.bary.float(), hard.bary, atol=2e-2)
    assert float((frags.bary.float() - hard.bary).abs().mean()) < 1e-3
    assert torch.allclose(frags.depth[frags.mask].float(), hard.depth[hard.mask], atol=1e-3)
    assert torch.allclose(frags.pixel_bary.sum(-1), torch.ones(1, dtype=torch.float64))
    assert bool(torch.isinf(frags.depth[~frags.mask]).all())


@pytest.mark.parametrize("orthographic", [False, True])
def test_gradcheck_interpolation_and_depth(orthographic):
    cam = _tent_camera(orthographic)
    verts = torch.tensor([TENT], dtype=torch.float64)
    uv = cam.project(verts)[0, :, :2].numpy()
    assert _min_edge_distance(uv, TENT_FACES.numpy(), 9, 10) > 0.01  # coverage is fixed under perturbation
    attrs = torch.rand(1, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mask = rasterize_differentiable(cam.project(verts), TENT_FACES, cam.image_size, not orthographic).mask
    assert int(mask.sum()) > 25

    def fn(v, a):
        frags = rasterize_differentiable(cam.project(v), TENT_FACES, cam.image_size, not orthographic)
        return frags.interpolate(a)[mask], frags.depth[mask]

    assert torch.autograd.gradcheck(fn, (verts.requires_grad_(), attrs.requires_grad_()), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("shading", ["phong", "lambert", "normals"])
def test_gradcheck_shaded_image_wrt_vertices_and_colors(shading):
    cam = _tent_camera()
    verts = torch.tensor([TENT], dtype=torch.float64, requires_grad=True)
    colors = torch.tensor(
        [[0.7, 0.2, 0.3], [0.3, 0.6, 0.2], [0.2, 0.4, 0.7], [0.5, 0.5, 0.4]], dtype=torch.float64
    ).requires_grad_()
    uv = cam.project(verts.detach())[0, :, :2].numpy()
    assert _min_edge_distance(uv, TENT_FACES.numpy(), 9, 10) > 0.01
    renderer = DifferentiableRasterizer(shading=shading, light_direction=(0.2, 0.3, 1.0), specular=0.3)
    out = renderer.render(verts, TENT_FACES, cam, colors)
    rgb = out.image[..., :3][out.mask]
    assert float(rgb.min()) > 0.01 and float(rgb.max()) < 0.995  # no clamp active: smooth everywhere
    assert float(rgb.std()) > 0.01  # the shading really varies over the tent

    def fn(v, c):
        result = renderer.render(v, TENT_FACES, cam, c)
        return result.image, result.normals

    assert torch.autograd.gradcheck(fn, (verts, colors), eps=1e-6, atol=1e-6)


def test_gradients_reach_the_visible_vertices_only(sphere):
    v, f = sphere
    cam = fit_camera(v, image_size=(48, 48))  # front view: the camera is on +z
    verts = v.clone().requires_grad_()
    colors = torch.full_like(v, 0.5).requires_grad_()
    out = DifferentiableRasterizer().render(verts, f, cam, colors)
    (out.image[..., :3].square().mean() + out.depth[out.mask].mean()).backward()
    grad = verts.grad.norm(dim=-1)
    assert bool(torch.isfinite(verts.grad).all()) and bool(torch.isfinite(colors.grad).all())
    front, back = v[:, 2] > 0.03, v[:, 2] < -0.03
    assert bool((grad[front] > 0).all()) and bool((colors.grad.norm(dim=-1)[front] > 0).all())
    assert float(grad[back].abs().max()) == 0.0  # hidden: no pixel sees them


@pytest.mark.parametrize("orthographic", [False, True])
def test_differentiable_renderer_matches_the_fast_path(sphere, orthographic):
    v, f = sphere
    cam = fit_camera(v, image_size=(40, 40), view="three_quarter", orthographic=orthographic)
    colors = (v / 0.2 + 0.5).clamp(0, 1)
    for shading in ("phong", "normals"):
        kwargs = dict(shading=shading, background=(0.1, 0.2, 0.3), specular=0.4, shininess=12.0)
        fast = TorchRasterizer(**kwargs, output_normals=True).render(
            torch.stack([v, v * 0.8]), f, cam, colors
        )
        diff = DifferentiableRasterizer(**kwargs).render(torch.stack([v, v * 0.8]), f, cam, colors)
        assert torch.equal(fast.mask, diff.mask)
        assert torch.allclose(fast.image, diff.image, atol=3e-3)
        assert torch.allclose(fast.normals, diff.normals, atol=5e-3)
        assert torch.allclose(fast.depth[fast.mask], diff.depth[diff.mask], atol=1e-3)


def test_normals_depth_and_mask_outputs(sphere):
    v, f = sphere
    cam = fit_camera(v, image_size=(32, 32))
    assert TorchRasterizer().render(v, f, cam).normals is None  # opt-in on the fast path
    out = TorchRasterizer(output_normals=True).render(v, f, cam)
    assert out.normals.shape == (1, 32, 32, 3) and out.mask.shape == (1, 32, 32)
    assert np.allclose(out.normals[0, 16, 16].numpy(), [0.0, 0.0, 1.0], atol=0.1)  # centre faces the camera
    assert torch.allclose(out.normals[out.mask].norm(dim=-1), torch.ones(1), atol=1e-4)
    assert bool((out.normals[~out.mask] == 0).all())
    assert float(out.depth[out.mask].min()) > 0 and bool(torch.isinf(out.depth[~out.mask]).all())
    # back faces (inside of the sphere, seen through a cut) get normals turned towards the camera
    inner = TorchRasterizer(output_normals=True).render(v, f[:, [0, 2, 1]], cam)
    assert torch.allclose(inner.normals, out.normals)


def test_look_at_orthographic_projects_known_points():
    cam = Camera.look_at(eye=(0.0, 0.0, 5.0), image_size=(100, 200), orthographic=True, view_height=2.0)
    assert cam.orthographic and cam.focal == pytest.approx(50.0)  # H / view_height pixels per metre
    uvz = cam.project(torch.tensor([[[0.4, 0.2, 0.0], [0.0, 0.0, 1.0], [-1.0, -1.0, -1.0]]]))[0]
    expected = torch.tensor([[120.0, 40.0, 5.0], [100.0, 50.0, 4.0], [50.0, 100.0, 6.0]])
    assert torch.allclose(uvz, expected, atol=1e-4)
    side = Camera.look_at(eye=(3.0, 0.0, 0.0), image_size=(64, 64), orthographic=True, view_height=1.0)
    uvz = side.project(torch.tensor([[[0.0, 0.0, -0.25]]]))[0, 0]  # world -z is on the camera's right
    assert torch.allclose(uvz, torch.tensor([48.0, 32.0, 3.0]), atol=1e-4)
    with pytest.raises(ValueError, match="view_height"):
        Camera.look_at(eye=(0.0, 0.0, 5.0), orthographic=True)


def test_soft_silhouette_approaches_the_hard_mask(sphere):
    v, f = sphere
    cam = fit_camera(v, image_size=(40, 40))
    uvz = cam.project(v)
    hard = rasterize(uvz, f, cam.image_size).mask[0]
    sharp = soft_silhouette(uvz, f, cam.image_size, sigma=0.02)[0]
    assert float(sharp.min()) >= 0.0 and float(sharp.max()) <= 1.0
    assert float(((sharp > 0.5) != hard).float().mean()) < 0.01
    pad = torch.nn.functional.pad
    padded = pad(hard[None, None].float(), (1, 1, 1, 1))[0, 0].bool()
    interior = hard & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    assert int(interior.sum()) > 100
    # inside, only a shared edge dips: sigmoid(x) and sigmoid(-x) from its two faces unite to >= 0.75
    assert float(sharp[interior].min()) >= 0.75 and float(sharp[interior].median()) > 0.999
    far = ~torch.nn.functional.max_pool2d(hard[None, None].float(), 5, 1, 2).bool()[0, 0]
    assert int(far.sum()) > 100 and float(sharp[far].max()) < 0.01
    blurry = soft_silhouette(uvz, f, cam.image_size, sigma=4.0)[0]
    assert float(blurry[far].max()) > 0.1  # a wider blur reaches further


def test_gradcheck_soft_silhouette():
    # sigma = 2 px^2 reaches ~4.8 px: every pixel of the 6x7 image is evaluated, whatever the perturbation
    uvz = torch.tensor([[[0.3, 0.2, 2.0], [6.6, 1.2, 2.5], [1.4, 5.9, 3.0]]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2]])
    fn = lambda x: soft_silhouette(x, faces, (6, 7), sigma=2.0)  # noqa: E731
    out = fn(uvz)
    assert float(out.max()) > 0.8 and float(out.min()) < 0.2
    assert torch.autograd.gradcheck(fn, (uvz.requires_grad_(),), eps=1e-6, atol=1e-6)


def test_soft_silhouette_fits_a_triangle_to_a_target_mask():
    cam = Camera.look_at(eye=(0.0, 0.0, 3.0), image_size=(24, 24), orthographic=True, view_height=1.0)
    faces = torch.tensor([[0, 1, 2]])
    target_verts = torch.tensor([[-0.3, -0.25, 0.0], [0.3, -0.2, 0.0], [0.0, 0.3, 0.0]])
    target = rasterize(cam.project(target_verts), faces, cam.image_size, perspective=False).mask.float()
    verts = (target_verts * 0.7 + torch.tensor([0.12, 0.1, 0.0])).requires_grad_()
    renderer = DifferentiableRasterizer(shading="lambert", sigma=1.0)
    optimizer = torch.optim.Adam([verts], lr=0.01)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        alpha = renderer.render(verts, faces, cam).image[..., 3]
        loss = (alpha - target).square().mean()
        loss.backward()
        assert bool(torch.isfinite(verts.grad).all()) and float(verts.grad.abs().sum()) > 0
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.3 * losses[0]
    start = float((target_verts * 0.7 + torch.tensor([0.12, 0.1, 0.0]) - target_verts).norm(dim=-1).mean())
    assert float((verts.detach() - target_verts).norm(dim=-1).mean()) < 0.5 * start


def test_batches_and_errors(sphere):
    v, f = sphere
    cam = fit_camera(v, image_size=(24, 24))
    renderer = DifferentiableRasterizer()
    batch = renderer.render(torch.stack([v, v * 0.7]), f, cam)
    assert torch.equal(batch.image[1], renderer.render(v * 0.7, f, cam).image[0])
    with pytest.raises(ValueError, match="colors"):
        renderer.render(v, f, cam, colors=torch.ones(3, 3))
    with pytest.raises(ValueError, match="sigma"):
        DifferentiableRasterizer(sigma=0.0)
    with pytest.raises(ValueError, match="sigma"):
        soft_silhouette(cam.project(v), f, (8, 8), sigma=-1.0)
    frags = rasterize_differentiable(cam.project(v), f, cam.image_size)
    with pytest.raises(ValueError, match="attributes"):
        frags.interpolate(torch.ones(5, 2))
