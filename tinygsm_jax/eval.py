"""Best-of-N evaluation: greedy and N samples per question, executed, verified, reported.

    python -m tinygsm_jax.eval --generator CKPT [--verifier CKPT] --dataset KIND:PATH \\
        [--limit K] --n N [--temperature T] [--max-new-tokens M] --out DIR
    python -m tinygsm_jax.eval --from-candidates DIR [--verifier CKPT --dataset KIND:PATH] \\
        --out DIR2

For each question (`KIND:PATH` as in `tinygsm_jax.data.eval_sets`: gsm8k, svamp, jsonl) the
generator is prompted with `make_prompt(question)`; one greedy decode and N samples are cut at
the function's end, executed in the sandbox and compared with the gold answer; a verifier,
when given, scores each sample at its last token. Writes into DIR, each file atomically:

* candidates.jsonl: one row per sample: question_id (0-based index in the data set file),
  sample (0..N-1), code (prompt + body), answer (number or null), correct, score (with a
  verifier), logprob (raw-model log-prob of the sampled body, see `tinygsm_jax.sampler`);
  plus status and error (the sandbox's), finish_reason, n_tokens (kept) and n_generated (what
  the sampler produced, counting the EOS or the token that began the next line).
* greedy.jsonl: the greedy decode of each question, same fields (sample = 0).
* report.json: dataset, n_questions, n_samples, metrics (`tinygsm_jax.bestofn`), throughput
  of the N-sample phase (generated tokens, seconds and tokens/s, compilation excluded), and
  95% bootstrap intervals over questions for every pick at k = N (`intervals`, `vs_greedy`
  paired against greedy@1, `bootstrap` the settings).
* report.md (a table) and accuracy_vs_n.png (pass@k, maj@k, verify@k against k).

Rescoring (`--from-candidates DIR`): no generator and no sandbox. DIR's candidates.jsonl,
greedy.jsonl and report.json are read back; with --verifier every sample is scored again (the
questions come from --dataset, each checked against the prompt its samples' code begins with),
without one the report is only derived again from the rows (after a change to the metrics).
DIR2 gets the same five files, the report marked `rescored` (from where, with which verifier).
So verifiers are compared on exactly the same samples.

Multi-host (a TPU pod slice, or `--coordinator-address/--num-processes/--process-id`): every
host runs the same command with the same --out. The decode (and the verifier's scoring) is one
global data-parallel program over every chip of every host (`tinygsm_jax.sampler`), so the
samples are exactly those of one process with the same devices; process 0 alone executes the
programs and writes DIR while the others wait for it, so each file is written once.

The verifier sees exactly its training layout (`data.schema.layout`): prompt tokens, then body
tokens (the body cut at the function end, stripped, one newline). The score is its output at
the body's last token: the last position trained with the candidate's label (its training
target there is EOS, which itself is never an input; `train_step.last_token_mask`).

A verifier trained with `data.execution_result` (its model.json says so) also reads each
sample's execution line after the body (`solution_format.execution_line`, built from the
row's answer, status and error by `data.schema.execution_of_row`, as its training data was), and
its score is read at the end of that line. The samples are then executed before they are
scored: process 0 runs the sandbox and every process receives its rows' execution lines
(`sharding.lead_json`), so all hosts score the same inputs however a program's timing went.
Rescoring reads the lines from the saved rows (a run from before the error field was kept
cannot be rescored by such a verifier: its failed samples' lines are unknown).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tinygsm_jax.cli import (
    UserError,
    as_path,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    run_main,
)
from tinygsm_jax.sharding import (
    add_distributed_args,
    initialize_from_args,
    is_lead,
    lead_json,
    sync,
)

_SCORE_BATCH = 32


# ------------------------------------------------------------------------------ shared parts
def make_sandbox(workers: int | None, timeout: float, allow_degraded: bool):
    """The sandbox, with a missing isolation mechanism turned into one clear line."""
    from tinygsm_jax.execute import Sandbox, SandboxUnavailable

    try:
        return Sandbox(workers=workers, timeout=timeout, allow_degraded=allow_degraded)
    except SandboxUnavailable as e:
        raise UserError(f"sandbox unavailable: {e} (--allow-degraded runs without it)") from None


def execute_completions(
    sandbox, items, prompts: list[str], completions: list[list[Any]], desc: str
) -> list[list[dict]]:
    """Run every completion's program; rows with code, answer, correct, logprob, status, ..."""
    from tqdm import tqdm

    from tinygsm_jax.answers import answers_match

    codes = [prompts[q] + c.text for q, per_q in enumerate(completions) for c in per_q]
    with tqdm(total=len(codes), desc=desc, unit=" programs", leave=False, file=sys.stderr) as bar:
        results = []
        for r in sandbox.imap(codes):
            results.append(r)
            bar.update(1)
    out, i = [], 0
    for q, per_q in enumerate(completions):
        rows = []
        for s, c in enumerate(per_q):
            r = results[i]
            i += 1
            answer = r.answer if r.status == "ok" else None
            rows.append({
                "question_id": items[q].index, "sample": s, "code": codes[i - 1], "answer": answer,
                "correct": bool(answer is not None and answers_match(answer, items[q].answer)),
                "logprob": round(c.logprob, 6), "status": r.status, "error": r.error,
                "finish_reason": c.finish_reason,
                "n_tokens": len(c.tokens), "n_generated": c.n_generated,
            })  # fmt: skip
        out.append(rows)
    return out


