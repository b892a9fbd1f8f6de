"""`python -m data_gen synth`: ask a teacher LLM for TinyGSM problems, asynchronously.

Any OpenAI-compatible server works (OpenAI, vLLM, ...): `openai.AsyncOpenAI` with a bounded
pool of workers fed from the seed file as a stream, client-side RPM/TPM limits, retries with
backoff (see `client.py`), and a crash-safe output directory (see `store.py`): after kill -9
the same command resumes, with no duplicated problem and no completed seed asked again.

API key: OPENAI_API_KEY. Without --base-url (or OPENAI_BASE_URL) the key is required; with
one, a missing key is sent as "EMPTY" (what a local vLLM server expects) and a server that
does want a key answers 401, which is reported as one line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter

import openai
from tqdm import tqdm

from data_gen import prompts
from data_gen.client import RetryPolicy, SeedFailed, Teacher
from data_gen.parse import parse_questions, parse_response
from data_gen.prices import load_prices, price_for
from data_gen.seeds import check_seeds, iter_seeds
from data_gen.store import USAGE_KEYS, Store
from tinygsm_jax.cli import UserError, atomic_write_json, run_main


def api_key(base_url: str | None) -> str:
    """The API key, or 'EMPTY' for a custom server; one clear line when OpenAI needs one."""
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        return key
    if base_url:
        return "EMPTY"
    raise UserError(
        "OPENAI_API_KEY is not set: export it, or pass --base-url for a server that needs no key"
    )


def base_url_of(arg: str | None) -> str | None:
    return arg or os.environ.get("OPENAI_BASE_URL") or None


def add_teacher_args(p: argparse.ArgumentParser) -> None:
    """Arguments shared by `synth` and `batch prepare`: what to ask and how it is priced."""
    p.add_argument("--seeds", required=True, help="JSONL with `question` and optional `id`")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--model", required=True, help="teacher model name")
    p.add_argument("--variants", type=int, default=10, help="problems asked per seed (paper: 10)")
    p.add_argument("--prompt", choices=prompts.STYLES, default="one-step")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument(
        "--max-tokens", type=int, default=4096, help="completion token limit per request"
    )
    p.add_argument("--limit", type=int, default=None, help="use only the first K seeds")
    p.add_argument("--prices", default=None, help='JSON {"model": [usd_per_1M_in, usd_per_1M_out]}')
    p.add_argument("--price-in", type=float, default=None, help="USD per 1M input tokens")
    p.add_argument("--price-out", type=float, default=None, help="USD per 1M output tokens")


def check_teacher_args(args: argparse.Namespace) -> None:
    if args.variants < 1:
        raise UserError("--variants must be at least 1")
    if args.max_tokens < 16:
        raise UserError("--max-tokens must be at least 16")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m data_gen synth", description=__doc__.splitlines()[0]
    )
    add_teacher_args(p)
    p.add_argument(
        "--base-url", default=None, help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1"
    )
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight at most")
    p.add_argument("--rpm", type=float, default=None, help="client-side requests per minute limit")
    p.add_argument("--tpm", type=float, default=None, help="client-side tokens per minute limit")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    p.add_argument("--max-attempts", type=int, default=8, help="attempts per request")
    p.add_argument("--backoff", type=float, default=1.0, help="first backoff in seconds (doubles)")
    p.add_argument(
        "--retry-budget", type=int, default=100, help="retries allowed beyond 0.5 per success"
    )
    return p


def summarize(
    store: Store,
    extra: Counter,
    config: dict,
    total: int,
    done: int,
    failed: int,
    elapsed: float,
    price,
) -> dict:
    """The summary.json content: totals over all runs plus this run's failed requests."""
    t = store.totals + extra
    return {
        **config,
        "seeds": total,
        "seeds_done": done,
        "seeds_failed": failed,
        "problems": t["problems"],
        "rejects": sum(store.reasons.values()),
        "reject_reasons": dict(store.reasons),
        **{k: round(t[k], 6) if k == "cost_usd" else int(t[k]) for k in USAGE_KEYS},
        "usd_per_1M_in": price[0],
        "usd_per_1M_out": price[1],
        "run_elapsed_s": round(elapsed, 3),
    }


