"""Sandboxed, fast execution of model-written Python programs.

Every stage runs untrusted code (teacher programs, sampled candidates), so this module is a
security boundary, not a convenience: a program must not reach the network, the caller, other
programs, the environment (API keys live there) or the file system outside its own scratch
directory, and whatever it does, the executor survives and reports it.

Design, and why
---------------
``Sandbox`` starts ``workers`` *zygotes* (``tinygsm_jax/_sandbox_worker.py``): separate Python
processes started with ``-I`` and an empty environment, so nothing the caller holds (env vars,
open files, memory) is there to steal. Each zygote imports what programs may use
(`DEFAULT_PRELOAD`: math, fractions, decimal, statistics, ...; add numpy with ``preload=``, at
about 1.4x slower, since a bigger zygote makes every fork dearer) once, then forks one fresh
child per program: a program costs a fork (~1.8 ms of CPU here, all processes counted) instead
of a new interpreter (~18 ms), and no program sees another's state. The zygote compiles the
source (up to 4 KiB) before the fork: parsing runs nothing, and a compile in the warm zygote
costs a tenth of one in a fresh child, where every allocation copies a page. The layers, each
closing a hole the others leave:

* **Mount + network + IPC namespaces** (once per zygote): the network namespace has no
  interfaces, so no socket reaches anything, loopback included, and abstract Unix sockets are
  private. In the private mount namespace a size- and inode-limited tmpfs is mounted over /tmp;
  each program's scratch directory lives there and is deleted after the program. Nothing is
  written on the host's disks at all.
* **A PID namespace per program**, whose init is the program's process: when it returns or is
  killed, the kernel kills every process it started, so double-forked children, daemons and
  threads cannot act after the program is done; it cannot see or signal any outside process.
* **chroot into the scratch directory**: the program sees an empty file system, so it can read
  no file of the host (keys, data) and write nowhere else. This is why everything it needs is
  imported before the drop (the Python installation may be unreadable by other uids anyway).
* **setuid to an unprivileged uid** (by default ``2_000_000_000 + zygote pid``: a uid that owns no
  file on the host and is unique among live zygotes): no capabilities, so chroot and namespaces
  cannot be undone, and RLIMIT_NPROC binds (it does not bind root), which stops fork bombs.
  RLIMIT_NPROC counts per uid, so with one shared uid (``nobody``) a fork bomb in one worker
  would starve programs in the others; a uid per zygote keeps them apart.
* **rlimits**: address space (``memory_mb`` above the warm interpreter; memory is touched slowly
  here, so a timeout alone would hide a missing limit), CPU seconds, processes, file size, open
  files, no core dumps.
* **seccomp** (pyseccomp/libseccomp, compiled once in the caller; the zygote never imports
  pyseccomp, whose imports pull in threading and its fork hooks, ~0.4 ms per child): refuses
  ``socket``, ``ptrace``, ``mount``, ``unshare``/``setns``, namespace flags to ``clone``, ``bpf``,
  ``keyctl``, ``io_uring`` and other kernel surface a math program never needs; defence in depth
  behind the namespaces and the uid. Two stacked filters: the large one is loaded once by the
  zygote itself when its set-up is done (so the zygote is confined too), and each child adds a
  small one refusing the few calls the zygote still needs per program (``unshare``/``setns`` for
  the PID namespace, ``chroot``, the parent-death signal). Loading the large filter per child
  cost ~0.3 ms of CPU per program (the kernel precomputes each filter's per-syscall verdicts).
* **A wall-clock timeout** enforced by the zygote with a pidfd: SIGKILL to the namespace's init
  takes the whole process tree down; output is capped (stdout/stderr count characters and stop
  the program at ``output_limit``) and the result channel is capped at 64 KiB.
* The answer is normalised *inside* the child (the returned object's methods are untrusted code);
  the zygote accepts back only a JSON object with a known status and a finite int or float.

Each mechanism is checked when a zygote starts (probes fork a child and verify it). Where one is
unavailable the sandbox **fails closed** with `SandboxUnavailable` naming it; only
``allow_degraded=True`` (CLI ``--allow-degraded``) runs without it, and `Sandbox.degraded` lists
what is missing. Root (as on this machine and in CI) is needed for the uid drop. Without
CAP_SYS_ADMIN (root in a container) a user namespace provides the mount, network and IPC
namespaces, but a per-program PID namespace is then impossible (re-entering our own PID
namespace needs CAP_SYS_ADMIN outside): that fails closed; degraded, the zygote instead kills
every process of the program's uid after each program (the uid is unique to the zygote).

Statuses: ``ok`` (a number came back), ``error`` (the program raised, returned a non-number or
defined no answer), ``timeout`` (wall-clock or CPU limit), ``memory`` (MemoryError at the memory
limit), ``output_limit`` (printed too much), ``crashed`` (the process died without reporting:
segfault, ``os._exit``), ``sandbox_error`` (the executor failed; never the program's fault).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import functools
import json
import os
import selectors
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tinygsm_jax.cli import UserError, atomic_path, read_jsonl, run_main

STATUSES = ("ok", "error", "timeout", "memory", "output_limit", "crashed", "sandbox_error")
DEFAULT_PRELOAD = (
    "math", "cmath", "fractions", "decimal", "statistics", "itertools", "functools",
    "collections", "datetime", "random", "re", "string", "operator", "numbers", "heapq",
    "bisect", "copy", "typing", "time", "calendar",
)  # fmt: skip
_WORKER = Path(__file__).resolve().parent / "_sandbox_worker.py"
# Only what the zygote itself needs; nothing of the caller's environment is passed on.
_WORKER_ENV = {
    "LC_ALL": "C.UTF-8",
    # Resolve every shared-library symbol when the zygote starts: lazily, each program's process
    # would resolve (and so copy-on-write) the same entries again (~2% of its CPU).
    "LD_BIND_NOW": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
_DEPTH = 4  # requests queued per zygote so it never waits for the caller
_START_TIMEOUT = 60.0


# Syscalls a grade-school math program never needs and that widen the kernel surface or would
# undo the other layers. EPERM (not a kill) so the program sees a clean Python exception.
DENIED_SYSCALLS = (
    "socket", "socketpair", "ptrace", "process_vm_readv", "process_vm_writev", "mount",
    "umount2", "pivot_root", "chroot", "unshare", "setns", "keyctl", "add_key", "request_key",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "reboot", "swapon", "swapoff", "acct", "syslog", "name_to_handle_at",
    "open_by_handle_at", "fanotify_init", "lookup_dcookie", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "quotactl", "setdomainname", "sethostname",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "vhangup", "iopl", "ioperm",
    # Memory that outlives the program or escapes RLIMIT_AS: SysV IPC, POSIX queues, memfd.
    "shmget", "shmat", "shmctl", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop",
    "semtimedop", "semctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive",
    "mq_notify", "mq_getsetattr", "memfd_create", "memfd_secret", "pidfd_getfd",
)  # fmt: skip
_NAMESPACE_FLAGS = (
    0x10000000,
    0x00020000,
    0x20000000,
    0x40000000,
    0x08000000,
    0x04000000,
    0x02000000,
)


# Refused to programs but used by the zygote for each program (a fresh PID namespace; the
# child's chroot and parent-death signal before it confines itself): the child's own filter.
_CHILD_FILTER = ("unshare", "setns", "chroot")


@functools.lru_cache(maxsize=1)
def seccomp_bpf() -> tuple[dict[str, str] | None, str | None]:
    """The two seccomp filters as hex-encoded BPF ({"zygote", "child"}), compiled here once
    with libseccomp; or (None, why)."""
    try:
        import pyseccomp  # noqa: PLC0415 - needs the libseccomp shared library
    except (ImportError, RuntimeError, OSError) as e:
        return None, f"pyseccomp/libseccomp not usable: {e}"
    deny = pyseccomp.ERRNO(errno.EPERM)
    zygote = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        if name in _CHILD_FILTER:
            continue
        try:
            zygote.add_rule(deny, name)
        except (OSError, RuntimeError, ValueError):
            pass  # not a syscall on this architecture
    # glibc falls back to clone() when clone3 says ENOSYS; clone's flags, unlike clone3's, can
    # be inspected, so namespace creation is refused there.
    zygote.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    for flag in _NAMESPACE_FLAGS:
        zygote.add_rule(deny, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
    child = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for name in _CHILD_FILTER:
        child.add_rule(deny, name)
    # The parent-death signal (set before the filter) must stay: it kills the program if its
    # zygote dies.
    child.add_rule(deny, "prctl", pyseccomp.Arg(0, pyseccomp.EQ, 1))  # PR_SET_PDEATHSIG
    out = {}
    for key, f in (("zygote", zygote), ("child", child)):
        with tempfile.TemporaryFile() as tmp:
            f.export_bpf(tmp)
            tmp.seek(0)
            out[key] = tmp.read().hex()
    return out, None


class SandboxUnavailable(RuntimeError):
    """A required isolation mechanism is missing here; the sandbox refuses to run (fails closed)."""


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """The outcome of one program. `status` is one of `STATUSES`; `answer` is set only when 'ok'."""

    status: str
    answer: float | int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class _Worker:
    """One zygote process seen from the caller: pipes, buffers, and the requests it holds."""

    def __init__(self, cfg: dict):
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(_WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(_WORKER_ENV),
            cwd="/",
            close_fds=True,
            start_new_session=True,
        )
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        self.wbuf = bytearray(json.dumps(cfg).encode() + b"\n")
        self.rbuf = bytearray()
        self.inflight: deque[int] = deque()
        self.since = time.monotonic()  # when the request at the head of `inflight` started
        self.info: dict | None = None

    def handshake(self, deadline: float) -> dict:
        """Send the config and wait for the ready line (or the fatal reason)."""
        os.write(self.wfd, bytes(self.wbuf))
        self.wbuf.clear()
        os.set_blocking(self.wfd, False)
        sel = selectors.DefaultSelector()
        sel.register(self.rfd, selectors.EVENT_READ)
        try:
            while b"\n" not in self.rbuf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise SandboxUnavailable("sandbox worker did not start in time")
                chunk = os.read(self.rfd, 65536)
                if not chunk:
                    raise SandboxUnavailable(
                        f"sandbox worker exited during start-up (code {self.proc.wait()})"
                    )
                self.rbuf += chunk
        finally:
            sel.close()
        line, _, rest = bytes(self.rbuf).partition(b"\n")
        self.rbuf = bytearray(rest)
        msg = json.loads(line)
        if "fatal" in msg:
            raise SandboxUnavailable(msg["fatal"])
        self.info = msg
        return msg

    def hang_up(self) -> None:
        """Close the pipes: the zygote exits after its current program (EOF on stdin)."""
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def kill(self, grace: float = 2.0) -> None:
        self.hang_up()
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # its program dies too (parent-death signal)
                self.proc.wait()


def _shutdown(workers: list[_Worker]) -> None:
    for w in workers:
        w.hang_up()
    deadline = time.monotonic() + 2.0
    for w in workers:
        w.kill(grace=max(0.0, deadline - time.monotonic()))


class Sandbox:
    """A pool of warm zygotes running untrusted programs; a context manager.

    `run` takes a batch, `imap` streams (bounded memory, order kept). Both return one
    `ExecResult` per program. Not for concurrent use from several threads.
    """

    def __init__(
        self,
        workers: int | None = None,
        timeout: float = 5.0,
        memory_mb: int = 512,
        *,
        output_limit: int = 1 << 20,
        max_procs: int = 64,
        file_mb: int = 16,
        scratch_mb: int = 64,
        scratch_inodes: int = 4096,
        uid: int | None = None,
        gid: int | None = None,
        preload: Sequence[str] = DEFAULT_PRELOAD,
        allow_degraded: bool = False,
        _disable: Sequence[str] = (),
    ):
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = float(timeout)
        self.n_workers = max(1, int(workers or os.cpu_count() or 1))
        bpf, bpf_error = seccomp_bpf()
        self._cfg = {
            "seccomp_bpf": bpf,
            "seccomp_error": bpf_error,
            "timeout": self.timeout,
            "memory_mb": int(memory_mb),
            "output_limit": int(output_limit),
            "max_procs": int(max_procs),
            "file_mb": int(file_mb),
            "scratch_mb": int(scratch_mb),
            "scratch_inodes": int(scratch_inodes),
            "uid": None if uid is None else int(uid),
            "gid": None if uid is None else int(uid if gid is None else gid),
            "preload": list(preload),
            "allow_degraded": bool(allow_degraded),
            "_disable": list(_disable),
        }
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _shutdown, self._workers)
        self.degraded: tuple[str, ...] = ()
        try:
            self._workers.extend(_Worker(self._cfg) for _ in range(self.n_workers))
            deadline = time.monotonic() + _START_TIMEOUT
            infos = [w.handshake(deadline) for w in self._workers]
        except BaseException:
            self.close()
            raise
        self.degraded = tuple(sorted({m for i in infos for m in i.get("degraded", [])}))
        if self.degraded:
            print(
                f"warning: sandbox running DEGRADED, without: {', '.join(self.degraded)}",
                file=sys.stderr,
            )

    @property
    def uids(self) -> list[int]:
        """The uid each zygote runs its programs as."""
        return [w.info["uid"] for w in self._workers]

    @property
    def worker_pids(self) -> list[int]:
        """PIDs of the zygotes (for tests that check a program cannot reach them)."""
        return [w.proc.pid for w in self._workers]

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the zygotes; their namespaces and scratch tmpfs vanish with them."""
        self._finalizer()

    def run(self, codes: Sequence[str]) -> list[ExecResult]:
        """Run a batch; results in the same order."""
        return list(self.imap(codes))

    def imap(self, codes: Iterable[str]) -> Iterator[ExecResult]:
        """Stream results in input order, holding at most a bounded window of programs."""
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("Sandbox.imap is already running (one consumer at a time)")
        try:
            yield from self._imap(iter(codes))
        finally:
            self._lock.release()

    def _restart(self, i: int) -> None:
        self._workers[i].kill()
        w = _Worker(self._cfg)
        self._workers[i] = w
        try:
            w.handshake(time.monotonic() + _START_TIMEOUT)
        except SandboxUnavailable:
            w.kill()
            raise

    def _imap(self, it: Iterator[str]) -> Iterator[ExecResult]:
        if not self._workers:
            raise RuntimeError("Sandbox is closed")
        window = max(256, 64 * self.n_workers)  # results held for reordering, at most
        codes: dict[int, tuple[str, int]] = {}  # seq -> (code, attempts) while in flight
        retry: deque[int] = deque()
        done: dict[int, ExecResult] = {}
        next_seq = next_out = 0
        exhausted = False
        backstop = self.timeout + 30.0
        sel = selectors.DefaultSelector()
        try:
            while True:
                while next_out in done:
                    yield done.pop(next_out)
                    next_out += 1
                # Hand out work: retries first, then new programs within the window.
                for w in self._workers:
                    while len(w.inflight) < _DEPTH:
                        if retry:
                            seq = retry.popleft()
                        elif not exhausted and next_seq < next_out + window:
                            try:
                                code = next(it)
                            except StopIteration:
                                exhausted = True
                                break
                            if not isinstance(code, str):
                                raise TypeError(
                                    f"program {next_seq} is {type(code).__name__}, not str"
                                )
                            seq = next_seq
                            next_seq += 1
                            codes[seq] = (code, 0)
                        else:
                            break
                        if not w.inflight:
                            w.since = time.monotonic()
                        w.inflight.append(seq)
                        w.wbuf += json.dumps({"i": seq, "c": codes[seq][0]}).encode() + b"\n"
                if exhausted and not codes and not retry:
                    while next_out in done:
                        yield done.pop(next_out)
                        next_out += 1
                    return
                for idx, w in enumerate(self._workers):
                    if w.inflight:
                        sel.register(w.rfd, selectors.EVENT_READ, idx)
                    if w.wbuf:
                        sel.register(w.wfd, selectors.EVENT_WRITE, idx)
                events = sel.select(timeout=1.0)
                for key in list(sel.get_map().values()):
                    sel.unregister(key.fileobj)
                dead: set[int] = set()
                for key, ev in events:
                    idx = key.data
                    w = self._workers[idx]
                    if idx in dead:
                        continue
                    try:
                        if ev & selectors.EVENT_WRITE and key.fileobj == w.wfd:
                            n = os.write(w.wfd, bytes(w.wbuf[: 1 << 20]))
                            del w.wbuf[:n]
                        if ev & selectors.EVENT_READ and key.fileobj == w.rfd:
                            chunk = os.read(w.rfd, 1 << 16)
                            if not chunk:
                                raise EOFError
                            w.rbuf += chunk
                            while (nl := w.rbuf.find(b"\n")) >= 0:
                                line = bytes(w.rbuf[:nl])
                                del w.rbuf[: nl + 1]
                                msg = json.loads(line)
                                seq = w.inflight.popleft()
                                if msg.get("i") != seq:
                                    raise EOFError  # protocol out of step: treat as a dead worker
                                done[seq] = ExecResult(msg["s"], msg["a"], msg["e"])
                                del codes[seq]
                                w.since = time.monotonic()
                    except (OSError, EOFError, ValueError, KeyError):
                        dead.add(idx)
                now = time.monotonic()
                for idx, w in enumerate(self._workers):
                    if w.inflight and now - w.since > backstop:
                        dead.add(idx)
                for idx in sorted(dead):
                    w = self._workers[idx]
                    for seq in w.inflight:
                        code, attempts = codes[seq]
                        if attempts >= 1:
                            del codes[seq]
                            done[seq] = ExecResult(
                                "sandbox_error",
                                None,
                                "sandbox worker died twice running this program",
                            )
                        else:
                            codes[seq] = (code, attempts + 1)
                            retry.append(seq)
                    w.inflight.clear()
                    self._restart(idx)
        finally:
            sel.close()
            # Abandoned mid-stream (the consumer stopped early, or an error): replies still on
            # their way would confuse the next call, so such zygotes are replaced.
            for idx, w in enumerate(self._workers):
                if w.inflight or w.wbuf or w.rbuf:
                    w.inflight.clear()
                    self._restart(idx)


