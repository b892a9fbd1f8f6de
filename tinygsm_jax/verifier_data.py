"""Verifier training data: sample N programs per question from generator checkpoints, label them.

    python -m tinygsm_jax.verifier_data --generator CKPT [CKPT ...] --questions KIND:PATH \\
        --n 48 --temperatures 0.5,0.7 --out DIR [--limit K] [--max-new-tokens M]

As in the paper: several generator checkpoints (e.g. 1k, 6k and 12k steps), two temperatures,
48 samples per GSM8K train question; each sample is executed in the sandbox and labelled 1 if
its answer matches the gold one, else 0 (also when it fails to run). Writes:

* DIR/chunks/<checkpoint>_T<temperature>_<hash>.jsonl: one file per (checkpoint, temperature),
  written atomically when complete; a rerun skips the chunks already there (the hash covers
  the checkpoint path and step and every sampling setting, so changed settings resample).
* DIR/candidates.jsonl: every chunk of this run, in the data pipeline's candidate schema
  (question, code, label, checkpoint, temperature, question_id, sample; plus the execution:
  answer, status and the sandbox's error text, which `data build --execution-result` turns into
  the verifier's execution line, `solution_format.execution_line`):
  ``python -m tinygsm_jax.data build --source DIR/candidates.jsonl --out D --tokenizer T``.
* DIR/stats.json: accuracy per checkpoint and temperature (and the fraction of questions with
  at least one correct sample, of samples that ran, and of exact repeats of an earlier sample
  of the same question: `duplicate_rate`); `total` over every chunk, `written` after --dedup.

Each (checkpoint, temperature) pass samples from its own random stream (`sampling_seed`).
`--dedup` drops exact repeats of (question, code) across the whole set: right programs repeat
far more than wrong ones, so without it the verifier sees the same right program many times.

Multi-host (a TPU pod slice, or `--coordinator-address/--num-processes/--process-id`): every
host runs the same command with the same --out. Every process takes part in sampling (the
decode is one global data-parallel program over all chips, so the samples are exactly those
of one process with the same devices); process 0 executes, labels and writes, and decides
which chunks are done (its view is broadcast, so the hosts cannot disagree). DIR should be on
a file system all hosts see (gs:// works) so that a rerun from any host resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from tinygsm_jax.cli import UserError, as_path, atomic_write_json, read_jsonl, run_main
from tinygsm_jax.eval import (
    check_prompts,
    execute_completions,
    load_generator,
    make_sandbox,
    progress_bar,
    write_jsonl,
)
from tinygsm_jax.sharding import (
    add_distributed_args,
    broadcast_from_lead,
    initialize_from_args,
    is_lead,
    sync,
)

# Off, from a measurement (benchmarks/RESULTS.md, section demo): in the demo's data 91% of the
# right samples repeat an earlier one exactly, against 9% of the wrong ones, so dropping repeats
# left 119 right programs among 9,428 rows, and the verifier trained on them ranked no better.
DEDUP_DEFAULT = False


def parse_temperatures(text: str) -> list[float]:
    try:
        temps = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"--temperatures: expected comma-separated numbers, got {text!r}") from None
    if not temps or any(t < 0 for t in temps):
        raise UserError(f"--temperatures: expected non-negative numbers, got {text!r}")
    return temps


def checkpoint_label(path: str) -> tuple[str, Path, int]:
    """(label like 'run1-step1000', workdir root, step) without loading the weights.

    A workdir means its latest finished step now (process 0's view, on every process); that
    step's directory is what gets loaded later, even if training writes a newer one meanwhile.
    """
    from tinygsm_jax.checkpoint import choose_step, read_model_info, resolve

    root, _ = resolve(path)
    info = read_model_info(root)
    if info.get("model", {}).get("head") != "lm":
        raise UserError(
            f"{root}: is a verifier checkpoint (head={info.get('model', {}).get('head')}), expected a generator"
        )
    _, step = choose_step(path)
    return f"{root.resolve().name}-step{step}", root.resolve(), int(step)


def sampling_seed(seed: int, checkpoint: str, temperature: float) -> int:
    """Each (checkpoint, temperature) pass draws its own stream: correlated passes would add
    less diversity than the paper mixes them for (`sampler.stream_seed`)."""
    from tinygsm_jax.sampler import stream_seed

    return stream_seed(seed, "verifier_data", checkpoint, float(temperature))


def duplicate_flags(rows: list[dict]) -> list[bool]:
    """True for each row whose (question, code) an earlier row already has."""
    seen: set[tuple[str, str]] = set()
    flags = []
    for r in rows:
        key = (r["question"], r["code"])
        flags.append(key in seen)
        seen.add(key)
    return flags


def candidate_rows(items, executed: list[list[dict]], label: str, t: float) -> list[dict]:
    """candidates.jsonl rows (`data.schema` candidates) of executed samples (eval's rows); the
    execution (answer, status, error) stays, for `data build --execution-result`."""
    return [
        {"question": items[q].question, "code": r["code"], "label": int(r["correct"]), "checkpoint": label,
         "temperature": t, "question_id": str(r["question_id"]), "sample": r["sample"],
         "answer": r["answer"], "status": r["status"], "error": r["error"]}
        for q, per_q in enumerate(executed) for r in per_q
    ]  # fmt: skip


def chunk_stats(rows: list[dict]) -> dict:
    n = len(rows)
    correct = sum(r["label"] for r in rows)
    per_q: dict[str, bool] = {}
    for r in rows:
        per_q[r["question_id"]] = per_q.get(r["question_id"], False) or bool(r["label"])
    ran = sum(r.get("status") == "ok" for r in rows)
    return {
        "candidates": n, "correct": correct, "accuracy": correct / n if n else 0.0,
        "questions": len(per_q), "questions_with_a_correct_sample": sum(per_q.values()),
        "returned_a_number": ran / n if n else 0.0,
        "duplicate_rate": sum(duplicate_flags(rows)) / n if n else 0.0,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tinygsm_jax.verifier_data", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--generator",
        nargs="+",
        required=True,
        help="generator checkpoints (workdirs or step directories)",
    )
    p.add_argument(
        "--questions", required=True, help="KIND:PATH (gsm8k, svamp, jsonl), e.g. gsm8k:train.jsonl"
    )
    p.add_argument(
        "--n", type=int, default=48, help="samples per question and (checkpoint, temperature)"
    )
    p.add_argument("--temperatures", default="0.5,0.7")
    p.add_argument("--limit", type=int, help="only the first K questions")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--questions-per-batch", type=int, default=8)
    p.add_argument("--workers", type=int, help="sandbox processes (default: CPU count)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per program")
    p.add_argument("--allow-degraded", action="store_true")
    p.add_argument(
        "--dedup",
        action=argparse.BooleanOptionalAction,
        default=DEDUP_DEFAULT,
        help="drop exact repeats of (question, code) from candidates.jsonl, keeping the first "
        f"(default: {'on' if DEDUP_DEFAULT else 'off'}; the chunks keep every sample)",
    )
    p.add_argument("--out", required=True, help="output directory (multi-host: one all hosts see)")
    add_distributed_args(p)
    args = p.parse_args(argv)
    from tinygsm_jax.eval import check_sampling_args

    check_sampling_args(args)
    temps = parse_temperatures(args.temperatures)
    from tinygsm_jax.data.eval_sets import load_eval_set

    items = load_eval_set(args.questions)[: args.limit]
    initialize_from_args(args)  # multi-host: before anything touches a device
    gens = [checkpoint_label(g) for g in args.generator]  # all checked before any sampling
    out = as_path(args.out)  # gs:// too: the directory every host of a pod sees
    chunks_dir = out / "chunks"
    questions_digest = hashlib.sha256(
        "\n".join(f"{it.index}\t{it.question}\t{it.answer}" for it in items).encode()
    ).hexdigest()

    plan = []
    for label, root, step in gens:
        path = str(root / "checkpoints" / str(step))  # exactly the step the label names
        for t in temps:
            key = json.dumps([str(root), step, t, args.n, args.max_new_tokens, args.top_k, args.top_p, args.seed,
                              questions_digest])  # fmt: skip
            name = f"{label}_T{t:g}_{hashlib.sha256(key.encode()).hexdigest()[:10]}.jsonl"
            plan.append((path, label, t, chunks_dir / name))
    import numpy as np

    # Process 0's view of which chunks are done, on every host: they must sample the same ones.
    done = broadcast_from_lead(np.array([c[3].is_file() for c in plan], np.int32))
    todo = [c for c, d in zip(plan, done) if not d]
    if len(todo) < len(plan) and is_lead():
        print(
            f"resuming: {len(plan) - len(todo)} of {len(plan)} chunks already done", file=sys.stderr
        )

    from tinygsm_jax.sampler import SamplingParams
    from tinygsm_jax.solution_format import make_prompt

    prompts = [make_prompt(it.question) for it in items]
    qids = [it.index for it in items]
    start = time.time()
    sandbox = None
    try:
        current = None
        for path, label, t, chunk in todo:
            if current is None or current[0] != path:
                current = (path, *load_generator(path, args.questions_per_batch))
                check_prompts(current[2], prompts, args.max_new_tokens, args.questions)
            sampler = current[2]
            params = SamplingParams(
                n=args.n,
                temperature=t,
                top_k=args.top_k,
                top_p=args.top_p,
                max_new_tokens=args.max_new_tokens,
                seed=sampling_seed(args.seed, label, t),
                stop_at_function_end=True,
            )
            with progress_bar(total=len(items), desc=f"{label} T={t:g}", unit=" questions") as bar:
                samples = sampler.generate(prompts, params, qids, bar)
            if not is_lead():
                # Process 0 executes and writes; the others wait in a device collective, not
                # in the barrier loading the next checkpoint would wait in (orbax's, with a
                # deadline that executing a large chunk could pass).
                sync(f"verifier_data: {chunk.name}")
                continue
            if sandbox is None:
                sandbox = make_sandbox(args.workers, args.timeout, args.allow_degraded)
            executed = execute_completions(
                sandbox, items, prompts, samples, f"executing {label} T={t:g}"
            )
            write_jsonl(chunk, candidate_rows(items, executed, label, t))
            sync(f"verifier_data: {chunk.name}")
    finally:
        if sandbox is not None:
            sandbox.close()
    if not is_lead():
        sync("verifier_data: written")
        return 0

    all_rows, stats = [], []
    for _path, label, t, chunk in plan:
        rows = [r for _, r in read_jsonl(chunk)]
        all_rows += rows
        stats.append({"checkpoint": label, "temperature": t, **chunk_stats(rows)})
    total = chunk_stats(all_rows)  # duplicate_rate here counts repeats across chunks too
    if args.dedup:
        all_rows = [r for r, dup in zip(all_rows, duplicate_flags(all_rows)) if not dup]
    write_jsonl(out / "candidates.jsonl", all_rows)
    atomic_write_json(out / "stats.json", {
        "questions": args.questions, "n_questions": len(items), "n": args.n, "chunks": stats, "total": total,
        "dedup": args.dedup, "written": chunk_stats(all_rows),
    })  # fmt: skip
    sync("verifier_data: written")
    print(
        f"{total['candidates']} candidates ({total['correct']} correct, {100 * total['accuracy']:.1f}%) from "
        f"{len(gens)} checkpoint(s) x {len(temps)} temperature(s) in {time.time() - start:.0f}s; wrote {out}/candidates.jsonl"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
