"""Best-of-N eval wall time: `tinygsm_jax.eval`'s sampling against HF `generate`, same job.

The job: `--questions` GSM8K test questions (from ../shared/data/gsm8k/test.jsonl next to the
project, else built-in TinyGSM questions), `--n` samples each at temperature 0.7, at most
`--max-new-tokens` new tokens. Both sides run the same weights: a random model of the
configs/tiny.py shape with a tokenizer trained on the questions, saved as our checkpoint and
exported with `tinygsm_jax.hf.export_checkpoint`.

* Ours is exactly the eval's sampling phase: `eval.load_generator` (its questions per batch
  and mesh) and `Sampler.generate` with the eval's parameters, stopping each sample at the
  function's end (or EOS, or the token limit). Reported warm (compiled programs reused, as for
  every question after the first batches of a real eval) and cold (first call in a fresh
  process: compilation included).
* HF runs `generate(num_return_sequences=N, do_sample=True)` per question, its natural stop:
  a question ends when all its samples reached EOS or the token limit. torch gets its faster
  thread count (1 or every core, calibrated on a short run).

Each side runs in a process of its own (idle thread pools of one library steal CPU from the
other, see benchmarks/sampler.py); the sides alternate over `--rounds` rounds, which one goes
first flipping every round, and the table gives medians and every round's ratio. The model's
weights are random, so its samples rarely reach EOS or a function end before the limit; the
table counts the tokens each side generated. `MachineGuard` refuses to run on a busy machine.

    python -m benchmarks.eval_vs_hf [--questions 4] [--n 48] [--max-new-tokens 128] [--rounds 3]
        [--quick] [--no-write] [--force]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k" / "test.jsonl"
TEMPERATURE = 0.7
_TOKENIZER_TEXTS = 200  # questions the tokenizer is trained on


def prepare(tmp: Path, questions: int, max_new: int) -> dict:
    """Build the model and pick the questions; writes tmp/job.json, returns it."""
    from benchmarks.sampler import QUESTIONS, build
    from tinygsm_jax.solution_format import make_program, make_prompt
    from tinygsm_jax.tokenizer import load_tokenizer

    if GSM8K.is_file():
        from tinygsm_jax.data.eval_sets import load_eval_set

        items = [(it.index, it.question) for it in load_eval_set(f"gsm8k:{GSM8K}")]
        source = "GSM8K test (the first that fit the model's context)"
    else:
        items = list(enumerate(QUESTIONS))
        source = "built-in TinyGSM questions (../shared/data/gsm8k not found)"
    body = "    result = 1\n    return result\n"
    texts = [make_program(q, body) for _, q in items[:_TOKENIZER_TEXTS]]
    ckpt, _, cfg = build(tmp, texts * (1 if len(texts) > 50 else 4), vocab=2048)
    tok = load_tokenizer(tmp / "tok")
    limit = cfg.max_len - max_new
    fits = []
    for i, q in items:
        if len(tok(make_prompt(q), add_special_tokens=False)["input_ids"]) <= limit:
            fits.append((i, q))
            if len(fits) == questions:
                break
    if len(fits) < questions:
        raise SystemExit(f"only {len(fits)} questions fit {limit} prompt tokens; ask for fewer")
    job = {"ids": [i for i, _ in fits[:questions]], "questions": [q for _, q in fits[:questions]],
           "source": source, "layers": cfg.n_layers, "d_model": cfg.d_model,
           "vocab": cfg.vocab_size, "tokenizer": len(tok)}  # fmt: skip
    (tmp / "job.json").write_text(json.dumps(job))
    return job


def run_hf_side(d: Path, n: int, max_new: int) -> dict:
    """Wall time of HF generate over the job's questions (a process of its own)."""
    import torch
    from transformers import AutoModelForCausalLM

    from benchmarks.sampler import fastest_threads
    from tinygsm_jax.solution_format import make_prompt
    from tinygsm_jax.tokenizer import load_tokenizer

    job = json.loads((d / "job.json").read_text())
    tok = load_tokenizer(d / "tok")
    eos = tok.eos_token_id
    ids = [tok(make_prompt(q), add_special_tokens=False)["input_ids"] for q in job["questions"]]
    hf = AutoModelForCausalLM.from_pretrained(str(d / "hf"), dtype=torch.float32).eval()

    def generate(p: list[int], rows: int, new: int) -> tuple[int, int]:
        """(tokens the samples generated, EOS included; decode steps HF ran)."""
        with torch.inference_mode():
            out = hf.generate(
                torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                do_sample=True, temperature=TEMPERATURE, top_k=0, top_p=1.0,
                num_return_sequences=rows, max_new_tokens=new, eos_token_id=eos, pad_token_id=eos,
            )  # fmt: skip
        gen = out[:, len(p) :]
        hit = gen == eos
        first = torch.where(hit.any(1), hit.int().argmax(1) + 1, gen.shape[1])
        return int(first.sum()), gen.shape[1]

    generate(ids[0], 2, 4)  # warm-up
    threads, calib = fastest_threads(lambda: generate(ids[0], n, 8))
    t = time.perf_counter()
    counts = [generate(p, n, max_new) for p in ids]
    wall = time.perf_counter() - t
    return {"hf_seconds": wall, "hf_tokens": sum(c[0] for c in counts),
            "hf_steps": sum(c[1] for c in counts), "threads": threads,
            "thread_options": sorted(calib), "torch": torch.__version__}  # fmt: skip


