"""``talk track``: talking videos -> a training folder (speech, per-frame face-model parameters, previews, manifest)."""

from __future__ import annotations

from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


def _videos(inputs: list[str]) -> list[tuple[Path, str | None]]:
    """Video files of the inputs (folders searched recursively), each with the subject its folder implies."""
    from talk.errors import UserError

    found: list[tuple[Path, str | None]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            if not files:
                raise UserError(f"{path} holds no video files ({', '.join(VIDEO_SUFFIXES)}).")
            # videos in a sub-folder of the given folder belong to the sub-folder's subject
            found += [
                (p, p.relative_to(path).parts[0] if len(p.relative_to(path).parts) > 1 else None)
                for p in files
            ]
        elif path.is_file():
            found.append((path, None))
        else:
            raise UserError(f"{path} does not exist; pass video files or folders of videos.")
    names = [p.stem for p, _ in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"several videos are named {duplicates[0]!r}; video file names must be unique.")
    return found


def track(
    videos: list[str],
    out: Path,
    subject: str | None = None,
    split: str = "auto",
    face_model: Path | None = None,
    landmark_embedding: Path | None = None,
    n_shape: int = 20,
    n_expression: int = 11,
    preview: bool = True,
    min_detection_rate: float = 0.5,
    overwrite: bool = False,
    progress: bool = True,
) -> None:
    """Track talking videos into a folder that `talk fit` trains on (ManifestDataModule, manifest.jsonl).

    Per video: the speech as 16 kHz wav, per-frame FLAME-format parameters (one identity, smooth expression,
    jaw and head pose, fitted to MediaPipe's 468 face landmarks), a preview mp4 and a manifest line. Finished
    videos are skipped when run again, so an interrupted run resumes.

    Args:
        videos: Video files and/or folders of videos (searched recursively); given first, before the options.
        out: Output folder (wav/, flame/, landmarks/, preview/, tracks/, manifest.jsonl).
        subject: Subject of every video; default: the sub-folder of a given folder a video sits in, else the
            video's name.
        split: train, val, test, or auto (a stable 80/10/10 split by name).
        face_model: FLAME-format model file; default: the procedural head (written to OUT/face_model.pkl).
        landmark_embedding: FLAME's mediapipe_landmark_embedding.npz (needed with --face_model).
        n_shape: Identity coefficients fitted.
        n_expression: Expression coefficients fitted.
        preview: Write preview/<name>.mp4 (the fitted mesh and landmarks over the video).
        min_detection_rate: Refuse a video whose face is found in fewer of its frames.
        overwrite: Track again videos that are already finished.
        progress: Show a progress bar.
    """
    import sys

    from talk.errors import UserError
    from talk.track.track_video import Tracker
    from talk.track.video import open_video

    if split not in ("auto", "train", "val", "test"):
        raise UserError(f"--split must be auto, train, val or test, got {split!r}.")
    found = _videos(videos)
    tracker = Tracker(
        out, face_model, landmark_embedding, n_shape=n_shape, n_expression=n_expression, preview=preview,
        min_detection_rate=min_detection_rate,
    )  # fmt: skip
    from tqdm import tqdm

    done = skipped = 0
    for path, folder_subject in found:
        if not overwrite and tracker.finished(path.stem) is not None:
            skipped += 1
            continue
        video = open_video(path)
        with tqdm(
            total=video.info.n_frames, desc=path.name, unit="frame", disable=not progress, file=sys.stderr
        ) as bar:
            record = tracker.track(
                video,
                subject=subject or folder_subject,
                split=split,
                overwrite=overwrite,
                on_frames=bar.update,
            )
        done += 1
        print(
            f"{record.name}: {record.frames} frames, face in {record.detection_rate:.0%}, landmark residual "
            f"{record.mean_residual_px:.2f} px ({100 * record.normalized_residual:.1f}% of the eye distance), "
            f"{record.frames / record.seconds:.1f} frames/s"
        )
    manifest = tracker.write_manifest()
    print(f"tracked {done} videos, {skipped} already done; {manifest} lists {len(tracker.records())}")
