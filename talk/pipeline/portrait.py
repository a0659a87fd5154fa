"""A photo and speech -> a talking video of that person: fit, animate the fitted mesh, warp, generate.

    generator, size = load_portrait_generator("outputs/synthetic/portrait/checkpoints/best.ckpt")
    animator = PortraitAnimator.from_photo("photo.jpg", generator, size)
    for frame in animator.frames(motion.generate_pieces(wav, template=animator.fit.neutral)):
        ...                                                       # [H, W, 3] uint8, the photo's size

1. **Fit** (:func:`talk.track.fit_image`): the procedural head is fitted to the photo's 468 FaceMesh landmarks
   (identity, expression, jaw, head pose, camera). The photo is cropped to a square around the head framed as the
   generator's training clips frame it (crown to neck over two thirds of the side) and resized to the generator's
   size; the camera follows the crop.
2. **Animate**: the motion model (any ``talk`` model of the procedural head's topology) animates the fitted identity's
   neutral face; each frame's mesh is that face plus the model's offsets, optionally moved by the idle head motion
   (:mod:`motion.idle`), posed as the head in the photo, with render-only teeth and tongue that follow its skull and
   jaw (:mod:`talk.synth.mouth`).
3. **Warp + generate** (:func:`render.portrait_inputs.portrait_inputs`, the generator of ``talk fit -c
   experiments/synthetic/portrait.yaml``): the crop is warped from the fitted mesh to the frame's mesh, and the
   generator fills what the warp cannot (mouth interior, disocclusions). The crop is then redone at the photo's
   resolution (the photo's own crop warped by the upsampled flow, plus the generator's correction upsampled: a
   still face stays as sharp as the photo) and pasted back with a feathered edge, so the video has the photo's
   size.

Frames are produced one at a time from the meshes as they arrive, so memory does not grow with the audio. Lightning
is not imported.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F_
from torch import Tensor, nn

from talk.errors import CheckpointError, UserError

__all__ = [
    "PortraitAnimator", "PortraitFit", "animate_portrait", "crop_camera", "crop_square", "load_portrait_generator"
]

HEAD_FRACTION = 0.67  # crown-to-neck height over the crop side (the training clips draw 0.55-0.8)
NECK_JOINT = 1


def load_portrait_generator(path: str | Path) -> tuple[nn.Module, int]:
    """The generator of a ``talk fit -c experiments/synthetic/portrait.yaml`` checkpoint and the image size it was
    trained at, read with ``torch.load(weights_only=True)`` (no Lightning)."""
    from talk.pipeline.config import instantiate, is_config

    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"--portrait-generator {path} not found; train one with `talk fit -c experiments/synthetic/portrait.yaml`."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointError(f"{path} is not a readable checkpoint ({str(exc).splitlines()[0]}).") from None
    state = {
        k[len("generator.") :]: v for k, v in ckpt.get("state_dict", {}).items() if k.startswith("generator.")
    }
    if not state:
        raise CheckpointError(
            f"{path} holds no portrait generator; pass a checkpoint of experiments/synthetic/portrait.yaml."
        )
    config = (ckpt.get("hyper_parameters") or {}).get("generator")
    if is_config(config):
        generator = instantiate(config)
    else:
        from render.generator import PortraitGenerator

        generator = PortraitGenerator()
    generator.load_state_dict(state)
    size = int((ckpt.get("datamodule_hyper_parameters") or {}).get("size", 256))
    return generator.eval(), size


@dataclass(frozen=True, eq=False)
class PortraitFit:
    """The photo and the head fitted to it, in the generator's crop.

    Attributes:
        photo: ``[H, W, 3]`` uint8, the whole photo.
        box: ``(x0, y0, side)`` of the square crop in photo pixels (may reach outside the photo: padded by edge
            replication).
        reference: ``[3, S, S]`` the crop resized to the generator's size, in [0, 1].
        camera: The fitted camera of the crop (``render.camera.Camera``, S x S).
        source: ``[V + M, 3]`` the fitted mesh with its mouth interior (camera space, metres).
        neutral: ``[V, 3]`` the face as fitted to the photo (identity, expression, jaw) in model space: the template
            the motion model animates, so that a frame without motion is the photo.
        rotation: ``[3, 3]`` and ``translation`` ``[3]``: model space -> camera space of the fitted head.
        residual_px: Mean landmark residual of the fit, in photo pixels.
    """

    photo: np.ndarray
    box: tuple[int, int, int]
    reference: Tensor
    camera: Any
    source: Tensor
    neutral: Tensor
    rotation: Tensor
    translation: Tensor
    residual_px: float


class PortraitAnimator:
    """Turns a stream of model-space meshes into video frames of a photo (module docstring).

    Args:
        fit: The fitted photo (:meth:`fit_photo`).
        generator: The portrait generator (:func:`load_portrait_generator`).
        mouth: The fitted identity's teeth and tongue (``talk.synth.mouth.MouthInterior``).
        faces: ``[F + Fm, 3]`` head and mouth triangles; ``mouth_faces`` ``[K]`` the faces inside the mouth.
        side_by_side: Put the shaded 3D render of each frame's mesh (as the fitted camera sees it, scaled to the
            photo's height) to the right of the photo.
    """

    def __init__(
        self, fit: PortraitFit, generator: nn.Module, mouth: Any, faces: Tensor, mouth_faces: Tensor,
        side_by_side: bool = False,
    ) -> None:  # fmt: skip
        from render.rasterizer import TorchRasterizer

        self.fit, self.generator, self.mouth = fit, generator, mouth
        self.faces, self.mouth_faces = faces, mouth_faces
        self._renderer = TorchRasterizer(shading="normals")
        self._feather = _feather(fit.reference.shape[-1])
        self._shaded = TorchRasterizer() if side_by_side else None
        # the crop at the photo's resolution
        self._crop = torch.from_numpy(crop_square(fit.photo, *fit.box)).permute(2, 0, 1).float().div_(255.0)

    @classmethod
    def from_photo(
        cls, photo: str | Path, generator: nn.Module, size: int, side_by_side: bool = False
    ) -> PortraitAnimator:
        """Fit the procedural head to ``photo`` (talk.track; the ``track`` extra) and prepare the crop."""
        from talk.synth.portrait_style import PortraitAssets

        assets = PortraitAssets.load()
        fit, mouth_mesh, mouth = fit_photo(photo, size, assets)
        faces = torch.from_numpy(mouth_mesh.faces)
        return cls(fit, generator, mouth, faces, torch.from_numpy(mouth_mesh.mouth_faces), side_by_side)

    def posed(self, vertices: Tensor) -> Tensor:
        """Model-space head meshes ``[m, V, 3]`` -> camera-space meshes with the mouth interior ``[m, V + M, 3]``."""
        head = (vertices.double() @ self.fit.rotation.T + self.fit.translation).numpy()
        return torch.from_numpy(np.concatenate([head.astype(np.float32), self.mouth.place(head)], axis=1))

    @torch.inference_mode()
    def frame(self, mesh: Tensor) -> np.ndarray:
        """One camera-space mesh ``[V + M, 3]`` -> the photo with the generated crop pasted in, ``[H, W, 3]`` uint8."""
        return self.compose(mesh, *self.crop(mesh))

    @torch.inference_mode()
    def crop(self, mesh: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The generator's crop ``[3, S, S]`` for one camera-space mesh, and the inputs it was given
        (:func:`render.portrait_inputs.portrait_inputs`)."""
        from render.portrait_inputs import portrait_inputs

        fit = self.fit
        x = portrait_inputs(
            fit.reference, fit.source, mesh.float(), self.faces, self.mouth_faces, fit.camera, renderer=self._renderer
        )  # fmt: skip
        out = self.generator(
            x["warped"][None], fit.reference[None], x["normals"][None], x["depth"][None], x["mask"][None],
            x["mouth_mask"][None], x["flow"][None],
        ).image[0]  # fmt: skip
        return out, x

    @torch.inference_mode()
    def compose(self, mesh: Tensor, generated: Tensor, inputs: dict[str, Tensor]) -> np.ndarray:
        """The video frame of :meth:`crop`'s output: the crop at the photo's resolution pasted into the photo (and
        the mesh render beside it with ``side_by_side``)."""
        fit = self.fit
        crop = self.full_resolution(generated, inputs["warped"], inputs["flow"])
        frame = _paste(fit.photo, fit.box, crop, self._feather)
        if self._shaded is None:
            return frame
        render = self._shaded.render(mesh[None].float(), self.faces, fit.camera).image[0, ..., :3]  # [s, s, 3]
        height = frame.shape[0]
        panel = F_.interpolate(render.permute(2, 0, 1)[None], size=(height, height), mode="bilinear",
                               antialias=True, align_corners=False)[0]  # fmt: skip
        panel = (panel.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
        return np.concatenate([frame, panel], axis=1)

    def full_resolution(self, generated: Tensor, warped: Tensor, flow: Tensor) -> Tensor:
        """The generated crop ``[3, S, S]`` at the photo's resolution ``[3, s, s]``: the photo's own crop warped by the
        flow (smooth, so it upsamples exactly enough) plus the generator's correction of the warp, upsampled. A still
        face is the photo itself, sharp; only what the generator adds (mouth interior, seams) has its resolution."""
        from render.flow import displacement_to_grid
        from render.warp import warp

        side = self._crop.shape[-1]
        up = {"size": (side, side), "mode": "bilinear", "align_corners": False}
        pixels = F_.interpolate(flow[None].float(), **up) * (side / 2.0)  # grid units (2 = the side) -> pixels
        sharp = warp(self._crop[None], displacement_to_grid(pixels))
        correction = F_.interpolate((generated - warped)[None].float(), **up)
        return (sharp + correction)[0].clamp_(0.0, 1.0)

    def frames(self, pieces: Iterable[Tensor]) -> Iterator[np.ndarray]:
        """Video frames of model-space mesh pieces ``[m, V, 3]``, one at a time."""
        for piece in pieces:
            for mesh in self.posed(piece):
                yield self.frame(mesh)


def animate_portrait(
    model: Any,
    audio: str | Path,
    output: str | Path,
    photo: str | Path,
    generator: str | Path,
    subject: str | None = None,
    stream: bool = False,
    chunk_seconds: float = 0.2,
    head_motion: Any = None,
    head_seed: int = 0,
    side_by_side: bool = False,
) -> tuple[Path, int, float]:
    """``talk animate --portrait``: speech + photo -> an H.264/AAC mp4 of the photo talking (module docstring).

    Args:
        model: The audio-to-motion model (``Pipeline.from_checkpoint``) of the procedural head's topology.
        audio: Speech file; muxed into the video.
        output: Output ``.mp4``.
        photo: The portrait (one face).
        generator: Checkpoint of ``experiments/synthetic/portrait.yaml``.
        subject: Training subject whose style drives the motion (default: the first).
        stream: Generate while the audio is fed in ``chunk_seconds`` pieces (token models).
        chunk_seconds: Audio per streamed chunk.
        head_motion: ``motion.idle.IdleHead`` settings of the idle head motion, or None for a still head.
        head_seed: Seed of the head motion.
        side_by_side: The 3D render of the animated mesh beside the photo (:class:`PortraitAnimator`).

    Returns:
        ``(path, frames, fps)`` of the video written.
    """
    from audio.io import load_audio
    from render import VideoWriter
    from talk.pipeline.animate import posed_pieces

    assets = model.require_assets()
    net, size = load_portrait_generator(generator)
    animator = PortraitAnimator.from_photo(photo, net, size, side_by_side)
    if animator.fit.neutral.shape[0] != assets.template(subject).shape[0]:
        raise CheckpointError(
            f"the motion model's mesh has {assets.template(subject).shape[0]} vertices, the procedural head "
            f"{animator.fit.neutral.shape[0]}: use a model trained on it (experiments/synthetic/*)."
        )
    wav = torch.from_numpy(load_audio(Path(audio), sample_rate=assets.sample_rate))
    template = animator.fit.neutral
    if stream:
        from talk.pipeline.streaming import Streamer

        streamer = Streamer(model, subject=subject, chunk_seconds=chunk_seconds)
        streamer.template = template.to(streamer.device)
        pieces: Iterator[Tensor] = streamer.stream_file(wav)
    else:
        pieces = model.generate_pieces(wav, subject=subject, template=template)
    if head_motion is not None:
        pieces = posed_pieces(pieces, None, head_motion, head_seed, wav, assets, template)
    frames = 0
    with VideoWriter(Path(output), fps=assets.fps, audio=Path(audio)) as writer:
        for frame in animator.frames(piece.cpu() for piece in pieces):
            writer.write(frame)
            frames += 1
    return Path(output), frames, assets.fps


def fit_photo(photo: str | Path, size: int, assets: Any) -> tuple[PortraitFit, Any, Any]:
    """Fit the procedural head of ``assets`` (``PortraitAssets``) to a photo; the crop, meshes and mouth."""
    from PIL import Image

    from motion.face.flame import FLAME, FLAMEParams
    from motion.face.flame_io import load_landmark_embedding, load_mediapipe_embedding
    from motion.face.procedural.face import mediapipe_embedding_path
    from talk.synth.mouth import build_mouth_interior, rigid_fit
    from talk.track import detect_landmarks, fit_image

    path = Path(photo)
    if not path.is_file():
        raise UserError(f"--portrait {path} not found; name a photo (.jpg, .png) with one face.")
    try:
        image = np.asarray(Image.open(path).convert("RGB"))
        image = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]  # H.264 needs even sides
    except OSError as exc:
        raise UserError(f"--portrait {path} is not an image Pillow reads ({exc}).") from None
    fidx, bary = load_landmark_embedding(str(mediapipe_embedding_path()))
    layout = assets.flame.contained_init_args()["layout"] | {"num_landmarks": len(fidx)}
    flame = FLAME(None, n_shape=assets.flame.n_shape, n_expression=assets.flame.n_expression, layout=layout)
    flame.load_state_dict(
        {**assets.flame.state_dict(), "lmk_faces_idx": torch.as_tensor(fidx).long(),
         "lmk_bary_coords": torch.as_tensor(bary).float()}
    )  # fmt: skip
    indices = load_mediapipe_embedding(mediapipe_embedding_path())[2]
    fit = fit_image(
        detect_landmarks(image), flame.eval(), landmark_indices=indices, image_size=image.shape[:2]
    )
    p = fit.params
    with torch.no_grad():
        neutral = flame(FLAMEParams(shape=p.shape, jaw_pose=torch.zeros(1, 1, 3))).vertices[0, 0].double()
        posed = flame(FLAMEParams(shape=p.shape, jaw_pose=torch.zeros(1, 1, 3), global_pose=p.global_pose,
                                  translation=p.translation)).vertices[0, 0].double()  # fmt: skip
    rot, trans = rigid_fit(neutral.numpy(), posed.numpy()[None])  # the head's pose: model -> camera space
    mouth = build_mouth_interior(neutral.numpy(), assets.face.model, assets.face.masks, 0)
    camera_space = fit.vertices.double().numpy()
    mesh = mouth.attach(camera_space, assets.faces)
    # the crop: crown to neck over HEAD_FRACTION of the side, centred between them
    uv = fit.camera.project(torch.from_numpy(camera_space).float()[None])[0, :, :2].numpy()
    neck = (flame.J_regressor.double() @ fit.vertices.double())[NECK_JOINT].float()
    neck_uv = fit.camera.project(neck[None, None])[0, 0, :2].numpy()
    crown = uv[np.argmin(uv[:, 1])]
    side = int(round(np.linalg.norm(neck_uv - crown) / HEAD_FRACTION))
    centre = (crown + neck_uv) / 2.0
    x0, y0 = int(round(centre[0] - side / 2)), int(round(centre[1] - side / 2))
    crop = crop_square(image, x0, y0, side)
    reference = F_.interpolate(
        torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255.0, size=(size, size), mode="bilinear",
        antialias=True, align_corners=False,
    )[0].clamp(0, 1)  # fmt: skip
    camera = crop_camera(fit.camera, x0, y0, side, size)
    # the face as fitted (its expression and jaw kept) in model space: the template the motion model animates, so
    # that no motion gives the photo back
    rest = (camera_space.reshape(-1, 3) - trans[0]) @ rot[0]
    result = PortraitFit(
        photo=image, box=(x0, y0, side), reference=reference, camera=camera,
        source=torch.from_numpy(mesh.vertices[0]), neutral=torch.from_numpy(rest).float(), rotation=torch.from_numpy(rot[0]),
        translation=torch.from_numpy(trans[0]), residual_px=float(fit.mean_residual_px),
    )  # fmt: skip
    return result, mesh, mouth


