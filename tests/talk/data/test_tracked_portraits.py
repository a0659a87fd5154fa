"""Portrait-generator data from `talk track` folders (talk.data.formats.tracked_portraits): samples like the synthetic
set's, meshes that are the rendered ones and land on the face, a frame cache decoded once, splits, a training step
of PortraitModule, and one-line errors.

The folder is a real `talk track` output: rendered talking clips with known motion (talk.synth.video) are tracked
by ``Tracker.track``, which writes every file of the layout; only the landmark detector and the fit are replaced by
the known truth (the detector's MediaPipe models may be absent, and known parameters make exact checks possible).
"""

from __future__ import annotations

import json
import os
import shutil

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F_

from render.generator import PortraitGenerator
from render.textured import textured_background
from talk.data.formats.tracked_portraits import (
    MissingVideoError,
    TrackedClips,
    TrackedFolderError,
    TrackedPortraitDataModule,
    VideoMismatchError,
    name_splits,
)
from talk.errors import UserError
from talk.pipeline.portrait import crop_square
from talk.synth.portrait_dataset import PortraitClips
from talk.synth.video import render_talking_video
from talk.track.fit_video import SequenceFit
from talk.track.track_video import Tracker
from talk.training.portrait import PortraitModule

pytestmark = pytest.mark.usefixtures("one_thread")
FPS, H, W, N, S = 25, 96, 128, 6, 32  # video fps, height, width, frames; sample side
VIDEOS = (("anna", "train"), ("ben", "val"), ("cleo", "test"))


