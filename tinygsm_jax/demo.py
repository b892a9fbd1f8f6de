"""The paper's claim in miniature, offline on a CPU: `python -m tinygsm_jax.demo [--out DIR]`.

Every stage is the real command a full-scale run uses, run as a subprocess with the tiny
configs; only sizes differ. `stages()` lists them as data (name, commands, what they write),
so the pipeline reads top to bottom; `main` runs, skips and times them. A stage that finished
leaves `DIR/.stages/<name>.done`, so a rerun skips it (and an interrupted stage starts over:
each command is atomic or resumable).

    offline teacher (train templates) -> filter (sandbox) -> tokenizer -> TFRecords
      -> train the tiny generator (checkpoints kept at three steps)
      -> verifier data: samples at two temperatures from three checkpoints, held-back questions
      -> TFRecords -> train the verifier from the generator
      -> best-of-N eval on a dev split (for choices), on new problems from the train templates
         (the headline, never used for a choice) and on the held-out test split (DIR/heldout/)

`--preset` picks a named set of sizes and settings (`PRESETS`): `default` is the 30-minute
demo; `easy` and `hard` step the offline teacher's difficulty; `lift` is the verifier's regime
(issue 21: a generator trained past copying, evaluated at a mid checkpoint with headroom).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tinygsm_jax.cli import UserError, atomic_write_text, read_jsonl, run_main


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a preset decides: the teacher, the problem counts, sampling, the two models."""

    teacher: str = "default"  # offline teacher difficulty (data_gen offline --preset)
    teacher_styles: str = "plain"  # program styles of the training problems (--styles)
    n_train: int = 12000  # training problems before filtering
    n_verifier_questions: int = 160  # held-back questions the verifier data is sampled on
    n_dev: int = 200  # dev split: same distribution as the headline, used for choices
    n_eval: int = 200  # headline evaluation questions
    n_heldout: int = 200  # held-out test split (other templates)
    verifier_samples: int = 12  # per question, checkpoint and temperature
    verifier_temperatures: str = "0.5,0.7"
    eval_samples: int = 16
    eval_temperature: float = 0.7
    max_new_tokens: int = 160
    dedup: bool = False  # verifier_data --dedup
    # The verifier reads each sample's execution result (`data build --execution-result`,
    # `data.execution_result`); eval reads it from the verifier's model.json.
    verifier_execution_result: bool = False
    tokenizer_split_digits: bool = False  # tokenizer train --split-digits
    train_eval_every: int = 100  # the generator's greedy dev accuracy every N steps (metrics.jsonl)
    train_eval_limit: int = 100  # ... on the first K dev questions
    # Checkpoint steps the verifier data is sampled from (empty: a third, two thirds and the
    # end of training) and the step evaluated (0: the last).
    verifier_data_steps: tuple[int, ...] = ()
    eval_step: int = 0
    verifier_init_step: int = 0  # the checkpoint the verifier starts from (0: the evaluated one)
    generator: tuple[str, ...] = ()  # --config.* overrides of configs/tiny.py
    verifier: tuple[str, ...] = ()  # --config.* overrides of configs/tiny_verifier.py


PRESETS: dict[str, Settings] = {
    "default": Settings(),
    "easy": Settings(teacher="easy"),
    "hard": Settings(teacher="hard"),
    # The verifier's regime (issue 21): a generator trained past the copying phase on four times
    # the problems, written in three styles; the test-time generator is a mid checkpoint, where
    # greedy leaves headroom; verifier data from many questions with few samples each, from the
    # checkpoints around it; 500 headline questions.
    "lift": Settings(
        teacher_styles="plain,constants_first,inline",
        n_train=48000,
        n_verifier_questions=2000,
        n_dev=300,
        n_eval=500,
        verifier_samples=2,  # x 3 checkpoints x 2 temperatures = 12 per question
        train_eval_every=250,
        # Greedy dev accuracy 59%, 73%, 79% at these steps (benchmarks/RESULTS.md, verifier_lift).
        verifier_data_steps=(1250, 1500, 1750),
        eval_step=1500,
        generator=("--config.train.steps=2000", "--config.checkpoint.every=250"),
        # The best verifier measured on dev (RESULTS.md, verifier_lift, V4): token-level BCE,
        # 300 steps, reading each sample's execution result.
        verifier_execution_result=True,
        verifier=("--config.train.steps=300", "--config.checkpoint.every=150"),
    ),
}

