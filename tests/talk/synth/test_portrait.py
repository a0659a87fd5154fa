"""Synthetic portrait clips (talk.synth.mouth, portrait, portrait_style, portrait_dataset): teeth and tongue follow
the skull and the jaw, an open mouth shows its interior, clips are seeded, the set writer resumes, and the dataset
gives the generator's inputs (the warp of the reference to itself is the identity)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from motion.face.flame import FLAMEParams, batch_rodrigues
from render.camera import Camera
from render.rasterizer import rasterize
from render.textured import render_textured
from talk.synth.albedo import procedural_albedo
from talk.synth.mouth import LOWER, TONGUE, UPPER, build_mouth_interior
from talk.synth.portrait import PortraitSetError, render_portrait_clip, split_of, write_portrait_set
from talk.synth.portrait_dataset import PortraitClips
from talk.synth.portrait_style import PortraitAssets

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE, FRAMES = 64, 4


@pytest.fixture(scope="module")
def assets() -> PortraitAssets:
    return PortraitAssets.load()


def _pose(assets: PortraitAssets, jaw: list[float], head: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Head vertices ``[T,V,3]``: jaw openings ``jaw`` under one head rotation ``head`` (axis-angle)."""
    n = len(jaw)
    jaw_pose = torch.zeros(1, n, 3)
    jaw_pose[0, :, 0] = torch.tensor(jaw)
    params = FLAMEParams(
        shape=torch.as_tensor(shape, dtype=torch.float32)[None],
        jaw_pose=jaw_pose,
        global_pose=torch.as_tensor(head, dtype=torch.float32).expand(1, n, 3),
        translation=torch.tensor([0.0, 0.06, -0.45]).expand(1, n, 3),
    )
    with torch.no_grad():
        return assets.flame(params).vertices[0].numpy()


@pytest.fixture(scope="module")
def posed(assets):
    """An identity, its mouth interior, and the head closed / open (jaw 0 and 0.2 rad) under a turned head."""
    shape = np.linspace(-1.0, 1.0, 20)
    template = _pose(assets, [0.0], np.zeros(3), shape)[0] - np.array([0.0, 0.06, -0.45])
    mouth = build_mouth_interior(template, assets.face.model, assets.face.masks, seed=1)
    head = Rotation.from_euler("YXZ", [0.3, -0.1, 0.05]).as_rotvec()
    return mouth, _pose(assets, [0.0, 0.2], head, shape), head


def test_teeth_follow_the_skull_and_the_jaw(posed):
    mouth, verts, head = posed
    placed = mouth.place(verts)  # [2,M,3]
    moved = np.linalg.norm(placed[1] - placed[0], axis=-1)
    assert moved[mouth.part == UPPER].max() < 1e-5  # the upper teeth stay on the skull (to 10 um)
    assert moved[mouth.part == LOWER].min() > 0.005  # the lower teeth open with the jaw (several mm)
    assert moved[mouth.part == TONGUE].min() > 0.003
    # the recovered transforms are FLAME's joint rotations: skull = head pose, jaw = head pose @ jaw pose
    r_skull, _, r_jaw, _ = mouth.transforms(verts)
    r_head = batch_rodrigues(torch.tensor(head[None], dtype=torch.float64))[0].numpy()
    r_open = batch_rodrigues(torch.tensor([[0.2, 0.0, 0.0]], dtype=torch.float64))[0].numpy()
    np.testing.assert_allclose(r_skull[1], r_head, atol=1e-4)
    np.testing.assert_allclose(r_jaw[0], r_head, atol=1e-4)
    np.testing.assert_allclose(r_jaw[1], r_head @ r_open, atol=1e-4)
    # rigid: distances within the lower row are unchanged
    low = placed[:, mouth.part == LOWER][:, ::7]
    d0 = np.linalg.norm(low[0, :, None] - low[0, None], axis=-1)
    d1 = np.linalg.norm(low[1, :, None] - low[1, None], axis=-1)
    np.testing.assert_allclose(d0, d1, atol=1e-6)


def test_open_mouth_shows_its_interior_where_a_closed_one_shows_lips(assets, posed):
    mouth, verts, _ = posed
    mesh = mouth.attach(verts, assets.faces, procedural_albedo(0))  # red lips, a dark cavity
    camera = Camera(torch.eye(3)[None], torch.zeros(1, 3), 2.5 * SIZE * 2.4, (SIZE, SIZE))
    vertices = torch.from_numpy(mesh.vertices)
    frames = (
        render_textured(
            vertices,
            torch.from_numpy(mesh.faces),
            camera,
            mesh.colors,
            (0.5, 0.5, 0.5),
            light_direction=(0.0, 0.2, 1.0),
        ).astype(np.float64)
        / 255.0
    )
    face_ids = rasterize(
        camera.project(vertices), torch.from_numpy(mesh.faces), (SIZE, SIZE)
    ).face_ids.numpy()
    inside = np.isin(face_ids, mesh.mouth_faces)
    assert inside[0].sum() == 0 and inside[1].sum() > 20
    # the pixel between the lip centres of the open frame: dark or teeth-white there, red lips when closed
    lips = np.concatenate([assets.face.upper_lip, assets.face.lower_lip])
    centre = camera.project(vertices[1:, lips].mean(1, keepdim=True))[0, 0]
    i, j = int(centre[1]), int(centre[0])
    closed, opened = frames[0, i, j], frames[1, i, j]
    assert inside[1, i, j] and not inside[0, i, j]
    assert closed[0] > 1.5 * closed[1]  # lip red
    assert opened.max() < 0.25 or (opened.min() > 0.6 and np.ptp(opened) < 0.2)  # cavity dark or teeth white
    teeth = np.isin(
        face_ids[1],
        len(assets.faces) + np.flatnonzero(np.isin(mouth.faces, np.flatnonzero(mouth.part != TONGUE)).all(1)),
    )
    assert teeth.sum() > 0 and frames[1][teeth].min(1).mean() > 0.5  # some teeth in view, white-ish


