"""What varies between synthetic portrait clips (:class:`PortraitStyle`, drawn from a seed) and the loaded face model
that turns a style and a sentence into meshes (:class:`PortraitAssets`); :mod:`talk.synth.portrait` renders them.

Appearance: skin texture and tone (:func:`~talk.synth.albedo.procedural_albedo` of a seed, times a tint), hair and
eyebrow colour (repainted over the ``scalp`` and an arched band above each ``eye_region``), teeth and tongue
shade (:mod:`talk.synth.mouth`), light direction, ambient, specular and colour, camera focal length and framing,
a base head pose and the amplitude of the head's motion, and the background (a blurred room
(:func:`~render.textured.textured_background`), a gradient or coloured noise).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from motion.face.flame import FLAME, FLAMEParams
from motion.face.procedural.face import (
    EXPRESSION_NAMES,
    ProceduralFace,
    build_procedural_face,
    write_procedural_face,
)
from render.textured import textured_background
from talk.synth.albedo import procedural_albedo
from talk.synth.articulation import FaceControls, build_trajectory, draw_idle_motion, face_controls
from talk.synth.face import JawFace, calibrate_lip_contact
from talk.synth.mouth import MouthInterior, build_mouth_interior
from talk.synth.phonemes import generate_utterance
from talk.synth.speakers import SpeakerProfile, make_speaker
from talk.synth.video import head_motion

__all__ = [
    "HeadFrames",
    "PortraitAssets",
    "PortraitStyle",
    "draw_style",
    "portrait_albedo",
    "portrait_background",
]

N_SHAPE = 20  # identity coefficients that vary (as in the synthetic speech dataset)
_HAIR = {  # name -> RGB albedo
    "black": (0.05, 0.045, 0.04),
    "dark_brown": (0.16, 0.10, 0.06),
    "brown": (0.30, 0.19, 0.11),
    "light_brown": (0.50, 0.36, 0.22),
    "blonde": (0.78, 0.63, 0.40),
    "auburn": (0.45, 0.17, 0.08),
    "grey": (0.58, 0.57, 0.55),
}
_BACKGROUNDS = ("textured", "textured", "textured", "gradient", "noise")


@dataclass(frozen=True)
class PortraitStyle:
    """Everything about one clip except the sentence's timing, drawn by :func:`draw_style`.

    Attributes:
        seed: the clip's seed.
        speaker: identity shape and speaking style (``talk.synth.speakers``).
        albedo_seed: seed of :func:`procedural_albedo` (skin texture, tone, iris).
        skin_tint: RGB multiplier of the skin.
        hair: hair colour name; ``hair_color`` / ``brow_color`` its RGB on the scalp and brows.
        hair_color: RGB.
        brow_color: RGB.
        mouth_seed: seed of the teeth and tongue shade.
        light_direction: camera-space unit vector towards the light (fixed over the clip: the head turns under it).
        light_color: RGB multiplier of the lit head.
        ambient: ambient fraction.
        specular: Blinn-Phong highlight strength.
        focal_factor: focal length / image side.
        head_fraction: fraction of the frame height from the crown to the neck joint.
        offset: ``(x, y)`` of the head off the image centre, fractions of the side (y down).
        base_pose_deg: ``(yaw, pitch, roll)`` the head's motion is centred on.
        motion_deg: bounds ``(yaw, pitch, roll)`` of the head's motion around it.
        background: ``"textured"``, ``"gradient"`` or ``"noise"``.
        background_seed: its seed.
    """

    seed: int
    speaker: SpeakerProfile
    albedo_seed: int
    skin_tint: tuple[float, float, float]
    hair: str
    hair_color: tuple[float, float, float]
    brow_color: tuple[float, float, float]
    mouth_seed: int
    light_direction: tuple[float, float, float]
    light_color: tuple[float, float, float]
    ambient: float
    specular: float
    focal_factor: float
    head_fraction: float
    offset: tuple[float, float]
    base_pose_deg: tuple[float, float, float]
    motion_deg: tuple[float, float, float]
    background: str
    background_seed: int

    @property
    def shape(self) -> tuple[float, ...]:
        """Identity coefficients."""
        return self.speaker.shape

    def to_json(self) -> dict:
        """Plain-JSON view (rounded) for the manifest."""
        out = asdict(self)
        out["speaker"] = self.speaker.to_json()
        return {
            k: [round(x, 5) for x in v] if isinstance(v, (tuple, list)) and k != "speaker" else v
            for k, v in out.items()
        }


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def draw_style(seed: int) -> PortraitStyle:
    """The appearance, camera, light and head-pose style of clip ``seed`` (deterministic)."""
    rng = np.random.default_rng([int(seed), 1])
    hair = str(rng.choice(list(_HAIR)))
    hair_rgb = np.asarray(_HAIR[hair]) * rng.uniform(0.85, 1.15)
    brow = hair_rgb * rng.uniform(0.55, 0.85) if hair not in ("blonde", "grey") else hair_rgb * 0.55
    az, el = np.radians(rng.uniform(-50.0, 50.0)), np.radians(rng.uniform(0.0, 45.0))
    light = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
    tint = 1.0 + rng.uniform(-0.08, 0.08, 3)
    return PortraitStyle(
        seed=int(seed),
        speaker=make_speaker(int(seed), 0, N_SHAPE),
        albedo_seed=int(rng.integers(2**31)),
        skin_tint=_triple(rng.uniform(0.72, 1.08) * (1.0 + rng.uniform(-0.05, 0.05, 3))),
        hair=hair,
        hair_color=_triple(np.clip(hair_rgb, 0.0, 1.0)),
        brow_color=_triple(np.clip(brow, 0.0, 1.0)),
        mouth_seed=int(rng.integers(2**31)),
        light_direction=_triple(light),
        light_color=_triple(tint / tint.mean() * rng.uniform(0.9, 1.15)),
        ambient=float(rng.uniform(0.25, 0.55)),
        specular=float(rng.uniform(0.02, 0.15)),
        focal_factor=float(rng.uniform(1.0, 3.0)),
        head_fraction=float(rng.uniform(0.55, 0.8)),
        offset=(float(rng.uniform(-0.06, 0.06)), float(rng.uniform(-0.05, 0.05))),
        base_pose_deg=_triple(rng.uniform([-20.0, -10.0, -6.0], [20.0, 10.0, 6.0])),
        motion_deg=_triple(rng.uniform([3.0, 2.0, 1.0], [10.0, 6.0, 4.0])),
        background=str(rng.choice(_BACKGROUNDS)),
        background_seed=int(rng.integers(2**31)),
    )


# ------------------------------------------------------------------------------------------------ the face model
@dataclass(frozen=True, eq=False)
class HeadFrames:
    """The head of one clip (no mouth interior).

    Attributes:
        template: ``[V,3]`` the identity at rest, model space.
        vertices: ``[T,V,3]`` float32 camera space.
        global_pose: ``[T,3]`` float32 axis-angle.
        translation: ``[T,3]`` float32 metres.
    """

    template: np.ndarray
    vertices: np.ndarray
    global_pose: np.ndarray
    translation: np.ndarray


@dataclass(frozen=True, eq=False)
class PortraitAssets:
    """The procedural head loaded once: the model in FLAME form and the jaw-only form the speech generator uses.

    Attributes:
        face: the procedural face (model dict, masks, lip ids).
        flame: ``motion.face.flame.FLAME`` over it (``N_SHAPE`` identity, the named expression columns).
        jaw_face: the speech generator's jaw-only model (lip-contact calibration).
        faces: ``[F,3]`` int64 head faces.
    """

    face: ProceduralFace
    flame: torch.nn.Module
    jaw_face: JawFace
    faces: np.ndarray

    @staticmethod
    def load() -> PortraitAssets:
        """Build (once per process) and load the procedural head."""
        return _load_assets()

    def speech_motion(self, style: PortraitStyle, n_frames: int, fps: float) -> FaceControls:
        """Expression and jaw of a random sentence, ``n_frames`` at ``fps`` from a random start; frame 0 at rest."""
        speaker = style.speaker
        rng = np.random.default_rng([style.seed, 2])
        need = n_frames / fps
        utterance = generate_utterance(
            rng, rate=speaker.rate, min_seconds=max(1.5, need + 0.2), max_seconds=max(3.5, need + 1.0), fps=60
        )
        trajectory = build_trajectory(utterance, speaker)
        idle = draw_idle_motion(rng, speaker, utterance.duration)
        times = rng.uniform(0.0, max(utterance.duration - need, 0.0)) + np.arange(n_frames) / fps
        face = self.face
        contact = calibrate_lip_contact(
            self.jaw_face, np.asarray(speaker.shape), face.upper_lip, face.lower_lip
        )
        controls = face_controls(trajectory, idle, times, EXPRESSION_NAMES, len(EXPRESSION_NAMES), contact)
        controls.expression[0] = 0.0  # the reference frame: the face at rest
        controls.jaw_pose[0] = 0.0
        return controls

    def head_vertices(
        self, style: PortraitStyle, motion: FaceControls, n_frames: int, fps: float, size: int
    ) -> HeadFrames:
        """Pose the identity under the style's camera framing and head motion."""
        flame = self.flame
        shape = torch.as_tensor(np.asarray(style.shape, np.float32))[None]
        with torch.no_grad():
            template = flame(FLAMEParams(shape=shape, expression=torch.zeros(1, 1, len(EXPRESSION_NAMES))))
        template = template.vertices[0, 0].double().numpy()
        neck_y = float((flame.J_regressor.double().numpy() @ template)[1, 1])
        top = float(template[:, 1].max())
        focal = style.focal_factor * size
        distance = focal * (top - neck_y) / (style.head_fraction * size)
        metres_per_px = distance / focal
        centre = (
            style.offset[0] * size * metres_per_px,
            -0.5 * (top + neck_y) - style.offset[1] * size * metres_per_px,
            -distance,
        )
        yaw, pitch, roll = style.motion_deg
        hm = head_motion(
            n_frames,
            fps,
            style.seed,
            yaw_deg=yaw,
            pitch_deg=pitch,
            roll_deg=roll,
            drift_m=0.006,
            max_hz=0.6,
            centre=centre,
            light_spread_deg=0.0,
        )
        b_yaw, b_pitch, b_roll = np.radians(style.base_pose_deg)
        base = Rotation.from_euler("ZYX", [b_roll, b_yaw, b_pitch])  # head_motion's convention
        pose = (Rotation.from_rotvec(hm.global_pose) * base).as_rotvec().astype(np.float32)
        with torch.no_grad():
            out = flame(
                FLAMEParams(
                    shape=shape,
                    expression=torch.as_tensor(motion.expression, dtype=torch.float32)[None],
                    jaw_pose=torch.as_tensor(motion.jaw_pose, dtype=torch.float32)[None],
                    global_pose=torch.as_tensor(pose)[None],
                    translation=torch.as_tensor(hm.translation)[None],
                )
            )
        return HeadFrames(template, out.vertices[0].numpy(), pose, np.asarray(hm.translation, np.float32))

    def mouth(self, template: np.ndarray, seed: int) -> MouthInterior:
        """Teeth and tongue for an identity at rest (model space)."""
        return build_mouth_interior(template, self.face.model, self.face.masks, seed)


