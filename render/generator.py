"""The image-space portrait generator: warped portrait + reference + mesh conditioning -> the RGB frame.

    gen = PortraitGenerator()
    out = gen(warped, reference, normals, depth, mask, mouth_mask, flow)    # out.image [B,3,H,W] in [0,1]

Warping (:func:`render.warp.warp_portrait`) moves the reference's pixels along the mesh motion and is right almost
everywhere; it cannot show what the reference does not (the mouth interior: teeth, tongue, cavity), what the motion
uncovers (disocclusions at the outline, eyelids) or shading that changes with the pose. The generator therefore
does not redraw the frame: it predicts a correction ``residual`` of the warped portrait in logit space and returns
``sigmoid(logit(warped) + residual)``: in (0,1) with no clamp, the warped pixels exactly where the residual is 0
(their full-resolution detail kept where the warp is right), and any colour where it is large (teeth over the
warped lips). The last layer starts at zero, so an untrained generator returns the warped portrait: training
starts from the warp-only baseline and learns only what it must change. (A convex blend
``warped + blend * (generated - warped)`` with a soft mask starting near 0 was tried first: 400 steps on the
synthetic set ended exactly at the warp-only baseline, the mask never opening; the residual has no gate between
the loss and the network.)

Network: a small U-Net. The input (``INPUT_CHANNELS`` per pixel, plus the flow's 2 when ``use_flow``) is folded to
``1/fold`` of the resolution by pixel-unshuffle (``fold x fold`` pixels -> ``fold^2`` times the channels, no
information lost), runs through ``len(channels)`` levels (one residual block each on the way down and up, stride-2
convolutions down, nearest upsampling + skip concatenation up, GroupNorm + SiLU), and a pixel-shuffle head unfolds
``3 fold^2`` channels back to the 3 residual channels at full resolution. Nothing runs at full resolution but the
fold and the unfold, which is what makes it fast on a CPU (``benchmarks/portrait.py``). At the bottleneck the mean of the features over the image
(the person's global appearance: skin, teeth and background colours) is added back to every position, which a
receptive field of a few dozen pixels cannot see otherwise.

Pure torch; imports nothing from ``talk``, ``motion`` or ``audio``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F_
from torch import Tensor, nn

__all__ = ["GeneratorOutput", "PortraitGenerator", "INPUT_CHANNELS"]

# warped RGB 3 + reference RGB 3 + normals 3 + depth 1 + head mask 1 + mouth mask 1 (the flow's 2 come on top)
INPUT_CHANNELS = 12


@dataclass(frozen=True, eq=False)
class GeneratorOutput:
    """What :class:`PortraitGenerator` returns.

    Attributes:
        image: ``[B,3,H,W]`` the frame in (0,1): ``sigmoid(logit(warped) + residual)``.
        residual: ``[B,3,H,W]`` the correction of the warped portrait, in logits (0: the warped pixel).
    """

    image: Tensor
    residual: Tensor


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)  # the most groups <= ``groups`` that divide


class ResBlock(nn.Module):
    """``x + conv(SiLU(GN(conv(SiLU(GN(x))))))`` at constant width ``[B,C,h,w]`` (pre-activation)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(channels, groups),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            _norm(channels, groups),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class PortraitGenerator(nn.Module):
    """Fills what warping cannot; see the module docstring.

    Args:
        channels: Feature widths of the U-Net levels: level ``l`` runs at ``H / (fold 2^l)``, so ``H`` and ``W``
            must be multiples of ``fold 2^(len(channels) - 1)`` (:attr:`multiple`).
        use_flow: Also read the warp's backward flow (2 channels, ``grid_sample`` units), which says where each
            pixel came from in the reference and how far.
        groups: GroupNorm groups (at a level whose width it does not divide, their greatest common divisor).
        eps: The warped portrait is clamped to ``[eps, 1 - eps]`` before its logit is taken.
        fold: Pixel-unshuffle factor of the input: level 0 runs at ``H / fold`` (2, or 4 for a faster, coarser
            network).
    """

    def __init__(
        self,
        channels: tuple[int, ...] = (16, 32, 64, 96),
        use_flow: bool = True,
        groups: int = 8,
        eps: float = 1e-3,
        fold: int = 2,
    ) -> None:
        super().__init__()
        if not channels or any(c < 1 for c in channels):
            raise ValueError(f"channels={channels}; give one positive width per level.")
        if fold < 1:
            raise ValueError(f"fold={fold}; pass a pixel-unshuffle factor of at least 1.")
        self.channels = tuple(int(c) for c in channels)
        self.use_flow = bool(use_flow)
        self.in_channels = INPUT_CHANNELS + (2 if use_flow else 0)
        self.eps = float(eps)
        self.fold = int(fold)
        c0 = self.channels[0]
        # after pixel-unshuffle by ``fold`` (a 1x1 convolution: the 3x3 context comes from the blocks)
        self.stem = nn.Conv2d(self.fold**2 * self.in_channels, c0, 1)
        self.down = nn.ModuleList()  # level l > 0: stride-2 convolution from level l-1
        self.encode = nn.ModuleList()
        for level, width in enumerate(self.channels):
            if level:
                self.down.append(nn.Conv2d(self.channels[level - 1], width, 3, stride=2, padding=1))
            self.encode.append(ResBlock(width, groups))
        deepest = self.channels[-1]
        self.context = nn.Linear(deepest, deepest)  # global appearance, added back everywhere
        self.merge = nn.ModuleList()  # level l < L-1: [upsampled level l+1, skip of level l] -> width of l
        self.decode = nn.ModuleList()
        for level in range(len(self.channels) - 1):
            width = self.channels[level]
            self.merge.append(nn.Conv2d(self.channels[level + 1] + width, width, 1))
            self.decode.append(ResBlock(width, groups))
        self.head = nn.Sequential(_norm(c0, groups), nn.SiLU(), nn.Conv2d(c0, 3 * self.fold**2, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)  # start as the warped portrait (see the module docstring)
        nn.init.zeros_(self.head[-1].bias)

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this."""
        return self.fold * 2 ** (len(self.channels) - 1)

    def forward(
        self,
        warped: Tensor,
        reference: Tensor,
        normals: Tensor,
        depth: Tensor,
        mask: Tensor,
        mouth_mask: Tensor,
        flow: Tensor | None = None,
    ) -> GeneratorOutput:
        """The frame for one batch of conditioning (the fields of ``talk.synth.portrait_dataset.PortraitClips``).

        Args:
            warped: ``[B,3,H,W]`` the reference warped to the target mesh, in [0,1].
            reference: ``[B,3,H,W]`` the reference portrait, in [0,1].
            normals: ``[B,3,H,W]`` camera-space unit normals of the target mesh, in [-1,1], 0 off the mesh.
            depth: ``[B,1,H,W]`` the target mesh's depth relative to the head, about [-1,1], 0 off the mesh.
            mask: ``[B,1,H,W]`` 1 on the head, 0 elsewhere.
            mouth_mask: ``[B,1,H,W]`` 1 where the target shows the mouth interior.
            flow: ``[B,2,H,W]`` the warp's backward displacement in ``grid_sample`` units; required when
                ``use_flow``, ignored otherwise.

        Returns:
            A :class:`GeneratorOutput` with ``[B,3,H,W]`` / ``[B,1,H,W]`` tensors.
        """
        b, _, h, w = warped.shape
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"image size {h}x{w}: both sides must be multiples of {self.multiple}.")
        inputs = [warped, reference, normals, depth, mask, mouth_mask]
        if self.use_flow:
            if flow is None:
                raise ValueError("this generator reads the flow (use_flow=True); pass flow [B,2,H,W].")
            scale = flow.new_tensor([w / 2.0, h / 2.0]).view(1, 2, 1, 1)
            inputs.append(flow * scale)  # grid units (2 = the image side) -> pixels: O(1) values
        x = self.stem(F_.pixel_unshuffle(torch.cat(inputs, dim=1), self.fold))
        skips = []
        for level, block in enumerate(self.encode):
            if level:
                x = self.down[level - 1](x)
            x = block(x)
            skips.append(x)
        x = x + self.context(x.mean(dim=(2, 3)))[:, :, None, None]
        for level in reversed(range(len(self.channels) - 1)):
            skip = skips[level]
            x = F_.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = self.decode[level](self.merge[level](torch.cat([x, skip], dim=1)))
        residual = F_.pixel_shuffle(self.head(x), self.fold)  # [B,3,H,W]
        image = torch.sigmoid(torch.logit(warped.clamp(self.eps, 1.0 - self.eps)) + residual)
        return GeneratorOutput(image=image, residual=residual)