_SMOKE_MODEL = (
    "--config.model.n_layers=1",
    "--config.model.d_model=64",
    "--config.model.n_heads=2",
    "--config.model.d_mlp=128",
    "--config.model.rotary_dim=16",
    "--config.data.seq_len=128",
    "--config.train.global_batch=8",
    "--config.checkpoint.every=2",
    "--config.log.every=2",
)
SMOKE = dict(
    n_train=400, n_verifier_questions=8, n_dev=8, n_eval=8, n_heldout=8, verifier_samples=2,
    eval_samples=4, max_new_tokens=48, train_eval_every=2, train_eval_limit=4,
)  # fmt: skip


def smoke(s: Settings) -> Settings:
    """The same stages at toy sizes (about a minute; tests/test_demo.py)."""
    return dataclasses.replace(
        s,
        **SMOKE,
        verifier_data_steps=(),
        eval_step=0,
        verifier_init_step=0,  # the toy run has 6 steps
        generator=s.generator + _SMOKE_MODEL + ("--config.train.steps=6",),
        verifier=s.verifier + _SMOKE_MODEL + ("--config.train.steps=4",),
    )


# A command is the argument list of `python -m`, or a function run in-process.
Command = list[str] | Callable[[], None]


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    commands: list[Command]
    writes: str  # what it leaves in DIR, for the log and the reader


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


def _load_config(config: str, overrides: list[str]):
    from tinygsm_jax.config import load_config

    return load_config(config, [o for o in overrides if o.startswith("--config.")])


