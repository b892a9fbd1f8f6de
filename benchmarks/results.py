"""Keep benchmarks/RESULTS.md current, and only with figures from an idle machine.

Each benchmark owns one marked section and rewrites it. `MachineGuard` is why the figures can be
trusted: under load PyTorch's OpenMP threads collapse (144 vs ~3,600 tokens/s on one 2-core
machine), which once overstated our speed ratios ~5x. So every benchmark records the load
average and CPU model before and after its run, refuses to start when the load is above half
the core count or another process is using the CPU, and refuses to write a section when other
processes took CPU during the run; `--force` runs anyway and marks the section as measured on
a busy machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
_TITLE = "# Benchmark results\n\nEach figure is a ratio against a peer measured in the same run, with absolute numbers and the machine.\n"
# Another process is "using the CPU" when processes outside the benchmark's own tree take more
# than this many cores between two samples (background daemons take ~0.01 on an idle machine).
MAX_OTHER_CORES = 0.25

# pid -> (command name, CPU seconds: user + system, its reaped children's included, start time
# in clock ticks since boot: with the pid it names one process, even when its pid is reused)
CpuTimes = dict[int, tuple[str, float, int]]


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform's name where that is missing)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """A one-line description of this machine for the results table."""
    return f"{os.cpu_count()} cores, {cpu_model()}"


def _read_stat(pid: str) -> tuple[str, int, float, int] | None:
    """(comm, ppid, CPU seconds incl. reaped children, start time) of /proc/PID/stat; None if
    it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    f = raw[raw.rindex(")") + 2 :].split()  # f[0] is field 3 (state)
    ticks = sum(int(x) for x in f[11:15])  # utime, stime, cutime, cstime
    return comm, int(f[1]), ticks / os.sysconf("SC_CLK_TCK"), int(f[19])


def other_cpu_times(me: int | None = None) -> CpuTimes:
    """CPU seconds of every process outside `me`'s tree (default: this process's)."""
    me = os.getpid() if me is None else me
    stats = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit() and (s := _read_stat(pid)) is not None:
            stats[int(pid)] = s
    own = {me}
    grew = True
    while grew:  # descendants: children of anything already known to be ours
        new = {p for p, (_, ppid, _, _) in stats.items() if ppid in own and p not in own}
        own |= new
        grew = bool(new)
    return {p: (comm, cpu, start) for p, (comm, _, cpu, start) in stats.items() if p not in own}


def cpu_used(before: CpuTimes, after: CpuTimes) -> list[tuple[float, str, int]]:
    """(CPU seconds, name, pid) each process used between two samples, largest first.

    A process is its pid and start time, not its name: kernel workers rename themselves with
    the work they run (kworker/1:2-events, then kworker/1:2-mm_percpu_wq), and counting a
    renamed one as new charged its whole lifetime, 14 cores' worth, to one benchmark run.
    """
    used = []
    for pid, (comm, cpu, start) in after.items():
        prev = before.get(pid)
        delta = cpu - prev[1] if prev and prev[2] == start else cpu  # a new (or reused) pid
        if delta > 0:
            used.append((delta, comm, pid))
    return sorted(used, reverse=True)


def _busiest(used: list[tuple[float, str, int]], seconds: float, k: int = 3) -> str:
    return ", ".join(f"{c} (pid {p}, {s / seconds:.0%} of a core)" for s, c, p in used[:k])


class MachineBusy(SystemExit):
    """Raised with one line (exit status 1) when a benchmark refuses to run or to write."""


