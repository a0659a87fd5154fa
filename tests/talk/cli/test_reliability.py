"""Every user mistake is one line naming the argument or file and the fix (no usage dump, no traceback), and
`talk predict` writes what it predicts. In-process `main()` calls: no subprocess pays `import lightning` again."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.talk.clitools import ROOT, small_overrides

FACEFORMER = ROOT / "experiments" / "synthetic" / "faceformer.yaml"
TOKENIZER = ROOT / "experiments" / "synthetic" / "tokenizer.yaml"


def _talk(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``talk ARGS`` in this process: (exit code, stdout, stderr)."""
    from talk.cli.main import main

    monkeypatch.setattr(sys, "argv", list(sys.argv))  # the LightningCLI commands replace it
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_predict_writes_the_vertices_of_every_test_sequence(
    tokenizer_ckpt, synth_root, tmp_path, monkeypatch, capsys
):
    code, out, _ = _talk(monkeypatch, capsys, "predict", "-c", str(TOKENIZER), *small_overrides(synth_root, tmp_path),
                         "--trainer.logger=false", f"--ckpt_path={tokenizer_ckpt}", "--predictions.meshes=ply")  # fmt: skip
    assert code == 0
    folder = tmp_path / "predictions"  # in the run directory
    names = ["SYN_09_F_sentence01", "SYN_10_M_sentence01"]  # the test split
    assert sorted(p.name for p in folder.glob("*.npz")) == [f"{n}.npz" for n in names]
    for name in names:
        saved = np.load(folder / f"{name}.npz")
        frames = np.load(synth_root / "vertices_npy" / f"{name}.npy")[::2]  # 60 fps on disk, 30 fps predicted
        vertices, fps = saved["vertices"], float(saved["fps"])
        assert (
            vertices.dtype == np.float32
            and vertices.shape == (len(frames), frames.shape[1] // 3, 3)
            and fps == 30
        )
        assert len(list((folder / name).glob("frame_*.ply"))) == len(frames)
    assert f"predictions: 2 sequences in {folder}" in out


YAML_ERROR = "trainer:\n  max_epochs: 3\nmodel:\n  init_args: a: b\n"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["--model.init_args.d_modle", "3"],
            "--model (talk.training.RegressionModule): Option 'd_modle' is not",
        ),
        (["--trainer.max_epochs", "abc"], "--trainer.max_epochs: expected int, got 'abc'"),
        (["--trainer.max_epohcs", "3"], "did you mean '--trainer.max_epochs'?"),
        (["-c", "{tmp}/none.yaml"], "config file '{tmp}/none.yaml' does not exist"),
        (["-c", "{tmp}/typo.yaml"], "does not accept option 'trainer.max_epohcs' ({tmp}/typo.yaml line 2)"),
        (["-c", "{tmp}/broken.yaml"], "{tmp}/broken.yaml line 4: mapping values are not allowed here"),
    ],
    ids=["unknown-flag", "wrong-type", "misspelt-flag", "missing-config", "misspelt-yaml-key", "yaml-syntax"],
)
def test_config_mistakes_are_one_line_and_a_hint(args, says, tmp_path, monkeypatch, capsys):
    (tmp_path / "typo.yaml").write_text("trainer:\n  max_epohcs: 3\n")
    (tmp_path / "broken.yaml").write_text(YAML_ERROR)
    args = [a.format(tmp=tmp_path) for a in args]
    code, _, err = _talk(monkeypatch, capsys, "fit", "-c", str(FACEFORMER), *args)
    assert code == 2
    first, *rest = err.splitlines()
    assert first.startswith("talk fit: error: ") and says.format(tmp=tmp_path) in first
    assert rest == ["(talk fit --help for the options)"]


@pytest.mark.parametrize("subcommand", ["validate", "predict"])
def test_a_checkpoint_of_another_model_is_refused_by_every_subcommand(
    subcommand, tokenizer_ckpt, synth_root, tmp_path, monkeypatch, capsys
):
    code, _, err = _talk(monkeypatch, capsys, subcommand, "-c", str(FACEFORMER), *small_overrides(synth_root, tmp_path),
                         f"--ckpt_path={tokenizer_ckpt}")  # fmt: skip
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "holds a TokenizerModule but the config's model is RegressionModule" in err


