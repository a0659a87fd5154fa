"""experiments/: every config composes with experiments/trainer/default.yaml, and a run's outputs stay in its run dir."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from jsonargparse import Namespace

from tests.talk.clitools import ROOT, small_overrides, talk

DEFAULT_TRAINER = ROOT / "experiments" / "trainer" / "default.yaml"
CONFIGS = sorted(p for p in (ROOT / "experiments").rglob("*.yaml") if p.parent.name != "trainer")


class _Parsed(Exception):
    def __init__(self, config: Namespace) -> None:
        self.config = config


def _parse(monkeypatch: pytest.MonkeyPatch, *args: str) -> Namespace:
    """The config ``talk fit ARGS`` would run (fully parsed and validated, run dir filled), without instantiating."""
    from talk.cli.lightning_cli import TalkCLI, run_lightning_cli

    class ParseOnly(TalkCLI):
        def before_instantiate_classes(self) -> None:
            super().before_instantiate_classes()
            raise _Parsed(self.config)

    monkeypatch.setattr(sys, "argv", list(sys.argv))  # run_lightning_cli replaces it
    with pytest.raises(_Parsed) as parsed:
        run_lightning_cli(["fit", *args], cli_class=ParseOnly)
    return parsed.value.config.fit


def _run_dirs(cfg: Namespace) -> dict[str, object]:
    trainer = cfg.trainer
    return {
        "default_root_dir": trainer.default_root_dir,
        "logger save_dir": [logger.init_args.save_dir for logger in trainer.logger],
        "checkpoint dirpath": [cb.init_args.dirpath for cb in trainer.callbacks],
    }


def test_the_default_trainer_file_exists_and_holds_no_run_specific_path():
    import yaml

    from talk.cli.lightning_cli import DEFAULT_TRAINER_CONFIG

    assert DEFAULT_TRAINER_CONFIG == DEFAULT_TRAINER and DEFAULT_TRAINER.is_file()
    trainer = yaml.safe_load(DEFAULT_TRAINER.read_text())["trainer"]
    assert "default_root_dir" not in trainer
    assert "outputs" not in DEFAULT_TRAINER.read_text().replace("outputs/<dataset>/<name>", "")


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(ROOT)) for c in CONFIGS])
def test_every_config_resolves_with_the_default_trainer(config, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the default trainer file is found from any working directory
    cfg = _parse(monkeypatch, "-c", str(config))
    run = f"outputs/{config.parent.name}/{config.stem}"
    assert _run_dirs(cfg) == {
        "default_root_dir": run,
        "logger save_dir": [run, run],
        "checkpoint dirpath": [f"{run}/checkpoints"] * 2,
    }
    trainer = cfg.trainer
    # the portrait generator optimises manually (its optional GAN step) and clips its own gradients
    portrait = config.stem == "portrait"
    assert cfg.seed_everything == 0
    assert (trainer.devices, trainer.log_every_n_steps, trainer.gradient_clip_val, trainer.num_sanity_val_steps) == (
        1, 10, None if portrait else 1.0, 0,
    )  # fmt: skip
    assert [logger.class_path for logger in trainer.logger] == [
        "lightning.pytorch.loggers.CSVLogger",
        "talk.training.loggers.WandbLogger",
    ]
    assert trainer.logger[0].init_args.name == "logs"
    assert trainer.logger[1].init_args.name == f"{config.parent.name}-{config.stem}".replace("_", "-")
    best, last = trainer.callbacks
    assert (best.init_args.filename, last.init_args.filename) == ("best", "last")
    assert best.init_args.monitor == (
        "val/loss" if "tokenizer" in config.stem else "val/psnr" if portrait else "val/lve"
    )
    assert best.init_args.mode == ("max" if portrait else "min")
    assert last.init_args.monitor is None
    assert not best.init_args.enable_version_counter and not last.init_args.enable_version_counter


def test_command_line_and_second_config_override_the_default_trainer(monkeypatch, tmp_path):
    config = str(ROOT / "experiments" / "synthetic" / "lm.yaml")
    cfg = _parse(monkeypatch, "-c", config, f"--trainer.default_root_dir={tmp_path / 'run'}")
    run = str(tmp_path / "run")
    assert _run_dirs(cfg) == {
        "default_root_dir": run,
        "logger save_dir": [run, run],
        "checkpoint dirpath": [str(tmp_path / "run" / "checkpoints")] * 2,
    }
    assert cfg.trainer.logger[1].init_args.name == f"{tmp_path.name}-run".replace("_", "-")

    # a path given explicitly is kept; a second -c changes only what it names
    second = tmp_path / "second.yaml"
    second.write_text("trainer:\n  max_epochs: 3\n  gradient_clip_val: 0.5\n")
    cfg = _parse(monkeypatch, "-c", config, "-c", str(second), "--trainer.callbacks.dirpath=elsewhere")
    trainer = cfg.trainer
    assert (trainer.max_epochs, trainer.gradient_clip_val, trainer.check_val_every_n_epoch) == (3, 0.5, 2)
    assert _run_dirs(cfg)["checkpoint dirpath"] == ["outputs/synthetic/lm/checkpoints", "elsewhere"]
    assert trainer.callbacks[0].init_args.monitor == "val/lve"

    cfg = _parse(monkeypatch, "-c", config, "--trainer.logger=false")
    assert cfg.trainer.logger is False and cfg.trainer.callbacks[1].init_args.filename == "last"


def _files(root: Path) -> dict[str, int]:
    """Modification times of a run's files; of its wandb runs, only their names (wandb may flush late)."""
    files = {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    files = {k: v for k, v in files.items() if not k.startswith("wandb")}
    return files | {str(p.relative_to(root)): 0 for p in root.glob("wandb/offline-run-*")}


def test_runs_with_different_run_dirs_do_not_touch_each_others_files(synth_root, tmp_path):
    """Two fits from one working directory: every checkpoint, log, wandb file and metric stays in its run dir."""
    config = str(ROOT / "experiments" / "synthetic" / "faceformer.yaml")
    tiny = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
            "--model.init_args.generator.init_args.d_model=16", "--model.init_args.generator.init_args.ff_dim=32",
            "--model.init_args.audio_encoder.init_args.output_dim=16",
            "--dashboard.every_n_validations=0"]  # (the dashboard's videos: tests/talk/training)  # fmt: skip
    run_a, run_b = tmp_path / "run_a", tmp_path / "run_b"
    talk("fit", "-c", config, *small_overrides(synth_root, run_a), *tiny, cwd=tmp_path)
    talk("test", "-c", config, *small_overrides(synth_root, run_a), "--trainer.limit_test_batches=1",
         f"--ckpt_path={run_a / 'checkpoints' / 'best.ckpt'}", cwd=tmp_path)  # fmt: skip
    files_a = _files(run_a)
    talk("fit", "-c", config, *small_overrides(synth_root, run_b), *tiny, cwd=tmp_path)

    # nothing in the working directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_a", "run_b"]
    assert _files(run_a) == files_a  # run_b left run_a alone
    for run in (run_a, run_b):
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
        assert list((run / "logs").glob("version_*/metrics.csv"))
        assert list((run / "wandb").glob("offline-run-*"))
    assert (run_a / "metrics.json").is_file() and (run_a / "metrics_per_sequence.csv").is_file()
    assert not (run_b / "metrics.json").exists()
