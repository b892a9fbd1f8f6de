"""Best-of-N sampling tokens/s: our jitted sampler against HF transformers `generate`.

Both run the same weights: a random model of the tiny config (configs/tiny.py) is saved as our
checkpoint, exported with `tinygsm_jax.hf.export_checkpoint` and loaded back by transformers'
`AutoModelForCausalLM`. Each question (a TinyGSM prompt) gets N samples at temperature 0.7,
no top-k/top-p, float32, exactly `--max-new-tokens` tokens each (EOS can never end a sample
early, on either side, so both generate the same number of tokens). The peer is HF's
`generate(num_return_sequences=N, do_sample=True)` per question, the usual way to ask it
for best-of-N. We report ours with the same batch (one question x N rows) and with several
questions per batch (what `tinygsm_jax.eval` does). Compilation / warm-up is excluded on
both sides. The sides alternate over `--rounds` rounds (which goes first flips every round);
the table gives medians over rounds and every round's ratio. `MachineGuard` refuses to run on
a busy machine (`--force` runs and marks the section).

Each side runs in a process of its own: in one process the idle thread pools of one library
(torch's OpenMP threads spin after each operation, XLA's pool too) take CPU from the other,
which moved the ratio by 1.5x either way depending on OMP_WAIT_POLICY.

    python -m benchmarks.sampler [--n 48] [--questions 4] [--max-new-tokens 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

QUESTIONS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
    "How much did she earn?",
    "Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs. "
    "Her parents decided to give her $15 for that purpose, and her grandparents twice as much as her parents. "
    "How much more money does Betty need to buy the wallet?",
    "James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a year?",
    "Mark has a garden with flowers. He planted plants of three different colors in it. Ten of them are "
    "yellow, and there are 80% more of those in purple. How many flowers does Mark have in his garden?",
    "Albert is wondering how much pizza he can eat in one day. He buys 2 large pizzas and 2 small pizzas. "
    "A large pizza has 16 slices and a small pizza has 8 slices. How many pieces does he eat that day?",
    "Ken created a care package to send to his brother, who was away at boarding school. How heavy was it?",
    "Tina makes $18.00 an hour. If she works more than 8 hours per shift, she is eligible for overtime.",
]


def build(tmp: Path, texts: list[str] | None = None, vocab: int = 600):
    """(our checkpoint dir, exported HF dir, config) of a random tiny-config model.

    Its tokenizer (`vocab` tokens at most) is trained on `texts` (default: TinyGSM programs of
    `QUESTIONS`).
    """
    import jax
    import numpy as np
    from flax import nnx

    from configs.tiny import get_config
    from tinygsm_jax.checkpoint import save_model
    from tinygsm_jax.hf import export_checkpoint
    from tinygsm_jax.model import ModelConfig, Phi
    from tinygsm_jax.solution_format import make_program
    from tinygsm_jax.tokenizer import save_tokenizer, train_tokenizer

    cfg = ModelConfig.from_config(get_config().model, dtype="float32", head="lm")
    if texts is None:
        texts = [make_program(q, "    result = 1\n    return result\n") for q in QUESTIONS] * 4
    tok = train_tokenizer(texts, vocab)
    save_tokenizer(tok, tmp / "tok")
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Phi(cfg, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(0)

    def fill(path, x):
        if "ln_scale" in str(path[-1]):
            return np.ones(x.shape, np.float32)
        return (0.05 * rng.standard_normal(x.shape)).astype(np.float32)

    nnx.replace_by_pure_dict(state, jax.tree_util.tree_map_with_path(fill, nnx.to_pure_dict(state)))
    save_model(tmp / "ckpt", nnx.merge(graphdef, state), tmp / "tok")
    export_checkpoint(tmp / "ckpt", tmp / "hf")
    return tmp / "ckpt", tmp / "hf", cfg


def _prompt_ids(tok, questions: int) -> list[list[int]]:
    from tinygsm_jax.solution_format import make_prompt

    prompts = [make_prompt(q) for q in (QUESTIONS * 4)[:questions]]
    return [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]


def fastest_threads(run) -> tuple[int, dict[int, float]]:
    """Set torch to its faster thread count for `run` (1 or every core); (threads, seconds each).

    torch's intra-op threads can be slower than one thread on a loaded machine: calibrating on
    a short run gives HF its better setting either way.
    """
    import torch

    calib = {}
    for th in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(th)
        t = time.perf_counter()
        run()
        calib[th] = time.perf_counter() - t
    threads = min(calib, key=calib.get)
    torch.set_num_threads(threads)
    return threads, calib


def run_hf_side(d: Path, n: int, M: int, questions: int) -> dict:
    """HF generate's best tokens/s over its thread settings (a process of its own)."""
    import torch
    from transformers import AutoModelForCausalLM

    from tinygsm_jax.tokenizer import load_tokenizer

    ids = _prompt_ids(load_tokenizer(d / "tok"), questions)
    hf = AutoModelForCausalLM.from_pretrained(str(d / "hf"), dtype=torch.float32).eval()

    def generate(p, rows, new):
        with torch.inference_mode():
            out = hf.generate(
                torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                do_sample=True, temperature=0.7, top_k=0, top_p=1.0, num_return_sequences=rows,
                max_new_tokens=new, min_new_tokens=new, eos_token_id=None, pad_token_id=0,
            )  # fmt: skip
        assert out.shape == (rows, len(p) + new)

    generate(ids[0], 2, 4)  # warm-up
    threads, calib = fastest_threads(lambda: generate(ids[0], n, 8))
    t = time.perf_counter()
    for p in ids:
        generate(p, n, M)
    dt = time.perf_counter() - t
    return {"hf": len(ids) * n * M / dt, "threads": threads, "thread_options": sorted(calib),
            "torch": torch.__version__}  # fmt: skip


