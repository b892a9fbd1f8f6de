"""`python -m tinygsm_jax.train`: exact resume, preemption, multi-process, bad configs, real data."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_tokenizer
from test_train_support import SMALL, use_synthetic

from tinygsm_jax import train
from tinygsm_jax.cli import UserError

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = Path(__file__).resolve().parent / "test_train_support.py"


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Path:
    return make_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer")


def args(workdir: Path, tok: Path, *extra: str) -> list[str]:
    return [
        "--config",
        "tiny",
        "--workdir",
        str(workdir),
        f"--config.data.path={tok}",
        *SMALL,
        *extra,
    ]


def rows(workdir: Path, event: str = "step") -> list[dict]:
    lines = [json.loads(s) for s in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r["event"] == event]


def subprocess_env(devices: int, **extra: str) -> dict:
    """Fresh-process settings; reruns share one persistent compilation cache (same executables)."""
    cache = Path(os.environ.get("PYTEST_TRAIN_CACHE", "/nonexistent"))
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "PYTHONPATH": str(ROOT),
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        **extra,
    }


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    os.environ["PYTEST_TRAIN_CACHE"] = str(tmp_path_factory.mktemp("jax_cache"))
    yield
    os.environ.pop("PYTEST_TRAIN_CACHE", None)


def run_synthetic_cli(
    argv: list[str], *, devices: int = 8, env: dict | None = None, check: bool = True
):
    """The training CLI (synthetic data) in a fresh process."""
    e = subprocess_env(devices, **(env or {}))
    p = subprocess.run(
        [sys.executable, str(SUPPORT), *argv], env=e, capture_output=True, text=True, timeout=600
    )
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stderr[-3000:]}")
    return p


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory, tok) -> dict[int, float]:
    """Losses of an uninterrupted 6-step run (in this process: 8 devices, synthetic data)."""
    workdir = tmp_path_factory.mktemp("unbroken")
    with pytest.MonkeyPatch.context() as mp:
        use_synthetic(train, mp)
        assert train.main(args(workdir, tok)) == 0
    steps = rows(workdir)
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    return {r["step"]: r["loss"] for r in steps}


def test_metrics_file_describes_the_run(unbroken, tmp_path_factory):
    workdir = next(Path(p) for p in tmp_path_factory.getbasetemp().glob("unbroken*"))
    (header,) = rows(workdir, "run")
    assert header["n_devices"] == 8 and header["process_count"] == 1
    assert header["mesh"] == {"data": 8, "fsdp": 1, "tensor": 1}
    assert header["tokens_per_step"] == 8 * 32
    assert 0 < header["param_bytes_per_device"] <= 4 * header["n_params"]
    step = rows(workdir)[0]
    for key in ("step", "time", "loss", "lr", "tokens_per_sec", "mfu"):
        assert isinstance(step[key], (int, float)), key
    assert rows(workdir, "summary")[0]["reason"] == "finished"
    assert (workdir / "model.json").is_file() and (workdir / "tokenizer").is_dir()
    assert list((workdir / "tensorboard").iterdir())
    from tinygsm_jax.checkpoint import load_model

    loaded = load_model(workdir)
    assert loaded.step == 6 and loaded.config.d_model == 64


def test_sigterm_then_kill9_then_rerun_gives_the_same_losses_bit_for_bit(unbroken, tmp_path, tok):
    workdir = tmp_path / "w"
    env = {"TRAIN_TEST_WORKDIR": str(workdir)}
    # 1) SIGTERM while fetching step 3's batch: step 3 finishes, is saved, clean exit.
    p = run_synthetic_cli(
        args(workdir, tok), env={**env, "TRAIN_TEST_SIGNAL_AT": "3", "TRAIN_TEST_SIGNAL": "TERM"}
    )
    assert rows(workdir, "summary")[-1]["reason"] == "preempted" and "preempted" in p.stdout
    assert (workdir / "checkpoints" / "3").is_dir()
    # 2) rerun, kill -9 when asked for step 6, once checkpoint 4 is complete.
    p = run_synthetic_cli(
        args(workdir, tok),
        check=False,
        env={
            **env,
            "TRAIN_TEST_SIGNAL_AT": "6",
            "TRAIN_TEST_SIGNAL": "KILL",
            "TRAIN_TEST_WAIT_CKPT": "4",
        },
    )
    assert p.returncode == -9
    # 3) damage a newer step than the last good one: it is skipped with a warning, then rerun to the end.
    shutil.copytree(workdir / "checkpoints" / "4", workdir / "checkpoints" / "6")
    shutil.rmtree(workdir / "checkpoints" / "6" / "params")
    p = run_synthetic_cli(args(workdir, tok))
    assert "step 6 is incomplete or corrupt" in p.stderr
    headers = [r["start_step"] for r in rows(workdir, "run")]
    assert headers == [0, 3, 4]  # checkpointed steps are never redone
    steps = rows(workdir)
    assert [r["step"] for r in steps] == [
        1,
        2,
        3,
        4,
        5,
        5,
        6,
    ]  # step 5 ran before the kill, then again
    got = {r["step"]: r["loss"] for r in steps}  # later lines win
    assert got == unbroken  # bit for bit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_of_four_devices_equal_one_process_of_eight(unbroken, tmp_path, tok):
    port, workdir = _free_port(), tmp_path / "mp"
    e = subprocess_env(4)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(SUPPORT),
                *args(workdir, tok),
                "--coordinator-address",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            env=e,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    (header,) = rows(workdir, "run")  # only process 0 writes
    assert header["n_devices"] == 8 and header["process_count"] == 2
    meta = json.loads((workdir / "checkpoints" / "6" / "meta" / "metadata").read_text())
    assert meta["data_per_process"] == [{"step": 6}, {"step": 6}]  # each host's own data position
    got = {r["step"]: r["loss"] for r in rows(workdir)}
    np.testing.assert_allclose(
        [got[k] for k in sorted(got)], [unbroken[k] for k in sorted(unbroken)], rtol=2e-4
    )


# -- bad configuration: one clear line, before anything is compiled ----------------------------


@pytest.fixture
def no_compile(monkeypatch):
    use_synthetic(train, monkeypatch)

    def refuse(*a, **k):
        raise AssertionError("compiled before the configuration was checked")

    monkeypatch.setattr(train, "make_trainer", refuse)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--config.mesh.data=3"], "does not divide the 8 available devices"),
        (
            ["--config.mesh.data=2", "--config.mesh.fsdp=4", "--config.train.global_batch=12"],
            "not divisible by the mesh's data*fsdp = 8 (data=2xfsdp=4xtensor=1); on CPU every "
            "core is a device",
        ),
        (["--config.train.micro_batch=2"], "micro_batch 2 must divide"),
        (["--config.train.bogus=1"], "unknown config key: train.bogus"),
        (["--config.objective=verifier"], "trains model.head='value'"),
        (["--config.model.vocab_size=64"], "smaller than the tokenizer's"),
        (["--config.data.seq_len=128"], "exceeds model.max_len"),
        (
            [
                "--config.objective=verifier",
                "--config.model.head=value",
                "--config.train.rank_loss_weight=0.5",
            ],
            "set --config.data.group_by_question=True",
        ),
        (["--config.model.dropout=1.5"], "model.dropout must be in [0, 1)"),
    ],
    ids=[
        "mesh",
        "batch",
        "micro_batch",
        "unknown_key",
        "objective_head",
        "vocab",
        "seq_len",
        "rank_loss",
        "dropout",
    ],
)
def test_bad_configuration_is_one_line_before_compiling(no_compile, tmp_path, tok, extra, message):
    with pytest.raises(UserError, match=re.escape(message)) as e:
        train.main(args(tmp_path / "w", tok, *extra))
    assert "\n" not in str(e.value)


def test_workdir_of_another_model_is_refused(no_compile, tmp_path, tok):
    from tinygsm_jax.checkpoint import write_model_info
    from tinygsm_jax.model import ModelConfig

    cfg = ModelConfig(
        vocab_size=320, d_model=32, n_layers=2, n_heads=4, d_mlp=128, rotary_dim=8, max_len=64
    )
    write_model_info(tmp_path / "w", cfg, "generator", tok)
    with pytest.raises(UserError, match="holds a different model \\(d_model: 32 -> 64\\)"):
        train.main(args(tmp_path / "w", tok))


def test_data_built_with_another_tokenizer_than_init_from_is_refused(no_compile, tmp_path, tok):
    import jax
    from flax import nnx

    from tinygsm_jax.checkpoint import save_model
    from tinygsm_jax.model import ModelConfig, Phi

    other = make_tokenizer(
        tmp_path / "other", texts=["completely different words 1 2 3", "x = y + z"]
    )
    cfg = ModelConfig(
        vocab_size=320, d_model=64, n_layers=2, n_heads=4, d_mlp=128, rotary_dim=8, max_len=64
    )
    with jax.default_device(jax.devices()[0]):
        save_model(tmp_path / "gen", Phi(cfg, rngs=nnx.Rngs(0)), other)
    with pytest.raises(UserError, match="built with another tokenizer"):
        train.main(args(tmp_path / "w", tok, f"--config.train.init_from={tmp_path / 'gen'}"))
    with pytest.raises(UserError, match="model.d_model is 64, config has 128"):
        train.main(
            args(
                tmp_path / "w",
                tok,
                f"--config.train.init_from={tmp_path / 'gen'}",
                "--config.model.d_model=128",
            )
        )


def test_bad_configuration_from_the_command_line_exits_2_with_one_line(tmp_path, tok):
    p = run_synthetic_cli(args(tmp_path / "w", tok, "--config.mesh.tensor=3"), check=False)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "error: mesh {'data': -1, 'fsdp': 1, 'tensor': 3} does not divide the 8 available devices"
    ]
    assert not (tmp_path / "w").exists()


# -- real data: the data engineer's builder and pipeline, generator then verifier ----------------


@pytest.mark.slow
def test_generator_then_verifier_on_built_data_sets(tmp_path, tok):
    from tinygsm_jax.checkpoint import load_model
    from tinygsm_jax.data.builder import build_dataset
    from tinygsm_jax.solution_format import make_program

    problems, candidates = tmp_path / "problems.jsonl", tmp_path / "candidates.jsonl"
    with problems.open("w") as f, candidates.open("w") as g:
        for i in range(64):
            q = f"Tom has {i} apples and buys {i + 3} more. How many apples does Tom have now?"
            body = f"    apples = {i}\n    bought = {i + 3}\n    result = apples + bought\n    return result\n"
            f.write(json.dumps({"question": q, "code": make_program(q, body)}) + "\n")
            wrong = body.replace("apples + bought", "apples - bought")
            g.write(
                json.dumps(
                    {
                        "question": q,
                        "code": make_program(q, body if i % 2 else wrong),
                        "label": i % 2,
                    }
                )
                + "\n"
            )
    build_dataset([str(problems)], str(tmp_path / "gen_data"), tokenizer_dir=str(tok))
    build_dataset([str(candidates)], str(tmp_path / "ver_data"), tokenizer_dir=str(tok))
    small = [a for a in SMALL if "seq_len" not in a and "max_len" not in a]
    common = ["--config.data.seq_len=128", "--config.model.max_len=128", "--config.train.steps=4"]
    gen = tmp_path / "gen"
    assert (
        train.main(
            [
                "--config",
                "tiny",
                "--workdir",
                str(gen),
                f"--config.data.path={tmp_path / 'gen_data'}",
                *small,
                *common,
            ]
        )
        == 0
    )
    ver = tmp_path / "ver"
    assert (
        train.main(
            [
                "--config",
                "tiny_verifier",
                "--workdir",
                str(ver),
                f"--config.data.path={tmp_path / 'ver_data'}",
                *small,
                *common,
                f"--config.train.init_from={gen}",
                "--config.train.lr=0.0",
            ]
        )
        == 0
    )
    assert [r["step"] for r in rows(ver)] == [1, 2, 3, 4]
    assert all(0.0 <= r["last_token_accuracy"] <= 1.0 for r in rows(ver))
    # lr 0: the verifier's trunk is still exactly the generator's, its head is new
    g, v = load_model(gen), load_model(ver, expect_head="value")
    np.testing.assert_array_equal(np.asarray(v.model.embed.value), np.asarray(g.model.embed.value))
    np.testing.assert_array_equal(
        np.asarray(v.model.blocks.fc1_kernel.value), np.asarray(g.model.blocks.fc1_kernel.value)
    )
    assert v.model.value_kernel.value.shape == (64,)
    # init_from a step directory starts from that step, not from the workdir's latest.
    ver2 = tmp_path / "ver_step2"
    argv = ["--config", "tiny_verifier", "--workdir", str(ver2), f"--config.data.path={tmp_path / 'ver_data'}",
            *small, *common, f"--config.train.init_from={gen / 'checkpoints' / '2'}",
            "--config.train.lr=0.0", "--config.train.lm_loss_weight=0.5"]  # fmt: skip
    assert train.main(argv) == 0
    # ... here with the joint objective: both losses are logged, and the LM head is the generator's
    for r in rows(ver2):
        assert r["loss"] == pytest.approx(r["value_loss"] + 0.5 * r["lm_loss"], rel=1e-5)
    g2, v2 = load_model(gen / "checkpoints" / "2"), load_model(ver2, expect_head="value")
    assert g2.step == 2 and g.step == 4
    np.testing.assert_array_equal(
        np.asarray(v2.model.embed.value), np.asarray(g2.model.embed.value)
    )
    assert not np.array_equal(np.asarray(v2.model.embed.value), np.asarray(g.model.embed.value))
    np.testing.assert_array_equal(
        np.asarray(v2.model.lm_head_kernel.value), np.asarray(g2.model.lm_head_kernel.value)
    )


def test_ranking_verifier_with_dropout_on_grouped_data_resumes_exactly(tmp_path, tok):
    """The verifier recipe options end to end on a built data set: question-grouped batches,
    the pairwise loss logged beside the BCE, dropout, micro-batches; stopping after step 2 and
    rerunning gives the losses of an unbroken run bit for bit (data position and masks)."""
    from tinygsm_jax.data.builder import build_dataset
    from tinygsm_jax.solution_format import make_program

    src = tmp_path / "candidates.jsonl"
    with src.open("w") as f:
        for i in range(64):  # 16 questions of 4 samples, 2 right and 2 wrong
            q, k = f"Tom has {i // 4} apples and buys 3 more. How many apples now?", i // 4
            op = "+" if i % 2 else "-"
            body = f"    apples = {k}\n    result = apples {op} 3\n    return result\n"
            row = {"question": q, "code": make_program(q, body), "label": i % 2,
                   "question_id": str(k), "sample": i % 4}  # fmt: skip
            f.write(json.dumps(row) + "\n")
    build_dataset([str(src)], str(tmp_path / "data"), tokenizer_dir=str(tok), shards=2)
    small = [a for a in SMALL if "seq_len" not in a and "max_len" not in a and "steps" not in a]
    argv = ["--config", "tiny_verifier", f"--config.data.path={tmp_path / 'data'}", *small,
            "--config.data.seq_len=128", "--config.model.max_len=128",
            "--config.train.global_batch=16", "--config.train.micro_batch=8",
            "--config.model.dropout=0.2",
            "--config.train.rank_loss_weight=0.5", "--config.data.group_by_question=True"]  # fmt: skip
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert train.main([*argv, "--workdir", str(whole), "--config.train.steps=4"]) == 0
    assert train.main([*argv, "--workdir", str(parts), "--config.train.steps=2"]) == 0
    assert train.main([*argv, "--workdir", str(parts), "--config.train.steps=4"]) == 0
    got = {r["step"]: r for r in rows(parts)}
    for r in rows(whole):
        assert r["rank_count"] > 0 and r["loss"] == pytest.approx(
            r["value_loss"] + 0.5 * r["rank_loss"], rel=1e-5
        )
        assert got[r["step"]]["loss"] == r["loss"], r["step"]
