"""BFM (Deep3DFaceRecon's BFM_model_front.mat): file format, formulas, SH lighting, camera and rendering."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import loadmat, savemat

from motion.face import bfm as bfm_module
from motion.face.bfm import BFM, BFM_COEFF_SIZES, split_coeffs
from motion.face.bfm_io import (
    BFMFormatError,
    BFMNotFoundError,
    load_bfm_mat,
    point_buf_from_faces,
    save_bfm_mat,
)
from render.differentiable import rasterize_differentiable
from talk.bfm_render import bfm_camera, render_bfm
from talk.errors import UserError
from tests.motion.face.bfm_fixture import NOSE_KEYPOINT, write_mini_bfm

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 96  # renders at 96 px with Deep3DFaceRecon's 224 px camera scaled: same framing, faster tests
FOCAL, CENTER = 1015.0 * SIZE / 224, SIZE / 2


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    path = tmp_path_factory.mktemp("bfm") / "BFM_model_front.mat"
    return path, write_mini_bfm(path)


@pytest.fixture(scope="module")
def bfm(mini) -> BFM:
    return BFM(str(mini[0]))


def _coeffs(batch: int = 1, seed: int = 0, scale: float = 0.3) -> torch.Tensor:
    """Small random coefficients: a frontal, slightly turned face under mild lighting."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(batch, 257, generator=g) * scale
    c[:, 224:254] *= 0.3  # angles of a few degrees, lighting near the ambient default
    c[:, 254:] *= 0.2
    return c


def _assert_one_line_user_error(exc: BaseException, *words: str) -> None:
    message = str(exc)
    assert isinstance(exc, UserError) and "\n" not in message, message
    for word in words:
        assert word in message, (word, message)


# ----------------------------------------------------------------------------------------------- file format
def test_loader_reads_the_independent_writers_file_exactly(mini) -> None:
    path, expected = mini
    loaded = load_bfm_mat(path)
    for name in expected.__dataclass_fields__:
        got, want = getattr(loaded, name), getattr(expected, name)
        assert got.dtype == (np.float32 if want.dtype.kind == "f" else np.int64), name
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_save_then_load_round_trips_in_the_files_layout(mini, tmp_path: Path) -> None:
    loaded = load_bfm_mat(mini[0])
    out = save_bfm_mat(tmp_path / "copy.mat", loaded)
    again = load_bfm_mat(out)
    for name in loaded.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(again, name), getattr(loaded, name), err_msg=name)
    raw = loadmat(out)
    n_v = loaded.num_vertices
    assert raw["meanshape"].shape == (1, 3 * n_v) and raw["meantex"].shape == (1, 3 * n_v)
    assert raw["keypoints"].shape == (1, 68) and raw["idBase"].shape == (3 * n_v, 80)
    assert raw["tri"].min() == 1 and raw["point_buf"].max() == loaded.faces.shape[0] + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.mat"]  # the temporary file was renamed


def test_one_based_indices_become_zero_based(mini) -> None:
    path, _ = mini
    raw, loaded = loadmat(path), load_bfm_mat(path)
    cols = 19  # the fixture's 17 x 19 grid: the first quad is vertices 0, 1, 19, 20
    assert raw["tri"][0].tolist() == [1, 2, cols + 2] and loaded.faces[0].tolist() == [0, 1, cols + 1]
    n_f = loaded.faces.shape[0]
    # corner vertex 0 lies in faces 0 and 1 only; the rest is padding (F + 1 in the file, F here)
    assert raw["point_buf"][0].tolist() == [1, 2] + [n_f + 1] * 6
    assert loaded.point_buf[0].tolist() == [0, 1] + [n_f] * 6
    np.testing.assert_array_equal(loaded.keypoints, raw["keypoints"].ravel() - 1)


