"""A built data set directory: the TFDS files, our metadata, and the tokenizer stored with it.

Layout of `DIR` (written by `python -m tinygsm_jax.data build`)::

    DIR/dataset_info.json, features.json     TFDS metadata (`tfds.builder_from_directory(DIR)`)
    DIR/metadata.json                         ours: kind, tokenizer fingerprint, eos id, ...
    DIR/tinygsm-{train,validation}.tfrecord-*  the TFRecord shards
    DIR/tokenizer/                             the HF tokenizer the ids were made with (if any)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from tinygsm_jax.cli import UserError, as_path

DATASET_NAME = "tinygsm"
FORMAT_VERSION = 1
TOKENIZER_SUBDIR = "tokenizer"


@dataclasses.dataclass(frozen=True)
class DatasetMeta:
    """What training and inspection need to know about a built data set."""

    path: Path
    kind: str  # schema.PROBLEMS or schema.VERIFIER
    with_ids: bool
    tokenizer_fingerprint: str  # "" when built without a tokenizer
    eos_id: int  # -1 when built without a tokenizer
    splits: dict[str, int]  # split name -> number of examples
    extra: dict[str, Any]

    @property
    def num_examples(self) -> int:
        return sum(self.splits.values())

    @property
    def tokenizer_dir(self) -> str:
        return str(self.path / TOKENIZER_SUBDIR) if self.with_ids else ""


def open_dataset(path: str | os.PathLike):
    """(tfds builder, DatasetMeta) for a built data set; `UserError` if `path` is not one."""
    p = as_path(path)
    if not (p / "dataset_info.json").is_file():
        raise UserError(
            f"{p}: not a data set directory (no dataset_info.json; build one with `python -m tinygsm_jax.data build`)"
        )
    import tensorflow_datasets as tfds

    from tinygsm_jax.data.tfenv import import_tf

    import_tf()
    try:
        builder = tfds.builder_from_directory(str(p))
    except Exception as e:  # a corrupt or foreign dataset_info.json
        raise UserError(
            f"{p}: cannot read data set ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from None
    md = dict(builder.info.metadata or {})
    if md.get("format") != "tinygsm_jax" or "kind" not in md:
        raise UserError(
            f"{p}: a TFDS data set, but not one built by `python -m tinygsm_jax.data build`"
        )
    meta = DatasetMeta(
        path=p,
        kind=md["kind"],
        with_ids=bool(md.get("with_ids")),
        tokenizer_fingerprint=md.get("tokenizer_fingerprint", ""),
        eos_id=int(md.get("eos_id", -1)),
        splits={name: int(info.num_examples) for name, info in builder.info.splits.items()},
        extra=md,
    )
    return builder, meta
