"""Loading a transformers speech checkpoint (hub id or local directory) with one-sentence errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from talk.errors import UserError

__all__ = ["SpeechEncoderLoadError", "load_pretrained", "transformers_module"]


class SpeechEncoderLoadError(UserError, ValueError, OSError):
    """A speech encoder checkpoint could not be loaded; the message says why and what to do."""


def transformers_module() -> Any:
    """The transformers package, or an ImportError saying how to install it."""
    try:
        import transformers
    except ImportError as err:
        raise ImportError(
            "HFSpeechEncoder needs the transformers package; install it with `pip install transformers`."
        ) from err
    return transformers


def _is_repo_not_found(err: BaseException) -> bool:
    """Whether the hub answered that the repository does not exist (as opposed to being unreachable)."""
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if type(cur).__name__ in ("RepositoryNotFoundError", "GatedRepoError"):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _invalid_repo_id(name: str) -> str | None:
    """Why ``name`` (not an existing directory) cannot be a hub model id, or None when it can."""
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        return "is neither an existing directory nor a valid hub model id"
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(name)
    except ImportError:
        return None  # let from_pretrained decide
    except ValueError:
        return "is neither an existing directory nor a valid hub model id"
    return None


def load_pretrained(name: str) -> tuple[nn.Module, dict[str, Any]]:
    """The ``AutoModel`` of a hub id or local checkpoint directory, and its feature-extractor settings.

    Raises:
        SpeechEncoderLoadError: ``name`` is neither a checkpoint directory nor a reachable hub model.
    """
    transformers = transformers_module()
    local = Path(name).expanduser()
    if not local.is_dir():
        problem = "is a file, not a checkpoint directory" if local.exists() else _invalid_repo_id(name)
        if problem:
            raise SpeechEncoderLoadError(
                f"could not load speech encoder '{name}': it {problem}; pass the directory written by "
                f"save_pretrained or a hub id such as 'facebook/wav2vec2-base-960h'."
            )
    try:
        model = transformers.AutoModel.from_pretrained(str(local) if local.is_dir() else name)
    except (OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        if local.is_dir():
            message = (
                f"could not load speech encoder '{name}': the directory is not a transformers checkpoint "
                f"({reason}); save one there with save_pretrained."
            )
        elif isinstance(err, OSError) and _is_repo_not_found(err):
            message = (
                f"could not load speech encoder '{name}': no such model on the Hugging Face hub or on disk; "
                f"check the name or pass a local directory."
            )
        elif isinstance(err, OSError):
            message = (
                f"could not load speech encoder '{name}': the Hugging Face hub is unreachable; download it on "
                f"a connected machine and pass its local directory"
            )
        else:  # a malformed model id, or a cached checkpoint transformers cannot build
            message = (
                f"could not load speech encoder '{name}' ({reason}); pass a wav2vec2 / HuBERT / WavLM hub id "
                f"or local directory."
            )
        error = SpeechEncoderLoadError(message)
        error.original = err  # kept for debugging without printing the hub's traceback to the user
        raise error from None

    try:
        fe = transformers.Wav2Vec2FeatureExtractor.from_pretrained(str(local) if local.is_dir() else name)
        fe_config = {
            "do_normalize": bool(fe.do_normalize),
            "return_attention_mask": bool(fe.return_attention_mask),
            "sampling_rate": int(fe.sampling_rate),
        }
    except (OSError, ValueError):
        # No preprocessor_config.json: use the Wav2Vec2FeatureExtractor defaults for normalisation and
        # Hugging Face's rule (attention mask only for layer-norm feature encoders).
        norm = getattr(model.config, "feat_extract_norm", "group")
        fe_config = {"do_normalize": True, "return_attention_mask": norm == "layer"}
    return model, fe_config
