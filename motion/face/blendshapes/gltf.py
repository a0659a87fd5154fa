"""Blendshape rigs from glTF 2.0 / GLB morph targets, as avatar tools export them.

What is read, following the glTF 2.0 specification:

- **Targets**: each primitive's ``targets[k].POSITION`` accessor holds the deltas of target k (a target without
  POSITION moves nothing). Accessors may be sparse (Blender and gltfpack write targets so), normalized or quantized
  integers (KHR_mesh_quantization) and in meshopt-compressed buffer views (see :mod:`.gltf_io`).
- **Names**: ``mesh.extras.targetNames`` (the convention of Blender, three.js and most exporters); when the mesh has
  none, ``primitive.extras.targetNames`` (some exporters write them there; all primitives that have them must agree);
  else ``target_0``, ``target_1``, ...
- **Several primitives** of one mesh (one per material, as Blender writes them) are one vertex array: their vertices
  in primitive order, their triangle indices offset accordingly. glTF requires every primitive to have the same
  targets; a file that breaks this is refused by name.
- **Transform** (``transform=True``): positions are mapped by the mesh node's *world* matrix (its local matrix or
  TRS times those of all its ancestors, in the default scene; the first such node when the mesh is instanced
  several times, identity when no node uses it) and deltas by its linear part, so the rig is in scene units and
  orientation, as a viewer shows it. This also undoes the dequantization scale that gltfpack stores on the node. For
  a skinned mesh the spec ignores the node's transform: each vertex gets the rest pose of its skin instead (joint
  world matrix times inverse bind matrix, blended by JOINTS_n / WEIGHTS_n), which is what a viewer shows.
- **Which mesh**: ``mesh="Head"`` (or a list of names) takes exactly those meshes; a mesh without a name (gltfpack
  drops them) is called ``"mesh N"`` after its index. Otherwise the meshes with morph
  targets are grouped by shared target names (an avatar's head, teeth and eyelashes all carry ``jawOpen``), the group
  with the most ARKit names (then the most targets) is taken, and its meshes are merged into one rig whose targets
  are the union of their names in first-seen order; a mesh lacking one of them gets zero deltas for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from motion.face.blendshapes.arkit import arkit_name
from motion.face.blendshapes.gltf_io import GltfFile
from motion.face.blendshapes.rig import BlendshapeRig

__all__ = ["load_gltf", "mesh_labels", "select_meshes", "target_names"]


@dataclass
class _Part:
    """One mesh's merged primitives: positions ``[V,3]``, deltas ``[K,V,3]``, names (K or None), faces ``[F,3]``."""

    name: str
    positions: np.ndarray
    deltas: np.ndarray
    names: list[str] | None
    faces: np.ndarray


def load_gltf(
    path: str | Path, mesh: str | Sequence[str] | None = None, transform: bool = True
) -> BlendshapeRig:
    """Read a blendshape rig from the morph targets of a ``.glb`` / ``.gltf`` file (see the module docstring).

    Args:
        path: the ``.glb`` or ``.gltf`` file (external ``.bin`` files beside it, or ``data:`` URIs).
        mesh: name(s) of the mesh(es) to read; None picks and merges the meshes that share target names.
        transform: map the mesh into the scene by its node's world matrix (or its skin's rest pose).

    Returns:
        the rig, targets in the file's order (``rig.to_arkit()`` puts them in ARKit-52 order).

    Raises:
        RigNotFoundError, RigFormatError, RigDependencyError: one line naming the file and the fix.
    """
    f = GltfFile(path)
    chosen = select_meshes(f, mesh)
    labels = mesh_labels(f)
    parts = [_read_mesh(f, i, labels[i]) for i in chosen]
    if transform:
        worlds = _world_matrices(f)
        for i, part in zip(chosen, parts, strict=True):
            _apply_transform(f, i, part, worlds)
    return _merge(f, parts)


def mesh_labels(f: GltfFile) -> list[str]:
    """Every mesh's name as messages and ``mesh=`` use it: its ``name``, or ``mesh N`` (gltfpack drops names)."""
    return [m.get("name") or f"mesh {i}" for i, m in enumerate(f.items("meshes"))]