def crop_square(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """The square ``[side, side, 3]`` at ``(x0, y0)``, edge-replicated where it leaves the image."""
    h, w = image.shape[:2]
    ys = np.clip(np.arange(y0, y0 + side), 0, h - 1)
    xs = np.clip(np.arange(x0, x0 + side), 0, w - 1)
    return image[ys][:, xs]


def crop_camera(camera: Any, x0: int, y0: int, side: int, size: int) -> Any:
    """``camera`` for the crop at ``(x0, y0)`` of ``side`` pixels resized to ``size``."""
    from render.camera import Camera

    scale = size / side
    h, w = camera.image_size
    cx, cy = camera.principal_point or (w / 2.0, h / 2.0)
    return Camera(
        R=camera.R, T=camera.T, focal=float(camera.focal) * scale, image_size=(size, size),
        principal_point=((cx - x0) * scale, (cy - y0) * scale),
    )  # fmt: skip


def _feather(size: int, width: float = 0.08) -> Tensor:
    """``[S, S]`` blend weights: 1 inside, falling smoothly to 0 over ``width`` of the side at the border."""
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    edge = torch.clamp(torch.minimum(t, 1 - t) / width, 0, 1)
    ramp = edge * edge * (3 - 2 * edge)
    return ramp[:, None] * ramp[None, :]


def _paste(photo: np.ndarray, box: tuple[int, int, int], crop: Tensor, feather: Tensor) -> np.ndarray:
    """The photo with the generated ``crop`` ``[3, S, S]`` resized into ``box`` and blended by ``feather``."""
    x0, y0, side = box
    h, w = photo.shape[:2]
    big = F_.interpolate(crop[None], size=(side, side), mode="bilinear", align_corners=False)[0].permute(
        1, 2, 0
    )
    alpha = F_.interpolate(feather[None, None], size=(side, side), mode="bilinear", align_corners=False)[0, 0]
    out = photo.astype(np.float32) / 255.0
    ya, yb, xa, xb = max(y0, 0), min(y0 + side, h), max(x0, 0), min(x0 + side, w)
    if ya < yb and xa < xb:
        region = big[ya - y0 : yb - y0, xa - x0 : xb - x0].numpy()
        a = alpha[ya - y0 : yb - y0, xa - x0 : xb - x0].numpy()[..., None]
        out[ya:yb, xa:xb] = a * region + (1 - a) * out[ya:yb, xa:xb]
    return (out * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
