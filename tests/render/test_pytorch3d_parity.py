"""Parity of the pytorch3d backend with TorchRasterizer: one camera convention, same silhouettes, shading, depth.

Runs in the pytorch3d venv (``make test-pytorch3d``); elsewhere the module is skipped, unless
``TALK_REQUIRE_PYTORCH3D=1`` turns the missing import into a failure (that target sets it). pytorch3d's CPU
rasterizer is slow, so images are small (<= 128 px).
"""

from __future__ import annotations

import math
import os

import pytest
import torch

if os.environ.get("TALK_REQUIRE_PYTORCH3D") == "1":
    import pytorch3d  # noqa: F401  (a failed import here fails the run instead of skipping it)
else:
    pytest.importorskip("pytorch3d")

from motion.face.flame import FLAME, FLAMEParams  # noqa: E402
from motion.face.procedural.face import EXPRESSION_NAMES, write_procedural_face  # noqa: E402
from render.camera import Camera, fit_camera  # noqa: E402
from render.pytorch3d_backend import Pytorch3DRenderer, to_pytorch3d_cameras  # noqa: E402
from render.rasterizer import TorchRasterizer  # noqa: E402

SIZE = 96
# Thresholds keep >= 3x margin over the worst case measured at 96 px over face/sphere x front/three-quarter x
# perspective/orthographic: IoU >= 0.9993; mean |RGB| difference 4e-5 (99th percentile 4e-4); on pixels where
# both see the same face (>= 99.66% of them): median |depth| difference 7e-6 m, 99th percentile relative 1.6e-4,
# max relative 2.9e-3, mean |bary| difference 1e-3. The residue comes from our rasterizer snapping vertices to
# a sub-pixel grid, which moves the sample point within tiny faces, not from the convention.
MAX_MEAN_SHADING_DIFF = 1e-3
MAX_P99_SHADING_DIFF = 1e-2
MAX_MEDIAN_DEPTH_DIFF = 3e-5  # metres
MAX_P99_REL_DEPTH_DIFF = 1e-3
MAX_REL_DEPTH_DIFF = 1e-2
MAX_MEAN_BARY_DIFF = 5e-3


