"""Without pytorch3d (the main venv), the pytorch3d backend fails with an actionable message, only when built."""

import importlib.util

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pytorch3d") is not None,
    reason="pytorch3d is installed here (see the parity tests)",
)


def test_building_the_renderer_says_how_to_install_pytorch3d():
    from render import Pytorch3DNotInstalledError, Pytorch3DRenderer

    with pytest.raises(Pytorch3DNotInstalledError, match="make test-pytorch3d"):
        Pytorch3DRenderer()
    assert issubclass(Pytorch3DNotInstalledError, ImportError)