def _rewrite(src: Path, dst: Path, **changes: object) -> Path:
    content = {
        k: v for k, v in loadmat(src).items() if not k.startswith("__")
    } | changes  # None: drop the key
    savemat(dst, {k: v for k, v in content.items() if v is not None})
    return dst


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda raw: {"exBase": None}, ("exBase", "no")),
        (lambda raw: {"idBase": raw["idBase"][:-3]}, ("idBase",)),
        (lambda raw: {"meantex": raw["meantex"][:, :-3]}, ("meantex",)),
        (lambda raw: {"tri": raw["tri"] + raw["meanshape"].size // 3}, ("tri", "range")),
        (lambda raw: {"tri": raw["tri"] + 0.5}, ("tri", "non-integer")),
        (lambda raw: {"point_buf": raw["point_buf"][:-1]}, ("point_buf",)),
        (lambda raw: {"keypoints": np.zeros((1, 68))}, ("keypoints",)),
    ],
)
def test_malformed_files_raise_one_sentence_naming_file_and_problem(mini, tmp_path, change, words) -> None:
    src = mini[0]
    bad = _rewrite(src, tmp_path / "bad.mat", **change(loadmat(src)))
    with pytest.raises(BFMFormatError) as info:
        load_bfm_mat(bad)
    _assert_one_line_user_error(info.value, str(bad), "BFM_model_front.mat", *words)
    assert isinstance(info.value, ValueError)


def test_not_a_mat_file_and_missing_file(tmp_path: Path) -> None:
    text = tmp_path / "model.mat"
    text.write_text("this is not a MATLAB file\n")
    with pytest.raises(BFMFormatError) as info:
        load_bfm_mat(text)
    _assert_one_line_user_error(info.value, str(text), "not a readable MATLAB .mat")
    with pytest.raises(BFMNotFoundError) as missing:
        BFM(str(tmp_path / "nowhere.mat"))
    assert isinstance(missing.value, FileNotFoundError)
    _assert_one_line_user_error(missing.value, "nowhere.mat", "BFM_model_front.mat")


def test_point_buf_from_faces_matches_the_file_and_keeps_eight(mini) -> None:
    _, arrays = mini
    np.testing.assert_array_equal(point_buf_from_faces(arrays.faces, arrays.num_vertices), arrays.point_buf)
    fan = np.array([(0, k, k + 1) for k in range(1, 11)])  # vertex 0 in 10 faces; vertex 12 in none
    buf = point_buf_from_faces(fan, 13)
    assert buf[0].tolist() == list(range(8)) and buf[1].tolist() == [0] + [10] * 7
    assert buf[12].tolist() == [10] * 8


# ----------------------------------------------------------------------------------------------- coefficients
def test_split_and_join_257_coefficients() -> None:
    coeff = torch.randn(2, 3, 257)
    parts = split_coeffs(coeff)
    assert BFM_COEFF_SIZES == {"id": 80, "exp": 64, "tex": 80, "angle": 3, "gamma": 27, "trans": 3}
    shapes = [tuple(getattr(parts, name).shape) for name in BFM_COEFF_SIZES]
    assert shapes == [(2, 3, n) for n in (80, 64, 80, 3, 27, 3)]
    torch.testing.assert_close(parts.exp, coeff[..., 80:144], rtol=0, atol=0)
    torch.testing.assert_close(parts.join(), coeff, rtol=0, atol=0)
    with pytest.raises(ValueError, match="257"):
        split_coeffs(torch.zeros(1, 256))