def stages(s: Settings, out: Path, seed: int, gen_config: str, ver_config: str) -> list[Stage]:
    """The pipeline as data: each stage's commands, in order."""
    teacher, data, kept = out / "teacher", out / "data", out / "filtered" / "kept.jsonl"
    gen_cfg = _load_config(gen_config, list(s.generator))
    gen_steps, every = int(gen_cfg.train.steps), int(gen_cfg.checkpoint.every)
    thirds = {max(every, gen_steps * i // 3 // every * every) for i in (1, 2)}
    steps = sorted(s.verifier_data_steps or thirds | {gen_steps})
    for n in (*steps, s.eval_step or gen_steps, s.verifier_init_step or gen_steps):
        if n % every or not 0 < n <= gen_steps:
            raise UserError(f"checkpoint step {n} is not saved: the generator saves every {every} "
                            f"of {gen_steps} steps")  # fmt: skip
    ckpts = [str(out / "generator" / "checkpoints" / str(n)) for n in steps]
    # The test-time generator: the workdir (its last step) or the step the preset names.
    generator = out / "generator"
    if s.eval_step:
        generator = generator / "checkpoints" / str(s.eval_step)
    trunk = (
        out / "generator" / "checkpoints" / str(s.verifier_init_step or s.eval_step or gen_steps)
    )
    decode = ["--max-new-tokens", str(s.max_new_tokens)]
    # Accuracy during training, on the dev split: the curve the checkpoint choice depends on.
    train_eval = [f"--config.eval.every={s.train_eval_every}",
                  f"--config.eval.dataset=jsonl:{teacher / 'dev.jsonl'}",
                  f"--config.eval.limit={s.train_eval_limit}",
                  f"--config.eval.max_new_tokens={s.max_new_tokens}"]  # fmt: skip

    def offline(n: int, split: str, offset: int, name: str) -> list[str]:
        return ["data_gen", "offline", "--n", str(n), "--split", split, "--seed",
                str(seed + offset), "--preset", s.teacher, "--styles", s.teacher_styles,
                "--out", str(teacher / name)]  # fmt: skip

    def evaluate(questions: str, out_dir: Path) -> list[str]:
        return ["tinygsm_jax.eval", "--generator", str(generator), "--verifier",
                str(out / "verifier"), "--dataset", f"jsonl:{teacher / questions}", "--n",
                str(s.eval_samples), "--temperature", str(s.eval_temperature), *decode,
                "--out", str(out_dir)]  # fmt: skip

    def questions() -> None:
        # Dev, headline and verifier questions come from the train templates but never repeat a
        # training question's text (nor each other's): GSM8K test vs TinyGSM, in miniature.
        splits = [
            ("eval", s.n_eval),
            ("dev", s.n_dev),
            ("verifier_questions", s.n_verifier_questions),
        ]
        done = [kept]
        for name, n in splits:
            raw = teacher / f"{name.split('_')[0]}_raw.jsonl"
            _split_questions(raw, done, teacher / f"{name}.jsonl", n, name.split("_")[0])
            done.append(teacher / f"{name}.jsonl")

    def train(config: str, workdir: str, data_dir: Path, overrides, *extra: str) -> list[str]:
        return ["tinygsm_jax.train", "--config", config, "--workdir", str(out / workdir),
                f"--config.data.path={data_dir}", *extra, *overrides]  # fmt: skip

    def build(source: Path, name: str, *extra: str) -> list[str]:
        return ["tinygsm_jax.data", "build", "--source", str(source), "--out", str(data / name),
                "--tokenizer", str(out / "tokenizer"), *extra]  # fmt: skip

    # The verifier's data carries each sample's execution result, and its config says so.
    exec_build = ["--execution-result"] if s.verifier_execution_result else []
    exec_train = ["--config.data.execution_result=True"] if s.verifier_execution_result else []

    return [
        Stage("teacher", [
            offline(s.n_train, "train", 0, "train_raw.jsonl"),
            offline(3 * s.n_eval, "train", 1, "eval_raw.jsonl"),
            offline(3 * s.n_verifier_questions, "train", 2, "verifier_raw.jsonl"),
            offline(s.n_heldout, "test", 3, "heldout.jsonl"),
            offline(3 * s.n_dev, "train", 4, "dev_raw.jsonl"),
        ], "teacher/*.jsonl"),
        Stage("filter", [["data_gen", "filter", "--input", str(teacher / "train_raw.jsonl"),
                          "--out", str(out / "filtered")]], "filtered/kept.jsonl"),
        Stage("questions", [questions], "teacher/{eval,dev,verifier_questions}.jsonl"),
        Stage("tokenizer", [["tinygsm_jax.tokenizer", "train", "--source", str(kept),
                             "--vocab-size", "2048", "--out", str(out / "tokenizer"),
                             *(["--split-digits"] if s.tokenizer_split_digits else [])]], "tokenizer/"),
        Stage("generator_data", [build(kept, "generator")], "data/generator/"),
        Stage("generator", [train(gen_config, "generator", data / "generator", s.generator,
                                  "--config.checkpoint.keep=100", *train_eval)], "generator/"),
        Stage("verifier_data", [["tinygsm_jax.verifier_data", "--generator", *ckpts, "--questions",
                                 f"jsonl:{teacher / 'verifier_questions.jsonl'}", "--n",
                                 str(s.verifier_samples), "--temperatures", s.verifier_temperatures,
                                 "--dedup" if s.dedup else "--no-dedup", *decode,
                                 "--out", str(out / "verifier_data")]], "verifier_data/"),
        Stage("verifier_set", [build(out / "verifier_data" / "candidates.jsonl", "verifier",
                                     *exec_build)], "data/verifier/"),
        Stage("verifier", [train(ver_config, "verifier", data / "verifier", s.verifier,
                                 f"--config.train.init_from={trunk}", *exec_train)],
              "verifier/"),
        Stage("eval_dev", [evaluate("dev.jsonl", out / "dev")], "dev/"),
        Stage("eval", [evaluate("eval.jsonl", out)], "report.json, candidates.jsonl, ..."),
        Stage("eval_heldout", [evaluate("heldout.jsonl", out / "heldout")], "heldout/"),
    ]  # fmt: skip


def check_same_run(out: Path, settings: dict) -> None:
    """Refuse to resume `out` with other settings: its finished stages would be mixed with
    this run's (one preset's generator under another's verifier). Keys an older
    settings.json lacks count as their defaults."""
    path = out / "settings.json"
    if not path.exists() or not any((out / ".stages").glob("*.done")):
        return
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable ({e}); pass another --out") from None
    before = {**json.loads(json.dumps(dataclasses.asdict(Settings()))), **before}
    now = json.loads(json.dumps(settings))  # tuples as the file holds them: lists
    changed = [k for k in now if before.get(k) != now[k]]
    if changed:
        k = changed[0]
        raise UserError(
            f"{out} holds stages of a run with other settings ({', '.join(changed)}; {k}: "
            f"{before.get(k)!r} there, {now[k]!r} now): pass another --out, or delete it to "
            "start over"
        )


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
        "--preset", choices=sorted(PRESETS), default="default",
        help="default (30 min), easy/hard (the offline teacher's difficulty), lift (the "
        "verifier's regime: a longer-trained generator, 500 headline questions; over an hour)",
    )  # fmt: skip
    p.add_argument("--generator-config", default="configs/tiny.py")
    p.add_argument("--verifier-config", default="configs/tiny_verifier.py")
    p.add_argument(
        "--stop-after", metavar="STAGE", help="stop once this stage is done (resume later)"
    )
    args, overrides = p.parse_known_args(argv)
    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        raise UserError(
            f"unknown argument {bad[0]} (only --config.KEY=VALUE overrides pass through)"
        )
    s = PRESETS[args.preset]
    s = dataclasses.replace(
        s, generator=s.generator + tuple(overrides), verifier=s.verifier + tuple(overrides)
    )
    if args.smoke:
        s = smoke(s)
    out = Path(args.out).absolute()
    plan = stages(s, out, args.seed, args.generator_config, args.verifier_config)
    names = [st.name for st in plan]
    if args.stop_after and args.stop_after not in names:
        raise UserError(
            f"--stop-after: unknown stage {args.stop_after!r}; stages: {', '.join(names)}"
        )
    settings = {"preset": args.preset, "smoke": args.smoke, "seed": args.seed,
                **dataclasses.asdict(s)}  # fmt: skip
    check_same_run(out, settings)
    (out / ".stages").mkdir(parents=True, exist_ok=True)
    (out / "teacher").mkdir(exist_ok=True)
    atomic_write_text(out / "settings.json", json.dumps(settings, indent=2) + "\n")
    log = out / "demo.log"
    t0 = time.time()
    for i, st in enumerate(plan, 1):
        done = out / ".stages" / f"{st.name}.done"
        if done.exists():
            print(f"[{i}/{len(plan)}] {st.name}: done earlier, skipped")
        else:
            print(f"[{i}/{len(plan)}] {st.name} -> {st.writes} ...", flush=True)
            ts = time.time()
            for command in st.commands:
                command() if callable(command) else _run(st.name, command, log)
            atomic_write_text(done, f"{time.time() - ts:.1f}\n")
        if st.name == args.stop_after:
            print(f"stopped after {st.name}; rerun without --stop-after to go on")
            return 0
    for title, d in (
        ("Headline: new problems from the train templates", out),
        ("Generalisation: the held-out test split", out / "heldout"),
    ):
        print(f"\n## {title}\n")
        print((d / "report.md").read_text())
    timings = {q.stem: float(q.read_text()) for q in sorted((out / ".stages").glob("*.done"))}
    atomic_write_text(out / "timings.json", json.dumps(timings, indent=2) + "\n")
    print(
        f"demo finished in {time.time() - t0:.0f}s (stage seconds in {out / 'timings.json'}); reports in {out}"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
