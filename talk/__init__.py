"""talk: speech-driven facial animation. The Lightning layer over the pure ``audio``, ``motion`` and ``render``."""

__version__ = "0.1.0"