def select_meshes(f: GltfFile, mesh: str | Sequence[str] | None = None) -> list[int]:
    """The indices of the meshes :func:`load_gltf` reads for ``mesh`` (None: the group that shares target names
    with the most ARKit names), each once; one-line errors for a file without morph targets or an unknown name."""
    meshes = f.items("meshes")
    labels = mesh_labels(f)
    with_targets = [i for i, m in enumerate(meshes) if any(p.get("targets") for p in m.get("primitives", []))]
    if not with_targets:
        raise f.error(
            f"has no morph targets in any of its {len(meshes)} meshes; export the avatar with its shape keys / "
            "blendshapes as glTF morph targets (Blender: Shape Keys checked)"
        )
    if mesh is None:
        return _pick_group(f, labels, with_targets)
    chosen: list[int] = []
    for w in [mesh] if isinstance(mesh, str) else list(mesh):
        matches = [i for i in with_targets if labels[i] == w]
        if not matches:
            problem = f"mesh '{w}' has no morph targets" if w in labels else f"has no mesh '{w}'"
            raise f.error(f"{problem}; meshes with morph targets: {_listing(labels, with_targets)}")
        if matches[0] not in chosen:
            chosen.append(matches[0])
    return chosen


def _listing(labels: list[str], indices: list[int]) -> str:
    return ", ".join(f"'{labels[i]}'" for i in indices)


def _read_mesh(f: GltfFile, index: int, label: str) -> _Part:
    prims = [
        p for p in f.items("meshes")[index].get("primitives", []) if "POSITION" in p.get("attributes", {})
    ]
    if not prims:
        raise f.error(f"mesh '{label}' has morph targets but no primitive with POSITION; re-export it")
    counts = [len(p.get("targets", [])) for p in prims]
    if len(set(counts)) > 1:
        raise f.error(
            f"mesh '{label}' has primitives with different numbers of morph targets ({counts}); glTF requires the "
            "same targets on every primitive of a mesh: re-export it, or pass mesh= another mesh"
        )
    names = target_names(f, index, label, prims, counts[0] if counts else 0)
    positions, deltas, faces, offset = [], [], [], 0
    for j, prim in enumerate(prims):
        pos = f.accessor(prim["attributes"]["POSITION"])
        if pos.shape[1] != 3:
            raise f.error(f"mesh '{label}' primitive {j} has POSITION of {pos.shape[1]} components, not VEC3")
        d = np.zeros((counts[0], len(pos), 3))
        for k, target in enumerate(prim.get("targets", [])):
            if "POSITION" not in target:
                continue
            delta = f.accessor(target["POSITION"])
            if delta.shape != pos.shape:
                what = f"target {k}" + (f" ('{names[k]}')" if names else "")
                raise f.error(
                    f"mesh '{label}' primitive {j} {what} has {len(delta)} POSITION deltas for {len(pos)} vertices; "
                    "a morph target must move every vertex of its primitive: re-export it"
                )
            d[k] = delta
        positions.append(pos.astype(np.float64))
        deltas.append(d)
        faces.append(_triangles(f, prim, len(pos), label, j) + offset)
        offset += len(pos)
    return _Part(
        label, np.concatenate(positions), np.concatenate(deltas, axis=1), names, np.concatenate(faces)
    )


def target_names(f: GltfFile, index: int, label: str, prims: list[dict], count: int) -> list[str] | None:
    names = f.items("meshes")[index].get("extras", {}).get("targetNames")
    if names is None:
        per_prim = [tuple(p["extras"]["targetNames"]) for p in prims if "targetNames" in p.get("extras", {})]
        if len(set(per_prim)) > 1:
            raise f.error(
                f"mesh '{label}' has primitives whose extras.targetNames disagree; re-export it with one set of "
                "shape keys for the whole mesh"
            )
        names = list(per_prim[0]) if per_prim else None
    if names is not None and len(names) != count:
        raise f.error(
            f"mesh '{label}' names {len(names)} targets in extras.targetNames but has {count} targets"
        )
    return None if names is None else [str(n) for n in names]


