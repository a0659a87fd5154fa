import numpy as np
import pytest
import torch
import trimesh

from render.export import NPZ_NAME, MeshExportError, export_meshes


def _load(path) -> trimesh.Trimesh:
    # trimesh's OBJ reader drops unreferenced vertices unless asked to keep the file's order
    return trimesh.load(path, process=False, maintain_order=True)


@pytest.fixture(scope="module")
def sequence() -> tuple[np.ndarray, np.ndarray]:
    mesh = trimesh.creation.icosphere(subdivisions=2)
    rng = np.random.default_rng(0)
    base = mesh.vertices * 0.1
    frames = np.stack([base + rng.normal(scale=0.003, size=base.shape) for _ in range(3)]).astype(np.float32)
    # a duplicate vertex and an unreferenced one must survive (no merging / removal on export)
    frames = np.concatenate([frames, frames[:, :1], frames[:, 5:6] + 1.0], axis=1)
    faces = np.asarray(mesh.faces).copy()
    faces[0, 0] = frames.shape[1] - 2
    return frames, faces


@pytest.mark.parametrize("fmt", ["obj", "ply"])
def test_per_frame_files_round_trip_through_trimesh(sequence, tmp_path, fmt):
    frames, faces = sequence
    paths = export_meshes(torch.from_numpy(frames), torch.from_numpy(faces), tmp_path / "out", fmt=fmt)
    assert [p.name for p in paths] == [f"frame_{t:05d}.{fmt}" for t in range(3)]
    for t, path in enumerate(paths):
        mesh = _load(path)
        assert mesh.vertices.shape == frames[t].shape
        np.testing.assert_allclose(mesh.vertices, frames[t], atol=1e-7)
        assert np.array_equal(mesh.faces, faces)
    # no temporary files left behind
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]


def test_npz_holds_vertices_faces_and_fps(sequence, tmp_path):
    frames, faces = sequence
    (path,) = export_meshes(frames.astype(np.float64), faces, tmp_path, fmt="npz", fps=30)
    assert path.name == NPZ_NAME
    with np.load(path) as data:
        assert data["vertices"].dtype == np.float32 and data["faces"].dtype == np.int32
        assert np.array_equal(data["vertices"], frames) and np.array_equal(data["faces"], faces)
        assert float(data["fps"]) == 30.0
    export_meshes(frames, faces, tmp_path / "nofps", fmt="npz")
    with np.load(tmp_path / "nofps" / NPZ_NAME) as data:
        assert "fps" not in data.files


def test_existing_frames_need_overwrite(sequence, tmp_path):
    frames, faces = sequence
    export_meshes(frames, faces, tmp_path, fmt="obj")
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(MeshExportError, match="overwrite"):
        export_meshes(frames[:1], faces, tmp_path, fmt="obj")
    with pytest.raises(MeshExportError, match="overwrite"):  # an export of another format counts too
        export_meshes(frames[:1], faces, tmp_path, fmt="npz")
    assert _load(tmp_path / "frame_00002.obj").vertices.shape == frames[2].shape
    paths = export_meshes(frames[:1] + 1.0, faces, tmp_path, fmt="ply", overwrite=True)
    # stale frames of the longer, older export are gone; unrelated files stay
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame_00000.ply", "notes.txt"]
    np.testing.assert_allclose(_load(paths[0]).vertices, frames[0] + 1.0, atol=1e-6)


def test_invalid_inputs_are_reported_clearly(sequence, tmp_path):
    frames, faces = sequence
    with pytest.raises(MeshExportError, match="fmt"):
        export_meshes(frames, faces, tmp_path, fmt="stl")
    with pytest.raises(MeshExportError, match=r"\[T,V,3\]"):
        export_meshes(frames[..., :2], faces, tmp_path)
    with pytest.raises(MeshExportError, match="finite"):
        export_meshes(np.full_like(frames, np.nan), faces, tmp_path)
    with pytest.raises(MeshExportError, match="faces"):
        export_meshes(frames, faces + frames.shape[1], tmp_path)
    with pytest.raises(MeshExportError, match="faces"):
        export_meshes(frames, faces.astype(np.float32), tmp_path)
    with pytest.raises(MeshExportError, match="fps"):
        export_meshes(frames, faces, tmp_path, fmt="npz", fps=0)
    (tmp_path / "file").write_text("")
    with pytest.raises(MeshExportError, match="not a directory"):
        export_meshes(frames, faces, tmp_path / "file")
    assert isinstance(MeshExportError("x"), ValueError)
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]  # nothing written by failed calls
