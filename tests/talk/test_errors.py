"""Every error class in audio/, motion/, render/ and talk/ derives from talk.errors.UserError.

The CLI catches ``UserError`` alone to print a one-line message instead of a traceback, so an error class that
does not derive from it would show users a traceback for their own mistake. Classes are found by parsing every
module (no module is skipped), then only the modules that define one are imported to check the class itself.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from talk.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("audio", "motion", "render", "talk")

# Error classes that deliberately do not derive from UserError, with the reason. Empty: every one does.
NOT_USER_ERRORS: dict[str, str] = {}


def _error_classes() -> list[tuple[str, str]]:
    """(module, class name) of every module-level class whose name ends in ``Error`` in the four packages."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            found += [
                (module, n.name)
                for n in tree.body
                if isinstance(n, ast.ClassDef) and n.name.endswith("Error")
            ]
    return found


ERRORS = _error_classes()


def test_the_walk_finds_the_known_error_classes() -> None:
    names = {name for _, name in ERRORS}
    assert {
        "AudioError",
        "StreamingError",
        "MeshExportError",
        "FlameModelNotFoundError",
        "SynthesisError",
    } <= names
    assert len(ERRORS) >= 20


@pytest.mark.parametrize(("module", "name"), ERRORS, ids=[f"{m}.{n}" for m, n in ERRORS])
def test_error_class_derives_from_user_error(module: str, name: str) -> None:
    cls = getattr(importlib.import_module(module), name)
    if f"{module}.{name}" in NOT_USER_ERRORS:
        pytest.skip(NOT_USER_ERRORS[f"{module}.{name}"])
    assert issubclass(cls, UserError), (
        f"{module}.{name} does not derive from talk.errors.UserError; add it to its bases "
        f"(e.g. class {name}(UserError, ValueError)) so the CLI prints it as one line."
    )


def test_existing_bases_are_kept() -> None:
    """Callers that catch the builtin kinds (ValueError, FileNotFoundError, ImportError, OSError) still work."""
    from audio.hf_loading import SpeechEncoderLoadError
    from audio.io import AudioFileNotFoundError
    from motion.face.flame_io import FlameModelNotFoundError
    from render.pytorch3d_backend import Pytorch3DNotInstalledError

    assert issubclass(AudioFileNotFoundError, FileNotFoundError) and issubclass(
        AudioFileNotFoundError, ValueError
    )
    assert issubclass(SpeechEncoderLoadError, ValueError) and issubclass(SpeechEncoderLoadError, OSError)
    assert issubclass(FlameModelNotFoundError, FileNotFoundError)
    assert issubclass(Pytorch3DNotInstalledError, ImportError)