def uv_sphere(n_lat: int = 24, n_lon: int = 48, radius: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed latitude-longitude sphere, faces counter-clockwise seen from outside."""
    theta = torch.linspace(0, math.pi, n_lat + 1, dtype=torch.float64)[1:-1]
    phi = torch.arange(n_lon, dtype=torch.float64) * (2 * math.pi / n_lon)
    ring = torch.stack(
        [
            torch.sin(theta)[:, None] * torch.sin(phi)[None],
            torch.cos(theta)[:, None].expand(-1, n_lon),
            torch.sin(theta)[:, None] * torch.cos(phi)[None],
        ],
        dim=-1,
    ).reshape(-1, 3)
    verts = torch.cat([torch.tensor([[0.0, 1.0, 0.0]]), ring, torch.tensor([[0.0, -1.0, 0.0]])]) * radius
    bottom = len(verts) - 1

    def idx(i: int, j: int) -> int:
        return 1 + i * n_lon + j % n_lon

    faces = [(0, idx(0, j), idx(0, j + 1)) for j in range(n_lon)]
    for i in range(n_lat - 2):
        for j in range(n_lon):
            a, b, c, d = idx(i, j), idx(i + 1, j), idx(i + 1, j + 1), idx(i, j + 1)
            faces += [(a, b, c), (a, c, d)]
    faces += [(idx(n_lat - 2, j), bottom, idx(n_lat - 2, j + 1)) for j in range(n_lon)]
    return verts.float(), torch.tensor(faces)


@pytest.fixture(scope="module")
def meshes(tmp_path_factory) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    paths = write_procedural_face(tmp_path_factory.mktemp("face"))
    flame = FLAME(str(paths.model), n_shape=16, n_expression=len(EXPRESSION_NAMES))
    expression = torch.zeros(1, 1, len(EXPRESSION_NAMES))
    expression[..., EXPRESSION_NAMES.index("smile")] = 0.6
    params = FLAMEParams(
        expression=expression,
        jaw_pose=torch.tensor([[[0.15, 0.0, 0.0]]]),  # open mouth
        global_pose=torch.tensor([[[0.05, 0.2, 0.0]]]),
    )
    with torch.no_grad():
        face = flame(params).vertices[0, 0].float()
    return {"face": (face, flame.faces.long()), "sphere": uv_sphere()}


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / float((a | b).sum())


@pytest.mark.parametrize("mesh", ["face", "sphere"])
@pytest.mark.parametrize("view", ["front", "three_quarter"])
def test_silhouette_shading_and_depth_match_torch_rasterizer(meshes, mesh, view):
    verts, faces = meshes[mesh]
    camera = fit_camera(verts, image_size=(SIZE, SIZE), view=view)
    ours = TorchRasterizer().render(verts[None], faces, camera)
    theirs = Pytorch3DRenderer().render(verts[None], faces, camera)

    assert theirs.image.shape == ours.image.shape == (1, SIZE, SIZE, 4)
    assert int(ours.mask.sum()) > 0.2 * SIZE * SIZE  # the mesh fills the frame
    assert iou(ours.mask, theirs.mask) >= 0.99
    both = ours.mask & theirs.mask
    shading_diff = (ours.image - theirs.image)[..., :3].abs()[both]
    assert float(shading_diff.mean()) < MAX_MEAN_SHADING_DIFF
    assert float(shading_diff.quantile(0.99)) < MAX_P99_SHADING_DIFF
    assert torch.equal(theirs.image[..., 3], theirs.mask.float())
    assert torch.isinf(theirs.depth[~theirs.mask]).all()
    same_face = both & (ours.face_ids == theirs.face_ids)
    assert float(same_face.sum()) > 0.99 * float(both.sum())
    depth_diff = (ours.depth - theirs.depth)[same_face].abs()
    rel_depth_diff = depth_diff / ours.depth[same_face]
    assert float(depth_diff.median()) < MAX_MEDIAN_DEPTH_DIFF
    assert float(rel_depth_diff.quantile(0.99)) < MAX_P99_REL_DEPTH_DIFF
    assert float(rel_depth_diff.max()) < MAX_REL_DEPTH_DIFF
    # same face, same pixel centre: both barycentrics are perspective-correct
    assert float((ours.bary - theirs.bary)[same_face].abs().mean()) < MAX_MEAN_BARY_DIFF


@pytest.mark.parametrize("orthographic", [False, True])
def test_camera_convention_pixels_where_pytorch3d_draws_project_to_their_centres(meshes, orthographic):
    """Every pixel pytorch3d covers holds a surface point that our Camera projects onto that pixel's centre."""
    verts, faces = meshes["sphere"]
    # non-square image, off-centre principal point, camera off every axis: a swapped or mirrored axis shows
    base = Camera.look_at(eye=(0.25, 0.15, 0.5), target=(0.01, -0.02, 0.0), fov_deg=40.0, image_size=(40, 56))
    camera = Camera(
        R=base.R,
        T=base.T,
        focal=60.0 if not orthographic else 110.0,
        image_size=(40, 56),
        principal_point=(30.5, 17.0),
        orthographic=orthographic,
    )
    out = Pytorch3DRenderer().render(verts, faces, camera)
    assert int(out.mask.sum()) > 200
    rows, cols = torch.nonzero(out.mask[0], as_tuple=True)
    fid = out.face_ids[0, rows, cols]
    surface = (verts[faces[fid]] * out.bary[0, rows, cols][..., None]).sum(1)  # [N,3] world points
    uvz = camera.project(surface[None])[0]
    assert torch.allclose(uvz[:, 0], cols.float() + 0.5, atol=2e-3)
    assert torch.allclose(uvz[:, 1], rows.float() + 0.5, atol=2e-3)
    # measured: 4e-6 px and 1e-7 m perspective; orthographic 5e-4 px and 3e-5 m (pytorch3d's affine
    # barycentrics there sum to 1 only within 5e-5 in float32)
    assert torch.allclose(uvz[:, 2], out.depth[0, rows, cols], atol=1e-4 if orthographic else 1e-5)
    # and pytorch3d's own cameras agree with Camera.project on the vertices (screen = our u, v)
    cams = to_pytorch3d_cameras(camera)
    screen = cams.transform_points_screen(verts[None], image_size=camera.image_size)[0]
    ref = camera.project(verts[None])[0]
    assert torch.allclose(screen[:, :2], ref[:, :2], atol=1e-3)


def test_orthographic_parity_and_backface_culling(meshes):
    verts, faces = meshes["face"]
    camera = fit_camera(verts, image_size=(64, 64), view="three_quarter", orthographic=True)
    for cull in (False, True):
        ours = TorchRasterizer(cull_backfaces=cull).render(verts, faces, camera)
        theirs = Pytorch3DRenderer(cull_backfaces=cull).render(verts, faces, camera)
        assert iou(ours.mask, theirs.mask) >= 0.99
        both = ours.mask & theirs.mask
        assert float((ours.image - theirs.image)[..., :3].abs()[both].mean()) < MAX_MEAN_SHADING_DIFF


@pytest.mark.parametrize("orthographic", [False, True])
def test_back_faces_are_lit_with_flipped_normals_or_culled_alike(meshes, orthographic):
    # the far half of the sphere seen from the front: a bowl whose inside (all back faces) faces the camera
    # (a face at p is front facing only where p.eye > r^2, i.e. z > 0)
    verts, faces = meshes["sphere"]
    bowl = faces[verts[faces].mean(1)[:, 2] < -0.02]
    camera = fit_camera(verts, image_size=(48, 48), view="front", orthographic=orthographic)
    ours = TorchRasterizer(output_normals=True).render(verts, bowl, camera)
    theirs = Pytorch3DRenderer(output_normals=True).render(verts, bowl, camera)
    assert int(theirs.mask.sum()) > 300 and iou(ours.mask, theirs.mask) >= 0.99
    both = ours.mask & theirs.mask
    assert float((ours.image - theirs.image)[..., :3].abs()[both].mean()) < MAX_MEAN_SHADING_DIFF
    assert float((ours.normals - theirs.normals)[both].abs().max()) < 1e-2
    assert float(theirs.normals[theirs.mask][:, 2].median()) > 0.5  # flipped: turned towards the camera
    assert not bool(theirs.normals[~theirs.mask].any())
    for renderer in (TorchRasterizer(cull_backfaces=True), Pytorch3DRenderer(cull_backfaces=True)):
        assert not bool(renderer.render(verts, bowl, camera).mask.any())
        assert bool(renderer.render(verts, bowl.flip(1), camera).mask.any())  # reversed winding: drawn


@pytest.mark.parametrize("shading", ["lambert", "normals"])
def test_batch_colours_and_other_shading_modes_match(meshes, shading):
    verts, faces = meshes["sphere"]
    batch = torch.stack([verts, verts * torch.tensor([1.2, 0.8, 1.0]) + torch.tensor([0.02, 0.0, 0.0])])
    colors = (verts / 0.2 + 0.5).clamp(0, 1)  # [V,3] shared by the batch
    camera = fit_camera(batch, image_size=(48, 48), view="three_quarter")
    ours = TorchRasterizer(shading=shading, background=(0.1, 0.2, 0.3)).render(batch, faces, camera, colors)
    theirs = Pytorch3DRenderer(shading=shading, background=(0.1, 0.2, 0.3)).render(
        batch, faces, camera, colors
    )
    for b in range(2):
        assert iou(ours.mask[b], theirs.mask[b]) >= 0.99
    assert not torch.equal(theirs.mask[0], theirs.mask[1])
    both = ours.mask & theirs.mask
    assert float((ours.image - theirs.image)[..., :3].abs()[both].mean()) < MAX_MEAN_SHADING_DIFF
    empty = ~theirs.mask
    assert torch.allclose(theirs.image[empty][:, :3], torch.tensor([0.1, 0.2, 0.3]))


def test_gradients_reach_vertices_and_colours(meshes):
    verts, faces = meshes["sphere"]
    verts = verts.clone().requires_grad_(True)
    colors = torch.full_like(verts, 0.5).requires_grad_(True)
    camera = fit_camera(verts.detach(), image_size=(32, 32), view="three_quarter")
    out = Pytorch3DRenderer().render(verts, faces, camera, colors)
    (out.image[..., :3].sum() + out.depth[out.mask].sum()).backward()
    for grad in (verts.grad, colors.grad):
        assert grad is not None and bool(torch.isfinite(grad).all())
        assert int((grad.abs().sum(-1) > 0).sum()) > 50  # many visible vertices get a gradient
    # only visible vertices get one: the far side of the sphere (away from the camera) gets none
    eye = -camera.T[0] @ camera.R[0]
    hidden = (verts.detach() @ eye) < -0.03 * float(eye.norm())  # > 0.3 radius behind the centre
    assert float(colors.grad[hidden].abs().max()) == 0.0


def test_missing_arguments_are_rejected_clearly(meshes):
    verts, faces = meshes["sphere"]
    camera = fit_camera(verts, image_size=(16, 16))
    with pytest.raises(ValueError, match="shading"):
        Pytorch3DRenderer(shading="toon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="colors"):
        Pytorch3DRenderer().render(verts, faces, camera, colors=torch.ones(3, 3))
    with pytest.raises(ValueError, match="faces"):
        Pytorch3DRenderer().render(verts, faces.float(), camera)
