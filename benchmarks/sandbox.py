"""Sandbox throughput: programs/s through `Sandbox` vs one `python -c` subprocess per program.

Both run the same TinyGSM-style programs in the same run on the same machine. The sandbox figure
includes its start-up (zygotes, namespaces, probes) and shutdown. The peer is the naive
executor: a fresh interpreter per program (`subprocess.run([python, "-c", code])`), run one at a
time as the issue defines it, and also with as many in parallel as the sandbox has workers.

    python -m benchmarks.sandbox [--programs 3000] [--baseline 200]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.results import machine, update_section
from tinygsm_jax.execute import DEFAULT_PRELOAD, Sandbox
from tinygsm_jax.solution_format import make_program


def programs(n: int, seed: int = 0) -> list[tuple[str, float]]:
    """`n` programs in the TinyGSM format with their expected answers."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b, c = rng.randint(2, 90), rng.randint(2, 30), rng.randint(1, 9)
        q = f"Sam buys {a} boxes of {b} pencils and gives away {c} pencils. How many are left?"
        body = (
            f"    boxes = {a}\n    per_box = {b}\n    given_away = {c}\n"
            "    total = boxes * per_box\n    remaining = total - given_away\n"
            "    result = remaining\n    return result\n"
        )
        out.append((make_program(q, body), a * b - c))
    return out


def cpu_seconds() -> float:
    """CPU time of this process and of every child it has reaped (user + system)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def run_python_c(code: str) -> str:
    script = code + "\nprint(simple_math_problem())\n"
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    return p.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", type=int, default=3000, help="programs through the sandbox")
    ap.add_argument("--baseline", type=int, default=200, help="programs through python -c")
    ap.add_argument("--workers", type=int, default=None, help="sandbox workers (default: CPUs)")
    ap.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    workers = args.workers or os.cpu_count() or 1

    progs = programs(args.programs)
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    with Sandbox(workers=workers, timeout=5.0) as sb:
        t_started = time.perf_counter()
        res = sb.run([c for c, _ in progs])
    sb_s = time.perf_counter() - t0
    sb_cpu = (cpu_seconds() - c0) / len(progs)  # zygotes are reaped at close: all CPU counted
    startup_s = t_started - t0
    assert all(r.status == "ok" and r.answer == a for r, (_, a) in zip(res, progs)), "wrong answers"
    sb_rate = len(progs) / sb_s

    # The same with numpy importable: a bigger zygote makes every fork dearer.
    np_progs = progs[: max(1, len(progs) // 3)]
    t0 = time.perf_counter()
    with Sandbox(workers=workers, timeout=5.0, preload=DEFAULT_PRELOAD + ("numpy",)) as sb:
        res = sb.run([c for c, _ in np_progs])
    np_rate = len(np_progs) / (time.perf_counter() - t0)
    assert all(r.answer == a for r, (_, a) in zip(res, np_progs)), "wrong answers"

    base = progs[: args.baseline]
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    outs = [run_python_c(c) for c, _ in base]
    seq_rate = len(base) / (time.perf_counter() - t0)
    base_cpu = (cpu_seconds() - c0) / len(base)
    assert outs == [str(a) for _, a in base], "baseline gave wrong answers"
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        outs = list(ex.map(run_python_c, [c for c, _ in base]))
    par_rate = len(base) / (time.perf_counter() - t0)
    assert outs == [str(a) for _, a in base], "baseline gave wrong answers"

    load = os.getloadavg()[0]
    table = (
        "## sandbox: programs/s vs one `python -c` subprocess per program\n\n"
        f"Machine: {machine()}, load average {load:.1f} during the run. Python "
        f"{sys.version.split()[0]}. {len(progs)} TinyGSM-style programs through "
        f"`Sandbox(workers={workers})`, start-up ({startup_s:.2f} s) and shutdown included; "
        f"{len(base)} through `python -c`. CPU ms/program counts every process involved "
        "(caller, zygotes, program processes; interpreter, for the peer).\n\n"
        "| executor | programs/s | sandbox speed-up | CPU ms/program |\n|---|---:|---:|---:|\n"
        f"| `Sandbox` ({workers} zygotes, full isolation) | {sb_rate:.0f} | 1.0x | {sb_cpu * 1e3:.2f} |\n"
        f"| `Sandbox` with numpy preloaded ({len(np_progs)} programs) | {np_rate:.0f} | {sb_rate / np_rate:.1f}x slower | |\n"
        f"| `python -c` per program, one at a time | {seq_rate:.1f} | {sb_rate / seq_rate:.1f}x | {base_cpu * 1e3:.2f} |\n"
        f"| `python -c` per program, {workers} at a time | {par_rate:.1f} | {sb_rate / par_rate:.1f}x | |\n"
    )
    print(table)
    if not args.no_write:
        update_section("sandbox", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