# ----------------------------------------------------------------------------------------------- geometry
def test_forward_is_the_linear_model_in_metres(mini, bfm) -> None:
    _, arrays = mini
    rng = np.random.default_rng(1)
    ids, exps = rng.normal(size=(2, 80)), rng.normal(size=(2, 5, 64))
    out = bfm(torch.as_tensor(ids, dtype=torch.float32), torch.as_tensor(exps, dtype=torch.float32))
    mean = arrays.meanshape - arrays.meanshape.astype(np.float64).mean(axis=0)
    v = arrays.num_vertices
    id_part = (ids @ arrays.id_base.T.astype(np.float64)).reshape(2, 1, v, 3)  # held over the 5 frames
    exp_part = (exps @ arrays.exp_base.T.astype(np.float64)).reshape(2, 5, v, 3)
    expected = (mean + id_part + exp_part) * 0.1
    assert out.vertices.shape == (2, 5, v, 3)
    np.testing.assert_allclose(out.vertices.numpy(), expected, atol=2e-6)
    np.testing.assert_allclose(out.landmarks.numpy(), expected[:, :, arrays.keypoints], atol=2e-6)
    np.testing.assert_allclose(bfm().vertices.numpy(), mean[None, None] * 0.1, atol=1e-7)  # [1, 1, V, 3]
    assert bfm(exp=torch.zeros(4, 64)).vertices.shape == (1, 4, v, 3)
    raw = BFM(str(mini[0]), recenter=False)  # the file's own, off-centre mean shape
    np.testing.assert_allclose(raw.neutral()[0].numpy(), arrays.meanshape[0] * 0.1, atol=1e-7)
    with pytest.raises(ValueError, match="expected 64"):
        bfm(exp=torch.zeros(1, 2, 63))


def test_motion_offsets_are_the_expression_part(bfm) -> None:
    ids, exps = torch.randn(2, 80), torch.randn(2, 4, 64)
    template = torch.randn(2, bfm.num_vertices, 3)  # any template: the basis is linear
    offsets = bfm.motion_offsets(exps, template)
    expected = bfm(ids, exps).vertices - bfm(ids, torch.zeros_like(exps)).vertices
    torch.testing.assert_close(offsets, expected, atol=2e-6, rtol=0)
    assert bfm.motion_offsets(torch.zeros(1, 3, 64), template[:1]).abs().max() == 0
    assert bfm.num_motion_params == 64 and bfm.motion_kind == "bfm"
    with pytest.raises(ValueError, match=r"\[B, T, 64\]"):
        bfm.motion_offsets(torch.zeros(1, 3, 65), template[:1])