@lru_cache(maxsize=1)
def _load_assets() -> PortraitAssets:
    face = build_procedural_face()
    with tempfile.TemporaryDirectory() as tmp:  # FLAME reads files; its buffers then live in memory
        paths = write_procedural_face(tmp)
        flame = FLAME(str(paths.model), n_shape=N_SHAPE, n_expression=len(EXPRESSION_NAMES)).eval()
    # the speech generator's model is the same FLAME restricted to the jaw (talk.synth.face.load_face)
    return PortraitAssets(face, flame, JawFace.from_flame(flame), np.asarray(face.model["f"], np.int64))


# ------------------------------------------------------------------------------------------------ appearance
def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@lru_cache(maxsize=1)
def _hair_and_brow_weights() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-vertex ``(hair [V], brows [V], skin [V] bool)`` weights on the procedural head's template: the scalp
    with a soft frontal hairline, and an arched band above each eye region (where ``procedural_albedo`` paints
    its hair and brows)."""
    face = build_procedural_face()
    v = np.asarray(face.model["v_template"])
    x, y, z = v.T
    masks = face.masks
    isin = np.zeros((len(v), len(masks)), bool)
    names = list(masks)
    for k, name in enumerate(names):
        isin[masks[name], k] = True
    region = {name: isin[:, k] for k, name in enumerate(names)}
    hair = region["scalp"] * np.where((z > 0.0) & (y > 0.06), _smoothstep(0.07, 0.085, y), 1.0)
    brows = np.zeros(len(v))
    for side in ("left", "right"):
        eye = v[masks[f"{side}_eye_region"]]
        u = (x - eye[:, 0].mean()) / (0.5 * np.ptp(eye[:, 0]))
        arch = eye[:, 1].max() + 0.0005 + 0.004 * (1.0 - u**2)
        thick = 0.0055 * (1.0 - 0.5 * _smoothstep(0.0, 1.0, np.abs(u)))
        band = (1.0 - _smoothstep(0.7, 1.0, np.abs(u))) * (
            1.0 - _smoothstep(0.5, 1.0, np.abs(y - arch) / thick)
        )
        brows = np.maximum(brows, band * (z > 0.04))
    skin = ~(region["left_eyeball"] | region["right_eyeball"] | region["mouth_interior"])
    return hair, brows * skin, skin


def portrait_albedo(assets: PortraitAssets, style: PortraitStyle) -> np.ndarray:
    """``[V,3]`` float32 head albedo of a style: the procedural texture, tinted skin, recoloured hair and brows,
    times the light's colour."""
    color = procedural_albedo(style.albedo_seed).astype(np.float64)
    hair, brows, skin = _hair_and_brow_weights()
    color[skin] *= np.asarray(style.skin_tint)
    rng = np.random.default_rng([style.seed, 3])
    v = np.asarray(assets.face.model["v_template"])
    streak = 1.0 + 0.2 * np.sin(v[:, 0] * 900.0 + rng.uniform(0, 6.3)) * np.sin(
        v[:, 2] * 700.0 + v[:, 1] * 300.0
    )
    hair_rgb = np.asarray(style.hair_color)[None] * streak[:, None]
    color += hair[:, None] * (hair_rgb - color)
    color += 0.85 * brows[:, None] * (np.asarray(style.brow_color) - color)
    color *= np.asarray(style.light_color)
    return np.clip(color, 0.0, 1.0).astype(np.float32)


