"""AOT compile for TPU topologies: names, bad input, and (with libtpu) real TPU executables.

The compile tests need libtpu (the `tpu` extra) and skip with that reason where it is absent.
They build the real train step for a TPU slice on this CPU machine; each compile of the 1.3B
step takes about 30 s on an idle 2-core box.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tinygsm_jax import aot, tpu_topology
from tinygsm_jax.cli import UserError
from tinygsm_jax.config import load_config

ROOT = Path(__file__).resolve().parents[1]
HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None
needs_libtpu = pytest.mark.skipif(
    not HAS_LIBTPU,
    reason="libtpu not installed: pip install -e '.[tpu]' (the tpu extra) to compile for TPUs",
)
PHI15_PARAMS = 1_418_270_720


@pytest.mark.parametrize(
    "name, chips, shape, accel",
    [
        ("v4-8", 4, (2, 2, 1), "v4-8"),
        ("v4-32", 16, (2, 2, 4), "v4-32"),
        ("v4-128", 64, (4, 4, 4), "v4-128"),
        ("v5p-8", 4, (2, 2, 1), "v5p-8"),
        ("v5p-16", 8, (2, 2, 2), "v5p-16"),
        ("v5e-16", 16, (4, 4), "v5litepod-16"),
        ("v5litepod-32", 32, (4, 8), "v5litepod-32"),
        ("v5e-256", 256, (16, 16), "v5litepod-256"),
        ("v6e-8", 8, (2, 4), "v6e-8"),
        ("v6e-1", 1, (1, 1), "v6e-1"),
    ],
)
def test_topology_names_follow_cloud_tpu(name, chips, shape, accel):
    topo = tpu_topology.parse_topology(name)
    assert (topo.chips, topo.shape, topo.accelerator_type) == (chips, shape, accel)


def test_the_two_aot_programs_share_one_helper_module_not_each_other():
    """aot_sampler imports the topology and memory helpers from tpu_topology, never from aot."""
    code = (
        "import sys, tinygsm_jax.aot_sampler; "
        "assert 'tinygsm_jax.aot' not in sys.modules, 'aot_sampler imported aot'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert aot.parse_topology is tpu_topology.parse_topology


def test_unknown_topology_lists_known_ones():
    proc = subprocess.run(
        [sys.executable, "-m", "tinygsm_jax.aot", "--config", "tiny", "--topology", "v3-8"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown topology 'v3-8'" in lines[0]
    for known in ("v4-8", "v4-32", "v5e-16", "v5e-256", "v5p-8", "v6e-8"):
        assert known in lines[0]
    with pytest.raises(UserError, match="known:"):
        tpu_topology.parse_topology("v5e-12")  # not a slice size Cloud TPU sells


def test_missing_libtpu_says_to_install_the_tpu_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "libtpu" else real(n, *a)
    )
    monkeypatch.delenv("TPU_LIBRARY_PATH", raising=False)
    with pytest.raises(UserError, match=r"tpu extra.*\[tpu\]"):
        aot.main(["--config", "tiny", "--topology", "v5e-4"])


def test_projection_is_exact_for_bilinear_costs(monkeypatch):
    """The probes' extrapolation recovers C(L, N) = a + bL + N(c + dL) exactly."""
    a, b, c, d = 7.0, 3.0, 50.0, 11.0
    seen = []

    def fake_probe(config, devices):
        L = config.model.n_layers
        N = config.train.global_batch // (config.train.micro_batch or config.train.global_batch)
        seen.append((L, N))
        return a + b * L + N * (c + d * L), 2.0 * L * N, 0

    monkeypatch.setattr(aot, "_probe", fake_probe)
    config = load_config("phi1_5")  # 24 layers, 1024 = 8 micro-batches of 128
    flops, nbytes, loops = aot.projected_costs(config, devices=None)
    assert loops == 0 and sorted(seen) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert flops == pytest.approx(a + b * 24 + 8 * (c + d * 24))
    assert nbytes == pytest.approx(2.0 * 24 * 8)
    seen.clear()
    config.train.micro_batch = 0  # no accumulation: two probes suffice
    flops, _, _ = aot.projected_costs(config, devices=None)
    assert sorted(seen) == [(1, 1), (2, 1)] and flops == pytest.approx(a + b * 24 + c + d * 24)


def _run_json(capsys, argv):
    rc = aot.main(argv + ["--json"])
    out, err = capsys.readouterr()
    return rc, json.loads(out.strip().splitlines()[-1]), err


@needs_libtpu
@pytest.mark.tpu
@pytest.mark.parametrize("topology, chips", [("v5e-16", 16), ("v4-8", 4)])
def test_phi15_compiles_and_fits(capsys, topology, chips):
    rc, r, _ = _run_json(
        capsys, ["--config", "configs/phi1_5.py", "--topology", topology, "--no-projection"]
    )
    assert rc == 0 and r["fits"] is True
    assert r["n_params"] == PHI15_PARAMS
    assert (
        r["chips"] == chips and r["mesh"]["fsdp"] == chips
    )  # the config's fsdp=-1 fills the slice
    assert r["compute_dtype"] == "bfloat16"
    # Sharded fp32 params + two Adam moments are at least 12 bytes x N / chips on every chip.
    assert 12 * PHI15_PARAMS / chips < r["peak_bytes_per_chip"] <= r["hbm_bytes_per_chip"]
    for key in ("projected_step_seconds", "projected_mfu", "hbm_bytes_per_chip"):
        assert key in r


