"""Experiment dashboards: the panels a researcher compares runs by, in wandb, TensorBoard and CSV runs alike.

:class:`Dashboard` (added to every ``talk fit|validate|test``, options ``--dashboard.*``) adds to every logger:

- **config**: the run's resolved config (what ``--print_config`` shows) and ``metric_units``, the unit of every
  metric: the wandb run config; TensorBoard and CSV hyperparameters (TensorBoard also as text);
- **comparison videos**: at the first validation and every ``every_n_validations``-th after it,
  ``prediction | ground truth | error heat map`` videos with audio of fixed validation sequences, written to
  ``<run dir>/media/comparison/epoch_NNNN/<sequence>.mp4``, logged as the mp4 (wandb) or a GIF + audio (TensorBoard);
- **codebook health** (models with a residual-VQ tokenizer): at every validation, each codebook's code usage over the
  validation split's motion, a bar chart per codebook (``<run dir>/media/codebook_usage/epoch_NNNN.png``), with
  ``val/perplexity/k`` and ``val/dead_codes/k``;
- **test results**: after ``talk test``, the per-sequence metrics as a table (wandb Table, TensorBoard markdown)
  and the pooled metrics in the wandb run summary.

Media are made on global rank 0 only, and generation for them leaves the random streams as they were, so a run
draws the same numbers with and without the dashboard. A run without loggers (``--trainer.logger=false``) or a
``fast_dev_run`` shows nothing, and there the dashboard does nothing.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor

VERTEX_UNITS = {"lve": "m^2", "lve_mm": "mm", "fdd": "m^2", "abs_fdd": "m^2", "mve": "m"}
TABLE_COLUMNS = ["method", "name", "frames", "lve", "fdd", "mve"]


def metric_units(num_codebooks: int = 0) -> dict[str, str]:
    """The unit of every metric talk logs, by name: losses in the model's normalised units ("unitless"),
    cross-entropies in nats; ``<method>`` is a ``talk test`` method (``model``, ``static_template``, ``rvq_1``...),
    per-codebook metrics are listed for codebooks ``0 .. num_codebooks - 1``."""
    units = {"train/loss": "unitless", "val/loss": "unitless"}
    units |= {f"train/{k}": "unitless" for k in ("reconstruction", "velocity", "commitment")}
    units |= {f"train/vertex_{k}": "unitless" for k in ("reconstruction", "velocity")}
    units |= {f"val/{k}": u for k, u in VERTEX_UNITS.items()}
    units |= {f"test/<method>/{k}": u for k, u in VERTEX_UNITS.items()}
    units |= {"test/<method>/sequences": "count", "test/<method>/frames": "count"}
    for k in range(num_codebooks):
        units |= {f"train/ce/{k}": "nats", f"val/ce/{k}": "nats", f"train/perplexity/{k}": "unitless",
                  f"train/usage/{k}": "fraction", f"train/dead_codes/{k}": "count",
                  f"val/perplexity/{k}": "unitless", f"val/dead_codes/{k}": "count"}  # fmt: skip
    return units


def perplexity(counts: np.ndarray) -> float:
    """``exp(entropy)`` of a histogram of code counts ``[C]`` (1: one code used; C: all used equally)."""
    p = counts[counts > 0] / max(int(counts.sum()), 1)
    return float(np.exp(-(p * np.log(p)).sum()))


@dataclass(frozen=True)
class Clip:
    """A rendered comparison video: its mp4, its GIF (None without TensorBoard) of size ``(H, W)``, audio ``[N]``."""

    name: str
    path: Path
    caption: str
    gif: bytes | None
    size: tuple[int, int]
    audio: np.ndarray
    sample_rate: int


class Dashboard(L.Callback):
    """Logs the run's config and metric units, comparison videos, codebook health and test tables to every logger
    of the run (see the module docstring): wandb (``talk.training.loggers.WandbLogger``), TensorBoard
    (``--trainer.logger+=lightning.pytorch.loggers.TensorBoardLogger``; ``pip install 'talk[tensorboard]'``) and
    CSV, for which the videos and charts are only written under ``<run dir>/media/``.

    Args:
        every_n_validations: Render the comparison videos at the first validation and at every n-th one (with
            ``check_val_every_n_epoch: 2``, n=5 renders every 10 epochs); 0 never renders.
        num_sequences: Validation sequences to render: the first names of the validation split, sorted, so that
            every run and every epoch shows the same ones.
        size: Height and width of each of the three panels in pixels (even).
        max_error_mm: Error at the top of the heat map's colour bar.
        gif_fps: Frame rate of the TensorBoard GIFs (every k-th frame; the mp4 keeps every frame).
        codebook_usage: Log code usage, perplexity and dead codes of a residual-VQ tokenizer at every validation.
    """

    def __init__(
        self,
        every_n_validations: int = 5,
        num_sequences: int = 2,
        size: int = 192,
        max_error_mm: float = 5.0,
        gif_fps: float = 15.0,
        codebook_usage: bool = True,
    ) -> None:
        if every_n_validations < 0 or num_sequences < 0 or size < 16 or size % 2 or gif_fps <= 0:
            raise ValueError(
                "Dashboard needs every_n_validations >= 0, num_sequences >= 0, an even size >= 16 and gif_fps > 0."
            )
        self.every_n_validations = every_n_validations
        self.num_sequences = num_sequences
        self.size = size
        self.max_error_mm = max_error_mm
        self.gif_fps = gif_fps
        self.codebook_usage = codebook_usage
        self._validations = 0  # of this run so far (checkpointed: a resumed run keeps the schedule)
        self._active = False
        self._config_logged = False
        self._tokenizer: Any = None
        self._counts: dict[str, np.ndarray] = {}  # sequence name -> code counts [K, C]

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._active = bool(trainer.loggers) and not trainer.fast_dev_run
        self._config_logged = False
        self._counts = {}
        counts = self.codebook_usage and hasattr(pl_module, "motion")  # a token model's motion space
        self._tokenizer = tokenizer_of(pl_module) if counts else None

    def state_dict(self) -> dict[str, Any]:
        return {"validations": self._validations}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._validations = int(state_dict.get("validations", 0))

    # ------------------------------------------------------------------------------------------------ config
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_config(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._log_config(trainer)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_config(trainer)

    def _log_config(self, trainer: L.Trainer) -> None:
        """Once per run, after Lightning logged the model's hyperparameters."""
        if not self._active or self._config_logged or not trainer.is_global_zero:
            return
        self._config_logged = True
        k = 0 if self._tokenizer is None else self._tokenizer.num_quantizers
        own = getattr(trainer.lightning_module, "metric_units", None)  # a model with other metrics names them
        params = {**run_config(trainer), "metric_units": own() if callable(own) else metric_units(k)}
        for logger in trainer.loggers:
            logger.log_hyperparams(params)
            if isinstance(logger, TensorBoardLogger):  # the hyperparameter table flattens it; also as YAML
                import yaml

                text = yaml.safe_dump(params, sort_keys=False)
                logger.experiment.add_text("config", "".join(f"    {line}\n" for line in text.splitlines()))

    # ------------------------------------------------------------------------------------------- validation
    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        tokenizer = self._tokenizer
        if not self._active or trainer.sanity_checking or tokenizer is None:
            return
        codes = tokenizer.encode(pl_module.motion(batch), batch.motion_mask)  # [B, K, Tq]
        valid = tokenizer.token_mask(batch.motion_mask, batch.motion.shape[1])  # [B, Tq]
        k, c = codes.shape[1], tokenizer.codebook_size
        offsets = torch.arange(k, device=codes.device)[:, None] * c  # one bincount for all codebooks
        for i, name in enumerate(batch.names):
            flat = (codes[i][:, valid[i]] + offsets).reshape(-1)
            self._counts[name] = torch.bincount(flat, minlength=k * c).view(k, c).cpu().numpy()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active or trainer.sanity_checking:
            return
        if self._tokenizer is not None:
            usage = self._gathered_usage(trainer)
            self._counts = {}
            if usage is not None:
                for k, counts in enumerate(usage):  # equal on every process: sync_dist keeps the value
                    pl_module.log(f"val/perplexity/{k}", perplexity(counts), sync_dist=True)
                    pl_module.log(f"val/dead_codes/{k}", float((counts == 0).sum()), sync_dist=True)
                if trainer.is_global_zero:
                    self._log_usage(trainer, usage)
        index, self._validations = self._validations, self._validations + 1
        every = self.every_n_validations
        if trainer.is_global_zero and every and (index == 0 or (index + 1) % every == 0):
            self._log_clips(trainer, self.render(trainer, pl_module))

    def _gathered_usage(self, trainer: L.Trainer) -> np.ndarray | None:
        """Code counts ``[K, C]`` over the split, each sequence counted once (a DDP sampler repeats some)."""
        parts = [self._counts]
        if trainer.world_size > 1 and torch.distributed.is_initialized():
            parts = [None] * trainer.world_size
            torch.distributed.all_gather_object(parts, self._counts)
        merged = {name: counts for part in parts for name, counts in part.items()}
        return np.sum([merged[name] for name in sorted(merged)], axis=0) if merged else None

    def _log_usage(self, trainer: L.Trainer, usage: np.ndarray) -> None:
        from PIL import Image

        chart = usage_chart(usage)
        path = _media(trainer, "codebook_usage", f"epoch_{trainer.current_epoch:04d}.png")
        Image.fromarray(chart).save(path)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                logger.log_metrics({"val/codebook_usage": wandb.Image(str(path))}, step=trainer.global_step)
            elif isinstance(logger, TensorBoardLogger):  # drawn once: add_figure would draw it again
                logger.experiment.add_image(
                    "val/codebook_usage", chart, trainer.global_step, dataformats="HWC"
                )

    # ------------------------------------------------------------------------------------------------ videos
    def render(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[Clip]:
        """The comparison videos of the fixed validation sequences (none without a validation split or faces)."""
        from lightning.fabric.utilities.apply_func import move_data_to_device

        from talk.data.batch import collate

        dataset = (getattr(trainer.datamodule, "datasets", None) or {}).get("val")
        assets = getattr(pl_module, "assets", None)
        if not self.num_sequences or not dataset or assets is None or assets.faces is None:
            return []
        names = sorted(set(dataset.names))[: self.num_sequences]
        batch = collate([dataset[dataset.names.index(name)] for name in names])
        device = pl_module.device
        batch = move_data_to_device(batch, device)
        # a sampling generation may draw from the global generators: training must draw the same without it
        devices = [] if device.type == "cpu" else [device.index or 0]
        with torch.random.fork_rng(devices, device_type="cuda" if device.type == "cpu" else device.type):
            with torch.no_grad():
                pred = pl_module._predict_batch(batch).float().cpu()
        gif = any(isinstance(logger, TensorBoardLogger) for logger in trainer.loggers)
        folder = _media(trainer, "comparison", f"epoch_{trainer.current_epoch:04d}")
        return [self._clip(folder, batch, i, pred[i], assets, gif) for i in range(len(names))]

    def _clip(self, folder: Path, batch: Any, i: int, pred: Tensor, assets: Any, gif: bool) -> Clip:
        import soundfile as sf

        from render.compare import ComparisonRenderer
        from render.video import VideoWriter
        from talk.metrics import lve_mm

        t, name, fps = int(batch.motion_lengths[i]), batch.names[i], float(assets.fps)
        pred, truth = pred[:t], batch.motion[i, :t].float().cpu()
        lips = None if assets.regions is None else assets.regions.get("lips")
        caption = f"{name}  LVE {lve_mm(pred, truth, lips):.2f} mm"
        audio = np.clip(batch.audio[i, : int(batch.audio_lengths[i])].float().cpu().numpy(), -1.0, 1.0)
        renderer = ComparisonRenderer(panel_size=(self.size, self.size), max_error_mm=self.max_error_mm)
        faces = torch.as_tensor(assets.faces, dtype=torch.long)
        camera = renderer.fit_camera(pred, truth)
        every, kept = max(1, round(fps / self.gif_fps)), []
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "audio.wav"
            sf.write(wav, audio, assets.sample_rate, subtype="PCM_16")
            path = folder / f"{name}.mp4"
            with VideoWriter(path, fps=fps, audio=wav, frames=t, preset="ultrafast") as writer:
                for start in range(0, t, 16):  # chunks bound the memory
                    chunk = slice(start, start + 16)
                    frames = renderer.compare(pred[chunk], truth[chunk], faces, camera, caption)
                    writer.write(frames)
                    if gif:  # the frames whose index in the sequence is a multiple of `every`
                        kept.extend(frames[(-start) % every :: every])
        data = encode_gif(kept, fps / every) if gif else None
        return Clip(name, path, caption, data, renderer.frame_size(), audio, int(assets.sample_rate))

    def _log_clips(self, trainer: L.Trainer, clips: list[Clip]) -> None:
        step = trainer.global_step
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and clips:
                import wandb

                video = {
                    f"val/comparison/{c.name}": wandb.Video(str(c.path), caption=c.caption) for c in clips
                }
                logger.log_metrics(video, step=step)  # a file path: wandb keeps the audio
            elif isinstance(logger, TensorBoardLogger):
                writer = logger.experiment
                for clip in clips:
                    tag = f"val/comparison/{clip.name}"
                    writer._get_file_writer().add_summary(gif_summary(tag, clip.gif, *clip.size), step)
                    writer.add_audio(f"{tag}/audio", torch.from_numpy(clip.audio), step, clip.sample_rate)

    # -------------------------------------------------------------------------------------------------- test
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        results = getattr(pl_module, "test_results", None)
        if not self._active or not trainer.is_global_zero or not results:
            return  # (every process holds the whole split's results); a model may name its own columns:
        columns = ["method", "name", "frames", *results.get("columns", TABLE_COLUMNS[3:])]
        rows = [[method, r["name"], int(r["frames"]), *(float(r[c]) for c in columns[3:])]
                for method, seqs in results["per_sequence"].items() for r in seqs]  # fmt: skip
        pooled = {f"test/{method}/{key}": value for method, values in results["metrics"].items()
                  for key, value in values.items()}  # fmt: skip
        step = trainer.global_step
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table("test/per_sequence", columns=columns, data=rows, step=step)
                for key, value in pooled.items():
                    logger.experiment.summary[key] = value
            elif isinstance(logger, TensorBoardLogger):
                writer = logger.experiment
                writer.add_text("test/per_sequence", markdown_table(columns, rows), step)
                writer.add_text("test/metrics", markdown_table(["metric", "value"], [*pooled.items()]), step)


# ---------------------------------------------------------------------------------------------------- helpers
def _media(trainer: L.Trainer, *parts: str) -> Path:
    """``<run dir>/media/<parts...>``, its parent folder created."""
    path = Path(trainer.default_root_dir, "media", *parts)
    (path if not path.suffix else path.parent).mkdir(parents=True, exist_ok=True)
    return path


def tokenizer_of(module: torch.nn.Module) -> Any:
    """The first residual-VQ :class:`~motion.tokens.tokenizer.MotionTokenizer` inside ``module`` (the one a
    ``TokenizerModule`` trains, the frozen one of an ``AudioToMotionModule``), or None."""
    from motion.tokens.quantizer import ResidualVQ
    from motion.tokens.tokenizer import MotionTokenizer

    for sub in module.modules():
        if isinstance(sub, MotionTokenizer) and isinstance(sub.quantizer, ResidualVQ):
            return sub
    return None


def run_config(trainer: L.Trainer) -> dict[str, Any]:
    """The ``talk`` CLI's resolved config of the run as plain data (as ``--print_config`` shows it, less the
    top-level keys left empty); empty for a trainer built outside the CLI."""
    import yaml
    from lightning.pytorch.cli import SaveConfigCallback

    for callback in trainer.callbacks:
        if isinstance(callback, SaveConfigCallback):
            config = yaml.safe_load(callback.parser.dump(callback.config, skip_none=False))
            return {key: value for key, value in config.items() if value is not None}
    return {}


def usage_chart(usage: np.ndarray) -> np.ndarray:
    """An RGB image ``[H, W, 3]`` uint8: one bar chart of code counts per codebook, ``usage`` ``[K, C]``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k, c = usage.shape
    height = 0.6 + 1.5 * k  # inches
    figure = Figure(figsize=(8.0, height), dpi=100)
    figure.subplots_adjust(left=0.08, right=0.98, top=1 - 0.45 / height, bottom=0.35 / height, hspace=0.5)
    axes = figure.subplots(k, 1, sharex=True, squeeze=False)[:, 0]
    for i, (ax, counts) in enumerate(zip(axes, usage, strict=True)):
        # one filled outline of adjacent bars: a patch per bar takes seconds to draw for a few codebooks
        ax.fill_between(np.arange(c), counts, step="mid", color="#3b6ea8", linewidth=0)
        title = f"codebook {i}: perplexity {perplexity(counts):.1f} of {c}, {int((counts == 0).sum())} dead"
        ax.set_title(title, loc="left", fontsize=9)
        ax.set_ylabel("count", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("code", fontsize=8)
    axes[-1].set_xlim(-0.5, c - 0.5)
    figure.suptitle("code usage on the validation split's ground-truth motion", fontsize=10)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def encode_gif(frames: list[np.ndarray], fps: float) -> bytes:
    """An endlessly looping animated GIF of ``[H, W, 3]`` uint8 frames."""
    from PIL import Image

    # One palette for all frames, from a few of them (the colour bar holds every heat-map colour): quantizing
    # each frame on its own is ten times slower and makes the file four times larger.
    sample = np.concatenate(frames[:: max(1, len(frames) // 4)][:4], axis=0)
    palette = Image.fromarray(sample).quantize(256, method=Image.Quantize.FASTOCTREE)
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    buffer = io.BytesIO()
    duration = max(20, round(100.0 / fps) * 10)  # milliseconds; GIF delays are in hundredths of a second
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    return buffer.getvalue()


def gif_summary(tag: str, gif: bytes, height: int, width: int) -> Any:
    """A TensorBoard image summary holding an animated GIF (what ``SummaryWriter.add_video`` writes with moviepy,
    which talk does not need)."""
    try:
        from tensorboard.compat.proto.summary_pb2 import Summary
    except ImportError as err:
        raise ImportError(
            "TensorBoard videos need the tensorboard package; install it with pip install 'talk[tensorboard]'."
        ) from err
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
    return Summary(value=[Summary.Value(tag=tag, image=image)])


def markdown_table(columns: list[str], rows: list[Sequence[Any]]) -> str:
    """A markdown table, floats in 6 significant digits."""
    cells = [[f"{v:.6g}" if isinstance(v, float) else str(v) for v in row] for row in [columns, *rows]]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join([lines[0], "|" + "---|" * len(columns), *lines[1:]])
