"""talk: speech-driven facial animation. Inference (``talk.pipeline``, no Lightning), training (``talk.training``,
the Lightning layer), data, synthesis and the ``talk`` command, over the pure ``audio``, ``motion`` and ``render``."""

__version__ = "0.1.0"
