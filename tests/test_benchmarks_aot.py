"""benchmarks/aot.py's grid runner: every (config, topology) computed once, then read back."""

from __future__ import annotations

import json

from benchmarks.aot import chip_prices, run_grid


def test_run_grid_computes_each_pair_once_and_keys_by_tag(tmp_path, capsys):
    cache = tmp_path / "cache.json"
    calls = []

    def analyze(name, topology):
        calls.append((name, topology))
        return {"config": name, "topology": topology}

    first = run_grid(cache, "a,b", "v4-8,v5e-4", analyze, tag="@8")
    assert calls == [("a", "v4-8"), ("a", "v5e-4"), ("b", "v4-8"), ("b", "v5e-4")]
    assert [(r["config"], r["topology"]) for r in first] == calls
    assert sorted(json.loads(cache.read_text())) == [
        "a@v4-8@8",
        "a@v5e-4@8",
        "b@v4-8@8",
        "b@v5e-4@8",
    ]
    # A rerun (say, after a crash half-way) reads every report back and compiles nothing.
    assert run_grid(cache, "b,a", "v5e-4", analyze, tag="@8") == [first[3], first[1]]
    assert len(calls) == 4
    # Another tag is another job.
    run_grid(cache, "a", "v4-8", analyze)
    assert calls[-1] == ("a", "v4-8") and len(calls) == 5
    assert "a@v4-8: " in capsys.readouterr().out


def test_chip_prices_names_every_generation():
    from tinygsm_jax import tpu_topology

    text = chip_prices()
    for chip in tpu_topology.CHIPS.values():
        assert f"{chip.generation} $" in text
