import numpy as np
import pytest
import torch

from render.camera import Camera
from render.rasterizer import TorchRasterizer, rasterize, to_uint8


def _uvz(points) -> torch.Tensor:
    return torch.tensor(points, dtype=torch.float64)[None]


def _ortho(size: int, focal: float = 1.0, distance: float = 5.0) -> Camera:
    return Camera(
        R=torch.eye(3)[None],
        T=torch.tensor([[0.0, 0.0, -distance]]),
        focal=focal,
        image_size=(size, size),
        orthographic=True,
    )


def _cube(half: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    v = torch.tensor([[x, y, z] for x in (-half, half) for y in (-half, half) for z in (-half, half)])
    # index = 4*(x>0) + 2*(y>0) + (z>0); quads listed counter-clockwise seen from outside
    quads = [(1, 5, 7, 3), (0, 2, 6, 4), (4, 6, 7, 5), (0, 1, 3, 2), (2, 3, 7, 6), (0, 4, 5, 1)]
    faces = torch.tensor([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    return v, faces


def test_cube_winding_points_outwards():
    v, f = _cube()
    n = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert bool(((n * v[f].mean(1)).sum(-1) > 0).all())


def test_single_triangle_mask_matches_point_in_triangle_at_pixel_centres():
    tri = np.array([[3.3, 2.1], [27.8, 9.6], [11.2, 25.7]])
    frags = rasterize(_uvz([[*p, 1.0] for p in tri]), torch.tensor([[0, 1, 2]]), (32, 32), perspective=False)
    jj, ii = np.meshgrid(np.arange(32) + 0.5, np.arange(32) + 0.5)
    edges = []
    for k in range(3):
        a, b = tri[k], tri[(k + 1) % 3]
        edges.append((b[0] - a[0]) * (ii - a[1]) - (b[1] - a[1]) * (jj - a[0]))
    edges = np.stack(edges)
    assert np.abs(edges).min() > 1e-6  # no centre on an edge: the analytic test is unambiguous
    inside = (edges > 0).all(0) | (edges < 0).all(0)
    assert 100 < inside.sum() < 400
    assert np.array_equal(frags.mask[0].numpy(), inside)
    assert set(np.unique(frags.face_ids[0].numpy())) == {-1, 0}


def test_top_left_rule_shared_edges_cover_each_pixel_exactly_once():
    # Square with corners on pixel centres, split into a fan around a jittered centre plus diagonals through
    # pixel centres: edges pass exactly through sample points.
    corners = [(2.5, 2.5), (12.5, 2.5), (12.5, 12.5), (2.5, 12.5)]
    mids = [(7.5, 2.5), (12.5, 7.5), (7.5, 12.5), (2.5, 7.5)]
    ring = [corners[0], mids[0], corners[1], mids[1], corners[2], mids[2], corners[3], mids[3]]
    pts = [*ring, (7.5, 7.5), (5.123, 9.877)]
    faces = [(i, (i + 1) % 8, 8) for i in range(8)]
    # split one fan triangle further with an interior vertex
    faces[5] = (5, 6, 9)
    faces += [(6, 8, 9), (8, 5, 9)]
    uvz = _uvz([[x, y, 2.0] for x, y in pts])
    counts = np.zeros((16, 16), int)
    for face in faces:
        counts += rasterize(uvz, torch.tensor([face]), (16, 16), perspective=False).mask[0].numpy()
    expected = np.zeros((16, 16), int)
    expected[2:12, 2:12] = 1  # top and left boundary rows/columns in, bottom and right out
    assert np.array_equal(counts, expected)
    whole = rasterize(uvz, torch.tensor(faces), (16, 16), perspective=False)
    assert np.array_equal(whole.mask[0].numpy(), expected.astype(bool))


def test_jittered_grid_has_no_cracks_or_double_hits():
    g = torch.Generator().manual_seed(1)
    n = 6
    xs = torch.linspace(1.0, 23.0, n + 1, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1)  # [n+1,n+1,2]
    jitter = (torch.rand(n - 1, n - 1, 2, generator=g, dtype=torch.float64) - 0.5) * 2.5
    grid[1:-1, 1:-1] += jitter
    uv = grid.reshape(-1, 2)
    idx = torch.arange((n + 1) ** 2).view(n + 1, n + 1)
    faces = []
    for r in range(n):
        for c in range(n):
            a, b, d, e = idx[r, c], idx[r, c + 1], idx[r + 1, c], idx[r + 1, c + 1]
            faces += [(a, b, e), (a, e, d)] if (r + c) % 2 else [(a, b, d), (b, e, d)]
    uvz = torch.cat([uv, torch.ones(len(uv), 1, dtype=torch.float64)], -1)[None]
    counts = np.zeros((24, 24), int)
    for face in faces:
        counts += rasterize(uvz, torch.tensor([face]), (24, 24), perspective=False).mask[0].numpy()
    expected = np.zeros((24, 24), int)
    expected[1:23, 1:23] = 1  # outer square [1, 23]^2: centres 1.5 .. 22.5
    assert np.array_equal(counts, expected)


def test_cube_front_orthographic_square_silhouette_and_depth():
    v, f = _cube()
    out = TorchRasterizer().render(v, f, _ortho(32, focal=20.0, distance=5.0))
    expected = np.zeros((32, 32), bool)
    expected[6:26, 6:26] = True  # u in [16 - 10, 16 + 10): left/top edges in, right/bottom out
    assert np.array_equal(out.mask[0].numpy(), expected)
    assert torch.allclose(out.depth[0][out.mask[0]], torch.tensor(4.5))
    assert bool(torch.isinf(out.depth[0][~out.mask[0]]).all())
    assert out.image.shape == (1, 32, 32, 4)
    assert torch.equal(out.image[0, ..., 3] > 0, out.mask[0])


def test_cube_front_perspective_square_silhouette_and_plane_depth():
    v, f = _cube()
    cam = Camera.look_at(eye=(0.0, 0.0, 5.0), image_size=(32, 32))
    cam = Camera(R=cam.R, T=cam.T, focal=45.0, image_size=(32, 32))
    out = TorchRasterizer().render(v, f, cam)
    expected = np.zeros((32, 32), bool)
    expected[11:21, 11:21] = True  # front face half-size 45 * 0.5 / 4.5 = 5 px; sides project inside it
    assert np.array_equal(out.mask[0].numpy(), expected)
    # perspective-correct depth of the front plane is constant, not distorted by the projection
    assert torch.allclose(out.depth[0][out.mask[0]], torch.tensor(4.5), atol=1e-5)
    culled = TorchRasterizer(cull_backfaces=True).render(v, f, cam)
    assert torch.equal(culled.image, out.image)


def test_perspective_barycentrics_reproject_to_pixel_centres():
    # tilted triangle: screen-space interpolation would be wrong, perspective-correct must hit the pixel
    verts = torch.tensor([[[-0.6, -0.5, -0.8], [0.7, -0.4, 0.5], [0.0, 0.6, -0.2]]])
    cam = Camera.look_at(eye=(0.0, 0.0, 2.0), fov_deg=60.0, image_size=(24, 24))
    out = TorchRasterizer().render(verts, torch.tensor([[0, 1, 2]]), cam)
    mask = out.mask[0]
    assert int(mask.sum()) > 40
    pts = (out.bary[0][mask][:, :, None] * cam.world_to_camera(verts)[0][None]).sum(1)
    uvz = cam.camera_to_image(pts[None])[0]
    rows, cols = torch.nonzero(mask, as_tuple=True)
    assert torch.allclose(uvz[:, 0], cols.float() + 0.5, atol=1e-3)
    assert torch.allclose(uvz[:, 1], rows.float() + 0.5, atol=1e-3)
    assert torch.allclose(uvz[:, 2], out.depth[0][mask], atol=1e-5)


def test_nearer_triangle_wins_regardless_of_order():
    near = [[2.0, 2.0, 1.0], [14.0, 3.0, 1.0], [4.0, 14.0, 1.0]]
    far = [[1.0, 1.0, 3.0], [15.0, 1.0, 3.0], [15.0, 15.0, 3.0]]
    uvz = _uvz(near + far)
    a = rasterize(uvz, torch.tensor([[0, 1, 2], [3, 4, 5]]), (16, 16), perspective=False)
    b = rasterize(uvz, torch.tensor([[3, 4, 5], [0, 1, 2]]), (16, 16), perspective=False)
    near_only = rasterize(uvz, torch.tensor([[0, 1, 2]]), (16, 16), perspective=False).mask[0]
    far_only = rasterize(uvz, torch.tensor([[3, 4, 5]]), (16, 16), perspective=False).mask[0]
    overlap = near_only & far_only
    assert int(overlap.sum()) > 20
    assert bool((a.face_ids[0][near_only] == 0).all()) and bool((b.face_ids[0][near_only] == 1).all())
    assert bool((a.depth[0][overlap] == 1.0).all()) and bool((b.depth[0][overlap] == 1.0).all())
    assert torch.equal(a.mask, b.mask) and torch.equal(a.depth, b.depth)


def test_backface_culling_flag():
    ccw = [[-0.5, -0.5, 0.0], [0.5, -0.5, 0.0], [0.0, 0.5, 0.0]]  # counter-clockwise seen from +z
    verts = torch.tensor([ccw])
    cam = _ortho(16, focal=10.0)
    front, back = torch.tensor([[0, 1, 2]]), torch.tensor([[0, 2, 1]])
    assert int(TorchRasterizer(cull_backfaces=True).render(verts, front, cam).mask.sum()) > 20
    assert int(TorchRasterizer(cull_backfaces=True).render(verts, back, cam).mask.sum()) == 0
    unculled = TorchRasterizer(cull_backfaces=False)
    assert torch.equal(unculled.render(verts, back, cam).mask, unculled.render(verts, front, cam).mask)
    # two-sided lighting: the back side is lit like the front side
    assert torch.allclose(unculled.render(verts, back, cam).image, unculled.render(verts, front, cam).image)


def test_faces_behind_the_camera_are_dropped():
    verts = torch.tensor([[[-0.5, -0.5, 6.0], [0.5, -0.5, 6.0], [0.0, 0.5, 6.0]]])
    cam = Camera.look_at(eye=(0.0, 0.0, 5.0), image_size=(16, 16))
    assert int(TorchRasterizer().render(verts, torch.tensor([[0, 1, 2]]), cam).mask.sum()) == 0


def test_batch_matches_single_renders_and_to_uint8():
    v, f = _cube()
    batch = torch.stack([v, v * 0.5 + 0.1])
    cam = Camera.look_at(eye=(1.5, 1.0, 3.0), image_size=(20, 24))
    renderer = TorchRasterizer(background=(0.0, 0.0, 1.0))
    out = renderer.render(batch, f, cam)
    for b in range(2):
        single = renderer.render(batch[b], f, cam)
        assert torch.equal(out.image[b], single.image[0]) and torch.equal(out.depth[b], single.depth[0])
    rgb = to_uint8(out, background=(1.0, 0.0, 0.0))
    assert rgb.shape == (2, 20, 24, 3) and rgb.dtype == np.uint8
    empty = ~out.mask.numpy()
    assert (rgb[empty] == [255, 0, 0]).all()
    assert (out.image[..., :3].numpy()[empty] == [0.0, 0.0, 1.0]).all()


def test_render_errors_are_clear():
    v, f = _cube()
    cam = _ortho(8)
    with pytest.raises(ValueError, match="faces"):
        TorchRasterizer().render(v, f + 8, cam)
    with pytest.raises(ValueError, match="colors"):
        TorchRasterizer().render(v, f, cam, colors=torch.ones(3, 3))
    with pytest.raises(ValueError, match="faces"):
        rasterize(_uvz([[1.0, 1.0, 1.0]] * 3), torch.tensor([[0, 1, 3]]), (4, 4))
    with pytest.raises(ValueError, match="shading"):
        TorchRasterizer(shading="toon")


def test_to_uint8_composites_partial_alpha():
    from render.rasterizer import RenderOutput

    image = torch.tensor([[[[1.0, 0.0, 0.5, 0.5], [0.2, 0.4, 0.6, 0.0], [2.0, -1.0, 1.0, 1.0]]]])  # [1,1,3,4]
    out = to_uint8(
        RenderOutput(image, torch.zeros(1, 1, 3), torch.zeros(1, 1, 3, dtype=torch.bool)),
        background=(0.0, 1.0, 1.0),
    )
    assert out.tolist() == [[[[128, 128, 191], [0, 255, 255], [255, 0, 255]]]]


def test_results_do_not_depend_on_the_number_of_threads():
    import numba

    v, f = _cube()
    batch = torch.stack([v, v * 0.7])
    cam = Camera.look_at(eye=(1.2, 0.8, 2.5), image_size=(40, 36))
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = TorchRasterizer().render(batch, f, cam)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = TorchRasterizer().render(batch, f, cam)
    finally:
        numba.set_num_threads(previous)
    assert torch.equal(one.image, two.image) and torch.equal(one.face_ids, two.face_ids)
    assert torch.equal(one.bary, two.bary) and torch.equal(one.depth, two.depth)


def test_concurrent_renders_from_python_threads():
    # numba's workqueue layer forbids concurrent launches; the renderer serialises its kernel launches.
    from concurrent.futures import ThreadPoolExecutor

    v, f = _cube()
    cam = Camera.look_at(eye=(1.0, 1.5, 2.5), image_size=(48, 48))
    renderer = TorchRasterizer()
    expected = renderer.render(v, f, cam).image
    with ThreadPoolExecutor(4) as pool:
        images = list(pool.map(lambda _: renderer.render(v, f, cam).image, range(16)))
    assert all(torch.equal(image, expected) for image in images)


def _sphere(rings: int = 12, segments: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A closed UV sphere with jittered vertices (smooth normals, faces of every orientation)."""
    theta = torch.linspace(0, torch.pi, rings + 1)[1:-1, None]
    phi = torch.linspace(0, 2 * torch.pi, segments + 1)[None, :-1]
    ring = [theta.sin() * phi.cos(), theta.cos().expand(rings - 1, segments), theta.sin() * phi.sin()]
    ring = torch.stack(ring, -1)
    v = torch.cat([torch.tensor([[0.0, 1.0, 0.0]]), ring.reshape(-1, 3), torch.tensor([[0.0, -1.0, 0.0]])])
    v = v * (1 + 0.05 * torch.rand(v.shape[0], 1, generator=torch.Generator().manual_seed(0)))
    faces, s, last = [], segments, v.shape[0] - 1
    for j in range(s):
        faces.append((0, 1 + (j + 1) % s, 1 + j))
        faces.append((last, 1 + (rings - 2) * s + j, 1 + (rings - 2) * s + (j + 1) % s))
    for i in range(rings - 2):
        for j in range(s):
            a, b = 1 + i * s + j, 1 + i * s + (j + 1) % s
            faces += [(a, b, b + s), (a, b + s, a + s)]
    return v, torch.tensor(faces)


@pytest.mark.parametrize("shading", ["phong", "lambert", "normals"])
@pytest.mark.parametrize(
    ("orthographic", "cull", "colours"), [(False, False, None), (True, True, 1), (False, True, 2)]
)
def test_render_uint8_is_to_uint8_of_render_bit_for_bit(shading, orthographic, cull, colours):
    # the one-pass frame kernel (talk animate, the render process) against rasterize + shade + composite
    import dataclasses

    v, f = _sphere()
    batch = torch.stack([v, v.flip(-1) * 0.8])
    cam = Camera.look_at(eye=(1.8, 1.2, 4.8), image_size=(40, 52))
    cam = dataclasses.replace(cam, orthographic=True, focal=20.0) if orthographic else cam
    colors = (
        None
        if colours is None
        else torch.rand(colours, v.shape[0], 3, generator=torch.Generator().manual_seed(1))
    )
    renderer = TorchRasterizer(shading, background=(0.2, 0.5, 0.9), shininess=7.5, cull_backfaces=cull)
    reference = to_uint8(renderer.render(batch, f, cam, colors), renderer.background)
    frames = renderer.render_uint8(batch, f, cam, colors)
    assert frames.dtype == np.uint8 and frames.shape == (2, 40, 52, 3)
    assert 0.2 < (frames != np.array([51, 128, 230], np.uint8)).any(-1).mean() < 0.8  # the sphere is in view
    assert np.array_equal(frames, reference)