def test_checkpoint_rebuilds_the_model_without_its_file(bfm, monkeypatch) -> None:
    args, state = bfm.contained_init_args(), bfm.state_dict()
    assert args["model_path"] is None and set(BFM.file_arguments) <= set(args)

    def refuse(path: str) -> None:
        raise AssertionError(f"opened {path}")

    monkeypatch.setattr(bfm_module, "load_bfm_mat", refuse)
    rebuilt = BFM(**args)
    rebuilt.load_state_dict(state)
    ids, exps = torch.randn(1, 80), torch.randn(1, 3, 64)
    torch.testing.assert_close(rebuilt(ids, exps).vertices, bfm(ids, exps).vertices, rtol=0, atol=0)
    torch.testing.assert_close(rebuilt.texture(torch.ones(80)), bfm.texture(torch.ones(80)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="either model_path"):
        BFM()


def test_vertex_normals_sum_unit_face_normals_over_point_buf(mini, bfm) -> None:
    _, arrays = mini
    verts = bfm.shape(torch.randn(80) * 0.5).double()
    normals = copy.deepcopy(bfm).double().vertex_normals(verts).numpy()
    p = verts.numpy()
    face_n = []
    for a, b, c in arrays.faces:
        n = np.cross(p[b] - p[a], p[c] - p[a])  # right-hand rule: the fixture's faces are CCW from +z
        face_n.append(n / np.linalg.norm(n))
    face_n.append(np.zeros(3))
    expected = np.array([np.sum([face_n[f] for f in arrays.point_buf[v]], axis=0) for v in range(len(p))])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(normals, expected, atol=1e-10)
    # the front of the face points at the camera (+z)
    assert normals[arrays.keypoints[NOSE_KEYPOINT], 2] > 0.9


def test_rotation_matches_hand_written_matrices() -> None:
    t = 0.3
    c, s = math.cos(t), math.sin(t)
    yaw = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    pitch = [[1, 0, 0], [0, c, -s], [0, s, c]]
    roll = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    for axis, hand in enumerate((pitch, yaw, roll)):
        angle = torch.zeros(3, dtype=torch.float64)
        angle[axis] = t
        torch.testing.assert_close(BFM.rotation(angle), torch.tensor(hand, dtype=torch.float64))
    angles = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    rx, ry, rz = (BFM.rotation(torch.eye(3, dtype=torch.float64)[k] * angles[k]) for k in range(3))
    torch.testing.assert_close(BFM.rotation(angles), rz @ ry @ rx)
    nose = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    turned = nose @ BFM.rotation(torch.tensor([0.0, t, 0.0], dtype=torch.float64)).T
    assert turned[0, 0] > 0  # +yaw: the nose turns to +x
    bfm = BFM(layout=dict(num_vertices=1, num_faces=0, n_id=0, n_exp=0, n_tex=0, num_landmarks=0))
    out = bfm.to_camera(
        torch.tensor([[0.1, 0.2, 0.3]]), torch.tensor([0.0, math.pi / 2, 0]), torch.tensor([0, 0, 0.5])
    )
    # +90 degrees of yaw maps (x, y, z) -> (z, y, -x); then z += 0.5; depth = 10 - z
    torch.testing.assert_close(out, torch.tensor([[0.3, 0.2, 10.0 - (-0.1 + 0.5)]]))


# ----------------------------------------------------------------------------------------------- lighting
def test_zero_gamma_is_the_ambient_term_for_any_normal() -> None:
    normals = torch.nn.functional.normalize(torch.randn(4, 50, 3), dim=-1)
    albedo = torch.rand(4, 50, 3)
    lit = BFM.illuminate(albedo, normals, torch.zeros(4, 27))
    # a0 c0 = pi / sqrt(4 pi) = sqrt(pi) / 2
    torch.testing.assert_close(lit, 0.8 * math.sqrt(math.pi) / 2 * albedo)


_K0 = math.sqrt(math.pi) / 2  # a0 c0 = pi / sqrt(4 pi)
_K1 = math.sqrt(math.pi)  # a1 c1 = (2 pi / sqrt 3)(sqrt 3 / sqrt(4 pi))
_K2 = math.sqrt(15 * math.pi / 8)  # a2 c2 = (2 pi / sqrt 8)(3 sqrt 5 / sqrt(12 pi))
_NX, _NY, _NZ = 2 / 7, 3 / 7, 6 / 7  # a unit normal with no zero component
# Deep3DFaceRecon's nine basis values at that normal, signs included: band 0, band 1, band 2
_SH_BASIS = [_K0, -_K1 * _NY, _K1 * _NZ, -_K1 * _NX, _K2 * _NX * _NY, -_K2 * _NY * _NZ]
_SH_BASIS += [_K2 / (2 * math.sqrt(3)) * (3 * _NZ**2 - 1), -_K2 * _NX * _NZ, _K2 / 2 * (_NX**2 - _NY**2)]


@pytest.mark.parametrize("k", range(9))
@pytest.mark.parametrize("channel", range(3))
def test_each_sh_coefficient_lights_its_channel_with_its_basis_function(k, channel) -> None:
    gamma = torch.zeros(27, dtype=torch.float64)
    gamma[9 * channel + k] = 0.7
    albedo = torch.tensor([[0.5, 0.4, 0.3]], dtype=torch.float64)
    lit = BFM.illuminate(albedo, torch.tensor([[_NX, _NY, _NZ]], dtype=torch.float64), gamma)
    light = torch.full((3,), 0.8 * _K0, dtype=torch.float64)
    light[channel] += 0.7 * _SH_BASIS[k]
    torch.testing.assert_close(lit, light * albedo)
    if (k, channel) == (6, 1):  # one case by hand: (0.8 * 0.886227 + 0.7 * 0.700624 * 1.204082) * 0.4
        assert abs(float(lit[0, 1]) - 0.519803) < 1e-6


# ----------------------------------------------------------------------------------------------- rendering
def _inside(uv: np.ndarray, faces: np.ndarray, px: np.ndarray) -> np.ndarray:
    """``[P, F]`` whether each pixel centre lies inside (or on) each projected triangle."""
    out = np.zeros((len(px), len(faces)), dtype=bool)
    for f, corners in enumerate(faces):
        d = uv[corners][None] - px[:, None]  # [P, 3 corners, 2] relative to each pixel centre
        d1, d2 = np.roll(d, -1, axis=1), np.roll(d, -2, axis=1)
        e = d1[..., 0] * d2[..., 1] - d1[..., 1] * d2[..., 0]  # [P, 3] signed areas seen from the pixel
        out[:, f] = (e >= 0).all(-1) | (e <= 0).all(-1)
    return out


@pytest.mark.parametrize("distance", [10.0, 2.0])  # 2 dm: strong perspective, affine interpolation would fail
def test_render_mask_and_pixel_colours_match_an_independent_rasterization(mini, bfm, distance) -> None:
    _, arrays = mini
    coeff = _coeffs(seed=3)
    focal = FOCAL * distance / 10.0  # about the same framing at any distance
    image, mask = render_bfm(bfm, coeff, SIZE, focal, CENTER, background=0.25, camera_distance=distance)
    assert image.shape == (1, SIZE, SIZE, 3) and mask.shape == (1, SIZE, SIZE) and mask.dtype == torch.bool
    assert bool((image[~mask] == 0.25).all())
    c = split_coeffs(coeff)
    with torch.no_grad():
        posed = bfm.pose(bfm.shape(c.id, c.exp), c.angle, c.trans)[0].double().numpy()
        colors = bfm.illuminate(
            bfm.texture(c.tex), bfm.vertex_normals(bfm.shape(c.id, c.exp)) @ bfm.rotation(c.angle).mT, c.gamma
        )[0].numpy()
    depth = distance - posed[:, 2]
    uv = np.stack([CENTER + focal * posed[:, 0] / depth, CENTER - focal * posed[:, 1] / depth], -1)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    px = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], -1)
    inside = _inside(uv, arrays.faces, px)
    union = inside.any(1).reshape(SIZE, SIZE)
    assert union.sum() > 0.3 * SIZE * SIZE
    assert (union != mask[0].numpy()).sum() <= 2  # only pixel centres within snapping distance of the outline

    rng = np.random.default_rng(0)
    covered = np.flatnonzero(mask[0].numpy().ravel())
    for pixel in rng.choice(covered, size=12, replace=False):
        best = None
        for f in np.flatnonzero(inside[pixel]):
            corners = arrays.faces[f]
            d = uv[corners] - px[pixel]  # screen weight of corner k: area of (pixel, corner k+1, corner k+2)
            w = np.array(
                [
                    d[(k + 1) % 3, 0] * d[(k + 2) % 3, 1] - d[(k + 1) % 3, 1] * d[(k + 2) % 3, 0]
                    for k in range(3)
                ]
            )
            w = w / w.sum() / depth[corners]  # then perspective correction: weights over depth, renormalised
            if best is None or 1.0 / w.sum() < best[0]:
                best = (1.0 / w.sum(), (w / w.sum()) @ colors[corners])
        assert best is not None
        np.testing.assert_allclose(image[0].reshape(-1, 3)[pixel].numpy(), best[1], atol=1e-3)


