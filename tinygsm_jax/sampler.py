"""The jitted, batched best-of-N sampler over the Phi generator.

One compiled program per batch: prefill each question's prompt once, then decode all N
samples of all questions together in `lax.while_loop`s that end when every sample has
stopped (or after `max_new_tokens`). What makes it simple and fast:

* A shared prompt cache. The prompt's keys and values are stored once per question, not N
  times: the N samples' queries meet them in one matrix product per head
  (`Phi.decode_shared`), so the prompt costs neither N copies of memory nor N reads per step.
* Only written slots are read. The generated tokens' cache is cut into four blocks, with one
  loop per block that attends only to the blocks written so far (about 5/8 of the slots on
  average instead of all). Together with the shared prompt this made best-of-48 decoding
  ~1.8x faster per token on this CPU (benchmarks/sampler.py).

* Left padding without special cases. Prompts are left-padded to a bucket length; pad
  slots carry segment id 0 (the model's attention ignores them) and positions count from
  each prompt's first real token, so a padded prompt computes exactly what it would alone.
* Bucketed shapes. Prompt lengths round up to a power of two (at least 32), and every batch
  holds the same number of questions (the last is filled with inactive dummies), so a whole
  data set compiles a handful of programs. Compilation is timed apart from sampling.
* Results independent of batch layout. Each sample's random stream is
  ``fold_in(fold_in(fold_in(key(seed), question_id), sample), step)``, so a sample is the
  same whichever batch, batch size or device it lands in. Callers that sample one question
  set several times (several checkpoints, temperatures, or eval against training data) give
  each pass its own `seed` with `stream_seed`, so the passes are independent draws.
* Stopping. The device loop stops a sample at EOS, at `max_new_tokens`, and (for TinyGSM
  prompts, `stop_at_function_end`) at the function's end: a token that starts a
  non-indented line. That test runs on token level from three per-vocabulary tables (the
  token's text starts with a non-space character / ends with a newline / holds a newline
  followed by a non-space character). The host then applies the exact character-level rule,
  `solution_format.body_end`, to the decoded text and truncates there, so the text is
  always exactly what `body_end` accepts; the device test only saves the wasted tokens.
* Sampling draws one uniform number per sample and step and inverts the CDF of the
  (temperature, top-k, top-p) distribution: exact, and far cheaper than Gumbel-max noise over
  the whole vocabulary.
* Log-probabilities are those of the raw model (temperature 1, no top-k/top-p, full
  vocabulary), summed over the kept tokens, EOS included when the sample ended with it:
  comparable across temperatures and truncation settings. Per-token values come back too.
* Data parallel. With a mesh, parameters are placed by the project's sharding rules and the
  N x questions rows are sharded over (data, fsdp); inputs are built with
  `jax.make_array_from_callback` and outputs gathered with `process_allgather`, so every
  host runs the same call on the same prompts (multi-host: each host must pass the same list).

The model runs through `nnx.split` / `nnx.merge` inside a plain `jax.jit`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tinygsm_jax.model import ModelConfig, Phi, init_cache
from tinygsm_jax.sharding import state_shardings, use_mesh
from tinygsm_jax.solution_format import body_end

FINISH = {0: "running", 1: "eos", 2: "function_end", 3: "length"}
_MIN_BUCKET = 32
# Compiled programs, shared by every Sampler of the same model shape in this process.
_PROGRAMS: dict[tuple, Any] = {}


def stream_seed(seed: int, *stream: object) -> int:
    """A 32-bit seed for one named sampling pass, e.g. ``stream_seed(0, "verifier_data", step, 0.7)``.

    The same user seed must not give two checkpoints or temperatures the same random numbers
    (their samples would be correlated, which shrinks the diversity the paper mixes them for),
    and an evaluation must not replay a stream that made training data. Hashing the pass's
    name into the seed keeps every pass reproducible and the passes apart.
    """
    text = json.dumps([int(seed), *stream], default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """How to sample. temperature 0 is greedy (top_k / top_p are then irrelevant)."""

    n: int = 1
    temperature: float = 0.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    max_new_tokens: int = 256
    seed: int = 0
    stop_at_function_end: bool = False

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")


@dataclasses.dataclass
class Completion:
    """One sample: kept tokens (no EOS), their text, raw-model log-prob and why it stopped."""

    tokens: list[int]
    text: str
    logprob: float
    finish_reason: str  # "eos", "function_end" or "length"
    token_logprobs: list[float]
    n_generated: int  # tokens the device produced for this sample (throughput accounting)


@dataclasses.dataclass
class SamplerStats:
    """Running totals: sampling time excludes compilation (reported apart)."""

    generated_tokens: int = 0
    sampling_seconds: float = 0.0
    compile_seconds: float = 0.0
    compiles: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.sampling_seconds if self.sampling_seconds > 0 else 0.0


def _bucket(length: int, limit: int) -> int:
    """The power of two (at least _MIN_BUCKET) holding `length`, capped at `limit`."""
    b = max(_MIN_BUCKET, 1 << max(0, length - 1).bit_length())
    return min(b, limit)


def _block_size(max_new: int) -> int:
    """Slots per generated-cache block: about a quarter of `max_new`, a multiple of 8.

    Decoding runs one loop per block and reads only the blocks written so far, so on average
    ~5/8 of the generated cache is read instead of all of it; more blocks would read less but
    compile one more loop body each.
    """
    return max(8, -(-max_new // 4 // 8) * 8)


def batch_questions(q: int, n: int, n_shards: int) -> int:
    """Questions per batch: `q` rounded up so that questions x n rows divide over the shards."""
    step = n_shards // math.gcd(n, n_shards)
    return -(-max(1, q) // step) * step


def token_tables(tokenizer: Any, vocab_size: int) -> np.ndarray:
    """Per-token flags for the on-device function-end test, int8 [vocab_size, 4].

    Columns: starts with a non-space char; ends with a newline; holds a newline followed by a
    non-space char; decodes to nothing. Ids past the tokenizer's vocabulary get zeros.
    """
    table = np.zeros((vocab_size, 4), np.int8)
    n = min(vocab_size, len(tokenizer))
    texts = tokenizer.batch_decode(
        [[i] for i in range(n)], skip_special_tokens=False, clean_up_tokenization_spaces=False
    )
    for i, t in enumerate(texts):
        if not t:
            table[i, 3] = 1
            continue
        table[i, 0] = not t[0].isspace()
        table[i, 1] = t.endswith("\n")
        table[i, 2] = any(not t[j + 1].isspace() for j in range(len(t) - 1) if t[j] == "\n")
    return table


def _filter_logits(logits: jax.Array, top_k: int, use_top_p: bool, top_p: jax.Array) -> jax.Array:
    """Top-k then top-p (nucleus) truncation of [B, V] logits, as HF's warpers do."""
    neg = jnp.finfo(logits.dtype).min
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, neg, logits)
    if use_top_p:
        srt = jnp.sort(logits, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(srt, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass strictly above each sorted token
        keep = before < top_p
        keep = keep.at[:, 0].set(True)
        threshold = jnp.min(jnp.where(keep, srt, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < threshold, neg, logits)
    return logits


@dataclasses.dataclass(frozen=True)
class ProgramSpec:
    """What one compiled sampling program is built for, beyond its argument shapes: the
    values `_sample_parts` closes over, one object so that the sampler and `aot_sampler` name
    them once."""

    cfg: ModelConfig
    graphdef: Any
    n: int  # samples per question
    max_new: int  # new tokens at most
    top_k: int  # 0: off
    use_top_p: bool
    stop_fn: bool  # stop a sample at the end of its first top-level function
    vocab_limit: int  # ids from here on (the model's padding past the tokenizer) never sampled
    row_sharding: Any  # of the B = questions x n sample rows; None: as XLA picks


def _sample_parts(spec: ProgramSpec):
    """(prefill, step): the two halves of one static configuration's program.

    With the layer scan unrolled (`cfg.scan_unroll == n_layers`, the CPU default) the decode
    keeps weights and caches as one array per layer (`Phi.decode_shared`'s `layers`).

    `prefill(state, tokens, ..., pad_id) -> (ctx, carry)` runs the prompts and sets up the
    decode; `step(state, ctx, carry, j) -> carry` decodes one token into cache block j. The
    sampler runs them as one program (`_sample_program`); `tinygsm_jax.aot` compiles `step`
    alone to project the decode time (XLA's cost analysis counts a loop body once).
    """
    cfg, graphdef, n, max_new = spec.cfg, spec.graphdef, spec.n, spec.max_new
    top_k, use_top_p, stop_fn = spec.top_k, spec.use_top_p, spec.stop_fn
    vocab_limit, row_sharding = spec.vocab_limit, spec.row_sharding
    unrolled = cfg.scan_unroll >= cfg.n_layers

    def prefill(
        state,
        tokens,
        positions,
        segments,
        prompt_len,
        qids,
        active,
        seed,
        temperature,
        top_p,
        tables,
        eos_id,
        pad_id,
    ):
        model: Phi = nnx.merge(graphdef, state)
        Q, P = tokens.shape
        B = Q * n

        def rep(x):  # one row per question -> its n sample rows, adjacent
            return jnp.repeat(x, n, axis=0)

        # The barrier keeps XLA from constant-folding attention over the all-zero fresh cache
        # (seconds of compile time for nothing).
        cache = jax.lax.optimization_barrier(init_cache(cfg, Q, P))
        logits, cache = model(tokens, positions, segments, cache=cache)
        # The prompt's cache is kept once per question and shared by its n samples.
        prefix = {"k": cache["k"], "v": cache["v"], "mask": cache["segment_ids"] != 0}
        last = rep(logits[:, -1, :])
        C = _block_size(max_new)
        L, shape = cfg.n_layers, (B, cfg.n_heads, C, cfg.head_dim)
        if unrolled:  # one array per layer (`Phi.decode_shared`), split once, not every step
            prefix |= {name: tuple(prefix[name][i] for i in range(L)) for name in ("k", "v")}
            new_block = lambda: tuple(jnp.zeros(shape, cfg.compute_dtype) for _ in range(L))  # noqa: E731
        else:
            new_block = lambda: jnp.zeros((L, *shape), cfg.compute_dtype)  # noqa: E731
        blocks = tuple({"k": new_block(), "v": new_block()} for _ in range(-(-max_new // C)))
        if row_sharding is not None:
            cons = jax.lax.with_sharding_constraint
            spec = row_sharding.spec if unrolled else (None, *row_sharding.spec)
            rows = NamedSharding(row_sharding.mesh, PartitionSpec(*spec))
            blocks = jax.tree.map(lambda x: cons(x, rows), blocks)
            last = cons(last, row_sharding)
        base = jax.random.key(seed)
        q_keys = jax.vmap(lambda q: jax.random.fold_in(base, q))(qids)
        keys = jax.vmap(lambda k, s: jax.random.fold_in(k, s))(
            rep(q_keys), jnp.tile(jnp.arange(n), Q)
        )
        ctx = {
            "prefix": prefix,
            "layers": model.layer_params() if unrolled else None,
            "keys": keys,
            "start_pos": rep(prompt_len),
            "flags": tables.astype(bool),
            "temperature": temperature,
            "top_p": top_p,
            "eos_id": eos_id,
            "pad_id": pad_id,
        }
        carry = {
            "t": jnp.zeros((), jnp.int32),
            "done": ~rep(active),
            "logits": last,
            "blocks": blocks,
            "out_tok": jnp.full((B, max_new), pad_id, jnp.int32),
            "out_logp": jnp.zeros((B, max_new), jnp.float32),
            "length": jnp.zeros((B,), jnp.int32),
            "line_start": jnp.ones((B,), bool),
            "reason": jnp.zeros((B,), jnp.int32),
        }
        return ctx, carry

    def choose(ctx, lg, step):
        keys, temperature = ctx["keys"], ctx["temperature"]
        V = lg.shape[-1]
        step_keys = jax.vmap(lambda k: jax.random.fold_in(k, step))(keys)
        lg = jnp.where(jnp.arange(V) < vocab_limit, lg, jnp.finfo(lg.dtype).min)
        greedy = jnp.argmax(lg, axis=-1)
        scaled = _filter_logits(lg / jnp.maximum(temperature, 1e-6), top_k, use_top_p, ctx["top_p"])
        # Inverse-CDF sampling: one uniform per sample and step, where Gumbel-max
        # (`jax.random.categorical`) draws one per vocabulary entry (6x slower per step here).
        u = 1.0 - jax.vmap(jax.random.uniform)(
            step_keys
        )  # (0, 1]: a zero-probability token never wins
        cdf = jnp.cumsum(jax.nn.softmax(scaled, axis=-1), axis=-1)
        sampled = jnp.minimum(jnp.sum(cdf < u[:, None] * cdf[:, -1:], axis=-1), V - 1)
        return jnp.where(temperature > 0, sampled, greedy).astype(jnp.int32)

    def step(state, ctx, c, j: int):
        model: Phi = nnx.merge(graphdef, state)
        C = _block_size(max_new)
        flags, eos_id, pad_id = ctx["flags"], ctx["eos_id"], ctx["pad_id"]
        t, done = c["t"], c["done"]
        tok = choose(ctx, c["logits"], t)
        logp = jnp.take_along_axis(jax.nn.log_softmax(c["logits"], axis=-1), tok[:, None], axis=-1)[
            :, 0
        ]
        tok = jnp.where(done, pad_id, tok)
        live = ~done
        out_tok = c["out_tok"].at[:, t].set(tok)
        out_logp = c["out_logp"].at[:, t].set(jnp.where(live, logp, 0.0))
        length = c["length"] + live.astype(jnp.int32)
        f = flags[tok]
        is_eos = live & (tok == eos_id)
        fn_end = (
            live & ~is_eos & ((c["line_start"] & f[:, 0]) | f[:, 2])
            if stop_fn
            else jnp.zeros_like(live)
        )
        line_start = jnp.where(f[:, 3], c["line_start"], f[:, 1])
        reason = jnp.where(is_eos, 1, jnp.where(fn_end, 2, c["reason"]))
        reason = jnp.where(live & ~is_eos & ~fn_end & (t + 1 >= max_new), 3, reason)
        new_done = done | is_eos | fn_end
        pos = (ctx["start_pos"] + t)[:, None]
        # Generated token t goes to slot t % C of block j = t // C; blocks after j hold
        # nothing yet and are not read.
        blocks = c["blocks"]
        nxt, kv = model.decode_shared(
            tok[:, None], pos, ctx["prefix"], blocks[: j + 1], t, ctx["layers"]
        )
        if unrolled:  # the model wrote the new token's (k, v) into block j
            blk = kv[j]
        else:  # (k, v) [L,B,H,K] into slot t - j*C of block j's [L,B,H,C,K]
            at = (0, 0, 0, t - j * C, 0)
            blk = {
                name: jax.lax.dynamic_update_slice(
                    blocks[j][name], new[:, :, :, None].astype(blocks[j][name].dtype), at
                )
                for name, new in zip(("k", "v"), kv)
            }
        return {
            "t": t + 1,
            "done": new_done,
            "logits": nxt[:, -1, :],
            "blocks": (*blocks[:j], blk, *blocks[j + 1 :]),
            "out_tok": out_tok,
            "out_logp": out_logp,
            "length": length,
            "line_start": line_start,
            "reason": reason,
        }

    return prefill, step


def _sample_program(spec: ProgramSpec):
    """The jitted function for one static configuration (shapes come from the arguments)."""
    prefill, step = _sample_parts(spec)
    max_new = spec.max_new
    C = _block_size(max_new)

    def run(state, *args):
        ctx, carry = prefill(state, *args)
        # One loop per cache block, each reading only the blocks written so far; a loop ends
        # at its block's last slot or when every sample has stopped.
        for j in range(len(carry["blocks"])):
            end = min((j + 1) * C, max_new)
            carry = jax.lax.while_loop(
                lambda c, end=end: (c["t"] < end) & ~jnp.all(c["done"]),
                lambda c, j=j: step(state, ctx, c, j),
                carry,
            )
        return carry["out_tok"], carry["out_logp"], carry["length"], carry["reason"]

    return jax.jit(run)


class Sampler:
    """Best-of-N sampling for a generator `Phi`; see the module docstring.

    `tokenizer` (an HF tokenizer) supplies EOS, decoding and the function-end tables; with
    `tokenizer=None` only `sample_ids` works (give `eos_id`) and nothing stops at a function end.
    `mesh`: None runs on the default device; a mesh shards the sample rows over (data, fsdp).
    `questions_per_batch` questions (x n samples each) share one compiled decode loop.
    """

    def __init__(
        self,
        model: Phi,
        tokenizer: Any,
        *,
        mesh: Mesh | None = None,
        questions_per_batch: int = 8,
        eos_id: int | None = None,
        restrict_vocab: bool = True,
    ):
        self.cfg: ModelConfig = model.cfg
        if self.cfg.head != "lm":
            raise ValueError("the sampler needs a generator (head='lm') model")
        self.tokenizer = tokenizer
        if eos_id is None and tokenizer is None:
            raise ValueError("give a tokenizer or an eos_id")
        self.eos_id = int(tokenizer.eos_token_id if eos_id is None else eos_id)
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(self.eos_id if pad is None else pad)
        if self.pad_id < 0:  # an eos_id of -1 (never stop) is no token to pad with
            self.pad_id = 0
        self.vocab_limit = self.cfg.vocab_size
        if restrict_vocab and tokenizer is not None:
            self.vocab_limit = min(len(tokenizer), self.cfg.vocab_size)
        self.mesh = mesh
        self.questions_per_batch = max(1, int(questions_per_batch))
        self.graphdef, state = nnx.split(model)
        if mesh is not None:
            pure = jax.device_put(nnx.to_pure_dict(state), state_shardings(state, mesh))
            nnx.replace_by_pure_dict(state, pure)
            self._replicated = NamedSharding(mesh, PartitionSpec())
            self._rows = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
            self._n_shards = mesh.shape["data"] * mesh.shape["fsdp"]
        else:
            self._replicated = self._rows = None
            self._n_shards = 1
            # Restored parameters may be host numpy arrays: move them once, not on every call.
            state = jax.device_put(state)
        self.state = state
        if tokenizer is None:
            self.tables = np.zeros((self.cfg.vocab_size, 4), np.int8)
        else:
            self.tables = token_tables(tokenizer, self.cfg.vocab_size)
        self.stats = SamplerStats()

    # -- device side --------------------------------------------------------------------------
    def _put(self, x: np.ndarray) -> jax.Array:
        if self._replicated is None:
            return jnp.asarray(x)
        return jax.make_array_from_callback(x.shape, self._replicated, lambda idx: x[idx])

    @staticmethod
    def _get(x: jax.Array) -> np.ndarray:
        if jax.process_count() > 1 and not x.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    def _program(self, key: tuple, args: tuple):
        Q, P, n, max_new, top_k, use_top_p, stop_fn = key
        full_key = (self.cfg, self.graphdef, self.mesh, self.vocab_limit, *key)
        prog = _PROGRAMS.get(full_key)
        if prog is None:
            rows = self._rows if (Q * n) % self._n_shards == 0 else None
            spec = ProgramSpec(
                self.cfg,
                self.graphdef,
                n,
                max_new,
                top_k,
                use_top_p,
                stop_fn,
                self.vocab_limit,
                rows,
            )
            fn = _sample_program(spec)
            t0 = time.perf_counter()
            if self.mesh is not None:
                with use_mesh(self.mesh):
                    prog = fn.lower(*args).compile()
            else:
                prog = fn.lower(*args).compile()
            self.stats.compile_seconds += time.perf_counter() - t0
            self.stats.compiles += 1
            _PROGRAMS[full_key] = prog
        return prog

    def batch_questions_for(self, n: int, n_prompts: int) -> int:
        """Questions per batch for a call of `n_prompts` prompts: no more than a power of two
        that holds them all, so a short job decodes no dummy questions (4 questions in
        batches of 8 spent half of every step on dummies) and compiles few shapes."""
        fits_all = 1 << max(0, n_prompts - 1).bit_length()
        return batch_questions(min(self.questions_per_batch, fits_all), n, self._n_shards)

    # -- public API ---------------------------------------------------------------------------
    def sample_ids(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        question_ids: Sequence[int] | None = None,
        progress: Any = None,
    ) -> list[list[dict]]:
        """Sample `params.n` continuations of each token-id prompt.

        Returns, per prompt, n dicts: tokens (np.int32, EOS included when sampled), logprobs
        (per token, raw model), reason ("eos"/"function_end"/"length"). `question_ids` key the
        random streams (default 0..len-1). `progress`: a tqdm bar updated per question.
        """
        qids = list(range(len(prompts))) if question_ids is None else [int(q) for q in question_ids]
        if len(qids) != len(prompts):
            raise ValueError("question_ids must match prompts in length")
        M, n = params.max_new_tokens, params.n
        limit = self.cfg.max_len - M
        for i, p in enumerate(prompts):
            if len(p) == 0:
                raise ValueError(f"prompt {i} is empty")
            if len(p) > limit:
                raise ValueError(
                    f"prompt {i} has {len(p)} tokens; with max_new_tokens={M} the model's "
                    f"max_len {self.cfg.max_len} allows at most {limit}"
                )
        Qb = self.batch_questions_for(n, len(prompts))
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[list[dict] | None] = [None] * len(prompts)
        statics = (n, M, params.top_k, params.top_p < 1.0, params.stop_at_function_end)
        scalars = (
            self._put(np.asarray(params.seed, np.uint32)),
            self._put(np.asarray(params.temperature, np.float32)),
            self._put(np.asarray(params.top_p, np.float32)),
            self._put(self.tables),
            self._put(np.asarray(self.eos_id, np.int32)),
            self._put(np.asarray(self.pad_id, np.int32)),
        )
        pending = None
        compile_before = self.stats.compile_seconds
        t_start = time.perf_counter()
        for b in range(0, len(order), Qb):
            idx = order[b : b + Qb]
            P = _bucket(max(len(prompts[i]) for i in idx), limit)
            tokens = np.full((Qb, P), self.pad_id, np.int32)
            segments = np.zeros((Qb, P), np.int32)
            positions = np.zeros((Qb, P), np.int32)
            plen = np.ones((Qb,), np.int32)
            qid_arr = np.zeros((Qb,), np.int32)
            active = np.zeros((Qb,), bool)
            for r in range(Qb):
                ids = list(prompts[idx[r]]) if r < len(idx) else [self.pad_id]
                L = len(ids)
                tokens[r, P - L :] = ids
                segments[r, P - L :] = 1
                positions[r, P - L :] = np.arange(L)
                plen[r] = L
                if r < len(idx):
                    qid_arr[r], active[r] = qids[idx[r]], True
            args = (
                self.state,
                *map(self._put, (tokens, positions, segments, plen, qid_arr, active)),
                *scalars,
            )
            prog = self._program((Qb, P, *statics), args)
            outs = prog(*args)  # async dispatch: the host unpacks the previous batch meanwhile
            if pending is not None:
                self._unpack(pending, results, n, progress)
            pending = (idx, outs)
        if pending is not None:
            self._unpack(pending, results, n, progress)
        compiled = self.stats.compile_seconds - compile_before
        self.stats.sampling_seconds += time.perf_counter() - t_start - compiled
        return results  # type: ignore[return-value]

    def _unpack(self, pending, results, n, progress) -> None:
        idx, outs = pending
        tok, logp, length, reason = (self._get(x) for x in outs)
        for r, i in enumerate(idx):
            rows = []
            for s in range(n):
                row = r * n + s
                L = int(length[row])
                self.stats.generated_tokens += L
                rows.append(
                    {
                        "tokens": tok[row, :L].copy(),
                        "logprobs": logp[row, :L].copy(),
                        "reason": FINISH[int(reason[row])],
                    }
                )
            results[i] = rows
            if progress is not None:
                progress.update(1)

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        question_ids: Sequence[int] | None = None,
        progress: Any = None,
    ) -> list[list[Completion]]:
        """Sample text continuations of text prompts; truncated at the function end when asked."""
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        raw = self.sample_ids(ids, params, question_ids, progress)
        return [
            [self.to_completion(s, params.stop_at_function_end) for s in per_q] for per_q in raw
        ]

    def to_completion(self, s: dict, stop_at_function_end: bool) -> Completion:
        """Decode one raw sample; apply the exact `body_end` rule on the text (see module doc)."""
        toks, lps, reason = s["tokens"], s["logprobs"], s["reason"]
        n_gen = len(toks)
        keep = len(toks) - 1 if reason == "eos" else len(toks)
        text = self._decode(toks[:keep])
        if stop_at_function_end:
            end = body_end(text + "\n")
            if end is not None and end < len(text):
                k = self._prefix_for(toks[:keep], end)
                text, keep, reason = text[:end], k, "function_end"
                lps = lps[:k]
        body = [int(t) for t in toks[:keep]]
        return Completion(
            body, text, float(np.sum(lps, dtype=np.float64)), reason, [float(x) for x in lps], n_gen
        )

    def _decode(self, toks) -> str:
        return self.tokenizer.decode(
            [int(t) for t in toks], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )

    def _prefix_for(self, toks, n_chars: int) -> int:
        """The fewest tokens whose text reaches `n_chars` characters (binary search)."""
        lo, hi = 0, len(toks)
        while lo < hi:
            mid = (lo + hi) // 2
            if len(self._decode(toks[:mid])) >= n_chars:
                hi = mid
            else:
                lo = mid + 1
        return lo
