"""ARKit weights as a morph-weight animation in the avatar's own GLB: written, read back, and the avatar untouched."""

from __future__ import annotations

import base64
import importlib.util
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from motion.face.blendshapes import ARKIT_NAMES, RigFormatError, RigNotFoundError, load_gltf
from motion.face.blendshapes.gltf_animation import read_animation, write_animated_glb
from motion.face.blendshapes.gltf_io import MESHOPT_EXTENSIONS, GltfFile
from tests.motion.face.blendshapes.gltf_builder import GltfBuilder

pytestmark = pytest.mark.usefixtures("one_thread")
needs_meshopt = pytest.mark.skipif(importlib.util.find_spec("meshopt") is None, reason="pip install meshopt")

# ARKit names in three spellings, one target that is no ARKit name; the other 49 ARKit names are missing.
HEAD = ["jawOpen", "eyeBlink_L", "MouthSmileLeft", "viseme_aa"]
RNG = np.random.default_rng(3)
POS_A = RNG.uniform(-1, 1, (4, 3)).astype(np.float32)
POS_B = RNG.uniform(-1, 1, (3, 3)).astype(np.float32)
IDX_A = np.array([0, 1, 2, 0, 2, 3], np.uint16)
IDX_B = np.array([0, 1, 2], np.uint16)
DEL_A = RNG.uniform(-0.1, 0.1, (4, 4, 3)).astype(np.float32)
DEL_B = RNG.uniform(-0.1, 0.1, (4, 3, 3)).astype(np.float32)
DEL_A[1, [0, 2]] = 0  # sparse targets store the moved rows only
FPS, T = 30.0, 7  # 1/30 s is not a float32: the key times must still be exactly float32(t / fps)
WEIGHTS = RNG.uniform(0, 1, (T, len(ARKIT_NAMES))).astype(np.float32)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(37))  # only the signature matters here
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(21))


def _avatar(b: GltfBuilder, style: str = "float") -> dict[str, list[int]]:
    """Head (two primitives, shown by two nodes) and teeth sharing jawOpen; a body whose targets share nothing."""
    prims = []
    for pos, idx, dels in ((POS_A, IDX_A, DEL_A), (POS_B, IDX_B, DEL_B)):
        if style == "meshopt":
            position, indices = b.meshopt_accessor(pos), b.meshopt_accessor(idx, mode="TRIANGLES")
            targets = [{"POSITION": b.meshopt_accessor(d)} for d in dels]
        else:
            make = b.sparse_accessor if style == "sparse" else b.accessor
            position, indices = b.accessor(pos), b.accessor(idx)
            targets = [{"POSITION": make(d)} for d in dels]
        prims.append({"attributes": {"POSITION": position}, "indices": indices, "targets": targets})
    head = b.mesh("Head", prims, HEAD)
    teeth_prim = {
        "attributes": {"POSITION": b.accessor(POS_B)},
        "targets": [{"POSITION": b.accessor(DEL_B[0])}],
    }
    teeth = b.mesh("Teeth", [teeth_prim], ["jawOpen"])
    body_prim = {
        "attributes": {"POSITION": b.accessor(POS_B)},
        "targets": [{"POSITION": b.accessor(DEL_B[1])}],
    }
    body = b.mesh("Body", [body_prim], ["breathe"])
    nodes = {"Head": [b.node(mesh=head), b.node(mesh=head, translation=[1.0, 0.0, 0.0])]}
    nodes["Teeth"] = [b.node(mesh=teeth, translation=[0.0, 0.0, 0.1])]
    nodes["Body"] = [b.node(mesh=body)]
    return nodes


def _expected(names: list[str]) -> np.ndarray:
    cols = [WEIGHTS[:, ARKIT_NAMES.index(n)] if n in ARKIT_NAMES else np.zeros(T, np.float32) for n in names]
    return np.stack(cols, axis=1)


