"""Geometry-driven warping (render.warp, render.flow): identity, exact translations, decay outside the face, a still
background, gradients, batches, and a jaw opening on the procedural head."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh
from scipy import ndimage

from motion.face.flame import FLAME, FLAMEParams
from motion.face.procedural.face import EXPRESSION_NAMES, build_procedural_face, write_procedural_face
from render.camera import Camera
from render.differentiable import rasterize_differentiable
from render.flow import displacement_to_grid, extend_displacement, extend_to_grid
from render.rasterizer import TorchRasterizer
from render.warp import mesh_flow, region_faces, warp, warp_portrait

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 64


def portrait_camera(size: int = SIZE, focal: float | None = None, orthographic: bool = False) -> Camera:
    """The camera ``fit_image`` produces: at the origin, looking down -z (R = I, T = 0)."""
    focal = focal or (4.0 * size if orthographic else 1.2 * size)  # pixels per metre if orthographic
    return Camera(torch.eye(3)[None], torch.zeros(1, 3), focal, (size, size), orthographic=orthographic)


@pytest.fixture(scope="module")
def blob() -> tuple[torch.Tensor, torch.Tensor]:
    """A bumpy, head-sized icosphere 0.3 m in front of the camera (depth varies over it)."""
    mesh = trimesh.creation.icosphere(subdivisions=3)
    v = torch.tensor(mesh.vertices, dtype=torch.float32)
    v = v * (0.1 + 0.01 * torch.sin(7 * v[:, :1]) * torch.cos(5 * v[:, 1:2])) * torch.tensor([0.8, 1.0, 0.9])
    return v + torch.tensor([0.0, 0.0, -0.3]), torch.tensor(mesh.faces, dtype=torch.long)


def texture(size: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """A smooth random image ``[1,C,H,W]`` (bilinear upsampling of noise): every warp changes it."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, channels, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False)


def image_shift(vertices: torch.Tensor, camera: Camera, du: float, dv: float) -> torch.Tensor:
    """Move vertices so that their projection shifts by exactly ``(du, dv)`` pixels (camera with R = I)."""
    if camera.orthographic:
        per_px = torch.full_like(vertices[..., 2:], 1.0 / camera.focal)
    else:
        per_px = -vertices[..., 2:] / camera.focal  # depth / focal
    return vertices + torch.cat([du * per_px, -dv * per_px, 0 * per_px], dim=-1)


def distance_to(mask: torch.Tensor) -> np.ndarray:
    return ndimage.distance_transform_edt(~mask.numpy())


@pytest.mark.parametrize("orthographic", [False, True])
def test_unmoved_mesh_is_the_identity_warp(blob, orthographic):
    v, f = blob
    cam = portrait_camera(orthographic=orthographic)
    flow = mesh_flow(v, v, f, cam)
    image = texture(SIZE)
    assert int(flow.mask.sum()) > 0.2 * SIZE * SIZE
    assert float(flow.displacement.abs().max()) < 1e-4
    assert torch.allclose(warp(image, flow), image, atol=1e-5)  # everywhere, face and background


@pytest.mark.parametrize("orthographic", [False, True])
def test_image_plane_translation_gives_that_displacement_and_decays_outside(blob, orthographic):
    v, f = blob
    v = v + torch.tensor([0.0, 0.0, -0.15])  # about half the image wide
    cam = portrait_camera(orthographic=orthographic, focal=None if not orthographic else 3.0 * SIZE)
    du, dv = 3.0, -2.0
    flow = mesh_flow(v, image_shift(v, cam, du, dv), f, cam, falloff=0.25)  # 16 px
    mask, disp = flow.mask[0], flow.displacement[0]
    # on the face: the backward flow reads (du, dv) pixels back, exactly
    assert torch.allclose(disp[0][mask], torch.full_like(disp[0][mask], -du), atol=1e-4)
    assert torch.allclose(disp[1][mask], torch.full_like(disp[1][mask], -dv), atol=1e-4)
    image = texture(SIZE)
    inner = torch.from_numpy(ndimage.binary_erosion(mask.numpy(), iterations=1))
    shifted = torch.roll(image, shifts=(int(dv), int(du)), dims=(2, 3))  # integer shifts: exact samples
    assert torch.allclose(warp(image, flow)[0][:, inner], shifted[0][:, inner], atol=1e-5)

    # outside: the same direction, full strength at the border, decaying smoothly, zero far away
    dist = distance_to(mask)
    norm = disp.norm(dim=0).numpy()
    full = math.hypot(du, dv)
    assert norm.max() <= full * (1 + 1e-4)
    assert (disp[0].numpy() * du <= 1e-6).all() and (
        disp[1].numpy() * dv <= 1e-6
    ).all()  # backward: -(du, dv)
    rings = [norm[(dist > r - 1) & (dist <= r)].mean() for r in range(1, 19)]  # ~1/2 at 8-10 px, 0 by 18
    assert rings[0] > 0.95 * full and rings[-1] < 0.02 * full
    assert all(a >= b - 1e-3 for a, b in zip(rings, rings[1:], strict=False)), rings
    step = max(np.abs(np.diff(norm, axis=0)).max(), np.abs(np.diff(norm, axis=1)).max())
    assert step < 0.15 * full  # no jump at the border; the fade's steepest is 1.5 |d| / falloff = 0.09 |d|/px
    assert (dist > 16 + 4).sum() > 100 and norm[dist > 16 + 4].max() == 0.0


