"""Accuracy during training: every `eval.every` steps, greedy-decode eval questions and score them.

The curve the paper's checkpoint choice (1k/6k/12k steps) depends on. Config keys:
`eval.every` (0 = off), `eval.dataset` (`KIND:PATH` as in `tinygsm_jax.eval`; gs:// works),
`eval.limit` (first K questions; 0 = all), `eval.max_new_tokens`, `eval.questions_per_batch`.

The generator's current parameters decode on the training mesh itself (no copy of the
weights: the sampler takes them with the shardings they already have; its rows shard over
data x fsdp), every host taking part as in training; process 0 executes the programs in the
sandbox and logs `eval_accuracy` and `eval_seconds` (an `"eval"` line of metrics.jsonl, and
TensorBoard's eval/ tags). Steps whose eval is already logged are not evaluated again: a
resumed run that replays steps after its last checkpoint does not repeat them, and one that
was stopped between a checkpoint and its eval runs that eval first.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from ml_collections import ConfigDict

from tinygsm_jax import sharding
from tinygsm_jax.cli import UserError


def enabled(config: ConfigDict) -> bool:
    return "eval" in config and int(config.eval.every) > 0


def check_eval_config(config: ConfigDict) -> None:
    """One line for a bad eval setting, before anything is compiled."""
    if "eval" not in config:
        return
    e = config.eval
    for key in ("every", "limit", "max_new_tokens", "questions_per_batch"):
        if int(e[key]) < 0 or (
            key in ("max_new_tokens", "questions_per_batch") and int(e[key]) < 1
        ):
            raise UserError(f"config.eval.{key} must be {'>= 0' if key in ('every', 'limit') else 'positive'}, got {e[key]}")  # fmt: skip
    if int(e.every) > 0 and not e.dataset:
        raise UserError(
            "config.eval.every is set but config.eval.dataset is empty: give --config.eval.dataset=KIND:PATH "
            "(e.g. gsm8k:test.jsonl) or --config.eval.every=0"
        )
    if config.objective != "generator" and int(e.every) > 0:
        raise UserError(
            "config.eval.every: accuracy during training is for the generator objective"
        )
    if int(e.every) > 0:
        from tinygsm_jax.data.eval_sets import load_eval_set

        load_eval_set(e.dataset)  # a missing or malformed file: one line now, not after compiling


def logged_eval_steps(workdir: Path) -> set[int]:
    """Steps whose eval is in metrics.jsonl already (process 0 reads; every process gets it)."""
    steps: set[int] = set()
    path = workdir / "metrics.jsonl"
    if sharding.is_lead() and path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line cut by a kill: every whole line is still good
                continue
            if row.get("event") == "eval":
                steps.add(int(row["step"]))
    blob = np.zeros(4096, np.int64) - 1
    done = sorted(steps)[-4096:]
    blob[: len(done)] = done
    return {int(s) for s in sharding.broadcast_from_lead(blob) if s >= 0}


class TrainEval:
    """Greedy accuracy of the training generator on a fixed question set (module doc)."""

    def __init__(self, config: ConfigDict, trainer, tok_dir: Path, workdir: Path):
        from tinygsm_jax.data.eval_sets import load_eval_set
        from tinygsm_jax.solution_format import make_prompt
        from tinygsm_jax.tokenizer import load_tokenizer

        e = config.eval
        self.every = int(e.every)
        limit = int(e.limit) or None
        self.items = load_eval_set(e.dataset)[:limit]
        self.prompts = [make_prompt(it.question) for it in self.items]
        self.max_new = int(e.max_new_tokens)
        self.questions_per_batch = int(e.questions_per_batch)
        self.trainer = trainer
        self.tok = load_tokenizer(tok_dir)
        limit_len = trainer.model_cfg.max_len - self.max_new
        for i, p in enumerate(self.prompts):
            n = len(self.tok(p, add_special_tokens=False)["input_ids"])
            if n > limit_len:
                raise UserError(
                    f"config.eval.dataset {e.dataset}: question {i} has a {n}-token prompt; with "
                    f"eval.max_new_tokens {self.max_new} the model's max_len allows {limit_len}"
                )
        self.done = logged_eval_steps(workdir)
        self.sandbox = None
        if sharding.is_lead():  # a missing sandbox is one line now, not an error at step 1000
            from tinygsm_jax.eval import make_sandbox

            self.sandbox = make_sandbox(None, 5.0, bool(e.get("allow_degraded", False)))

    def due(self, step: int) -> bool:
        return step > 0 and step % self.every == 0 and step not in self.done

    def __call__(self, params: dict, step: int) -> dict | None:
        """Decode, execute, score. Returns the metrics on process 0 (None elsewhere)."""
        from flax import nnx

        from tinygsm_jax.eval import execute_completions
        from tinygsm_jax.model import Phi
        from tinygsm_jax.sampler import Sampler, SamplingParams

        t0 = time.perf_counter()
        cfg = self.trainer.model_cfg
        graphdef, state = nnx.split(nnx.eval_shape(lambda: Phi(cfg, rngs=nnx.Rngs(0))))
        nnx.replace_by_pure_dict(state, params)
        sampler = Sampler(
            nnx.merge(graphdef, state),
            self.tok,
            mesh=self.trainer.mesh,
            questions_per_batch=self.questions_per_batch,
        )
        params_ = SamplingParams(n=1, temperature=0.0, max_new_tokens=self.max_new,
                                 stop_at_function_end=True)  # fmt: skip
        greedy = sampler.generate(self.prompts, params_, [it.index for it in self.items])
        self.done.add(step)
        if self.sandbox is None:
            return None
        rows = execute_completions(self.sandbox, self.items, self.prompts, greedy, "eval")
        correct = sum(r[0]["correct"] for r in rows)
        return {
            "step": step,
            "eval_accuracy": correct / len(rows),
            "eval_correct": correct,
            "eval_questions": len(rows),
            "eval_seconds": round(time.perf_counter() - t0, 3),
            "eval_compile_seconds": round(sampler.stats.compile_seconds, 3),
        }

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