def gather(x) -> np.ndarray:
    """A (possibly multi-host) array's full value on every process."""
    import jax

    if jax.process_count() > 1 and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def progress_bar(**kwargs):
    """tqdm on stderr, shown by process 0 only (every host runs the same loop)."""
    import jax
    from tqdm import tqdm

    return tqdm(file=sys.stderr, disable=jax.process_index() != 0, **kwargs)


def make_mesh_for_sampling():
    """Data parallel over every device of every process."""
    from tinygsm_jax.sharding import make_mesh

    return make_mesh(data=-1, fsdp=1, tensor=1)


class Scorer:
    """The verifier's last-token score for candidate programs (a plain jit, bucketed shapes)."""

    def __init__(self, loaded, mesh=None):
        import jax
        from flax import nnx

        from tinygsm_jax.tokenizer import load_tokenizer

        self.cfg = loaded.config
        self.execution_result = reads_execution_result(loaded)
        self.tok = load_tokenizer(loaded.tokenizer_dir)
        self.graphdef, self.state = nnx.split(loaded.model)
        self.mesh = mesh
        n_dev = 1
        if mesh is None:
            self.state = jax.device_put(self.state)
        if mesh is not None:
            from jax.sharding import NamedSharding, PartitionSpec

            from tinygsm_jax.sharding import state_shardings

            pure = jax.device_put(nnx.to_pure_dict(self.state), state_shardings(self.state, mesh))
            nnx.replace_by_pure_dict(self.state, pure)
            self._rows = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
            n_dev = mesh.shape["data"] * mesh.shape["fsdp"]
        self.batch = -(-_SCORE_BATCH // n_dev) * n_dev
        graphdef = self.graphdef

        def score(state, tokens, segments, last):
            model = nnx.merge(graphdef, state)
            out = model(tokens, None, segments)
            return jax.numpy.take_along_axis(out, last[:, None], axis=1)[:, 0]

        self._fn = jax.jit(score)

    def ids(self, question: str, code: str, execution: str = "") -> list[int]:
        """Prompt + body (+ execution line) token ids, the verifier's training inputs, as the
        builder makes them; the score is read at the last."""
        from tinygsm_jax.data.schema import Candidate, layout
        from tinygsm_jax.solution_format import make_prompt

        cand = Candidate(question=question, code=code, label=0, execution=execution)
        lay = layout(cand, execution_result=self.execution_result)
        if lay is None:  # no body: never in training; the prompt (and the line) alone
            lay = (make_prompt(question), execution + "\n" if self.execution_result else "")
        prompt, body = lay
        ids = self.tok(prompt, add_special_tokens=False)["input_ids"]
        if body:
            ids = ids + self.tok(body, add_special_tokens=False)["input_ids"]
        return ids[-self.cfg.max_len :]

    def __call__(
        self,
        pairs: list[tuple[str, str]],
        desc: str = "verifying",
        executions: list[str] | None = None,
    ) -> list[float]:
        """Scores of (question, code) pairs; `executions`, each pair's execution line, is needed
        (and read) only by a verifier trained with them."""
        import jax
        from tqdm import tqdm

        from tinygsm_jax.sampler import _bucket

        if not self.execution_result:
            executions = [""] * len(pairs)
        elif executions is None or len(executions) != len(pairs) or not all(executions):
            raise ValueError("this verifier reads execution results: one line for every pair")
        seqs = [self.ids(q, c, e) for (q, c), e in zip(pairs, executions)]
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        scores = [0.0] * len(seqs)
        bar = tqdm(range(0, len(order), self.batch), desc=desc, leave=False, file=sys.stderr,
                   disable=jax.process_index() != 0)  # fmt: skip
        for b in bar:
            idx = order[b : b + self.batch]
            T = _bucket(max(len(seqs[i]) for i in idx), self.cfg.max_len)
            tokens = np.zeros((self.batch, T), np.int32)
            segments = np.zeros((self.batch, T), np.int32)
            last = np.zeros((self.batch,), np.int32)
            for r, i in enumerate(idx):
                s = seqs[i]
                tokens[r, : len(s)], segments[r, : len(s)], last[r] = s, 1, len(s) - 1
            args = [tokens, segments, last]
            if self.mesh is not None:
                args = [jax.device_put(a, self._rows) for a in args]
            out = gather(self._fn(self.state, *args))
            for r, i in enumerate(idx):
                scores[i] = float(out[r])
        return scores


def reads_execution_result(loaded) -> bool:
    """Whether a verifier checkpoint was trained on execution lines (model.json "data"; a
    checkpoint without the key: no)."""
    from tinygsm_jax.checkpoint import read_model_info

    return bool((read_model_info(loaded.root).get("data") or {}).get("execution_result", False))


def execution_lines(rows: list[dict], where: str) -> list[str]:
    """Each row's execution line (`schema.execution_of_row`); UserError if one is unknown."""
    from tinygsm_jax.data.schema import execution_of_row

    lines = [execution_of_row(r, where) for r in rows]
    if not all(lines):
        raise UserError(
            f"{where}: a sample has no execution result (status, and error when it failed: "
            "written before eval kept the error); the verifier reads them, run eval again"
        )
    return lines


# ----------------------------------------------------------------------------------- reports
# (metric prefix, column title) in the order the table and the plot show them.
PICKS = (
    ("pass", "pass@k (oracle)"),
    ("maj", "maj@k"),
    ("random", "random@k"),
    ("distinct", "distinct@k"),
    ("likelihood", "likelihood@k"),
    ("weighted_likelihood", "weighted_likelihood@k"),
    ("verify", "verify@k"),
    ("weighted", "weighted@k"),
    ("joint", "joint@k"),
)


def _step_note(report: dict, name: str) -> str:
    step = report.get(f"{name}_step")
    return "" if step is None else f" (step {step})"


def report_markdown(report: dict) -> str:
    """The report as a Markdown table: one row per k, one column per way of picking."""
    m = report["metrics"]
    ks = sorted({int(key.split("@")[1]) for key in m if key.startswith("pass@")})
    cols = [(name, title) for name, title in PICKS if f"{name}@1" in m]
    lines = [
        f"# Evaluation: {report['dataset']}",
        "",
        f"Generator `{report.get('generator', '')}`{_step_note(report, 'generator')}"
        + (
            f", verifier `{report['verifier']}`{_step_note(report, 'verifier')}"
            if report.get("verifier")
            else ""
        )
        + f"; {report['n_questions']} questions, {report['n_samples']} samples each at temperature "
        f"{report.get('temperature')}.",
        "",
        f"Greedy accuracy (greedy@1): **{100 * m.get('greedy@1', 0.0):.1f}%**",
        "",
        "| k | " + " | ".join(title for _, title in cols) + " |",
        "|---:|" + "---:|" * len(cols),
    ]
    for k in ks:
        lines.append(
            f"| {k} | " + " | ".join(f"{100 * m[f'{n}@{k}']:.1f}%" for n, _ in cols) + " |"
        )
    lines += [
        "",
        "Every pick but pass@k chooses among the samples that returned a number: random@k is a "
        "uniform pick, distinct@k a uniform pick among distinct programs, likelihood@k the "
        "generator's most likely sample, verify@k the verifier's highest score; the weighted "
        "picks sum each answer's weights over its samples (sigmoid of the verifier's score, or "
        "the generator's probability) and take the heaviest answer; joint@k the sample with "
        "the highest product of the verifier's probability and the generator's.",
    ]
    lines += interval_markdown(report)
    for key, who in (
        ("verifier_ranking", "Verifier"),
        ("likelihood_ranking", "Generator likelihood"),
        ("joint_ranking", "Joint (verifier x generator)"),
    ):
        r = report.get(key)
        if r and r["questions"]:
            lines += [
                "",
                f"{who} ranking within a question: AUC {r['within_question_auc']:.3f} over the "
                f"{r['questions']} questions with both right and wrong numeric samples (0.5 is chance).",
            ]
    if report.get("rescored"):
        r = report["rescored"]
        lines += [
            "",
            f"Rescored from `{r['from']}` without sampling again"
            + (f", with verifier `{r['verifier']}`." if r.get("verifier") else " (report only)."),
        ]
    t = report["throughput"]
    lines += [
        "",
        f"Sampling: {t['generated_tokens']} tokens in {t['sampling_seconds']:.1f} s "
        f"= {t['tokens_per_second']:.1f} tokens/s (compilation excluded).",
    ]
    return "\n".join(lines) + "\n"


def interval_markdown(report: dict) -> list[str]:
    """The k = N picks with their bootstrap intervals, and each minus greedy (paired)."""
    iv, vs = report.get("intervals"), report.get("vs_greedy") or {}
    if not iv:
        return []
    m = report["metrics"]
    boot = report.get("bootstrap", {})
    lines = [
        "",
        f"95% intervals, bootstrap over questions ({boot.get('resamples', '?')} resamples, seed "
        f"{boot.get('seed', '?')}); minus greedy is paired (the same resampled questions):",
        "",
        "| pick | accuracy | 95% CI | minus greedy (points) | paired 95% CI |",
        "|---|---:|---:|---:|---:|",
    ]

    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    for name, (lo, hi) in iv.items():
        row = f"| {name} | {pct(m[name])} | {pct(lo)} to {pct(hi)} |"
        if name in vs:
            d, (dlo, dhi) = vs[name]["diff"], vs[name]["ci95"]
            row += f" {100 * d:+.1f} | {100 * dlo:+.1f} to {100 * dhi:+.1f} |"
        else:
            row += " | |"
        lines.append(row)
    return lines


def plot_accuracy(report: dict, path: Path) -> None:
    """accuracy_vs_n.png: every pick's accuracy against k (log2 x axis), greedy as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = report["metrics"]
    ks = sorted({int(key.split("@")[1]) for key in m if key.startswith("pass@")})
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, label in PICKS:
        if f"{name}@1" in m:
            style = "-" if name in ("pass", "maj", "verify", "weighted", "joint") else ":"
            ax.plot(ks, [100 * m[f"{name}@{k}"] for k in ks], style, marker="o", label=label)
    if "greedy@1" in m:
        ax.axhline(100 * m["greedy@1"], color="gray", linestyle="--", label="greedy")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("N (samples per question)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{report['dataset']}: accuracy vs N")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


# -------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tinygsm_jax.eval", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--generator", help="generator checkpoint (workdir or step directory)")
    p.add_argument("--verifier", help="verifier checkpoint (head=value); adds score and verify@k")
    p.add_argument("--dataset", help="KIND:PATH with KIND gsm8k, svamp or jsonl")
    p.add_argument(
        "--from-candidates",
        metavar="DIR",
        help="no sampling: rescore DIR's saved samples with --verifier (needs --dataset), or "
        "without one recompute the report, into --out",
    )
    p.add_argument("--limit", type=int, help="evaluate only the first K questions")
    p.add_argument("--n", type=int, default=48, help="samples per question (default 48)")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-k", type=int, default=0, help="0 = off")
    p.add_argument("--top-p", type=float, default=1.0, help="1 = off")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--questions-per-batch", type=int, default=8)
    p.add_argument("--workers", type=int, help="sandbox processes (default: CPU count)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per program")
    p.add_argument(
        "--allow-degraded",
        action="store_true",
        help="run the sandbox without a missing isolation layer",
    )
    p.add_argument("--out", required=True, help="output directory (multi-host: one all hosts see)")
    add_distributed_args(p)
    return p


def check_sampling_args(args) -> None:
    if args.n < 1:
        raise UserError(f"--n must be at least 1, got {args.n}")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}")
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.top_k < 0 or not 0 < args.top_p <= 1:
        raise UserError("--top-k must be >= 0 and --top-p in (0, 1]")


def load_generator(path: str, questions_per_batch: int):
    """(loaded checkpoint, Sampler over all devices)."""
    from tinygsm_jax.checkpoint import load_model
    from tinygsm_jax.sampler import Sampler
    from tinygsm_jax.tokenizer import load_tokenizer

    mesh = make_mesh_for_sampling()
    loaded = load_model(path, expect_head="lm", mesh=mesh)  # restored straight onto its mesh
    tok = load_tokenizer(loaded.tokenizer_dir)
    sampler = Sampler(loaded.model, tok, mesh=mesh, questions_per_batch=questions_per_batch)
    return loaded, sampler


def model_steps(**loaded: Any) -> dict:
    """report.json's record of which model it evaluated: each checkpoint's step and directory.

    `--generator RUN` means RUN's latest step when it ran; these keys say which step that was.
    """
    out = {}
    for name, m in loaded.items():
        out[f"{name}_step"] = None if m is None else int(m.step)
        out[f"{name}_checkpoint"] = None if m is None else str(m.step_dir)
    return out


def check_prompts(sampler, prompts: list[str], max_new: int, where: str) -> None:
    limit = sampler.cfg.max_len - max_new
    for i, p in enumerate(prompts):
        n = len(sampler.tokenizer(p, add_special_tokens=False)["input_ids"])
        if n > limit:
            raise UserError(
                f"{where}: question {i} has a {n}-token prompt; with --max-new-tokens {max_new} the "
                f"model's max_len {sampler.cfg.max_len} allows {limit}"
            )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.from_candidates is not None:
        return rescore(args)
    for flag in ("generator", "dataset"):
        if getattr(args, flag) is None:
            raise UserError(
                f"--{flag} is required (or --from-candidates DIR to rescore saved samples)"
            )
    check_sampling_args(args)
    if args.temperature < 0:
        raise UserError(f"--temperature must be >= 0, got {args.temperature}")
    from tinygsm_jax.data.eval_sets import load_eval_set

    items = load_eval_set(args.dataset)[: args.limit]
    out = as_path(args.out)  # gs:// too: the directory every host of a pod sees
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    initialize_from_args(args)  # multi-host: before anything touches a device
    import jax

    from tinygsm_jax.bestofn import compute_metrics
    from tinygsm_jax.checkpoint import load_model
    from tinygsm_jax.sampler import SamplingParams, stream_seed
    from tinygsm_jax.solution_format import make_prompt

    # Validate both checkpoints (a wrong head is one line) before any slow work.
    verifier = (
        load_model(args.verifier, expect_head="value", mesh=make_mesh_for_sampling())
        if args.verifier
        else None
    )
    loaded, sampler = load_generator(args.generator, args.questions_per_batch)
    prompts = [make_prompt(it.question) for it in items]
    check_prompts(sampler, prompts, args.max_new_tokens, args.dataset)
    qids = [it.index for it in items]
    start = time.time()

    # The eval's own random stream: never one that made verifier data (see `stream_seed`).
    seed = stream_seed(args.seed, "eval", args.temperature)
    common = dict(max_new_tokens=args.max_new_tokens, seed=seed, stop_at_function_end=True)
    with progress_bar(total=len(items), desc="greedy", unit=" questions") as bar:
        greedy = sampler.generate(
            prompts, SamplingParams(n=1, temperature=0.0, **common), qids, bar
        )
    before = dataclass_copy(sampler.stats)
    with progress_bar(
        total=len(items), desc=f"sampling {args.n}/question", unit=" questions"
    ) as bar:
        samples = sampler.generate(
            prompts, SamplingParams(n=args.n, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                    **common), qids, bar)  # fmt: skip
    tokens = sampler.stats.generated_tokens - before.generated_tokens
    seconds = sampler.stats.sampling_seconds - before.sampling_seconds

    def execute() -> tuple[list[dict], list[list[dict]]]:
        with make_sandbox(args.workers, args.timeout, args.allow_degraded) as sandbox:
            g = execute_completions(sandbox, items, prompts, greedy, "executing greedy")
            return [r[0] for r in g], execute_completions(
                sandbox, items, prompts, samples, "executing samples"
            )

    scores, executed = None, None
    if verifier is not None:  # every process: the verifier's forward is a collective on a pod
        scorer = Scorer(verifier, mesh=make_mesh_for_sampling())
        lines = None
        if scorer.execution_result:  # it reads the results: process 0 executes first, and
            # every process scores process 0's execution lines (one sandbox run, one truth)
            executed = execute() if is_lead() else None
            mine = None
            if executed is not None:
                mine = execution_lines([r for per_q in executed[1] for r in per_q], "eval")
            lines = lead_json(mine)
        scores = scorer(
            [
                (it.question, p + c.text)
                for it, p, per_q in zip(items, prompts, samples)
                for c in per_q
            ],
            executions=lines,
        )
    if not is_lead():  # process 0 executes and writes; the others wait for it
        sync("eval: written")
        return 0

    greedy_rows, cand = executed if executed is not None else execute()
    rows = [r for per_q in cand for r in per_q]
    if scores is not None:
        for r, sc in zip(rows, scores):
            r["score"] = round(sc, 6)

    report = {
        "dataset": args.dataset, "n_questions": len(items), "n_samples": args.n,
        "generator": str(args.generator), "verifier": str(args.verifier) if args.verifier else None,
        **model_steps(generator=loaded, verifier=verifier),
        "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
        "max_new_tokens": args.max_new_tokens, "seed": args.seed,
        "metrics": compute_metrics(rows, greedy_rows),
        "throughput": {"generated_tokens": int(tokens), "sampling_seconds": round(seconds, 4),
                       "tokens_per_second": round(tokens / seconds, 2) if seconds > 0 else 0.0},
        "compile_seconds": round(sampler.stats.compile_seconds, 2), "devices": jax.device_count(),
    }  # fmt: skip
    derive_report(report, rows, greedy_rows)
    write_outputs(out, rows, greedy_rows, report)
    sync("eval: written")
    m = report["metrics"]
    n = args.n
    extra = f", verify@{n} {100 * m[f'verify@{n}']:.1f}%" if f"verify@{n}" in m else ""
    print(
        f"{len(items)} questions x {n} samples in {time.time() - start:.0f}s: greedy@1 {100 * m['greedy@1']:.1f}%, "
        f"pass@{n} {100 * m[f'pass@{n}']:.1f}%, maj@{n} {100 * m[f'maj@{n}']:.1f}%{extra}; "
        f"{report['throughput']['tokens_per_second']:.0f} tokens/s; wrote {out}"
    )
    return 0


# How report.json's intervals are drawn (`bestofn.bootstrap_intervals`); recorded in the report.
BOOTSTRAP = {"resamples": 2000, "seed": 0, "level": 0.95}


def derive_report(report: dict, rows: list[dict], greedy_rows: list[dict]) -> dict:
    """Fill in (in place) everything the rows determine: metrics, rankings, intervals.

    One function for a fresh run and a rescored one, so both reports are derived alike.
    """
    from tinygsm_jax.bestofn import (
        bootstrap_intervals,
        compute_metrics,
        joint_logprob,
        ranking_quality,
    )

    report["metrics"] = compute_metrics(rows, greedy_rows)
    for name, needs, key in (
        ("likelihood_ranking", ("logprob",), "logprob"),
        ("verifier_ranking", ("score",), "score"),
        ("joint_ranking", ("score", "logprob"), joint_logprob),
    ):
        if all(r.get(f) is not None for r in rows for f in needs):
            report[name] = ranking_quality(rows, key=key)
        else:
            report.pop(name, None)
    report["bootstrap"] = dict(BOOTSTRAP)
    report.update(
        bootstrap_intervals(
            rows, greedy_rows, n_boot=BOOTSTRAP["resamples"], seed=BOOTSTRAP["seed"],
            level=BOOTSTRAP["level"],
        )
    )  # fmt: skip
    return report


def write_outputs(out: Path, rows: list[dict], greedy_rows: list[dict], report: dict) -> None:
    """DIR's five files, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "candidates.jsonl", rows)
    write_jsonl(out / "greedy.jsonl", greedy_rows)
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", report_markdown(report))
    plot_accuracy(report, out / "accuracy_vs_n.png")


# ---------------------------------------------------------------------------------- rescoring
_ROW_FIELDS = ("question_id", "sample", "code", "answer", "correct")


def load_saved_run(src: Path) -> tuple[list[dict], list[dict], dict]:
    """(candidate rows, greedy rows, report) of an earlier run's --out, checked for shape."""
    from tinygsm_jax.cli import read_jsonl

    if not src.is_dir():
        raise UserError(f"{src}: no such directory (--from-candidates takes an eval's --out)")
    path = src / "report.json"
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(report, dict):
        raise UserError(f"{path}: expected a JSON object")
    for key in ("dataset", "n_questions", "n_samples", "throughput"):
        if key not in report:
            raise UserError(f"{path}: not an eval report (missing '{key}')")
    loaded = {}
    for name in ("candidates", "greedy"):
        f = src / f"{name}.jsonl"
        rows = []
        for lineno, r in read_jsonl(f, required=_ROW_FIELDS):
            if not isinstance(r["question_id"], int) or not isinstance(r["sample"], int):
                raise UserError(f"{f}:{lineno}: question_id and sample must be integers")
            if not isinstance(r["code"], str) or not isinstance(r["correct"], bool):
                raise UserError(f"{f}:{lineno}: code must be a string and correct a boolean")
            rows.append(r)
        if not rows:
            raise UserError(f"{f}: no rows")
        loaded[name] = rows
    cand, greedy = loaded["candidates"], loaded["greedy"]
    counts: dict[int, int] = {}
    for r in cand:
        counts[r["question_id"]] = counts.get(r["question_id"], 0) + 1
    n, nq = report["n_samples"], report["n_questions"]
    if len(counts) != nq or set(counts.values()) != {n}:
        raise UserError(
            f"{src / 'candidates.jsonl'}: expected {nq} questions x {n} samples (report.json), "
            f"found {len(counts)} questions with {sorted(set(counts.values()))} samples"
        )
    if sorted(r["question_id"] for r in greedy) != sorted(counts):
        raise UserError(
            f"{src / 'greedy.jsonl'}: expected one row for each of the candidates' questions"
        )
    return cand, greedy, report


def questions_for(rows: list[dict], dataset: str) -> dict[int, str]:
    """question_id -> question from `dataset`, checked against the prompt each row's code holds.

    The rows' code begins with `make_prompt(question)`, byte for byte, so another data set, a
    changed file or a different --limit offset cannot pass unnoticed.
    """
    from tinygsm_jax.data.eval_sets import load_eval_set
    from tinygsm_jax.solution_format import make_prompt

    items = {it.index: it for it in load_eval_set(dataset)}
    prompts: dict[int, str] = {}
    for r in rows:
        q = r["question_id"]
        if q not in prompts:
            if q not in items:
                raise UserError(
                    f"{dataset}: has no question {q} (the samples come from another set?)"
                )
            prompts[q] = make_prompt(items[q].question)
        if not r["code"].startswith(prompts[q]):
            raise UserError(
                f"{dataset}: question {q} is not the one its samples were prompted with "
                "(another data set, or the file changed?)"
            )
    return {q: items[q].question for q in prompts}


def rescore(args) -> int:
    """`--from-candidates DIR`: the same samples, scored by --verifier (or as they are), to --out.

    No generator and no sandbox: answers and correctness are the saved ones; only the scores
    (with a verifier) and everything derived from the rows are new.
    """
    src, out = as_path(args.from_candidates), as_path(args.out)
    if args.generator is not None:
        raise UserError("--from-candidates reuses saved samples: drop --generator")
    if args.verifier is not None and args.dataset is None:
        raise UserError(
            "--from-candidates with --verifier needs --dataset (the questions it reads)"
        )
    if str(out).rstrip("/") == str(src).rstrip("/") or (
        isinstance(out, Path) and out.exists() and out.resolve() == Path(src).resolve()
    ):
        raise UserError("--out must differ from --from-candidates (the source stays as it was)")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    rows, greedy_rows, report = load_saved_run(src)
    from tinygsm_jax.checkpoint import load_model

    verifier = (
        load_model(args.verifier, expect_head="value", mesh=make_mesh_for_sampling())
        if args.verifier
        else None
    )
    questions = questions_for(rows + greedy_rows, args.dataset) if args.dataset else None
    start = time.time()
    if verifier is not None:
        # The rows in file order, the order the run that wrote them scored them in: the same
        # batches, so the same verifier gives the same scores.
        scorer = Scorer(verifier, mesh=make_mesh_for_sampling())
        lines = (
            execution_lines(rows, str(src / "candidates.jsonl"))
            if scorer.execution_result
            else None
        )
        scores = scorer(
            [(questions[r["question_id"]], r["code"]) for r in rows],
            desc="rescoring",
            executions=lines,
        )
        for r, sc in zip(rows, scores):
            r["score"] = round(sc, 6)
        report["verifier"] = str(args.verifier)
        report.update(model_steps(verifier=verifier))  # the verifier whose scores these are
    report["rescored"] = {
        "from": str(src),
        "verifier": str(args.verifier) if args.verifier else None,
    }
    try:
        derive_report(report, rows, greedy_rows)
    except ValueError as e:
        raise UserError(f"{src}: {e}") from None
    write_outputs(out, rows, greedy_rows, report)
    m, n = report["metrics"], report["n_samples"]
    extra = f", verify@{n} {100 * m[f'verify@{n}']:.1f}%" if f"verify@{n}" in m else ""
    print(
        f"rescored {len(rows)} samples of {report['n_questions']} questions in "
        f"{time.time() - start:.0f}s: greedy@1 {100 * m['greedy@1']:.1f}%, maj@{n} "
        f"{100 * m[f'maj@{n}']:.1f}%{extra}; wrote {out}"
    )
    return 0


def dataclass_copy(x):
    import dataclasses

    return dataclasses.replace(x)


if __name__ == "__main__":
    run_main(main)
