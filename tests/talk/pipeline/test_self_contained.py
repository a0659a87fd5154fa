"""Self-contained checkpoints: loading opens no file but the one named; older files say how to convert them."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch


class _Planted:
    """A crafted pickle: unpickling it would create ``marker``."""

    def __init__(self, marker) -> None:  # noqa: ANN001
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def _wav(synth_root) -> torch.Tensor:  # noqa: ANN001
    return torch.from_numpy(sf.read(synth_root / "wav" / "SYN_10_M_sentence01.wav", dtype="float32")[0][:16000])


def test_a_flame_checkpoint_animates_from_anywhere_after_its_data_is_gone(
    flame_lm_ckpt, synth_root, tmp_path, monkeypatch
):
    from talk.cli.animate import animate  # what `talk animate` runs
    from talk.pipeline import Pipeline
    from talk.pipeline.config import file_references

    ckpt = torch.load(flame_lm_ckpt, weights_only=True, mmap=True)
    assert file_references(ckpt["talk_pipeline"]) == []  # sizes and buffers, no FLAME path
    wav = tmp_path / "speech.wav"
    sf.write(wav, _wav(synth_root).numpy(), 16000)
    expected = Pipeline.from_checkpoint(flame_lm_ckpt).generate(_wav(synth_root)).vertices[0]
    hidden = synth_root.with_name(synth_root.name + "-hidden")  # the data directory, as if deleted
    synth_root.rename(hidden)
    try:
        elsewhere = tmp_path / "elsewhere"
        planted = elsewhere / "data" / "synthetic" / "face_model.pkl"  # where the configs' relative path points
        planted.parent.mkdir(parents=True)
        planted.write_bytes(pickle.dumps(_Planted(tmp_path / "pwned"), protocol=2))
        monkeypatch.chdir(elsewhere)
        animate(wav, flame_lm_ckpt, tmp_path / "a.mp4", size=16, export_meshes=tmp_path / "m", mesh_format="npz")
    finally:
        hidden.rename(synth_root)
    rendered = np.load(tmp_path / "m" / "meshes.npz")["vertices"]
    np.testing.assert_array_equal(rendered, expected.numpy())
    assert not (tmp_path / "pwned").exists()  # the planted pickle was never opened


def test_a_file_naming_its_flame_model_is_refused_then_converted(flame_lm_ckpt, synth_root, tmp_path):
    from talk.cli.export import export
    from talk.errors import CheckpointError
    from talk.pipeline import Pipeline
    from talk.pipeline.config import file_references

    ckpt = torch.load(flame_lm_ckpt, weights_only=True)
    face = ckpt["talk_pipeline"]["init_args"]["face_model"]["init_args"]
    face.update(model_path=str(synth_root / "face_model.pkl"), layout=None)  # as written before
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    with pytest.raises(CheckpointError, match="talk export --checkpoint") as err:
        Pipeline.from_checkpoint(old)
    assert "face_model.pkl" in str(err.value) and "\n" not in str(err.value)
    export(old, tmp_path / "model.pt")  # `talk export`: reads the FLAME file once
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    assert file_references({"class_path": payload["class_path"], "init_args": payload["init_args"]}) == []
    wav = _wav(synth_root)
    converted = Pipeline.from_checkpoint(tmp_path / "model.pt").generate(wav).vertices
    assert torch.equal(converted, Pipeline.from_checkpoint(old, allow_file_references=True).generate(wav).vertices)
