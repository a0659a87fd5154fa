"""Images in: reading a photo as RGB uint8, and cutting rotated, resized crops for the networks as MediaPipe does."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from talk.errors import UserError

__all__ = ["ImageReadError", "as_image", "crop", "read_image"]


class ImageReadError(UserError, ValueError):
    """An image file cannot be read, or an image array is not H x W x 3 uint8."""


def read_image(path: str | Path) -> np.ndarray:
    """Read a photo as RGB.

    Any format Pillow decodes; the EXIF orientation of camera photos is applied, grey and RGBA images become RGB.

    Args:
        path: Image file.

    Returns:
        Image [H, W, 3] uint8.

    Raises:
        ImageReadError: the file is missing or not a decodable image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise ImageReadError(f"image file {path} does not exist.") from None
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
    ) as err:  # Pillow's decoders raise all four
        raise ImageReadError(f"cannot read {path} as an image ({err}); use a JPEG or PNG photo.") from None


def as_image(image: str | Path | np.ndarray) -> tuple[np.ndarray, str]:
    """An image argument as ``(RGB uint8 [H, W, 3], name for messages)``: a path is read, an array is checked.

    Raises:
        ImageReadError: unreadable file, or an array that is not H x W x 3 uint8.
    """
    if isinstance(image, (str, Path)):
        return read_image(image), str(image)
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8 or 0 in array.shape:
        raise ImageReadError(
            f"the image array must be H x W x 3 uint8 RGB, got shape {array.shape} and dtype {array.dtype}."
        )
    return array, "the image array"


@lru_cache(maxsize=4)
def _pixels(size: int) -> Tensor:
    """Homogeneous pixel coordinates ``(u, v, 1)`` of a size x size crop, row-major, [size * size, 3] float64."""
    axis = torch.arange(size, dtype=torch.float64)
    v, u = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([u, v, torch.ones_like(u)], -1).reshape(-1, 3)


def crop(image: Tensor, matrices: Tensor, size: int, border: str) -> Tensor:
    """Bilinear crops of one image through affine maps, with MediaPipe's sampling convention.

    Output pixel ``(u, v)`` (integers) samples the image at ``matrices @ (u, v, 1)``, where image pixel ``k`` has
    its centre at coordinate ``k``. This is how MediaPipe's CPU ImageToTensorCalculator (OpenCV
    ``warpPerspective`` on the corner-to-corner map of the crop rectangle) samples, and copying it (rather than
    sampling at pixel centres or antialiasing, as PIL does) makes the landmarks agree with MediaPipe's to
    hundredths of a pixel instead of about half a pixel.

    Args:
        image: RGB image [H, W, 3] (uint8 or float).
        matrices: Affine maps from crop pixels to image pixels, [N, 2, 3] (float64 recommended).
        size: Side of the square crops.
        border: ``"zeros"`` (black outside the image) or ``"border"`` (edge pixels replicated).

    Returns:
        Crops [N, size, size, 3] float32 in the image's value range.
    """
    h, w = image.shape[:2]
    xy = torch.einsum(
        "nij,pj->npi", matrices.to(torch.float64), _pixels(size)
    )  # [N, size*size, 2] image coords
    # grid_sample (align_corners=False) places pixel k's centre at (2k + 1) / W - 1.
    grid = (2 * xy + 1) / torch.tensor([w, h], dtype=torch.float64) - 1
    grid = grid.reshape(-1, size, size, 2).float()
    src = image.permute(2, 0, 1).float().unsqueeze(0).expand(len(matrices), -1, -1, -1)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode=border, align_corners=False)
    return out.permute(0, 2, 3, 1)
