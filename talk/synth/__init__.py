"""Synthetic talking-face dataset: speech audio and face meshes generated from one articulatory trajectory.

The embedded default dataset: lets users train and evaluate with no licensed assets. Written in the VOCASET
processed layout, so the VOCASET loader reads it unchanged. ``synthesize_dataset`` is imported lazily so that
the light modules (phonemes, articulation, voice) do not pull in torch and the face model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from talk.synth.speakers import SpeakerProfile, make_speaker

if TYPE_CHECKING:
    from talk.synth.writer import SynthesisError, SynthSummary, synthesize_dataset

__all__ = ["SpeakerProfile", "SynthSummary", "SynthesisError", "make_speaker", "synthesize_dataset"]

_LAZY = {"SynthSummary", "SynthesisError", "synthesize_dataset"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from talk.synth import writer

        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