def _triangles(f: GltfFile, prim: dict[str, Any], num_vertices: int, label: str, j: int) -> np.ndarray:
    """Triangle corners ``[F,3]`` of a primitive (strips and fans unrolled as the spec orders them)."""
    idx = (
        f.accessor(prim["indices"]).reshape(-1).astype(np.int64)
        if "indices" in prim
        else np.arange(num_vertices, dtype=np.int64)
    )
    if idx.size and (idx.min() < 0 or idx.max() >= num_vertices):
        raise f.error(f"mesh '{label}' primitive {j} has indices beyond its {num_vertices} vertices")
    mode = prim.get("mode", 4)
    if mode == 4:
        return idx[: len(idx) // 3 * 3].reshape(-1, 3)
    n = max(len(idx) - 2, 0)
    i = np.arange(n)
    if mode == 5:  # strip: triangle i is (p_i, p_{i+1+i%2}, p_{i+2-i%2}), keeping the winding
        return np.stack([idx[i], idx[i + 1 + i % 2], idx[i + 2 - i % 2]], axis=1)
    if mode == 6:  # fan: triangle i is (p_{i+1}, p_{i+2}, p_0)
        return np.stack([idx[i + 1], idx[i + 2], np.full(n, idx[0] if n else 0)], axis=1)
    return np.zeros((0, 3), np.int64)  # points and lines: vertices without faces


def _pick_group(f: GltfFile, labels: list[str], with_targets: list[int]) -> list[int]:
    """The meshes that share target names with each other and have the most ARKit names (module docstring).

    Only the declared names are looked at, so a broken mesh outside the chosen group is never read.
    """
    declared = {i: _declared_names(f.items("meshes")[i]) for i in with_targets}
    groups: list[list[int]] = []  # a union-find small enough to do by hand
    for i in with_targets:
        keys = set(declared[i][0]) if declared[i][1] else set()  # unnamed targets join nothing
        joined = [g for g in groups if any(keys & set(declared[j][0]) for j in g if declared[j][1])]
        merged = sorted([i, *(j for g in joined for j in g)])
        groups = [g for g in groups if all(g is not h for h in joined)] + [merged]

    def score(group: list[int]) -> tuple[int, int]:
        names = {n for j in group for n in declared[j][0]}
        return sum(arkit_name(n) is not None for n in names), len(names)

    ranked = sorted(groups, key=score, reverse=True)
    if len(ranked) > 1 and score(ranked[0]) == score(ranked[1]):
        rivals = "; ".join(_listing(labels, g) for g in ranked[:2])
        raise f.error(
            f"has several meshes with morph targets that share no names ({rivals}); pass mesh='NAME'"
        )
    return ranked[0]


def _declared_names(mesh: dict[str, Any]) -> tuple[list[str], bool]:
    """The target names a mesh declares (its extras, else a primitive's), and whether it declares any at all."""
    prims = mesh.get("primitives", [])
    names = mesh.get("extras", {}).get("targetNames")
    if names is None:
        names = next(
            (p["extras"]["targetNames"] for p in prims if "targetNames" in p.get("extras", {})), None
        )
    if names is None:
        return [f"target_{k}" for k in range(max(len(p.get("targets", [])) for p in prims))], False
    return [str(n) for n in names], True


def _own_names(part: _Part) -> list[str]:
    return part.names or [f"target_{k}" for k in range(len(part.deltas))]


def _local(node: dict[str, Any]) -> np.ndarray:
    if "matrix" in node:
        return np.asarray(node["matrix"], np.float64).reshape(4, 4).T  # glTF matrices are column-major
    x, y, z, w = node.get("rotation", (0.0, 0.0, 0.0, 1.0))
    rot = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    m = np.eye(4)
    m[:3, :3] = rot * np.asarray(node.get("scale", (1.0, 1.0, 1.0)), np.float64)  # R @ diag(S)
    m[:3, 3] = node.get("translation", (0.0, 0.0, 0.0))
    return m


def _world_matrices(f: GltfFile) -> dict[int, np.ndarray]:
    """World matrix of every node reachable from the default scene (all root nodes when there are no scenes), in
    depth-first scene order: dict order is the traversal order."""
    nodes = f.items("nodes")
    scenes = f.items("scenes")
    if scenes:
        roots = scenes[f.doc.get("scene", 0)].get("nodes", [])
    else:
        children = {c for n in nodes for c in n.get("children", [])}
        roots = [i for i in range(len(nodes)) if i not in children]
    worlds: dict[int, np.ndarray] = {}
    stack = [(r, np.eye(4)) for r in reversed(roots)]
    while stack:
        i, parent = stack.pop()
        if i in worlds:
            continue
        worlds[i] = parent @ _local(nodes[i])
        stack.extend((c, worlds[i]) for c in reversed(nodes[i].get("children", [])))
    return worlds


def _apply_transform(f: GltfFile, mesh_index: int, part: _Part, worlds: dict[int, np.ndarray]) -> None:
    nodes = f.items("nodes")
    users = [i for i in worlds if nodes[i].get("mesh") == mesh_index]
    if not users:
        return
    node = nodes[users[0]]
    if "skin" not in node:
        m = worlds[users[0]]
        part.positions = part.positions @ m[:3, :3].T + m[:3, 3]
        part.deltas = part.deltas @ m[:3, :3].T
        return
    skin = f.items("skins")[node["skin"]]
    joints = skin["joints"]
    ibm = (
        f.accessor(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
        if "inverseBindMatrices" in skin
        else np.tile(np.eye(4), (len(joints), 1, 1))
    )
    per_joint = np.stack([worlds.get(j, np.eye(4)) for j in joints]) @ ibm  # [J,4,4]
    if np.allclose(per_joint, per_joint[:1], atol=1e-6):
        per_vertex = np.broadcast_to(per_joint[0], (len(part.positions), 4, 4))
    else:
        per_vertex = _blend_skin(f, mesh_index, part, per_joint)
    part.positions = np.einsum("vij,vj->vi", per_vertex[:, :3, :3], part.positions) + per_vertex[:, :3, 3]
    part.deltas = np.einsum("vij,kvj->kvi", per_vertex[:, :3, :3], part.deltas)


def _blend_skin(f: GltfFile, mesh_index: int, part: _Part, per_joint: np.ndarray) -> np.ndarray:
    """Per-vertex skinning matrices ``[V,4,4]`` = sum over influences of weight x joint matrix."""
    blocks = []
    for prim in f.items("meshes")[mesh_index].get("primitives", []):
        attrs = prim.get("attributes", {})
        if "POSITION" not in attrs:
            continue
        n = f.items("accessors")[attrs["POSITION"]]["count"]
        m = np.zeros((n, 4, 4))
        s = 0
        while f"JOINTS_{s}" in attrs and f"WEIGHTS_{s}" in attrs:
            j = f.accessor(attrs[f"JOINTS_{s}"]).astype(np.int64)
            w = f.accessor(attrs[f"WEIGHTS_{s}"]).astype(np.float64)
            m += np.einsum("vc,vcij->vij", w, per_joint[j])
            s += 1
        if s == 0:
            m[:] = np.eye(4)
        blocks.append(m)
    return np.concatenate(blocks)


def _merge(f: GltfFile, parts: list[_Part]) -> BlendshapeRig:
    names: list[str] = []
    for p in parts:
        for n in _own_names(p):
            if n not in names:
                names.append(n)
    total = sum(len(p.positions) for p in parts)
    deltas = np.zeros((len(names), total, 3), np.float32)
    faces, start = [], 0
    for p in parts:
        own = _own_names(p)
        if len(set(own)) != len(own):
            repeated = sorted({n for n in own if own.count(n) > 1})
            raise f.error(
                f"mesh '{p.name}' repeats target names ({', '.join(repeated)}); rename its shape keys"
            )
        rows = [names.index(n) for n in own]
        deltas[rows, start : start + len(p.positions)] = p.deltas
        faces.append(p.faces + start)
        start += len(p.positions)
    neutral = np.concatenate([p.positions for p in parts]).astype(np.float32)
    return BlendshapeRig(neutral, deltas, names, np.concatenate(faces))
