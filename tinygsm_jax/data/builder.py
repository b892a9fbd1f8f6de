"""Build a TFDS data set (TFRecord shards + dataset_info.json) from JSONL and parquet sources.

Two streaming passes, so 12M rows never sit in memory: a check pass validates every row (any
bad row fails the build before anything is written) and counts the splits; then a
`tfds.core.GeneratorBasedBuilder` writes each split, tokenizing in chunks when a tokenizer is
given. TFDS's writer spills to disk and shuffles example order by key hash, so every shard is a
random sample of the data. The whole build happens in a temporary sibling directory that is
renamed onto `--out` only at the end.

The validation split is chosen by a hash of the (whitespace-normalised) question: deterministic,
independent of source order, and all candidates of one question land in the same split.

`--execution-result` (verifier candidates): each target is the body, the candidate's execution
line (`schema.layout`) and EOS. The ids are made here only, so the choice is recorded in the
metadata (`execution_result`, absent = False) and train holds the verifier config to it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tinygsm_jax.cli import UserError, atomic_path
from tinygsm_jax.data import schema
from tinygsm_jax.data.dataset import DATASET_NAME, FORMAT_VERSION, TOKENIZER_SUBDIR
from tinygsm_jax.data.readers import expand_sources, iter_rows

TRAIN, VALIDATION = "train", "validation"
_TOKENIZE_CHUNK = 1024


def is_validation(question: str, fraction: float) -> bool:
    """Deterministic split assignment from the question text alone."""
    if fraction <= 0.0:
        return False
    norm = " ".join(question.split()).encode("utf-8")
    h = int.from_bytes(hashlib.blake2b(norm, digest_size=8).digest(), "big")
    return h / 2.0**64 < fraction


@dataclasses.dataclass
class BuildPlan:
    """What the check pass found: the kind, split sizes, rows that are not TinyGSM programs."""

    sources: list[Path]
    execution_result: bool = False
    kind: str = ""
    counts: dict[str, int] = dataclasses.field(default_factory=lambda: {TRAIN: 0, VALIDATION: 0})
    skipped: int = 0
    first_skipped: str = ""


def _records(
    plan: BuildPlan, fraction: float
) -> Iterator[tuple[str, str, schema.Record, tuple[str, str] | None, str]]:
    """(key, split, record, layout, location) for every row of every source, validated."""
    for si, path in enumerate(plan.sources):
        for ri, (where, row) in enumerate(iter_rows(path)):
            if not plan.kind:
                plan.kind = schema.kind_of_row(row)
            rec = schema.record_from_row(row, where, kind=plan.kind, default_source=path.name)
            split = VALIDATION if is_validation(rec.question, fraction) else TRAIN
            yield f"{si}:{ri}", split, rec, _layout(plan, rec, where), where


def _layout(plan: BuildPlan, rec: schema.Record, where: str) -> tuple[str, str] | None:
    """`schema.layout`, with the execution line when the plan asks and the row can give it."""
    if not plan.execution_result:
        return schema.layout(rec)
    if plan.kind != schema.VERIFIER:
        raise UserError(f"{where}: --execution-result is for verifier candidates, not problems")
    if not getattr(rec, "execution", ""):
        raise UserError(
            f"{where}: no execution result (fields 'status', and 'error' when it failed: rows of "
            "an older verifier_data); rerun verifier_data, or build without --execution-result"
        )
    return schema.layout(rec, execution_result=True)


def check_sources(
    sources: list[str], fraction: float, *, execution_result: bool = False
) -> BuildPlan:
    """The check pass: validate every row, count the splits. Raises `UserError` on bad input."""
    from tqdm import tqdm

    plan = BuildPlan(sources=expand_sources(sources), execution_result=execution_result)
    for _key, split, _rec, lay, where in tqdm(
        _records(plan, fraction), desc="checking", unit=" rows", mininterval=1.0
    ):
        if lay is None:
            plan.skipped += 1
            plan.first_skipped = plan.first_skipped or where
            continue
        plan.counts[split] += 1
    if sum(plan.counts.values()) == 0:
        raise UserError(
            f"no usable rows: all {plan.skipped} rows have code that is not a TinyGSM program "
            f"(def simple_math_problem() with a docstring, then a body), first at {plan.first_skipped}"
        )
    return plan


def _make_builder_class():
    import tensorflow_datasets as tfds

    class TinyGSMBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """TFDS builder over our sources; `_split_generators` streams each split from them."""

        VERSION = tfds.core.Version("1.0.0")
        # No package files (checksums, README) to look up; tfds's lookup also needs a package
        # (importlib_resources) that is not installed.
        code_path = None

        def __init__(
            self, *, plan: BuildPlan, fraction: float, tokenizer, metadata: dict, progress, **kwargs
        ):
            self.name = DATASET_NAME
            self._plan, self._fraction, self._tok = plan, fraction, tokenizer
            self._metadata, self._progress = metadata, progress
            super().__init__(**kwargs)

        def _log_download_bytes(self):  # tfds prints temporary paths here; our bar says enough
            pass

        def _log_download_done(self):
            pass

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                description=f"TinyGSM-format {self._plan.kind} built by tinygsm_jax.data",
                features=schema.features(
                    self._plan.kind,
                    with_ids=self._tok is not None,
                    execution_result=self._plan.execution_result,
                ),
                metadata=tfds.core.MetadataDict(self._metadata),
            )

        def _split_generators(self, dl_manager):
            return {
                split: self._generate_examples(split)
                for split, n in self._plan.counts.items()
                if n > 0
            }

        def _generate_examples(self, split: str):
            chunk: list[tuple[str, schema.Record, tuple[str, str]]] = []
            for key, s, rec, lay, _where in _records(self._plan, self._fraction):
                if s != split or lay is None:
                    continue
                chunk.append((key, rec, lay))
                if len(chunk) >= _TOKENIZE_CHUNK:
                    yield from self._examples(chunk)
                    chunk = []
            yield from self._examples(chunk)

        def _examples(self, chunk):
            if not chunk:
                return
            if self._tok is None:
                ids = [(None, None)] * len(chunk)
            else:
                enc = self._tok([lay[0] for _, _, lay in chunk], add_special_tokens=False)[
                    "input_ids"
                ]
                dec = self._tok([lay[1] for _, _, lay in chunk], add_special_tokens=False)[
                    "input_ids"
                ]
                eos = self._tok.eos_token_id
                ids = [(p, t + [eos]) for p, t in zip(enc, dec)]
            exe = self._plan.execution_result
            for (key, rec, _lay), (p, t) in zip(chunk, ids):
                self._progress.update(1)
                yield key, schema.example_of(rec, prompt_ids=p, target_ids=t, execution_result=exe)

    return TinyGSMBuilder


TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)


def copy_tokenizer(src: Path, dst: Path, fingerprint: str) -> None:
    """Copy only the tokenizer files (an HF model directory also holds gigabytes of weights)."""
    from tinygsm_jax.tokenizer import load_tokenizer, tokenizer_fingerprint

    dst.mkdir()
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    copied = tokenizer_fingerprint(load_tokenizer(dst))
    if copied != fingerprint:
        raise UserError(
            f"{src}: the tokenizer files alone load as another tokenizer ({copied} != {fingerprint})"
        )


def build_dataset(
    sources: list[str],
    out: str,
    *,
    tokenizer_dir: str | None = None,
    validation_fraction: float = 0.0,
    shards: int | None = None,
    overwrite: bool = False,
    execution_result: bool = False,
) -> dict[str, Any]:
    """Build the data set at `out` (atomically); returns a summary dict."""
    import logging

    import tensorflow_datasets as tfds
    from tqdm import tqdm

    from tinygsm_jax.data.tfenv import import_tf
    from tinygsm_jax.tokenizer import load_tokenizer, tokenizer_fingerprint

    if not 0.0 <= validation_fraction < 1.0:
        raise UserError(f"--validation-fraction must be in [0, 1), got {validation_fraction}")
    if shards is not None and shards < 1:
        raise UserError(f"--shards must be at least 1, got {shards}")
    out_path = Path(out)
    if out_path.exists() and not overwrite:
        raise UserError(f"{out_path}: already exists (pass --overwrite to replace it)")
    tok = load_tokenizer(tokenizer_dir) if tokenizer_dir else None
    start = time.time()
    plan = check_sources(sources, validation_fraction, execution_result=execution_result)

    metadata = {
        "format": "tinygsm_jax",
        "format_version": FORMAT_VERSION,
        "kind": plan.kind,
        "with_ids": tok is not None,
        "tokenizer_fingerprint": tokenizer_fingerprint(tok) if tok is not None else "",
        "eos_id": int(tok.eos_token_id) if tok is not None else -1,
        "vocab_size": len(tok) if tok is not None else 0,
        "validation_fraction": validation_fraction,
        "sources": [str(p) for p in plan.sources],
        "skipped_not_a_program": plan.skipped,
    }
    if execution_result:  # targets end with the execution line; absent = False (as before)
        metadata["execution_result"] = True
    # TFDS takes one shard count for all splits and refuses a split smaller than it.
    num_shards = min(shards, *(n for n in plan.counts.values() if n)) if shards else None
    import_tf()
    tfds.disable_progress_bar()  # ours below counts rows across both splits
    logging.getLogger("absl").setLevel(logging.WARNING)
    builder_cls = _make_builder_class()
    total = sum(plan.counts.values())
    with (
        atomic_path(out_path, is_dir=True) as tmp,
        tqdm(total=total, desc="writing", unit=" rows", mininterval=1.0) as bar,
    ):
        work = tmp / "_tfds"
        builder = builder_cls(
            plan=plan,
            fraction=validation_fraction,
            tokenizer=tok,
            metadata=metadata,
            progress=bar,
            data_dir=str(work),
        )
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(num_shards=num_shards)
        )
        for f in Path(builder.data_dir).iterdir():
            shutil.move(str(f), str(tmp / f.name))
        shutil.rmtree(work)
        if tok is not None:
            copy_tokenizer(
                Path(tokenizer_dir), tmp / TOKENIZER_SUBDIR, metadata["tokenizer_fingerprint"]
            )
    return {
        "out": str(out_path),
        "kind": plan.kind,
        "splits": {k: v for k, v in plan.counts.items() if v},
        "num_examples": total,
        "skipped": plan.skipped,
        "first_skipped": plan.first_skipped,
        "sources": len(plan.sources),
        "tokenizer_fingerprint": metadata["tokenizer_fingerprint"],
        "shards": num_shards,
        "execution_result": execution_result,
        "seconds": time.time() - start,
    }
