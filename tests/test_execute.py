"""The sandbox: answers of benign programs, and a hostile corpus that must not escape.

Every hostile program runs interleaved with benign ones in one batch; afterwards we check the
host for its traces (files, processes, a listener on loopback, the test process and the
zygotes themselves), that each one was reported with a sensible status, and that the whole
batch finished in bounded time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from tinygsm_jax import execute
from tinygsm_jax.cli import run_main
from tinygsm_jax.execute import STATUSES, ExecResult, Sandbox, SandboxUnavailable, execute_programs
from tinygsm_jax.solution_format import make_program

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the sandbox needs root (to run programs under another uid)"
)
UID_BASE = 2_000_000_000  # programs run as UID_BASE + zygote pid
TIMEOUT = 1.5


def sandbox_pids() -> set[int]:
    """PIDs of live (not zombie) host processes owned by a sandbox uid."""
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                status = dict(
                    line.split(":", 1) for line in (d / "status").read_text().splitlines()
                )
            except (OSError, ValueError):
                continue
            if int(status["Uid"].split()[0]) >= UID_BASE and not status["State"].strip().startswith(
                "Z"
            ):
                out.add(int(d.name))
    return out


def benign(i: int) -> tuple[str, int]:
    body = f"    apples = {i}\n    pears = 3\n    result = apples * pears + 1\n    return result\n"
    return make_program(f"Question {i}?", body), i * 3 + 1


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2, timeout=TIMEOUT, memory_mb=256) as sb:
        yield sb


def run1(sb: Sandbox, code: str) -> ExecResult:
    return sb.run([textwrap.dedent(code)])[0]


@pytest.mark.parametrize(
    "code, answer",
    [
        ("def simple_math_problem() -> int:\n    return 3 * 4\n", 12),
        ("def simple_math_problem():\n    return 7 / 2\n", 3.5),
        ("result = 40 + 2\n", 42),  # module-level result, no function
        ("from fractions import Fraction\nresult = Fraction(9, 3)\n", 3),
        ("from fractions import Fraction\nresult = Fraction(1, 4)\n", 0.25),
        ("from decimal import Decimal\nresult = Decimal('2.50')\n", 2.5),
        ("from decimal import Decimal\nresult = Decimal('12.00')\n", 12),
        ("import math\nresult = math.sqrt(16)\n", 4.0),
        ("result = 10**30\n", 1e30),  # beyond int64: reported as a float
        ("print('thinking...')\nresult = 5\n", 5),  # printing is fine
        ("def simple_math_problem():\n    return 1\nresult = 2\n", 1),  # the function wins
        ("result = 5 if 1 is 1 else 0\n", 5),  # a SyntaxWarning at compile time is harmless
        ("# padding\n" * 3000 + "result = 6\n", 6),  # past ZYGOTE_COMPILE_CHARS: child compiles
    ],
)
def test_answers(sandbox, code, answer):
    r = run1(sandbox, code)
    assert r == ExecResult("ok", answer, None)
    assert type(r.answer) is type(answer)


@pytest.mark.parametrize(
    "code, status, words",
    [
        ("result = True\n", "error", "bool"),
        ("result = float('nan')\n", "error", "finite"),
        ("result = float('inf')\n", "error", "finite"),
        ("from decimal import Decimal\nresult = Decimal('Infinity')\n", "error", "finite"),
        ("result = '42'\n", "error", "str"),
        ("result = 1j\n", "error", "complex"),
        ("def simple_math_problem():\n    pass\n", "error", "None"),
        ("x = 1\n", "error", "no simple_math_problem"),
        ("result = 10**400\n", "error", "too large"),
        ("result = 1 / 0\n", "error", "ZeroDivisionError"),
        ("def simple_math_problem():\n    x = 1\n    return y\n", "error", "line 3"),
        ("def simple_math_problem(:\n", "error", "SyntaxError"),
        ("# padding\n" * 3000 + "def f(:\n", "error", "SyntaxError"),  # compiled in the child
        ("result = 1\0\n", "error", "null"),
        ("(" * 300 + ")" * 300 + "\n", "error", "nested"),
        # compiled as plain `python` would: no __future__ flag leaks in from the sandbox's code
        ("def simple_math_problem() -> Undefined:\n    return 1\n", "error", "NameError"),
        ("import sys\nsys.exit(3)\n", "error", "SystemExit"),
        ("import os\nos._exit(0)\n", "crashed", "exited with code 0"),
        ("raise KeyboardInterrupt\n", "error", "KeyboardInterrupt"),
    ],
)
def test_non_answers_are_reported(sandbox, code, status, words):
    r = run1(sandbox, code)
    assert r.status == status and r.answer is None
    assert words.lower() in r.error.lower(), r.error


def test_numpy_scalars_when_preloaded():
    pytest.importorskip("numpy")
    codes = [
        "import numpy as np\nresult = np.int64(7)\n",
        "import numpy as np\nresult = np.float32(0.5)\n",
        "import numpy as np\nresult = np.array([1, 2]).sum()\n",
        "import numpy as np\nresult = np.bool_(True)\n",
        "import numpy as np\nresult = np.float64('nan')\n",
        "import numpy as np\nresult = np.arange(3)\n",
    ]
    with Sandbox(workers=1, timeout=5, preload=("math", "numpy")) as sb:
        res = sb.run(codes)
    assert [r.answer for r in res[:3]] == [7, 0.5, 3]
    assert all(type(r.answer) in (int, float) for r in res[:3])
    assert [r.status for r in res[3:]] == ["error"] * 3
    assert "bool" in res[3].error and "finite" in res[4].error and "array" in res[5].error


def hostile_corpus(token: str, test_pid: int, zygotes: list[int], victim: Path, port: int):
    """(name, code, allowed statuses) for each attack; `token` names files it must not create."""
    p = f"/tmp/escape_{token}"
    return [
        ("infinite loop", "while True:\n    pass\n", {"timeout"}),
        ("sleep", "import time\ntime.sleep(100)\nresult = 1\n", {"timeout"}),
        (
            "ignores SIGTERM",
            "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass\n",
            {"timeout"},
        ),
        ("module-level loop", "result = 1\nwhile result:\n    result += 1\n", {"timeout"}),
        (
            "fork bomb",
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
            {"timeout", "error"},
        ),
        ("memory bomb at once", "x = bytearray(8 * 1024**3)\nresult = 1\n", {"memory"}),
        (
            "memory bomb growing",
            "xs = []\nwhile True:\n    xs.append(bytearray(16 * 2**20))\n",
            {"memory", "timeout"},  # touching memory is slow: see the dedicated memory test
        ),
        ("huge integer", "result = 2 ** (2 ** 40)\n", {"memory", "timeout"}),
        ("huge integer slow", "result = 7 ** (10 ** 8)\n", {"timeout", "memory"}),
        ("huge output loop", "while True:\n    print('spam' * 100)\n", {"output_limit"}),
        ("huge output once", "print('x' * 10**8)\nresult = 1\n", {"output_limit"}),
        (
            "stderr flood",
            "import sys\nwhile True:\n    sys.stderr.write('e' * 1000)\n",
            {"output_limit"},
        ),
        (
            "raw fd 1 flood",
            "import os\nfor _ in range(1000):\n    os.write(1, b'x' * 65536)\nresult = 1\n",
            {"ok"},
        ),
        ("absolute write", f"open({p!r}, 'w').write('pwned')\nresult = 1\n", {"error"}),
        (
            "absolute write after mkdir",
            f"import os\nos.makedirs('/tmp', exist_ok=True)\nopen({p!r}, 'w').write('pwned')\nresult = 1\n",
            {"ok"},
        ),
        (
            "relative write",
            f"open('escape_{token}', 'w').write('pwned')\nopen('../../escape_{token}', 'w').write('x')\nresult = 1\n",
            {"ok"},
        ),
        ("write victim", f"open({str(victim)!r}, 'w').write('pwned')\nresult = 1\n", {"error"}),
        ("delete victim", f"import os\nos.remove({str(victim)!r})\nresult = 1\n", {"error"}),
        ("delete tree", "import shutil\nshutil.rmtree('/')\nresult = 1\n", {"error"}),
        ("chroot escape", "import os\nos.mkdir('d')\nos.chroot('d')\nresult = 1\n", {"error"}),
        ("read host file", "result = len(open('/etc/passwd').read())\n", {"error"}),
        (
            "read env secret",
            "import os\nresult = len(os.environ) + (1000 if 'hunter2' in repr(os.environ) else 0)\n",
            {"ok"},
        ),
        ("read proc environ", "result = len(open('/proc/1/environ').read())\n", {"error"}),
        (
            "subprocess",
            f"import subprocess\nsubprocess.run(['sh', '-c', 'echo pwned > {p}_sp'])\nresult = 1\n",
            {"error"},
        ),
        ("os.system", f"import os\nresult = os.system('echo pwned > {p}_sys')\n", {"ok", "error"}),
        ("os.execv", "import os\nos.execv('/bin/sh', ['sh', '-c', 'true'])\n", {"error"}),
        (
            "socket import",
            f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\nresult = 1\n",
            {"error"},
        ),
        (
            "kill parent",
            "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nresult = 1\n",
            {"ok", "error"},
        ),
        (
            "kill group",
            "import os, signal\nos.killpg(os.getpgrp(), signal.SIGKILL)\nresult = 1\n",
            {"ok", "error"},
        ),
        (
            "kill everything",
            "import os, signal\nos.kill(-1, signal.SIGKILL)\nresult = 1\n",
            {"ok", "error"},
        ),
        (
            "kill test process",
            f"import os, signal\nos.kill({test_pid}, signal.SIGKILL)\nresult = 1\n",
            {"error"},
        ),
        (
            "kill zygotes",
            "import os, signal\n"
            + "".join(
                f"try:\n    os.kill({z}, signal.SIGKILL)\nexcept OSError:\n    pass\n"
                for z in zygotes
            )
            + "result = 1\n",
            {"ok"},
        ),
        (
            "memfd outside the memory limit",
            "import os\nfd = os.memfd_create('x')\nos.ftruncate(fd, 2**30)\nresult = 1\n",
            {"error"},
        ),
        ("sys.exit", "import sys\nsys.exit(0)\n", {"error"}),
        ("os._exit", "import os\nos._exit(3)\n", {"crashed"}),
        ("segfault", "import faulthandler\nfaulthandler._read_null()\n", {"crashed"}),
        ("ctypes segfault", "import ctypes\nctypes.string_at(0)\n", {"error", "crashed"}),
        (
            "thread after return",
            "import _thread\ndef spin():\n    while True:\n        pass\n_thread.start_new_thread(spin, ())\nresult = 5\n",
            {"ok"},
        ),
        (
            "double fork",
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        while True:\n            pass\n    os._exit(0)\nresult = 6\n",
            {"ok"},
        ),
        (
            "poison modules",
            "import math\nmath.sqrt = lambda x: -1\nimport builtins\nbuiltins.len = None\nresult = 1\n",
            {"ok"},
        ),
        (
            "recursion",
            "import sys\nsys.setrecursionlimit(10**6)\ndef f(n):\n    return f(n + 1)\nresult = f(0)\n",
            {"crashed", "error", "timeout", "memory"},
        ),
    ]


def test_hostile_corpus(sandbox, tmp_path, monkeypatch):
    token = uuid.uuid4().hex[:12]
    victim = tmp_path / "victim.txt"
    victim.write_text("intact")
    victim.chmod(0o666)  # even world-writable files must be out of reach
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    port = listener.getsockname()[1]
    monkeypatch.setenv("TINYGSM_TEST_SECRET", "hunter2")
    monkeypatch.chdir(tmp_path)
    before = sandbox_pids()
    zygotes = sandbox.worker_pids
    corpus = hostile_corpus(token, os.getpid(), zygotes, victim, port)

    codes, expect = [], []
    for i, (name, code, statuses) in enumerate(corpus):
        good, ans = benign(i)
        codes += [good, code]
        expect += [("benign", {"ok"}, ans), (name, statuses, None)]
    good, ans = benign(len(corpus))
    codes.append(good)
    expect.append(("benign", {"ok"}, ans))
    # A math program run after each attack sees a pristine interpreter.
    codes.append("import math\nresult = math.sqrt(16) + len('abc')\n")
    expect.append(("fresh state", {"ok"}, 7.0))

    t0 = time.monotonic()
    results = sandbox.run(codes)
    elapsed = time.monotonic() - t0

    assert len(results) == len(codes)
    for (name, statuses, ans), r in zip(expect, results):
        assert r.status in STATUSES
        assert r.status in statuses, f"{name}: {r}"
        if ans is not None:
            assert r.answer == ans, f"{name}: {r}"
    by_name = {name: r for (name, _, _), r in zip(expect, results)}
    assert by_name["read env secret"].answer == 0  # no variables at all, so no secret
    assert by_name["thread after return"].answer == 5
    assert by_name["double fork"].answer == 6
    assert "SIGSEGV" in by_name["segfault"].error
    # Bounded: about 8 programs time out at 1.5 s on 2 workers; everything else is quick.
    assert elapsed < 30, elapsed

    # Nothing escaped.
    assert victim.read_text() == "intact"
    assert not list(Path("/tmp").glob(f"escape_{token}*"))
    assert not list(tmp_path.glob(f"escape_{token}*"))
    assert not (Path(__file__).parents[1] / f"escape_{token}").exists()
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()
    assert sandbox.worker_pids == zygotes  # no zygote was killed or had to be restarted
    deadline = time.monotonic() + 5
    while (left := sandbox_pids() - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes outlived their program: {left}"
    # And the executor still works.
    assert [r.answer for r in sandbox.run([benign(i)[0] for i in range(8)])] == [
        benign(i)[1] for i in range(8)
    ]


def test_network_blocked_even_with_socket_module(tmp_path):
    """With `socket` importable, seccomp refuses it; without seccomp the empty netns does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    code = f"import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', {port}))\nresult = 1\n"
    with Sandbox(workers=1, timeout=5, preload=("socket",)) as sb:
        r = sb.run([code])[0]
    assert r.status == "error" and "PermissionError" in r.error, r
    with Sandbox(
        workers=1, timeout=5, preload=("socket",), allow_degraded=True, _disable=("seccomp",)
    ) as sb:
        assert sb.degraded == ("seccomp",)
        r = sb.run([code])[0]
    assert r.status == "error" and "unreachable" in r.error.lower(), r
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()


