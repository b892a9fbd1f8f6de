"""Sample one completion from a generator checkpoint and print only its text.

    python -m tinygsm_jax.sample --checkpoint CKPT --prompt TEXT --max-new-tokens N [--temperature T] [--seed S]

Temperature 0 (the default) is greedy decoding; sampling stops at EOS or after N tokens. The
prompt is used as given (no special tokens added); stdout receives exactly the completion text
(no EOS, no trailing newline added), so it composes in shell pipelines. With
`--stop-at-function-end` it also stops where a TinyGSM function body ends. Multi-host: every
host runs the same command (or gives the multi-process flags); process 0 prints.
"""

from __future__ import annotations

import argparse
import sys

from tinygsm_jax.cli import UserError, run_main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tinygsm_jax.sample", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--checkpoint", required=True, help="generator checkpoint (workdir or step directory)"
    )
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, required=True)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0, help="0 = off")
    p.add_argument("--top-p", type=float, default=1.0, help="1 = off")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--stop-at-function-end",
        action="store_true",
        help="stop where a TinyGSM function body ends",
    )
    from tinygsm_jax.sharding import add_distributed_args, initialize_from_args

    add_distributed_args(p)
    args = p.parse_args(argv)
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.temperature < 0:
        raise UserError(f"--temperature must be >= 0, got {args.temperature}")
    if args.top_k < 0 or not 0 < args.top_p <= 1:
        raise UserError("--top-k must be >= 0 and --top-p in (0, 1]")
    if not args.prompt:
        raise UserError("--prompt is empty")

    initialize_from_args(args)  # multi-host: before anything touches a device
    import jax

    from tinygsm_jax.checkpoint import load_model
    from tinygsm_jax.sampler import Sampler, SamplingParams
    from tinygsm_jax.tokenizer import load_tokenizer

    loaded = load_model(args.checkpoint, expect_head="lm")
    tok = load_tokenizer(loaded.tokenizer_dir)
    ids = tok(args.prompt, add_special_tokens=False)["input_ids"]
    limit = loaded.config.max_len - args.max_new_tokens
    if len(ids) > limit:
        raise UserError(
            f"--prompt has {len(ids)} tokens; with --max-new-tokens {args.max_new_tokens} the model's "
            f"max_len {loaded.config.max_len} allows {limit}"
        )
    # Several processes: one global program (every host must join the computation); one
    # process alone keeps the default device.
    mesh = None
    if jax.process_count() > 1:
        from tinygsm_jax.eval import make_mesh_for_sampling

        mesh = make_mesh_for_sampling()
    sampler = Sampler(loaded.model, tok, mesh=mesh, questions_per_batch=1)
    params = SamplingParams(
        n=1,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        stop_at_function_end=args.stop_at_function_end,
    )
    completion = sampler.generate([args.prompt], params)[0][0]
    if jax.process_index() != 0:  # every host holds the same text: process 0 prints it
        return 0
    sys.stdout.write(completion.text)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    run_main(main)
