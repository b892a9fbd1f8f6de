"""`python -m data_gen batch prepare|submit|status|collect`: the same prompts via the Batch API.

The Batch API bills half the synchronous price and has its own, much larger quota; the cost
is latency (up to 24 h). The flow, every step resumable from `DIR/batch/state.json`:

  prepare  write request files (at most 50,000 requests and 200 MB each, the API's limits)
           for every seed that is neither done nor waiting in an uncollected file
  submit   upload each prepared file and create its batch; a batch is tagged with its file's
           name in `metadata`, so a submit interrupted between "create" and "save state"
           finds the batch it made instead of paying twice
  status   refresh and print each batch's status
  collect  download finished outputs and parse them into the same DIR/problems.jsonl as
           `synth` (through the same crash-safe store); failed or expired requests leave
           their seeds pending, and the next `prepare` asks for them again

Two-step prompts take two rounds: the first round's answers (the rephrased questions) are
collected into DIR/stage1.jsonl, and the next `prepare` writes the solve requests.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections import Counter
from pathlib import Path

import openai

from data_gen import prompts
from data_gen.parse import parse_questions, parse_response
from data_gen.prices import cost_usd, load_prices, price_for
from data_gen.seeds import check_seeds, iter_seeds
from data_gen.store import Store
from data_gen.synth import add_teacher_args, api_key, base_url_of, check_teacher_args, summarize
from tinygsm_jax.cli import UserError, atomic_path, atomic_write_json, run_main

MAX_REQUESTS = 50_000
MAX_BYTES = 200 * 1000 * 1000
ENDPOINT = "/v1/chat/completions"
TERMINAL = ("completed", "expired", "cancelled", "failed")


def _state_path(out: str) -> Path:
    return Path(out) / "batch" / "state.json"


def load_state(out: str) -> dict:
    path = _state_path(out)
    if not path.exists():
        raise UserError(f"{path}: no batch state; run `python -m data_gen batch prepare` first")
    return json.loads(path.read_text())


def save_state(out: str, state: dict) -> None:
    atomic_write_json(_state_path(out), state)


def _client(args: argparse.Namespace) -> openai.OpenAI:
    base_url = base_url_of(args.base_url)
    return openai.OpenAI(
        api_key=api_key(base_url), base_url=base_url, max_retries=5, timeout=args.timeout
    )


def _pending_ids(out: str, state: dict) -> set[str]:
    """custom_ids waiting in request files that are not collected yet."""
    ids: set[str] = set()
    for f in state["files"]:
        if not f.get("collected"):
            with (Path(out) / "batch" / f["name"]).open() as fh:
                ids.update(json.loads(line)["custom_id"] for line in fh)
    return ids


def prepare(args: argparse.Namespace) -> int:
    check_teacher_args(args)
    if not 1 <= args.max_requests <= MAX_REQUESTS:
        raise UserError(f"--max-requests must be between 1 and {MAX_REQUESTS}")
    if not 1000 <= args.max_bytes <= MAX_BYTES:
        raise UserError(f"--max-bytes must be between 1000 and {MAX_BYTES}")
    config = {
        "model": args.model,
        "prompt": args.prompt,
        "variants": args.variants,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "seeds_file": str(args.seeds),
        "limit": args.limit,
        "prices": args.prices,
        "price_in": args.price_in,
        "price_out": args.price_out,
    }
    path = _state_path(args.out)
    state = (
        json.loads(path.read_text())
        if path.exists()
        else {"run_id": uuid.uuid4().hex[:12], "files": []}
    )
    state["config"] = config
    written = requests = 0
    check_seeds(args.seeds, args.limit)
    with Store(args.out) as store:
        store.check_config(
            {"prompt": args.prompt, "variants": args.variants, **config}, ("prompt", "variants")
        )
        pending = _pending_ids(args.out, state)
        lines: list[bytes] = []
        size = 0

        def flush() -> None:
            nonlocal lines, size, written
            if not lines:
                return
            name = f"requests-{len(state['files']):05d}.jsonl"
            with atomic_path(Path(args.out) / "batch" / name) as tmp:
                tmp.write_bytes(b"".join(lines))
            state["files"].append(
                {"name": name, "requests": len(lines), "bytes": size, "collected": False}
            )
            save_state(args.out, state)
            written += 1
            lines, size = [], 0

        for sid, question in iter_seeds(args.seeds, args.limit):
            if sid in store.done:
                continue
            if args.prompt == "two-step" and sid in store.stage1:
                cid, messages = f"p:{sid}", prompts.solve(store.stage1[sid])
            else:
                cid = ("p:" if args.prompt == "one-step" else "r:") + sid
                messages = prompts.first_request(args.prompt, question, args.variants)
            if cid in pending:
                continue
            body = {
                "model": args.model,
                "messages": messages,
                "temperature": args.temperature,
                "max_tokens": args.max_tokens,
            }
            line = (
                json.dumps({"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": body})
                + "\n"
            ).encode()
            if len(line) > args.max_bytes:
                raise UserError(
                    f"{args.seeds}: seed {sid!r} makes a request larger than --max-bytes"
                )
            if len(lines) >= args.max_requests or size + len(line) > args.max_bytes:
                flush()
            lines.append(line)
            size += len(line)
            requests += 1
        flush()
    save_state(args.out, state)
    print(
        f"batch prepare: {requests} requests in {written} new files under {Path(args.out) / 'batch'}"
    )
    return 0


def _find_batch(client: openai.OpenAI, run_id: str, name: str) -> str | None:
    """The batch an interrupted submit already created for this file, if any."""
    for b in client.batches.list(limit=100):
        meta = b.metadata or {}
        if meta.get("tinygsm_run") == run_id and meta.get("tinygsm_file") == name:
            return b.id
    return None


def submit(args: argparse.Namespace) -> int:
    state = load_state(args.out)
    client = _client(args)
    n = 0
    for f in state["files"]:
        if f.get("batch_id"):
            continue
        if not f.get("file_id"):
            with (Path(args.out) / "batch" / f["name"]).open("rb") as fh:
                f["file_id"] = client.files.create(file=(f["name"], fh), purpose="batch").id
            save_state(args.out, state)
        bid = _find_batch(client, state["run_id"], f["name"])
        if bid is None:
            bid = client.batches.create(
                input_file_id=f["file_id"],
                endpoint=ENDPOINT,
                completion_window="24h",
                metadata={"tinygsm_run": state["run_id"], "tinygsm_file": f["name"]},
            ).id
        f["batch_id"], f["status"] = bid, "validating"
        save_state(args.out, state)
        n += 1
    print(f"batch submit: {n} batches submitted")
    return 0


def refresh(client: openai.OpenAI, out: str, state: dict) -> None:
    for f in state["files"]:
        if f.get("batch_id") and not f.get("collected") and f.get("status") not in TERMINAL:
            b = client.batches.retrieve(f["batch_id"])
            f["status"] = b.status
            f["output_file_id"] = b.output_file_id
            f["error_file_id"] = b.error_file_id
            if b.request_counts is not None:
                f["counts"] = {
                    "completed": b.request_counts.completed,
                    "failed": b.request_counts.failed,
                }
    save_state(out, state)


def status(args: argparse.Namespace) -> int:
    state = load_state(args.out)
    refresh(_client(args), args.out, state)
    for f in state["files"]:
        counts = f.get("counts") or {}
        print(
            f"{f['name']}  {f['requests']:>6} requests  {f.get('batch_id') or '-':<24} "
            f"{'collected' if f.get('collected') else f.get('status') or 'prepared':<12} "
            f"ok={counts.get('completed', '-')} failed={counts.get('failed', '-')}"
        )
    waiting = sum(1 for f in state["files"] if not f.get("collected"))
    print(f"batch status: {len(state['files'])} files, {waiting} not collected")
    return 0


def _download(client: openai.OpenAI, file_id: str, path: Path) -> None:
    with atomic_path(path) as tmp, client.files.with_streaming_response.content(file_id) as r:
        r.stream_to_file(tmp)


def collect(args: argparse.Namespace) -> int:
    state = load_state(args.out)
    cfg = state["config"]
    client = _client(args)
    refresh(client, args.out, state)
    price = price_for(
        cfg["model"], load_prices(cfg.get("prices")), cfg.get("price_in"), cfg.get("price_out")
    )
    start = time.monotonic()
    failed, got = 0, 0
    with Store(args.out) as store:
        for f in state["files"]:
            if f.get("collected") or f.get("status") not in TERMINAL:
                continue
            for key in ("output_file_id", "error_file_id"):
                if not f.get(key):
                    continue
                local = Path(args.out) / "batch" / f"{f['name']}.{key.split('_')[0]}.jsonl"
                if not local.exists():
                    _download(client, f[key], local)
                with local.open() as fh:
                    for line in fh:
                        row = json.loads(line)
                        resp = row.get("response") or {}
                        if resp.get("status_code") != 200:
                            failed += 1
                            continue
                        got += 1
                        _collect_one(store, row["custom_id"], resp["body"], price)
            f["collected"] = True
            save_state(args.out, state)
        ids = check_seeds(cfg["seeds_file"], cfg.get("limit"))
        total, done = len(ids), len(ids & store.done)
        config = {k: cfg[k] for k in ("model", "prompt", "variants", "seeds_file")} | {
            "api": "batch"
        }
        summary = summarize(
            store, Counter(), config, total, done, failed, time.monotonic() - start, price
        )
        atomic_write_json(store.summary_path, summary)
    print(
        f"batch collect: {got} answers ({failed} failed), {done}/{total} seeds done, "
        f"{summary['problems']} problems, ${summary['cost_usd']:.2f} -> {args.out}"
    )
    waiting = [f["name"] for f in state["files"] if not f.get("collected")]
    if waiting:
        print(f"batch collect: {len(waiting)} files still running; collect again later")
    elif done < total:
        print(
            "batch collect: some seeds are not done; run `batch prepare` and `batch submit` again"
        )
    return 0


def _collect_one(store: Store, custom_id: str, body: dict, price: tuple[float, float]) -> None:
    kind, sid = custom_id.split(":", 1)
    choice = body["choices"][0]
    text = choice["message"].get("content") or ""
    truncated = choice.get("finish_reason") == "length"
    u = body.get("usage") or {}
    t_in, t_out = u.get("prompt_tokens", 0), u.get("completion_tokens", 0)
    usage = {
        "requests": 1,
        "tokens_in": t_in,
        "tokens_out": t_out,
        "cost_usd": cost_usd(t_in, t_out, price, batch=True),
    }
    if sid in store.done:
        return
    if kind == "r":
        if sid in store.stage1:
            return
        questions, rejects = parse_questions(text, truncated)
        if questions:
            store.commit_stage1(sid, questions, usage)
        else:
            store.commit(sid, [], rejects or [{"reason": "no_questions", "text": text}], usage)
        return
    parsed = parse_response(text, truncated)
    store.commit(sid, parsed.problems, parsed.rejects, usage)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m data_gen batch", description=__doc__.splitlines()[0]
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare", help="write request files for pending seeds")
    add_teacher_args(pp)
    pp.add_argument("--max-requests", type=int, default=MAX_REQUESTS, help="requests per file")
    pp.add_argument("--max-bytes", type=int, default=MAX_BYTES, help="bytes per file")
    for name, help_ in (
        ("submit", "upload and start batches"),
        ("status", "show batches"),
        ("collect", "gather results"),
    ):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--out", required=True, help="the directory given to prepare")
        sp.add_argument("--base-url", default=None, help="OpenAI-compatible server")
        sp.add_argument("--timeout", type=float, default=600.0, help="seconds per API call")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return {"prepare": prepare, "submit": submit, "status": status, "collect": collect}[
            args.cmd
        ](args)
    except openai.AuthenticationError:
        raise UserError("authentication failed: check OPENAI_API_KEY") from None
    except openai.APIConnectionError as e:
        raise UserError(f"cannot reach the server: {e.__cause__ or e}") from None
    except openai.APIStatusError as e:
        raise UserError(f"the server answered HTTP {e.status_code}: {e.message}") from None


if __name__ == "__main__":
    run_main(main)
