"""What is in a built data set: examples per split, token-length statistics, a sample."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tinygsm_jax.data.dataset import open_dataset


def _length_stats(lengths: list[int]) -> dict[str, float]:
    a = np.asarray(lengths, dtype=np.int64)
    if a.size == 0:
        return {}
    return {
        "mean": round(float(a.mean()), 1),
        "p50": int(np.percentile(a, 50)),
        "p95": int(np.percentile(a, 95)),
        "max": int(a.max()),
        "min": int(a.min()),
    }


def describe(path: str | os.PathLike, *, max_examples: int = 100_000) -> dict[str, Any]:
    """Counts per split, token-length statistics over up to `max_examples` per split, a sample."""
    builder, meta = open_dataset(path)
    report: dict[str, Any] = {
        "path": str(meta.path),
        "kind": meta.kind,
        "splits": dict(meta.splits),
        "num_examples": meta.num_examples,
        "with_ids": meta.with_ids,
        "tokenizer_fingerprint": meta.tokenizer_fingerprint,
        "tokenizer_dir": meta.tokenizer_dir,
        "token_lengths": {},
        "sample": None,
    }
    for split, n in meta.splits.items():
        ds = builder.as_dataset(split=f"{split}[:{min(n, max_examples)}]", shuffle_files=False)
        prompt, target, labels = [], [], []
        for ex in ds.as_numpy_iterator():
            if report["sample"] is None:
                report["sample"] = {
                    "split": split,
                    "question": ex["question"].decode("utf-8"),
                    "code": ex["code"].decode("utf-8"),
                }
                if "label" in ex:
                    report["sample"]["label"] = int(ex["label"])
            if meta.with_ids:
                prompt.append(len(ex["prompt_ids"]))
                target.append(len(ex["target_ids"]))
            if "label" in ex:
                labels.append(int(ex["label"]))
        if meta.with_ids:
            report["token_lengths"][split] = {
                "examples_measured": len(prompt),
                "prompt": _length_stats(prompt),
                "target": _length_stats(target),
                "total": _length_stats([p + t for p, t in zip(prompt, target)]),
            }
        if labels:
            report.setdefault("positive_fraction", {})[split] = round(float(np.mean(labels)), 4)
    return report


def format_report(r: dict[str, Any]) -> str:
    """The human-readable form of `describe`'s report."""
    lines = [f"{r['path']}: {r['num_examples']:,} {r['kind']} examples"]
    for split, n in r["splits"].items():
        lines.append(f"  {split:<12}{n:>12,}")
    if r["with_ids"]:
        lines.append(
            f"token ids: yes (tokenizer {r['tokenizer_fingerprint']} in {r['tokenizer_dir']})"
        )
        for split, st in r["token_lengths"].items():
            lines.append(f"token lengths ({split}, {st['examples_measured']:,} examples):")
            for part in ("prompt", "target", "total"):
                s = st[part]
                lines.append(
                    f"  {part:<8} mean {s['mean']:>8}  p50 {s['p50']:>6}  p95 {s['p95']:>6}  max {s['max']:>6}"
                )
    else:
        lines.append("token ids: no (text only; rebuild with --tokenizer to train on it)")
    for split, frac in r.get("positive_fraction", {}).items():
        lines.append(f"label 1 fraction ({split}): {frac}")
    if r["sample"]:
        s = r["sample"]
        lines.append(f"sample ({s['split']}):" + (f" label {s['label']}" if "label" in s else ""))
        lines.append("  question: " + s["question"][:300])
        lines.append("  code:")
        lines.extend("    " + line for line in s["code"][:1200].splitlines())
    return "\n".join(lines)
