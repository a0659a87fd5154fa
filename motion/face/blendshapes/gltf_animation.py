"""ARKit-52 weights as a morph-weight animation of the user's own avatar, written as one self-contained ``.glb``.

Following the glTF 2.0 specification:

- **The avatar is copied, not rewritten.** Its JSON is kept entry for entry and every byte of its binary data is
  copied verbatim: meshopt-compressed and quantized views (gltfpack), sparse accessors, skins and textures are never
  decoded or re-encoded, so the output loads exactly as the source does. Data is only *added*, and no extension.
- **One buffer.** A GLB holds one buffer (buffer 0, its BIN chunk), so every buffer with data (a GLB's BIN chunk,
  external ``.bin`` files, ``data:`` URIs) is copied whole into it at a multiple of 16 bytes (the spec needs 4; 16
  keeps coarser alignments a writer chose inside its buffer), and every ``bufferView`` and
  ``EXT_/KHR_meshopt_compression`` ``buffer`` / ``byteOffset`` is rebased. Meshopt placeholder buffers (no data:
  ``gltfpack -c``) stay data-less after buffer 0; a fallback buffer with data (``gltfpack -cf``) is merged.
- **Images** named by a relative file ``uri`` or a ``data:`` URI move into buffer 0 as buffer views with their
  ``mimeType`` (the image's, else sniffed: PNG, JPEG, WebP, KTX2), so nothing must lie beside the GLB. Remote
  (``https://``) URIs are left as they are.
- **The animation** (appended to ``animations``): a float32 input accessor of the T key times ``t / fps`` with the
  ``min`` / ``max`` the spec requires of animation inputs; per animated mesh a float32 output accessor of T x K
  weights (keyframe-major, in *that mesh's* target order: each target name is mapped by
  :func:`~motion.face.blendshapes.arkit.arkit_name`, a target that is no ARKit name gets 0) and a ``LINEAR``
  sampler; one ``weights`` channel per node that shows the mesh.

The animated meshes are those :func:`~motion.face.blendshapes.gltf.load_gltf` reads for the same ``mesh=``, so
what moves is the rig the rest of ``talk`` sees. :func:`read_animation` reads morph-weight animations back.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote

import numpy as np

from motion.face.blendshapes.arkit import ARKIT_NAMES, arkit_name
from motion.face.blendshapes.errors import RigDependencyError, RigFormatError, RigNotFoundError

# the loader's own rules for which meshes are read and how their targets are named
from motion.face.blendshapes.gltf import mesh_labels, select_meshes, target_names
from motion.face.blendshapes.gltf_io import MESHOPT_EXTENSIONS, GltfFile
from talk.files import write_bytes_atomic

__all__ = ["AnimationExportReport", "MorphAnimation", "read_animation", "write_animated_glb"]

_GLB_MAGIC, _CHUNK_JSON, _CHUNK_BIN = 0x46546C67, 0x4E4F534A, 0x004E4942
_ALIGN = 16  # see the module docstring: 4 is required, 16 keeps any finer alignment of a source buffer
_FLOAT = 5126
_ARKIT_INDEX = {n: i for i, n in enumerate(ARKIT_NAMES)}
_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\xabKTX 20\xbb\r\n\x1a\n", "image/ktx2"),
)


@dataclass(frozen=True)
class AnimationExportReport:
    """What :func:`write_animated_glb` wrote.

    Attributes:
        path: the written ``.glb``.
        frames: T, the number of key frames.
        fps: key frames per second; key t is at ``t / fps`` seconds.
        meshes: labels of the animated meshes (their name, or ``"mesh N"``), as :func:`load_gltf` calls them.
        nodes: indices of the nodes that got a ``weights`` channel.
        unmatched: target names (file spelling) that are no ARKit name: their weight is 0 in every frame.
        missing: ARKit names that no animated mesh has (their weights are dropped), in ARKit order.
        images_embedded: images moved from a file or ``data:`` URI into the GLB's buffer.
    """

    path: Path
    frames: int
    fps: float
    meshes: tuple[str, ...]
    nodes: tuple[int, ...]
    unmatched: tuple[str, ...]
    missing: tuple[str, ...]
    images_embedded: int

    def summary(self) -> str:
        """One line for the console: what was animated and what was left out."""
        line = f"wrote {self.path}: {self.frames} frames at {self.fps:g} fps on {len(self.nodes)} node(s) of mesh(es) "
        line += ", ".join(self.meshes)
        if self.missing:
            line += f"; the avatar lacks {len(self.missing)} ARKit target(s): {', '.join(self.missing)}"
        if self.unmatched:
            line += f"; non-ARKit targets kept at 0: {', '.join(self.unmatched)}"
        return line


class MorphAnimation(NamedTuple):
    """A morph-weight animation read back by :func:`read_animation` (unpacks as ``times, weights``).

    Attributes:
        times: ``[T]`` float32 key times in seconds (shared by all channels).
        weights: node index -> ``[T, K]`` float32 weights in that node's mesh's target order.
    """

    times: np.ndarray
    weights: dict[int, np.ndarray]


def write_animated_glb(
    source: str | Path,
    output: str | Path,
    weights: np.ndarray,
    fps: float,
    mesh: str | Sequence[str] | None = None,
    name: str = "talk",
) -> AnimationExportReport:
    """Write ``source`` (``.glb`` / ``.gltf``) with ARKit weights as a morph-weight animation to one ``.glb``.

    Args:
        source: the avatar: a ``.glb``, or a ``.gltf`` with external ``.bin`` / image files beside it or ``data:``
            URIs. Meshopt-compressed and quantized files are copied without decoding (no ``meshopt`` needed).
        output: the ``.glb`` to write (atomically; its folder is created). May be ``source`` itself.
        weights: ``[T, 52]`` ARKit-52 weights in ``ARKIT_NAMES`` order, nominally in [0, 1]. Written as given
            (glTF allows any real weight); must be finite.
        fps: frames per second of ``weights``; frame t is keyed at ``t / fps`` seconds.
        mesh: the mesh name(s) to animate, as in :func:`load_gltf`; None animates the meshes it would merge.
        name: the animation's name in the file.

    Returns:
        an :class:`AnimationExportReport` (ARKit names the avatar lacks, its targets that are not ARKit names).

    Raises:
        RigNotFoundError: the avatar, or a file it names, is missing.
        RigFormatError: no morph targets, no node showing the chosen mesh, weights not ``[T, 52]`` or not finite,
            fps not positive, output not ``.glb``, or a source the glTF reader refuses.
    """
    output = Path(output).expanduser()
    if output.suffix.lower() != ".glb":
        raise RigFormatError(
            f"output '{output}' is not a .glb file; the animation is written as one self-contained binary glTF: "
            "pass a path ending in .glb."
        )
    w = _check_weights(weights)
    fps = _check_fps(fps)
    f = GltfFile(source)
    chosen = select_meshes(f, mesh)
    labels = mesh_labels(f)
    nodes = [j for j, n in enumerate(f.items("nodes")) if n.get("mesh") in chosen]
    if not nodes:
        listed = ", ".join(f"'{labels[i]}'" for i in chosen)
        raise f.error(
            f"shows mesh(es) {listed} on no node, so nothing can be animated; add the mesh to the scene"
        )

    doc = copy.deepcopy(f.doc)
    blob = bytearray()
    _merge_buffers(f, doc, blob)
    embedded = _embed_images(f, doc, blob)

    times = (np.arange(len(w), dtype=np.float64) / fps).astype(np.float32)
    t_in = _add_floats(doc, blob, times, min=[float(times[0])], max=[float(times[-1])])
    samplers, sampler_of, unmatched, present = [], {}, [], set()
    for i in chosen:
        names = _mesh_names(f, i, labels[i])
        columns = [_ARKIT_INDEX.get(arkit_name(n) or "", -1) for n in names]
        present.update(ARKIT_NAMES[c] for c in columns if c >= 0)
        unmatched += [n for n, c in zip(names, columns, strict=True) if c < 0 and n not in unmatched]
        keyed = np.zeros((len(w), len(names)), np.float32)
        hit = [k for k, c in enumerate(columns) if c >= 0]
        keyed[:, hit] = w[:, [columns[k] for k in hit]]
        out = _add_floats(doc, blob, keyed.reshape(-1))
        sampler_of[i] = len(samplers)
        samplers.append({"input": t_in, "output": out, "interpolation": "LINEAR"})
    channels = [
        {"sampler": sampler_of[f.items("nodes")[j]["mesh"]], "target": {"node": j, "path": "weights"}}
        for j in nodes
    ]
    doc.setdefault("animations", []).append({"name": name, "samplers": samplers, "channels": channels})

    write_bytes_atomic(output, _glb(doc, blob))
    return AnimationExportReport(
        path=output,
        frames=len(w),
        fps=fps,
        meshes=tuple(labels[i] for i in chosen),
        nodes=tuple(nodes),
        unmatched=tuple(unmatched),
        missing=tuple(n for n in ARKIT_NAMES if n not in present),
        images_embedded=embedded,
    )


def read_animation(path: str | Path, animation: int | str = -1) -> MorphAnimation:
    """The morph-weight channels of one animation of a ``.glb`` / ``.gltf``, with the file's accessor reader.

    Args:
        path: the file (e.g. written by :func:`write_animated_glb`).
        animation: its index in ``animations`` (default: the last one, where the export appends), or its name
            (the last animation of that name).

    Returns:
        ``MorphAnimation(times [T], {node: weights [T, K]})``; a CUBICSPLINE sampler gives its key values (the
        tangents are dropped).

    Raises:
        RigNotFoundError: no such file. RigFormatError: no such animation, no ``weights`` channels, or channels
        keyed at different times.
    """
    f = GltfFile(path)
    anims = f.items("animations")
    if isinstance(animation, str):
        found = [a for a in anims if a.get("name") == animation]
        if not found:
            names = ", ".join(repr(a.get("name", "")) for a in anims) or "none"
            raise f.error(f"has no animation named '{animation}' (animations: {names}); pass another name")
        anim = found[-1]
    elif -len(anims) <= animation < len(anims):
        anim = anims[animation]
    else:
        raise f.error(
            f"has no animation {animation} (it has {len(anims)}); export one with write_animated_glb"
        )
    times: np.ndarray | None = None
    weights: dict[int, np.ndarray] = {}
    for ch in anim.get("channels", []):
        target = ch.get("target", {})
        if target.get("path") != "weights" or "node" not in target:
            continue
        sampler = anim["samplers"][ch["sampler"]]
        t = f.accessor(sampler["input"]).reshape(-1).astype(np.float32)
        values = f.accessor(sampler["output"]).reshape(-1).astype(np.float32)
        per_key = 3 if sampler.get("interpolation") == "CUBICSPLINE" else 1
        if len(t) == 0 or len(values) % (len(t) * per_key):
            raise f.error(
                f"has a weights channel for node {target['node']} with {len(values)} outputs for {len(t)} key "
                "times; re-export it"
            )
        keyed = values.reshape(len(t), per_key, -1)[:, per_key // 2]
        if times is not None and not np.array_equal(times, t):
            raise f.error(
                "has weights channels keyed at different times; read_animation needs one set of key times"
            )
        times, weights[int(target["node"])] = t, keyed
    if times is None:
        raise f.error("has an animation with no morph-weight channels; export one with write_animated_glb")
    return MorphAnimation(times, weights)


def _check_weights(weights: Any) -> np.ndarray:
    if hasattr(weights, "detach"):  # a torch tensor, without importing torch here
        weights = weights.detach().cpu().numpy()
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim != 2 or w.shape[1] != len(ARKIT_NAMES) or len(w) == 0:
        raise RigFormatError(
            f"weights have shape {list(w.shape)}; pass [T, {len(ARKIT_NAMES)}] ARKit weights (frames x ARKIT_NAMES "
            "order, at least one frame)."
        )
    if not np.isfinite(w).all():
        raise RigFormatError(
            "weights contain NaN or infinite values; pass finite ARKit weights (nominally 0 to 1)."
        )
    return w


def _check_fps(fps: Any) -> float:
    try:
        value = float(fps)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise RigFormatError(f"fps must be a positive number of frames per second, got {fps!r}.")
    return value


def _mesh_names(f: GltfFile, index: int, label: str) -> list[str]:
    """The mesh's K target names in its own order (``target_k`` when it names none), as the loader reads them."""
    prims = f.items("meshes")[index].get("primitives", [])
    counts = sorted({len(p.get("targets", [])) for p in prims})
    if len(counts) > 1:
        raise f.error(
            f"mesh '{label}' has primitives with different numbers of morph targets ({counts}); glTF requires the "
            "same targets on every primitive of a mesh: re-export it, or pass mesh= another mesh"
        )
    names = target_names(f, index, label, prims, counts[0])
    return names if names is not None else [f"target_{k}" for k in range(counts[0])]