def test_both_seccomp_filters_bind_the_program():
    """The zygote's large filter (here memfd_create) and each program's own small one (setns)
    both refuse with EPERM, where the kernel alone would allow or say EINVAL."""
    code = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "def err(rc):\n    return ctypes.get_errno() if rc == -1 else 0\n"
        "result = err(libc.memfd_create(b'x', 0)) * 1000 + err(libc.setns(0, 0))\n"
    )
    with Sandbox(workers=1, timeout=5, preload=("ctypes",)) as sb:
        r = sb.run([code])[0]
    assert (r.status, r.answer) == ("ok", 1001), r


def test_ctypes_segfault_is_contained():
    unset_pdeathsig = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "result = (libc.prctl(1, 0, 0, 0, 0), ctypes.get_errno())[1]\n"
    )
    with Sandbox(workers=1, timeout=5, preload=("ctypes",)) as sb:
        r = sb.run(["import ctypes\nctypes.string_at(0)\n", "result = 1\n", unset_pdeathsig])
    assert r[0].status == "crashed" and "SIGSEGV" in r[0].error
    assert r[1] == ExecResult("ok", 1, None)
    assert r[2] == ExecResult("ok", 1, None)  # EPERM: the parent-death signal stays set


def test_memory_limit_is_the_limit_not_the_timeout():
    """Touching memory is slow here: with a generous timeout, a missing limit would show."""
    code = "xs = []\nfor _ in range(200):\n    xs.append(bytearray(10 * 2**20))\nresult = len(xs)\n"
    with Sandbox(workers=1, timeout=30, memory_mb=64) as sb:
        t0 = time.monotonic()
        r = sb.run([code, "xs = bytearray(32 * 2**20)\nresult = len(xs) // 2**20\n"])
        elapsed = time.monotonic() - t0
    assert r[0].status == "memory", r[0]
    assert r[1] == ExecResult("ok", 32, None)  # within the limit is fine
    assert elapsed < 10, elapsed


