"""The input pipeline: packing, per-host sharding, exact resume, verifier labels."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tinygsm_jax.cli import UserError
from tinygsm_jax.data.builder import build_dataset
from tinygsm_jax.data.packing import Doc, Peekable, pack_batch
from tinygsm_jax.data.pipeline import InputPipeline
from tinygsm_jax.solution_format import make_program
from tinygsm_jax.tokenizer import save_tokenizer, train_tokenizer

SEQ = 256


def rows(n: int, *, labels: bool = False) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        q = (
            f"Ana has {i} cards. "
            + "She sorts them. " * int(rng.integers(0, 4))
            + "How many cards?"
        )
        body = (
            "".join(f"    step{k} = {k * i}\n" for k in range(int(rng.integers(0, 9))))
            + f"    result = {i}\n    return result\n"
        )
        r = {"question": q, "code": make_program(q, body)}
        if labels:
            r.update(label=int(i % 3 == 0), question_id=str(i // 4), sample=i % 4)
        out.append(r)
    return out


def _build(tmp: Path, name: str, data: list[dict], **kw) -> Path:
    tok = tmp / "tok"
    if not tok.exists():
        save_tokenizer(
            train_tokenizer([t for r in rows(60) for t in (r["question"], r["code"])], 300), tok
        )
    src = tmp / f"{name}.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in data))
    out = tmp / name
    build_dataset([str(src)], str(out), tokenizer_dir=str(tok), **kw)
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return _build(
        tmp_path_factory.mktemp("pipe"), "ds", rows(240), shards=5, validation_fraction=0.1
    )


@pytest.fixture(scope="module")
def docs_by_tokens(data_dir):
    """Every stored document (prompt + target ids) -> its prompt length, from TFDS directly."""
    import tensorflow_datasets as tfds

    table = {}
    for ex in (
        tfds.builder_from_directory(str(data_dir)).as_dataset(split="train").as_numpy_iterator()
    ):
        table[tuple(ex["prompt_ids"]) + tuple(ex["target_ids"])] = len(ex["prompt_ids"])
    return table


def pipeline(data_dir, **kw) -> InputPipeline:
    args = dict(
        split="train",
        seq_len=SEQ,
        global_batch=8,
        objective="generator",
        seed=3,
        process_index=0,
        process_count=1,
        shuffle_window=16,
    )
    args.update(kw)
    return InputPipeline(str(data_dir), **args)


def documents(batch) -> list[tuple[tuple, int, np.ndarray]]:
    """Split a packed batch back into documents, checking the packing invariants on the way."""
    docs = []
    for r in range(batch["inputs"].shape[0]):
        seg = batch["segment_ids"][r]
        n_used = int((seg > 0).sum())
        assert (seg[n_used:] == 0).all(), "padding only at the end of a row"
        assert (batch["loss_mask"][r][n_used:] == 0).all()
        ids = seg[:n_used]
        assert (np.diff(ids) >= 0).all() and (ids[0] == 1 if n_used else True)
        for s in np.unique(ids):
            where = np.flatnonzero(seg == s)
            assert (np.diff(where) == 1).all(), "a document is contiguous"
            assert (batch["positions"][r][where] == np.arange(len(where))).all(), (
                "positions restart per document"
            )
            inp, tgt = batch["inputs"][r][where], batch["targets"][r][where]
            assert (tgt[:-1] == inp[1:]).all(), "targets are the next token inside the document"
            docs.append((tuple(inp) + (tgt[-1],), r, batch["loss_mask"][r][where]))
    return docs


def test_packing_keeps_documents_apart_and_masks_exactly_the_prompt(data_dir, docs_by_tokens):
    p = pipeline(data_dir)
    n_docs = multi = truncated = 0
    for _ in range(6):
        batch = next(p)
        assert {k: (v.shape, v.dtype.name) for k, v in batch.items()} == {
            "inputs": ((8, SEQ), "int32"),
            "targets": ((8, SEQ), "int32"),
            "loss_mask": ((8, SEQ), "float32"),
            "segment_ids": ((8, SEQ), "int32"),
            "positions": ((8, SEQ), "int32"),
        }
        multi += int((batch["segment_ids"].max(axis=1) > 1).sum())
        for tokens, _row, mask in documents(batch):
            # Every packed document is a stored one, whole, or truncated to the row (a prefix).
            if len(tokens) == SEQ + 1:
                truncated += 1
                prompt_len = next(v for k, v in docs_by_tokens.items() if k[: SEQ + 1] == tokens)
            else:
                prompt_len = docs_by_tokens[tokens]
            # Position j predicts token j+1: learn it iff token j+1 is a body/EOS token.
            expected = (np.arange(len(tokens) - 1) + 1 >= prompt_len).astype(np.float32)
            assert (mask == expected).all()
            n_docs += 1
    assert multi > 0, "rows hold several documents"
    assert truncated < n_docs / 4
    assert n_docs > 48
    p.close()


def test_pack_batch_truncates_long_documents_and_carries_the_rest():
    docs = Peekable(
        iter(
            [Doc(np.arange(10, dtype=np.int32), 3, 0.0, (0, 0, i)) for i in range(3)]
            + [Doc(np.arange(30, dtype=np.int32), 25, 1.0, (0, 0, 3))]
        )
    )
    batch, placed = pack_batch(docs, 2, 12, pad_id=-1, with_labels=True)
    assert placed == 2  # 9 + 9 > 12: one document per row
    assert docs.peek().pos == (0, 0, 2)  # the next document starts the next batch
    assert (batch["segment_ids"][0] == [1] * 9 + [0] * 3).all()
    assert (batch["inputs"][0][9:] == -1).all()
    assert (batch["loss_mask"][0] == [0, 0] + [1] * 7 + [0] * 3).all()
    batch, placed = pack_batch(docs, 2, 12, with_labels=True)
    assert placed == 2
    # The 30-token document is truncated to its first 12 positions; its prompt fills them all.
    assert (batch["inputs"][1] == np.arange(12)).all() and (
        batch["targets"][1] == np.arange(1, 13)
    ).all()
    assert batch["loss_mask"][1].sum() == 0 and (batch["labels"][1] == 1.0).all()
    assert docs.peek() is None


def test_two_hosts_read_disjoint_parts_whose_union_is_the_split(data_dir, docs_by_tokens):
    seen = []
    pieces = []
    for i in range(2):
        p = pipeline(data_dir, process_index=i, process_count=2, global_batch=8, repeat=False)
        assert p.rows == 4
        pieces.append({(Path(f).name, s, t) for f, s, t in p.pieces})
        docs = []
        for batch in p:
            docs.extend(tokens for tokens, _, _ in documents(batch))
        assert len(docs) == p.host_num_examples
        seen.append(Counter(docs))
    # Disjoint example ranges of the shard files, covering every example once.
    ranges = sorted(r for ps in pieces for r in ps)
    by_file = {}
    for name, skip, take in ranges:
        by_file.setdefault(name, []).append((skip, skip + take))
    for spans in by_file.values():
        for (_a0, a1), (b0, _b1) in zip(spans, spans[1:]):
            assert a1 <= b0
    assert sum(t for _, _, t in ranges) == len(docs_by_tokens) == sum(sum(c.values()) for c in seen)
    assert not set(seen[0]) & set(seen[1])
    assert set(seen[0]) | set(seen[1]) == set(docs_by_tokens)


def test_hosts_never_starve_at_an_epoch_end(data_dir):
    # A host's epoch here is ~11 batches; both hosts keep yielding full-shaped batches past it.
    for i in range(2):
        p = pipeline(data_dir, process_index=i, process_count=2, global_batch=8)
        for _ in range(45):
            b = next(p)
            assert b["inputs"].shape == (4, SEQ) and b["segment_ids"].max() > 0
        assert p.get_state()["epoch"] >= 1
        p.close()


def test_epochs_are_reshuffled(data_dir):
    p = pipeline(data_dir, repeat=True)
    first = [d for _ in range(4) for d, _, _ in documents(next(p))]
    p.close()
    # Each epoch visits every example once, in a new order.
    e0 = [d.tokens.tobytes() for d in p._reader.docs(0, 0, 0, repeat=False)]
    e1 = [d.tokens.tobytes() for d in p._reader.docs(1, 0, 0, repeat=False)]
    assert sorted(e0) == sorted(e1) and len(e0) == p.host_num_examples
    assert e0 != e1
    again = pipeline(data_dir)
    assert [d for _ in range(4) for d, _, _ in documents(next(again))] == first, (
        "same seed, same order"
    )
    again.close()
    other = pipeline(data_dir, seed=4)
    assert [d for _ in range(4) for d, _, _ in documents(next(other))] != first
    other.close()


@pytest.mark.parametrize("n_before", [0, 3, 9])  # an epoch is ~11 batches here
def test_resume_yields_the_identical_next_batches(data_dir, n_before):
    run = pipeline(data_dir)
    for _ in range(n_before):
        next(run)
    state = json.loads(json.dumps(run.get_state()))  # as saved in a checkpoint
    expected = [next(run) for _ in range(8)]  # 9 + 8 crosses the first epoch's end
    run.close()
    resumed = pipeline(data_dir)
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        assert want.keys() == got.keys()
        for k in want:
            np.testing.assert_array_equal(want[k], got[k])
    resumed.close()


def test_resume_from_another_hosts_state_replays_exactly(data_dir):
    hosts = [pipeline(data_dir, process_index=i, process_count=2) for i in range(2)]
    for _ in range(5):
        for h in hosts:
            next(h)
    state0 = hosts[0].get_state()
    expected = next(hosts[1])
    fresh = pipeline(data_dir, process_index=1, process_count=2)
    fresh.set_state(state0)  # only process 0's state was kept
    got = next(fresh)
    for k in expected:
        np.testing.assert_array_equal(expected[k], got[k])
    for p in [*hosts, fresh]:
        p.close()


def test_state_from_other_settings_is_refused(data_dir):
    p = pipeline(data_dir)
    state = p.get_state()
    q = pipeline(data_dir, seq_len=SEQ * 2)
    with pytest.raises(UserError, match="seq_len"):
        q.set_state(state)
    for x in (p, q):
        x.close()


def test_verifier_labels_cover_each_candidate(tmp_path):
    data = rows(40, labels=True)
    d = _build(tmp_path, "vds", data)
    label_of = {}
    import tensorflow_datasets as tfds

    for ex in tfds.builder_from_directory(str(d)).as_dataset(split="train").as_numpy_iterator():
        label_of[tuple(ex["prompt_ids"]) + tuple(ex["target_ids"])] = float(ex["label"])
    assert set(label_of.values()) == {0.0, 1.0}
    p = InputPipeline(
        str(d),
        split="train",
        seq_len=SEQ,
        global_batch=4,
        objective="verifier",
        seed=0,
        process_index=0,
        process_count=1,
    )
    batch = next(p)
    assert batch["labels"].dtype == np.float32
    for r in range(4):
        for s in np.unique(batch["segment_ids"][r]):
            where = batch["segment_ids"][r] == s
            if s == 0:
                assert (batch["labels"][r][where] == 0).all()
                continue
            tokens = tuple(batch["inputs"][r][where]) + (batch["targets"][r][where][-1],)
            assert (batch["labels"][r][where] == label_of[tokens]).all()
    p.close()
    with pytest.raises(UserError, match="objective 'generator' trains on problems"):
        InputPipeline(
            str(d),
            split="train",
            seq_len=SEQ,
            global_batch=4,
            objective="generator",
            seed=0,
            process_index=0,
            process_count=1,
        )


def test_pipeline_exposes_tokenizer_and_size(data_dir):
    from tinygsm_jax.tokenizer import load_tokenizer, tokenizer_fingerprint

    p = pipeline(data_dir)
    assert Path(p.tokenizer_dir) == data_dir / "tokenizer"
    assert p.tokenizer_fingerprint == tokenizer_fingerprint(load_tokenizer(p.tokenizer_dir))
    assert p.num_examples == p.host_num_examples > 150
    p.close()
    with pytest.raises(UserError, match="no split 'test'"):
        pipeline(data_dir, split="test")
    with pytest.raises(UserError, match="not divisible"):
        pipeline(data_dir, global_batch=7, process_count=2)


def test_importing_the_data_modules_does_not_import_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys, tinygsm_jax.data.pipeline, tinygsm_jax.data.eval_sets, tinygsm_jax.data.schema, "
        "tinygsm_jax.data.builder, tinygsm_jax.tokenizer; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------- batches that keep a question's candidates
def _tokens_to_question(d: Path) -> dict[tuple, str]:
    import tensorflow_datasets as tfds

    out = {}
    for ex in tfds.builder_from_directory(str(d)).as_dataset(split="train").as_numpy_iterator():
        out[tuple(ex["prompt_ids"]) + tuple(ex["target_ids"])] = ex["question_id"].decode()
    return out


@pytest.fixture(scope="module")
def grouped_dir(tmp_path_factory) -> Path:
    # 30 questions of 4 candidates (labels 1 where i % 3 == 0), over 3 shards
    return _build(tmp_path_factory.mktemp("grouped"), "gds", rows(120, labels=True), shards=3)


def grouped(d: Path, **kw) -> InputPipeline:
    args = dict(
        split="train",
        seq_len=SEQ,
        global_batch=8,
        objective="verifier",
        seed=5,
        process_index=0,
        process_count=1,
        group_by_question=True,
        micro_batches=2,
    )
    args.update(kw)
    return InputPipeline(str(d), **args)


def _epoch_batches(p: InputPipeline) -> list[dict]:
    """The batches of one epoch (a pipeline that does not repeat)."""
    assert not p.repeat
    return list(p)


def test_grouped_batches_keep_each_question_in_one_micro_batch(grouped_dir):
    from tinygsm_jax.data.packing import max_docs_per_row

    question_of = _tokens_to_question(grouped_dir)
    p = grouped(grouped_dir, repeat=False)
    assert p.host_num_examples == 120
    seen: dict[str, set] = {}  # question -> {(batch, micro-batch)}
    group_of: dict[str, set] = {}
    placed = Counter()
    for b, batch in enumerate(_epoch_batches(p)):
        assert batch["group"].dtype == np.int32 and batch["group"].shape == (8, SEQ)
        assert (batch["group"][batch["segment_ids"] == 0] == 0).all()
        documents(batch)  # the packing invariants
        for r in range(8):
            for seg in np.unique(batch["segment_ids"][r][batch["segment_ids"][r] > 0]):
                where = batch["segment_ids"][r] == seg
                tokens = tuple(batch["inputs"][r][where]) + (batch["targets"][r][where][-1],)
                q = question_of[tokens]
                placed[tokens] += 1
                seen.setdefault(q, set()).add((b, r % 2))  # micro-batch j = rows j, j + 2, ...
                group_of.setdefault(q, set()).update(np.unique(batch["group"][r][where]).tolist())
        assert (batch["segment_ids"].max(axis=1) <= max_docs_per_row(SEQ)).all()
    assert len(seen) == 30 and all(len(v) == 1 for v in seen.values()), seen
    assert sorted(placed.values()) == [1] * 120  # one epoch: every candidate once
    ids = [next(iter(v)) for v in group_of.values()]
    assert all(len(v) == 1 for v in group_of.values()) and len(set(ids)) == 30 and min(ids) > 0
    p.close()


def test_grouped_hosts_hold_whole_disjoint_questions(grouped_dir):
    question_of = _tokens_to_question(grouped_dir)
    hosts = []
    for i in range(2):
        p = grouped(grouped_dir, process_index=i, process_count=2, repeat=False)
        docs = [t for batch in _epoch_batches(p) for t, _, _ in documents(batch)]
        hosts.append(Counter(question_of[t] for t in docs))
        assert len(docs) == p.host_num_examples
        p.close()
    assert not set(hosts[0]) & set(hosts[1])
    assert set(hosts[0]) | set(hosts[1]) == {str(q) for q in range(30)}
    assert all(n == 4 for h in hosts for n in h.values())  # every candidate of a question


def test_grouped_resume_yields_the_identical_next_batches(grouped_dir):
    p = grouped(grouped_dir)
    for _ in range(3):
        next(p)
    state = json.loads(json.dumps(p.get_state()))
    want = [next(p) for _ in range(4)]  # runs over the epoch's end
    q = grouped(grouped_dir)
    q.set_state(state)
    for w in want:
        got = next(q)
        assert set(got) == set(w) and all(np.array_equal(got[k], w[k]) for k in w)
    # A grouped state does not resume an ungrouped pipeline, nor the other way round.
    plain = grouped(grouped_dir, group_by_question=False, micro_batches=1)
    with pytest.raises(UserError, match="group_by_question"):
        plain.set_state(state)
    with pytest.raises(UserError, match="group_by_question"):
        q.set_state(plain.get_state())
    for x in (p, q, plain):
        x.close()
    with pytest.raises(UserError, match="verifier"):
        grouped(grouped_dir, objective="generator")


def _doc(n: int, group: int, tag: int) -> Doc:
    return Doc(np.full(n + 1, tag, np.int32), 1, float(tag % 2), (0, group, tag), group)


def test_pack_grouped_batch_moves_a_group_that_does_not_fit_and_splits_an_oversized_one():
    from tinygsm_jax.data.packing import GroupStream, pack_grouped_batch

    # rows of 16 positions (one document per row at most 1 = ceil(16 / 16)); two row sets of
    # two rows each: {0, 2} and {1, 3}
    groups = GroupStream(
        iter(
            [
                [_doc(10, 1, 1)],
                [_doc(10, 2, 2), _doc(10, 2, 3)],  # does not fit in row 2 alone: moves on
                [_doc(10, 3, 4), _doc(10, 3, 5), _doc(10, 3, 6)],  # larger than a row set
            ]
        )
    )
    batch, placed = pack_grouped_batch(groups, [[0, 2], [1, 3]], 16)
    assert placed == 3
    assert batch["group"][:, 0].tolist() == [1, 2, 0, 2]
    assert batch["inputs"][:, 0].tolist() == [1, 2, 0, 3]
    assert groups.peek()[0].pos == (0, 3, 4)  # group 3 starts the next batch
    batch, placed = pack_grouped_batch(groups, [[0, 2], [1, 3]], 16)
    # rows 0 and 2 (the first row set) take two of its documents, row 1 the third
    assert placed == 3 and batch["group"][:, 0].tolist() == [3, 3, 3, 0]
    assert batch["inputs"][:, 0].tolist() == [4, 6, 5, 0]
    assert groups.peek() is None
