"""The training input pipeline: TFRecord shards -> tf.data -> numpy batches for this host.

Per host: `tfds.split_for_jax_process` gives process `i` of `n` a disjoint, equal (to one
example) part of the split; their union is the split. The host's part is a list of *pieces*
(a shard file with a skip and a take, from TFDS's file instructions). Each epoch visits the
pieces in an order drawn from (seed, process, epoch) and reads each sequentially in windows of
`shuffle_window` examples, shuffled inside the window with (seed, process, epoch, piece,
window). TFDS already shuffled example order across shards when it wrote them, so shard-level
order plus window shuffling mixes the data well. The stream repeats epochs forever, so no host
ever runs dry at an epoch's end: every host yields a batch on every call.

Resuming is exact and cheap: between batches the packer holds nothing (see `packing`), so the
state is the position of the next unplaced document, (epoch, piece, offset). Resuming opens
that piece and reads from the start of that window: at most one window plus a skip inside one
shard file, never the whole data set. A state saved by another host (multi-host runs that only
keep process 0's state) is resumed exactly too, by replaying the saved number of batches.

With `group_by_question` (the verifier's ranking loss), batches keep a question's candidates
together instead: every host reads the whole split once into memory (verifier sets are small:
16,000 candidates of 400 tokens are 26 MB), numbers the questions (question_id, else the
question text) in sorted order, and takes the questions a seeded permutation deals it, whole,
so hosts hold disjoint questions and group ids are the same on every host. Each epoch shuffles
this host's questions (seed, process, epoch) and each question's candidates, and packs them
with `packing.pack_grouped_batch`: a question's candidates go into the rows of one micro-batch
(row r of host p is global row p * rows + r, in micro-batch (p * rows + r) % micro_batches).
The resume state is the same triple, read as (epoch, question, candidate).

TensorFlow is imported lazily and kept on the CPU; JAX never sees it. The caller turns each
host's numpy batch into a global array (`jax.make_array_from_process_local_data`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from tinygsm_jax.cli import UserError
from tinygsm_jax.data import schema
from tinygsm_jax.data.dataset import open_dataset
from tinygsm_jax.data.packing import Doc, GroupStream, Peekable, pack_batch, pack_grouped_batch

STATE_VERSION = 1
OBJECTIVES = {"generator": schema.PROBLEMS, "verifier": schema.VERIFIER}


class _Reader:
    """Documents of this host's part of a split, in the seeded per-epoch order."""

    def __init__(
        self,
        pieces: list[tuple[str, int, int]],
        *,
        seed: int,
        process_index: int,
        window: int,
        with_labels: bool,
    ):
        self.pieces, self.seed, self.process_index = pieces, seed, process_index
        self.window, self.with_labels = window, with_labels

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, self.process_index, epoch]).permutation(
            len(self.pieces)
        )

    def _dataset(self, specs: list[tuple[str, int, int]]):
        from tinygsm_jax.data.tfenv import import_tf

        tf = import_tf()
        names = tf.constant([s[0] for s in specs])
        skips = tf.constant([s[1] for s in specs], tf.int64)
        takes = tf.constant([s[2] for s in specs], tf.int64)
        window = self.window
        feats = {
            "prompt_ids": tf.io.RaggedFeature(tf.int64),
            "target_ids": tf.io.RaggedFeature(tf.int64),
        }
        if self.with_labels:
            feats["label"] = tf.io.FixedLenFeature([], tf.int64)

        def read(name, skip, take):
            return (
                tf.data.TFRecordDataset(name, buffer_size=1 << 20)
                .skip(skip)
                .take(take)
                .batch(window)
            )

        def parse(serialized):
            ex = tf.io.parse_example(serialized, feats)
            out = {}
            for key, short in (("prompt_ids", "p"), ("target_ids", "t")):
                out[short + "v"] = tf.cast(ex[key].values, tf.int32)
                out[short + "s"] = ex[key].row_splits
            if self.with_labels:
                out["label"] = tf.cast(ex["label"], tf.float32)
            return out

        ds = tf.data.Dataset.from_tensor_slices((names, skips, takes)).flat_map(read)
        ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(2).as_numpy_iterator()

    def docs(self, epoch: int, piece: int, offset: int, *, repeat: bool) -> Iterator[Doc]:
        """Documents from position (epoch, piece, offset) on; forever if `repeat`."""
        while True:
            order = self.order(epoch)
            if piece < len(order):
                first_window = offset // self.window
                specs = []
                for i in range(piece, len(order)):
                    name, skip, take = self.pieces[order[i]]
                    if i == piece:
                        skip, take = (
                            skip + first_window * self.window,
                            take - first_window * self.window,
                        )
                    specs.append((name, skip, take))
                windows = self._dataset(specs)
                for i in range(piece, len(order)):
                    take = self.pieces[order[i]][2]
                    k0 = first_window if i == piece else 0
                    for k in range(k0, -(-take // self.window)):
                        w = next(windows)
                        n = len(w["ps"]) - 1
                        rng = np.random.default_rng(
                            [self.seed, self.process_index, epoch, int(order[i]), k]
                        )
                        perm = rng.permutation(n)
                        start = offset - k * self.window if (i == piece and k == k0) else 0
                        pv, ps, tv, ts = w["pv"], w["ps"], w["tv"], w["ts"]
                        labels = w.get("label")
                        for j in range(start, n):
                            e = perm[j]
                            p = pv[ps[e] : ps[e + 1]]
                            tokens = np.concatenate([p, tv[ts[e] : ts[e + 1]]])
                            label = float(labels[e]) if labels is not None else 0.0
                            yield Doc(tokens, len(p), label, (epoch, i, k * self.window + j))
            if not repeat:
                return
            epoch, piece, offset = epoch + 1, 0, 0


def _read_split(pieces: list[tuple[str, int, int]]) -> dict[str, list]:
    """Every candidate of `pieces` in file order: tokens, prompt length, label, question key."""
    from tinygsm_jax.data.tfenv import import_tf

    tf = import_tf()
    feats = {
        "prompt_ids": tf.io.RaggedFeature(tf.int64),
        "target_ids": tf.io.RaggedFeature(tf.int64),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "question_id": tf.io.FixedLenFeature([], tf.string, default_value=b""),
        "question": tf.io.FixedLenFeature([], tf.string, default_value=b""),
    }

    def parse(serialized):
        ex = tf.io.parse_example(serialized, feats)
        for key, short in (("prompt_ids", "p"), ("target_ids", "t")):
            ex[short + "v"], ex[short + "s"] = ex[key].values, ex[key].row_splits
            del ex[key]
        return ex

    out: dict[str, list] = {"tokens": [], "prompt_len": [], "label": [], "key": []}
    for name, skip, take in pieces:
        ds = tf.data.TFRecordDataset(name, buffer_size=1 << 20).skip(skip).take(take).batch(1024)
        for ex in ds.map(parse).as_numpy_iterator():
            pv, ps, tv, ts = ex["pv"], ex["ps"], ex["tv"], ex["ts"]
            for e in range(len(ps) - 1):
                p = pv[ps[e] : ps[e + 1]].astype(np.int32)
                out["tokens"].append(np.concatenate([p, tv[ts[e] : ts[e + 1]].astype(np.int32)]))
                out["prompt_len"].append(len(p))
                out["label"].append(float(ex["label"][e]))
                qid, question = ex["question_id"][e].decode(), ex["question"][e].decode()
                out["key"].append(f"id:{qid}" if qid else f"question:{question}")
    return out


def _take(fi) -> int:
    """Examples a TFDS file instruction reads (take -1 = to the end of the shard)."""
    return int(fi.take) if fi.take >= 0 else int(fi.examples_in_shard) - int(fi.skip)


class _GroupedReader:
    """This host's questions, whole, each a group of candidates, in the seeded per-epoch order."""

    def __init__(
        self,
        pieces: list[tuple[str, int, int]],
        *,
        seed: int,
        process_index: int,
        process_count: int,
    ):
        rows = _read_split(pieces)
        keys = sorted(set(rows["key"]))
        index = {k: i for i, k in enumerate(keys)}
        deal = np.empty(len(keys), np.int64)  # question -> host, a seeded deal of whole questions
        deal[np.random.default_rng([seed]).permutation(len(keys))] = (
            np.arange(len(keys)) % process_count
        )
        members: dict[int, list[int]] = {}
        for row, key in enumerate(rows["key"]):
            q = index[key]
            if deal[q] == process_index:
                members.setdefault(q, []).append(row)
        self.questions = sorted(members)  # global question indices; group id = index + 1
        self.members = [members[q] for q in self.questions]
        self.rows, self.num_questions = rows, len(keys)
        self.num_examples = sum(len(m) for m in self.members)
        self.seed, self.process_index = seed, process_index

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, self.process_index, epoch]).permutation(
            len(self.questions)
        )

    def groups(self, epoch: int, qpos: int, offset: int, *, repeat: bool) -> Iterator[list[Doc]]:
        """Groups from position (epoch, question, candidate) on; forever if `repeat`."""
        rows = self.rows
        while True:
            order = self.order(epoch)
            for i in range(qpos, len(order)):
                q = self.questions[order[i]]
                mine = self.members[order[i]]
                perm = np.random.default_rng([self.seed, self.process_index, epoch, q]).permutation(
                    len(mine)
                )
                start = offset if i == qpos else 0
                yield [
                    Doc(
                        rows["tokens"][mine[perm[j]]],
                        rows["prompt_len"][mine[perm[j]]],
                        rows["label"][mine[perm[j]]],
                        (epoch, i, j),
                        q + 1,
                    )
                    for j in range(start, len(mine))
                ]
            if not repeat:
                return
            epoch, qpos, offset = epoch + 1, 0, 0