@needs_libtpu
@pytest.mark.tpu
def test_oversized_step_does_not_fit(capsys):
    # 125M with the whole 1024 x 1024-token batch in one pass (no accumulation) on 4 v5e chips:
    # the float32 logits alone are 1024 * 1024 * 51200 * 4 / 4 = 54 GB per chip.
    rc, r, err = _run_json(
        capsys, ["--config", "phi_125m", "--topology", "v5e-4", "--config.train.micro_batch=0"]
    )
    assert rc == 1 and r["fits"] is False
    assert r["peak_bytes_per_chip"] > r["hbm_bytes_per_chip"] == 16 * 2**30
    over = (r["peak_bytes_per_chip"] - r["hbm_bytes_per_chip"]) / 2**30
    assert "does not fit" in err and f"{over:.2f} GiB over" in err


@needs_libtpu
@pytest.mark.tpu
def test_projection_agrees_with_the_model_flop_count(capsys):
    # fsdp over 4 chips: XLA's collective matmuls are loops too; the probes compile without them.
    argv = [
        "--config",
        "tiny",
        "--topology",
        "v5e-4",
        "--config.mesh.data=1",
        "--config.mesh.fsdp=-1",
    ]
    rc, r, _ = _run_json(capsys, argv)
    assert rc == 0 and r["fits"] and r["probe_loops"] == 0
    # XLA's FLOPs over all chips vs 6N + attention: equal up to softmax/norm/optimizer extras.
    ratio = r["xla_flops_per_chip"] * r["chips"] / r["model_flops_per_step"]
    assert 0.9 < ratio < 1.5, ratio
    assert r["projected_step_seconds"] > 0 and 0 < r["projected_mfu"] < 1
    assert r["bound"] in ("compute", "memory")


@needs_libtpu
@pytest.mark.tpu
@pytest.mark.slow
def test_phi15_projection_counts_every_layer_and_micro_batch(capsys):
    rc, r, _ = _run_json(capsys, ["--config", "phi1_5", "--topology", "v5e-16"])
    assert rc == 0 and r["probe_loops"] == 0
    # remat recomputes the forward: XLA's FLOPs are 6N+attention plus about a third.
    ratio = r["xla_flops_per_chip"] * r["chips"] / r["model_flops_per_step"]
    assert 1.0 < ratio < 1.6, ratio
    assert 0 < r["projected_mfu"] < 1


@needs_libtpu
@pytest.mark.tpu
@pytest.mark.slow
def test_probes_match_a_fully_unrolled_step():
    """With micro-batching, the 4-probe extrapolation vs XLA's cost of the whole unrolled step."""
    config = load_config("tiny")
    config.train.micro_batch = 4  # 16 / 4 = 4 micro-batches, 4 layers
    topo = tpu_topology.parse_topology("v5e-4")
    devices = tpu_topology.topology_devices(topo)
    flops, nbytes, _ = aot.projected_costs(config, devices)
    full_flops, full_bytes, loops = aot._probe(config, devices)
    assert loops == 0
    assert flops == pytest.approx(full_flops, rel=0.01)
    assert nbytes == pytest.approx(full_bytes, rel=0.15)  # fusion across iterations differs


# -- the sampler (--program sample) -----------------------------------------------------------
SAMPLE_KEYS = ("n_params", "fits", "peak_bytes_per_chip", "hbm_bytes_per_chip", "max_questions_per_batch",
               "projected_step_seconds", "projected_tokens_per_second", "verifier_data_hours", "eval_hours")  # fmt: skip


@needs_libtpu
@pytest.mark.tpu
def test_sampler_compiles_and_projects_the_decode_step(capsys):
    argv = ["--program", "sample", "--config", "tiny", "--topology", "v5e-4", "--n", "8",
            "--questions-per-batch", "2", "--max-new-tokens", "64", "--prompt-len", "40"]  # fmt: skip
    rc, r, _ = _run_json(capsys, argv)
    assert rc == 0 and r["fits"] and all(key in r for key in SAMPLE_KEYS)
    assert r["prompt_len"] == 64 and r["rows_per_batch"] == 16 and r["rows_per_chip"] == 4
    assert r["param_bytes_per_chip"] == 4 * r["n_params"]  # float32, replicated: data parallel
    assert r["param_bytes_per_chip"] < r["peak_bytes_per_chip"] <= r["hbm_bytes_per_chip"]
    assert r["probe_extra_loops"] == 0  # the step probes kept no loop: every layer is counted
    # A decode step multiplies each row by every weight matrix once: ~2 FLOPs per parameter and
    # row (the embedding is a lookup, attention over <= 128 slots is small at this width).
    matmul = 2 * r["n_params"] * r["rows_per_chip"]
    assert 0.7 * matmul < r["xla_step_flops_per_chip"] < 1.5 * matmul
    assert r["bound"] == "memory"  # 4 rows per chip: decoding reads far more than it computes
    batch = r["projected_batch_seconds"]
    assert r["projected_tokens_per_second"] == pytest.approx(16 * 64 / batch)
    assert r["verifier_data_hours"] == pytest.approx(6 * -(-7473 // 2) * batch / 3600)
    assert r["eval_hours"] > -(-1319 // 2) * batch / 3600  # plus the greedy pass


@needs_libtpu
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--config", "tiny_verifier"], "needs a generator config"),
        (["--config", "tiny", "--prompt-len", "400"], "exceed model.max_len 512"),
        (["--config", "tiny", "--n", "0"], "--n must be at least 1"),
    ],
)
def test_sampler_bad_input_is_one_line(extra, message):
    with pytest.raises(UserError, match=message):
        aot.main(["--program", "sample", "--topology", "v5e-4", *extra])
