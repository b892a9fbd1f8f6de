"""The sandbox zygote: a warm Python process that forks one confined child per program.

Run by `tinygsm_jax.execute.Sandbox` as ``python -I <this file>`` with an empty environment;
it must stay self-contained (standard library only, plus whatever is preloaded), because
`-I` keeps the project off `sys.path`. The design and its reasons are in the docstring of
`tinygsm_jax/execute.py`; this file is the mechanism. Protocol on stdin/stdout, one JSON
object per line: the first line in is the config, the first line out is ``{"ready": ...}`` or
``{"fatal": "why"}``; then each request ``{"i": n, "c": code}`` gets one reply
``{"i": n, "s": status, "a": answer, "e": error}``, in order. EOF on stdin ends the zygote.

Per program: a fresh scratch directory on the zygote's private tmpfs, a fresh PID namespace
(the child is its init, so when it exits or is killed every process it started dies with it),
then in the child: new session, /dev/null on fds 0-2 and every other fd closed, rlimits,
chroot into the scratch directory, setuid/setgid to the unprivileged uid, no_new_privs, the
seccomp filter, an empty environment, and only then compile and run the program.
"""

from __future__ import annotations

import ctypes
import decimal
import errno
import fractions
import gc
import json
import math
import os
import resource
import select
import shutil
import signal
import sys
import time
import types

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MS_REC, MS_PRIVATE = 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP = 1, 38, 22
PR_SET_CHILD_SUBREAPER = 36
SECCOMP_MODE_FILTER = 2

SCRATCH_ROOT = "/tmp"  # a private tmpfs is mounted over it, in this process's mount namespace only
UID_BASE = 2_000_000_000  # programs run as UID_BASE + zygote pid: owns no file, shares no limit
RESULT_LIMIT = 65536  # bytes a child may send back; more is a malformed result
ERROR_CHARS = 500
# Sources up to this size are compiled in the zygote, before the fork: parsing never runs the
# program, 3.11's constant folder caps what it builds, and a compile here costs ~20 us against
# ~250 us in a fresh child (whose every allocation copies a page). The cap bounds the zygote's
# time outside any program's limits: the slowest 4 KiB source we found (nested lambdas; the
# cost is quadratic) compiles in ~30 ms. TinyGSM programs are well under 1 KiB; longer sources
# are compiled in the child, under its limits.
ZYGOTE_COMPILE_CHARS = 4096
WARM_PROGRAM = (
    "def simple_math_problem() -> int:\n"
    '    """\n    Sam buys 5 boxes of 12 pencils and gives away 7. How many are left?\n    """\n'
    "    boxes = 5\n    per_box = 12\n    total = boxes * per_box\n"
    "    remaining = total - 7\n    result = remaining\n    return result\n"
)
PROGRAM_STATUSES = ("ok", "error", "memory", "output_limit", "sandbox_error")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _vm_size_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


