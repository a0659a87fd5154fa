"""Lightning-free inference: what users import to turn speech into a talking face.

    from talk.pipeline import Pipeline
    model = Pipeline.from_checkpoint("outputs/synthetic/lm/checkpoints/best.ckpt")
    vertices = model.generate(wav).vertices          # [1, T, V, 3]
    for piece in model.stream(chunks): ...           # [m, V, 3] as the audio arrives
    animate(model, "speech.wav", "out.mp4")          # rendered video with the speech

Nothing here imports Lightning (``talk.training`` wraps these models for training).
"""

from motion.lm import Sampling
from talk.pipeline.animate import AnimationResult, animate
from talk.pipeline.assets import Assets
from talk.pipeline.generators import RegressionGenerator, TokenGenerator
from talk.pipeline.load import export, from_checkpoint
from talk.pipeline.model import AudioToMotion, Motion
from talk.pipeline.streaming import Streamer, StreamStats


class Pipeline:
    """Where users start: ``Pipeline.from_checkpoint(path, device="cpu")`` -> an :class:`AudioToMotion` in eval
    mode, from a ``talk fit`` checkpoint or a ``talk export`` file, without importing Lightning."""

    from_checkpoint = staticmethod(from_checkpoint)


__all__ = [
    "AnimationResult",
    "Assets",
    "AudioToMotion",
    "Motion",
    "Pipeline",
    "RegressionGenerator",
    "Sampling",
    "StreamStats",
    "Streamer",
    "TokenGenerator",
    "animate",
    "export",
    "from_checkpoint",
]
