"""`python -m data_gen estimate`: what a teacher run will cost before it is started.

    python -m data_gen estimate --problems 12300000 --model gpt-4o-mini [--batch]

The token counts per request are assumptions (see `prices.TOKENS_*_PER_REQUEST`); after a
small `synth --limit 100` run, pass its measured averages (summary.json: tokens / requests).
"""

from __future__ import annotations

import argparse

from data_gen.prices import (
    TOKENS_IN_PER_REQUEST,
    TOKENS_OUT_PER_REQUEST,
    estimate,
    load_prices,
    price_for,
)
from tinygsm_jax.cli import UserError, run_main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m data_gen estimate", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--problems", type=int, default=12_300_000, help="problems wanted (TinyGSM: 12.3M)"
    )
    p.add_argument("--model", required=True)
    p.add_argument("--variants", type=int, default=10, help="problems per request")
    p.add_argument(
        "--tokens-in", type=int, default=TOKENS_IN_PER_REQUEST, help="prompt tokens per request"
    )
    p.add_argument(
        "--tokens-out",
        type=int,
        default=TOKENS_OUT_PER_REQUEST,
        help="completion tokens per request",
    )
    p.add_argument("--batch", action="store_true", help="Batch API prices (half)")
    p.add_argument("--prices", default=None, help='JSON {"model": [usd_per_1M_in, usd_per_1M_out]}')
    p.add_argument("--price-in", type=float, default=None)
    p.add_argument("--price-out", type=float, default=None)
    args = p.parse_args(argv)
    if args.problems < 1 or args.variants < 1:
        raise UserError("--problems and --variants must be at least 1")
    price = price_for(args.model, load_prices(args.prices), args.price_in, args.price_out)
    e = estimate(
        args.problems, args.model, args.variants, args.tokens_in, args.tokens_out, args.batch, price
    )
    print(
        f"estimate: {e['problems']:,} problems = {e['requests']:,} requests x ({args.tokens_in} in + "
        f"{args.tokens_out} out) tokens = {e['tokens_in'] / 1e9:.2f}B in + {e['tokens_out'] / 1e9:.2f}B out; "
        f"{args.model} at ${price[0]}/${price[1]} per 1M{' (Batch API: half)' if args.batch else ''}: "
        f"${e['cost_usd']:,.0f}"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
