"""Audio front end: waveform loading and waveform -> frame-level features. Pure torch/numpy, no Lightning."""

from audio.align import biwi_alignment_mask, interpolate_features, motion_frame_count, resample_features
from audio.cache import FeatureCache, FeatureCacheError
from audio.cached_encoder import CachedEncoder
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
from audio.phone_encoder import PhoneEncoder, PhonePosteriors
from audio.streaming import StreamingEncoder, StreamingError, concat_features

__all__ = [
    "CachedEncoder",
    "AudioEncoder",
    "AudioError",
    "AudioFeatures",
    "AudioFileNotFoundError",
    "AudioTooLongError",
    "AudioWarning",
    "EmptyAudioError",
    "FeatureCache",
    "FeatureCacheError",
    "HFSpeechEncoder",
    "MelEncoder",
    "PhoneEncoder",
    "PhonePosteriors",
    "NonFiniteAudioError",
    "SpeechEncoderLoadError",
    "StreamingEncoder",
    "StreamingError",
    "UnreadableAudioError",
    "biwi_alignment_mask",
    "resample_features",
    "concat_features",
    "interpolate_features",
    "load_audio",
    "motion_frame_count",
]
