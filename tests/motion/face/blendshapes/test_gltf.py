"""glTF 2.0 / GLB morph targets: miniature files written here with the structure avatar tools export."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

from motion.face.blendshapes import (
    ARKIT_NAMES,
    RigDependencyError,
    RigFormatError,
    RigNotFoundError,
    load_gltf,
)
from tests.motion.face.blendshapes.gltf_builder import GltfBuilder

pytestmark = pytest.mark.usefixtures("one_thread")
# The writer encodes with meshopt; `make setup` installs it (the dev extra).
needs_meshopt = pytest.mark.skipif(importlib.util.find_spec("meshopt") is None, reason="pip install meshopt")

NAMES = ["jawOpen", "eyeBlink_L", "MouthSmileLeft"]
RNG = np.random.default_rng(0)
# Two primitives (one per material, as Blender writes them): a quad and a triangle.
POS_A = RNG.uniform(-1, 1, (4, 3)).astype(np.float32)
POS_B = RNG.uniform(-1, 1, (3, 3)).astype(np.float32)
IDX_A = np.array([0, 1, 2, 0, 2, 3], np.uint16)
IDX_B = np.array([0, 1, 2], np.uint8)
DEL_A = RNG.uniform(-0.1, 0.1, (3, 4, 3)).astype(np.float32)
DEL_B = RNG.uniform(-0.1, 0.1, (3, 3, 3)).astype(np.float32)
DEL_A[1, [0, 2]] = 0  # sparse targets store the moved rows only
DEL_B[2, 1:] = 0
FACES = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6]])


def _head(b: GltfBuilder, style: str = "float", names_on: str = "mesh") -> int:
    prims = []
    for pos, idx, dels in ((POS_A, IDX_A, DEL_A), (POS_B, IDX_B, DEL_B)):
        if style == "meshopt":
            position = b.meshopt_accessor(pos)
            indices = b.meshopt_accessor(idx.astype(np.uint16), mode="TRIANGLES")
            targets = [{"POSITION": b.meshopt_accessor(d)} for d in dels]
        else:
            position, indices = b.accessor(pos), b.accessor(idx)
            make = b.sparse_accessor if style == "sparse" else b.accessor
            targets = [{"POSITION": make(d)} for d in dels]
        prim = {"attributes": {"POSITION": position}, "indices": indices, "targets": targets}
        if names_on == "primitive":
            prim["extras"] = {"targetNames": NAMES}
        prims.append(prim)
    mesh = b.mesh("Head", prims, NAMES if names_on == "mesh" else None)
    b.node(mesh=mesh, name="Head")
    return mesh


def _check_head(rig, atol: float = 1e-7) -> None:
    assert rig.names == tuple(NAMES)
    np.testing.assert_allclose(rig.neutral.numpy(), np.concatenate([POS_A, POS_B]), atol=atol)
    np.testing.assert_allclose(rig.deltas.numpy(), np.concatenate([DEL_A, DEL_B], axis=1), atol=atol)
    np.testing.assert_array_equal(rig.faces.numpy(), FACES)


@pytest.mark.parametrize("style", ["float", "sparse"])
def test_glb_two_primitives_names_and_deltas(tmp_path, style):
    b = GltfBuilder()
    _head(b, style)
    rig = load_gltf(b.write_glb(tmp_path / "head.glb"))
    _check_head(rig)
    # unit weight on one target gives neutral + that delta
    w = torch.zeros(1, 1, 3)
    w[0, 0, 2] = 1.0
    out = rig.vertices(w)[0, 0]
    torch.testing.assert_close(out, rig.neutral + torch.from_numpy(np.concatenate([DEL_A[2], DEL_B[2]])))
    arkit = rig.to_arkit()
    assert arkit.rig.names == ARKIT_NAMES
    assert (
        arkit.sources["eyeBlinkLeft"] == "eyeBlink_L" and arkit.sources["mouthSmileLeft"] == "MouthSmileLeft"
    )
    torch.testing.assert_close(arkit.rig.deltas[ARKIT_NAMES.index("jawOpen")], rig.deltas[0])
    assert len(arkit.missing) == 49 and not arkit.dropped


def test_sparse_over_a_base_view_and_primitive_names(tmp_path):
    b = GltfBuilder()
    base = np.full((4, 3), 0.5, np.float32)
    dense = base.copy()
    dense[2] = [1.0, 2.0, 3.0]
    pos = b.accessor(POS_A)
    prim = {
        "attributes": {"POSITION": pos},
        "targets": [{"POSITION": b.sparse_accessor(dense, base=base, index_type=np.uint8)}, {"NORMAL": pos}],
        "extras": {"targetNames": ["a", "b"]},
    }
    b.node(mesh=b.mesh("M", [prim]))
    rig = load_gltf(b.write_glb(tmp_path / "m.glb"))
    assert rig.names == ("a", "b")
    np.testing.assert_allclose(rig.deltas[0].numpy(), dense)
    assert not rig.deltas[1].any()  # a target without POSITION moves nothing
    np.testing.assert_array_equal(rig.faces.numpy(), [[0, 1, 2]])  # non-indexed: vertices in threes


def test_quantized_accessors_and_the_dequantizing_node(tmp_path):
    """KHR_mesh_quantization as gltfpack writes it: integer positions, a node scale/offset, normalized targets."""
    b = GltfBuilder()
    q_pos = RNG.integers(0, 16384, (5, 3)).astype(np.uint16)
    q_short = RNG.integers(-32768, 32768, (5, 3)).astype(np.int16)
    q_short[0, 0] = -32768  # normalizes to -1, not below
    q_byte = RNG.integers(-128, 128, (5, 3)).astype(np.int8)
    q_ubyte = RNG.integers(0, 256, (5, 3)).astype(np.uint8)
    prim = {
        "attributes": {"POSITION": b.accessor(q_pos, padded=True)},
        "targets": [
            {"POSITION": b.accessor(q_short, normalized=True, padded=True)},
            {"POSITION": b.accessor(q_byte, normalized=True, padded=True)},
            {"POSITION": b.accessor(q_byte, padded=True)},  # integer, not normalized
            {"POSITION": b.accessor(q_ubyte, normalized=True, padded=True)},
        ],
    }
    scale, shift = np.array([1e-3, 2e-3, 5e-4]), np.array([0.1, -0.2, 0.3])
    b.node(mesh=b.mesh("Q", [prim], ["s", "b", "i", "u"]), scale=scale.tolist(), translation=shift.tolist())
    b._use("KHR_mesh_quantization", required=True)
    rig = load_gltf(b.write_glb(tmp_path / "q.glb"))
    expected = [
        np.maximum(q_short / 32767.0, -1.0),
        np.maximum(q_byte / 127.0, -1.0),
        q_byte.astype(np.float64),
        q_ubyte / 255.0,
    ]
    np.testing.assert_allclose(rig.neutral.numpy(), q_pos * scale + shift, rtol=1e-6)
    np.testing.assert_allclose(rig.deltas.numpy(), np.stack(expected) * scale, rtol=1e-6, atol=1e-9)
    assert rig.deltas[0, 0, 0] == pytest.approx(-scale[0])
    assert load_gltf(tmp_path / "q.glb", transform=False).neutral.numpy().max() > 100  # raw grid units


@needs_meshopt
def test_meshopt_compressed_views(tmp_path):
    b = GltfBuilder()
    _head(b, "meshopt")
    _check_head(load_gltf(b.write_glb(tmp_path / "mo.glb")))


@needs_meshopt
def test_khr_meshopt_compression(tmp_path):
    """KHR_meshopt_compression: the ratified name of the same bitstream."""
    b = GltfBuilder()
    pos = b.meshopt_accessor(POS_A, kind="KHR")
    b.node(mesh=b.mesh("K", [{"attributes": {"POSITION": pos}, "targets": [{"POSITION": pos}]}], ["x"]))
    rig = load_gltf(b.write_glb(tmp_path / "k.glb"))
    np.testing.assert_allclose(rig.deltas[0].numpy(), POS_A)


@needs_meshopt
def test_meshopt_exponential_filter(tmp_path):
    b = GltfBuilder()
    pos = b.accessor(POS_A)
    target = b.meshopt_accessor(DEL_A[0], filt="EXPONENTIAL", bits=14)
    b.node(mesh=b.mesh("E", [{"attributes": {"POSITION": pos}, "targets": [{"POSITION": target}]}], ["e"]))
    rig = load_gltf(b.write_glb(tmp_path / "e.glb"))
    np.testing.assert_allclose(rig.deltas[0].numpy(), DEL_A[0], atol=1e-4)


@needs_meshopt
def test_meshopt_without_the_package(tmp_path, monkeypatch):
    b = GltfBuilder()
    _head(b, "meshopt")
    with_fallback = b.write_glb(tmp_path / "fallback.glb", fallback_data=True)
    compressed_only = b.write_glb(tmp_path / "compressed.glb")
    monkeypatch.setitem(sys.modules, "meshopt", None)  # `import meshopt` now raises ImportError
    _check_head(load_gltf(with_fallback))  # the uncompressed fallback buffer is read instead
    with pytest.raises(RigDependencyError) as err:
        load_gltf(compressed_only)
    _one_line(err, compressed_only)
    assert "pip install" in str(err.value)


@pytest.mark.parametrize("bin_name", [None, "head data.bin"])
def test_gltf_json_with_external_bin_or_data_uri(tmp_path, bin_name):
    b = GltfBuilder()
    _head(b, "sparse", names_on="primitive")
    _check_head(load_gltf(b.write_gltf(tmp_path / "head.gltf", bin_name)))


def _rot_z(deg: float) -> tuple[np.ndarray, list[float]]:
    a = np.radians(deg)
    m = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return m, [0.0, 0.0, float(np.sin(a / 2)), float(np.cos(a / 2))]


def test_world_matrix_of_the_mesh_node(tmp_path):
    b = GltfBuilder()
    prims = [{"attributes": {"POSITION": b.accessor(POS_A)}, "targets": [{"POSITION": b.accessor(DEL_A[0])}]}]
    mesh = b.mesh("Head", prims, ["jawOpen"])
    r, quat = _rot_z(90)
    child = b.node(root=False, mesh=mesh, rotation=quat, translation=[1.0, 0.0, 0.0])
    parent_m = np.diag([2.0, 2.0, 2.0, 1.0])
    parent_m[:3, 3] = [0.0, 5.0, 0.0]
    b.node(children=[child], matrix=parent_m.T.reshape(-1).tolist())  # column-major
    rig = load_gltf(b.write_glb(tmp_path / "t.glb"))
    world_lin = 2.0 * r
    np.testing.assert_allclose(rig.neutral.numpy(), POS_A @ world_lin.T + [2.0, 5.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(rig.deltas[0].numpy(), DEL_A[0] @ world_lin.T, atol=1e-6)


def test_skinned_mesh_uses_the_skin_rest_pose(tmp_path):
    b = GltfBuilder()
    prim = {
        "attributes": {
            "POSITION": b.accessor(POS_A),
            "JOINTS_0": b.accessor(np.array([[0, 1, 0, 0]] * 4, np.uint8)),
            "WEIGHTS_0": b.accessor(
                np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0.5, 0.5, 0, 0], [1, 0, 0, 0]], np.float32)
            ),
        },
        "targets": [{"POSITION": b.accessor(DEL_A[0])}],
    }
    mesh = b.mesh("Skinned", [prim], ["jawOpen"])
    j0 = b.node(translation=[0.0, 1.0, 0.0])
    j1 = b.node(translation=[0.0, 0.0, 3.0])
    ibm = np.stack([np.eye(4), np.eye(4)])
    ibm[1, :3, 3] = [0.0, 0.0, -1.0]  # joint 1 bound at z = 1, now at z = 3: its vertices move by +2 in z
    b.doc["skins"] = [
        {
            "joints": [j0, j1],
            "inverseBindMatrices": b.accessor(ibm.transpose(0, 2, 1).reshape(2, 16).astype(np.float32)),
        }
    ]
    b.node(mesh=mesh, skin=0, scale=[10.0, 10.0, 10.0])  # the skinned node's own transform is ignored
    rig = load_gltf(b.write_glb(tmp_path / "s.glb"))
    shift = np.array([[0, 1, 0], [0, 0, 2], [0, 0.5, 1], [0, 1, 0]])
    np.testing.assert_allclose(rig.neutral.numpy(), POS_A + shift, atol=1e-6)
    np.testing.assert_allclose(rig.deltas[0].numpy(), DEL_A[0], atol=1e-7)


def test_meshes_sharing_names_merge_and_mesh_argument(tmp_path):
    b = GltfBuilder()
    _head(b)  # jawOpen, eyeBlink_L, MouthSmileLeft
    teeth = [{"attributes": {"POSITION": b.accessor(POS_B)}, "targets": [{"POSITION": b.accessor(DEL_B[0])}]}]
    b.node(mesh=b.mesh("Teeth", teeth, ["jawOpen"]), translation=[0.0, 0.0, 1.0])
    body = [
        {"attributes": {"POSITION": b.accessor(POS_A)}, "targets": [{"POSITION": b.accessor(DEL_A[0])}] * 4}
    ]
    b.node(mesh=b.mesh("Body", body, ["breathe", "a", "b", "c"]))
    pa = b.accessor(POS_A)
    broken = [{"attributes": {"POSITION": pa}, "targets": [{"POSITION": pa}] * n} for n in (1, 2)]
    b.node(mesh=b.mesh("Broken", broken, ["x"]))  # never read: it shares no name with the face
    path = b.write_glb(tmp_path / "avatar.glb")
    rig = load_gltf(path)  # head + teeth (they share jawOpen); the body's unrelated targets stay out
    assert rig.names == tuple(NAMES) and rig.num_vertices == 7 + 3
    np.testing.assert_allclose(rig.neutral[7:].numpy(), POS_B + [0, 0, 1], atol=1e-7)
    np.testing.assert_allclose(rig.deltas[0, 7:].numpy(), DEL_B[0], atol=1e-7)
    assert not rig.deltas[1:, 7:].any()  # the teeth lack the other targets: zero deltas
    assert rig.faces.max() == 9 and len(rig.faces) == 3 + 1
    body_rig = load_gltf(path, mesh="Body")
    assert body_rig.names == ("breathe", "a", "b", "c") and body_rig.num_vertices == 4
    with pytest.raises(RigFormatError) as err:
        load_gltf(path, mesh="Hair")
    _one_line(err, path)
    assert "'Head', 'Teeth', 'Body', 'Broken'" in str(err.value)


def test_unnamed_meshes_are_called_by_index(tmp_path):
    b = GltfBuilder()  # gltfpack drops mesh names
    for pos, dels in ((POS_A, DEL_A), (POS_B, DEL_B)):
        prims = [
            {"attributes": {"POSITION": b.accessor(pos)}, "targets": [{"POSITION": b.accessor(dels[0])}]}
        ]
        b.node(mesh=b.mesh(None, prims))
    path = b.write_glb(tmp_path / "two.glb")
    rig = load_gltf(path, mesh="mesh 1")
    assert rig.names == ("target_0",) and rig.num_vertices == 3
    np.testing.assert_allclose(rig.deltas[0].numpy(), DEL_B[0], atol=1e-7)
    with pytest.raises(RigFormatError, match="pass mesh='NAME'"):  # unrelated unnamed targets: no guessing
        load_gltf(path)


def test_strips_and_fans(tmp_path):
    b = GltfBuilder()
    pos = np.zeros((5, 3), np.float32)
    idx = b.accessor(np.arange(5, dtype=np.uint16))
    prims = [
        {"attributes": {"POSITION": b.accessor(pos)}, "indices": idx, "mode": m, "targets": [{}]}
        for m in (5, 6)
    ]
    b.node(mesh=b.mesh("S", prims, ["t"]))
    rig = load_gltf(b.write_glb(tmp_path / "s.glb"))
    strip = [[0, 1, 2], [1, 3, 2], [2, 3, 4]]  # odd triangles swap two corners to keep the winding
    fan = [[6, 7, 5], [7, 8, 5], [8, 9, 5]]  # second primitive: offset by the 5 vertices of the first
    np.testing.assert_array_equal(rig.faces.numpy(), strip + fan)


def _one_line(err, path) -> None:
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg, msg


def _bad_files(tmp_path):
    """(file, expected error class, a word of the message) for each error case."""
    cases = []
    junk = tmp_path / "junk.glb"
    junk.write_bytes(b"\x00\x01 not a gltf at all")
    cases.append((junk, RigFormatError, "neither a GLB"))
    v1 = tmp_path / "v1.gltf"
    v1.write_text('{"asset": {"version": "1.0"}}')
    cases.append((v1, RigFormatError, "not glTF 2.0"))

    b = GltfBuilder()
    b.node(mesh=b.mesh("Plain", [{"attributes": {"POSITION": b.accessor(POS_A)}}]))
    cases.append((b.write_glb(tmp_path / "plain.glb"), RigFormatError, "no morph targets"))

    b = GltfBuilder()
    pa, pb = b.accessor(POS_A), b.accessor(POS_B)
    prims = [
        {"attributes": {"POSITION": pa}, "targets": [{"POSITION": pa}]},
        {"attributes": {"POSITION": pb}, "targets": [{"POSITION": pb}, {"POSITION": pb}]},
    ]
    b.node(mesh=b.mesh("Counts", prims))
    cases.append((b.write_glb(tmp_path / "counts.glb"), RigFormatError, "different numbers of morph targets"))

    b = GltfBuilder()
    pa, pb = b.accessor(POS_A), b.accessor(POS_B)
    prims = [
        {"attributes": {"POSITION": pa}, "targets": [{"POSITION": pa}], "extras": {"targetNames": ["x"]}},
        {"attributes": {"POSITION": pb}, "targets": [{"POSITION": pb}], "extras": {"targetNames": ["y"]}},
    ]
    b.node(mesh=b.mesh("Names", prims))
    cases.append((b.write_glb(tmp_path / "names.glb"), RigFormatError, "targetNames disagree"))

    b = GltfBuilder()
    prims = [{"attributes": {"POSITION": b.accessor(POS_A)}, "targets": [{"POSITION": b.accessor(POS_B)}]}]
    b.node(mesh=b.mesh("Verts", prims, ["jawOpen"]))
    cases.append((b.write_glb(tmp_path / "verts.glb"), RigFormatError, "3 POSITION deltas for 4 vertices"))

    b = GltfBuilder()
    _head(b)
    b._use("KHR_draco_mesh_compression", required=True)
    cases.append((b.write_glb(tmp_path / "draco.glb"), RigFormatError, "KHR_draco_mesh_compression"))

    b = GltfBuilder()
    _head(b)
    cases.append((b.write_gltf(tmp_path / "lost.gltf", "lost.bin"), RigNotFoundError, "lost.bin"))
    (tmp_path / "lost.bin").unlink()
    cases.append((tmp_path / "missing.glb", RigNotFoundError, "not found"))
    return cases


def test_each_error_is_one_line_naming_the_file(tmp_path):
    for path, kind, words in _bad_files(tmp_path):
        with pytest.raises(kind) as err:
            load_gltf(path)
        _one_line(err, path)
        assert words in str(err.value), str(err.value)