def test_camera_mapping_nose_and_image_orientation(mini, bfm) -> None:
    _, arrays = mini
    coeff = _coeffs(batch=3, seed=5, scale=0.05)
    coeff[1, 225] = 0.4  # +yaw: the nose turns towards +x, the image's right
    coeff[2, 224] = 0.3  # +pitch: the nose goes down (-y), lower in the image
    c = split_coeffs(coeff)
    posed = bfm.pose(bfm.shape(c.id, c.exp), c.angle, c.trans)
    uvz = bfm.project(posed, FOCAL, CENTER)
    camera = bfm_camera(SIZE, FOCAL, CENTER)  # the same camera as a render.camera.Camera
    torch.testing.assert_close(camera.project(posed), uvz, atol=1e-4, rtol=1e-5)
    lm = bfm.landmarks_2d(coeff, FOCAL, CENTER)
    torch.testing.assert_close(lm, uvz[:, arrays.keypoints, :2])
    frags = rasterize_differentiable(uvz, bfm.faces, (SIZE, SIZE))
    nose = lm[:, NOSE_KEYPOINT]  # [3, 2] (u, v)
    for b in range(3):  # the pixel closest to the camera is the nose tip's
        row, col = divmod(int(torch.argmin(frags.depth[b])), SIZE)
        assert abs(col + 0.5 - nose[b, 0]) < 2 and abs(row + 0.5 - nose[b, 1]) < 2, (row, col, nose[b])
    assert nose[1, 0] > nose[0, 0] + 10 and nose[2, 1] > nose[0, 1] + 5
    top, bottom = int(torch.argmax(bfm.meanshape[:, 1])), int(torch.argmin(bfm.meanshape[:, 1]))
    assert float(uvz[0, top, 1]) < float(uvz[0, bottom, 1])  # +y (forehead) is up in the image

    # the rendered image follows the same mapping: moving the head by +x, +y moves the silhouette right and up
    shifted = coeff[:1].clone()
    shifted[0, 254:256] += torch.tensor([0.3, 0.3])
    masks = torch.cat(
        [render_bfm(bfm, coeff[:1], SIZE, FOCAL, CENTER)[1], render_bfm(bfm, shifted, SIZE, FOCAL, CENTER)[1]]
    )
    rows, cols = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    centroid = [(float(rows[m].float().mean()), float(cols[m].float().mean())) for m in masks]
    assert centroid[1][1] > centroid[0][1] + 2 and centroid[1][0] < centroid[0][0] - 2
    image, _ = render_bfm(bfm, split_coeffs(coeff), SIZE, FOCAL, CENTER)  # BFMCoeffs are accepted as well
    torch.testing.assert_close(image, render_bfm(bfm, coeff, SIZE, FOCAL, CENTER)[0], rtol=0, atol=0)
    _, mask = render_bfm(bfm, coeff, SIZE, FOCAL, CENTER)
    assert all(bool(mask[b, int(nose[b, 1]), int(nose[b, 0])]) for b in range(3))