def _value_noise(rng: np.random.Generator, size: int, cells: int, channels: int) -> np.ndarray:
    grid = torch.as_tensor(rng.uniform(0.0, 1.0, (1, channels, cells, cells)), dtype=torch.float32)
    up = torch.nn.functional.interpolate(grid, size=(size, size), mode="bicubic", align_corners=True)
    return up[0].permute(1, 2, 0).numpy()


def portrait_background(style: PortraitStyle, size: int) -> np.ndarray:
    """``[size,size,3]`` uint8 still background of a style."""
    if style.background == "textured":
        return textured_background((size, size), style.background_seed)
    rng = np.random.default_rng([style.background_seed, 4])
    c0, c1 = rng.uniform(0.1, 0.85, 3), rng.uniform(0.1, 0.85, 3)
    if style.background == "gradient":
        angle = rng.uniform(0.0, 2.0 * np.pi)
        yy, xx = np.meshgrid(np.linspace(-0.5, 0.5, size), np.linspace(-0.5, 0.5, size), indexing="ij")
        t = np.clip(0.5 + np.cos(angle) * xx + np.sin(angle) * yy, 0.0, 1.0)[..., None]
        image = (1 - t) * c0 + t * c1
        image *= 1.0 - 0.25 * (xx**2 + yy**2)[..., None]  # a soft vignette
    else:  # coloured clutter: two octaves of value noise between two colours
        t = 0.65 * _value_noise(rng, size, 5, 1) + 0.35 * _value_noise(rng, size, 17, 1)
        image = (1 - t) * c0 + t * c1
        image *= 0.85 + 0.3 * _value_noise(rng, size, 9, 3)
    image = image + rng.normal(0.0, 0.01, image.shape)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
