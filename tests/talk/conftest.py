"""Session fixtures shared by the CLI and streaming tests: a small synthetic dataset and tiny trained models."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.talk.clitools import ROOT, coefficient_overrides, flame_overrides, small_overrides, talk


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small synthetic dataset with the configs' subject names (10 speakers x 2 sentences)."""
    from talk.synth import synthesize_dataset

    root = tmp_path_factory.mktemp("synthetic")
    synthesize_dataset(root, speakers=10, sentences=2, seed=0, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def portrait_root(tmp_path_factory) -> Path:
    """A tiny synthetic portrait set (talk data portraits): 3 clips of 4 frames at 32x32, one per split."""
    from talk.synth.portrait import write_portrait_set

    root = tmp_path_factory.mktemp("portraits")
    write_portrait_set(root, clips=3, frames_per_clip=4, size=32, progress=False, val_fraction=0.34,
                       test_fraction=0.34)  # fmt: skip
    return root


def _one_step(name: str, overrides: list[str], run: Path, *extra: str) -> Path:
    """Fits experiments/synthetic/<name>.yaml for one training step and one validation; its last.ckpt."""
    config = ROOT / "experiments" / "synthetic" / f"{name}.yaml"
    talk("fit", "-c", str(config), *overrides, "--trainer.max_epochs=1", "--trainer.check_val_every_n_epoch=1",
         "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1", "--trainer.logger=false", *extra,
         cwd=run)  # fmt: skip
    return run / "checkpoints" / "last.ckpt"  # the run directory, --trainer.default_root_dir


@pytest.fixture(scope="session")
def tokenizer_ckpt(synth_root, tmp_path_factory) -> Path:
    """A motion tokenizer trained for one step (what experiments/*/lm.yaml builds on)."""
    run = tmp_path_factory.mktemp("tokenizer")
    return _one_step("tokenizer", small_overrides(synth_root, run), run)


@pytest.fixture(scope="session")
def lm_ckpt(synth_root, tokenizer_ckpt, tmp_path_factory) -> Path:
    """The flagship audio -> token model of experiments/synthetic/lm.yaml, trained for one step."""
    run = tmp_path_factory.mktemp("lm")
    tokenizer = f"--model.init_args.tokenizer_checkpoint={tokenizer_ckpt}"
    return _one_step("lm", small_overrides(synth_root, run), run, tokenizer)


@pytest.fixture(scope="session")
def flame_tokenizer_ckpt(synth_root, tmp_path_factory) -> Path:
    """A tokenizer of FLAME parameters (experiments/synthetic/flame_tokenizer.yaml) trained for one step."""
    run = tmp_path_factory.mktemp("flame_tokenizer")
    return _one_step("flame_tokenizer", flame_overrides(synth_root, run, face_model=True), run)


@pytest.fixture(scope="session")
def flame_lm_ckpt(synth_root, flame_tokenizer_ckpt, tmp_path_factory) -> Path:
    """The flagship over FLAME parameters (experiments/synthetic/flame_lm.yaml), trained for one step."""
    run = tmp_path_factory.mktemp("flame_lm")
    tokenizer = f"--model.init_args.tokenizer_checkpoint={flame_tokenizer_ckpt}"
    return _one_step("flame_lm", flame_overrides(synth_root, run), run, tokenizer)


def _coefficient_lm(kind: str, root: Path, tmp_path_factory) -> Path:
    """The flagship over ``kind`` parameters (experiments/synthetic/<kind>_*.yaml): tokenizer and LM, one step each."""
    run = tmp_path_factory.mktemp(f"{kind}_tokenizer")
    tokenizer = _one_step(f"{kind}_tokenizer", coefficient_overrides(kind, root, run, face_model=True), run)
    run = tmp_path_factory.mktemp(f"{kind}_lm")
    extra = f"--model.init_args.tokenizer_checkpoint={tokenizer}"
    return _one_step(f"{kind}_lm", coefficient_overrides(kind, root, run), run, extra)


@pytest.fixture(scope="session")
def arkit_lm_ckpt(synth_root, tmp_path_factory) -> Path:
    """The flagship over ARKit-52 weights (experiments/synthetic/arkit_*.yaml), each stage trained for one step."""
    return _coefficient_lm("arkit", synth_root, tmp_path_factory)


@pytest.fixture(scope="session")
def bfm_lm_ckpt(synth_root, tmp_path_factory) -> Path:
    """The flagship over BFM expression coefficients (experiments/synthetic/bfm_*.yaml), one step per stage."""
    return _coefficient_lm("bfm", synth_root, tmp_path_factory)
