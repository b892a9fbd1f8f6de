"""Alternating rounds in benchmarks/train_step.py and benchmarks/sampler.py, with fake sides.

No model runs: the sides are stand-ins whose cost is read off a fake clock, so the tests check
the order of the sides, the medians and the per-round ratios, fast and independent of load.
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

import benchmarks.results as results
from benchmarks import sampler, train_step


def test_train_step_alternates_sides_and_reports_round_ratios(monkeypatch) -> None:
    from configs.tiny import get_config
    from tinygsm_jax.model import ModelConfig

    now = [0.0]
    calls: list[str] = []
    rounds = [(1.0, 1.5, 2.0), (4.0, 2.0, 1.0), (1.0, 1.5, 2.0)]  # seconds, in each round's order
    cost = iter([None] * 3 + [c for r in rounds for c in r for _ in range(3)])

    def side(name):
        def step(tokens: np.ndarray) -> float:
            calls.append(name)
            c = next(cost)
            now[0] += c or 0.0
            return 0.0

        return step

    cfg = ModelConfig.from_config(get_config().model, dtype="float32", head="lm")
    monkeypatch.setattr(
        train_step,
        "ours",
        lambda shape, baseline=False: (side("baseline" if baseline else "ours"), 7, cfg),
    )
    monkeypatch.setattr(train_step, "theirs", lambda shape: (side("torch"), 7, None))
    monkeypatch.setattr(train_step, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    out = train_step.bench("6.8M", steps=3, rounds=3, peak=1e12)
    # warm-up of each, then the three sides in order, reversed, in order
    forward = ["ours"] * 3 + ["baseline"] * 3 + ["torch"] * 3
    assert calls == ["ours", "baseline", "torch"] + forward + forward[::-1] + forward
    tokens = 256 * 16
    # rounds: ours 1 s, baseline 1.5 s, torch 2 s; torch 4 s, baseline 2 s, ours 1 s; as the first
    assert out["round_ratios"] == pytest.approx([2.0, 4.0, 2.0])
    assert out["ratio"] == pytest.approx(2.0)
    assert out["gain"] == pytest.approx(1.5)  # median of 1.5, 2, 1.5
    assert out["ours"]["tokens_per_sec"] == pytest.approx(tokens / 1.0)
    assert out["torch"]["tokens_per_sec"] == pytest.approx(tokens / 2.0)


class FakeGuard:
    """MachineGuard's interface without the machine: always idle."""

    def __init__(self, name: str, force: bool = False) -> None:
        self.published: list[str] = []

    def before(self) -> None: ...

    def after(self) -> None: ...

    def describe(self) -> str:
        return "Machine: fake."

    def publish(self, markdown: str, write: bool = True, path: Path | None = None) -> None:
        self.published.append(markdown)
        FakeGuard.last = self


def test_sampler_alternates_processes_and_reports_medians(monkeypatch) -> None:
    order: list[str] = []
    hf_rates = iter([100.0, 200.0, 100.0])
    our_rates = iter([300.0, 300.0, 500.0])

    def run_side(module: str, side: str, d: str, args: list[str]) -> dict:
        order.append(side)
        if side == "hf":
            return {"hf": next(hf_rates), "threads": 2, "thread_options": [1, 2], "torch": "x"}
        r = next(our_rates)
        return {"1": r, "4": 2 * r, "compile_seconds": 1.0}

    monkeypatch.setattr(results, "MachineGuard", FakeGuard)
    monkeypatch.setattr(sampler, "run_side", run_side)
    monkeypatch.setattr(sampler, "build", lambda d: (None, None, types.SimpleNamespace(
        n_layers=4, d_model=256, vocab_size=2048)))  # fmt: skip
    sampler.main(["--rounds", "3", "--no-write"])
    assert order == ["hf", "ours", "ours", "hf", "hf", "ours"]
    md = FakeGuard.last.published[0]
    assert "3.00x / 6.00x; 1.50x / 3.00x; 5.00x / 10.00x" in md  # every round's ratios
    assert "| 1 question x 48 | 100 | 1.00x |" in md  # median HF tokens/s
    assert "| 1 question x 48 | 300 | 3.00x |" in md  # medians: tokens/s and ratio
    assert "| 4 questions x 48 | 600 | 6.00x |" in md
