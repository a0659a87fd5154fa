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
    import logging

    from talk.cli.main import main

    monkeypatch.setattr(sys, "argv", list(sys.argv))  # the LightningCLI commands replace it
    capsys.readouterr()
    # lightning's log handlers keep the stderr of the test that first imported it
    for name in ("lightning", "lightning.fabric", "lightning.pytorch"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                monkeypatch.setattr(handler, "stream", sys.stderr)
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
        (["-c", "{tmp}/speech.wav"], "config file {tmp}/speech.wav is not a text YAML file; pass a config such as"),
        (["-c", "{tmp}/empty.yaml"], "config file {tmp}/empty.yaml is empty; a config maps sections (trainer:, model:"),
        (["-c", "{tmp}/list.yaml"], "config file {tmp}/list.yaml is a YAML list, not a mapping; a config maps"),
        (["-c", "{tmp}"], "config file {tmp} is a directory; pass a YAML file with -c, such as {tmp}/broken.yaml"),
    ],
    ids=["unknown-flag", "wrong-type", "misspelt-flag", "missing-config", "misspelt-yaml-key", "yaml-syntax",
         "binary-config", "empty-config", "list-config", "config-directory"],
)  # fmt: skip
def test_config_mistakes_are_one_line_and_a_hint(args, says, tmp_path, monkeypatch, capsys):
    (tmp_path / "typo.yaml").write_text("trainer:\n  max_epohcs: 3\n")
    (tmp_path / "broken.yaml").write_text(YAML_ERROR)
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "speech.wav").write_bytes(b"RIFF\x24\xce\x9f\x00WAVEfmt \xff\xfe")  # not UTF-8
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


@pytest.mark.parametrize(
    ("args", "prog", "says"),
    [
        (["data"], "talk data", "a subcommand is required: synth, "),
        (["data", "synht"], "talk data", "unknown subcommand 'synht'; did you mean 'synth'?"),
        (["data", "render"], "talk data", "unknown subcommand 'render'; choose synth, "),
        (["data", "synth"], "talk data synth", "the following arguments are required: --out"),
        (["data", "synth", "--outt", "x"], "talk data synth", "unrecognized arguments: --outt; did you mean '--out'?"),
        (["data", "synth", "--out", "x", "--outt", "y"], "talk data synth", "unrecognized arguments: --outt y; did you mean '--out'?"),
        (["data", "synth", "--out", "x", "--speakers", "two"], "talk data synth", "argument --speakers: invalid int value: 'two'"),
        (["report"], "talk report", "the following arguments are required: RUN_DIR"),
        (["report", "run", "--outt", "x"], "talk report", "unrecognized arguments: --outt x; did you mean '--out'?"),
    ],
    ids=["data-no-subcommand", "data-misspelt-subcommand", "data-unknown-subcommand", "synth-missing-option",
         "synth-misspelt-required", "synth-misspelt-option", "synth-wrong-type", "report-no-run",
         "report-misspelt-option"],
)  # fmt: skip
def test_argparse_commands_answer_mistakes_in_the_same_two_lines(args, prog, says, monkeypatch, capsys):
    code, out, err = _talk(monkeypatch, capsys, *args)
    assert code == 2 and out == ""
    first, *rest = err.splitlines()
    assert first.startswith(f"{prog}: error: {says}") and rest == [f"({prog} --help for the options)"]
    assert says.endswith(", ") or first == f"{prog}: error: {says}"  # all but the lists of subcommands: exact