def _motion(n: int, seed: int) -> dict[str, np.ndarray]:
    """Known motion: the jaw opening and a few expressions as slow sinusoids, a random identity."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FPS
    expression = np.zeros((n, 11), np.float32)
    for k in (0, 2, 3, 8):
        expression[:, k] = 0.4 * (1 + np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 6))) / 2
    jaw = np.zeros((n, 3), np.float32)
    jaw[:, 0] = 0.15 * (1 - np.cos(2 * np.pi * 4.0 * t)) / 2
    return {"expression": expression, "jaw": jaw, "shape": (0.5 * rng.standard_normal(20)).astype(np.float32)}


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """``(folder, truths)``: three clips rendered at 128x96 and tracked into one folder (train, val, test)."""
    base = tmp_path_factory.mktemp("tracked_portraits")
    out = base / "tracked"
    tracker = Tracker(out, preview=False)  # writes out/face_model.pkl + FLAME_masks.pkl (the procedural head)
    speech = (0.2 * np.sin(2 * np.pi * 180 * np.arange(int(16000 * N / FPS)) / 16000)).astype(np.float32)
    sf.write(base / "speech.wav", speech, 16000)
    truths = {}
    for k, (name, split) in enumerate(VIDEOS):
        truth = render_talking_video(base / "videos" / f"{name}.mp4", base / "speech.wav", _motion(N, k), FPS,
                                     out / "face_model.pkl", size=(H, W), seed=k, chunk=N)  # fmt: skip
        fit = SequenceFit(
            shape=truth.shape, expression=truth.expression, jaw=truth.jaw, rotation=truth.global_pose,
            translation=truth.translation, focal=truth.focal, image_size=(H, W), landmarks=truth.landmarks,
            landmark_indices=truth.landmark_indices, valid=np.ones(N, bool), residual_px=np.zeros(N, np.float32),
            eye_distance_px=np.ones(N, np.float32),
        )  # fmt: skip
        with pytest.MonkeyPatch.context() as mp:  # the detector finds, and the fit returns, the known truth
            mp.setattr(
                "talk.track.track_video.track_landmarks",
                lambda video, fit=fit, **_: (fit.landmarks, fit.valid),
            )
            mp.setattr("talk.track.track_video.fit_sequence", lambda *args, fit=fit, **kwargs: fit)
            tracker.track(truth.video_path, split=split)
        truths[name] = truth
    return out, truths


def test_samples_are_portrait_clips_samples_and_the_reference_warp_is_the_identity(tracked, portrait_root):
    out, _ = tracked
    data = TrackedClips(out, "train", size=S)
    assert len(data) == N and [v.name for v in data.videos] == ["anna"]
    sample, synthetic = data[0], PortraitClips(portrait_root, "train", size=S)[0]
    assert {k: (tuple(v.shape), v.dtype) for k, v in sample.items()} == {
        k: (tuple(v.shape), v.dtype) for k, v in synthetic.items()
    }
    assert (int(sample["clip"]), int(sample["frame"]), int(sample["reference_frame"])) == (0, 0, 0)
    cached = np.load(data.cache_files[0])
    assert cached.shape == (N, S, S, 3) and cached.dtype == np.uint8
    np.testing.assert_array_equal(sample["reference"].permute(1, 2, 0).numpy() * 255.0, cached[0])
    # frame 0 against itself: the identity flow, so the warp returns the reference
    assert sample["flow"].abs().max() < 1e-5
    torch.testing.assert_close(sample["warped"], sample["reference"], atol=1e-5, rtol=0)
    torch.testing.assert_close(sample["target"], sample["reference"])
    assert sample["mask"].mean() > 0.2 and sample["depth"][sample["mask"] == 0].abs().max() == 0
    on = sample["mask"][0] > 0
    assert (sample["normals"].norm(dim=0)[on] - 1).abs().max() < 1e-3
    later = data[N // 2]  # the jaw is open there: the mouth interior shows, the warp moves
    assert later["mouth_mask"].sum() > 0 and later["flow"].abs().max() > 1e-3
    assert (later["target"] - later["reference"]).abs().mean() > 0
    assert int(TrackedClips(out, "test", size=S)[1]["clip"]) == 2  # the video's line in the manifest
    torch.manual_seed(0)
    drawn = TrackedClips(out, "train", size=S, reference="random")
    refs = [drawn[t] for t in range(N)]
    assert len({int(x["reference_frame"]) for x in refs}) > 1
    for x in refs:
        r = int(x["reference_frame"])
        np.testing.assert_array_equal(x["reference"].permute(1, 2, 0).numpy() * 255.0, cached[r])


def test_meshes_are_the_rendered_ones_and_land_on_the_face(tracked):
    out, truths = tracked
    full = TrackedClips(out, "train", size=H, crop="full")  # the frames as decoded, the tracker's camera
    truth = truths["anna"]
    head = full.head_vertices(0, list(range(N)))
    torch.testing.assert_close(head, torch.from_numpy(truth.vertices), atol=2e-6, rtol=0)
    meshes = full.vertices(0, [0, N - 1])
    assert meshes.shape == (2, int(full.faces.max()) + 1, 3)
    camera = full.camera(0)
    assert camera.image_size == (H, W) and float(camera.focal) == pytest.approx(truth.focal)
    frames = np.load(full.cache_files[0])
    # the pixels that differ from the clip's still background (beyond the video coding's noise) are the head's
    head_pixels = np.abs(frames.astype(int) - textured_background((H, W), 0).astype(int)).max(-1) > 16
    for t in (0, N // 2):
        mask = full[t]["mask"][0].numpy() > 0
        both = (mask & head_pixels[t]).sum()
        assert both / mask.sum() > 0.97 and both / head_pixels[t].sum() > 0.92, (t, both, mask.sum())
    # the head crop: a square around the head, its camera following the crop
    data = TrackedClips(out, "train", size=S)
    x0, y0, side = data.boxes[0]
    assert S <= side <= H and data.camera(0).image_size == (S, S)
    cropped = crop_square(full[N // 2]["mask"][0].numpy()[..., None], x0, y0, side)[..., 0]
    expected = F_.interpolate(torch.from_numpy(cropped)[None, None], size=(S, S), mode="area")[0, 0] > 0.5
    got = data[N // 2]["mask"][0] > 0
    assert (expected & got).sum() / (expected | got).sum() > 0.85


def test_the_frame_cache_is_decoded_once_and_rebuilt_when_stale(tracked, monkeypatch):
    out, _ = tracked
    first = TrackedClips(out, "val", size=S)
    path = first.cache_files[0]
    assert path.parent == out / "portrait_cache" and path.name == "ben.head32.frames.npy"
    stamp = path.stat().st_mtime_ns

    def no_decoding(*_):
        raise AssertionError("the frames were decoded again")

    monkeypatch.setattr("talk.data.formats.tracked_folder.open_video", no_decoding)
    again = TrackedClips(out, "val", size=S)
    assert path.stat().st_mtime_ns == stamp
    torch.testing.assert_close(again[2]["target"], first[2]["target"])
    monkeypatch.undo()
    video = first.videos[0].video
    os.utime(video, ns=(stamp + 10**9, stamp + 10**9))  # the video changed since: decoded again
    TrackedClips(out, "val", size=S)
    assert path.stat().st_mtime_ns > stamp
    assert not list((out / "portrait_cache").glob(".*"))  # no temporary file left behind


def test_splits_and_a_portrait_module_training_step(tracked, tmp_path):
    out, _ = tracked
    dm = TrackedPortraitDataModule(out, size=S, batch_size=2)
    dm.setup("fit")
    dm.setup("test")
    assert {k: [v.name for v in d.videos] for k, d in dm.datasets.items()} == {
        "train": ["anna"], "val": ["ben"], "test": ["cleo"],
    }  # fmt: skip
    assert dm.clip_names == {0: "anna", 1: "ben", 2: "cleo"}
    by_name = TrackedPortraitDataModule(out, size=S, batch_size=2, splits="names")
    by_name.setup("fit")
    by_name.setup("test")
    assert sorted(len(d.videos) for d in by_name.datasets.values()) == [1, 1, 1]
    for n in range(1, 40):
        names = [f"speaker{i:02d}_take{i % 3}" for i in range(n)]
        splits = name_splits(names)
        assert splits == name_splits(names[::-1])  # by name, not by order
        counts = {s: list(splits.values()).count(s) for s in ("train", "val", "test")}
        assert counts["train"] >= 1 and (counts["test"] >= 1 and counts["val"] >= 1 if n >= 3 else True), n
        assert counts["test"] == max(1, round(0.1 * n)) if n >= 3 else counts["test"] == 0
    L.seed_everything(0, verbose=False)
    model = PortraitModule(generator=PortraitGenerator(channels=(8, 16), fold=2))
    before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    trainer = L.Trainer(
        fast_dev_run=True, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, datamodule=TrackedPortraitDataModule(out, size=S, batch_size=2))
    assert trainer.state.finished and torch.isfinite(trainer.callback_metrics["train/loss"])
    assert any(not torch.equal(before[k], v) for k, v in model.generator.state_dict().items())


def _one_line(exc: pytest.ExceptionInfo, *needles: str) -> None:
    message = str(exc.value)
    assert isinstance(exc.value, UserError) and "\n" not in message, message
    for needle in needles:
        assert needle in message, message


def test_errors_are_one_line(tracked, tmp_path):
    out, truths = tracked
    with pytest.raises(TrackedFolderError) as exc:
        TrackedClips(tmp_path, "train")
    _one_line(exc, str(tmp_path), "talk track")
    with pytest.raises(TrackedFolderError) as exc:
        TrackedPortraitDataModule(tmp_path / "nothing")
    _one_line(exc, "not a `talk track` output")

    moved = tmp_path / "moved"
    shutil.copytree(out, moved, ignore=shutil.ignore_patterns("portrait_cache"))
    record = moved / "tracks" / "anna.json"
    recorded = json.loads(record.read_text())
    record.write_text(json.dumps(recorded | {"video": str(tmp_path / "gone" / "anna.mp4")}))
    with pytest.raises(MissingVideoError) as exc:
        TrackedClips(moved, "train", size=S)
    _one_line(exc, "anna", str(tmp_path / "gone" / "anna.mp4"), "video_dir")
    found = TrackedClips(moved, "train", size=S, video_dir=truths["anna"].video_path.parent)
    assert found.videos[0].video == truths["anna"].video_path

    short = tmp_path / "short"
    shutil.copytree(out, short, ignore=shutil.ignore_patterns("portrait_cache"))
    params = dict(np.load(short / "flame" / "anna.npz"))
    for key in ("expression", "jaw", "head_rotation", "head_translation"):
        params[key] = params[key][:-1]
    np.savez(short / "flame" / "anna.npz", **params)
    with pytest.raises(VideoMismatchError) as exc:
        TrackedClips(short, "train", size=S)
    _one_line(exc, f"has {N} frames but flame/anna.npz has {N - 1}", "--overwrite")
    assert not (short / "portrait_cache" / "anna.head32.frames.npy").exists()
    assert not list((short / "portrait_cache").glob(".*"))
