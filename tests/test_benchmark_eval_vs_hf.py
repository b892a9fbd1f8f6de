"""Smoke test of `python -m benchmarks.eval_vs_hf --quick`: both sides run and the section prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_eval_vs_hf_quick_prints_section_and_leaves_results_alone() -> None:
    results = ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_text()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as a user
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.eval_vs_hf", "--quick", "--force", "--no-write"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "## eval_vs_hf" in out and "Machine: " in out and "load average (1 min)" in out
    assert "2 questions" in out and "best-of-4" in out
    for row in ("| HF `generate(num_return_sequences=4", "warm (", "cold (compilation included"):
        assert row in out
    assert results.read_text() == before


def test_section_reports_medians_and_every_round() -> None:
    from benchmarks.eval_vs_hf import section

    job = {"questions": ["a", "b"], "source": "GSM8K test", "layers": 4, "d_model": 256,
           "vocab": 2048, "tokenizer": 900}  # fmt: skip
    common = {"hf_tokens": 1000, "ours_tokens": 800, "compile_seconds": 3.0, "torch": "2.x",
              "threads": 2, "thread_options": [1, 2], "questions_per_batch": 8,
              "finish": {"length": 90, "function_end": 6}}  # fmt: skip
    rounds = [
        {**common, "hf_seconds": 10.0, "ours_seconds": 2.0, "ours_cold_seconds": 5.0},
        {**common, "hf_seconds": 12.0, "ours_seconds": 4.0, "ours_cold_seconds": 8.0},
        {**common, "hf_seconds": 11.0, "ours_seconds": 2.2, "ours_cold_seconds": 5.5},
    ]
    md = section(job, rounds, n=48, M=128, machine="Machine: test.")
    assert md.startswith("## eval_vs_hf")
    assert "warm: 5.00x, 3.00x, 5.00x; cold: 2.00x, 1.50x, 2.00x" in md  # every round
    assert "| 11.00 | 1000 | 91 | 1.00x |" in md  # HF median wall, tokens, tokens/s
    assert "| 2.20 | 800 | 364 | **5.00x** |" in md  # ours: median wall, median of ratios
    assert "function_end 6, length 90" in md and "Machine: test." in md