def test_a_fit_that_never_validated_still_writes_last_ckpt_and_says_why(tmp_path, capsys):
    """`talk fit -c lm.yaml --trainer.max_epochs=1` (validation every 2nd epoch) used to end without a checkpoint
    and without a word; the trained model is kept and one line says why there is no best.ckpt."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from talk.cli.lightning_cli import TalkCLI

    folder = tmp_path / "checkpoints"
    saved = []

    class Trainer:  # what after_fit reads of a Lightning Trainer whose validation never ran
        checkpoint_callbacks = [ModelCheckpoint(dirpath=folder, filename="best", monitor="val/lve"),
                                ModelCheckpoint(dirpath=folder, filename="last")]  # fmt: skip
        max_epochs, check_val_every_n_epoch, default_root_dir, fast_dev_run = 1, 2, str(tmp_path), False
        is_global_zero, loggers = True, []

        def save_checkpoint(self, path: Path, weights_only: bool | None = None) -> None:
            saved.append((Path(path), weights_only))

    cli = TalkCLI.__new__(TalkCLI)  # after_fit alone: no parsing, no training
    cli.trainer = Trainer()
    cli.after_fit()
    out, err = capsys.readouterr()
    assert saved == [(folder / "last.ckpt", False)] and out == f"last checkpoint: {folder / 'last.ckpt'}\n"
    assert err.startswith("talk fit: warning: validation never ran (trainer.max_epochs=1, ")
    assert len(err.splitlines()) == 1 and "check_val_every_n_epoch=2" in err
    cli.trainer.fast_dev_run = True  # a smoke test writes no checkpoint on purpose: nothing to add
    saved.clear()
    cli.after_fit()
    assert saved == [] and capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("config", "flag", "says"),
    [
        ("faceformer", "--model.init_args.generator.init_args.num_heads=3", "d_model=128 must be divisible by num_heads=3."),
        ("lm", "--model.init_args.tokenizer_checkpoint={tmp}/none.ckpt", "tokenizer_checkpoint {tmp}/none.ckpt not found; train the tokenizer first"),
    ],
    ids=["value-refused", "missing-tokenizer-checkpoint"],
)  # fmt: skip
def test_a_value_a_constructor_refuses_is_its_one_line(
    config, flag, says, synth_root, tmp_path, monkeypatch, capsys
):
    """jsonargparse wraps a constructor's error in a multi-line Union error and a traceback; talk prints the
    constructor's own sentence."""
    path = ROOT / "experiments" / "synthetic" / f"{config}.yaml"
    code, _, err = _talk(monkeypatch, capsys, "fit", "-c", str(path), *small_overrides(synth_root, tmp_path),
                         "--trainer.logger=false", flag.format(tmp=tmp_path))  # fmt: skip
    assert code == 1 and err.strip().splitlines()[-1].startswith(
        f"talk fit: error: {says.format(tmp=tmp_path)}"
    )
    assert "Union" not in err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["test", "--ckpt_path={tmp}/none.ckpt"], "checkpoint {tmp}/none.ckpt not found; train one with `talk fit"),
        (["test", "--ckpt_path={tmp}"], "checkpoint {tmp} not found (a directory or a path without a suffix: name the .ckpt file)"),
        (["fit", "--trainer.default_root_dir={tmp}/a_file"], "trainer.default_root_dir {tmp}/a_file is a file; name a folder"),
        (["fit", "--trainer.default_root_dir={tmp}/a_file/run"], "trainer.default_root_dir {tmp}/a_file/run is under {tmp}/a_file, a file"),
    ],
    ids=["missing-checkpoint", "checkpoint-directory", "run-dir-is-a-file", "run-dir-under-a-file"],
)  # fmt: skip
def test_paths_of_a_run_are_checked_before_it_starts(args, says, synth_root, tmp_path, monkeypatch, capsys):
    (tmp_path / "a_file").write_text("x")
    command, *flags = (a.format(tmp=tmp_path) for a in args)
    code, _, err = _talk(monkeypatch, capsys, command, "-c", str(FACEFORMER), *small_overrides(synth_root, tmp_path),
                         "--trainer.logger=false", *flags)  # fmt: skip
    assert code == 1 and err.strip().splitlines()[-1].startswith(
        f"talk {command}: error: {says.format(tmp=tmp_path)}"
    )


def test_export_and_report_check_their_outputs_before_reading_anything(
    lm_ckpt, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(
        "talk.pipeline.load.read_checkpoint", lambda *a: pytest.fail("the checkpoint was read")
    )
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "old.pt").write_bytes(b"an earlier export")
    for args, says in [
        (["export", "--output", str(tmp_path)], f"output {tmp_path} is a directory; name a file such as"),
        (["export", "--output", str(tmp_path / "old.pt")], "old.pt exists; pass --overwrite to replace it."),
        (["export", "--output", str(tmp_path / "a_file" / "m.pt")], f"{tmp_path / 'a_file'} is a file, not a directory"),
        (["report", "run", "--out", str(tmp_path / "a_file")], f"--out {tmp_path / 'a_file'} is a file; name a folder"),
    ]:  # fmt: skip
        extra = ["--checkpoint", str(lm_ckpt)] if args[0] == "export" else []
        code, _, err = _talk(monkeypatch, capsys, *args, *extra)
        assert code == 1 and len(err.strip().splitlines()) == 1 and says in err, err
    monkeypatch.undo()
    code, out, _ = _talk(monkeypatch, capsys, "export", "--checkpoint", str(lm_ckpt), "--output",
                         str(tmp_path / "old.pt"), "--overwrite")  # fmt: skip
    assert code == 0 and (tmp_path / "old.pt").stat().st_size > 1000 and "wrote" in out
