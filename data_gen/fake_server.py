"""A local OpenAI-compatible teacher for tests, benchmarks and dry runs (loopback only).

It speaks enough of the API for the real `openai` client over real HTTP: chat completions,
file upload/download and the Batch API. Its answers follow the requested layout loosely, the
way real models do (numbering, "Question:" labels, code fences, bare programs, functions under
another name with a `print` call), and it injects faults on demand: 429 with retry-after, 500,
slow answers, dropped connections and answers cut by the token limit (finish_reason "length").

    server = FakeOpenAI(latency=0.05, faults=Faults(p429=0.2)).start()
    ... base_url=server.base_url ...
    server.stop()

`python -m data_gen.fake_server --port 8000` serves it in the foreground.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

from data_gen import prompts


@dataclass
class Faults:
    """Probabilities of each fault on a seed's first attempts (never after `max_faulty`)."""

    p429: float = 0.0
    retry_after: float = 0.2
    p500: float = 0.0
    pdrop: float = 0.0
    pslow: float = 0.0
    slow_s: float = 5.0
    ptruncate: float = 0.0  # per seed: its answers are cut by the token limit
    max_faulty: int = 2
    seed: int = 0


@dataclass
class FakeOpenAI:
    latency: float = 0.0
    faults: Faults = field(default_factory=Faults)
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    log: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._attempts: dict[str, int] = {}
        self._files: dict[str, bytes] = {}
        self._batches: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{id}/content", self._content)
        app.router.add_post("/v1/batches", self._batch_create)
        app.router.add_get("/v1/batches", self._batch_list)
        app.router.add_get("/v1/batches/{id}", self._batch_get)
        return app

    def start(self) -> FakeOpenAI:
        """Serve on a background thread; returns when the port is bound."""
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._runner = web.AppRunner(self.app(), access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    # ---- answers ---------------------------------------------------------------------
    def _auth_ok(self, request: web.Request) -> bool:
        return (
            self.api_key is None or request.headers.get("Authorization") == f"Bearer {self.api_key}"
        )

    @staticmethod
    def _seed_of(text: str) -> str:
        m = re.search(r'Seed problem:\n"""\n(.*?)\n"""', text, re.DOTALL)
        if m:
            return m.group(1)
        return text

    def answer(self, messages: list[dict]) -> tuple[str, str, str]:
        """(kind, seed text, answer text) for a prompt built by `data_gen.prompts`."""
        user = messages[-1]["content"]
        if user.startswith(prompts.SOLVE_HEADER):
            qs = re.findall(r"^Problem \d+: (.*)$", user, re.MULTILINE)
            return "solve", qs[0] if qs else user, "".join(_solved(q, i) for i, q in enumerate(qs))
        seed = self._seed_of(user)
        m = re.search(r"(?:Write|as) (\d+) new", user)
        n = int(m.group(1)) if m else 10
        tag = hashlib.sha1(seed.encode()).hexdigest()[:8]
        if "Write only the questions" in user:
            return (
                "rephrase",
                seed,
                "".join(f"{i + 1}. {_question(tag, i)} {prompts.END_Q}\n\n" for i in range(n)),
            )
        return (
            "one-step",
            seed,
            "Sure! Here are the problems.\n\n" + "".join(_problem(tag, i) for i in range(n)),
        )

    def _decide(self, seed: str) -> tuple[str | None, bool]:
        """(fault for this attempt, truncate this seed's answers): deterministic per seed."""
        f = self.faults
        with self._lock:
            attempt = self._attempts.get(seed, 0)
            self._attempts[seed] = attempt + 1
        rng = random.Random(f"{f.seed}:{seed}:{attempt}")
        truncate = random.Random(f"{f.seed}:{seed}:trunc").random() < f.ptruncate
        if attempt >= f.max_faulty:
            return None, truncate
        r = rng.random()
        for name, p in (("429", f.p429), ("500", f.p500), ("drop", f.pdrop), ("slow", f.pslow)):
            if r < p:
                return name, truncate
            r -= p
        return None, truncate

    def _record(self, **kw) -> None:
        with self._lock:
            self.log.append({"t": time.monotonic(), **kw})

    def completion(self, body: dict, truncate: bool = False) -> dict:
        kind, seed, text = self.answer(body["messages"])
        finish = "stop"
        if truncate:
            text, finish = text[: int(len(text) * 0.8)], "length"
        prompt_chars = sum(len(m["content"]) for m in body["messages"])
        return {
            "id": "chatcmpl-" + hashlib.sha1(text.encode()).hexdigest()[:12],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_chars // 4,
                "completion_tokens": len(text) // 4,
                "total_tokens": prompt_chars // 4 + len(text) // 4,
            },
        }

    # ---- handlers --------------------------------------------------------------------
    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "me"}]}
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if not self._auth_ok(request):
            self._record(path="chat", status=401, seed=None)
            return web.json_response(
                {"error": {"message": "bad key", "type": "invalid_request_error"}}, status=401
            )
        body = await request.json()
        kind, seed, _ = self.answer(body["messages"])
        fault, truncate = self._decide(seed)
        self._record(path="chat", kind=kind, seed=seed, fault=fault, status=None)
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault == "429":
            self._record(path="chat", kind=kind, seed=seed, status=429)
            return web.json_response(
                {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}},
                status=429,
                headers={"retry-after": str(self.faults.retry_after)},
            )
        if fault == "500":
            self._record(path="chat", kind=kind, seed=seed, status=500)
            return web.json_response(
                {"error": {"message": "boom", "type": "server_error"}}, status=500
            )
        if fault == "drop":
            self._record(path="chat", kind=kind, seed=seed, status=-1)
            request.transport.abort()
            raise asyncio.CancelledError
        if fault == "slow":
            await asyncio.sleep(self.faults.slow_s)
        self._record(path="chat", kind=kind, seed=seed, status=200)
        return web.json_response(self.completion(body, truncate))

    async def _upload(self, request: web.Request) -> web.Response:
        data = await request.post()
        f = data["file"]
        content = f.file.read()
        fid = f"file-{len(self._files):06d}"
        self._files[fid] = content
        return web.json_response(
            _file_obj(fid, len(content), f.filename, str(data.get("purpose", "batch")))
        )

    async def _content(self, request: web.Request) -> web.Response:
        fid = request.match_info["id"]
        if fid not in self._files:
            return web.json_response({"error": {"message": "no such file"}}, status=404)
        return web.Response(body=self._files[fid], content_type="application/octet-stream")

    async def _batch_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        bid = f"batch_{len(self._batches):06d}"
        batch = {
            "id": bid,
            "object": "batch",
            "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"],
            "completion_window": body.get("completion_window", "24h"),
            "status": "validating",
            "created_at": int(time.time()),
            "metadata": body.get("metadata"),
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "output_file_id": None,
            "error_file_id": None,
        }
        self._batches[bid] = batch
        self._record(path="batch_create", batch=bid)
        return web.json_response(batch)

    def _run_batch(self, batch: dict) -> None:
        """Complete a batch on its first poll; a 429 fault rate fails that share of lines."""
        out, err = [], []
        for line in self._files[batch["input_file_id"]].decode().splitlines():
            req = json.loads(line)
            kind, seed, _ = self.answer(req["body"]["messages"])
            fault, truncate = self._decide(seed)
            if fault:
                err.append(
                    {
                        "id": "r",
                        "custom_id": req["custom_id"],
                        "response": None,
                        "error": {"code": "server_error", "message": "x"},
                    }
                )
                continue
            resp = {
                "status_code": 200,
                "request_id": "r",
                "body": self.completion(req["body"], truncate),
            }
            out.append({"id": "r", "custom_id": req["custom_id"], "response": resp, "error": None})
        for rows, key in ((out, "output_file_id"), (err, "error_file_id")):
            if rows:
                fid = f"file-{len(self._files):06d}"
                self._files[fid] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                batch[key] = fid
        batch["status"] = "completed"
        batch["request_counts"] = {
            "total": len(out) + len(err),
            "completed": len(out),
            "failed": len(err),
        }

    async def _batch_get(self, request: web.Request) -> web.Response:
        batch = self._batches.get(request.match_info["id"])
        if batch is None:
            return web.json_response({"error": {"message": "no such batch"}}, status=404)
        if batch["status"] == "validating":
            batch["status"] = "in_progress"
        elif batch["status"] == "in_progress":
            self._run_batch(batch)
        return web.json_response(batch)

    async def _batch_list(self, request: web.Request) -> web.Response:
        data = sorted(self._batches.values(), key=lambda b: b["id"], reverse=True)
        return web.json_response({"object": "list", "data": data, "has_more": False})


