"""What a teacher run costs: a per-model price table (USD per million tokens), overridable.

Prices change; the table is a convenience, not a source of truth. `--price-in/--price-out`
(or `--prices FILE.json`, `{"model": [in, out]}`) override it, and an unknown model (a local
vLLM server, say) costs 0. The Batch API bills half the synchronous price.
"""

from __future__ import annotations

import json
from pathlib import Path

from tinygsm_jax.cli import UserError

# USD per 1M tokens (input, output), OpenAI list prices for synchronous requests.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-3.5-turbo": (0.50, 1.50),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
}
BATCH_DISCOUNT = 0.5

# Tokens per one-step request assumed by the cost estimate in docs/data-generation.md: ~330
# prompt tokens (our instructions plus a GSM8K question) and ~2,300 completion tokens (10
# problems, each a ~4-sentence question and a ~12-line program, at ~230 tokens a problem).
TOKENS_IN_PER_REQUEST = 330
TOKENS_OUT_PER_REQUEST = 2300


def load_prices(path: str | None) -> dict[str, tuple[float, float]]:
    """The built-in table updated with a user's JSON file `{"model": [in, out], ...}`."""
    table = dict(PRICES)
    if path:
        p = Path(path)
        try:
            extra = json.loads(p.read_text())
            table.update({str(k): (float(v[0]), float(v[1])) for k, v in extra.items()})
        except FileNotFoundError:
            raise UserError(f"{p}: no such file") from None
        except (ValueError, TypeError, IndexError, AttributeError):
            raise UserError(f'{p}: expected {{"model": [usd_per_1M_in, usd_per_1M_out]}}') from None
    return table


def price_for(
    model: str,
    table: dict[str, tuple[float, float]] | None = None,
    price_in: float | None = None,
    price_out: float | None = None,
) -> tuple[float, float]:
    """(USD per 1M input tokens, per 1M output tokens) for `model`: longest prefix wins."""
    table = PRICES if table is None else table
    base = (0.0, 0.0)
    for name in sorted(table, key=len, reverse=True):
        if model == name or model.startswith(name + "-"):
            base = table[name]
            break
    return (base[0] if price_in is None else price_in, base[1] if price_out is None else price_out)


def cost_usd(
    tokens_in: int, tokens_out: int, price: tuple[float, float], batch: bool = False
) -> float:
    """Cost of the given token counts at `price`, halved for the Batch API."""
    c = (tokens_in * price[0] + tokens_out * price[1]) / 1e6
    return c * BATCH_DISCOUNT if batch else c


def estimate(
    problems: int,
    model: str,
    variants: int = 10,
    tokens_in: int = TOKENS_IN_PER_REQUEST,
    tokens_out: int = TOKENS_OUT_PER_REQUEST,
    batch: bool = False,
    price: tuple[float, float] | None = None,
) -> dict:
    """The projected requests, tokens and USD for `problems` problems at `variants` a request."""
    requests = -(-problems // variants)
    price = price or price_for(model)
    t_in, t_out = requests * tokens_in, requests * tokens_out
    return {
        "model": model,
        "problems": problems,
        "requests": requests,
        "tokens_in": t_in,
        "tokens_out": t_out,
        "usd_per_1M_in": price[0],
        "usd_per_1M_out": price[1],
        "batch": batch,
        "cost_usd": round(cost_usd(t_in, t_out, price, batch), 2),
    }
