"""A project-owned runtime for the CMU Sphinx US English acoustic model (PocketSphinx 5's ``en-us``, PTM).

Frame-level phone posteriors from an acoustic model trained on real human speech, as a frozen speech front end:
``SphinxAcousticModel.load()`` -> ``features(wav)`` ``[T, 39]``, ``senone_scores(wav)`` ``[T, 5126]``,
``phone_log_posteriors(wav)`` ``[T, 42]`` at 100 frames per second. Pure numpy/torch; the model files are read from
the installed ``pocketsphinx`` wheel (a core dependency of talk), which is never imported.
"""

from audio.sphinx.frontend import SphinxFrontEnd, add_deltas, batch_cmn, to_pcm16
from audio.sphinx.model_io import (
    MIXW_LOG_UNIT,
    ModelDefinition,
    SphinxModelError,
    default_model_dir,
    read_feat_params,
    read_gaussians,
    read_mdef,
    read_sendump,
    read_transition_matrices,
)
from audio.sphinx.scorer import SphinxAcousticModel

__all__ = [
    "MIXW_LOG_UNIT",
    "ModelDefinition",
    "SphinxAcousticModel",
    "SphinxFrontEnd",
    "SphinxModelError",
    "add_deltas",
    "batch_cmn",
    "default_model_dir",
    "read_feat_params",
    "read_gaussians",
    "read_mdef",
    "read_sendump",
    "read_transition_matrices",
    "to_pcm16",
]
