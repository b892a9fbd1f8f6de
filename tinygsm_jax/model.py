"""The Phi transformer (Phi-1, Phi-1.5, Phi-2) in Flax NNX, as a generator or a verifier.

Architecture, as in Hugging Face's `PhiForCausalLM`: token embedding; per layer one shared
LayerNorm feeding attention and MLP in parallel, ``x + attn(ln(x)) + mlp(ln(x))``; partial
rotary embeddings (the first `rotary_dim` dims of each head, rotate-half layout); biases on
every projection; gelu_new (tanh approximation); a final LayerNorm; an untied LM head with
bias. `head="value"` swaps the LM head for one scalar per position (the verifier, HF's
`PhiForTokenClassification` with one label); with `keep_lm_head` the verifier keeps the LM
head beside it, for Cobbe et al.'s joint objective (value loss plus language modelling).

Layer weights are stacked along a leading `layers` axis and the blocks run under
`jax.lax.scan`: compile time stays flat in depth (the 1.3B model compiles for a TPU pod in
seconds), and rematerialisation is one `jax.checkpoint` around the block function. On CPU
the scan is unrolled (`scan_unroll`): the rolled loop stacks every layer's residuals into
buffers it must fill with zeros and then copy into, which the unrolled program does not
(1.13x per train step at the 6.8M shape; docs/benchmarking.md).

Parameters are float32 `nnx.Param`s tagged with logical axis names in their `axes`
metadata (`vocab`, `embed`, `heads`, `kv`, `mlp`, `layers`); `tinygsm_jax.sharding` maps
those names to mesh axes. Compute runs in `ModelConfig.dtype` (bfloat16 on accelerators).

One forward serves training and decoding. Attention is allowed from a query to a key when
the key is not in the future, both carry the same segment id, and the id is not 0
(padding). Training passes packed `segment_ids`; decoding passes a KV cache (`init_cache`)
whose slots remember their segment ids, so left-padded prompts need no special case.
Best-of-N sampling has its own decoding step, `Phi.decode_shared`: the N samples of a prompt
share one copy of the prompt's cache.

Dropout (`ModelConfig.dropout`, Phi's resid_pdrop/embd_pdrop) runs only in a training forward
that is handed a `dropout_rng`; decoding, scoring and export never pass one.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from tinygsm_jax.sharding import constrain

HEADS = ("lm", "value")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The model's shape and numerics; hashable so jitted functions can close over it."""

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_mlp: int
    rotary_dim: int
    max_len: int
    head: str = "lm"
    layer_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    dtype: str = "float32"
    remat: bool = False
    keep_lm_head: bool = False  # a verifier that also has the LM head (the joint objective)
    # Layers per iteration of the layer scan: 1 on accelerators (compile time flat in depth),
    # n_layers on CPU (faster steps); how the program runs, not what it computes.
    scan_unroll: int = 1
    # Phi's resid_pdrop = embd_pdrop: dropout on the embedding output and on each block's
    # attention and MLP outputs, applied only when the forward is given a `dropout_rng`
    # (training); 0 leaves the dropout code out of the program entirely.
    dropout: float = 0.0

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"model.head must be one of {HEADS}, got {self.head!r}")
        if self.keep_lm_head and self.head != "value":
            raise ValueError("model.keep_lm_head is for a verifier (head=value)")
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_mlp", "max_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"model.d_model {self.d_model} is not divisible by n_heads {self.n_heads}"
            )
        if self.rotary_dim % 2 or not 0 <= self.rotary_dim <= self.head_dim:
            raise ValueError(
                f"model.rotary_dim must be even and at most the head dim {self.head_dim}, got {self.rotary_dim}"
            )
        if not 1 <= self.scan_unroll <= self.n_layers:
            raise ValueError(
                f"model.scan_unroll must be between 1 and n_layers {self.n_layers}, got {self.scan_unroll}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(
                f"model.dtype must be float32, bfloat16 or float16, got {self.dtype!r}"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    @classmethod
    def from_config(
        cls, model_cfg: Any, *, platform: str | None = None, **overrides: Any
    ) -> ModelConfig:
        """Build from a `config.model` ConfigDict (or dict); "auto" dtype and scan_unroll
        follow `platform` (cpu, tpu, gpu; default: the default backend)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in dict(model_cfg).items() if k in fields}
        values.update(overrides)
        platform = platform or jax.default_backend()
        if values.get("dtype", "auto") == "auto":
            values["dtype"] = "float32" if platform == "cpu" else "bfloat16"
        unroll = values.get("scan_unroll", "auto")
        if unroll == "auto":
            values["scan_unroll"] = scan_unroll_for(platform, int(values["n_layers"]))
        elif not isinstance(unroll, int):  # a command-line override arrives as a string
            try:
                values["scan_unroll"] = int(unroll)
            except ValueError:
                raise ValueError(
                    f'model.scan_unroll must be "auto" or a number of layers, got {unroll!r}'
                ) from None
        return cls(**values)

    def for_platform(self, platform: str) -> ModelConfig:
        """The same model, its layer scan unrolled as suits `platform` (cpu, tpu, gpu)."""
        return self.replace(scan_unroll=scan_unroll_for(platform, self.n_layers))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


def scan_unroll_for(platform: str, n_layers: int) -> int:
    """All layers unrolled on CPU (measured faster); one per iteration elsewhere."""
    return n_layers if platform == "cpu" else 1


def count_params(cfg: ModelConfig) -> int:
    """Parameter count from shapes alone (no allocation): 1,418,270,720 for Phi-1.5."""
    shapes = jax.eval_shape(lambda: nnx.state(Phi(cfg, rngs=nnx.Rngs(0)), nnx.Param))
    return sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6N plus attention (the PaLM appendix B convention).

    N counts every matmul weight (the embedding lookup is a gather, so it is left out; the LM
    head is in). Attention scores and the weighted sum add 12 * n_layers * d_model * seq_len
    (forward 2 matmuls x 2 FLOPs, backward twice that); the causal half is not discounted.
    """
    n = count_params(cfg) - cfg.vocab_size * cfg.d_model
    return 6.0 * n + 12.0 * cfg.n_layers * cfg.d_model * seq_len


def _param(rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple, init: str = "normal") -> nnx.Param:
    if init == "normal":
        value = 0.02 * jax.random.normal(rngs.params(), shape, jnp.float32)
    elif init == "ones":
        value = jnp.ones(shape, jnp.float32)
    else:
        value = jnp.zeros(shape, jnp.float32)
    return nnx.Param(value, axes=axes)


class Blocks(nnx.Module):
    """All transformer layers, their weights stacked on a leading `layers` axis."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        L, D, H, K, M = cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.d_mlp
        self.ln_scale = _param(rngs, (L, D), ("layers", "embed"), "ones")
        self.ln_bias = _param(rngs, (L, D), ("layers", "embed"), "zeros")
        for name in ("q", "k", "v"):
            setattr(
                self,
                f"{name}_kernel",
                _param(rngs, (L, D, H, K), ("layers", "embed", "heads", "kv")),
            )
            setattr(
                self, f"{name}_bias", _param(rngs, (L, H, K), ("layers", "heads", "kv"), "zeros")
            )
        self.o_kernel = _param(rngs, (L, H, K, D), ("layers", "heads", "kv", "embed"))
        self.o_bias = _param(rngs, (L, D), ("layers", "embed"), "zeros")
        self.fc1_kernel = _param(rngs, (L, D, M), ("layers", "embed", "mlp"))
        self.fc1_bias = _param(rngs, (L, M), ("layers", "mlp"), "zeros")
        self.fc2_kernel = _param(rngs, (L, M, D), ("layers", "mlp", "embed"))
        self.fc2_bias = _param(rngs, (L, D), ("layers", "embed"), "zeros")

    def stacked(self) -> dict[str, jax.Array]:
        return {k: v.value for k, v in vars(self).items() if isinstance(v, nnx.Param)}


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
    """LayerNorm computed in float32, returned in x's dtype."""
    xf = x.astype(jnp.float32)
    mean = xf.mean(-1, keepdims=True)
    var = jnp.square(xf - mean).mean(-1, keepdims=True)
    y = (xf - mean) * jax.lax.rsqrt(var + eps) * scale + bias
    return y.astype(x.dtype)


def rotary_tables(
    positions: jax.Array, rotary_dim: int, theta: float
) -> tuple[jax.Array, jax.Array]:
    """cos and sin, [B, T, rotary_dim], in the rotate-half layout HF's Phi uses."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, rotary_dim, 2, dtype=jnp.float32) / rotary_dim))
    freqs = positions.astype(jnp.float32)[..., None] * inv_freq
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate the first rotary_dim features of each head. x: [B, T, H, K]."""
    rot = cos.shape[-1]
    if rot == 0:
        return x
    xr, xp = x[..., :rot].astype(jnp.float32), x[..., rot:]
    x1, x2 = jnp.split(xr, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    c, s = cos[:, :, None, :], sin[:, :, None, :]
    out = (xr * c + rotated * s).astype(x.dtype)
    return jnp.concatenate([out, xp], axis=-1)


def _attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """q: [B,T,H,K]; k, v: [B,S,H,K]; mask: [B,T,S] bool. Softmax in float32."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    logits = jnp.einsum("bthk,bshk->bhts", q, k).astype(jnp.float32) * scale
    logits = jnp.where(mask[:, None], logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bhts,bshk->bthk", probs, v)


def _attention_cached(q, k, v, k_old, v_old, mask_old, mask):
    """Attention over the cache's old slots and the T new positions, without writing the cache.

    q, k, v: [B,T,H,K] (new); k_old, v_old: [B,H,S,K] (heads before slots, so each head's keys
    are one contiguous [S,K] matrix: a decode step is a batch of matrix-vector products with no
    transpose of the cache); mask_old [B,T,S]; mask [B,T,T]. The cache is only read here; the
    caller writes the new keys once for all layers after the layer scan (writing them inside the
    scan, with the cache as scan input and output, copied the whole cache on every decode step:
    2-3x slower per step on CPU).
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    neg = jnp.finfo(jnp.float32).min
    S = k_old.shape[2]
    lo = jnp.einsum("bthk,bhsk->bhts", q, k_old, preferred_element_type=jnp.float32) * scale
    ln = jnp.einsum("bthk,bshk->bhts", q, k, preferred_element_type=jnp.float32) * scale
    lo = jnp.where(mask_old[:, None], lo, neg)
    ln = jnp.where(mask[:, None], ln, neg)
    probs = jax.nn.softmax(jnp.concatenate([lo, ln], axis=-1), axis=-1).astype(v.dtype)
    out = jnp.einsum("bhts,bhsk->bthk", probs[..., :S], v_old)
    return out + jnp.einsum("bhts,bshk->bthk", probs[..., S:], v)


def dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
    """Inverted dropout: zero each element with probability `rate`, scale the rest by 1/(1-rate)."""
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros((), x.dtype))


def _block(cfg: ModelConfig, p: dict, x: jax.Array, cos, sin, attend, drop_key=None):
    """One Phi layer; `attend(q, k, v)` ([B,T,H,K] each, rotary applied) is its attention, which
    differs between training (a mask), cached decoding and shared-prompt decoding. Returns the
    layer output and the new positions' (k, v) for the caller to write into a cache. With
    `drop_key`, the attention and MLP outputs get dropout (`cfg.dropout`) before the residual
    sum, as Phi's resid_dropout."""
    dt = cfg.compute_dtype
    h = layer_norm(x, p["ln_scale"], p["ln_bias"], cfg.layer_norm_eps)
    q, k, v = (
        jnp.einsum("btd,dhk->bthk", h, p[f"{n}_kernel"].astype(dt)) + p[f"{n}_bias"].astype(dt)
        for n in ("q", "k", "v")
    )
    q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    attn = attend(q, k, v)
    attn = jnp.einsum("bthk,hkd->btd", attn, p["o_kernel"].astype(dt)) + p["o_bias"].astype(dt)
    m = jnp.einsum("btd,dm->btm", h, p["fc1_kernel"].astype(dt)) + p["fc1_bias"].astype(dt)
    m = constrain(jax.nn.gelu(m, approximate=True), ("batch", "length", "mlp"))
    m = jnp.einsum("btm,md->btd", m, p["fc2_kernel"].astype(dt)) + p["fc2_bias"].astype(dt)
    if drop_key is not None:
        k_attn, k_mlp = jax.random.split(drop_key)
        attn, m = dropout(attn, cfg.dropout, k_attn), dropout(m, cfg.dropout, k_mlp)
    out = constrain(x + attn + m, ("batch", "length", "embed"))
    return out, (k, v)


def _attention_shared(q, k, v, prefix_k, prefix_v, prefix_mask, blocks, written):
    """One new token per sample attending to its prompt, its own earlier tokens and itself.

    q, k, v: [Q*n,1,H,K], the n samples of each prompt adjacent. prefix_k, prefix_v: [Q,H,P,K],
    the prompt's cache, stored once per prompt (not n times): for each prompt and head, the n
    samples' queries meet the prompt's keys in one [n,K]x[K,P] matrix product instead of n
    matrix-vector products over n copies. prefix_mask: [Q,P] (False at padding). blocks: the
    generated-token cache as a tuple of (k, v) [Q*n,H,C,K] blocks; the caller passes only the
    blocks that can hold written slots, so unwritten ones are never read. written: how many
    generated slots (counted over the blocks) hold earlier tokens. With k = v = None the new
    token is already written to its slot (the `written`-th, counted in), not attended apart.
    """
    Q, P = prefix_mask.shape
    B, _, H, K = q.shape
    n = B // Q
    scale = 1.0 / math.sqrt(K)
    neg = jnp.finfo(jnp.float32).min
    f32 = jnp.float32
    qn = q.reshape(Q, n, H, K)
    lp = jnp.einsum("qnhk,qhpk->qhnp", qn, prefix_k, preferred_element_type=f32) * scale
    lp = jnp.where(prefix_mask[:, None, None, :], lp, neg)
    lp = jnp.swapaxes(lp, 1, 2).reshape(B, H, P)
    q1 = q[:, 0]
    parts = [lp]
    for j, (bk, _) in enumerate(blocks):
        C = bk.shape[2]
        lb = jnp.einsum("bhk,bhck->bhc", q1, bk, preferred_element_type=f32) * scale
        parts.append(jnp.where((j * C + jnp.arange(C)) < written, lb, neg))
    if k is not None:
        parts.append(
            jnp.einsum("bhk,bhk->bh", q1, k[:, 0], preferred_element_type=f32)[..., None] * scale
        )
    probs = jax.nn.softmax(jnp.concatenate(parts, axis=-1), axis=-1).astype(prefix_v.dtype)
    pp = jnp.swapaxes(probs[..., :P].reshape(Q, n, H, P), 1, 2)
    out = jnp.swapaxes(jnp.einsum("qhnp,qhpk->qhnk", pp, prefix_v), 1, 2).reshape(B, H, K)
    at = P
    for _, bv in blocks:
        C = bv.shape[2]
        out = out + jnp.einsum("bhc,bhck->bhk", probs[..., at : at + C], bv)
        at += C
    if v is not None:
        out = out + probs[..., at, None] * v[:, 0]
    return out[:, None]


def init_cache(
    cfg: ModelConfig, batch: int, length: int, dtype: Any = None
) -> dict[str, jax.Array]:
    """An empty KV cache of `length` slots: k, v [layers, B, heads, S, head_dim].

    Heads come before slots so that each head's keys are one contiguous [S, head_dim] matrix:
    a decode step then reads the cache once, with no transpose (1.4-2x faster per step on CPU
    than [layers, B, S, heads, head_dim] at 48-192 rows, benchmarks/sampler.py).
    """
    dtype = dtype or cfg.compute_dtype
    shape = (cfg.n_layers, batch, cfg.n_heads, length, cfg.head_dim)
    return {
        "k": jnp.zeros(shape, dtype),
        "v": jnp.zeros(shape, dtype),
        "segment_ids": jnp.zeros((batch, length), jnp.int32),
        "index": jnp.zeros((), jnp.int32),
    }


class Phi(nnx.Module):
    """Phi as a generator (`head="lm"`: logits) or a verifier (`head="value"`: a score per token)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        D, V = cfg.d_model, cfg.vocab_size
        self.embed = _param(rngs, (V, D), ("vocab", "embed"))
        self.blocks = Blocks(cfg, rngs=rngs)
        self.final_ln_scale = _param(rngs, (D,), ("embed",), "ones")
        self.final_ln_bias = _param(rngs, (D,), ("embed",), "zeros")
        if cfg.head == "lm" or cfg.keep_lm_head:
            self.lm_head_kernel = _param(rngs, (D, V), ("embed", "vocab"))
            self.lm_head_bias = _param(rngs, (V,), ("vocab",), "zeros")
        if cfg.head == "value":
            self.value_kernel = _param(rngs, (D,), ("embed",))
            self.value_bias = _param(rngs, (), (), "zeros")

    def hidden(
        self,
        tokens: jax.Array,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        cache: dict[str, jax.Array] | None = None,
        *,
        dropout_rng: jax.Array | None = None,
    ) -> tuple[jax.Array, dict[str, jax.Array] | None]:
        """Final-LayerNorm hidden states [B, T, D] (and the updated cache when one is given).

        `dropout_rng` (a PRNG key) turns on `cfg.dropout` for a training forward: the embedding
        output takes one key folded from it, layer i another (folded in by its index, inside
        the layer scan). Without it, or at rate 0, the forward has no dropout op at all.
        """
        cfg = self.cfg
        drop = dropout_rng is not None and cfg.dropout > 0
        if drop and cache is not None:
            raise ValueError(
                "dropout is for training; a cached (decoding) forward takes no dropout_rng"
            )
        B, T = tokens.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
        if segment_ids is None:
            segment_ids = jnp.ones((B, T), jnp.int32)
        x = self.embed.value.astype(cfg.compute_dtype)[tokens]
        if drop:
            embed_key, layers_key = jax.random.split(dropout_rng)
            x = dropout(x, cfg.dropout, embed_key)
        x = constrain(x, ("batch", "length", "embed"))
        cos, sin = rotary_tables(positions, cfg.rotary_dim, cfg.rope_theta)
        params = self.blocks.stacked()

        if cache is None:
            causal = jnp.tril(jnp.ones((T, T), bool))
            same = segment_ids[:, :, None] == segment_ids[:, None, :]
            mask = causal[None] & same & (segment_ids[:, None, :] != 0)

            def attend(q, k, v):
                return _attention(q, k, v, mask)

            if drop:

                def layer(h, xs):
                    p, i = xs
                    key = jax.random.fold_in(layers_key, i)
                    return _block(cfg, p, h, cos, sin, attend, key)[0], None

                xs = (params, jnp.arange(cfg.n_layers, dtype=jnp.int32))
            else:

                def layer(h, p):
                    return _block(cfg, p, h, cos, sin, attend)[0], None

                xs = params
            if cfg.remat:
                layer = jax.checkpoint(layer, policy=jax.checkpoint_policies.nothing_saveable)
            x, _ = jax.lax.scan(layer, x, xs, unroll=cfg.scan_unroll)
            new_cache = None
        else:
            index = cache["index"]
            S = cache["segment_ids"].shape[1]
            kv_seg = jax.lax.dynamic_update_slice_in_dim(
                cache["segment_ids"], segment_ids, index, axis=1
            )
            old = cache["segment_ids"]
            mask_old = (jnp.arange(S) < index)[None, None, :] & (
                old[:, None, :] == segment_ids[:, :, None]
            )
            mask_old = mask_old & (old[:, None, :] != 0)
            causal = jnp.tril(jnp.ones((T, T), bool))
            same = segment_ids[:, :, None] == segment_ids[:, None, :]
            mask_new = causal[None] & same & (segment_ids[:, None, :] != 0)

            def layer(h, xs):
                p, k_old, v_old = xs
                dt = cfg.compute_dtype

                def attend(q, k, v):
                    k_o, v_o = k_old.astype(dt), v_old.astype(dt)
                    return _attention_cached(q, k, v, k_o, v_o, mask_old, mask_new)

                return _block(cfg, p, h, cos, sin, attend)

            x, (k_new, v_new) = jax.lax.scan(
                layer, x, (params, cache["k"], cache["v"]), unroll=cfg.scan_unroll
            )
            at = (0, 0, 0, index, 0)
            k_new, v_new = (jnp.swapaxes(a, 2, 3) for a in (k_new, v_new))  # [L,B,H,T,K]
            ks = jax.lax.dynamic_update_slice(cache["k"], k_new.astype(cache["k"].dtype), at)
            vs = jax.lax.dynamic_update_slice(cache["v"], v_new.astype(cache["v"].dtype), at)
            new_cache = {"k": ks, "v": vs, "segment_ids": kv_seg, "index": index + T}
        x = layer_norm(x, self.final_ln_scale.value, self.final_ln_bias.value, cfg.layer_norm_eps)
        return x, new_cache

    def decode_shared(
        self,
        tokens: jax.Array,
        positions: jax.Array,
        prefix: dict[str, jax.Array],
        blocks: tuple[dict[str, Any], ...],
        written: jax.Array,
        layers: tuple[dict[str, jax.Array], ...] | None = None,
    ) -> tuple[jax.Array, Any]:
        """One decoding step for n samples per prompt that share the prompt's cache.

        tokens, positions: [Q*n, 1] (the n samples of a prompt adjacent). prefix: the prompts'
        cache from prefill, "k"/"v" [L,Q,H,P,K] and "mask" [Q,P]. blocks: the generated
        tokens' cache, "k"/"v" [L,Q*n,H,C,K] per block, `written` slots of them filled. Returns
        (output [Q*n,1,...], (k, v) [L,Q*n,H,K] of this token, for the caller to store).

        `layers` (from `layer_params`) selects the unrolled layout: the weights and every cache
        ("k"/"v" of prefix and blocks) are tuples of one array per layer. Each layer writes its
        new (k, v) into the last block's slot `written` before it attends, and the blocks come
        back updated instead of (k, v). Run once per step inside the decode loop, a scan
        slices each layer's weights and caches out of the stacked arrays, and on CPU those
        slices are copies (40% of a decode step's time); reading a block before writing it
        made XLA copy the block twice per step (another 15%).
        """
        cfg = self.cfg
        dt = cfg.compute_dtype
        x = constrain(self.embed.value.astype(dt)[tokens], ("batch", "length", "embed"))
        cos, sin = rotary_tables(positions, cfg.rotary_dim, cfg.rope_theta)

        def layer(h, xs):
            p, pk, pv, bkv = xs

            def attend(q, k, v):
                bl = tuple((bk.astype(dt), bv.astype(dt)) for bk, bv in bkv)
                pkv = (pk.astype(dt), pv.astype(dt))
                return _attention_shared(q, k, v, *pkv, prefix["mask"], bl, written)

            out, (k, v) = _block(cfg, p, h, cos, sin, attend)
            return out, (k[:, 0], v[:, 0])

        if layers is None:
            xs = (
                self.blocks.stacked(),
                prefix["k"],
                prefix["v"],
                tuple((b["k"], b["v"]) for b in blocks),
            )
            x, kv = jax.lax.scan(layer, x, xs, unroll=cfg.scan_unroll)
        else:
            C = blocks[-1]["k"][0].shape[2]
            at = (0, 0, written - (len(blocks) - 1) * C, 0)  # the last block's slot
            new = {name: [list(b[name]) for b in blocks] for name in ("k", "v")}
            for i, p in enumerate(layers):

                def attend(q, k, v, i=i):
                    for name, x_new in (("k", k), ("v", v)):
                        last = new[name][-1][i]
                        x_new = jnp.swapaxes(x_new, 1, 2).astype(last.dtype)  # [B,H,1,K]
                        new[name][-1][i] = jax.lax.dynamic_update_slice(last, x_new, at)
                    bl = tuple(
                        (bk[i].astype(dt), bv[i].astype(dt)) for bk, bv in zip(new["k"], new["v"])
                    )
                    pkv = (prefix["k"][i].astype(dt), prefix["v"][i].astype(dt))
                    return _attention_shared(q, None, None, *pkv, prefix["mask"], bl, written + 1)

                x, _ = _block(cfg, p, x, cos, sin, attend)
            kv = tuple(
                {name: tuple(new[name][j]) for name in ("k", "v")} for j in range(len(blocks))
            )
        x = layer_norm(x, self.final_ln_scale.value, self.final_ln_bias.value, cfg.layer_norm_eps)
        return self.head(x), kv

    def layer_params(self) -> tuple[dict[str, jax.Array], ...]:
        """Each layer's weights as arrays of their own, for `decode_shared`'s unrolled layout."""
        stacked = self.blocks.stacked()
        return tuple({k: v[i] for k, v in stacked.items()} for i in range(self.cfg.n_layers))

    def head(self, x: jax.Array) -> jax.Array:
        """Logits [B, T, V] (lm) or scores [B, T] (value), in float32."""
        dt = self.cfg.compute_dtype
        if self.cfg.head == "lm":
            return self.lm_logits(x)
        score = jnp.einsum("btd,d->bt", x, self.value_kernel.value.astype(dt))
        return score.astype(jnp.float32) + self.value_bias.value

    def lm_logits(self, x: jax.Array) -> jax.Array:
        """Next-token logits [B, T, V] in float32 from hidden states (a generator, or a verifier
        with `keep_lm_head`)."""
        dt = self.cfg.compute_dtype
        logits = jnp.einsum("btd,dv->btv", x, self.lm_head_kernel.value.astype(dt))
        logits = logits.astype(jnp.float32) + self.lm_head_bias.value
        return constrain(logits, ("batch", "length", "vocab"))

    def __call__(
        self,
        tokens: jax.Array,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        cache: dict[str, jax.Array] | None = None,
        *,
        dropout_rng: jax.Array | None = None,
    ):
        """tokens [B, T] -> logits/scores; with `cache`, returns (output, updated cache).
        `dropout_rng` turns on training dropout (`hidden`)."""
        x, new_cache = self.hidden(tokens, positions, segment_ids, cache, dropout_rng=dropout_rng)
        out = self.head(x)
        return out if cache is None else (out, new_cache)
