"""Export a tinygsm_jax checkpoint as a Hugging Face model directory.

    python -m tinygsm_jax.export --checkpoint CKPT --out DIR [--shard-size 2GB] [--dtype float32|bfloat16]

A generator becomes `PhiForCausalLM`, a verifier `PhiForTokenClassification(num_labels=1)`:
config.json (written by transformers' PhiConfig), safetensors (sharded with an index past
--shard-size), the tokenizer's files and, for a generator, generation_config.json. The result
loads with `AutoModelForCausalLM` / `AutoModelForTokenClassification` and no code of ours.
The directory is written atomically.
"""

from __future__ import annotations

import argparse
import time

from tinygsm_jax.cli import run_main
from tinygsm_jax.hf import export_checkpoint

__all__ = ["export_checkpoint", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tinygsm_jax.export", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--checkpoint", required=True, help="a checkpoint (workdir = its latest step, or one step)"
    )
    parser.add_argument("--out", required=True, help="HF model directory to create")
    parser.add_argument(
        "--shard-size", default="2GB", help="largest safetensors file before sharding (default 2GB)"
    )
    parser.add_argument(
        "--dtype", default="float32", choices=("float32", "bfloat16"), help="stored weight dtype"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)

    start = time.time()
    info = export_checkpoint(
        args.checkpoint,
        args.out,
        shard_size=args.shard_size,
        dtype=args.dtype,
        overwrite=args.overwrite,
    )
    n_files = sum(f.endswith(".safetensors") for f in info["files"])
    print(
        f"exported step {info['step']} as {info['architecture']} ({args.dtype}, {n_files} safetensors "
        f"file{'s' if n_files > 1 else ''}) -> {args.out} in {time.time() - start:.1f}s"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