def run_our_side(d: Path, n: int, M: int, questions: int) -> dict:
    """Our sampler's tokens/s with 1 question and with all questions per batch, its rows
    data-parallel over the CPU devices (one per core) as in `tinygsm_jax.eval`."""
    from tinygsm_jax.checkpoint import load_model
    from tinygsm_jax.eval import make_mesh_for_sampling
    from tinygsm_jax.sampler import Sampler, SamplingParams
    from tinygsm_jax.tokenizer import load_tokenizer

    loaded = load_model(d / "ckpt", expect_head="lm")
    tok = load_tokenizer(loaded.tokenizer_dir)
    ids = _prompt_ids(tok, questions)
    params = SamplingParams(n=n, temperature=0.7, max_new_tokens=M, seed=0)
    out = {"compile_seconds": 0.0}
    for q in (1, len(ids)):
        # eos_id=-1: no sample stops early, so each question gets exactly n * M tokens.
        s = Sampler(
            loaded.model, tok, mesh=make_mesh_for_sampling(), eos_id=-1, questions_per_batch=q
        )
        s.sample_ids(ids, params)  # compiles every prompt bucket (excluded)
        out["compile_seconds"] += s.stats.compile_seconds
        t = time.perf_counter()
        res = s.sample_ids(ids, params)
        dt = time.perf_counter() - t
        assert all(len(x["tokens"]) == M for per_q in res for x in per_q)
        out[str(q)] = len(ids) * n * M / dt
    return out


def run_side(module: str, side: str, d: str, args: list[str]) -> dict:
    """Run one side in a fresh process (`python -m module --side side`); its JSON result."""
    cmd = [sys.executable, "-m", module, "--side", side, "--dir", d, *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{module} --side {side} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def alternate_sides(module: str, d: str, args: list[str], rounds: int) -> list[dict]:
    """Each round runs HF and ours in fresh processes, the first side swapping every round."""
    out = []
    for r in range(rounds):
        got: dict = {}
        for side in ("hf", "ours") if r % 2 == 0 else ("ours", "hf"):
            got.update(run_side(module, side, d, args))
        out.append(got)
    return out


def main(argv: list[str] | None = None) -> None:
    from benchmarks.results import MachineGuard, add_guard_args

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians kept)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    add_guard_args(ap)
    ap.add_argument("--side", choices=("hf", "ours"), help=argparse.SUPPRESS)  # a worker process
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    n, M, Q = args.n, args.max_new_tokens, args.questions
    if args.side:
        if args.side == "ours":  # the CPU devices every CLI gets (one per core)
            from tinygsm_jax.cli import split_cpu_into_devices

            split_cpu_into_devices()
        run = run_hf_side if args.side == "hf" else run_our_side
        print(json.dumps(run(Path(args.dir), n, M, Q)))
        return

    guard = MachineGuard("sampler", force=args.force)
    guard.before()
    with tempfile.TemporaryDirectory() as d:
        _, _, cfg = build(Path(d))
        side_args = ["--n", str(n), "--questions", str(Q), "--max-new-tokens", str(M)]
        rounds = alternate_sides("benchmarks.sampler", d, side_args, args.rounds)
    guard.after()
    tps = {k: statistics.median(g[k] for g in rounds) for k in ("hf", "1", str(Q))}
    r1 = statistics.median(g["1"] / g["hf"] for g in rounds)
    rq = statistics.median(g[str(Q)] / g["hf"] for g in rounds)
    each = "; ".join(f"{g['1'] / g['hf']:.2f}x / {g[str(Q)] / g['hf']:.2f}x" for g in rounds)
    last = rounds[-1]
    compile_s = statistics.median(g["compile_seconds"] for g in rounds)
    lines = [
        "## sampler",
        "",
        f"{guard.describe()} CPU, float32. Model: configs/tiny.py shape ({cfg.n_layers} layers, d_model "
        f"{cfg.d_model}, vocab {cfg.vocab_size}), random weights, exported to HF with `export_checkpoint`. "
        f"{Q} TinyGSM prompts, best-of-{n} at temperature 0.7, {M} new tokens per sample (EOS "
        f"disabled on both sides), {Q * n * M} tokens per run; each side in its own process, "
        f"{args.rounds} alternating rounds, medians of tokens/s and of the rounds' ratios; "
        f"compilation excluded ({compile_s:.1f} s for our two programs). Each round's ratio "
        f"(1 question / {Q} questions vs HF): {each}.",
        "",
        "| sampler | batch | tokens/s | vs HF |",
        "| --- | --- | ---: | ---: |",
        f"| HF `generate(num_return_sequences={n}, do_sample=True)`, torch {last['torch']}, "
        f"{last['threads']} thread(s) (best of {last['thread_options']}) | 1 question x {n} "
        f"| {tps['hf']:.0f} | 1.00x |",
        f"| tinygsm_jax.sampler | 1 question x {n} | {tps['1']:.0f} | {r1:.2f}x |",
        f"| tinygsm_jax.sampler | {Q} questions x {n} | {tps[str(Q)]:.0f} | {rq:.2f}x |",
    ]
    guard.publish("\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()
