"""Tokenizers: train a small byte-level BPE for the CPU demo, load any HF tokenizer directory.

Real runs use Phi-1.5's own tokenizer (a local HF directory). The embedded default trains its own
byte-level BPE on the data it learns from, with Phi's `<|endoftext|>` as EOS (and pad), saved as
an HF tokenizer directory so every other command (and `transformers.AutoTokenizer`) loads either
the same way. Byte-level BPE is lossless, so code indentation round-trips exactly.

    python -m tinygsm_jax.tokenizer train --source FILE.jsonl [--source ...] --vocab-size N --out DIR
        [--split-digits]

`--split-digits` (off by default) splits every number into single digits before BPE, as PaLM and
LLaMA do: then a number is the same digit tokens wherever it stands (without it, BPE merges a
number's digits, and the space before it, into learned tokens, and `7` after `$` is another token
than ` 7` in code). The space before a number becomes a token of its own: ` 1234` is `Ġ`, `1`,
`2`, `3`, `4`, and `$7`, `(7` and ` 7` all end in the same `7`. The split is `tokenizers`' own `Digits` pre-tokenizer, saved in
tokenizer.json, so every loader of the directory (and of an HF export) applies it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator

from tinygsm_jax.cli import UserError, atomic_path, local_copy, run_main

EOS_TOKEN = "<|endoftext|>"
_MIN_VOCAB = 256 + 1  # the byte alphabet plus EOS


def _has_digit_split(spec: object) -> bool:
    """Whether a serialized pre-tokenizer (tokenizer.json's `pre_tokenizer`) holds an
    individual-digits `Digits` step, at any depth of `Sequence`s."""
    if isinstance(spec, dict):
        if spec.get("type") == "Digits" and spec.get("individual_digits"):
            return True
        return any(_has_digit_split(p) for p in spec.get("pretokenizers") or ())
    return False


def splits_digits(tok) -> bool:
    """Whether `tok` cuts every number into single digits (`train --split-digits`).

    Read from the pre-tokenizer that the tokenizer applies, which is what its saved tokenizer.json
    records, so it holds for any copy of the directory; a slow tokenizer answers False.
    """
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        return False
    return _has_digit_split(json.loads(backend.to_str()).get("pre_tokenizer"))


def load_tokenizer(path: str | os.PathLike):
    """Load an HF tokenizer directory (tokenizer.json etc.); `UserError` if it is missing or invalid."""
    p = local_copy(path)
    if not p.is_dir():
        raise UserError(f"{p}: tokenizer directory not found")
    if not any(
        (p / name).is_file() for name in ("tokenizer.json", "vocab.json", "tokenizer_config.json")
    ):
        raise UserError(
            f"{p}: not a tokenizer directory (no tokenizer.json, vocab.json or tokenizer_config.json)"
        )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(p))
    except Exception as e:  # transformers raises many types for a broken directory
        raise UserError(
            f"{p}: cannot load tokenizer ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from None
    if tok.eos_token_id is None:
        raise UserError(f"{p}: tokenizer has no eos_token")
    return tok


def tokenizer_fingerprint(tok) -> str:
    """A stable hash of the vocabulary, merges and special tokens.

    Stored with every tokenized data set so that training refuses a data set that was built
    with another tokenizer than the checkpoint's (the ids would silently mean other text).
    """
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        payload = {
            "model": {k: spec["model"].get(k) for k in ("type", "vocab", "merges")},
            "added": sorted((t["id"], t["content"]) for t in spec.get("added_tokens", [])),
        }
    else:  # a slow tokenizer: its vocabulary is all we can see
        payload = {"vocab": sorted(tok.get_vocab().items())}
    payload["eos"] = tok.eos_token
    # The same merges give other ids for a number when digits are split; only then is it added,
    # so the fingerprints of every other tokenizer (and of stored data sets) stay as they were.
    if splits_digits(tok):
        payload["split_digits"] = True
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def train_tokenizer(texts: Iterable[str], vocab_size: int, *, split_digits: bool = False):
    """Train a byte-level BPE on `texts`; returns a `transformers.PreTrainedTokenizerFast`.

    `split_digits` puts `Digits(individual_digits=True)` before the byte-level step, for training
    and encoding alike, so no merge ever joins a digit to anything (the module docstring says why).
    """
    if vocab_size < _MIN_VOCAB:
        raise UserError(
            f"--vocab-size must be at least {_MIN_VOCAB} (256 bytes + {EOS_TOKEN}), got {vocab_size}"
        )
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    # No prefix space: the text is code, and a leading space would change the first line's indent.
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    # Digits first: it splits characters (a byte-level step first would hand it byte symbols, and
    # Latin-1 ones such as '½' would cut a multi-byte character). Splitting only, so still lossless.
    bpe.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
        if split_digits
        else byte_level
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
    )


def save_tokenizer(tok, out: str | os.PathLike) -> None:
    """Save `tok` as an HF tokenizer directory, atomically, with special_tokens_map.json too."""
    with atomic_path(out, is_dir=True) as tmp:
        tok.save_pretrained(str(tmp))
        # transformers 5 writes its own class name; the 4.x name loads in both.
        cfg_path = tmp / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
        specials = {
            k: getattr(tok, k) for k in ("bos_token", "eos_token", "unk_token", "pad_token")
        }
        (tmp / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")


def _source_texts(sources: list[str], counter: list[int]) -> Iterator[str]:
    """The `question` and `code` of every row of every source (JSONL or parquet)."""
    from tqdm import tqdm

    from tinygsm_jax.data.readers import expand_sources, iter_rows

    for path in expand_sources(sources):
        for where, row in tqdm(
            iter_rows(path), desc=f"reading {path.name}", unit=" rows", leave=False
        ):
            for key in ("question", "code"):
                value = row.get(key)
                if value is None:
                    raise UserError(f"{where}: missing field '{key}'")
                if not isinstance(value, str):
                    raise UserError(f"{where}: field '{key}' must be a string")
                yield value
            counter[0] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tinygsm_jax.tokenizer", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a byte-level BPE on the question and code fields")
    t.add_argument(
        "--source",
        action="append",
        required=True,
        help="JSONL or parquet with question and code (repeatable)",
    )
    t.add_argument("--vocab-size", type=int, required=True)
    t.add_argument("--out", required=True, help="output HF tokenizer directory")
    t.add_argument(
        "--split-digits",
        action="store_true",
        help="split every number into single-digit tokens (PaLM/LLaMA style); off by default",
    )
    args = parser.parse_args(argv)

    start = time.time()
    rows = [0]
    # Streamed into the trainer; a bad row raises from inside it, before anything is written.
    tok = train_tokenizer(
        _source_texts(args.source, rows), args.vocab_size, split_digits=args.split_digits
    )
    if rows[0] == 0:
        raise UserError("no rows in the sources")
    save_tokenizer(tok, args.out)
    print(
        f"trained a byte-level BPE{' (single-digit numbers)' if args.split_digits else ''} "
        f"of {len(tok)} tokens on {rows[0]:,} rows in {time.time() - start:.1f}s "
        f"-> {args.out} (fingerprint {tokenizer_fingerprint(tok)})"
    )
    return 0


if __name__ == "__main__":
    run_main(main)
