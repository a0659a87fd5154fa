"""Audio front end: waveform loading and waveform -> frame-level features. Pure torch/numpy, no Lightning."""

from audio.align import biwi_alignment_mask, interpolate_features, motion_frame_count
from audio.encoder import AudioEncoder
from audio.features import AudioFeatures
from audio.hf import HFSpeechEncoder, SpeechEncoderLoadError
from audio.io import (
    AudioError,
    AudioFileNotFoundError,
    AudioTooLongError,
    AudioWarning,
    EmptyAudioError,
    NonFiniteAudioError,
    UnreadableAudioError,
    load_audio,
)
from audio.mel import MelEncoder

__all__ = [
    "AudioEncoder",
    "AudioError",
    "AudioFeatures",
    "AudioFileNotFoundError",
    "AudioTooLongError",
    "AudioWarning",
    "EmptyAudioError",
    "HFSpeechEncoder",
    "MelEncoder",
    "NonFiniteAudioError",
    "SpeechEncoderLoadError",
    "UnreadableAudioError",
    "biwi_alignment_mask",
    "interpolate_features",
    "load_audio",
    "motion_frame_count",
]
