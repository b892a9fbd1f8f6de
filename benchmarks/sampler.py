"""Best-of-N sampling tokens/s: our jitted sampler against HF transformers `generate`.

Both run the same weights: a random model of the tiny config (configs/tiny.py) is saved as our
checkpoint, exported with `tinygsm_jax.hf.export_checkpoint` and loaded back by transformers'
`AutoModelForCausalLM`. Each question (a TinyGSM prompt) gets N samples at temperature 0.7,
no top-k/top-p, float32, exactly `--max-new-tokens` tokens each (EOS can never end a sample
early, on either side, so both generate the same number of tokens). The peer is HF's
`generate(num_return_sequences=N, do_sample=True)` per question, the usual way to ask it
for best-of-N. We report ours with the same batch (one question x N rows) and with several
questions per batch (what `tinygsm_jax.eval` does). Compilation / warm-up is excluded on
both sides; each figure is the best of `--repeats` runs, run alternately.

    python -m benchmarks.sampler [--n 48] [--questions 4] [--max-new-tokens 128] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
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


def build(tmp: Path):
    """(our checkpoint dir, exported HF dir) of a random tiny-config model."""
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
    texts = [make_program(q, "    result = 1\n    return result\n") for q in QUESTIONS] * 4
    tok = train_tokenizer(texts, 600)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from benchmarks.results import machine, update_section
    from tinygsm_jax.checkpoint import load_model
    from tinygsm_jax.sampler import Sampler, SamplingParams
    from tinygsm_jax.solution_format import make_prompt
    from tinygsm_jax.tokenizer import load_tokenizer

    n, M = args.n, args.max_new_tokens
    prompts = [make_prompt(q) for q in (QUESTIONS * 4)[: args.questions]]
    with tempfile.TemporaryDirectory() as d:
        ckpt, hf_dir, cfg = build(Path(d))
        loaded = load_model(ckpt, expect_head="lm")
        tok = load_tokenizer(loaded.tokenizer_dir)
        hf = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    params = SamplingParams(n=n, temperature=0.7, max_new_tokens=M, seed=0)
    # eos_id=-1: no sample can stop early, so every run generates exactly n * M tokens per question.
    ours = {
        q: Sampler(loaded.model, tok, eos_id=-1, questions_per_batch=q) for q in (1, len(prompts))
    }

    def run_ours(s: Sampler) -> float:
        t = time.perf_counter()
        out = s.sample_ids(ids, params)
        dt = time.perf_counter() - t
        assert all(len(x["tokens"]) == M for per_q in out for x in per_q)
        return dt

    def run_hf() -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            for p in ids:
                out = hf.generate(
                    torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                    do_sample=True, temperature=0.7, top_k=0, top_p=1.0, num_return_sequences=n,
                    max_new_tokens=M, min_new_tokens=M, eos_token_id=None, pad_token_id=0,
                )  # fmt: skip
                assert out.shape == (n, len(p) + M)
        return time.perf_counter() - t

    for s in ours.values():  # compile (excluded)
        s.sample_ids(ids[:1], params)
    compile_s = sum(s.stats.compile_seconds for s in ours.values())
    with torch.inference_mode():  # HF warm-up
        hf.generate(
            torch.tensor([ids[0]]),
            do_sample=True,
            num_return_sequences=2,
            max_new_tokens=4,
            pad_token_id=0,
        )
    # torch's intra-op threads can be far slower than one thread on a busy machine: calibrate on a
    # short run and give HF its faster setting.
    thread_options = sorted({1, os.cpu_count() or 1})
    calib = {}
    for th in thread_options:
        torch.set_num_threads(th)
        t = time.perf_counter()
        with torch.inference_mode():
            hf.generate(torch.tensor([ids[0]]), do_sample=True, num_return_sequences=n, max_new_tokens=8,
                        min_new_tokens=8, pad_token_id=0)  # fmt: skip
        calib[th] = time.perf_counter() - t
    hf_threads = min(calib, key=calib.get)
    torch.set_num_threads(hf_threads)
    best = {"hf": float("inf"), 1: float("inf"), len(prompts): float("inf")}
    for _ in range(args.repeats):
        best["hf"] = min(best["hf"], run_hf())
        for q, s in ours.items():
            best[q] = min(best[q], run_ours(s))
    tokens = len(prompts) * n * M
    tps = {k: tokens / v for k, v in best.items()}
    r1, rq = tps[1] / tps["hf"], tps[len(prompts)] / tps["hf"]
    plen = sum(map(len, ids)) / len(ids)
    lines = [
        "## sampler",
        "",
        f"Machine: {machine()}, CPU, float32. Model: configs/tiny.py shape ({cfg.n_layers} layers, d_model "
        f"{cfg.d_model}, vocab {cfg.vocab_size}), random weights, exported to HF with `export_checkpoint`. "
        f"{len(prompts)} TinyGSM prompts (mean {plen:.0f} tokens), best-of-{n} at temperature 0.7, "
        f"{M} new tokens per sample (EOS disabled on both sides), {tokens} tokens per run; best of "
        f"{args.repeats} runs; compilation excluded ({compile_s:.1f} s for our two programs).",
        "",
        "| sampler | batch | tokens/s | vs HF |",
        "| --- | --- | ---: | ---: |",
        f"| HF `generate(num_return_sequences={n}, do_sample=True)`, torch {torch.__version__}, "
        f"{hf_threads} thread(s) (best of {thread_options}) | 1 question x {n} "
        f"| {tps['hf']:.0f} | 1.00x |",
        f"| tinygsm_jax.sampler | 1 question x {n} | {tps[1]:.0f} | {r1:.2f}x |",
        f"| tinygsm_jax.sampler | {len(prompts)} questions x {n} | {tps[len(prompts)]:.0f} | {rq:.2f}x |",
    ]
    md = "\n".join(lines)
    print(md)
    if not args.no_write:
        update_section("sampler", md)


if __name__ == "__main__":
    main()