def _parse_glb(path: Path) -> tuple[dict, bytes]:
    """The JSON and BIN of a GLB, checking the container as the spec lays it out."""
    raw = path.read_bytes()
    magic, version, length = struct.unpack_from("<III", raw, 0)
    assert (magic, version, length) == (0x46546C67, 2, len(raw))
    json_len, json_kind = struct.unpack_from("<II", raw, 12)
    assert json_kind == 0x4E4F534A and json_len % 4 == 0
    text = raw[20 : 20 + json_len]
    stripped = text.rstrip(b" ")
    assert len(text) - len(stripped) < 4 and stripped.endswith(b"}")  # padded with spaces only
    bin_at = 20 + json_len
    bin_len, bin_kind = struct.unpack_from("<II", raw, bin_at)
    assert bin_kind == 0x004E4942 and bin_len % 4 == 0 and bin_at + 8 + bin_len == len(raw)
    doc, binary = json.loads(stripped), raw[bin_at + 8 :]
    used = doc["buffers"][0]["byteLength"]
    assert used <= bin_len < used + 4 and not any(binary[used:])  # padded with zeros
    assert all("uri" not in buf for buf in doc["buffers"])  # self-contained
    for acc in doc["accessors"]:  # every accessor starts at a multiple of its component size
        if "bufferView" in acc:
            size = {5120: 1, 5121: 1, 5122: 2, 5123: 2}.get(acc["componentType"], 4)
            assert (
                doc["bufferViews"][acc["bufferView"]]["byteOffset"] + acc.get("byteOffset", 0)
            ) % size == 0
    return doc, binary


def _same_bytes(src: Path, out: Path) -> None:
    """Every byte range the source's views (and their meshopt streams) point to is in the output unchanged."""
    s, o = GltfFile(src), GltfFile(out)
    for a, b in zip(s.items("bufferViews"), o.items("bufferViews"), strict=False):
        refs = [(a, b)] + [
            (a["extensions"][e], b["extensions"][e])
            for e in MESHOPT_EXTENSIONS
            if e in a.get("extensions", {})
        ]
        for ra, rb in refs:
            if "uri" not in s.items("buffers")[ra["buffer"]] and ra["buffer"] > 0:
                assert (
                    rb["buffer"] > 0 and "uri" not in o.items("buffers")[rb["buffer"]]
                )  # still a placeholder
                continue
            assert rb["buffer"] == 0
            assert rb["byteOffset"] % 16 == ra.get("byteOffset", 0) % 16
            old = s.buffer(ra["buffer"])[ra.get("byteOffset", 0) :][: ra["byteLength"]]
            assert o.buffer(0)[rb["byteOffset"] :][: rb["byteLength"]] == old


def _same_rig(src: Path, out: Path, **kw) -> None:
    a, b = load_gltf(src, **kw), load_gltf(out, **kw)
    assert a.names == b.names
    for x, y in ((a.neutral, b.neutral), (a.deltas, b.deltas), (a.faces, b.faces)):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


def _check_animation(out: Path, nodes: dict[str, list[int]], doc: dict) -> None:
    anim = doc["animations"][-1]
    assert anim["name"] == "talk" and all(s["interpolation"] == "LINEAR" for s in anim["samplers"])
    times = (np.arange(T) / FPS).astype(np.float32)
    t_in = {s["input"] for s in anim["samplers"]}
    assert len(t_in) == 1
    acc = doc["accessors"][t_in.pop()]
    assert (acc["componentType"], acc["type"], acc["count"]) == (5126, "SCALAR", T)
    assert acc["min"] == [float(times[0])] and acc["max"] == [float(times[-1])]
    got_times, weights = read_animation(out)
    assert got_times.dtype == np.float32
    np.testing.assert_array_equal(got_times, times)
    assert sorted(weights) == sorted(nodes["Head"] + nodes["Teeth"])  # the body shares no name: not animated
    for n in nodes["Head"]:
        np.testing.assert_array_equal(
            weights[n], _expected(["jawOpen", "eyeBlinkLeft", "mouthSmileLeft", "-"])
        )
    np.testing.assert_array_equal(weights[nodes["Teeth"][0]], _expected(["jawOpen"]))


