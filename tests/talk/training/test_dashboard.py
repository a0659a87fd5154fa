"""The experiment dashboard (talk/training/dashboard.py) with the default trainer: config and units, comparison
videos with audio, codebook health and test tables in wandb (offline), TensorBoard and on disk."""

from __future__ import annotations

import csv
import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.talk.clitools import ROOT, small_overrides, talk

LM = str(ROOT / "experiments" / "synthetic" / "lm.yaml")
TOKENIZER = str(ROOT / "experiments" / "synthetic" / "tokenizer.yaml")
VAL = ["SYN_07_F_sentence01", "SYN_08_M_sentence01"]  # small_overrides: sentence 1 of the two val speakers


def wandb_records(run_dir: Path) -> dict[str, dict]:
    """The config, summary and last history values of the offline wandb run in ``run_dir``, read from its
    transaction log (``run-*.wandb``: 32 KiB blocks of checksummed chunks holding wandb's protobuf records)."""
    from wandb.proto import wandb_internal_pb2 as pb

    (log,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data = log.read_bytes()
    assert data[:4] == b":W&B"
    out: dict[str, dict] = {"config": {}, "summary": {}, "history": {}}
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or kind == 0:  # block padding
            pos += left
            continue
        pending, pos = pending + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind not in (1, 4):  # FULL or LAST chunk: a record is complete
            continue
        record, pending = pb.Record.FromString(pending), b""
        which = record.WhichOneof("record_type")
        items = {"config": lambda r: r.config.update, "summary": lambda r: r.summary.update,
                 "history": lambda r: r.history.item}.get(which)  # fmt: skip
        for item in items(record) if items else []:
            key = item.key or "/".join(item.nested_key)
            out[which][key] = json.loads(item.value_json)
    return out


def test_fit_logs_config_videos_and_codebook_health_to_wandb_tensorboard_and_disk(
    synth_root, tokenizer_ckpt, tmp_path
):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from render.video import probe_video

    run = tmp_path / "lm"
    out = talk("fit", "-c", LM, *small_overrides(synth_root, run), f"--model.init_args.tokenizer_checkpoint={tokenizer_ckpt}",
               "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.check_val_every_n_epoch=1",
               "--dashboard.size=64", "--trainer.logger+=lightning.pytorch.loggers.TensorBoardLogger",
               cwd=tmp_path)  # fmt: skip
    (offline,) = run.glob("wandb/offline-run-*")
    assert (
        f"wandb: offline run saved in {offline}; upload it with: wandb sync {offline}"
        in out.stdout.splitlines()
    )

    # on disk, whatever the loggers: the videos of the first validation and the usage chart
    for name in VAL:
        info = probe_video(run / "media" / "comparison" / "epoch_0000" / f"{name}.mp4")
        assert (info.video_codec, info.audio_codec, info.height) == ("h264", "aac", 64)
    assert (run / "media" / "codebook_usage" / "epoch_0000.png").is_file()
    with open(run / "logs" / "version_0" / "metrics.csv") as f:
        (row,) = [r for r in csv.DictReader(f) if r["val/lve"]]
    assert float(row["val/lve_mm"]) == pytest.approx(np.sqrt(float(row["val/lve"])) * 1000, rel=1e-4)
    assert 1.0 <= float(row["val/perplexity/0"]) <= 256 and 0 <= float(row["val/dead_codes/3"]) < 256

    # wandb: the mp4s with their audio, the chart, the resolved config with units, the codebook scalars
    files = offline / "files" / "media"
    videos = sorted(files.glob("videos/val/comparison/*.mp4"))
    assert [v.name.split("_1_")[0] for v in videos] == VAL
    assert all(probe_video(v).audio_codec == "aac" for v in videos)
    assert list(files.glob("images/val/codebook_usage_*.png"))
    records = wandb_records(run)
    config = records["config"]
    assert config["trainer"]["max_epochs"] == 1 and config["trainer"]["default_root_dir"] == str(run)
    assert config["model"]["init_args"]["tokenizer_checkpoint"] == str(tokenizer_ckpt)
    units = config["metric_units"]
    assert (units["val/lve"], units["val/lve_mm"], units["val/mve"], units["val/loss"]) == (
        "m^2",
        "mm",
        "m",
        "unitless",
    )
    assert (units["train/dead_codes/3"], units["val/perplexity/0"]) == ("count", "unitless")
    assert {"val/perplexity/0", "val/dead_codes/0", "val/lve_mm"} <= set(records["history"])

    # TensorBoard: the GIFs and audio, the chart, the scalars, the config as text
    (events,) = run.glob("lightning_logs/version_0/events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"images": 0, "audio": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    for name in VAL:
        (gif,) = acc.Images(f"val/comparison/{name}")
        assert gif.encoded_image_string[:6] == b"GIF89a" and gif.height == 64
        from PIL import Image

        assert Image.open(io.BytesIO(gif.encoded_image_string)).n_frames > 5
        (audio,) = acc.Audio(f"val/comparison/{name}/audio")
        assert audio.sample_rate == 16000 and audio.length_frames > 16000
    assert "val/codebook_usage" in tags["images"] and "config/text_summary" in tags["tensors"]
    assert {"val/lve_mm", "val/perplexity/0", "val/dead_codes/0"} <= set(tags["scalars"])


def test_test_logs_the_per_sequence_table_and_the_summary(synth_root, tokenizer_ckpt, tmp_path):
    run = tmp_path / "test"
    talk(
        "test",
        "-c",
        TOKENIZER,
        *small_overrides(synth_root, run),
        f"--ckpt_path={tokenizer_ckpt}",
        cwd=tmp_path,
    )
    with open(run / "metrics_per_sequence.csv") as f:
        expected = [[r[0], r[1], int(r[2]), *map(float, r[3:])] for r in list(csv.reader(f))[1:]]
    assert len(expected) == 2 * 5  # rvq_1..rvq_4 and the static template, two sequences each
    (table,) = run.glob("wandb/offline-run-*/files/media/table/test/per_sequence_*.table.json")
    logged = json.loads(table.read_text())
    assert logged["columns"] == ["method", "name", "frames", "lve", "fdd", "mve"]
    assert [r[:3] for r in logged["data"]] == [r[:3] for r in expected]
    assert np.allclose([r[3:] for r in logged["data"]], [r[3:] for r in expected], rtol=1e-12, atol=0)
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    summary = wandb_records(run)["summary"]
    for method in ("rvq_1", "rvq_4", "static_template"):
        for key in ("lve", "lve_mm", "mve"):
            assert summary[f"test/{method}/{key}"] == pytest.approx(metrics[method][key])


def test_wandb_logger_labels_and_disabled_mode(monkeypatch, tmp_path, capsys):
    import wandb
    from PIL import Image

    from talk.training.loggers import WandbLogger, finish_runs

    monkeypatch.setenv("WANDB_MODE", "offline")
    assert WandbLogger(save_dir=str(tmp_path))._offline
    monkeypatch.setenv("WANDB_MODE", "disabled")  # Lightning's offline switch must not turn it into a dry run
    logger = WandbLogger(save_dir=str(tmp_path / "run"), tags=["rvq4", "ablation"], group="g", notes="n")
    init = logger._wandb_init
    assert (init["mode"], init["group"], init["notes"]) == ("disabled", "g", "n")
    assert init["tags"] == ["rvq4", "ablation"]
    # what the dashboard logs, to a disabled run: no error, no file, no upload hint
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "chart.png")
    logger.log_hyperparams({"trainer": {"max_epochs": 1}, "metric_units": {"val/lve": "m^2"}})
    logger.log_metrics({"val/codebook_usage": wandb.Image(str(tmp_path / "chart.png"))}, step=0)
    logger.log_table("test/per_sequence", columns=["method", "lve"], data=[["model", 1e-5]], step=0)
    logger.experiment.summary["test/model/lve"] = 1e-5
    finish_runs([logger])
    assert not list((tmp_path / "run").iterdir()) and "wandb" not in capsys.readouterr().out


def test_units_perplexity_and_gif():
    from PIL import Image

    from talk.training.dashboard import encode_gif, markdown_table, metric_units, perplexity

    assert perplexity(np.array([3, 3, 0, 0])) == pytest.approx(2.0) and perplexity(np.array([5, 0])) == 1.0
    units = metric_units(2)
    assert units["val/dead_codes/1"] == "count" and "val/dead_codes/2" not in units
    assert units["test/<method>/lve_mm"] == "mm"
    frames = [np.zeros((8, 10, 3), np.uint8) for _ in range(6)]
    for i, frame in enumerate(frames):  # a white dot moving over black: every frame differs
        frame[i, i] = 255
    gif = Image.open(io.BytesIO(encode_gif(frames, 15.0)))
    assert (gif.n_frames, gif.size, gif.info["duration"], gif.info["loop"]) == (6, (10, 8), 70, 0)
    assert markdown_table(["a", "b"], [["x", 0.1234567]]) == "| a | b |\n|---|---|\n| x | 0.123457 |"
