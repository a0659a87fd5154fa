"""A small glTF 2.0 writer for the tests: miniature files with the real structure of avatar exports.

It writes what the loaders must read: GLB chunks, external .bin and data: URIs, strided and packed views, sparse
accessors, normalized / quantized integers (KHR_mesh_quantization) and EXT_meshopt_compression views (encoded with
PyPI's ``meshopt``) over a fallback buffer.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

COMPONENT = {
    np.int8: 5120,
    np.uint8: 5121,
    np.int16: 5122,
    np.uint16: 5123,
    np.uint32: 5125,
    np.float32: 5126,
}
TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}


class GltfBuilder:
    """Accumulates a glTF document and one binary buffer (buffer 0)."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] = {
            "asset": {"version": "2.0", "generator": "talk tests"},
            "scene": 0,
            "scenes": [{"nodes": []}],
            "nodes": [],
            "meshes": [],
            "accessors": [],
            "bufferViews": [],
            "buffers": [{"byteLength": 0}],
        }
        self.bin = bytearray()
        self.fallback = bytearray()  # plain copies of meshopt views, for a fallback buffer with data

    def _append(self, data: bytes) -> int:
        self.bin.extend(b"\0" * (-len(self.bin) % 4))
        start = len(self.bin)
        self.bin.extend(data)
        return start

    def view(self, data: bytes, stride: int | None = None) -> int:
        bv: dict[str, Any] = {"buffer": 0, "byteOffset": self._append(data), "byteLength": len(data)}
        if stride:
            bv["byteStride"] = stride
        self.doc["bufferViews"].append(bv)
        return len(self.doc["bufferViews"]) - 1

    def accessor(self, values: np.ndarray, normalized: bool = False, padded: bool = False) -> int:
        """An accessor over ``values`` ``[count]`` or ``[count, n]`` stored in their own dtype; ``padded`` rows are
        padded to 4 bytes with a byteStride, as the spec requires of BYTE/SHORT VEC3 vertex attributes."""
        values = np.asarray(values)
        rows = values.reshape(len(values), -1)
        stride = None
        data = rows.tobytes()
        if padded:
            stride = -(-rows.shape[1] * rows.itemsize // 4) * 4
            buf = np.zeros((len(rows), stride), np.uint8)
            buf[:, : rows.shape[1] * rows.itemsize] = np.ascontiguousarray(rows).view(np.uint8)
            data = buf.tobytes()
        return self._add_accessor(self.view(data, stride), values, normalized)

    def _add_accessor(self, view: int | None, values: np.ndarray, normalized: bool, **extra: Any) -> int:
        rows = values.reshape(len(values), -1)
        acc: dict[str, Any] = {
            "componentType": COMPONENT[values.dtype.type],
            "count": len(values),
            "type": TYPES[rows.shape[1]],
            **extra,
        }
        if view is not None:
            acc["bufferView"] = view
        if normalized:
            acc["normalized"] = True
        if rows.dtype == np.float32 and values.ndim == 2 and rows.shape[1] == 3:
            acc["min"], acc["max"] = rows.min(0).tolist(), rows.max(0).tolist()
        self.doc["accessors"].append(acc)
        return len(self.doc["accessors"]) - 1

    def sparse_accessor(self, dense: np.ndarray, base: np.ndarray | None = None, index_type=np.uint16) -> int:
        """A sparse accessor equal to ``dense``: only the rows that differ from ``base`` (zeros when None, and then
        no bufferView, as Blender writes morph targets) are stored."""
        ref = np.zeros_like(dense) if base is None else base
        rows = np.flatnonzero(np.any(dense.reshape(len(dense), -1) != ref.reshape(len(ref), -1), axis=1))
        sparse = {
            "count": int(len(rows)),
            "indices": {
                "bufferView": self.view(rows.astype(index_type).tobytes()),
                "componentType": COMPONENT[index_type],
            },
            "values": {"bufferView": self.view(np.ascontiguousarray(dense[rows]).tobytes())},
        }
        view = None if base is None else self.view(np.ascontiguousarray(base).tobytes())
        return self._add_accessor(view, dense, False, sparse=sparse)

    def meshopt_accessor(
        self,
        values: np.ndarray,
        mode: str = "ATTRIBUTES",
        filt: str = "NONE",
        bits: int = 16,
        kind: str = "EXT",
    ) -> int:
        """An accessor whose view is meshopt-compressed in buffer 0, over the fallback buffer 1."""
        import meshopt

        ext_name = f"{kind}_meshopt_compression"
        values = np.ascontiguousarray(values)
        if mode == "ATTRIBUTES" and filt == "EXPONENTIAL":
            rows = meshopt.encode_filter_exp(values.reshape(len(values), -1), bits, "Separate")
            values = meshopt.decode_vertex_buffer(
                meshopt.encode_vertex_buffer(rows), len(rows), rows.shape[1], filt
            )
            values = values.view(np.float32).reshape(len(rows), -1)  # what the file now stores, exactly
        else:
            rows = values
        encoded = meshopt.encode_gltf_buffer(rows if mode == "ATTRIBUTES" else values.reshape(-1), mode)
        stride = rows.nbytes // len(rows) if mode == "ATTRIBUTES" else values.itemsize
        count = len(rows) if mode == "ATTRIBUTES" else values.size
        plain = np.ascontiguousarray(values).tobytes()
        self.fallback.extend(b"\0" * (-len(self.fallback) % 4))
        ext = {
            "buffer": 0,
            "byteOffset": self._append(encoded),
            "byteLength": len(encoded),
            "byteStride": stride,
            "count": count,
            "mode": mode,
        }
        if filt != "NONE":
            ext["filter"] = filt
        bv = {
            "buffer": 1,
            "byteOffset": len(self.fallback),
            "byteLength": len(plain),
            "extensions": {ext_name: ext},
        }
        if mode == "ATTRIBUTES":
            bv["byteStride"] = stride
        self.fallback.extend(plain)
        self.doc["bufferViews"].append(bv)
        self._use(ext_name, required=True)
        if len(self.doc["buffers"]) == 1:
            self.doc["buffers"].append({"byteLength": 0, "extensions": {ext_name: {"fallback": True}}})
        self.doc["buffers"][1]["byteLength"] = len(self.fallback)
        return self._add_accessor(len(self.doc["bufferViews"]) - 1, values, False)

    def _use(self, ext: str, required: bool) -> None:
        self.doc.setdefault("extensionsUsed", [])
        if ext not in self.doc["extensionsUsed"]:
            self.doc["extensionsUsed"].append(ext)
        if required:
            self.doc.setdefault("extensionsRequired", [])
            if ext not in self.doc["extensionsRequired"]:
                self.doc["extensionsRequired"].append(ext)

    def mesh(
        self, name: str | None, primitives: list[dict[str, Any]], target_names: list[str] | None = None
    ) -> int:
        mesh: dict[str, Any] = (
            {"primitives": primitives} if name is None else {"name": name, "primitives": primitives}
        )
        if target_names is not None:
            mesh["extras"] = {"targetNames": target_names}
        self.doc["meshes"].append(mesh)
        return len(self.doc["meshes"]) - 1

    def node(self, root: bool = True, **fields: Any) -> int:
        self.doc["nodes"].append(dict(fields))
        index = len(self.doc["nodes"]) - 1
        if root:
            self.doc["scenes"][0]["nodes"].append(index)
        return index

    def _finish(self, fallback_uri: str | None = None) -> dict[str, Any]:
        doc = json.loads(json.dumps(self.doc))
        self.bin.extend(b"\0" * (-len(self.bin) % 4))
        doc["buffers"][0]["byteLength"] = len(self.bin)
        if fallback_uri is not None and len(doc["buffers"]) > 1:
            doc["buffers"][1]["uri"] = fallback_uri
        return doc

    def write_glb(self, path: Path, fallback_data: bool = False) -> Path:
        """A .glb; ``fallback_data`` puts the uncompressed copies in the fallback buffer as a data: URI."""
        uri = "data:application/octet-stream;base64," + base64.b64encode(bytes(self.fallback)).decode()
        doc = self._finish(uri if fallback_data else None)
        if fallback_data:  # as gltfpack -cf: the buffer keeps "fallback": true, the extension is not required
            doc["extensionsRequired"] = []
        text = json.dumps(doc).encode()
        text += b" " * (-len(text) % 4)
        body = (
            struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(self.bin), 0x004E4942)
        )
        body += bytes(self.bin)
        path.write_bytes(struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body)
        return path

    def write_gltf(self, path: Path, bin_name: str | None = None) -> Path:
        """A .gltf with buffer 0 in an external file ``bin_name`` (percent-encoded in the URI) or a data: URI."""
        doc = self._finish()
        if bin_name is None:
            doc["buffers"][0]["uri"] = (
                "data:application/octet-stream;base64," + base64.b64encode(self.bin).decode()
            )
        else:
            (path.parent / bin_name).write_bytes(bytes(self.bin))
            doc["buffers"][0]["uri"] = bin_name.replace(" ", "%20")
        path.write_text(json.dumps(doc, indent=1))
        return path
