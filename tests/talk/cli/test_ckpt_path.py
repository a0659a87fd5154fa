"""`talk validate|test|predict --ckpt_path`: checkpoints of older versions parse as they were; a checkpoint of another
kind of model than the config's, or a file that is not a checkpoint, is one clear line."""

from __future__ import annotations

import sys

import pytest
import torch

from tests.talk.clitools import ROOT, small_overrides
from tests.talk.pipeline.test_pipeline import _legacy

LM = ROOT / "experiments" / "synthetic" / "lm.yaml"
FACEFORMER = ROOT / "experiments" / "synthetic" / "faceformer.yaml"


class _Parsed(Exception):
    def __init__(self, config) -> None:  # noqa: ANN001 - a jsonargparse Namespace
        self.config = config


def _parse_test(monkeypatch: pytest.MonkeyPatch, *args: str):  # noqa: ANN202
    """The model config `talk test ARGS` would run (checkpoint hyperparameters merged), without running it."""
    from talk.cli.lightning_cli import TalkCLI, run_lightning_cli

    class ParseOnly(TalkCLI):
        def before_instantiate_classes(self) -> None:
            raise _Parsed(self.config)

    monkeypatch.setattr(sys, "argv", list(sys.argv))  # run_lightning_cli replaces it
    with pytest.raises(_Parsed) as parsed:
        run_lightning_cli(["test", *args], cli_class=ParseOnly)
    return parsed.value.config.test.model


def test_an_old_checkpoint_parses_with_its_old_class_paths_and_sampling_flags(
    lm_ckpt, synth_root, tmp_path, monkeypatch
):
    old = _legacy(lm_ckpt, tmp_path / "old.ckpt")
    ckpt = torch.load(old, weights_only=True)
    hp = ckpt["hyper_parameters"]
    del hp["sampling"]  # as written then: loose arguments
    hp.update(temperature=0.8, top_k=0, top_p=0.0, cfg_scale=1.0, greedy=False, seed=3)
    torch.save(ckpt, old)
    model = _parse_test(
        monkeypatch, "-c", str(LM), *small_overrides(synth_root, tmp_path), f"--ckpt_path={old}"
    )
    assert model.class_path.endswith("AudioToMotionModule")
    sampling = model.init_args.sampling
    assert (sampling.temperature, sampling.seed) == (0.8, 3)


def test_a_checkpoint_of_another_model_than_the_config_is_one_clear_line(
    tokenizer_ckpt, synth_root, tmp_path, monkeypatch
):
    from talk.errors import UserError

    with pytest.raises(UserError, match="holds a TokenizerModule but the config's model is RegressionModule"):
        _parse_test(monkeypatch, "-c", str(FACEFORMER), *small_overrides(synth_root, tmp_path),
                    f"--ckpt_path={tokenizer_ckpt}")  # fmt: skip


def test_a_truncated_checkpoint_is_one_clear_line(lm_ckpt, synth_root, tmp_path, monkeypatch):
    from talk.errors import UserError

    bad = tmp_path / "last.ckpt"
    bad.write_bytes(lm_ckpt.read_bytes()[:4096])
    with pytest.raises(UserError, match="not a readable talk checkpoint"):
        _parse_test(monkeypatch, "-c", str(LM), *small_overrides(synth_root, tmp_path), f"--ckpt_path={bad}")
