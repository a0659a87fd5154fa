"""BlendshapeRig: blending, reordering to ARKit-52, and the .npz format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motion.face.blendshapes import ARKIT_NAMES, BlendshapeRig, RigFormatError, RigNotFoundError, load_npz

pytestmark = pytest.mark.usefixtures("one_thread")


def _rig(names=("jawOpen", "EyeBlink_L", "viseme_aa"), faces=True) -> BlendshapeRig:
    g = torch.Generator().manual_seed(0)
    v = 6
    return BlendshapeRig(
        torch.randn(v, 3, generator=g),
        torch.randn(len(names), v, 3, generator=g),
        names,
        np.array([[0, 1, 2], [2, 3, 4], [3, 4, 5]]) if faces else None,
    )


def test_unit_weight_gives_neutral_plus_that_delta():
    rig = _rig()
    w = torch.eye(3).unsqueeze(0)  # [1, T=3, K=3]: frame t activates target t
    out = rig.vertices(w)
    assert out.shape == (1, 3, 6, 3)
    for k in range(3):
        torch.testing.assert_close(out[0, k], rig.neutral + rig.deltas[k])
    torch.testing.assert_close(rig.vertices(torch.zeros(4, 3))[0], rig.neutral.expand(4, 6, 3))  # [T,K] input
    assert rig(torch.zeros(2, 5, 3)).vertices.shape == (2, 5, 6, 3)
    assert rig.num_targets == 3 and rig.num_vertices == 6 and rig.num_faces == 3


def test_vertices_are_differentiable_in_the_weights():
    rig = _rig()
    w = torch.rand(2, 4, 3, requires_grad=True)
    rig.vertices(w).sum().backward()
    expected = rig.deltas.sum(dim=(1, 2)).expand(2, 4, 3)
    torch.testing.assert_close(w.grad, expected)


def test_bad_weights_and_bad_arrays():
    rig = _rig()
    with pytest.raises(ValueError, match=r"\[B,T,3\]"):
        rig.vertices(torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="2 names for 3 targets"):
        BlendshapeRig(torch.zeros(4, 3), torch.zeros(3, 4, 3), ["a", "b"])
    with pytest.raises(ValueError, match="repeated: a"):
        BlendshapeRig(torch.zeros(4, 3), torch.zeros(2, 4, 3), ["a", "a"])
    with pytest.raises(ValueError, match="faces index"):
        BlendshapeRig(torch.zeros(4, 3), torch.zeros(1, 4, 3), ["a"], [[0, 1, 4]])


def test_to_arkit_order_missing_and_dropped():
    rig = _rig(("jawOpen", "EyeBlink_L", "viseme_aa", "eyeBlinkLeft", "MouthSmile_R"))
    res = rig.to_arkit()
    assert res.rig.names == ARKIT_NAMES and res.rig.num_targets == 52
    assert res.sources == {
        "eyeBlinkLeft": "EyeBlink_L",
        "jawOpen": "jawOpen",
        "mouthSmileRight": "MouthSmile_R",
    }
    # the second spelling of eyeBlinkLeft and the non-ARKit name are dropped, in source order
    assert res.dropped == ("viseme_aa", "eyeBlinkLeft")
    assert len(res.missing) == 49 and "tongueOut" in res.missing and "jawOpen" not in res.missing
    torch.testing.assert_close(res.rig.deltas[ARKIT_NAMES.index("eyeBlinkLeft")], rig.deltas[1])
    torch.testing.assert_close(res.rig.deltas[ARKIT_NAMES.index("mouthSmileRight")], rig.deltas[4])
    assert not res.rig.deltas[ARKIT_NAMES.index("tongueOut")].any()
    torch.testing.assert_close(res.rig.neutral, rig.neutral)
    assert "3 of 52 targets matched" in res.summary() and "\n" not in res.summary()
    w = torch.zeros(1, 52)
    w[0, ARKIT_NAMES.index("jawOpen")] = 1
    torch.testing.assert_close(res.rig.vertices(w)[0, 0], rig.neutral + rig.deltas[0])


def test_reorder_to_any_list():
    res = _rig().reorder(["viseme_aa", "eyeBlinkLeft", "new"])
    assert res.rig.names == ("viseme_aa", "eyeBlinkLeft", "new")
    assert res.missing == ("new",) and res.dropped == ("jawOpen",)


@pytest.mark.parametrize("faces", [True, False])
def test_npz_round_trip(tmp_path, faces):
    rig = _rig(faces=faces)
    path = rig.save_npz(tmp_path / "rig")
    assert path.name == "rig.npz"
    with np.load(path, allow_pickle=False) as data:
        assert data["names"].dtype.kind == "U" and ("faces" in data.files) == faces
    back = load_npz(path)
    assert back.names == rig.names
    torch.testing.assert_close(back.neutral, rig.neutral)
    torch.testing.assert_close(back.deltas, rig.deltas)
    assert (back.faces is None) == (not faces)
    if faces:
        torch.testing.assert_close(back.faces, rig.faces)
    assert BlendshapeRig.load_npz(path).names == rig.names


def test_npz_errors_are_one_line_naming_the_file(tmp_path):
    cases = []
    cases.append((tmp_path / "none.npz", RigNotFoundError, "not found"))
    np.savez(tmp_path / "nokeys.npz", neutral=np.zeros((3, 3)))
    cases.append((tmp_path / "nokeys.npz", RigFormatError, "has no deltas, names"))
    np.savez(
        tmp_path / "objects.npz",
        neutral=np.zeros((3, 3)),
        deltas=np.zeros((1, 3, 3)),
        names=np.array(["a"], dtype=object),
    )
    cases.append((tmp_path / "objects.npz", RigFormatError, "object array"))
    np.savez(
        tmp_path / "shapes.npz", neutral=np.zeros((3, 3)), deltas=np.zeros((1, 4, 3)), names=np.array(["a"])
    )
    cases.append((tmp_path / "shapes.npz", RigFormatError, "deltas must be"))
    (tmp_path / "text.npz").write_text("hello")
    cases.append((tmp_path / "text.npz", RigFormatError, "not a readable .npz"))
    for path, kind, words in cases:
        with pytest.raises(kind) as err:
            load_npz(path)
        msg = str(err.value)
        assert "\n" not in msg and str(path) in msg and words in msg, msg