def test_clips_are_seeded_and_differ_across_seeds(assets):
    a = render_portrait_clip(5, FRAMES, SIZE, supersample=1, assets=assets)
    b = render_portrait_clip(5, FRAMES, SIZE, supersample=1, assets=assets)
    c = render_portrait_clip(6, FRAMES, SIZE, supersample=1, assets=assets)
    assert a.frames.shape == (FRAMES, SIZE, SIZE, 3) and a.frames.dtype == np.uint8
    assert a.vertices.shape == (FRAMES, mouth_vertex_count(assets, a), 3) and a.vertices.dtype == np.float32
    for name in ("frames", "vertices", "mask", "mouth_mask", "expression", "jaw", "global_pose"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.style == b.style and a.style != c.style
    assert np.abs(a.frames.astype(float) - c.frames).mean() > 10.0
    np.testing.assert_array_equal(a.neutral, a.vertices[0])  # frame 0 is the reference: the face at rest
    assert not a.expression[0].any() and not a.jaw[0].any() and a.mask.any(axis=(1, 2)).all()


def mouth_vertex_count(assets: PortraitAssets, clip) -> int:
    return int(clip.faces.max()) + 1


def test_splits_are_exact_and_stable():
    splits = [split_of(i, 0.1, 0.1) for i in range(100)]
    assert splits.count("val") == 10 and splits.count("test") == 10
    assert [split_of(i, 0.1, 0.1) for i in range(50)] == splits[:50]


def test_set_writer_resumes_and_the_dataset_gives_the_generator_inputs(tmp_path, assets):
    kwargs = dict(
        clips=3,
        frames_per_clip=FRAMES,
        seed=0,
        progress=False,
        size=SIZE,
        supersample=1,
        val_fraction=1 / 3,
        test_fraction=1 / 3,
    )
    first = write_portrait_set(tmp_path, **kwargs)
    assert (first.rendered, first.clips, first.splits) == (3, 3, {"train": 1, "val": 1, "test": 1})
    records = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert [r["name"] for r in records] == ["clip_00000", "clip_00001", "clip_00002"]
    frames = tmp_path / records[1]["files"]["frames"]
    before, stamp = np.load(frames), frames.stat().st_mtime_ns
    assert write_portrait_set(tmp_path, **kwargs).rendered == 0 and frames.stat().st_mtime_ns == stamp
    (tmp_path / records[1]["files"]["truth"]).unlink()  # as if killed before the clip was finished
    assert write_portrait_set(tmp_path, **kwargs).rendered == 1
    np.testing.assert_array_equal(np.load(frames), before)
    with pytest.raises(PortraitSetError, match="other arguments"):
        write_portrait_set(tmp_path, **{**kwargs, "size": 32})

    train = next(r for r in records if r["split"] == "train")
    data = PortraitClips(tmp_path, "train", size=SIZE)
    assert len(data) == FRAMES
    sample = data[0]
    shapes = {k: tuple(v.shape) for k, v in sample.items()}
    assert shapes == {
        "reference": (3, SIZE, SIZE),
        "target": (3, SIZE, SIZE),
        "warped": (3, SIZE, SIZE),
        "flow": (2, SIZE, SIZE),
        "normals": (3, SIZE, SIZE),
        "depth": (1, SIZE, SIZE),
        "mask": (1, SIZE, SIZE),
        "mouth_mask": (1, SIZE, SIZE),
        "clip": (),
        "frame": (),
        "reference_frame": (),
    }
    assert all(v.dtype == torch.float32 for k, v in sample.items() if v.ndim)
    assert int(sample["clip"]) == train["index"] and int(sample["frame"]) == 0
    stored = np.load(tmp_path / train["files"]["frames"])
    np.testing.assert_allclose(sample["reference"].permute(1, 2, 0).numpy() * 255.0, stored[0], atol=1e-3)
    # frame 0 against itself: the identity flow, so the warp returns the reference
    assert sample["flow"].abs().max() < 1e-5
    torch.testing.assert_close(sample["warped"], sample["reference"], atol=1e-5, rtol=0)
    torch.testing.assert_close(sample["target"], sample["reference"])
    assert (
        sample["mask"].sum() > 50
        and (sample["normals"].norm(dim=0)[sample["mask"][0] > 0] - 1).abs().max() < 1e-3
    )
    assert sample["depth"][sample["mask"] == 0].abs().max() == 0
    later = data[FRAMES - 1]
    assert (later["target"] - later["reference"]).abs().mean() > 0  # the head moved
    with np.load(tmp_path / train["files"]["truth"]) as truth:  # the masks the clip was rendered with
        for key, bits in (("mask", "mask_bits"), ("mouth_mask", "mouth_bits")):
            stored_mask = np.unpackbits(truth[bits], axis=-1, count=SIZE)[FRAMES - 1]
            np.testing.assert_array_equal(later[key][0].numpy(), stored_mask)
    with np.load(tmp_path / "mesh.npz") as mesh:
        assert mesh["faces"].max() + 1 == np.load(tmp_path / train["files"]["vertices"]).shape[1]
    batch = next(iter(torch.utils.data.DataLoader(PortraitClips(tmp_path, "val", size=32), batch_size=2)))
    assert batch["warped"].shape == (2, 3, 32, 32) and batch["mouth_mask"].shape == (2, 1, 32, 32)
