"""The OBJ-folder loader and ``load_rig``'s dispatch by path."""

from __future__ import annotations

import numpy as np
import pytest

from motion.face.blendshapes import (
    BlendshapeRig,
    RigFormatError,
    RigNotFoundError,
    load_obj_folder,
    load_rig,
)
from tests.motion.face.blendshapes.gltf_builder import GltfBuilder

NEUTRAL = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0], [2, 1, 0], [1.5, 2, 0]], float)


def _write_obj(path, verts, faces=()):
    lines = ["# written by the talk tests", "o head", *(f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts)]
    lines += ["vt 0 0", "vn 0 0 1", *faces]
    path.write_text("\n".join(lines) + "\n")


def _folder(tmp_path):
    d = tmp_path / "rig"
    d.mkdir()
    faces = ["f 1/1/1 2/2/1 3/3/1 4/4/1", "f 2//1 5//1 6//1 7//1 -5//1"]  # -5 is vertex 3 (7 read so far)
    _write_obj(d / "neutral.obj", NEUTRAL, faces)
    jaw = NEUTRAL.copy()
    jaw[0] += [0, -0.5, 0.1]
    blink = NEUTRAL.copy()
    blink[6] += [0, -1, 0]
    _write_obj(d / "jawOpen.obj", jaw, faces)
    _write_obj(d / "EyeBlink_L.obj", blink)
    (d / "notes.txt").write_text("not a target")
    return d, jaw - NEUTRAL, blink - NEUTRAL


def test_obj_folder(tmp_path):
    d, jaw, blink = _folder(tmp_path)
    rig = load_obj_folder(d)
    assert rig.names == ("EyeBlink_L", "jawOpen")  # sorted file names
    np.testing.assert_allclose(rig.neutral.numpy(), NEUTRAL)
    np.testing.assert_allclose(rig.deltas.numpy(), np.stack([blink, jaw]), atol=1e-6)
    quad = [[0, 1, 2], [0, 2, 3]]  # fans from the first corner
    pentagon = [[1, 4, 5], [1, 5, 6], [1, 6, 2]]
    np.testing.assert_array_equal(rig.faces.numpy(), quad + pentagon)
    arkit = rig.to_arkit()
    assert arkit.sources["eyeBlinkLeft"] == "EyeBlink_L" and not arkit.dropped


def test_obj_folder_errors_name_the_file(tmp_path):
    d, _, _ = _folder(tmp_path)
    _write_obj(d / "mouthClose.obj", NEUTRAL[:5])
    with pytest.raises(RigFormatError) as err:
        load_obj_folder(d)
    msg = str(err.value)
    assert "\n" not in msg and str(d / "mouthClose.obj") in msg and "5 vertices but neutral.obj has 7" in msg
    (d / "mouthClose.obj").write_text("v 1 2\n")
    with pytest.raises(RigFormatError, match="line 1"):
        load_obj_folder(d)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RigNotFoundError, match="has no neutral.obj"):
        load_obj_folder(empty)
    _write_obj(empty / "neutral.obj", NEUTRAL)
    with pytest.raises(RigFormatError, match="no target OBJ"):
        load_obj_folder(empty)
    with pytest.raises(RigNotFoundError, match="not found"):
        load_obj_folder(tmp_path / "nowhere")


def test_load_rig_dispatch(tmp_path):
    d, _, _ = _folder(tmp_path)
    from_folder = load_rig(d)
    npz = from_folder.save_npz(tmp_path / "rig.npz")
    b = GltfBuilder()
    prim = {"attributes": {"POSITION": b.accessor(NEUTRAL.astype(np.float32))}, "targets": []}
    prim["targets"] = [{"POSITION": b.accessor(dl.numpy())} for dl in from_folder.deltas]
    b.node(mesh=b.mesh("Head", [prim], list(from_folder.names)))
    glb = b.write_glb(tmp_path / "rig.glb")
    gltf = b.write_gltf(tmp_path / "rig.gltf")
    for path in (npz, glb, gltf):
        rig = load_rig(path)
        assert isinstance(rig, BlendshapeRig) and rig.names == from_folder.names, path
        np.testing.assert_allclose(rig.deltas.numpy(), from_folder.deltas.numpy(), atol=1e-6)
    assert load_rig(glb, mesh="Head").names == from_folder.names
    with pytest.raises(RigFormatError, match="glTF files only"):
        load_rig(npz, mesh="Head")
    (tmp_path / "rig.fbx").write_bytes(b"Kaydara FBX Binary")
    for path, kind, words in (
        (tmp_path / "rig.fbx", RigFormatError, "suffix '.fbx'"),
        (tmp_path / "gone.glb", RigNotFoundError, "not found"),
    ):
        with pytest.raises(kind) as err:
            load_rig(path)
        msg = str(err.value)
        assert "\n" not in msg and str(path) in msg and words in msg, msg