def _append(blob: bytearray, data: bytes) -> int:
    """Append ``data`` at the next multiple of ``_ALIGN`` (zero padding); returns its offset."""
    blob.extend(b"\0" * (-len(blob) % _ALIGN))
    start = len(blob)
    blob.extend(data)
    return start


def _buffer_data(f: GltfFile, index: int) -> bytes | None:
    """The bytes of a buffer, or None for a data-less placeholder (a meshopt fallback with no uri)."""
    buf = f.items("buffers")[index]
    if "uri" in buf:
        data = f.buffer(index)
    elif index > 0:  # only buffer 0 can be a GLB's BIN chunk
        return None
    else:
        try:
            data = f.buffer(0)
        except (RigDependencyError, RigFormatError):  # a .gltf, or a GLB without BIN: no data anywhere
            return None
    return data[: buf.get("byteLength", 0)]  # a BIN chunk may carry up to 3 bytes of padding beyond it


def _merge_buffers(f: GltfFile, doc: dict[str, Any], blob: bytearray) -> None:
    """Copy every buffer with data into ``blob`` (the new buffer 0), keep placeholders after it, and rebase."""
    moved: dict[int, tuple[int, int]] = {}  # old buffer -> (new buffer, offset of its start)
    placeholders: list[dict[str, Any]] = []
    for i, buf in enumerate(f.items("buffers")):
        data = _buffer_data(f, i)
        if data is None:
            placeholders.append({k: v for k, v in buf.items() if k != "uri"})
            moved[i] = (len(placeholders), 0)
        else:
            moved[i] = (0, _append(blob, data))

    def rebase(ref: dict[str, Any], what: str) -> None:
        if ref.get("buffer") not in moved:
            raise f.error(
                f"has a {what} in buffer {ref.get('buffer')}, which does not exist; the file is corrupt"
            )
        new, start = moved[ref["buffer"]]
        ref["buffer"], ref["byteOffset"] = new, ref.get("byteOffset", 0) + start

    for k, bv in enumerate(doc.get("bufferViews", [])):
        rebase(bv, f"bufferView {k}")
        for ext in MESHOPT_EXTENSIONS:
            if ext in bv.get("extensions", {}):
                rebase(bv["extensions"][ext], f"compressed bufferView {k}")
    doc["buffers"] = [{"byteLength": 0}, *placeholders]  # buffer 0's length is set when the GLB is written