def execute_programs(
    codes: Sequence[str], *, timeout: float = 5.0, workers: int | None = None
) -> list[ExecResult]:
    """Run `codes` in a fresh `Sandbox` and return one `ExecResult` each, in order."""
    with Sandbox(workers=workers, timeout=timeout) as sb:
        return sb.run(codes)


def _rows(path: str) -> Iterator[tuple[int, dict]]:
    for lineno, row in read_jsonl(path, required=("id", "code")):
        if not isinstance(row["code"], str):
            raise UserError(f"{path}:{lineno}: field 'code' must be a string")
        yield lineno, row


def main(argv: list[str] | None = None) -> int:
    """CLI: execute {"id","code"} rows, write {"id","status","answer","error"} rows atomically."""
    p = argparse.ArgumentParser(prog="python -m tinygsm_jax.execute", description=main.__doc__)
    p.add_argument("--input", required=True, help="JSONL with fields id and code")
    p.add_argument("--out", required=True, help="JSONL written atomically, one row per input row")
    p.add_argument("--timeout", type=float, default=5.0, help="wall-clock seconds per program")
    p.add_argument("--workers", type=int, default=None, help="parallel zygotes (default: CPUs)")
    p.add_argument("--memory-mb", type=int, default=512, help="address space per program, MiB")
    p.add_argument(
        "--preload",
        action="append",
        default=[],
        metavar="MODULE",
        help="extra module programs may import, e.g. numpy (repeatable)",
    )
    p.add_argument(
        "--allow-degraded",
        action="store_true",
        help="run even if an isolation mechanism is missing (weaker)",
    )
    args = p.parse_args(argv)
    if args.timeout <= 0 or (args.workers is not None and args.workers < 1) or args.memory_mb < 16:
        raise UserError("--timeout must be > 0, --workers >= 1, --memory-mb >= 16")
    total = sum(1 for _ in _rows(args.input))  # validate every line before running anything
    from tqdm import tqdm  # noqa: PLC0415 - only the CLI needs it

    counts = dict.fromkeys(STATUSES, 0)
    t0 = time.perf_counter()
    try:
        sb = Sandbox(
            workers=args.workers,
            timeout=args.timeout,
            memory_mb=args.memory_mb,
            preload=DEFAULT_PRELOAD + tuple(args.preload),
            allow_degraded=args.allow_degraded,
        )
    except SandboxUnavailable as e:
        raise UserError(f"sandbox unavailable: {e}") from None
    with sb, atomic_path(args.out) as tmp, tmp.open("w", encoding="utf-8") as f:
        rows = (row for _, row in _rows(args.input))
        ids: deque = deque()

        def codes() -> Iterator[str]:
            for row in rows:
                ids.append(row["id"])
                yield row["code"]

        for res in tqdm(sb.imap(codes()), total=total, unit="prog", file=sys.stderr):
            counts[res.status] += 1
            row = {
                "id": ids.popleft(),
                "status": res.status,
                "answer": res.answer,
                "error": res.error,
            }
            f.write(json.dumps(row) + "\n")
    dt = time.perf_counter() - t0
    summary = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    print(
        f"executed {total} programs in {dt:.1f} s ({total / max(dt, 1e-9):.0f}/s): {summary or 'nothing'} -> {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    run_main(main)
