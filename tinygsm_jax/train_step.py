"""The functional core of training: optimiser, objectives, and one sharded, jitted train step.

Kept apart from the loop (`tinygsm_jax.train`) so the loop reads top to bottom and so the
ahead-of-time compiler can build exactly the same step for a TPU topology without allocating:
`build_train_step(config, mesh)` returns the jitted step and abstract arguments, and
`fn.lower(*args).compile()` is the real executable.

Design:
- State is a pure dict `{"params", "opt_state", "step"}` of float32 arrays (mixed precision:
  the model casts weights to `ModelConfig.dtype` for compute), passed through a plain
  `jax.jit` with explicit in/out shardings and donation; the NNX module is rebuilt inside
  the trace with `nnx.merge`, which costs nothing at run time.
- Losses are summed over `loss_mask` tokens and divided by the token count of the whole
  global batch, so gradient accumulation (a `lax.scan` over micro-batches) is exactly the
  large-batch gradient and one logged step is one optimiser step.
- Micro-batch j takes rows j, j+n, j+2n, ... of the batch: each device keeps its own rows,
  so splitting the batch moves no data between devices.
- The verifier's ranking loss (`train.rank_loss_weight` > 0) compares the scores (the value
  head at each candidate's last token) of one question's right and wrong candidates within a
  micro-batch; the input pipeline (`data.group_by_question`) keeps a question's candidates in
  one micro-batch. Its sum over the batch is divided by the batch's pair (pairwise) or
  question (listwise) count, the BCE's by its token count, as before.
- Dropout (`model.dropout` > 0) draws from a key that is a function of `train.seed` and the
  step number alone (`dropout_key`), folded with the micro-batch index and, in the model, the
  layer index: a resumed run draws the same masks. At rate 0 no key is made at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from ml_collections import ConfigDict

from tinygsm_jax import sharding
from tinygsm_jax.cli import UserError
from tinygsm_jax.data.packing import max_docs_per_row
from tinygsm_jax.model import ModelConfig, Phi

OBJECTIVES = {"generator": "lm", "verifier": "value"}  # objective -> the model head it trains
RANK_LOSSES = ("pairwise", "listwise")
BATCH_KEYS = ("inputs", "targets", "loss_mask", "segment_ids", "positions")
BATCH_SPEC = ("batch", "length")


def batch_keys(objective: str, grouped: bool = False) -> tuple[str, ...]:
    """The arrays of a batch; `grouped` adds the question id per token (the ranking loss's)."""
    keys = BATCH_KEYS + (("labels",) if objective == "verifier" else ())
    return keys + (("group",) if grouped else ())


def batch_dtype(key: str) -> np.dtype:
    return np.dtype(np.float32 if key == "labels" else np.int32)


def model_config(config: ConfigDict, mesh: Mesh | None = None) -> ModelConfig:
    """ModelConfig from `config.model`; "auto" dtype (bf16 off CPU) and scan_unroll follow
    the mesh's platform.

    Deciding by the mesh, not the default backend, lets a CPU host compile a TPU step with
    the TPU's numerics and program.
    """
    platform = mesh.devices.flat[0].platform if mesh is not None else None
    return ModelConfig.from_config(
        config.model, platform=platform, keep_lm_head=lm_loss_weight(config) > 0
    )


def lm_loss_weight(config: ConfigDict) -> float:
    """The joint objective's language-modelling weight (0 for a generator or a pure verifier)."""
    if config.objective != "verifier":
        return 0.0
    return float(config.train.get("lm_loss_weight", 0.0))


def rank_loss_weight(config: ConfigDict) -> float:
    """The verifier's within-question ranking loss weight (0: the BCE alone, as before)."""
    if config.objective != "verifier":
        return 0.0
    return float(config.train.get("rank_loss_weight", 0.0))


def lr_schedule(tc: ConfigDict) -> Callable[[jax.Array], jax.Array]:
    """Linear warm-up to `lr` over `warmup_steps`, then linear decay to `lr * end_lr_ratio`.

    optax's `linear_schedule`s joined by `join_schedules`, over the 1-based step: optax passes
    the update count (0 for the first step), and shifting it by one lets step 1 already use
    lr/warmup rather than waste an update at learning rate 0.
    """
    peak, end = float(tc.lr), float(tc.lr) * float(tc.end_lr_ratio)
    warm, total = max(int(tc.warmup_steps), 0), int(tc.steps)
    decay = optax.linear_schedule(peak, end, transition_steps=max(total - warm, 1))
    if warm:
        warmup = optax.linear_schedule(0.0, peak, transition_steps=warm)
        by_step = optax.join_schedules([warmup, decay], boundaries=[warm])
    else:
        by_step = decay
    return lambda count: by_step(jnp.asarray(count) + 1)


def decay_mask(params: Any) -> Any:
    """Weight decay on matmul kernels and the embedding only (not biases, not LayerNorm)."""

    def decays(path, _):
        name = str(getattr(path[-1], "key", path[-1]))
        return name.endswith("_kernel") or name == "embed"

    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(tc: ConfigDict) -> tuple[optax.GradientTransformation, Callable]:
    """AdamW (global-norm clipping first) and its learning-rate schedule."""
    schedule = lr_schedule(tc)
    parts = (
        [optax.clip_by_global_norm(float(tc.grad_clip))]
        if tc.grad_clip and tc.grad_clip > 0
        else []
    )
    parts.append(
        optax.adamw(
            schedule,
            b1=float(tc.b1),
            b2=float(tc.b2),
            weight_decay=float(tc.weight_decay),
            mask=decay_mask,
        )
    )
    return optax.chain(*parts), schedule


def last_token_mask(loss_mask: jax.Array, segment_ids: jax.Array) -> jax.Array:
    """True at the last loss token of each packed sequence: where the verifier is read at test time."""
    on = loss_mask > 0
    nxt_on = jnp.pad(on[:, 1:], ((0, 0), (0, 1)))
    nxt_same = jnp.pad(segment_ids[:, 1:] == segment_ids[:, :-1], ((0, 0), (0, 1)))
    return on & ~(nxt_on & nxt_same)


DROPOUT_STREAM = 0x64726F70  # "drop": keeps the dropout keys apart from the init key of the seed


def dropout_key(seed: int, step: jax.Array) -> jax.Array:
    """The dropout PRNG key of optimiser step `step` (0-based): fixed by seed and step, so resume is exact."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), DROPOUT_STREAM), step)


def rank_candidates(scores: jax.Array, batch: dict) -> tuple[jax.Array, ...]:
    """(score, valid, group, right) per candidate slot, [rows * max_docs_per_row] each.

    A candidate is a packed sequence; its score is the value head at its last loss token
    (`last_token_mask`, where the verifier is read at test time). Row r's segment k fills
    slot (r, k - 1); rows of grouped batches hold at most `max_docs_per_row` segments, and
    segments beyond (other batches only) are left out of the ranking loss.
    """
    K = max_docs_per_row(batch["segment_ids"].shape[1])
    last = last_token_mask(batch["loss_mask"], batch["segment_ids"])
    slots = jnp.arange(1, K + 1, dtype=batch["segment_ids"].dtype)
    onehot = (batch["segment_ids"][:, :, None] == slots) & last[:, :, None]  # [b, T, K]
    score = jnp.einsum("bt,btk->bk", scores, onehot.astype(scores.dtype))
    valid = jnp.any(onehot, axis=1)
    group = jnp.max(jnp.where(onehot, batch["group"][:, :, None], 0), axis=1)
    right = jnp.any(onehot & (batch["labels"][:, :, None] > 0.5), axis=1)
    return score.reshape(-1), valid.reshape(-1), group.reshape(-1), right.reshape(-1)


def rank_loss_sums(scores: jax.Array, batch: dict, kind: str) -> tuple[jax.Array, jax.Array]:
    """(summed ranking loss, its count) over one micro-batch's questions.

    pairwise: softplus(-(s_i - s_j)) for every right i and wrong j of the same question, counted
    per pair. listwise: -log(sum over the question's right of exp(s) / sum over all of exp(s))
    for each question with a right and a wrong candidate, counted per question.
    """
    s, valid, group, right = rank_candidates(scores, batch)
    same = valid[:, None] & valid[None, :] & (group[:, None] == group[None, :])
    if kind == "pairwise":
        pairs = same & right[:, None] & ~right[None, :]
        loss = jax.nn.softplus(s[None, :] - s[:, None])  # [i, j]: -(s_i - s_j)
        return jnp.sum(jnp.where(pairs, loss, 0.0)), jnp.sum(pairs.astype(jnp.float32))
    if kind != "listwise":
        raise ValueError(f"rank loss must be one of {RANK_LOSSES}, got {kind!r}")
    neg = jnp.float32(-1e30)  # finite, so masked entries carry no NaN into the gradient
    lse_all = jax.nn.logsumexp(jnp.where(same, s[None, :], neg), axis=1)
    lse_right = jax.nn.logsumexp(jnp.where(same & right[None, :], s[None, :], neg), axis=1)
    n = s.shape[0]
    earlier = jnp.arange(n)[None, :] < jnp.arange(n)[:, None]
    first = valid & ~jnp.any(same & earlier, axis=1)  # one slot stands for its question
    mixed = jnp.any(same & right[None, :], axis=1) & jnp.any(same & ~right[None, :], axis=1)
    counted = first & mixed
    loss = jnp.sum(jnp.where(counted, lse_all - lse_right, 0.0))
    return loss, jnp.sum(counted.astype(jnp.float32))


def loss_sums(
    model: Phi,
    batch: dict,
    objective: str,
    lm_weight: float = 0.0,
    *,
    dropout_rng: jax.Array | None = None,
    rank_weight: float = 0.0,
    rank_loss: str = "pairwise",
    rank_scale: jax.Array | float = 1.0,
) -> tuple[jax.Array, dict]:
    """(summed loss over loss tokens, counters). Dividing happens once, over the whole batch.

    The verifier's loss is token-level BCE of the value head against the candidate's label;
    with `lm_weight` > 0 (Cobbe et al. 2021's joint objective) it adds `lm_weight` times the
    next-token loss of the LM head on the same tokens, both heads reading one trunk.
    With `rank_weight` > 0 it adds `rank_weight * rank_scale` times the summed ranking loss
    (`rank_loss_sums`; the step passes tokens / ranking count of the whole batch as the scale,
    so that after its division by tokens the term is a mean over pairs or questions).
    `dropout_rng` turns on the model's dropout (training only).
    """
    x, _ = model.hidden(
        batch["inputs"], batch["positions"], batch["segment_ids"], dropout_rng=dropout_rng
    )
    mask = batch["loss_mask"].astype(jnp.float32)
    if objective == "generator":
        token_loss = optax.softmax_cross_entropy_with_integer_labels(
            model.head(x), batch["targets"]
        )
        return jnp.sum(token_loss * mask), {"tokens": jnp.sum(mask)}
    out = model.head(x)
    labels = batch["labels"].astype(jnp.float32)
    value_sum = jnp.sum(optax.sigmoid_binary_cross_entropy(out, labels) * mask)
    last = last_token_mask(batch["loss_mask"], batch["segment_ids"])
    correct = ((out > 0) == (labels > 0.5)) & last
    counters = {
        "tokens": jnp.sum(mask),
        "last_correct": jnp.sum(correct.astype(jnp.float32)),
        "last_count": jnp.sum(last.astype(jnp.float32)),
    }
    total = value_sum
    if rank_weight:
        rank_sum, rank_count = rank_loss_sums(out, batch, rank_loss)
        counters |= {
            "value_loss_sum": value_sum,
            "rank_loss_sum": rank_sum,
            "rank_count": rank_count,
        }
        total = value_sum + (rank_weight * rank_scale) * rank_sum
    if not lm_weight:
        return total, counters
    lm_sum = jnp.sum(
        optax.softmax_cross_entropy_with_integer_labels(model.lm_logits(x), batch["targets"]) * mask
    )
    counters |= {"value_loss_sum": value_sum, "lm_loss_sum": lm_sum}
    return total + lm_weight * lm_sum, counters


def check_config(config: ConfigDict, mesh: Mesh) -> None:
    """Every configuration mistake we can see without data or compilation: one line each."""
    if config.objective not in OBJECTIVES:
        raise UserError(
            f"config.objective must be one of {', '.join(OBJECTIVES)}, got {config.objective!r}"
        )
    if config.model.head != OBJECTIVES[config.objective]:
        raise UserError(
            f"config.objective={config.objective} trains model.head={OBJECTIVES[config.objective]!r}, "
            f"but model.head is {config.model.head!r}"
        )
    try:
        cfg = ModelConfig.from_config(config.model)
    except (TypeError, ValueError) as e:
        raise UserError(f"config: {e}") from None
    tc, T = config.train, int(config.data.seq_len)
    for key, value in (
        ("train.steps", tc.steps),
        ("train.global_batch", tc.global_batch),
        ("data.seq_len", T),
        ("log.every", config.log.every),
        ("checkpoint.every", config.checkpoint.every),
    ):
        if int(value) < 1:
            raise UserError(f"config.{key} must be positive, got {value}")
    if T > cfg.max_len:
        raise UserError(f"config.data.seq_len {T} exceeds model.max_len {cfg.max_len}")
    B, shards = int(tc.global_batch), mesh.shape["data"] * mesh.shape["fsdp"]
    mesh_desc = "x".join(f"{k}={v}" for k, v in mesh.shape.items())
    if B % shards:
        hint = ""
        if mesh.devices.flat[0].platform == "cpu":
            hint = (
                "; on CPU every core is a device (set XLA_FLAGS="
                "--xla_force_host_platform_device_count=1 for one)"
            )
        raise UserError(
            f"config.train.global_batch {B} is not divisible by the mesh's data*fsdp = {shards} ({mesh_desc}){hint}"
        )
    if B % jax.process_count():
        raise UserError(
            f"config.train.global_batch {B} is not divisible by the {jax.process_count()} processes"
        )
    lm_weight = float(tc.get("lm_loss_weight", 0.0))
    if lm_weight < 0 or (lm_weight and config.objective != "verifier"):
        raise UserError(
            f"config.train.lm_loss_weight must be >= 0 and is for the verifier objective, got {lm_weight}"
        )
    rank_weight = float(tc.get("rank_loss_weight", 0.0))
    if rank_weight < 0 or (rank_weight and config.objective != "verifier"):
        raise UserError(
            f"config.train.rank_loss_weight must be >= 0 and is for the verifier objective, got {rank_weight}"
        )
    if rank_weight and tc.get("rank_loss", "pairwise") not in RANK_LOSSES:
        raise UserError(
            f"config.train.rank_loss must be one of {', '.join(RANK_LOSSES)}, got {tc.rank_loss!r}"
        )
    if rank_weight and not config.data.get("group_by_question", False):
        raise UserError(
            "config.train.rank_loss_weight > 0 compares candidates of one question, which needs "
            "batches that keep them together: set --config.data.group_by_question=True"
        )
    micro = int(tc.micro_batch)
    if micro < 0 or (micro and (B % micro or micro % shards)):
        raise UserError(
            f"config.train.micro_batch {micro} must divide global_batch {B} and be a multiple of "
            f"the mesh's data*fsdp = {shards} (0 = no accumulation)"
        )


@dataclasses.dataclass
class Trainer:
    """Everything the loop needs about the step: shardings, abstract shapes, jitted functions."""

    config: ConfigDict
    mesh: Mesh
    model_cfg: ModelConfig
    objective: str
    tx: optax.GradientTransformation
    schedule: Callable
    graphdef: Any
    state_shardings: dict
    batch_sharding: NamedSharding
    abstract_state: dict
    abstract_batch: dict
    step_fn: Callable
    init_fn: Callable

    @property
    def global_batch(self) -> int:
        return int(self.config.train.global_batch)

    @property
    def seq_len(self) -> int:
        return int(self.config.data.seq_len)

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch * self.seq_len

    def init(self, seed: int) -> dict:
        """Fresh state, created already sharded (no device ever holds the whole model)."""
        return self.init_fn(jnp.asarray(seed, jnp.uint32))

    def put_batch(self, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """Global arrays from this process's rows of the batch (multi-host safe)."""
        return {
            k: jax.make_array_from_process_local_data(
                self.batch_sharding,
                np.asarray(local[k], batch_dtype(k)),
                self.abstract_batch[k].shape,
            )
            for k in self.abstract_batch
        }

    def param_bytes_per_device(self) -> int:
        return sharding.bytes_per_device(
            self.abstract_state["params"], self.state_shardings["params"]
        )


def _with_sharding(abstract: Any, shardings: Any) -> Any:
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings
    )


def make_trainer(config: ConfigDict, mesh: Mesh) -> Trainer:
    """Build the optimiser, the shardings and the jitted init and train step for `mesh`."""
    check_config(config, mesh)
    objective = config.objective
    cfg = model_config(config, mesh)
    tx, schedule = make_optimizer(config.train)
    graphdef, abstract_model_state = nnx.split(nnx.eval_shape(lambda: Phi(cfg, rngs=nnx.Rngs(0))))
    param_shardings = sharding.state_shardings(abstract_model_state, mesh)
    abstract_params = nnx.to_pure_dict(abstract_model_state)
    abstract_opt = jax.eval_shape(tx.init, abstract_params)
    replicated = NamedSharding(mesh, PartitionSpec())
    opt_shardings = optax.tree_map_params(
        tx, lambda _, s: s, abstract_opt, param_shardings, transform_non_params=lambda _: replicated
    )
    state_shardings = {"params": param_shardings, "opt_state": opt_shardings, "step": replicated}
    abstract_state = _with_sharding(
        {
            "params": abstract_params,
            "opt_state": abstract_opt,
            "step": jax.ShapeDtypeStruct((), jnp.int32),
        },
        state_shardings,
    )
    B, T = int(config.train.global_batch), int(config.data.seq_len)
    batch_sharding = NamedSharding(mesh, sharding.logical_to_spec(BATCH_SPEC, (B, T), mesh))
    rank_weight = rank_loss_weight(config)
    rank_kind = str(config.train.get("rank_loss", "pairwise"))
    abstract_batch = {
        k: jax.ShapeDtypeStruct((B, T), batch_dtype(k), sharding=batch_sharding)
        for k in batch_keys(objective, grouped=rank_weight > 0)
    }
    micro = int(config.train.micro_batch or B)
    n_micro = B // micro

    lm_weight = lm_loss_weight(config)
    seed = int(config.train.seed)

    def micro_loss(params, mb, rng=None, rank_scale=1.0):
        model = nnx.merge(graphdef, params)
        if not rank_weight:
            return loss_sums(model, mb, objective, lm_weight, dropout_rng=rng)
        return loss_sums(
            model,
            mb,
            objective,
            lm_weight,
            dropout_rng=rng,
            rank_weight=rank_weight,
            rank_loss=rank_kind,
            rank_scale=rank_scale,
        )

    def rank_scale_of(micro_batches: dict, tokens: jax.Array) -> jax.Array:
        """tokens / ranking count of the whole batch (pairs never cross micro-batches)."""
        count = jax.vmap(
            lambda mb: rank_loss_sums(jnp.zeros(mb["segment_ids"].shape), mb, rank_kind)[1]
        )(micro_batches).sum()
        return jnp.maximum(tokens, 1.0) / jnp.maximum(count, 1.0)

    grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

    def train_step(state: dict, batch: dict) -> tuple[dict, dict]:
        with sharding.use_mesh(mesh):
            params = state["params"]
            step_key = dropout_key(seed, state["step"]) if cfg.dropout > 0 else None
            scale = 1.0
            if rank_weight and n_micro == 1:
                whole = jax.tree.map(lambda v: v[None], batch)  # one micro-batch
                scale = rank_scale_of(whole, batch["loss_mask"].sum())
            if n_micro == 1:
                (loss_sum, counters), grads = grad_fn(params, batch, step_key, scale)
            else:
                # [B, T] -> [n_micro, micro, T] with micro-batch j = rows j, j + n_micro, ...
                split = {
                    k: sharding.constrain(
                        v.reshape(micro, n_micro, T).swapaxes(0, 1), (None,) + BATCH_SPEC
                    )
                    for k, v in batch.items()
                }
                if rank_weight:
                    scale = rank_scale_of(split, batch["loss_mask"].sum())

                def body(carry, xs):
                    if step_key is None:
                        mb, rng = xs, None
                    else:  # micro-batch j's dropout key: the step's key folded with j
                        mb, j = xs
                        rng = jax.random.fold_in(step_key, j)
                    (loss_mb, c), g = grad_fn(params, mb, rng, scale)
                    return jax.tree.map(jnp.add, carry, (loss_mb, c, g)), None

                zero = jax.tree.map(
                    jnp.zeros_like,
                    jax.eval_shape(grad_fn, params, jax.tree.map(lambda x: x[0], split)),
                )
                xs = split if step_key is None else (split, jnp.arange(n_micro, dtype=jnp.int32))
                (loss_sum, counters, grads), _ = jax.lax.scan(
                    body, (zero[0][0], zero[0][1], zero[1]), xs
                )
            tokens = jnp.maximum(counters["tokens"], 1.0)
            grads = jax.tree.map(lambda g: g / tokens, grads)
            updates, opt_state = tx.update(grads, state["opt_state"], params)
            params = optax.apply_updates(params, updates)
            metrics = {
                "loss": loss_sum / tokens,
                "lr": schedule(state["step"]),
                "grad_norm": optax.global_norm(grads),
                "loss_tokens": counters["tokens"],
            }
            if objective == "verifier":
                metrics["last_token_accuracy"] = counters["last_correct"] / jnp.maximum(
                    counters["last_count"], 1.0
                )
            if lm_weight or rank_weight:
                metrics["value_loss"] = counters["value_loss_sum"] / tokens
            if lm_weight:
                metrics["lm_loss"] = counters["lm_loss_sum"] / tokens
            if rank_weight:
                count = counters["rank_count"]
                metrics["rank_loss"] = counters["rank_loss_sum"] / jnp.maximum(count, 1.0)
                metrics["rank_count"] = count
            return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}, metrics

    step_fn = jax.jit(
        train_step,
        in_shardings=(state_shardings, {k: batch_sharding for k in abstract_batch}),
        out_shardings=(state_shardings, replicated),
        donate_argnums=(0,),
    )

    def init_state(seed: jax.Array) -> dict:
        with sharding.use_mesh(mesh):
            params = nnx.to_pure_dict(
                nnx.state(Phi(cfg, rngs=nnx.Rngs(jax.random.key(seed))), nnx.Param)
            )
            return {
                "params": params,
                "opt_state": tx.init(params),
                "step": jnp.zeros((), jnp.int32),
            }

    init_fn = jax.jit(init_state, out_shardings=state_shardings)
    return Trainer(
        config,
        mesh,
        cfg,
        objective,
        tx,
        schedule,
        graphdef,
        state_shardings,
        batch_sharding,
        abstract_state,
        abstract_batch,
        step_fn,
        init_fn,
    )


def build_train_step(config: ConfigDict, mesh: Mesh) -> tuple[Callable, tuple]:
    """(jitted step fn, abstract args) such that fn.lower(*abstract_args).compile() is the real train step."""
    t = make_trainer(config, mesh)
    return t.step_fn, (t.abstract_state, t.abstract_batch)
