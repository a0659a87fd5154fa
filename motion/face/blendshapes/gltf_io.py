"""The glTF 2.0 container, read exactly as the specification lays it out: GLB chunks, buffers, buffer views, accessors.

:class:`GltfFile` gives the JSON document and typed arrays for accessors: strided and packed views, sparse
substitution, normalized integers (KHR_mesh_quantization allows BYTE/SHORT positions and morph targets, normalized
or not), and buffer views compressed with EXT_meshopt_compression / KHR_meshopt_compression (decoded with PyPI's
``meshopt``, imported only when a file needs it; without it, an uncompressed fallback buffer is read when the file
has one). Mesh semantics live in :mod:`motion.face.blendshapes.gltf`.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np

from motion.face.blendshapes.errors import RigDependencyError, RigFormatError, RigNotFoundError

__all__ = ["GltfFile", "MESHOPT_EXTENSIONS"]

_GLB_MAGIC, _CHUNK_JSON, _CHUNK_BIN = 0x46546C67, 0x4E4F534A, 0x004E4942
_COMPONENT_TYPES = {
    5120: np.dtype("<i1"),
    5121: np.dtype("<u1"),
    5122: np.dtype("<i2"),
    5123: np.dtype("<u2"),
    5125: np.dtype("<u4"),
    5126: np.dtype("<f4"),
}
# The glTF 2.0 dequantization of normalized integers: signed types clamp -MIN to -1.
_NORMALIZE_BY = {5120: 127.0, 5121: 255.0, 5122: 32767.0, 5123: 65535.0, 5125: 4294967295.0}
_NUM_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
MESHOPT_EXTENSIONS = ("EXT_meshopt_compression", "KHR_meshopt_compression")
# Extensions whose presence does not change mesh geometry or morph targets: reading them as absent is exact here.
_GEOMETRY_NEUTRAL = (
    "KHR_materials_",
    "KHR_texture_",
    "EXT_texture_",
    "KHR_lights_",
    "EXT_lights_",
    "KHR_xmp",
)
_READ_HERE = ("KHR_mesh_quantization", "EXT_mesh_gpu_instancing", *MESHOPT_EXTENSIONS)
_MESHOPT_INSTALL = "pip install 'talk[gltf]' (or pip install meshopt)"


class GltfFile:
    """A parsed .gltf / .glb file: ``doc`` (the JSON) and typed access to its binary data.

    Args:
        path: a ``.glb`` (binary, recognised by its magic bytes) or ``.gltf`` (JSON, buffers as external files
            relative to it or ``data:`` URIs).

    Raises:
        RigNotFoundError: the file, or an external buffer it names, does not exist.
        RigFormatError: not glTF 2.0, or an extension the loader cannot honour is required.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise RigNotFoundError(
                f"glTF file not found: '{self.path}'; pass the path of a .glb or .gltf file."
            )
        raw = self.path.read_bytes()
        self._bin: bytes | None = None
        if raw[:4] == struct.pack("<I", _GLB_MAGIC):
            text = self._read_glb(raw)
        else:
            text = raw
        try:
            doc = json.loads(text.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise self.error(
                "is neither a GLB (no 'glTF' magic) nor glTF JSON; export the avatar as glTF 2.0 (.glb or .gltf)"
            ) from None
        version = str(doc.get("asset", {}).get("version", "")) if isinstance(doc, dict) else ""
        if not version.startswith("2"):
            raise self.error(
                f"is not glTF 2.0 (asset.version {version or 'missing'}); re-export it as glTF 2.0 (.glb or .gltf)"
            )
        self.doc: dict[str, Any] = doc
        self._buffers: dict[int, bytes] = {}
        self._views: dict[int, tuple[bytes, int | None]] = {}
        self._check_required()

    def error(self, message: str) -> RigFormatError:
        """A one-line format error that names the file."""
        return RigFormatError(f"'{self.path}' {message}.")

    def _read_glb(self, raw: bytes) -> bytes:
        if len(raw) < 20:
            raise self.error("is a truncated GLB (shorter than its header); re-export it")
        _, version, length = struct.unpack_from("<III", raw, 0)
        if version != 2:
            raise self.error(f"is a version {version} GLB, not glTF 2.0; re-export it as glTF 2.0")
        if length > len(raw):
            raise self.error(
                f"is a truncated GLB ({len(raw)} of {length} bytes); download or export it again"
            )
        chunks, offset = [], 12
        while offset + 8 <= length:
            size, kind = struct.unpack_from("<II", raw, offset)
            chunks.append((kind, raw[offset + 8 : offset + 8 + size]))
            offset += 8 + size
        if not chunks or chunks[0][0] != _CHUNK_JSON:
            raise self.error("is a GLB whose first chunk is not JSON; re-export it")
        if len(chunks) > 1 and chunks[1][0] == _CHUNK_BIN:
            self._bin = chunks[1][1]
        return chunks[0][1]

    def _check_required(self) -> None:
        for ext in self.doc.get("extensionsRequired", []):
            if ext in _READ_HERE or ext.startswith(_GEOMETRY_NEUTRAL):
                continue
            raise self.error(
                f"requires the glTF extension {ext}, which talk cannot read; re-export it without {ext} "
                "(e.g. Blender's glTF exporter with compression off, or gltfpack -cc for meshopt compression)"
            )

    def items(self, kind: str) -> list[dict[str, Any]]:
        """The top-level array ``kind`` (``meshes``, ``nodes``, ...), empty when absent."""
        return self.doc.get(kind, [])

    def _item(self, kind: str, index: int) -> dict[str, Any]:
        items = self.items(kind)
        if not isinstance(index, int) or not 0 <= index < len(items):
            raise self.error(f"refers to {kind}[{index}] but has {len(items)} {kind}; the file is corrupt")
        return items[index]

    def buffer(self, index: int) -> bytes:
        """The bytes of ``buffers[index]``: the GLB BIN chunk, a ``data:`` URI, or a file beside the glTF."""
        if index in self._buffers:
            return self._buffers[index]
        buf = self._item("buffers", index)
        uri = buf.get("uri")
        if uri is None:
            if index == 0 and self._bin is not None:
                data = self._bin
            elif buf.get("extensions", {}).keys() & set(MESHOPT_EXTENSIONS):
                raise RigDependencyError(
                    f"'{self.path}' stores its geometry only with meshopt compression, which needs the meshopt "
                    f"package: {_MESHOPT_INSTALL}."
                )
            else:
                raise self.error(
                    f"has no data for buffer {index} (no uri and no GLB binary chunk); re-export it"
                )
        elif uri.startswith("data:"):
            header, _, payload = uri.partition(",")
            if not header.endswith(";base64"):
                raise self.error(f"buffer {index} has a data: URI that is not base64; re-export it")
            data = base64.b64decode(payload)
        elif "://" in uri:
            raise self.error(f"buffer {index} points to '{uri}'; download it and save the file as a .glb")
        else:
            file = self.path.parent / unquote(uri)
            if not file.is_file():
                raise RigNotFoundError(
                    f"'{self.path}' needs its buffer file '{file}', which is missing; keep the .bin beside the "
                    ".gltf or export a single .glb"
                )
            data = file.read_bytes()
        if len(data) < buf.get("byteLength", 0):
            raise self.error(
                f"buffer {index} holds {len(data)} bytes, fewer than its byteLength; re-export it"
            )
        self._buffers[index] = data
        return data

    def view(self, index: int) -> tuple[bytes, int | None]:
        """The bytes of ``bufferViews[index]`` (decompressed if meshopt-compressed) and its byteStride."""
        if index in self._views:
            return self._views[index]
        bv = self._item("bufferViews", index)
        stride = bv.get("byteStride")
        ext = next((bv["extensions"][e] for e in MESHOPT_EXTENSIONS if e in bv.get("extensions", {})), None)
        if ext is not None and (decoder := self._meshopt(bv)) is not None:
            data = self._decode_meshopt(index, ext, decoder)
            stride = stride or (ext["byteStride"] if ext.get("mode", "ATTRIBUTES") == "ATTRIBUTES" else None)
        else:
            start = bv.get("byteOffset", 0)
            data = self.buffer(bv["buffer"])[start : start + bv["byteLength"]]
            if len(data) < bv["byteLength"]:
                raise self.error(
                    f"bufferView {index} reaches past the end of buffer {bv['buffer']}; re-export it"
                )
        self._views[index] = (data, stride)
        return data, stride

    def _meshopt(self, bv: dict[str, Any]) -> Any:
        """The meshopt module; None when it is missing but the view's own (fallback) buffer has plain data."""
        try:
            import meshopt
        except ImportError:
            buf = self._item("buffers", bv["buffer"])
            # A fallback buffer with a uri holds the uncompressed views (gltfpack -cf writes it so, still marked
            # "fallback": true); without one it has no data at all.
            if "uri" in buf or (bv["buffer"] == 0 and self._bin is not None):
                return None
            raise RigDependencyError(
                f"'{self.path}' compresses its geometry with meshopt (gltfpack -c), which needs the meshopt "
                f"package: {_MESHOPT_INSTALL}."
            ) from None
        return meshopt

    def _decode_meshopt(self, index: int, ext: dict[str, Any], meshopt: Any) -> bytes:
        start = ext.get("byteOffset", 0)
        src = self.buffer(ext["buffer"])[start : start + ext["byteLength"]]
        mode, filt = ext.get("mode", "ATTRIBUTES"), ext.get("filter", "NONE")
        try:
            out = meshopt.decode_gltf_buffer(src, ext["count"], ext["byteStride"], mode, filt)
        except (ValueError, RuntimeError) as exc:
            raise self.error(
                f"has a meshopt bufferView {index} that does not decode ({exc}); re-export it"
            ) from None
        return np.ascontiguousarray(out).tobytes()

    def accessor(self, index: int) -> np.ndarray:
        """``accessors[index]`` as ``[count, components]``: float64 when float or normalized, else its integer type.

        Applies the accessor's byteOffset, the view's byteStride, sparse substitution (over zeros when the accessor
        has no bufferView) and the glTF dequantization of normalized integers.
        """
        acc = self._item("accessors", index)
        ctype, kind, count = acc.get("componentType"), acc.get("type"), acc.get("count", 0)
        if ctype not in _COMPONENT_TYPES or kind not in _NUM_COMPONENTS:
            raise self.error(f"accessor {index} has an unsupported layout ({kind} of componentType {ctype})")
        dtype, ncomp = _COMPONENT_TYPES[ctype], _NUM_COMPONENTS[kind]
        if kind == "MAT4" and dtype.itemsize != 4:
            raise self.error(f"accessor {index} is a padded MAT4 of {dtype} (unsupported); re-export it")
        elem = dtype.itemsize * ncomp
        if "bufferView" in acc:
            data, stride = self.view(acc["bufferView"])
            stride, start = stride or elem, acc.get("byteOffset", 0)
            if count and start + stride * (count - 1) + elem > len(data):
                raise self.error(f"accessor {index} reads past the end of bufferView {acc['bufferView']}")
            arr = np.ndarray(
                (count, ncomp), dtype, buffer=data, offset=start, strides=(stride, dtype.itemsize)
            )
            arr = arr.copy()
        else:
            arr = np.zeros((count, ncomp), dtype)
        if "sparse" in acc:
            self._substitute(index, acc["sparse"], arr)
        if acc.get("normalized", False) and ctype != 5126:
            arr = np.maximum(arr.astype(np.float64) / _NORMALIZE_BY[ctype], -1.0)
        elif ctype == 5126:
            arr = arr.astype(np.float64)
        return arr

    def _substitute(self, index: int, sparse: dict[str, Any], arr: np.ndarray) -> None:
        n, ind, val = sparse["count"], sparse["indices"], sparse["values"]
        idx_type = _COMPONENT_TYPES.get(ind.get("componentType"))
        if idx_type is None or idx_type.kind != "u":
            raise self.error(f"accessor {index} has sparse indices that are not unsigned integers")
        try:
            idata, _ = self.view(ind["bufferView"])
            idx = np.frombuffer(idata, idx_type, count=n, offset=ind.get("byteOffset", 0)).astype(np.int64)
            vdata, _ = self.view(val["bufferView"])
            values = np.frombuffer(vdata, arr.dtype, count=n * arr.shape[1], offset=val.get("byteOffset", 0))
        except ValueError:
            raise self.error(f"accessor {index} has sparse data past the end of its bufferViews") from None
        if n and (idx.max() >= len(arr)):
            raise self.error(f"accessor {index} has sparse indices beyond its count {len(arr)}")
        arr[idx] = values.reshape(n, arr.shape[1])