class _Setup:
    """What the zygote set up once, and which mechanisms it could not (degraded mode only)."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.missing: list[str] = []
        self.allow_degraded = bool(cfg.get("allow_degraded"))
        self.disable = set(cfg.get("_disable", ()))  # test hook: pretend a mechanism failed
        self.pidns_fd: int | None = None
        self.seccomp_progs: dict | None = None
        self.drop_uid = True

    def need(self, name: str, fn) -> bool:
        """Run one setup step; on failure fail closed unless degraded mode was asked for."""
        try:
            if name in self.disable:
                raise OSError(errno.EPERM, "disabled for testing")
            fn()
            return True
        except Exception as e:  # noqa: BLE001 - any failure of a protection is reported
            if not self.allow_degraded:
                raise RuntimeError(
                    f"sandbox mechanism '{name}' is unavailable ({e}); refusing to run untrusted "
                    "code without it (pass allow_degraded=True / --allow-degraded to run with "
                    "weaker isolation)"
                ) from None
            self.missing.append(name)
            return False

    def preload(self) -> None:
        # Programs run chrooted into an empty directory as a uid that may not even be able to
        # read the Python installation: whatever they import must already be in sys.modules.
        for name in self.cfg["preload"]:
            try:
                __import__(name)
            except ImportError:
                pass
        # Warm the compiler and the interpreter on a program of the kind we run (trusted text):
        # what they cache then lives in the zygote instead of being rebuilt in every child.
        for _ in range(3):
            scope: dict = {"__name__": "__main__"}
            exec(_compile(WARM_PROGRAM), scope)
            scope["simple_math_problem"]()

    def namespaces(self) -> None:
        euid = os.geteuid()
        try:
            if "cap_sys_admin" in self.disable:  # test hook: behave as in a container
                raise OSError(errno.EPERM, "no CAP_SYS_ADMIN (test)")
            _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC), "unshare")
        except OSError as e:
            if e.errno != errno.EPERM:
                raise
            # No CAP_SYS_ADMIN here (a container, or not root): a user namespace gives it.
            self._user_namespace(euid, os.getegid())
        # Private propagation first, so that nothing mounted below is seen outside.
        _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
        opts = f"size={int(self.cfg['scratch_mb'])}m,nr_inodes={int(self.cfg['scratch_inodes'])},mode=0711"
        _check(
            _libc.mount(
                b"tmpfs",
                SCRATCH_ROOT.encode(),
                b"tmpfs",
                MS_NOSUID | MS_NODEV | MS_NOEXEC,
                opts.encode(),
            ),
            "mount scratch tmpfs",
        )

    @staticmethod
    def _user_namespace(euid: int, egid: int) -> None:
        flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC
        if euid != 0:  # only our own uid can be mapped: no uid drop (degraded, see `uid`)
            _check(_libc.unshare(flags), "unshare(user)")
            _write_file("/proc/self/setgroups", "deny")
            _write_file("/proc/self/uid_map", f"0 {euid} 1")
            _write_file("/proc/self/gid_map", f"0 {egid} 1")
            return
        # Real root keeps every uid, so that the uid drop still means something; a map of more
        # than our own uid must be written from the parent namespace, hence a helper process.
        r, w = os.pipe()
        zpid = os.getpid()
        helper = os.fork()
        if helper == 0:
            code = 1
            try:
                os.close(w)
                if os.read(r, 1) == b"1":
                    _write_file(f"/proc/{zpid}/uid_map", "0 0 4294967295")
                    _write_file(f"/proc/{zpid}/gid_map", "0 0 4294967295")
                    code = 0
            finally:
                os._exit(code)
        os.close(r)
        try:
            ok = _libc.unshare(flags) == 0
            err = ctypes.get_errno()
            os.write(w, b"1" if ok else b"0")
        finally:
            os.close(w)
            _, status = os.waitpid(helper, 0)
        if not ok:
            raise OSError(err, f"unshare(user): {os.strerror(err)}")
        if os.waitstatus_to_exitcode(status) != 0:
            raise OSError(errno.EPERM, "could not write the user namespace's uid/gid maps")

    def pidns(self) -> None:
        self.pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self.new_pidns()
        # Probe that a child really is init of its own namespace.
        pid = os.fork()
        if pid == 0:
            os._exit(0 if os.getpid() == 1 else 1)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise OSError(errno.EINVAL, "child is not init of a new PID namespace")

    def new_pidns(self) -> None:
        # unshare(CLONE_NEWPID) works once per "pid_ns_for_children"; setns back to our own
        # namespace first so that each program gets a fresh sibling namespace.
        _check(_libc.setns(self.pidns_fd, CLONE_NEWPID), "setns(pid)")
        _check(_libc.unshare(CLONE_NEWPID), "unshare(pid)")

    def uid(self) -> None:
        if os.geteuid() != 0:
            self.drop_uid = False
            raise PermissionError("not root: cannot run programs under a separate uid")

    def seccomp(self) -> None:
        # The caller compiled the filters with libseccomp (importing pyseccomp here would pull in
        # threading, whose fork hooks cost every child ~0.4 ms); we only load the BPF.
        filters = self.cfg.get("seccomp_bpf")
        if not filters:
            raise OSError(errno.ENOSYS, self.cfg.get("seccomp_error") or "no seccomp filter")

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        progs = {}
        for which in ("zygote", "child"):
            bpf = bytes.fromhex(filters[which])
            if not bpf or len(bpf) % 8:
                raise OSError(errno.EINVAL, f"bad BPF program ({which})")
            buf = ctypes.create_string_buffer(bpf, len(bpf))
            progs[which] = (SockFprog(len(bpf) // 8, ctypes.addressof(buf)), buf)
        self.seccomp_progs = progs
        # Probe: load both in a throwaway child and check that each refuses what it should.
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self.load_seccomp("zygote")
                self.load_seccomp("child")
                # The zygote's filter answers EPERM where the kernel would say ENOENT.
                _libc.umount2(b"/nonexistent-tinygsm-seccomp-probe", 0)
                if ctypes.get_errno() == errno.EPERM:
                    try:
                        os.chroot("/")  # the child's filter
                    except PermissionError:
                        code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise OSError(errno.EINVAL, "seccomp filters did not load or did not refuse")

    def load_seccomp(self, which: str) -> None:
        """Load one of the filters ("zygote": the large one; "child": the per-program one)."""
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        prog = self.seccomp_progs[which][0]
        _check(
            _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0),
            f"seccomp ({which})",
        )


class _OutputSink:
    """sys.stdout/sys.stderr for the program: counts characters, keeps none, stops at the limit."""

    def __init__(self, limit: int, on_limit):
        self._left = limit
        self._on_limit = on_limit

    def write(self, s) -> int:
        n = len(s)
        self._left -= n
        if self._left < 0:
            self._on_limit()
        return n

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    encoding = "utf-8"
    errors = "strict"


def _normalise(value):
    """A plain int or finite float for JSON, or raise ValueError saying why it is not a number."""
    t = type(value)
    if t.__module__ == "numpy" and hasattr(value, "item"):
        if getattr(value, "shape", ()) != ():
            raise ValueError(f"answer is a numpy array of shape {value.shape}, not a number")
        value = value.item()
        t = type(value)
    if isinstance(value, bool):
        raise ValueError("answer is a bool, not a number")
    if isinstance(value, int):
        value = int(value)
        if abs(value) < 2**63:
            return value
        f = float(value)  # OverflowError beyond ~1.8e308 is reported as an error
        return f
    if isinstance(value, float):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"answer is {value}, not a finite number")
        return value
    if isinstance(value, fractions.Fraction):
        return _normalise(value.numerator) if value.denominator == 1 else _normalise(float(value))
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueError(f"answer is Decimal('{value}'), not a finite number")
        if value == value.to_integral_value():
            return _normalise(int(value))
        return _normalise(float(value))
    if value is None:
        raise ValueError("answer is None")
    raise ValueError(f"answer is a {t.__name__}, not a number")


def _compile(code: str) -> types.CodeType:
    """The program's code object, as plain `python` would build it (no inherited __future__)."""
    return compile(code, "<program>", "exec", dont_inherit=True)