def test_background_far_from_the_face_does_not_move(blob):
    v, f = blob
    v = v + torch.tensor([0.0, 0.0, -0.3])  # 0.6 m away: a third of the image
    cam = portrait_camera(size=96)
    jaw = v.clone()
    low = v[:, 1] < -0.02
    jaw[low] += torch.tensor([0.0, -0.02, 0.0]) * (
        -(v[low, 1:2] + 0.02) / 0.08
    )  # a lower half that stretches down
    flow = mesh_flow(v, torch.stack([jaw, image_shift(v, cam, 4.0, 1.0)]), f, cam)
    image = texture(96)
    out = warp(image, flow)
    for k in range(2):
        far = torch.from_numpy(distance_to(flow.mask[k]) > 0.125 * 96 + 4)  # the falloff, and a block
        assert int(far.sum()) > 200
        assert bool((flow.displacement[k][:, far] == 0).all())
        assert torch.allclose(out[k][:, far], image[0][:, far], atol=1e-6)
    assert float(flow.displacement[0, 1][flow.mask[0]].min()) < -1.0  # the stretched half did move


@pytest.mark.parametrize("orthographic", [False, True])
def test_flow_matches_barycentric_interpolation_of_the_neutral_mesh(blob, orthographic):
    """The per-face homography equals interpolating neutral camera-space points with perspective-correct
    barycentrics (render.differentiable) and projecting them, for a non-rigid deformation."""
    v, f = blob
    cam = portrait_camera(orthographic=orthographic)
    animated = (v + 0.01 * torch.sin(20 * v.roll(1, dims=1))).double()
    flow = mesh_flow(v.double(), animated, f, cam, falloff=0.0)  # no gradient wanted: the numpy path
    for falloff in (0.0, 0.2):  # the torch path (gradients) and the numba one (none) compute the same flow
        fast = mesh_flow(v.double(), animated, f, cam, falloff=falloff)
        with_grad = mesh_flow(v.double(), animated.clone().requires_grad_(), f, cam, falloff=falloff)
        assert torch.allclose(with_grad.displacement, fast.displacement, atol=1e-9)
        assert torch.allclose(with_grad.grid, fast.grid, atol=1e-12)
    frags = rasterize_differentiable(cam.project(animated), f, cam.image_size, not orthographic)
    points = frags.interpolate_pixels(cam.world_to_camera(v.double()))  # [P,3] neutral surface points
    source = cam.camera_to_image(points[None])[0, :, :2]
    b, i, j = frags.pixels.unbind(-1)
    expected = source - torch.stack([j, i], -1).double() - 0.5
    assert torch.equal(flow.mask, frags.mask)
    assert torch.allclose(flow.displacement[b, :, i, j], expected, atol=1e-6)
    assert float(expected.abs().max()) > 2.0  # a real deformation