def test_animate_checks_every_path_before_loading_the_model(
    lm_ckpt, synth_root, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("talk.pipeline.load.from_checkpoint", lambda *a: pytest.fail("the model was loaded"))
    wav = synth_root / "wav" / "SYN_10_M_sentence01.wav"
    (tmp_path / "old.mp4").write_bytes(b"x")
    (tmp_path / "meshes").mkdir()
    (tmp_path / "meshes" / "meshes.npz").write_bytes(b"x")
    common = ["--checkpoint", str(lm_ckpt)]
    for args, says in [
        (["--audio", str(wav), "--output", str(tmp_path / "old.mp4")], "exists; pass --overwrite to replace it"),
        (["--audio", str(synth_root), "--output", str(tmp_path / "o.mp4")], f"--audio {synth_root} is a directory"),
        (["--audio", str(wav), "--output", str(tmp_path / "o.mp4"), "--export-meshes", str(tmp_path / "meshes")],
         "already holds meshes; pass --overwrite"),
    ]:  # fmt: skip
        code, _, err = _talk(monkeypatch, capsys, "animate", *common, *args)
        assert code == 1 and len(err.strip().splitlines()) == 1 and says in err, err


def test_animate_names_the_ground_truth_subject_and_warns_in_one_line(
    lm_ckpt, synth_root, tmp_path, monkeypatch, capsys
):
    import warnings

    truth = tmp_path / "SYN_09_F_take1.npy"
    truth.write_bytes((synth_root / "vertices_npy" / "SYN_09_F_sentence01.npy").read_bytes())
    (tmp_path / "take1.npy").write_bytes(truth.read_bytes())
    wav = tmp_path / "loud.wav"
    sf.write(wav, np.clip(2 * np.sin(np.arange(8000) / 8), -1, 1).astype(np.float32), 16000)
    out = tmp_path / "o.mp4"
    out.write_bytes(b"an earlier video")
    args = ["animate", "--audio", str(wav), "--checkpoint", str(lm_ckpt), "--size", "16", "--output", str(out),
            "--overwrite", "--ground-truth-fps", "60"]  # fmt: skip
    code, _, err = _talk(monkeypatch, capsys, *args, "--ground-truth", str(tmp_path / "take1.npy"))
    assert code == 1 and "--ground-truth" in err and "name its subject with --subject (one of SYN_01_F" in err
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # the suite ignores UserWarnings
        code, stdout, err = _talk(monkeypatch, capsys, *args, "--ground-truth", str(truth))
    assert code == 0 and "subject: SYN_09_F (from the --ground-truth file name)" in stdout
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"talk animate: warning: Audio file '{wav}' looks clipped (peak")
    assert out.stat().st_size > 1000  # replaced


def test_ground_truth_subject_is_a_whole_word_of_the_file_name():
    from talk.cli.animate import _subject_of
    from talk.errors import UserError

    biwi = ["F1", "F10", "M1"]
    assert _subject_of(Path("F10_e01.npy"), biwi) == "F10"
    assert _subject_of(Path("vertices/F1_e37.npy"), biwi) == "F1"
    assert _subject_of(Path("anything.npy"), ["only"]) == "only"
    for ambiguous in ("F1_vs_M1.npy", "e01.npy"):
        with pytest.raises(UserError, match="name its subject with --subject"):
            _subject_of(Path(ambiguous), biwi)


class _Crafted:
    """A pickle that would create ``marker`` when loaded without ``weights_only``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("command", ["test", "animate"])
def test_a_crafted_checkpoint_is_refused_without_running(command, synth_root, tmp_path, monkeypatch, capsys):
    import torch

    crafted = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": _Crafted(tmp_path / "pwned"), "hyper_parameters": {}}, crafted)
    if command == "test":
        args = [
            "test",
            "-c",
            str(FACEFORMER),
            *small_overrides(synth_root, tmp_path),
            f"--ckpt_path={crafted}",
        ]
    else:
        wav = synth_root / "wav" / "SYN_10_M_sentence01.wav"
        args = [
            "animate",
            "--audio",
            str(wav),
            "--checkpoint",
            str(crafted),
            "--output",
            str(tmp_path / "a.mp4"),
        ]
    code, _, err = _talk(monkeypatch, capsys, *args)
    assert code != 0 and "crafted.ckpt" in err and len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "pwned").exists()