def test_fail_closed_without_a_mechanism():
    for mech in ("seccomp", "namespaces", "pid_namespace", "uid"):
        with pytest.raises(SandboxUnavailable, match=mech) as e:
            Sandbox(workers=1, _disable=(mech,))
        assert "allow_degraded" in str(e.value)


def test_imap_streams_in_order_with_bounded_memory():
    pulled = 0

    def codes():
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield benign(i)[0]

    with Sandbox(workers=2, timeout=5) as sb:
        for i, r in enumerate(sb.imap(codes())):
            assert r.answer == benign(i)[1]
            assert pulled - i <= 256 + 2 * 4 + 1  # the reorder window plus queued requests
    assert pulled == 1000


def test_survives_a_killed_worker():
    codes = [benign(i)[0] for i in range(300)]
    with Sandbox(workers=2, timeout=5) as sb:
        victim = sb.worker_pids[0]
        threading.Timer(0.2, os.kill, (victim, signal.SIGKILL)).start()
        t0 = time.monotonic()
        res = sb.run(codes + ["import time\ntime.sleep(0.5)\nresult = 1\n"] * 4 + codes)
        assert time.monotonic() - t0 < 30
        assert victim not in sb.worker_pids
    answers = [benign(i)[1] for i in range(300)]
    assert [r.answer for r in res] == answers + [1] * 4 + answers