def test_gradcheck_image_and_vertices():
    cam = Camera(torch.eye(3)[None], torch.zeros(1, 3), 9.0, (8, 9))
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    neutral = torch.tensor(
        [[-0.31, -0.27, -1.0], [0.29, -0.33, -1.1], [0.33, 0.26, -0.9], [-0.28, 0.31, -1.05]],
        dtype=torch.float64,
    )
    animated = neutral + torch.tensor(
        [[0.02, -0.03, 0.01], [0.05, 0.01, 0.0], [-0.02, 0.04, 0.03], [0.0, 0.0, 0.0]]
    )
    image = torch.rand(1, 1, 8, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def fn(img, neu, ani):
        return warp(img, mesh_flow(neu, ani, faces, cam, falloff=0.5))

    inputs = (image.requires_grad_(), neutral.clone().requires_grad_(), animated.clone().requires_grad_())
    assert int(mesh_flow(neutral, animated, faces, cam).mask.sum()) > 15
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, fast_mode=True)
    grads = torch.autograd.grad(fn(*inputs).sum(), inputs[1:])
    assert all(float(g.abs().sum()) > 0 for g in grads)


def test_shapes_batches_and_resolution(blob):
    v, f = blob
    cam = portrait_camera()
    seq = torch.stack([image_shift(v, cam, k, 0.0) for k in (0.0, 2.0, 4.0)])  # [T,V,3] against one neutral
    image = texture(SIZE)
    out = warp_portrait(image, v, seq, f, cam)
    flow = out.flow
    assert out.image.shape == (3, 3, SIZE, SIZE) and flow.grid.shape == (3, SIZE, SIZE, 2)
    assert flow.displacement.shape == (3, 2, SIZE, SIZE) and flow.mask.shape == flow.depth.shape == (
        3,
        SIZE,
        SIZE,
    )
    assert flow.mouth_mask is None and flow.image_size == (SIZE, SIZE)
    single = mesh_flow(v, seq[2], f, cam)
    assert torch.allclose(single.grid[0], flow.grid[2], atol=1e-6)
    assert torch.equal(single.mask[0], flow.mask[2])
    assert torch.isinf(flow.depth[~flow.mask]).all() and bool((flow.depth[flow.mask] > 0.15).all())
    # the grid is the displacement in normalised coordinates (align_corners=False)
    assert torch.allclose(displacement_to_grid(flow.displacement), flow.grid)
    # a flow at half the camera's resolution: half the pixels of motion, and it warps the full-size image
    half = mesh_flow(v, seq[2], f, cam, image_size=(SIZE // 2, SIZE // 2))
    assert torch.allclose(half.displacement[0, 0][half.mask[0]], torch.tensor(-2.0), atol=1e-4)
    assert warp(image, half).shape == (1, 3, SIZE // 2, SIZE // 2)
    # channels pass through, a batch of images pairs with the batch of flows
    assert warp(image.expand(3, -1, -1, -1)[:, :1], flow).shape == (3, 1, SIZE, SIZE)
    with pytest.raises(ValueError, match="same mesh"):
        mesh_flow(v[:-1], v, f, cam)
    with pytest.raises(ValueError, match="batch"):
        mesh_flow(v.expand(2, -1, -1), seq, f, cam)
    with pytest.raises(ValueError, match=r"\[B,C,H,W\]"):
        warp(image[0], flow)


def test_extend_displacement_keeps_the_mask_and_is_linear():
    g = torch.Generator().manual_seed(1)
    field = torch.randn(2, 2, 37, 53, generator=g)  # sizes not divisible by 2^K
    mask = torch.zeros(2, 37, 53, dtype=torch.bool)
    mask[0, 10:20, 5:30] = True
    mask[1, 30:, 40:] = True
    out = extend_displacement(field, mask, falloff=6.0)
    assert out.shape == field.shape
    assert torch.equal(out[mask[:, None].expand_as(out)], field[mask[:, None].expand_as(field)])
    garbage = torch.where(mask[:, None], field, torch.full_like(field, float("nan")))
    assert torch.equal(
        extend_displacement(garbage, mask, falloff=6.0), out
    )  # values off the mask are not read
    other = torch.randn(2, 2, 37, 53, generator=g)
    both = extend_displacement(2 * field + other, mask, falloff=6.0)
    assert torch.allclose(both, 2 * out + extend_displacement(other, mask, falloff=6.0), atol=1e-5)
    assert torch.equal(extend_displacement(field, mask, falloff=0.0), torch.where(mask[:, None], field, 0.0))
    for falloff in (0.0, 6.0, 20.0):  # the numba form (no gradients) agrees, grid included
        fast, grid = extend_to_grid(field.double().numpy(), mask.numpy(), falloff)
        slow = extend_displacement(field.double(), mask, falloff)
        assert np.allclose(fast, slow.numpy(), atol=1e-10)
        assert np.allclose(grid, displacement_to_grid(slow).numpy(), atol=1e-12)


# -- the procedural head -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    paths = write_procedural_face(tmp_path_factory.mktemp("face"))
    model = FLAME(str(paths.model), n_shape=16, n_expression=len(EXPRESSION_NAMES))
    masks = build_procedural_face().masks
    translation = torch.tensor([[[0.0, 0.035, -0.75]]]).expand(2, 1, 3)
    with torch.no_grad():
        neutral, opened = model(
            FLAMEParams(
                jaw_pose=torch.tensor([[[0.0, 0.0, 0.0]], [[0.25, 0.0, 0.0]]]), translation=translation
            )
        ).vertices[:, 0]
    return {
        "neutral": neutral,
        "open": opened,
        "faces": model.faces.long(),
        **{k: torch.as_tensor(masks[k]) for k in ("mouth_interior", "forehead", "lips", "face")},
    }


def test_jaw_open_moves_the_chin_down_and_keeps_the_forehead_still(head):
    size = 128
    cam = portrait_camera(size)
    neutral, opened, faces = head["neutral"], head["open"], head["faces"]
    mouth = region_faces(faces, head["mouth_interior"])
    flow = mesh_flow(neutral, torch.stack([neutral, opened]), faces, cam, mouth_faces=mouth)
    assert float(flow.displacement[0].abs().max()) < 1e-4  # the unmoved head: identity

    uv_n, uv_o = cam.project(neutral)[0, :, :2], cam.project(opened)[0, :, :2]
    lip_bottom = float(neutral[head["lips"], 1].min())
    chin = head["face"][(neutral[head["face"], 1] < lip_bottom - 0.01) & (neutral[head["face"], 2] > -0.7)]
    forehead = head["forehead"]

    def flow_at(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Displacement at the animated pixels of the given vertices, and what moving them implies."""
        px = uv_o[ids].floor().long()
        return flow.displacement[1][:, px[:, 1], px[:, 0]].T, uv_n[ids] - uv_o[ids]

    got, want = flow_at(chin)
    assert float(want[:, 1].median()) < -2.0  # the chin moves down by a few pixels at 128 px...
    assert float((got[:, 1] < -1.0).float().mean()) > 0.9  # ...and the pixels below the mouth read from above
    assert float((got - want).norm(dim=1).median()) < 0.5
    got, _ = flow_at(forehead)
    assert float(got.abs().max()) < 0.05
    # the mouth interior is only seen with the mouth open, always on the face
    assert (
        int(flow.mouth_mask[1].sum()) > 10
        and int(flow.mouth_mask[0].sum()) < int(flow.mouth_mask[1].sum()) / 4
    )
    assert bool((flow.mouth_mask <= flow.mask).all())

    # Warping the neutral render approximates rendering the open mouth: a pattern painted on the skin
    colors = 0.5 + 0.35 * torch.sin(neutral[:, :1] * 150) * torch.cos(neutral[:, 1:2] * 120) * torch.ones(
        1, 3
    )
    colors[:, 1:] *= 0.8
    renderer = TorchRasterizer(shading="lambert", ambient=1.0, background=(0.3, 0.5, 0.7))
    frames = renderer.render(torch.stack([neutral, opened]), faces, cam, colors).image[..., :3]
    portrait, target = frames[:1].permute(0, 3, 1, 2), frames[1:].permute(0, 3, 1, 2)
    warped = warp(portrait, flow)[1:]
    both = (
        flow.mask[1]
        & flow.mask[0]
        & ~torch.from_numpy(ndimage.binary_dilation(flow.mouth_mask[1].numpy(), iterations=3))
    )
    moved = both & ((uv_o - uv_n).norm(dim=1).max() > 0)  # every face pixel both frames cover
    err_warp = float((warped - target)[0][:, moved].abs().mean())
    err_still = float((portrait - target)[0][:, moved].abs().mean())
    print(f"jaw open: |warped - render| {err_warp:.4f}, |portrait - render| {err_still:.4f}")
    assert err_warp < 0.5 * err_still, (err_warp, err_still)