@dataclass
class MachineGuard:
    """Record the machine around one benchmark run; refuse figures from a busy machine.

    Use: `before()` at the start (refuses to start on a busy machine unless `force`), `after()`
    at the end, `describe()` in the section text, `publish(markdown)` to write it. The load,
    process sampling, clock and sleep are injectable so the rules can be tested.
    """

    name: str
    force: bool = False
    loadavg: Callable[[], float] = lambda: os.getloadavg()[0]
    cpu_times: Callable[[], CpuTimes] = other_cpu_times
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    cpu: Callable[[], str] = cpu_model
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    sample_seconds: float = 1.0
    max_other_cores: float = MAX_OTHER_CORES
    load_before: float | None = None
    load_after: float | None = None
    cpu_before: str = ""
    cpu_after: str = ""
    busy: list[str] = field(default_factory=list)  # why the machine was busy, one item a reason
    _base: CpuTimes = field(default_factory=dict)
    _t0: float = 0.0
    _other_cores: float | None = None

    def before(self) -> None:
        """Record load and CPU; refuse (`MachineBusy`) if the machine is busy, unless forced."""
        self.cpu_before = self.cpu()
        self.load_before = self.loadavg()
        if self.load_before > self.cores / 2:
            self.busy.append(
                f"load average {self.load_before:.1f} > {self.cores / 2:g} (half of {self.cores} cores)"
            )
        first, t = self.cpu_times(), self.clock()
        self.sleep(self.sample_seconds)
        self._base, self._t0 = self.cpu_times(), self.clock()
        used = cpu_used(first, self._base)
        dt = max(self._t0 - t, 1e-9)
        if sum(s for s, _, _ in used) / dt > self.max_other_cores:
            self.busy.append(f"other processes use the CPU: {_busiest(used, dt)}")
        if self.busy and not self.force:
            raise MachineBusy(self._refusal("refusing to run"))

    def after(self) -> None:
        """Record load and CPU again, and what other processes used during the run."""
        self.cpu_after = self.cpu()
        self.load_after = self.loadavg()
        now = self.cpu_times()
        dt = max(self.clock() - self._t0, 1e-9)
        used = cpu_used(self._base, now)
        self._other_cores = sum(s for s, _, _ in used) / dt
        if self._other_cores > self.max_other_cores:
            self.busy.append(f"other processes used the CPU during the run: {_busiest(used, dt)}")

    def _refusal(self, what: str) -> str:
        return (
            f"benchmarks.{self.name}: {what}, the machine is busy: {'; '.join(self.busy)}. "
            "Rerun on an idle machine, or pass --force to mark the section as measured on a busy machine."
        )

    def describe(self) -> str:
        """The machine sentence every section carries (CPU, cores, load before and after)."""
        if self.load_after is None:
            self.after()
        cpu = self.cpu_before + (
            "" if self.cpu_after == self.cpu_before else f" / {self.cpu_after}"
        )
        text = (
            f"Machine: {self.cores} cores, {cpu}; load average (1 min) {self.load_before:.2f} "
            f"before the run, {self.load_after:.2f} after; other processes used "
            f"{self._other_cores:.2f} cores during it."
        )
        if self.busy:
            text = (
                f"**Measured on a busy machine (load {self.load_before:.1f}): "
                f"{'; '.join(self.busy)}. Do not trust these figures.** " + text
            )
        return text

    def publish(self, markdown: str, write: bool = True, path: Path | None = None) -> None:
        """Print `markdown`; write it as this benchmark's section unless the machine was busy.

        A busy machine (and no `force`) exits with one line after printing; `write=False`
        only prints. The section must contain `describe()`'s sentence.
        """
        if self.load_after is None:
            self.after()
        print(markdown)
        if self.busy and not self.force:
            raise MachineBusy(self._refusal("not writing RESULTS.md"))
        if "Machine: " not in markdown:
            raise ValueError("the section must carry MachineGuard.describe()")
        if write:
            update_section(self.name, markdown, RESULTS if path is None else path)


def add_guard_args(parser: argparse.ArgumentParser) -> None:
    """`--force` (and nothing else): run and write on a busy machine, marking the section."""
    parser.add_argument(
        "--force",
        action="store_true",
        help="run on a busy machine anyway; the section says it was busy",
    )


def update_section(name: str, markdown: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section `name` of RESULTS.md with `markdown`, atomically."""
    text = path.read_text() if path.exists() else _TITLE
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """A quick look: would this machine pass? Exit status 1 when it is busy."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.results",
        description="Sample this machine's load and other processes' CPU use for a moment, "
        "print the machine line a benchmark section would record, and exit 1 if the machine "
        "is too busy for a benchmark to write RESULTS.md.",
    )
    parser.parse_args(argv)
    g = MachineGuard("check", force=True)
    g.before()
    g.after()
    print(g.describe())
    return 1 if g.busy else 0


if __name__ == "__main__":
    sys.exit(main())