@pytest.mark.parametrize("style", ["float", "sparse"])
def test_glb_round_trip(tmp_path, style):
    b = GltfBuilder()
    nodes = _avatar(b, style)
    src = b.write_glb(tmp_path / "avatar.glb")
    report = write_animated_glb(src, tmp_path / "out.glb", WEIGHTS, FPS)
    doc, _ = _parse_glb(tmp_path / "out.glb")
    _check_animation(report.path, nodes, doc)
    assert report.meshes == ("Head", "Teeth") and report.nodes == (*nodes["Head"], *nodes["Teeth"])
    assert report.unmatched == ("viseme_aa",) and report.frames == T and report.images_embedded == 0
    assert len(report.missing) == 49 and report.missing[-1] == "tongueOut" and "jawOpen" not in report.missing
    assert "tongueOut" in report.summary() and "\n" not in report.summary()
    _same_rig(src, report.path)
    _same_bytes(src, report.path)


@pytest.mark.parametrize("bin_name", [None, "avatar data.bin"])
def test_gltf_with_external_files_becomes_one_glb(tmp_path, bin_name):
    b = GltfBuilder()
    nodes = _avatar(b, "sparse")
    (tmp_path / "skin map.png").write_bytes(PNG)
    b.doc["images"] = [
        {"uri": "skin%20map.png"},
        {"uri": "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()},
        {"uri": "https://example.com/remote.png"},
    ]
    src = b.write_gltf(tmp_path / "avatar.gltf", bin_name)
    _shift_buffers(src)  # a 5-byte buffer first: the mesh buffer is rebased to offset 16
    out = tmp_path / "export" / "avatar_talk.glb"  # the folder is created
    report = write_animated_glb(src, out, WEIGHTS, FPS)
    assert report.images_embedded == 2
    doc, binary = _parse_glb(out)
    _check_animation(out, nodes, doc)
    for image, data, mime in zip(doc["images"], (PNG, JPEG), ("image/png", "image/jpeg"), strict=False):
        view = doc["bufferViews"][image["bufferView"]]
        assert "uri" not in image and image["mimeType"] == mime
        assert binary[view["byteOffset"] :][: view["byteLength"]] == data
    assert doc["images"][2] == {"uri": "https://example.com/remote.png"}
    _same_rig(src, out)
    _same_bytes(src, out)
    for extra in tmp_path.glob("*.*"):  # self-contained: it loads with nothing beside it
        extra.unlink()
    assert load_gltf(out).names == tuple(HEAD)


@needs_meshopt
def test_meshopt_compressed_avatar_is_copied_not_decoded(tmp_path, monkeypatch):
    b = GltfBuilder()
    nodes = _avatar(b, "meshopt")
    plain = b.write_glb(tmp_path / "compressed.glb")
    fallback = b.write_glb(tmp_path / "fallback.glb", fallback_data=True)  # as gltfpack -cf
    shifted = b.write_gltf(tmp_path / "compressed.gltf", "compressed.bin")
    _shift_buffers(shifted)  # the compressed streams move: their extension offsets are rebased
    for src in (plain, shifted, fallback):
        out = write_animated_glb(src, src.with_name(src.stem + "_talk.glb"), WEIGHTS, FPS).path
        doc, _ = _parse_glb(out)
        _check_animation(out, nodes, doc)
        _same_rig(src, out)
        _same_bytes(src, out)
        source = GltfFile(src).doc
        assert doc["extensionsRequired"] == source["extensionsRequired"]
        assert doc["extensionsUsed"] == source["extensionsUsed"]
    placeholder = {
        "byteLength": len(b.fallback),
        "extensions": {"EXT_meshopt_compression": {"fallback": True}},
    }
    assert GltfFile(tmp_path / "compressed_talk.glb").items("buffers")[1:] == [placeholder]
    assert len(doc["buffers"]) == 1  # the fallback with data is merged, so players without meshopt still work
    monkeypatch.setitem(sys.modules, "meshopt", None)
    _same_rig(fallback, tmp_path / "fallback_talk.glb")
    assert (
        len(read_animation(tmp_path / "compressed_talk.glb").times) == T
    )  # the animation is never compressed


def test_mesh_argument_and_appending_in_place(tmp_path):
    b = GltfBuilder()
    nodes = _avatar(b)
    src = b.write_glb(tmp_path / "avatar.glb")
    report = write_animated_glb(src, src, WEIGHTS, FPS, mesh="Teeth")
    assert report.meshes == ("Teeth",) and report.nodes == tuple(nodes["Teeth"]) and len(report.missing) == 51
    half = WEIGHTS[::2]
    write_animated_glb(src, src, half, FPS / 2, mesh=["Head"])  # a second animation beside the first
    doc, _ = _parse_glb(src)
    assert [a["name"] for a in doc["animations"]] == ["talk", "talk"]
    times, weights = read_animation(src)  # the last one
    np.testing.assert_array_equal(times, (np.arange(len(half)) / (FPS / 2)).astype(np.float32))
    assert sorted(weights) == nodes["Head"]
    np.testing.assert_array_equal(weights[nodes["Head"][0]][:, 0], half[:, ARKIT_NAMES.index("jawOpen")])
    assert list(read_animation(src, 0).weights) == nodes["Teeth"]


def _shift_buffers(path: Path) -> None:
    """Put a 5-byte data: URI buffer in front of a .gltf's buffers, renumbering every reference to them."""
    doc = json.loads(path.read_text())
    doc["buffers"].insert(0, {"byteLength": 5, "uri": "data:application/octet-stream;base64,AQIDBAU="})
    for bv in doc["bufferViews"]:
        for ref in [bv] + [bv["extensions"][e] for e in MESHOPT_EXTENSIONS if e in bv.get("extensions", {})]:
            ref["buffer"] += 1
    path.write_text(json.dumps(doc))


def test_errors_are_one_line(tmp_path):
    b = GltfBuilder()
    _avatar(b)
    src = b.write_glb(tmp_path / "avatar.glb")
    plain = GltfBuilder()
    plain.node(mesh=plain.mesh("Plain", [{"attributes": {"POSITION": plain.accessor(POS_A)}}]))
    flat = plain.write_glb(tmp_path / "plain.glb")
    out = tmp_path / "out.glb"
    cases = [
        (lambda: write_animated_glb(tmp_path / "nope.glb", out, WEIGHTS, FPS), RigNotFoundError, "not found"),
        (lambda: write_animated_glb(flat, out, WEIGHTS, FPS), RigFormatError, "no morph targets"),
        (lambda: write_animated_glb(src, out, WEIGHTS[:, :51], FPS), RigFormatError, "[7, 51]"),
        (lambda: write_animated_glb(src, out, WEIGHTS[0], FPS), RigFormatError, "[T, 52]"),
        (lambda: write_animated_glb(src, out, WEIGHTS[:0], FPS), RigFormatError, "at least one frame"),
        (lambda: write_animated_glb(src, out, WEIGHTS * np.nan, FPS), RigFormatError, "NaN"),
        (lambda: write_animated_glb(src, out, WEIGHTS, 0), RigFormatError, "fps"),
        (lambda: write_animated_glb(src, out, WEIGHTS, float("nan")), RigFormatError, "fps"),
        (lambda: write_animated_glb(src, tmp_path / "o.gltf", WEIGHTS, FPS), RigFormatError, ".glb"),
        (lambda: write_animated_glb(src, out, WEIGHTS, FPS, mesh="Hair"), RigFormatError, "no mesh 'Hair'"),
        (lambda: read_animation(src), RigFormatError, "has no animation"),
        (lambda: read_animation(tmp_path / "nope.glb"), RigNotFoundError, "not found"),
    ]
    for call, kind, words in cases:
        with pytest.raises(kind) as err:
            call()
        assert "\n" not in str(err.value) and words in str(err.value), str(err.value)
    assert not out.exists() and not (tmp_path / "o.gltf").exists()
    write_animated_glb(src, out, WEIGHTS, FPS)
    with pytest.raises(RigFormatError, match="no animation named 'walk'"):
        read_animation(out, "walk")
