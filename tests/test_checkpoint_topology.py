"""A checkpoint restores on any topology, and every command loads exactly the step it names.

Checkpoints are written by real training runs on 2 CPU devices (parameters split over fsdp,
so both devices wrote shards) and on 2 processes x 2 devices; they are read back on 1 device,
8 devices and 2 processes x 4 devices by `load_model` (eval, sample, verifier_data, export)
and by `train.init_from`, and must give the same parameters bit for bit. A damaged latest step
stops inference with one line naming it, and training resume goes back one step, saying so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_tokenizer
from test_multihost import SUPPORT as MULTIHOST_SUPPORT
from test_multihost import _free_port
from test_train_cli import SUPPORT as TRAIN_SUPPORT
from test_train_cli import args, rows, subprocess_env

# The trainer of `digest --init-from-config`: the model `args` trains (test_train_support.SMALL).
MODEL = ["model.vocab_size=320", "model.d_model=64", "model.n_layers=2", "model.n_heads=4",
         "model.d_mlp=128", "model.rotary_dim=8", "model.max_len=64", "data.seq_len=32",
         "train.global_batch=8"]  # fmt: skip


def spawn(script: Path, argvs: list[list[str]], devices: int, distributed: bool = False):
    """Run `script` once per argv (one process each, `devices` CPU devices per process).

    With `distributed`, the processes join one run. Returns [(returncode, stdout, stderr)].
    """
    port = _free_port()
    procs = []
    for i, argv in enumerate(argvs):
        if distributed:
            argv = [*argv, "--coordinator-address", f"127.0.0.1:{port}",
                    "--num-processes", str(len(argvs)), "--process-id", str(i)]  # fmt: skip
        procs.append(subprocess.Popen([sys.executable, str(script), *argv], env=subprocess_env(devices),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))  # fmt: skip
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        out.append((p.returncode, stdout, stderr))
    return out


def train(workdir: Path, tok: Path, *extra: str, processes: int = 1, devices: int = 2):
    argv = args(workdir, tok, *extra)
    return spawn(TRAIN_SUPPORT, [argv] * processes, devices, distributed=processes > 1)


def ok(results):
    for rc, _, stderr in results:
        assert rc == 0, stderr[-3000:]
    return results


def digests(ckpt: Path, processes: int, devices: int, tmp: Path, *, init_from: bool = True):
    """{what: (step, sha256)} printed by every process of `digest`; all processes agree."""
    cmd = ["digest", "--checkpoint", str(ckpt)]
    if init_from:
        cmd += ["--init-from-config", *MODEL]
    log = tmp / f"writes.{processes}x{devices}"
    results = ok(spawn(MULTIHOST_SUPPORT, [[str(log), *cmd]] * processes, devices, processes > 1))
    seen = []
    for _, stdout, _ in results:
        lines = [line.split() for line in stdout.splitlines() if line.startswith("digest ")]
        seen.append({what: (int(step), sha) for _, what, step, sha in lines})
    assert all(s == seen[0] for s in seen), seen
    return seen[0]


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Path:
    return make_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer")


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory, tok) -> Path:
    """A generator trained on 2 devices, its parameters split over them (fsdp=2): steps 2 and 4."""
    workdir = tmp_path_factory.mktemp("two_devices") / "run"
    ok(
        train(
            workdir, tok, "--config.mesh.data=1", "--config.mesh.fsdp=2", "--config.train.steps=4"
        )
    )
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()) == [2, 4]
    return workdir


def test_two_device_checkpoint_restores_bit_for_bit_on_1_and_8_devices_and_2x4(
    two_devices, tmp_path
):
    want = digests(two_devices, 1, 2, tmp_path)  # the topology that wrote it
    assert want["load_model"][0] == 4 and want["init_from"] == want["load_model"]
    for processes, devices in ((1, 1), (1, 8), (2, 4)):
        assert digests(two_devices, processes, devices, tmp_path) == want, (processes, devices)


def test_two_device_checkpoint_exports_the_same_files_on_1_and_8_devices(two_devices, tmp_path):
    files = {}
    for devices in (1, 8):
        out = tmp_path / f"hf{devices}"
        cmd = [sys.executable, "-m", "tinygsm_jax.export", "--checkpoint", str(two_devices),
               "--out", str(out)]  # fmt: skip
        p = subprocess.run(cmd, env=subprocess_env(devices), capture_output=True, text=True)
        assert p.returncode == 0, p.stderr[-3000:]
        assert "exported step 4" in p.stdout
        files[devices] = {
            f.name: f.read_bytes() for f in out.iterdir() if f.suffix == ".safetensors"
        }
    assert files[1] and files[1] == files[8]


def test_checkpoint_of_two_processes_restores_on_one_device(tmp_path, tok):
    workdir = tmp_path / "run"
    ok(train(workdir, tok, "--config.mesh.data=1", "--config.mesh.fsdp=4",
             "--config.train.steps=2", processes=2, devices=2))  # fmt: skip
    want = digests(workdir, 2, 2, tmp_path, init_from=False)
    assert want["load_model"][0] == 2
    assert digests(workdir, 1, 1, tmp_path, init_from=False) == want


# -- a damaged latest step -------------------------------------------------------------------


def damage(step_dir: Path) -> None:
    """Truncate every array file of the step (its commit marker and metadata stay)."""
    arrays = [p for p in (step_dir / "params").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert arrays
    for p in arrays:
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


@pytest.fixture
def damaged(two_devices, tmp_path) -> Path:
    workdir = tmp_path / "damaged"
    shutil.copytree(two_devices, workdir)
    damage(workdir / "checkpoints" / "4")
    return workdir


def one_line_naming_step_4(rc: int, stderr: str, workdir: Path) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1, stderr[-3000:]
    (line,) = lines
    assert line.startswith(f"error: {workdir}: step 4 cannot be read")
    assert str(workdir / "checkpoints" / "2") in line  # how to choose another


def test_damaged_latest_step_stops_export_and_eval_with_one_line(damaged, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "What is 2 + 3?", "answer": "5"}) + "\n")
    commands = [
        ["-m", "tinygsm_jax.export", "--checkpoint", str(damaged), "--out", str(tmp_path / "hf")],
        ["-m", "tinygsm_jax.eval", "--generator", str(damaged), "--dataset", f"jsonl:{questions}",
         "--n", "1", "--max-new-tokens", "4", "--out", str(tmp_path / "eval")],
    ]  # fmt: skip
    for cmd in commands:
        p = subprocess.run(
            [sys.executable, *cmd], env=subprocess_env(1), capture_output=True, text=True
        )
        one_line_naming_step_4(p.returncode, p.stderr, damaged)
    assert not (tmp_path / "hf").exists() and not (tmp_path / "eval" / "report.json").exists()
    # The step before, named by its directory, is read as asked.
    p = subprocess.run([sys.executable, "-m", "tinygsm_jax.export", "--checkpoint",
                        str(damaged / "checkpoints" / "2"), "--out", str(tmp_path / "hf")],
                       env=subprocess_env(1), capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 0 and "exported step 2" in p.stdout, p.stderr[-3000:]


def test_damaged_latest_step_two_processes_of_eval_both_stop_on_it(damaged, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "What is 2 + 3?", "answer": "5"}) + "\n")
    argv = ["eval", "--generator", str(damaged), "--dataset", f"jsonl:{questions}", "--n", "1",
            "--max-new-tokens", "4", "--out", str(tmp_path / "eval")]  # fmt: skip
    results = spawn(
        MULTIHOST_SUPPORT, [[str(tmp_path / f"w{i}"), *argv] for i in range(2)], 4, True
    )
    for rc, _, stderr in results:
        assert (
            rc != 0 and "Barrier timed out" not in stderr and "Event loop is closed" not in stderr
        )
        assert f"{damaged}: step 4 cannot be read" in stderr, stderr[-3000:]


def test_training_resume_goes_back_one_step_with_a_warning(damaged, tok):
    ((_, stdout, stderr),) = ok(train(damaged, tok, "--config.mesh.data=1", "--config.mesh.fsdp=2",
                                      "--config.train.steps=6"))  # fmt: skip
    assert f"warning: {damaged}: step 4 is incomplete or corrupt" in stderr
    assert "resuming from step 2 instead" in stderr
    assert [r["start_step"] for r in rows(damaged, "run")] == [0, 2]
    assert "steps 2->6 of 6" in stdout


def test_training_resume_in_two_processes_both_go_back_to_the_same_step(damaged, tok):
    """On 2 processes x 1 device (the writer had 1 x 2): both restore step 2 and go on together."""
    results = ok(train(damaged, tok, "--config.mesh.data=1", "--config.mesh.fsdp=2",
                       "--config.train.steps=6", processes=2, devices=1))  # fmt: skip
    (_, stdout0, stderr0), (_, stdout1, stderr1) = results
    assert "step 4 is incomplete or corrupt" in stderr0 and "resuming from step 2" in stderr0
    assert "steps 2->6 of 6" in stdout0 and stdout1 == ""
    assert [r["start_step"] for r in rows(damaged, "run")] == [0, 2]
    meta = json.loads((damaged / "checkpoints" / "6" / "meta" / "metadata").read_text())
    assert meta["data_per_process"] == [{"step": 6}, {"step": 6}]  # both went on from step 2
