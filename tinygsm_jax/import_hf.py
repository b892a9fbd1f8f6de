"""Import a Hugging Face Phi model directory as a tinygsm_jax checkpoint.

    python -m tinygsm_jax.import_hf --hf-dir DIR --out CKPT [--tokenizer DIR]

`PhiForCausalLM` becomes a generator (head=lm); `PhiForTokenClassification` with one label a
verifier (head=value). Phi-1.5 and Phi-2 as transformers saves them (model_type "phi",
safetensors, single or sharded) and the older "phi-msft"/"mixformer-sequential" layouts are
read. The tokenizer (DIR's own, or `--tokenizer`) is stored inside the checkpoint, which is
written atomically: all of it, or nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tinygsm_jax.cli import UserError, run_main
from tinygsm_jax.hf import import_hf_dir

__all__ = ["import_hf_dir", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tinygsm_jax.import_hf", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--hf-dir", required=True, help="HF model directory (config.json + safetensors)"
    )
    parser.add_argument("--out", required=True, help="checkpoint directory to create")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: the one in --hf-dir)")
    parser.add_argument(
        "--dtype", default="float32", choices=("float32", "bfloat16"),
        help="compute dtype recorded in the checkpoint (parameters are always stored in float32)",
    )  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)

    start = time.time()
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise UserError(f"{out}: exists and is not empty (pass --overwrite to replace it)")
    from tinygsm_jax.hf import config_from_hf, read_hf_config
    from tinygsm_jax.tokenizer import load_tokenizer

    # A missing, broken or non-Phi config.json is reported before the tokenizer is looked at.
    config_from_hf(read_hf_config(args.hf_dir), "lm", where=str(Path(args.hf_dir) / "config.json"))
    tok_dir = Path(args.tokenizer or args.hf_dir)
    try:
        tok = load_tokenizer(tok_dir)
    except UserError as e:
        raise UserError(
            f"{e}; pass --tokenizer DIR" if args.tokenizer is None else str(e)
        ) from None
    cfg, params = import_hf_dir(args.hf_dir, dtype=args.dtype)
    if len(tok) > cfg.vocab_size:
        raise UserError(
            f"{tok_dir}: tokenizer has {len(tok)} tokens, more than the model's vocab_size {cfg.vocab_size}"
        )

    from flax import nnx

    from tinygsm_jax.checkpoint import save_model
    from tinygsm_jax.model import Phi, count_params

    model = nnx.eval_shape(lambda: Phi(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    nnx.replace_by_pure_dict(state, params)
    del params
    model = nnx.merge(graphdef, state)
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)  # only the tokenizer's files, never the model's weights
        save_model(out, model, tmp, meta={"imported_from": str(Path(args.hf_dir).name)})
    kind = "generator" if cfg.head == "lm" else "verifier"
    print(
        f"imported a {count_params(cfg):,}-parameter Phi {kind} ({cfg.n_layers} layers, d_model {cfg.d_model}) "
        f"from {args.hf_dir} -> {out} in {time.time() - start:.1f}s"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
