"""A contact sheet of a blendshape rig: the neutral and every target at weight 1, rendered and labelled, as a PNG.

For the procedural ARKit rig it is the page to hold against Apple's ARKit reference poses. ``mouthClose`` is drawn on
top of ``jawOpen``, as Apple's reference shows it (alone it presses the lips through each other).

It lives in ``talk`` because it joins two layers, ``motion`` (the rig) and ``render``; Pillow draws the labels and
writes the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from motion.face.blendshapes.rig import BlendshapeRig

__all__ = ["render_contact_sheet"]

_SHOWN_WITH = {"mouthClose": "jawOpen"}  # targets drawn on top of another, as in Apple's reference images


def _poses(rig: BlendshapeRig) -> tuple[torch.Tensor, list[str]]:
    """``[1 + K, K]`` weights (the neutral, then each target at 1) and their labels."""
    weights = torch.zeros(1 + rig.num_targets, rig.num_targets)
    labels = ["neutral"]
    for k, name in enumerate(rig.names):
        weights[1 + k, k] = 1.0
        base = _SHOWN_WITH.get(name)
        if base in rig.names:
            weights[1 + k, rig.names.index(base)] = 1.0
            name = f"{name}+{base}"
        labels.append(name)
    return weights, labels


def render_contact_sheet(
    rig: BlendshapeRig,
    path: str | Path,
    size: int = 128,
    columns: int = 8,
    view: str = "front",
    colors: torch.Tensor | np.ndarray | None = None,
    supersample: int = 2,
) -> Path:
    """Render the neutral and every target of ``rig`` at weight 1 into one labelled PNG grid.

    One still camera (:func:`render.camera.fit_camera`) frames the vertices that any target moves (the face, not the
    whole head), so tiles compare at one scale; :class:`render.rasterizer.TorchRasterizer` draws them on the CPU.

    Args:
        rig: a rig with faces (``rig.faces`` not None).
        path: the PNG to write (folders are created).
        size: tile size in pixels (square); the label strip is added below each tile.
        columns: tiles per row.
        view: ``"front"`` or ``"three_quarter"``.
        colors: per-vertex albedo ``[V,3]`` in [0,1] (it moves with the vertices, so a painted iris shows the
            gaze of ``eyeLook*``; for the procedural head ``talk.synth.albedo.procedural_albedo()``); None = the
            renderer's uniform skin tone.
        supersample: render at this many times the tile size and downsample (anti-aliasing).

    Returns:
        The path written.
    """
    if rig.faces is None:
        raise ValueError("render_contact_sheet: the rig has no faces to render; load it from a mesh file.")
    if size < 32 or columns < 1 or supersample < 1:
        raise ValueError(
            f"render_contact_sheet: size must be >= 32, columns and supersample >= 1; got {size}, {columns}, "
            f"{supersample}."
        )
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError as err:  # pragma: no cover - Pillow ships with the training stack
        raise ImportError(
            "render_contact_sheet draws labels and writes PNG with Pillow: pip install pillow"
        ) from err
    from render.camera import fit_camera
    from render.rasterizer import TorchRasterizer

    weights, labels = _poses(rig)
    with torch.no_grad():
        vertices = rig.vertices(weights)[0].float().cpu()  # [1+K, V, 3]
        moved = rig.deltas.norm(dim=-1).amax(0) > 1e-4  # [V]
        region = vertices[:, moved] if bool(moved.any()) else vertices
        full = size * supersample
        camera = fit_camera(region.reshape(-1, 3), image_size=(full, full), view=view, margin=1.1)
        albedo = None if colors is None else torch.as_tensor(np.asarray(colors), dtype=torch.float32)
        tiles = TorchRasterizer().render_uint8(vertices, rig.faces.cpu(), camera, albedo)  # [1+K,H,W,3]

    font_size = max(8, size // 12)
    try:
        font = ImageFont.load_default(size=font_size)  # scalable when Pillow has FreeType
    except (TypeError, OSError):  # pragma: no cover - old or FreeType-less Pillow: the bitmap font
        font = ImageFont.load_default()
    strip = font_size + 6
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * size, rows * (size + strip)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (tile, label) in enumerate(zip(tiles, labels, strict=True)):
        x, y = (i % columns) * size, (i // columns) * (size + strip)
        image = Image.fromarray(np.ascontiguousarray(tile))
        sheet.paste(
            image.resize((size, size), Image.Resampling.LANCZOS) if supersample > 1 else image, (x, y)
        )
        while label and draw.textlength(label, font=font) > size - 4:  # cut, never spill into the next tile
            label = label[:-1]
        draw.text((x + size // 2, y + size + strip // 2), label, fill=(0, 0, 0), font=font, anchor="mm")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
    return path
