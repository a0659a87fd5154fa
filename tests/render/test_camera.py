import math

import pytest
import torch

from render.camera import Camera, fit_camera


def _ellipsoid(n: int = 400) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    d = torch.randn(n, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    return d * torch.tensor([0.08, 0.11, 0.10]) + torch.tensor([0.01, 0.02, -0.03])


def test_look_at_front_is_identity_rotation():
    cam = Camera.look_at(eye=(0.0, 0.0, 2.0), fov_deg=90.0, image_size=(100, 200))
    assert torch.allclose(cam.R[0], torch.eye(3), atol=1e-6)
    assert torch.allclose(cam.T[0], torch.tensor([0.0, 0.0, -2.0]), atol=1e-6)
    assert cam.focal == pytest.approx(50.0)  # H/2 / tan(45 deg)
    assert cam.center == (100.0, 50.0)


def test_perspective_projection_of_known_points():
    cam = Camera.look_at(eye=(0.0, 0.0, 2.0), fov_deg=90.0, image_size=(100, 200))
    pts = torch.tensor([[[0.0, 0.0, 0.0], [0.4, 0.2, 0.0], [-0.5, -0.5, 1.0]]])
    uvz = cam.project(pts)[0]
    # u = cx + f x / depth, v = cy - f y / depth, depth = distance along the viewing axis
    expected = torch.tensor([[100.0, 50.0, 2.0], [110.0, 45.0, 2.0], [75.0, 75.0, 1.0]])
    assert torch.allclose(uvz, expected, atol=1e-4)


def test_look_at_from_the_side_sees_x_as_depth():
    cam = Camera.look_at(eye=(3.0, 0.0, 0.0), fov_deg=60.0, image_size=(64, 64))
    uvz = cam.project(torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]]))[0]
    assert uvz[0, 2] == pytest.approx(3.0) and uvz[1, 2] == pytest.approx(2.0)
    # looking along -x with y up, world -z is on the camera's right
    assert uvz[2, 0] > 32.0 and uvz[2, 1] == pytest.approx(32.0, abs=1e-4)


def test_orthographic_projection_of_known_points():
    cam = Camera(
        R=torch.eye(3)[None],
        T=torch.tensor([[0.0, 0.0, -5.0]]),
        focal=100.0,
        image_size=(64, 48),
        orthographic=True,
    )
    uvz = cam.project(torch.tensor([[[0.1, -0.2, 1.0], [0.0, 0.0, -1.0]]]))[0]
    expected = torch.tensor([[24.0 + 10.0, 32.0 + 20.0, 4.0], [24.0, 32.0, 6.0]])
    assert torch.allclose(uvz, expected, atol=1e-5)


def test_principal_point_and_batched_focal():
    R = torch.eye(3).expand(2, 3, 3)
    T = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -2.0]])
    cam = Camera(R=R, T=T, focal=torch.tensor([10.0, 20.0]), image_size=(8, 8), principal_point=(1.0, 2.0))
    uvz = cam.project(torch.tensor([[[1.0, 1.0, 0.0]]]))
    assert torch.allclose(uvz[:, 0], torch.tensor([[11.0, -8.0, 1.0], [11.0, -8.0, 2.0]]))


def test_fit_camera_front_fills_the_image_with_the_margin():
    verts = _ellipsoid()
    margin = 1.2
    cam = fit_camera(verts, image_size=(128, 96), fov_deg=20.0, view="front", margin=margin)
    assert cam.batch_size == 1 and cam.image_size == (128, 96)
    uvz = cam.project(verts)[0]
    assert bool((uvz[:, 2] > 0).all())
    # normalised distance from the centre: the tightest point touches 1 / margin exactly
    extent = torch.maximum((uvz[:, 0] - 48.0).abs() / 48.0, (uvz[:, 1] - 64.0).abs() / 64.0)
    assert float(extent.max()) == pytest.approx(1.0 / margin, rel=1e-4)
    # front view: camera on +z of the mesh, axes aligned with the world
    assert torch.allclose(cam.R[0], torch.eye(3), atol=1e-6)


def test_fit_camera_three_quarter_and_sequences():
    frames = torch.stack([_ellipsoid(), _ellipsoid() + torch.tensor([0.05, 0.0, 0.0])])  # [T,V,3]
    cam = fit_camera(frames, image_size=(64, 64), view="three_quarter")
    eye = -(cam.T[0] @ cam.R[0])
    direction = eye - frames.reshape(-1, 3).mean(0)
    yaw = math.degrees(math.atan2(float(direction[0]), float(direction[2])))
    assert yaw == pytest.approx(35.0, abs=3.0)
    uvz = cam.project(frames.reshape(-1, 3))[0]
    assert bool((uvz[:, :2] > 0).all() and (uvz[:, :2] < 64).all())


def test_fit_camera_orthographic_fills_the_image():
    verts = _ellipsoid()
    cam = fit_camera(verts, image_size=(64, 64), margin=1.0, orthographic=True)
    uvz = cam.project(verts)[0]
    assert cam.orthographic and bool((uvz[:, 2] > 0).all())
    assert float((uvz[:, :2] - 32.0).abs().max()) == pytest.approx(32.0, rel=1e-4)


def test_camera_errors_are_clear():
    with pytest.raises(ValueError, match="view"):
        fit_camera(_ellipsoid(), view="side")
    with pytest.raises(ValueError, match="vertices"):
        fit_camera(torch.zeros(5, 2))
    with pytest.raises(ValueError, match="up"):
        Camera.look_at(eye=(0.0, 2.0, 0.0))
    with pytest.raises(ValueError, match="T"):
        Camera(R=torch.eye(3)[None], T=torch.zeros(2, 3), focal=1.0, image_size=(4, 4))