def test_render_gradients_match_finite_differences_inside_the_silhouette(bfm) -> None:
    model = BFM(**bfm.contained_init_args()).double()
    model.load_state_dict(bfm.state_dict())
    base = _coeffs(seed=7).double()
    _, mask = render_bfm(model, base, SIZE, FOCAL, CENTER)
    # pixels whose 7x7 neighbourhood is covered: well inside the silhouette, where coverage cannot change
    inner = torch.nn.functional.max_pool2d((~mask)[None].double(), 7, stride=1, padding=3)[0, 0] == 0
    pick = torch.randperm(int(inner.sum()), generator=torch.Generator().manual_seed(0))[:5]
    pixels = torch.nonzero(inner)[pick]
    # id, exp, tex, angles, gamma (DC and band 1, band 2) and translation
    idx = torch.tensor([0, 80, 81, 100, 144, 224, 225, 226, 227, 229, 236, 254, 255, 256])

    def pixels_of(sub: torch.Tensor) -> torch.Tensor:
        coeff = base.index_put((torch.zeros_like(idx), idx), sub)
        image, _ = render_bfm(model, coeff, SIZE, FOCAL, CENTER)
        return image[0, pixels[:, 0], pixels[:, 1]]

    sub = base[0, idx].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(pixels_of, (sub,), eps=1e-6, atol=1e-5, rtol=1e-3)

    coeff = _coeffs(seed=7).requires_grad_(True)
    image, mask = render_bfm(bfm, coeff, SIZE, FOCAL, CENTER)
    image[mask].sum().backward()
    parts = split_coeffs(coeff.grad)
    assert parts.exp.abs().sum() > 0 and parts.gamma.abs().sum() > 0 and torch.isfinite(coeff.grad).all()
