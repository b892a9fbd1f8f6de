"""The paper's claim in miniature, offline on a CPU: `python -m tinygsm_jax.demo [--out DIR]`.

Every stage is the real command a full-scale run uses, run as a subprocess with the tiny
configs; only sizes differ. A stage that finished leaves `DIR/.stages/<name>.done`, so a
rerun skips it (and an interrupted stage starts over: each command is atomic or resumable).

    offline teacher (train templates) -> filter (sandbox) -> tokenizer -> TFRecords
      -> train the tiny generator (checkpoints kept at three steps)
      -> verifier data: samples at T=0.5, 0.7 from three checkpoints on held-back questions
      -> TFRecords -> train the verifier from the generator
      -> best-of-N eval on new problems from the train templates (the headline)
         and on the teacher's held-out test split (DIR/heldout/)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from tinygsm_jax.cli import UserError, atomic_write_text, read_jsonl, run_main

# Problem counts: training problems, held-back questions for verifier data, evaluation.
DEFAULTS = {
    "n_train": 12000,
    "n_verifier_questions": 160,
    "n_eval": 200,
    "n_heldout": 200,
    "verifier_samples": 12,
    "eval_samples": 16,
    "max_new_tokens": 160,
}
SMOKE = {
    "n_train": 400,
    "n_verifier_questions": 8,
    "n_eval": 8,
    "n_heldout": 8,
    "verifier_samples": 2,
    "eval_samples": 4,
    "max_new_tokens": 48,
}


def _run(stage: str, args: list[str], log: Path) -> None:
    """Run `python -m ...` for a stage, its output teed to the stage log; UserError on failure."""
    cmd = [sys.executable, "-m", *args]
    print(f"\n==> [{stage}] {' '.join(cmd[1:])}", flush=True)
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        tail: list[str] = []
        for line in proc.stdout:
            f.write(line)
            sys.stdout.write(line)
            tail = (tail + [line])[-5:]
        rc = proc.wait()
    if rc:
        raise UserError(
            f"stage '{stage}' failed (exit {rc}); see {log}: {''.join(tail).strip()[-300:]}"
        )


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def _split_questions(raw: Path, exclude: list[Path], out: Path, n: int, tag: str) -> None:
    """Keep the first `n` problems of `raw` whose question text appears in none of `exclude`."""
    seen = {
        " ".join(r["question"].lower().split()) for path in exclude for _, r in read_jsonl(path)
    }
    rows = []
    for _, r in read_jsonl(raw):
        key = " ".join(r["question"].lower().split())
        if key in seen:
            continue
        seen.add(key)
        rows.append({"id": f"{tag}-{len(rows)}", "question": r["question"], "answer": r["answer"]})
        if len(rows) == n:
            break
    if len(rows) < n:
        raise UserError(f"only {len(rows)} unseen {tag} problems in {raw}, wanted {n}")
    _write_jsonl(out, rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tinygsm_jax.demo", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    p.add_argument(
        "--smoke", action="store_true", help="a one-to-two-minute version (tests use it)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--preset", default="default", help="offline teacher difficulty (default|easy|hard)"
    )
    p.add_argument("--generator-config", default="configs/tiny.py")
    p.add_argument("--verifier-config", default="configs/tiny_verifier.py")
    args, overrides = p.parse_known_args(argv)
    size = dict(SMOKE if args.smoke else DEFAULTS)
    out = Path(args.out).absolute()
    (out / ".stages").mkdir(parents=True, exist_ok=True)
    log = out / "demo.log"
    teacher, data = out / "teacher", out / "data"
    teacher.mkdir(exist_ok=True)
    gen_over = list(overrides)
    if args.smoke:
        gen_over += [
            "--config.train.steps=6",
            "--config.checkpoint.every=2",
            "--config.log.every=2",
            "--config.model.n_layers=1",
            "--config.model.d_model=64",
            "--config.model.n_heads=2",
            "--config.model.d_mlp=128",
            "--config.model.rotary_dim=16",
            "--config.data.seq_len=128",
            "--config.train.global_batch=8",
        ]
    ver_over = list(gen_over)
    if args.smoke:
        ver_over += ["--config.train.steps=4"]

    gen_cfg = _load_config(args.generator_config, gen_over)
    gen_steps, every = int(gen_cfg.train.steps), int(gen_cfg.checkpoint.every)
    thirds = {max(every, gen_steps * i // 3 // every * every) for i in (1, 2)}
    ckpts = [str(out / "generator" / "checkpoints" / str(s)) for s in sorted(thirds | {gen_steps})]
    kept = out / "filtered" / "kept.jsonl"
    n_eval, n_ver = size["n_eval"], size["n_verifier_questions"]
    decode = ["--max-new-tokens", str(size["max_new_tokens"])]

    def offline(n: int, split: str, seed: int, name: str) -> list[str]:
        return [
            "data_gen",
            "offline",
            "--n",
            str(n),
            "--split",
            split,
            "--seed",
            str(args.seed + seed),
            "--preset",
            args.preset,
            "--out",
            str(teacher / name),
        ]

    def evaluate(questions: str, out_dir: Path) -> list[str]:
        return [
            "tinygsm_jax.eval",
            "--generator",
            str(out / "generator"),
            "--verifier",
            str(out / "verifier"),
            "--dataset",
            f"jsonl:{teacher / questions}",
            "--n",
            str(size["eval_samples"]),
            *decode,
            "--out",
            str(out_dir),
        ]

    def questions() -> None:
        # Evaluation and verifier questions come from the train templates but never repeat a
        # training question's text (nor each other's): GSM8K test vs TinyGSM, in miniature.
        _split_questions(teacher / "eval_raw.jsonl", [kept], teacher / "eval.jsonl", n_eval, "eval")
        _split_questions(
            teacher / "verifier_raw.jsonl",
            [kept, teacher / "eval.jsonl"],
            teacher / "verifier_questions.jsonl",
            n_ver,
            "verifier",
        )

    # (stage, commands): a command is `python -m` arguments, or a function run in-process.
    stages = [
        (
            "teacher",
            [
                offline(size["n_train"], "train", 0, "train_raw.jsonl"),
                offline(3 * n_eval, "train", 1, "eval_raw.jsonl"),
                offline(3 * n_ver, "train", 2, "verifier_raw.jsonl"),
                offline(size["n_heldout"], "test", 3, "heldout.jsonl"),
            ],
        ),
        (
            "filter",
            [
                [
                    "data_gen",
                    "filter",
                    "--input",
                    str(teacher / "train_raw.jsonl"),
                    "--out",
                    str(out / "filtered"),
                ]
            ],
        ),
        ("questions", [questions]),
        (
            "tokenizer",
            [
                [
                    "tinygsm_jax.tokenizer",
                    "train",
                    "--source",
                    str(kept),
                    "--vocab-size",
                    "2048",
                    "--out",
                    str(out / "tokenizer"),
                ]
            ],
        ),
        (
            "generator_data",
            [
                [
                    "tinygsm_jax.data",
                    "build",
                    "--source",
                    str(kept),
                    "--out",
                    str(data / "generator"),
                    "--tokenizer",
                    str(out / "tokenizer"),
                ]
            ],
        ),
        (
            "generator",
            [
                [
                    "tinygsm_jax.train",
                    "--config",
                    args.generator_config,
                    "--workdir",
                    str(out / "generator"),
                    f"--config.data.path={data / 'generator'}",
                    "--config.checkpoint.keep=100",
                    *gen_over,
                ]
            ],
        ),
        (
            "verifier_data",
            [
                [
                    "tinygsm_jax.verifier_data",
                    "--generator",
                    *ckpts,
                    "--questions",
                    f"jsonl:{teacher / 'verifier_questions.jsonl'}",
                    "--n",
                    str(size["verifier_samples"]),
                    "--temperatures",
                    "0.5,0.7",
                    *decode,
                    "--out",
                    str(out / "verifier_data"),
                ]
            ],
        ),
        (
            "verifier_set",
            [
                [
                    "tinygsm_jax.data",
                    "build",
                    "--source",
                    str(out / "verifier_data" / "candidates.jsonl"),
                    "--out",
                    str(data / "verifier"),
                    "--tokenizer",
                    str(out / "tokenizer"),
                ]
            ],
        ),
        (
            "verifier",
            [
                [
                    "tinygsm_jax.train",
                    "--config",
                    args.verifier_config,
                    "--workdir",
                    str(out / "verifier"),
                    f"--config.data.path={data / 'verifier'}",
                    f"--config.train.init_from={out / 'generator'}",
                    *ver_over,
                ]
            ],
        ),
        ("eval", [evaluate("eval.jsonl", out)]),
        ("eval_heldout", [evaluate("heldout.jsonl", out / "heldout")]),
    ]
    t0 = time.time()
    for i, (name, commands) in enumerate(stages, 1):
        done = out / ".stages" / f"{name}.done"
        if done.exists():
            print(f"[{i}/{len(stages)}] {name}: done earlier, skipped")
            continue
        print(f"[{i}/{len(stages)}] {name} ...", flush=True)
        ts = time.time()
        for command in commands:
            command() if callable(command) else _run(name, command, log)
        atomic_write_text(done, f"{time.time() - ts:.1f}\n")
    for title, d in (
        ("Headline: new problems from the train templates", out),
        ("Generalisation: the held-out test split", out / "heldout"),
    ):
        print(f"\n## {title}\n")
        print((d / "report.md").read_text())
    timings = {p.stem: float(p.read_text()) for p in sorted((out / ".stages").glob("*.done"))}
    atomic_write_text(out / "timings.json", json.dumps(timings, indent=2) + "\n")
    print(
        f"demo finished in {time.time() - t0:.0f}s (stage seconds in {out / 'timings.json'}); reports in {out}"
    )
    return 0


def _load_config(config: str, overrides: list[str]):
    from tinygsm_jax.config import load_config

    return load_config(config, [o for o in overrides if o.startswith("--config.")])


if __name__ == "__main__":
    run_main(main)