class _Prefetcher:
    """Runs a (batch, state) generator in a background thread, `depth` items ahead."""

    _END = object()

    def __init__(self, gen: Iterator, depth: int):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(gen,), daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, gen: Iterator) -> None:
        try:
            for item in gen:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as e:  # handed to the consumer, raised there
            self._put(e)

    def __next__(self):
        item = self._q.get()
        if item is self._END:
            self._put(self._END)  # stay exhausted
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class InputPipeline:
    """This host's packed training batches from a built data set, resumable exactly.

    Each batch is a dict of `[global_batch // process_count, seq_len]` arrays: `inputs`,
    `targets` (int32), `loss_mask` (float32), `segment_ids`, `positions` (int32), and for the
    verifier objective `labels` (float32, the candidate's 0/1 label at every position of it).
    With `group_by_question` (verifier only) batches keep each question's candidates in the
    rows of one of `micro_batches` micro-batches and add `group` (int32, the question's id at
    every position of its candidates, 0 = padding), for the ranking loss.
    """

    def __init__(
        self,
        data_dir: str,
        *,
        split: str,
        seq_len: int,
        global_batch: int,
        objective: str,
        seed: int,
        process_index: int | None = None,
        process_count: int | None = None,
        pad_id: int = 0,
        shuffle_window: int = 10_000,
        repeat: bool = True,
        prefetch: int = 2,
        group_by_question: bool = False,
        micro_batches: int = 1,
    ):
        import tensorflow_datasets as tfds

        if objective not in OBJECTIVES:
            raise UserError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        if process_index is None or process_count is None:
            import jax

            process_index = jax.process_index() if process_index is None else process_index
            process_count = jax.process_count() if process_count is None else process_count
        if not 0 <= process_index < process_count:
            raise UserError(f"process_index {process_index} is not in [0, {process_count})")
        if global_batch % process_count:
            raise UserError(
                f"global batch {global_batch} is not divisible by the {process_count} processes"
            )
        if seed < 0:
            raise UserError(f"seed must be non-negative, got {seed}")
        if seq_len < 1 or shuffle_window < 1:
            raise UserError("seq_len and shuffle_window must be positive")
        if group_by_question and objective != "verifier":
            raise UserError("data.group_by_question groups verifier candidates by question")
        if micro_batches < 1 or global_batch % micro_batches:
            raise UserError(
                f"micro_batches {micro_batches} must be positive and divide the global batch {global_batch}"
            )
        builder, meta = open_dataset(data_dir)
        if meta.kind != OBJECTIVES[objective]:
            raise UserError(
                f"{data_dir}: a data set of {meta.kind}, but the objective {objective!r} trains on {OBJECTIVES[objective]}"
            )
        if not meta.with_ids:
            raise UserError(
                f"{data_dir}: has no token ids; rebuild it with `python -m tinygsm_jax.data build ... --tokenizer DIR`"
            )
        if split not in meta.splits:
            raise UserError(f"{data_dir}: no split {split!r} (has: {', '.join(meta.splits)})")
        if meta.splits[split] < process_count:
            raise UserError(
                f"{data_dir}: split {split!r} has {meta.splits[split]} examples, fewer than the {process_count} processes"
            )

        self.data_dir, self.split, self.seq_len, self.global_batch = (
            str(data_dir),
            split,
            seq_len,
            global_batch,
        )
        self.objective, self.seed, self.pad_id = objective, seed, pad_id
        self.process_index, self.process_count = process_index, process_count
        self.rows = global_batch // process_count
        self.repeat, self.prefetch = repeat, prefetch
        self.group_by_question, self.micro_batches = group_by_question, micro_batches
        self.tokenizer_dir = meta.tokenizer_dir
        self.tokenizer_fingerprint = meta.tokenizer_fingerprint
        self.eos_id = meta.eos_id
        self.num_examples = meta.splits[split]  # the whole split, all hosts together
        self._source = None
        if group_by_question:
            self._grouped = _GroupedReader(
                [
                    (str(fi.filename), int(fi.skip), _take(fi))
                    for fi in builder.info.splits[split].file_instructions
                ],
                seed=seed,
                process_index=process_index,
                process_count=process_count,
            )
            if not self._grouped.questions:
                raise UserError(
                    f"{data_dir}: split {split!r} has {self._grouped.num_questions} questions, "
                    f"too few for process {process_index} of {process_count} to get one"
                )
            self.pieces = []
            self.host_num_examples = self._grouped.num_examples
            first = process_index * self.rows
            self.row_sets = [
                [r for r in range(self.rows) if (first + r) % micro_batches == j]
                for j in range(micro_batches)
            ]
            self._start({"epoch": 0, "piece": 0, "offset": 0, "batches": 0})
            return
        host_split = tfds.split_for_jax_process(
            split, process_index=process_index, process_count=process_count
        )
        pieces = [
            (
                str(fi.filename),
                int(fi.skip),
                int(fi.take) if fi.take >= 0 else int(fi.examples_in_shard) - int(fi.skip),
            )
            for fi in builder.info.splits[host_split].file_instructions
        ]
        self.pieces = [p for p in pieces if p[2] > 0]
        self.host_num_examples = sum(p[2] for p in self.pieces)
        self._reader = _Reader(
            self.pieces,
            seed=seed,
            process_index=process_index,
            window=shuffle_window,
            with_labels=objective == "verifier",
        )
        self._source = None
        self._start({"epoch": 0, "piece": 0, "offset": 0, "batches": 0})

    # -- iteration -------------------------------------------------------------------------

    def _batches(
        self, epoch: int, piece: int, offset: int, batches: int
    ) -> Iterator[tuple[dict, dict]]:
        if self.group_by_question:
            yield from self._grouped_batches(epoch, piece, offset, batches)
            return
        docs = Peekable(self._reader.docs(epoch, piece, offset, repeat=self.repeat))
        with_labels = self.objective == "verifier"
        while True:
            batch, placed = pack_batch(
                docs, self.rows, self.seq_len, pad_id=self.pad_id, with_labels=with_labels
            )
            nxt = docs.peek()
            if placed == 0 and nxt is None:
                return
            batches += 1
            pos = nxt.pos if nxt is not None else (None, None, None)
            yield batch, {"epoch": pos[0], "piece": pos[1], "offset": pos[2], "batches": batches}

    def _grouped_batches(
        self, epoch: int, qpos: int, offset: int, batches: int
    ) -> Iterator[tuple[dict, dict]]:
        groups = GroupStream(self._grouped.groups(epoch, qpos, offset, repeat=self.repeat))
        while True:
            batch, placed = pack_grouped_batch(
                groups, self.row_sets, self.seq_len, pad_id=self.pad_id
            )
            nxt = groups.peek()
            if placed == 0 and nxt is None:
                return
            batches += 1
            pos = nxt[0].pos if nxt is not None else (None, None, None)
            yield batch, {"epoch": pos[0], "piece": pos[1], "offset": pos[2], "batches": batches}

    def _start(self, position: dict, skip_batches: int = 0) -> None:
        self.close()
        self._state = dict(position)
        if skip_batches:
            # A state saved by another host: replay this host's stream from the beginning.
            gen = self._batches(0, 0, 0, 0)
            for _ in range(skip_batches):
                _, self._state = next(gen, (None, self._state))
        elif position["epoch"] is None:  # a finished non-repeating stream
            gen = iter(())
        else:
            gen = self._batches(
                position["epoch"], position["piece"], position["offset"], position["batches"]
            )
        self._source = _Prefetcher(gen, self.prefetch) if self.prefetch > 0 else gen

    def __iter__(self) -> InputPipeline:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch, state = next(self._source)
        self._state = state
        return batch

    def close(self) -> None:
        """Stop the background thread (iteration may be restarted with `set_state`)."""
        if isinstance(self._source, _Prefetcher):
            self._source.close()
        self._source = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- resume ----------------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        grouped = (
            {"group_by_question": True, "micro_batches": self.micro_batches}
            if self.group_by_question
            else {}
        )
        return {
            **grouped,
            "split": self.split,
            "seq_len": self.seq_len,
            "global_batch": self.global_batch,
            "seed": self.seed,
            "process_count": self.process_count,
            "num_examples": self.num_examples,
            "tokenizer_fingerprint": self.tokenizer_fingerprint,
        }

    def get_state(self) -> dict[str, Any]:
        """A JSON-serialisable position after the last batch returned; save it in the checkpoint."""
        return {
            "version": STATE_VERSION,
            "process_index": self.process_index,
            **self._identity(),
            **self._state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Resume so that the next batches are exactly those an unbroken run would have seen."""
        if state.get("version") != STATE_VERSION:
            raise UserError(
                f"input pipeline state has version {state.get('version')!r}, expected {STATE_VERSION}"
            )
        if bool(state.get("group_by_question", False)) != self.group_by_question:
            raise UserError(
                "cannot resume the input pipeline exactly: the checkpoint's data.group_by_question "
                f"is {bool(state.get('group_by_question', False))}, now {self.group_by_question}"
            )
        for key, mine in self._identity().items():
            if state.get(key) != mine:
                raise UserError(
                    f"cannot resume the input pipeline exactly: the checkpoint's {key} is {state.get(key)!r}, now {mine!r}"
                )
        position = {k: state[k] for k in ("epoch", "piece", "offset", "batches")}
        if state.get("process_index") == self.process_index:
            self._start(position)
        else:  # another host's position: replay this host's stream up to the same batch count
            self._start(position, skip_batches=int(state["batches"]))