def _embed_images(f: GltfFile, doc: dict[str, Any], blob: bytearray) -> int:
    """Move images given by a relative file ``uri`` or a ``data:`` URI into buffer views; returns how many."""
    moved = 0
    for k, image in enumerate(doc.get("images", [])):
        uri = image.get("uri")
        if uri is None or "://" in uri:  # already in a buffer view, or remote: left as it is
            continue
        if uri.startswith("data:"):
            header, _, payload = uri.partition(",")
            if not header.endswith(";base64"):
                raise f.error(f"image {k} has a data: URI that is not base64; re-export it")
            data, sniffed = base64.b64decode(payload), header[5:].partition(";")[0] or None
        else:
            file = f.path.parent / unquote(uri)
            if not file.is_file():
                raise RigNotFoundError(
                    f"'{f.path}' needs its image file '{file}', which is missing; keep the textures beside the "
                    ".gltf or export a single .glb"
                )
            data, sniffed = file.read_bytes(), None
        mime = image.get("mimeType") or _sniff_image(data) or sniffed
        if mime is None:
            raise f.error(
                f"image {k} ('{uri[:60]}') is not a PNG, JPEG, WebP or KTX2 file; convert the texture"
            )
        image.pop("uri")
        image["bufferView"], image["mimeType"] = _add_view(doc, blob, data), mime
        moved += 1
    return moved


