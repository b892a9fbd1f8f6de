"""MachineGuard (benchmarks/results.py): the rules that keep busy-machine figures out of RESULTS.md.

The load, the /proc process sampling, the clock and the sleep are injected, so these tests
never depend on how busy the machine running them is.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.results import MachineBusy, MachineGuard, cpu_used, other_cpu_times


def fake_guard(load, snapshots, force=False, cores=2) -> MachineGuard:
    """A guard whose load average is `load` (one value, or [before, after]) and whose process
    samples come from `snapshots` in order; the clock advances 1 s per sample."""
    loads = iter(load if isinstance(load, list) else [load, load])
    snaps = iter(snapshots)
    ticks = iter(range(100))
    return MachineGuard(
        "demo",
        force=force,
        loadavg=lambda: next(loads),
        cpu_times=lambda: next(snaps),
        cores=cores,
        cpu=lambda: "Test CPU 3000",
        sleep=lambda s: None,
        clock=lambda: float(next(ticks)),
    )


IDLE = [{1: ("init", 5.0, 1)}, {1: ("init", 5.01, 1)}, {1: ("init", 5.02, 1)}]


def test_idle_machine_writes_section_with_cpu_cores_and_load(tmp_path: Path) -> None:
    g = fake_guard([0.2, 1.7], IDLE)
    g.before()
    g.after()
    text = g.describe()
    assert "Machine: 2 cores, Test CPU 3000" in text
    assert "0.20 before the run, 1.70 after" in text
    assert "busy" not in text.lower()
    results = tmp_path / "RESULTS.md"
    g.publish(f"## demo\n\n{text}\n\n| a |\n", path=results)
    body = results.read_text()
    assert "<!-- BEGIN demo -->" in body and "Test CPU 3000" in body and "| a |" in body


def test_high_load_refuses_before_the_run_with_one_line() -> None:
    g = fake_guard(1.5, IDLE)  # half of 2 cores is 1.0
    with pytest.raises(MachineBusy) as e:
        g.before()
    msg = str(e.value)
    assert "\n" not in msg and "load average 1.5 > 1" in msg and "--force" in msg
    assert e.value.code != 0


def test_busy_process_is_named_even_at_low_load() -> None:
    snaps = [
        {1: ("init", 5.0, 1), 4242: ("torch_train", 100.0, 1)},
        {1: ("init", 5.0, 1), 4242: ("torch_train", 100.9, 1)},  # 0.9 s of CPU in 1 s
    ]
    g = fake_guard(0.3, snaps)
    with pytest.raises(MachineBusy) as e:
        g.before()
    assert "torch_train (pid 4242, 90% of a core)" in str(e.value)


def test_force_runs_and_marks_the_section_busy(tmp_path: Path, capsys) -> None:
    g = fake_guard([8.9, 9.1], IDLE, force=True)
    g.before()  # no exception
    g.after()
    results = tmp_path / "RESULTS.md"
    g.publish(f"## demo\n\n{g.describe()}\n", path=results)
    body = results.read_text()
    assert "Measured on a busy machine (load 8.9)" in body
    assert "8.90 before the run, 9.10 after" in body
    assert "Measured on a busy machine" in capsys.readouterr().out


def test_cpu_taken_by_others_during_the_run_refuses_to_write(tmp_path: Path) -> None:
    snaps = [
        {1: ("init", 5.0, 1)},
        {1: ("init", 5.0, 1)},
        {1: ("init", 5.0, 1), 777: ("make", 0.8, 1)},  # a process started during the run
    ]
    g = fake_guard(0.1, snaps)
    g.before()
    results = tmp_path / "RESULTS.md"
    with pytest.raises(MachineBusy) as e:
        g.publish("## demo\n\nMachine: x\n", path=results)
    assert "not writing RESULTS.md" in str(e.value) and "make (pid 777" in str(e.value)
    assert not results.exists()


def test_no_write_prints_only(tmp_path: Path, capsys) -> None:
    g = fake_guard(0.1, IDLE)
    g.before()
    results = tmp_path / "RESULTS.md"
    g.publish(f"## demo\n\n{g.describe()}\n", write=False, path=results)
    assert not results.exists()
    assert "## demo" in capsys.readouterr().out


def test_section_without_machine_sentence_is_rejected(tmp_path: Path) -> None:
    g = fake_guard(0.1, IDLE)
    g.before()
    with pytest.raises(ValueError):
        g.publish("## demo\n\nno machine here\n", path=tmp_path / "R.md")


def test_cpu_used_counts_new_and_reused_pids_fully() -> None:
    before = {1: ("a", 10.0, 7), 2: ("b", 3.0, 7), 4: ("kworker/1:2-events", 50.0, 3)}
    after = {
        1: ("a", 10.5, 7),
        2: ("c", 0.25, 90),  # pid 2 reused by another program
        3: ("d", 1.0, 95),
        4: ("kworker/1:2-mm_percpu_wq", 50.125, 3),  # the same kernel worker, renamed
    }
    assert cpu_used(before, after) == [
        (1.0, "d", 3),
        (0.5, "a", 1),
        (0.25, "c", 2),
        (0.125, "kworker/1:2-mm_percpu_wq", 4),
    ]


def test_real_sampler_excludes_own_process_tree() -> None:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        others = other_cpu_times()
        assert os.getpid() not in others and child.pid not in others
        assert others, "no other process seen in /proc"
    finally:
        child.kill()
        child.wait()


def test_help_prints_usage_without_sampling_the_machine(monkeypatch) -> None:
    import subprocess
    import sys

    import benchmarks.results as results

    def refuse(*a, **k):
        raise AssertionError("--help sampled the machine")

    monkeypatch.setattr(results.MachineGuard, "before", refuse)
    with pytest.raises(SystemExit) as e:
        results.main(["--help"])
    assert e.value.code == 0
    # As a command too: usage on stdout, status 0, however busy the machine is.
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-m", "benchmarks.results", "--help"], cwd=root,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: python -m benchmarks.results") and "Machine:" not in p.stdout