def _file_obj(fid: str, n: int, name: str, purpose: str) -> dict:
    return {
        "id": fid,
        "object": "file",
        "bytes": n,
        "created_at": int(time.time()),
        "filename": name,
        "purpose": purpose,
        "status": "processed",
    }


_NAMES = ["Maria", "Omar", "Lena", "Kofi", "Yuki", "Pedro", "Anya", "Tariq", "Nora", "Ivan"]
_ITEMS = [
    "boxes of pencils",
    "bags of apples",
    "crates of books",
    "packs of cards",
    "jars of honey",
]


def _numbers(tag: str, i: int) -> tuple[int, int, int, int]:
    r = random.Random(f"{tag}:{i}")
    return r.randint(3, 40), r.randint(2, 12), r.randint(2, 9), r.randint(1, 5)


def _question(tag: str, i: int) -> str:
    a, b, c, d = _numbers(tag, i)
    who, item = _NAMES[i % len(_NAMES)], _ITEMS[(i // 2) % len(_ITEMS)]
    return (
        f"{who} runs stall {tag}-{i} at the market. On Monday {who} sells {a} {item}. "
        f"Each of them holds {b} items. On Tuesday {who} sells {c} more of them than on Monday. "
        f"Every item costs {d} dollars. How many dollars does {who} make on the two days?"
    )


def _program_lines(tag: str, i: int) -> list[str]:
    a, b, c, d = _numbers(tag, i)
    return [
        f"monday = {a}",
        f"per_pack = {b}",
        f"tuesday = monday + {c}",
        "packs = monday + tuesday",
        "# the price of one item",
        f"price = {d}",
        "items = packs * per_pack",
    ]


def _problem(tag: str, i: int) -> str:
    """One problem in one of four layouts, as real teachers vary them."""
    q, lines = _question(tag, i), _program_lines(tag, i)
    style = i % 4
    if style == 0:  # the requested layout, fenced
        body = "\n".join("    " + x for x in [*lines, "result = items * price", "return result"])
        code = f'def simple_math_problem() -> int:\n    """{q}"""\n{body}'
        return f"Question: {q} {prompts.END_Q}\n```python\n{code}\n```\n{prompts.END_P}\n\n"
    if style == 1:  # numbered, bare program with a print
        code = "\n".join([*lines, "result = items * price", "print(result)"])
        return f"{i + 1}. {q}{prompts.END_Q}\n{code}\n{prompts.END_P}\n\n"
    if style == 2:  # bold label, another function name returning an expression, then a call
        body = "\n".join("    " + x for x in lines)
        code = f"def solution():\n{body}\n    return items * price\n\nprint(solution())"
        return f"**Question {i + 1}:** {q} {prompts.END_Q}\n\n```\n{code}\n```\n{prompts.END_P}\n"
    body = "\n".join(
        "    " + x for x in [*lines, "result = items * price", "return result"]
    )  # unfenced function
    return f"Question {i + 1}: {q}\n{prompts.END_Q}\nSolution:\ndef simple_math_problem() -> int:\n{body}\n{prompts.END_P}\n"


def _solved(q: str, i: int) -> str:
    nums = [int(x) for x in re.findall(r"\d+", q)] or [1]
    return (
        f"Question: {q} {prompts.END_Q}\ndef simple_math_problem() -> int:\n"
        f"    total = {sum(nums)}\n    result = total * 2\n    return result\n{prompts.END_P}\n"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m data_gen.fake_server", description="local fake OpenAI teacher"
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--latency", type=float, default=0.0)
    args = p.parse_args(argv)
    server = FakeOpenAI(latency=args.latency, port=args.port).start()
    print(f"serving on {server.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    main()
