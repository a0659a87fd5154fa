"""Scale-out and resume through the `talk` console script as users run it: DDP on 2 CPU processes (gloo), the
two-node launch of torchrun simulated on this machine, `talk test` on 2 processes, and a SIGKILLed run resumed
with `--ckpt_path last`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.talk.clitools import ENV, ROOT, small_overrides, talk

TALK = Path(sys.executable).with_name("talk")  # the console script (`pip install -e .`)
# Each process on one thread: two processes share the 2 cores of CI; the repository on the path for ddp_probe.
DDP_ENV = {
    **ENV,
    "OMP_NUM_THREADS": "1",
    "PYTHONPATH": os.pathsep.join([str(ROOT), ENV.get("PYTHONPATH", "")]),
}
CPU_DDP = ["--trainer.accelerator=cpu", "--trainer.strategy=ddp", "--trainer.logger=false"]
PROBE = "--trainer.callbacks+=tests.talk.ddp_probe.Probe"
CONFIGS = ROOT / "experiments" / "synthetic"
# The LM's first update under DDP against one process: dropout, token corruption and guidance dropout draw masks of
# another shape per process, and the audio of each process's batch is padded to another length.
LM_FIRST_STEP = 0.03  # measured 0.011; the validation loss after the epoch agreed to 0.02%


def console(*args: str, cwd: Path) -> None:
    """``talk ARGS`` through the installed console script, in a new process (one thread, as each DDP process)."""
    proc = subprocess.run(
        [str(TALK), *args], cwd=cwd, env=DDP_ENV, capture_output=True, text=True, timeout=400
    )
    assert proc.returncode == 0, f"talk {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"


def probes(run: Path) -> list[dict]:
    return [torch.load(p, weights_only=True) for p in sorted(run.glob("probe_rank*.pt"))]


def relative(a: dict, b: dict) -> float:
    """``||a - b|| / ||b||`` over all the floating-point tensors of two state dicts."""
    keys = [k for k in b if b[k].is_floating_point()]
    diff = sum(float((a[k] - b[k]).double().pow(2).sum()) for k in keys)
    return (diff / sum(float(b[k].double().pow(2).sum()) for k in keys)) ** 0.5


@pytest.fixture(scope="module")
def tokenizer_runs(synth_root, tmp_path_factory):
    """The tokenizer trained for 2 epochs on global batches of 4: one process, then DDP with 2 x 2."""
    runs = {}
    for name, extra in (("single", ["--data.init_args.batch_size=4"]),
                        ("ddp", ["--data.init_args.batch_size=2", "--trainer.devices=2"])):  # fmt: skip
        run = tmp_path_factory.mktemp(f"tokenizer_{name}")
        console(
            "fit", "-c", str(CONFIGS / "tokenizer.yaml"), *small_overrides(synth_root, run), *CPU_DDP, PROBE,
            "--trainer.max_epochs=2", *extra, cwd=run,
        )  # fmt: skip
        runs[name] = run
    return runs


def test_ddp_through_the_console_script_matches_one_process(tokenizer_runs):
    """`talk fit --trainer.strategy=ddp --trainer.devices=2` (the console script, re-executed by Lightning's
    launcher) trains like one process on the same global batches: the same batches (talk.data.sampler), the same
    random draws, k-means on the whole global batch, gradients of the global batch's mean loss. The first update
    agrees to float rounding; after that, rounding flips a nearest-code choice now and then (discrete), so six
    steps later the validation loss agrees to 10%."""
    single, ddp = probes(tokenizer_runs["single"]), probes(tokenizer_runs["ddp"])
    assert len(single) == 1 and len(ddp) == 2 and ddp[0]["world_size"] == 2
    assert relative(ddp[0]["first_step"], single[0]["first_step"]) < 1e-3
    loss_single, loss_ddp = single[0]["metrics"]["val/loss"], ddp[0]["metrics"]["val/loss"]
    assert abs(loss_ddp - loss_single) / loss_single < 0.1
    # rank 0 alone wrote the checkpoints, atomically: nothing else is left in the folder
    names = sorted(p.name for p in (tokenizer_runs["ddp"] / "checkpoints").iterdir())
    assert names == ["best.ckpt", "last.ckpt"]


def test_every_rank_holds_the_same_codebooks_after_dead_code_replacement(tokenizer_runs):
    rank0, rank1 = probes(tokenizer_runs["ddp"])
    assert rank0["replaced"] > 0 and rank0["replaced"] == rank1["replaced"]  # replacement really ran
    assert torch.equal(rank0["codebooks"], rank1["codebooks"])
    assert all(torch.equal(rank0["weights"][k], rank1["weights"][k]) for k in rank0["weights"])


def test_ddp_metrics_equal_one_process_on_splits_not_divisible_by_the_world(lm_ckpt, synth_root, tmp_path):
    """Three validation and three test sequences on 2 processes (the distributed sampler repeats one to pad the
    shards): every sequence counts once, and `talk validate` / `talk test` give one process's metrics exactly
    (batch size 1: the same computation per sequence; sampled generation draws per sequence, so sharding does
    not change a sequence's tokens)."""
    results, validation = {}, {}
    three = "[SYN_08_M,SYN_09_F,SYN_10_M]"
    for name, extra in (("single", []), ("ddp", ["--trainer.devices=2", "--trainer.strategy=ddp"])):
        run = tmp_path / name
        common = ["-c", str(CONFIGS / "lm.yaml"), *small_overrides(synth_root, run), f"--ckpt_path={lm_ckpt}",
                  "--data.init_args.batch_size=1", "--trainer.accelerator=cpu", "--trainer.logger=false", *extra]  # fmt: skip
        command = talk if name == "single" else console
        command("test", *common, f"--data.init_args.test_subjects={three}", cwd=tmp_path)
        command("validate", *common, f"--data.init_args.val_subjects={three}", PROBE, cwd=tmp_path)
        results[name] = json.loads((run / "metrics.json").read_text())["metrics"]
        validation[name] = json.loads((run / "probe_validate_rank0.json").read_text())
        rows = (run / "metrics_per_sequence.csv").read_text().splitlines()[1:]
        names = [r.split(",")[1] for r in rows if r.startswith("model,")]
        assert names == ["SYN_08_M_sentence01", "SYN_09_F_sentence01", "SYN_10_M_sentence01"]
    assert results["ddp"] == results["single"]
    generated = ("val/lve", "val/lve_mm", "val/fdd", "val/abs_fdd", "val/mve")
    assert {k: validation["ddp"][k] for k in generated} == {k: validation["single"][k] for k in generated}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_with_torchrun(lm_ckpt, tokenizer_ckpt, synth_root, tmp_path):
    """Two `torchrun --nnodes=2` launches on this machine (node ranks 0 and 1, one process each) train the LM
    as one job of 2 processes: both finish, rank 0 writes the checkpoints, both hold the same weights."""
    run = tmp_path / "run"
    port = str(_free_port())
    args = ["fit", "-c", str(CONFIGS / "lm.yaml"), *small_overrides(synth_root, run), *CPU_DDP, PROBE,
            f"--model.init_args.tokenizer_checkpoint={tokenizer_ckpt}", "--trainer.num_nodes=2",
            "--trainer.devices=1", "--trainer.max_epochs=1", "--trainer.check_val_every_n_epoch=1",
            "--data.init_args.batch_size=2"]  # fmt: skip
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                f"--node_rank={rank}",
                "--nproc_per_node=1",
                "--master_addr=127.0.0.1",
                f"--master_port={port}",
                "--no-python",
                str(TALK),
                *args,
            ],
            cwd=tmp_path,
            env=DDP_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=400)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    rank0, rank1 = probes(run)
    assert rank0["world_size"] == 2
    assert all(torch.equal(rank0["weights"][k], rank1["weights"][k]) for k in rank0["weights"])
    # and like one process on the same global batches (4)
    one = tmp_path / "one"
    console(*[a for a in args if not a.startswith(("--trainer.num_nodes", "--data.init_args.batch_size"))],
            *small_overrides(synth_root, one), "--data.init_args.batch_size=4", cwd=tmp_path)  # fmt: skip
    (single,) = probes(one)
    assert relative(rank0["first_step"], single["first_step"]) < LM_FIRST_STEP
    assert abs(rank0["metrics"]["val/loss"] / single["metrics"]["val/loss"] - 1) < 0.01
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_a_killed_run_resumes_to_the_uninterrupted_result(tokenizer_ckpt, synth_root, tmp_path):
    """SIGKILL in the middle of epoch 2, then `--ckpt_path last`: the same losses, metrics and weights as a run
    that was never interrupted (RNG states, sampler order, optimiser, LR schedule, and the seeded generation of
    validation all continue), and the resume point loads with weights_only=True."""
    common = ["fit", "-c", str(CONFIGS / "lm.yaml"), f"--model.init_args.tokenizer_checkpoint={tokenizer_ckpt}",
              "--trainer.max_epochs=2", "--trainer.check_val_every_n_epoch=1", "--trainer.logger=false",
              "--trainer.accelerator=cpu", PROBE]  # fmt: skip
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    console(*common, *small_overrides(synth_root, whole), cwd=tmp_path)
    killed = subprocess.run(
        [str(TALK), *common, *small_overrides(synth_root, broken), "--trainer.callbacks+=tests.talk.ddp_probe.KillAt",
         "--trainer.callbacks.epoch=1", "--trainer.callbacks.batch=1"],
        cwd=tmp_path, env=DDP_ENV, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-3000:]
    last = broken / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0
    console(*common, *small_overrides(synth_root, broken), "--ckpt_path=last", cwd=tmp_path)
    a, b = probes(whole)[0], probes(broken)[0]
    assert a["metrics"] == b["metrics"]
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    epochs = [json.loads(line) for line in (whole / "probe_epochs_rank0.jsonl").read_text().splitlines()]
    resumed = [json.loads(line) for line in (broken / "probe_epochs_rank0.jsonl").read_text().splitlines()]
    assert resumed[-1] == epochs[-1] and len(epochs) == 2