def test_execute_programs_convenience():
    assert execute_programs(["result = 2 + 2\n"], timeout=2, workers=1) == [
        ExecResult("ok", 4, None)
    ]


def run_cli(argv):
    with pytest.raises(SystemExit) as e:
        run_main(execute.main, argv)
    return e.value.code


def test_cli_roundtrip(tmp_path, capsys):
    rows = [
        {"id": "a", "code": "result = 1 + 1\n"},
        {"id": 7, "code": "while True:\n    pass\n"},
        {"id": "c", "code": "result = 'x'\n"},
    ]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    assert (
        run_cli(["--input", str(inp), "--out", str(out), "--timeout", "1", "--workers", "2"]) == 0
    )
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert got[0] == {"id": "a", "status": "ok", "answer": 2, "error": None}
    assert got[1]["id"] == 7 and got[1]["status"] == "timeout"
    assert got[2]["id"] == "c" and got[2]["status"] == "error"
    assert "executed 3 programs" in capsys.readouterr().err


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"id": 1, "code": "result = 1"}', "{not json"], "in.jsonl:2: not valid JSON"),
        (['{"id": 1, "code": "result = 1"}', '{"id": 2}'], "in.jsonl:2: missing field 'code'"),
        (['{"id": 1, "code": 5}'], "in.jsonl:1: field 'code' must be a string"),
    ],
)
def test_cli_bad_input(tmp_path, capsys, lines, message):
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    out.write_text("previous\n")
    assert run_cli(["--input", str(inp), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert out.read_text() == "previous\n"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def test_cli_module_entry_point(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": 1, "code": "result = 6 * 7"}\n')
    out = tmp_path / "out.jsonl"
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    p = subprocess.run(
        [sys.executable, "-m", "tinygsm_jax.execute", "--input", str(inp), "--out", str(out)],
        cwd=repo, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert json.loads(out.read_text()) == {"id": 1, "status": "ok", "answer": 42, "error": None}


def test_imap_abandoned_midway_leaves_the_sandbox_usable():
    with Sandbox(workers=2, timeout=5) as sb:
        it = sb.imap(benign(i)[0] for i in range(100))
        assert next(it).answer == benign(0)[1]
        it.close()  # the consumer stops early, with programs still in flight
        assert [r.answer for r in sb.run([benign(i)[0] for i in range(20)])] == [
            benign(i)[1] for i in range(20)
        ]


def test_scratch_is_private_limited_and_removed_after_each_program():
    write = "for name in ('a', 'b'):\n    with open(name, 'wb') as f:\n        f.write(bytes(15 * 2**20))\n"
    with Sandbox(workers=1, timeout=20, scratch_mb=64) as sb:
        res = sb.run(
            [write + "import os\nresult = len(os.listdir('.'))\n"] * 3  # 90 MiB in all > 64 MiB
            + ["open('big', 'wb').write(bytes(17 * 2**20))\nresult = 1\n"]  # one file > 16 MiB
            + ["import os\nresult = len(os.listdir('/'))\n"]  # a fresh, empty root
        )
    assert [r.answer for r in res[:3]] == [2, 2, 2], res
    assert res[3].status == "error" and "File too large" in res[3].error, res[3]
    assert res[4] == ExecResult("ok", 0, None)


def test_without_cap_sys_admin(tmp_path):
    """As root in a container without CAP_SYS_ADMIN: a user namespace gives mount, network and
    IPC namespaces, but no per-program PID namespace: fail closed, or degrade on request and
    then kill leftovers by uid."""
    with pytest.raises(SandboxUnavailable, match="pid_namespace"):
        Sandbox(workers=1, _disable=("cap_sys_admin",))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    codes = [
        benign(1)[0],
        "import os\nresult = os.getuid()\n",
        f"open({str(tmp_path / 'x')!r}, 'w')\nresult = 1\n",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "import os\nif os.fork() == 0:\n    os.setsid()\n    while True:\n        pass\nresult = 2\n",
        f"import socket\nsocket.socket().connect(('127.0.0.1', {port}))\n",
    ]
    before = sandbox_pids()
    with Sandbox(
        workers=1,
        timeout=1.5,
        preload=("socket",),
        allow_degraded=True,
        _disable=("cap_sys_admin", "seccomp"),
    ) as sb:
        assert sb.degraded == ("pid_namespace", "seccomp")
        res = sb.run(codes)
        uid = sb.uids[0]
        time.sleep(0.2)
        assert not (sandbox_pids() - before)  # leftovers killed while the zygote lives on
    assert res[0].answer == benign(1)[1]
    assert res[1] == ExecResult("ok", uid, None) and uid >= UID_BASE
    assert res[2].status == "error" and not (tmp_path / "x").exists()
    assert res[3].status in ("timeout", "error") and res[4] == ExecResult("ok", 2, None)
    assert res[5].status == "error" and "unreachable" in res[5].error.lower()
    listener.close()
