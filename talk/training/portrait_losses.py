"""The portrait generator's optional loss terms: a VGG16 perceptual loss and a PatchGAN discriminator with the hinge
loss. Both are off by default (``PortraitModule``'s ``perceptual_weight`` and ``adversarial_weight`` are 0).

The perceptual loss needs ImageNet-trained VGG16 weights, which talk does not ship or download: the user passes a
file in torchvision's ``vgg16`` state-dict layout (``features.0.weight`` ... ; e.g. ``vgg16-397923af.pth``, read
with ``torch.load(weights_only=True)``). The network is rebuilt here with the same layer indices, so only the
``features.*`` tensors up to ``relu4_3`` are read and torchvision is not needed.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F_
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from talk.errors import UserError

__all__ = ["PatchDiscriminator", "PerceptualLoss", "PerceptualWeightsError", "hinge_d_loss", "hinge_g_loss"]

# torchvision's vgg16 ``features`` up to relu4_3: output widths of the convolutions, "M" a 2x2 max-pool
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
TAPS = (3, 8, 15, 22)  # indices in ``features`` of relu1_2, relu2_2, relu3_3, relu4_3
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class PerceptualWeightsError(UserError, ValueError):
    """The VGG16 weights file of the perceptual loss is missing or not in torchvision's layout."""


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    width = 3
    for spec in VGG16_LAYERS:
        if spec == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(width, int(spec), 3, padding=1), nn.ReLU(inplace=True)]
            width = int(spec)
    return nn.Sequential(*layers)


class PerceptualLoss(nn.Module):
    """Mean L1 distance between VGG16 activations (relu1_2, relu2_2, relu3_3, relu4_3) of two images, summed over
    the four layers. The network is frozen and kept out of checkpoints (it is the user's file, read again).

    Args:
        weights: torchvision ``vgg16`` state dict (``.pth``).
    """

    def __init__(self, weights: str | Path) -> None:
        super().__init__()
        path = Path(weights)
        if not path.is_file():
            raise PerceptualWeightsError(
                f"perceptual_weights file {path} does not exist; pass torchvision's VGG16 state dict "
                "(vgg16-397923af.pth), or set perceptual_weight to 0."
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
            raise PerceptualWeightsError(
                f"cannot read {path} as a torch state dict ({exc.__class__.__name__})."
            ) from None
        features = _vgg16_features()
        wanted = {f"features.{k}" for k in features.state_dict()}
        found = {k: v for k, v in state.items() if k in wanted} if isinstance(state, dict) else {}
        if set(found) != wanted:
            raise PerceptualWeightsError(
                f"{path} is not a torchvision vgg16 state dict (missing e.g. {sorted(wanted - set(found))[:1]}); "
                "pass vgg16-397923af.pth or a file with the same keys."
            )
        features.load_state_dict({k[len("features.") :]: v for k, v in found.items()})
        features.requires_grad_(False).eval()
        # not a submodule: out of the state dict (checkpoints) and of the optimizer
        object.__setattr__(self, "_features", features)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _taps(self, x: Tensor) -> list[Tensor]:
        self._features.to(x.device)
        out, x = [], (x - self.mean) / self.std
        for i, layer in enumerate(self._features):
            x = layer(x)
            if i in TAPS:
                out.append(x)
        return out

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Scalar loss of ``pred`` against ``target``, ``[B,3,H,W]`` in [0,1] (no gradient to ``target``)."""
        with torch.no_grad():
            real = self._taps(target)
        return sum(F_.l1_loss(a, b) for a, b in zip(self._taps(pred), real, strict=True))


class PatchDiscriminator(nn.Module):
    """A conditional PatchGAN (pix2pix): real/fake logits for overlapping patches of an image given its
    conditioning, spectrally normalised 4x4 convolutions with LeakyReLU.

    Args:
        in_channels: Image channels plus conditioning channels.
        channels: Width of the first layer (doubled at each of the next two).
    """

    def __init__(self, in_channels: int = 7, channels: int = 32) -> None:
        super().__init__()
        widths = [in_channels, channels, 2 * channels, 4 * channels]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                spectral_norm(nn.Conv2d(a, b, 4, stride=2, padding=1)),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers += [
            spectral_norm(nn.Conv2d(widths[-1], widths[-1], 3, padding=1)),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        layers.append(spectral_norm(nn.Conv2d(widths[-1], 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, image: Tensor, condition: Tensor) -> Tensor:
        """Logits ``[B,1,H/8,W/8]`` of ``image`` ``[B,3,H,W]`` given ``condition`` ``[B,C,H,W]``."""
        return self.net(torch.cat([image, condition], dim=1))


def hinge_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """Discriminator hinge loss: ``mean(relu(1 - real)) + mean(relu(1 + fake))`` over patch logits."""
    return F_.relu(1.0 - real).mean() + F_.relu(1.0 + fake).mean()


def hinge_g_loss(fake: Tensor) -> Tensor:
    """Generator hinge loss: ``-mean(fake)`` over the discriminator's patch logits of generated images."""
    return -fake.mean()
