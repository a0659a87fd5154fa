"""Session fixtures shared by the CLI and streaming tests: a small synthetic dataset and tiny trained models."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.talk.clitools import ROOT, flame_overrides, small_overrides, talk


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small synthetic dataset with the configs' subject names (10 speakers x 2 sentences)."""
    from talk.data.synthetic import synthesize_dataset

    root = tmp_path_factory.mktemp("synthetic")
    synthesize_dataset(root, speakers=10, sentences=2, seed=0, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def tokenizer_ckpt(synth_root, tmp_path_factory) -> Path:
    """A motion tokenizer trained for one step (what experiments/*/lm.yaml builds on)."""
    run = tmp_path_factory.mktemp("tokenizer")
    config = ROOT / "experiments" / "synthetic" / "tokenizer.yaml"
    talk("fit", "-c", str(config), *small_overrides(synth_root, run), "--trainer.max_epochs=1",
         "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1", "--trainer.logger=false", cwd=run)  # fmt: skip
    return run / "outputs" / "synthetic" / "tokenizer" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def lm_ckpt(synth_root, tokenizer_ckpt, tmp_path_factory) -> Path:
    """The flagship audio -> token model of experiments/synthetic/lm.yaml, trained for one step."""
    run = tmp_path_factory.mktemp("lm")
    config = ROOT / "experiments" / "synthetic" / "lm.yaml"
    talk("fit", "-c", str(config), *small_overrides(synth_root, run), "--trainer.max_epochs=1",
         "--trainer.check_val_every_n_epoch=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
         "--trainer.logger=false", f"--model.init_args.tokenizer_checkpoint={tokenizer_ckpt}", cwd=run)  # fmt: skip
    return run / "outputs" / "synthetic" / "lm" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def flame_tokenizer_ckpt(synth_root, tmp_path_factory) -> Path:
    """A tokenizer of FLAME parameters (experiments/synthetic/flame_tokenizer.yaml) trained for one step."""
    run = tmp_path_factory.mktemp("flame_tokenizer")
    config = ROOT / "experiments" / "synthetic" / "flame_tokenizer.yaml"
    talk("fit", "-c", str(config), *flame_overrides(synth_root, run, face_model=True), "--trainer.max_epochs=1",
         "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1", "--trainer.logger=false", cwd=run)  # fmt: skip
    return run / "outputs" / "synthetic" / "flame_tokenizer" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def flame_lm_ckpt(synth_root, flame_tokenizer_ckpt, tmp_path_factory) -> Path:
    """The flagship over FLAME parameters (experiments/synthetic/flame_lm.yaml), trained for one step."""
    run = tmp_path_factory.mktemp("flame_lm")
    config = ROOT / "experiments" / "synthetic" / "flame_lm.yaml"
    talk("fit", "-c", str(config), *flame_overrides(synth_root, run), "--trainer.max_epochs=1",
         "--trainer.check_val_every_n_epoch=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
         "--trainer.logger=false", f"--model.init_args.tokenizer_checkpoint={flame_tokenizer_ckpt}", cwd=run)  # fmt: skip
    return run / "outputs" / "synthetic" / "flame_lm" / "checkpoints" / "last.ckpt"