def _sniff_image(data: bytes) -> str | None:
    for signature, mime in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return mime
    return "image/webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None


def _add_view(doc: dict[str, Any], blob: bytearray, data: bytes) -> int:
    """A buffer view over ``data``, appended to buffer 0; returns its index."""
    views = doc.setdefault("bufferViews", [])
    views.append({"buffer": 0, "byteOffset": _append(blob, data), "byteLength": len(data)})
    return len(views) - 1


def _add_floats(doc: dict[str, Any], blob: bytearray, values: np.ndarray, **bounds: list[float]) -> int:
    """A float32 SCALAR accessor over ``values`` in its own buffer view of buffer 0; returns its index."""
    view = _add_view(doc, blob, np.ascontiguousarray(values, dtype="<f4").tobytes())
    accessor = {"bufferView": view, "componentType": _FLOAT, "count": len(values), "type": "SCALAR"}
    doc.setdefault("accessors", []).append({**accessor, **bounds})
    return len(doc["accessors"]) - 1


def _glb(doc: dict[str, Any], blob: bytearray) -> bytes:
    """The GLB container: 12-byte header, JSON chunk padded with spaces, BIN chunk padded with zeros (all 4-aligned)."""
    doc["buffers"][0]["byteLength"] = len(blob)
    text = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    binary = bytes(blob) + b"\0" * (-len(blob) % 4)
    header = struct.pack("<III", _GLB_MAGIC, 2, 12 + 8 + len(text) + 8 + len(binary))
    json_chunk = struct.pack("<II", len(text), _CHUNK_JSON) + text
    return header + json_chunk + struct.pack("<II", len(binary), _CHUNK_BIN) + binary
