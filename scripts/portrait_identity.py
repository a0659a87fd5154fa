"""The portrait path tried as a new user would, on real photos: identity, still background, mouth that follows speech.

For each photo (default: matplotlib's ``grace_hopper.jpg`` and scikit-image's ``astronaut``, both shipped in those
packages), with a trained portrait generator and a motion model:

- **identity**: the neutral frame (the fitted head, no motion) against the photo, PSNR over the generator's crop
  (what it redraws) outside the mouth box (the fitted lips' box, projected from the fitted mesh, widened by 20% of
  its size on every side); goal > 30 dB;
- **still background**: the largest change of any pixel outside the crop over the whole animation (0: untouched);
- **mouth synchrony**: :mod:`talk.mouth_sync` on the generated crops of the animation of ``--audio`` (default: the
  bundled ARCTIC recording) against the driving mesh's mouth opening, beside the same figure for the warped crop
  alone (what the generator starts from).

Run: ``python scripts/portrait_identity.py --generator CKPT [--checkpoint MODEL] [--photos a.jpg b.png]``
(``--checkpoint`` defaults to the shipped model). Prints one row per photo; ``--frames DIR`` also writes the
neutral frame and a strip of animated crops per photo.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def default_photos(tmp: Path) -> list[Path]:
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    astronaut = tmp / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(astronaut)
    return [Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), astronaut]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def lips_box(animator, masks: dict) -> tuple[int, int, int, int]:  # noqa: ANN001
    """``(y0, y1, x0, x1)`` in photo pixels of the fitted lips, widened by 20% of the box on every side."""
    fit = animator.fit
    uv = fit.camera.project(fit.source[None].float())[0, :, :2].numpy()[masks["lips"]]
    x0, y0, side = fit.box
    scale = side / fit.reference.shape[-1]
    xs, ys = x0 + uv[:, 0] * scale, y0 + uv[:, 1] * scale
    dx, dy = 0.2 * (xs.max() - xs.min()), 0.2 * (ys.max() - ys.min())
    return int(ys.min() - dy), int(math.ceil(ys.max() + dy)), int(xs.min() - dx), int(math.ceil(xs.max() + dx))


def measure(photo: Path, net, size: int, model, wav: torch.Tensor, frames_dir: Path | None) -> dict:  # noqa: ANN001
    from talk.mouth_sync import MouthSync
    from talk.pipeline.portrait import PortraitAnimator
    from talk.synth.portrait_style import PortraitAssets

    animator = PortraitAnimator.from_photo(photo, net, size)
    fit = animator.fit
    neutral = animator.frame(animator.posed(fit.neutral[None])[0])
    h, w = fit.photo.shape[:2]
    x0, y0, side = fit.box
    inside = np.zeros((h, w), bool)
    inside[max(y0, 0) : y0 + side, max(x0, 0) : x0 + side] = True
    my0, my1, mx0, mx1 = lips_box(animator, PortraitAssets.load().face.masks)
    keep = inside.copy()
    keep[max(my0, 0) : my1, max(mx0, 0) : mx1] = False
    identity = psnr(neutral[keep], fit.photo[keep])
    sync = {"generator": MouthSync(), "warp_only": MouthSync()}
    moved, strip, t = 0, [], 0
    with torch.inference_mode():
        for piece in model.generate_pieces(wav, template=fit.neutral):
            for mesh in animator.posed(piece.cpu()):
                out, x = animator.crop(mesh)
                frame = animator.compose(mesh, out, x)
                moved = max(moved, int(np.abs(frame.astype(np.int16) - fit.photo)[~inside].max(initial=0)))
                out = out[None]
                sync["generator"].update(out, x["mouth_mask"][None], ["clip"], [t])
                sync["warp_only"].update(x["warped"][None], x["mouth_mask"][None], ["clip"], [t])
                if frames_dir is not None and t % 10 == 0:
                    strip.append((out[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
                t += 1
    if frames_dir is not None:
        from PIL import Image

        frames_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(neutral).save(frames_dir / f"{photo.stem}_neutral.png")
        Image.fromarray(np.concatenate(strip[:8], axis=1)).save(frames_dir / f"{photo.stem}_strip.png")
    return {"photo": photo.name, "fit_px": fit.residual_px, "identity_psnr": identity, "background_max": moved,
            "sync": sync["generator"].compute(), "sync_warp": sync["warp_only"].compute(), "frames": t}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", required=True, help="checkpoint of experiments/synthetic/portrait.yaml")
    parser.add_argument("--checkpoint", default=None, help="motion model (default: the shipped one)")
    parser.add_argument("--photos", nargs="*", default=None)
    parser.add_argument("--audio", default=str(ROOT / "assets" / "speech" / "arctic_a0009.wav"))
    parser.add_argument("--frames", default=None, help="write the neutral frame and a strip of crops here")
    args = parser.parse_args()
    import tempfile

    from audio.io import load_audio
    from talk.pipeline import Pipeline
    from talk.pipeline.portrait import load_portrait_generator
    from talk.pretrained import DEFAULT_MODEL

    torch.set_num_threads(2)
    model = Pipeline.from_checkpoint(args.checkpoint or DEFAULT_MODEL).eval()
    net, size = load_portrait_generator(args.generator)
    wav = torch.from_numpy(load_audio(args.audio, model.require_assets().sample_rate))
    with tempfile.TemporaryDirectory() as tmp:
        photos = [Path(p) for p in args.photos] if args.photos else default_photos(Path(tmp))
        print("| photo | fit residual (px) | identity PSNR outside the mouth box (dB) | background max change | "
              "mouth sync generator | mouth sync warp only | frames |\n| --- | --- | --- | --- | --- | --- | --- |")
        for photo in photos:
            r = measure(photo, net, size, model, wav, Path(args.frames) if args.frames else None)
            print(f"| {r['photo']} | {r['fit_px']:.2f} | {r['identity_psnr']:.2f} | {r['background_max']} | "
                  f"{r['sync']:+.3f} | {r['sync_warp']:+.3f} | {r['frames']} |")  # fmt: skip


if __name__ == "__main__":
    main()