async def _run(
    args: argparse.Namespace, store: Store, total: int, already: int, price
) -> tuple[int, Counter, float]:
    base_url = base_url_of(args.base_url)
    client = openai.AsyncOpenAI(
        api_key=api_key(base_url),
        base_url=base_url,
        timeout=args.timeout,
        max_retries=0,
    )
    policy = RetryPolicy(
        max_attempts=args.max_attempts, base_s=args.backoff, budget_min=args.retry_budget
    )
    teacher = Teacher(
        client,
        args.model,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        rpm=args.rpm,
        tpm=args.tpm,
        concurrency=args.concurrency,
        policy=policy,
        price=price,
    )
    wasted: Counter = Counter()
    failed = 0
    first_error: list[str] = []
    start = time.monotonic()
    run_requests = 0
    bar = tqdm(
        total=total, initial=already, unit="seed", desc="synth", dynamic_ncols=True, file=sys.stderr
    )

    async def ask(messages: list[dict]) -> object:
        nonlocal run_requests
        try:
            c = await teacher.complete(messages, prompts.estimate_tokens(messages))
        except SeedFailed as e:
            run_requests += e.usage.get("requests", 0)
            raise
        run_requests += c.usage["requests"]
        return c

    async def do_seed(sid: str, question: str) -> None:
        if args.prompt == "one-step":
            c = await ask(prompts.one_step(question, args.variants))
            parsed = parse_response(c.text, c.truncated)
            store.commit(sid, parsed.problems, parsed.rejects, c.usage)
            return
        rejects: list[dict] = []
        questions = store.stage1.get(sid)
        if questions is None:
            c = await ask(prompts.rephrase(question, args.variants))
            questions, rejects = parse_questions(c.text, c.truncated)
            if not questions:
                store.commit(
                    sid, [], rejects or [{"reason": "no_questions", "text": c.text}], c.usage
                )
                return
            store.commit_stage1(sid, questions, c.usage)
        c = await ask(prompts.solve(questions))
        parsed = parse_response(c.text, c.truncated)
        store.commit(sid, parsed.problems, rejects + parsed.rejects, c.usage)

    queue: asyncio.Queue = asyncio.Queue(maxsize=2 * args.concurrency)

    async def producer() -> None:
        for sid, question in iter_seeds(args.seeds, args.limit):
            if sid not in store.done:
                await queue.put((sid, question))
        for _ in range(args.concurrency):
            await queue.put(None)

    async def worker() -> None:
        nonlocal failed
        while (item := await queue.get()) is not None:
            try:
                await do_seed(*item)
            except SeedFailed as e:
                failed += 1
                wasted.update({k: e.usage.get(k, 0) for k in USAGE_KEYS})
                if not first_error:
                    first_error.append(f"seed {item[0]}: {e}")
                    tqdm.write(f"warning: {first_error[0]}", file=sys.stderr)
            bar.update(1)
            mins = max(time.monotonic() - start, 1e-9) / 60
            spent = store.totals["cost_usd"] + wasted["cost_usd"]
            bar.set_postfix_str(
                f"${spent:.2f} {run_requests / mins:.0f} req/min {store.totals['problems']} problems"
            )

    tasks = [asyncio.ensure_future(producer())] + [
        asyncio.ensure_future(worker()) for _ in range(args.concurrency)
    ]
    try:
        finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in finished:
            if t.exception() is not None:
                raise t.exception()  # a Fatal (UserError) or a bug: stop every worker
    except BaseException:
        bar.leave = False  # an error ends the run: leave its one line, not a stale bar
        raise
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        bar.close()
        await client.close()
    return failed, wasted, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) a synthesis; exit 1 if some seeds failed (a rerun retries them)."""
    args = parser().parse_args(argv)
    check_teacher_args(args)
    if args.concurrency < 1:
        raise UserError("--concurrency must be at least 1")
    for flag in ("rpm", "tpm", "timeout"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise UserError(f"--{flag} must be positive")
    api_key(base_url_of(args.base_url))  # fail before touching anything
    price = price_for(args.model, load_prices(args.prices), args.price_in, args.price_out)
    config = {
        "model": args.model,
        "prompt": args.prompt,
        "variants": args.variants,
        "seeds_file": str(args.seeds),
    }
    ids = check_seeds(args.seeds, args.limit)
    with Store(args.out) as store:
        store.check_config(config, ("prompt", "variants"))
        total, already = len(ids), len(ids & store.done)
        failed, wasted, elapsed = asyncio.run(_run(args, store, total, already, price))
        done = len(ids & store.done)
        config["base_url"] = base_url_of(args.base_url)
        summary = summarize(store, wasted, config, total, done, failed, elapsed, price)
        atomic_write_json(store.summary_path, summary)
    print(
        f"synth: {done}/{total} seeds, {summary['problems']} problems, {summary['rejects']} rejects, "
        f"{summary['requests']} requests ({summary['retries']} retries), "
        f"{summary['tokens_in']}+{summary['tokens_out']} tokens, ${summary['cost_usd']:.2f} -> {args.out}"
    )
    if failed:
        print(
            f"warning: {failed} seeds failed; rerun the same command to retry them", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    run_main(main)
