"""`python -m tinygsm_jax.data build|inspect`: make a training data set, and look inside one.

python -m tinygsm_jax.data build --source PATH [--source PATH ...] --out DIR
    [--tokenizer DIR] [--validation-fraction F] [--shards N] [--overwrite] [--execution-result]
python -m tinygsm_jax.data inspect DIR [--json]
"""

from __future__ import annotations

import argparse
import json

from tinygsm_jax.cli import run_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tinygsm_jax.data", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="JSONL / parquet sources -> a TFDS data set directory")
    b.add_argument(
        "--source",
        action="append",
        required=True,
        help="a .jsonl or .parquet file, or a directory of them (repeatable; any mix). "
        "Rows with 'label' make a verifier data set.",
    )
    b.add_argument("--out", required=True, help="output data set directory")
    b.add_argument(
        "--tokenizer", help="HF tokenizer directory: store token ids too (and the tokenizer)"
    )
    b.add_argument(
        "--validation-fraction",
        type=float,
        default=0.0,
        help="fraction of questions held out (by hash)",
    )
    b.add_argument("--shards", type=int, help="TFRecord shards per split (default: by size)")
    b.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    b.add_argument(
        "--execution-result",
        action="store_true",
        help="verifier candidates: each target ends with the program's execution line "
        "('# returns 177'); train with --config.data.execution_result=true",
    )
    i = sub.add_parser("inspect", help="examples per split, token-length statistics, a sample")
    i.add_argument("dir")
    i.add_argument("--json", action="store_true", help="print the report as JSON")
    i.add_argument(
        "--max-examples", type=int, default=100_000, help="examples per split read for statistics"
    )
    args = parser.parse_args(argv)

    if args.command == "build":
        from tinygsm_jax.data.builder import build_dataset

        s = build_dataset(
            args.source,
            args.out,
            tokenizer_dir=args.tokenizer,
            validation_fraction=args.validation_fraction,
            shards=args.shards,
            overwrite=args.overwrite,
            execution_result=args.execution_result,
        )
        splits = ", ".join(f"{k} {v:,}" for k, v in s["splits"].items())
        skipped = (
            f"; skipped {s['skipped']:,} rows whose code is not a TinyGSM program (first: {s['first_skipped']})"
            if s["skipped"]
            else ""
        )
        ids = (
            f", token ids (tokenizer {s['tokenizer_fingerprint']})"
            if s["tokenizer_fingerprint"]
            else ", text only"
        )
        if s["execution_result"]:
            ids += ", with execution results"
        if args.shards and s["shards"] != args.shards:
            skipped += f"; {s['shards']} shards per split (the smallest split has only {s['shards']} examples)"
        print(
            f"built {s['out']}: {s['num_examples']:,} {s['kind']} examples ({splits}) from {s['sources']} files{ids} in {s['seconds']:.1f}s{skipped}"
        )
        return 0

    from tinygsm_jax.data.stats import describe, format_report

    report = describe(args.dir, max_examples=args.max_examples)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    run_main(main)