def _compile_in_zygote(code: str) -> tuple[types.CodeType | None, str | None]:
    """(code object or None, error or None); None, None for sources left to the child."""
    if len(code) > ZYGOTE_COMPILE_CHARS:
        return None, None
    try:  # a SyntaxWarning goes to our stderr, which the caller points at /dev/null
        return _compile(code), None
    except Exception as e:  # noqa: BLE001 - SyntaxError, ValueError (NUL), RecursionError, ...
        return None, _describe(e)


def _describe(exc: BaseException) -> str:
    """'Type: message (line N)', never raising: the exception's own code is untrusted."""
    try:
        name = type(exc).__name__
        try:
            msg = str(exc)
        except BaseException:  # noqa: BLE001
            msg = "<unprintable>"
        line = None
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == "<program>":
                line = tb.tb_lineno
            tb = tb.tb_next
        if isinstance(exc, SyntaxError) and exc.lineno:
            line = exc.lineno
            msg = exc.msg
        text = f"{name}: {msg}" if msg else name
        if line is not None:
            text += f" (line {line})"
        return text[:ERROR_CHARS]
    except BaseException:  # noqa: BLE001
        return "error"


class Zygote:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.setup = _Setup(cfg)
        self.count = 0
        self.as_limit = 0

    def start(self) -> dict:
        s = self.setup
        s.preload()
        gc.collect()
        gc.freeze()  # children's collections then skip (and do not copy-on-write) our objects
        os.environ.clear()  # inherited by every child: programs see an empty environment
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversize writes raise OSError instead
        if s.need("seccomp", s.seccomp) is False:
            s.seccomp_progs = None
        if not s.need("namespaces", s.namespaces):
            raise RuntimeError("cannot run without a private scratch tmpfs (mount namespace)")
        if not s.need("pid_namespace", s.pidns):
            s.pidns_fd = None
            _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "subreaper")
        s.need("uid", s.uid)
        if s.drop_uid and os.geteuid() != 0:
            s.drop_uid = False
        if s.seccomp_progs is not None:  # set-up done: from here on the zygote is confined too
            s.load_seccomp("zygote")
        self.as_limit = _vm_size_bytes() + int(self.cfg["memory_mb"]) * 2**20
        if self.cfg.get("uid") is None:  # unique per live zygote: RLIMIT_NPROC is counted per uid
            self.cfg["uid"] = self.cfg["gid"] = UID_BASE + os.getpid()
        return {"ready": True, "degraded": s.missing, "pid": os.getpid(), "uid": self.cfg["uid"]}

    def run_one(self, code: str) -> dict:
        cfg = self.cfg
        compiled, error = _compile_in_zygote(code)
        if error is not None:  # nothing to run: answered without a fork
            return {"s": "error", "a": None, "e": error}
        self.count += 1
        scratch = f"{SCRATCH_ROOT}/p{self.count}"
        os.mkdir(scratch, 0o700)
        if self.setup.drop_uid:
            os.chown(scratch, cfg["uid"], cfg["gid"])
        r, w = os.pipe()
        try:
            if self.setup.pidns_fd is not None:
                self.setup.new_pidns()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                self._child(compiled or code, scratch, w)  # never returns
            os.close(w)
            w = -1  # closed: its number may be reused (by the pidfd) before `finally` runs
            return self._wait(pid, r)
        finally:
            os.close(r)
            if w >= 0:  # never handed to a child (the set-up or the fork failed)
                os.close(w)
            try:
                os.rmdir(scratch)
            except OSError:
                shutil.rmtree(scratch)  # a failure here ends the zygote: fail closed

    def _wait(self, pid: int, r: int) -> dict:
        timeout = float(self.cfg["timeout"])
        deadline = time.monotonic() + timeout
        pfd = os.pidfd_open(pid)
        data = bytearray()
        timed_out = too_big = False
        try:
            os.set_blocking(r, False)
            watch = [pfd, r]
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                ready, _, _ = select.select(watch, [], [], left)
                if r in ready:
                    chunk = os.read(r, 65536)
                    if not chunk:
                        watch = [pfd]
                    data += chunk
                    if len(data) > RESULT_LIMIT:
                        too_big = True
                        break
                if pfd in ready:
                    break
            if timed_out or too_big:
                signal.pidfd_send_signal(pfd, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            if self.setup.pidns_fd is None:  # degraded: no namespace to tear down
                self._kill_leftovers(pid)
        finally:
            os.close(pfd)
        if timed_out:
            return {"s": "timeout", "a": None, "e": f"killed after {timeout:g} s wall-clock"}
        if too_big:
            return {
                "s": "error",
                "a": None,
                "e": "program wrote more than 64 KiB to the result pipe",
            }
        while True:  # drain what is left (every writer is dead now)
            try:
                chunk = os.read(r, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
            if len(data) > RESULT_LIMIT:
                return {
                    "s": "error",
                    "a": None,
                    "e": "program wrote more than 64 KiB to the result pipe",
                }
        if not data:
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
                try:
                    name = signal.Signals(sig).name
                except ValueError:
                    name = str(sig)
                if sig == signal.SIGXCPU:
                    return {"s": "timeout", "a": None, "e": "CPU time limit reached (SIGXCPU)"}
                return {"s": "crashed", "a": None, "e": f"killed by signal {name}"}
            return {
                "s": "crashed",
                "a": None,
                "e": f"exited with code {os.waitstatus_to_exitcode(status)} before returning",
            }
        return self._validate(bytes(data))

    def _kill_leftovers(self, pgid: int) -> None:
        """Without a PID namespace: kill whatever the program left running.

        The uid is unique to this zygote, so a helper running as that uid can `kill(-1)`
        exactly the program's processes (repeated until none is left, racing a fork bomb).
        """
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
        if not self.setup.drop_uid:
            return
        helper = os.fork()
        if helper == 0:
            try:
                os.setresuid(self.cfg["uid"], self.cfg["uid"], self.cfg["uid"])
                for _ in range(1000):
                    os.kill(-1, signal.SIGKILL)
            except BaseException:  # noqa: BLE001 - ESRCH: nothing left to kill
                pass
            os._exit(0)
        os.waitpid(helper, 0)
        while True:  # we are their subreaper: collect the killed orphans
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break

    @staticmethod
    def _validate(data: bytes) -> dict:
        """Trust nothing the child sent: one JSON object with a known status and a real number."""
        bad = {"s": "error", "a": None, "e": "malformed result from the program's process"}
        try:
            msg = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return bad
        if not isinstance(msg, dict) or set(msg) != {"s", "a", "e"}:
            return bad
        s, a, e = msg["s"], msg["a"], msg["e"]
        if s not in PROGRAM_STATUSES:
            return bad
        if s == "ok":
            if isinstance(a, bool) or not isinstance(a, (int, float)):
                return bad
            if isinstance(a, float) and not math.isfinite(a):
                return bad
            if isinstance(a, int) and abs(a) >= 2**63:
                return bad
            return {"s": "ok", "a": a, "e": None}
        return {"s": s, "a": None, "e": e[:ERROR_CHARS] if isinstance(e, str) else "error"}

    def _child(self, code: str | types.CodeType, scratch: str, w: int) -> None:
        """In the forked child: confine, then run the program (source or code). Never returns."""
        _exit, _write, _dumps = os._exit, os.write, json.dumps
        cfg, setup = self.cfg, self.setup

        def send(status: str, answer=None, error=None) -> None:
            try:
                payload = _dumps({"s": status, "a": answer, "e": error}).encode()
                _write(w, payload)
            finally:
                _exit(0)

        try:
            # Own process group (setsid would also create a scheduler autogroup: ~2 ms).
            os.setpgid(0, 0)
            devnull = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.closerange(3, w)
            os.closerange(w + 1, 65536)
            limit_s = math.ceil(float(cfg["timeout"])) + 1
            for res, val in (
                (resource.RLIMIT_CPU, limit_s),
                (resource.RLIMIT_AS, self.as_limit),
                (resource.RLIMIT_NPROC, int(cfg["max_procs"])),
                (resource.RLIMIT_FSIZE, int(cfg["file_mb"]) * 2**20),
                (resource.RLIMIT_NOFILE, 64),
                (resource.RLIMIT_CORE, 0),
                (resource.RLIMIT_MEMLOCK, 0),
                (resource.RLIMIT_MSGQUEUE, 0),
            ):
                resource.setrlimit(res, (val, val))
            os.chroot(scratch)
            os.chdir("/")
            if setup.drop_uid:
                os.setgroups([])
                os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
                os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
                if os.getuid() != cfg["uid"] or os.geteuid() != cfg["uid"]:
                    raise OSError("uid drop did not take")
            # After the uid change (which clears it): die if the zygote dies.
            _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
            if setup.seccomp_progs is not None:
                setup.load_seccomp("child")
            sink = _OutputSink(
                int(cfg["output_limit"]),
                lambda: send(
                    "output_limit", None, f"printed more than {cfg['output_limit']} characters"
                ),
            )
            sys.stdout = sys.stderr = sink
            sys.stdin = None
        except BaseException as e:  # noqa: BLE001 - fail closed: never run the program half-confined
            send("sandbox_error", None, f"confinement failed: {e}")
        try:
            scope = {"__name__": "__main__", "__builtins__": __builtins__}
            exec(code if not isinstance(code, str) else _compile(code), scope)
            fn = scope.get("simple_math_problem")
            if fn is not None:
                if not callable(fn):
                    send("error", None, "simple_math_problem is not callable")
                value = fn()
            elif "result" in scope:
                value = scope["result"]
            else:
                send("error", None, "no simple_math_problem() and no module-level result")
            try:
                answer = _normalise(value)
            except (ValueError, OverflowError, TypeError) as e:
                send("error", None, str(e)[:ERROR_CHARS])
            send("ok", answer, None)
        except MemoryError:
            send("memory", None, "MemoryError: memory limit reached")
        except BaseException as e:  # noqa: BLE001 - everything the program raises is its error
            send("error", None, _describe(e))


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

    def reply(obj: dict) -> None:
        stdout.write(json.dumps(obj).encode() + b"\n")
        stdout.flush()

    try:
        cfg = json.loads(stdin.readline())
        zygote = Zygote(cfg)
        reply(zygote.start())
    except Exception as e:  # noqa: BLE001 - reported to the caller as one line
        reply({"fatal": str(e) or type(e).__name__})
        return
    for line in stdin:
        req = json.loads(line)
        out = zygote.run_one(req["c"])
        out["i"] = req["i"]
        reply(out)


if __name__ == "__main__":
    main()