def run_our_side(d: Path, n: int, max_new: int) -> dict:
    """Wall time of the eval's sampling phase, cold and warm (a process of its own)."""
    import dataclasses

    from tinygsm_jax.eval import build_parser, load_generator
    from tinygsm_jax.sampler import SamplingParams, stream_seed
    from tinygsm_jax.solution_format import make_prompt

    job = json.loads((d / "job.json").read_text())
    qpb = build_parser().get_default("questions_per_batch")
    _, sampler = load_generator(str(d / "ckpt"), qpb)
    prompts = [make_prompt(q) for q in job["questions"]]
    params = SamplingParams(n=n, temperature=TEMPERATURE, max_new_tokens=max_new,
                            seed=stream_seed(0, "eval", TEMPERATURE), stop_at_function_end=True)  # fmt: skip
    t = time.perf_counter()
    sampler.generate(prompts, params, job["ids"])
    cold = time.perf_counter() - t
    before = dataclasses.replace(sampler.stats)
    t = time.perf_counter()
    out = sampler.generate(prompts, params, job["ids"])
    warm = time.perf_counter() - t
    reasons: dict[str, int] = {}
    for c in (c for per_q in out for c in per_q):
        reasons[c.finish_reason] = reasons.get(c.finish_reason, 0) + 1
    return {"ours_seconds": warm, "ours_cold_seconds": cold,
            "compile_seconds": before.compile_seconds,
            "questions_per_batch": sampler.batch_questions_for(n, len(prompts)),
            "ours_tokens": sampler.stats.generated_tokens - before.generated_tokens,
            "finish": reasons}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from benchmarks.results import MachineGuard, add_guard_args
    from benchmarks.sampler import alternate_sides

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--n", type=int, default=48, help="samples per question")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians kept)")
    ap.add_argument("--quick", action="store_true", help="a tiny job, 1 round (for a test)")
    ap.add_argument("--no-write", action="store_true", help="print the section; leave RESULTS.md")
    add_guard_args(ap)
    ap.add_argument("--side", choices=("hf", "ours"), help=argparse.SUPPRESS)  # a worker process
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.questions, args.n, args.max_new_tokens, args.rounds = 2, 4, 16, 1
    n, M, Q = args.n, args.max_new_tokens, args.questions
    if args.side:
        if args.side == "ours":  # the eval's own CPU devices (one per core), as its CLI sets
            from tinygsm_jax.cli import split_cpu_into_devices

            split_cpu_into_devices()
        run = run_hf_side if args.side == "hf" else run_our_side
        print(json.dumps(run(Path(args.dir), n, M)))
        return 0

    guard = MachineGuard("eval_vs_hf", force=args.force)
    guard.before()
    with tempfile.TemporaryDirectory() as d:
        job = prepare(Path(d), Q, M)
        side_args = ["--n", str(n), "--max-new-tokens", str(M)]
        rounds = alternate_sides("benchmarks.eval_vs_hf", d, side_args, args.rounds)
    guard.after()
    guard.publish(section(job, rounds, n, M, guard.describe()), write=not args.no_write)
    return 0


def section(job: dict, rounds: list[dict], n: int, M: int, machine: str) -> str:
    """The RESULTS.md section from the rounds' results."""

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    Q = len(job["questions"])
    warm = [r["hf_seconds"] / r["ours_seconds"] for r in rounds]
    cold = [r["hf_seconds"] / r["ours_cold_seconds"] for r in rounds]
    last = rounds[-1]
    finish = ", ".join(f"{k} {v}" for k, v in sorted(last["finish"].items()))
    hf_tps, our_tps = med("hf_tokens") / med("hf_seconds"), med("ours_tokens") / med("ours_seconds")
    return "\n".join([
        "## eval_vs_hf: the eval's best-of-N sampling vs HF `generate`, wall time of one job",
        "",
        f"{machine} CPU, float32. Job: {Q} questions ({job['source']}), best-of-{n} at temperature "
        f"{TEMPERATURE}, at most {M} new tokens. Model: configs/tiny.py shape ({job['layers']} layers, "
        f"d_model {job['d_model']}, vocab {job['vocab']}; tokenizer {job['tokenizer']} tokens), random "
        "weights, exported to HF with `export_checkpoint`. Each side in its own process, each with its "
        f"own stopping rule; {len(rounds)} alternating rounds, medians. HF / ours each round, warm: "
        + ", ".join(f"{x:.2f}x" for x in warm) + "; cold: " + ", ".join(f"{x:.2f}x" for x in cold)
        + f". Our samples' finish reasons (last round): {finish}. Random weights rarely reach EOS or "
        "a function end, so both sides run close to the token limit; a trained model stops earlier.",
        "",
        "| side | stops at | wall s | tokens generated | tokens/s | HF / ours |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
        f"| HF `generate(num_return_sequences={n}, do_sample=True)` per question, torch "
        f"{last['torch']}, {last['threads']} thread(s) (best of {last['thread_options']}) "
        f"| EOS or {M} tokens (all {n} samples) | {med('hf_seconds'):.2f} | {med('hf_tokens'):.0f} "
        f"| {hf_tps:.0f} | 1.00x |",
        f"| `tinygsm_jax.eval` sampling, warm ({last['questions_per_batch']} questions per batch) "
        f"| function end, EOS or {M} tokens (each sample) | {med('ours_seconds'):.2f} "
        f"| {med('ours_tokens'):.0f} | {our_tps:.0f} | **{statistics.median(warm):.2f}x** |",
        f"| `tinygsm_jax.eval` sampling, cold (compilation included: {med('compile_seconds'):.1f} s) "
        f"| the same | {med('ours_cold_seconds'):.2f} | | | {statistics.median(cold):.2f}x |",
    ])  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
