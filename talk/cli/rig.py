"""``talk rig preview`` (a contact sheet of a blendshape rig) and ``talk export-glb`` (speech -> an animated avatar).

Their options are these functions' signatures; importing this module imports no torch.
"""

from __future__ import annotations

from pathlib import Path


def rig_preview(
    out: Path, rig: Path | None = None, mesh: str | None = None, size: int = 128, columns: int = 8
) -> None:
    """Render the neutral and every ARKit target of a rig at weight 1 into one labelled PNG.

    Args:
        out: The .png to write.
        rig: An avatar (.glb/.gltf with morph targets, a folder of OBJ targets, or .npz); its targets are shown in
            ARKit order, missing ones as the neutral. Default: the procedural head's ARKit rig.
        mesh: Name of the avatar mesh to read (default: the meshes with the most ARKit targets).
        size: Tile size in pixels.
        columns: Tiles per row.
    """
    from motion.face.blendshapes import load_rig, procedural_arkit_rig
    from talk.contact_sheet import render_contact_sheet
    from talk.errors import UserError

    if Path(out).suffix.lower() != ".png":
        raise UserError(f"--out {out}: name a .png file for the contact sheet.")
    colors = None
    if rig is None:
        from talk.synth.albedo import procedural_albedo

        chosen = procedural_arkit_rig()
        colors = procedural_albedo()  # the eyes' colours make the gaze targets visible
    else:
        reordered = load_rig(rig, mesh=mesh).to_arkit()
        print(reordered.summary())
        chosen = reordered.rig
    path = render_contact_sheet(chosen, out, size=size, columns=columns, colors=colors)
    print(f"wrote {path} ({chosen.num_targets} targets)")


def export_glb(
    rig: Path,
    audio: Path,
    output: Path,
    checkpoint: Path | None = None,
    subject: str | None = None,
    mesh: str | None = None,
    device: str = "cpu",
    overwrite: bool = False,
) -> None:
    """Animate your ARKit-rigged avatar from speech: a .glb with a morph-weight animation, and the speech beside it.

    The model's motion is solved into ARKit-52 weights on the procedural head's ARKit rig
    (talk.pipeline.blendshapes), which are played on the avatar's targets of the same names.

    Args:
        rig: The avatar: a .glb or .gltf with ARKit-named morph targets (any spelling: eyeBlinkLeft, eyeBlink_L, ...).
        audio: Input speech (wav, flac, ogg, mp3; any rate, any channels).
        output: The .glb to write; the speech is written beside it as a .wav of the same name.
        checkpoint: Checkpoint written by `talk fit`, or a file written by `talk export` (default: the model that
            ships with talk, talk/pretrained/default.pt).
        subject: Subject whose style drives the motion (default: the first training subject).
        mesh: Name of the avatar mesh to animate (default: the meshes with the most ARKit targets).
        device: Torch device of the model.
        overwrite: Replace an existing output.
    """
    import soundfile as sf
    import torch

    from audio.io import load_audio
    from motion.face.blendshapes.gltf_animation import write_animated_glb
    from talk.errors import UserError
    from talk.files import write_atomic
    from talk.pipeline.animate import check_output
    from talk.pipeline.blendshapes import weight_collector
    from talk.pipeline.load import from_checkpoint

    output = check_output(output, ".glb")
    sound = output.with_suffix(".wav")
    if output.suffix.lower() != ".glb":
        raise UserError(f"--output {output}: name a .glb file.")
    for path in (output, sound):
        if path.exists() and not overwrite:
            raise UserError(f"output {path} exists; pass --overwrite to replace it.")
    if not Path(rig).exists():
        raise UserError(f"--rig {rig} not found; name your avatar's .glb or .gltf.")
    if not Path(audio).is_file():
        raise UserError(f"audio file {audio} not found.")
    if checkpoint is None:
        from talk.pretrained import default_model

        checkpoint = default_model()
    model = from_checkpoint(checkpoint, device)
    assets = model.require_assets()
    wav = torch.from_numpy(load_audio(Path(audio), sample_rate=assets.sample_rate))
    solver = weight_collector(model, assets.template(subject))
    for piece in model.generate_pieces(wav, subject=subject, on_params=solver.add_params):
        solver.add(piece)
    report = write_animated_glb(rig, output, solver.weights(), assets.fps, mesh=mesh)
    write_atomic(
        sound, lambda f: sf.write(f, wav.numpy(), assets.sample_rate, subtype="PCM_16", format="WAV")
    )
    print(report.summary())
    print(f"speech: {sound}")
