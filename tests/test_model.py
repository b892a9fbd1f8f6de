"""The Phi model itself: the KV-cache path equals the full forward (with left padding), packed
segments never attend across documents, parameter counts of the shipped configs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tinygsm_jax.model import ModelConfig, Phi, count_params, init_cache

# Odd sizes on purpose: 4 heads of 12, rotary on 6 of the 12 dims, MLP 72, vocab 61.
CFG = ModelConfig(
    vocab_size=61, d_model=48, n_layers=2, n_heads=4, d_mlp=72, rotary_dim=6, max_len=64
)
TOL = 1e-5


def _model(cfg: ModelConfig = CFG, seed: int = 0) -> Phi:
    """A random model with every parameter perturbed (LayerNorms and biases are not 1 and 0)."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Phi(cfg, rngs=nnx.Rngs(0))))
    leaves, tree = jax.tree.flatten(state)
    rng = np.random.RandomState(seed)
    leaves = [jnp.asarray(0.1 * rng.standard_normal(x.shape), jnp.float32) for x in leaves]
    return nnx.merge(graphdef, jax.tree.unflatten(tree, leaves))


def _with_config(model: Jitted, cfg: ModelConfig) -> Jitted:
    """The same weights under another (compatible) config: remat or compute dtype."""
    graphdef = nnx.split(nnx.eval_shape(lambda: Phi(cfg, rngs=nnx.Rngs(0))))[0]
    return Jitted(nnx.merge(graphdef, model.state))


class Jitted:
    """Calls a model through one `jax.jit` over its state (eager NNX dispatch is slow on CPU)."""

    def __init__(self, model: Phi):
        self.cfg = model.cfg
        self.graphdef, self.state = nnx.split(model)
        self._fn = jax.jit(lambda state, *a, **kw: nnx.merge(self.graphdef, state)(*a, **kw))

    def __call__(self, *args, **kwargs):
        return self._fn(self.state, *args, **kwargs)


@pytest.fixture(scope="module")
def model() -> Jitted:
    return Jitted(_model(CFG))


@pytest.fixture(scope="module")
def verifier() -> Jitted:
    return Jitted(_model(CFG.replace(head="value")))


def _tokens(shape, seed=0) -> jax.Array:
    return jnp.asarray(np.random.RandomState(seed).randint(1, CFG.vocab_size, size=shape))


@pytest.mark.parametrize("head", ["lm", "value"])
def test_kv_cache_matches_full_forward(head, model, verifier):
    """Prefill 5 tokens, then decode 7 one at a time: every output equals the full forward's."""
    model = model if head == "lm" else verifier
    B, T, P = 2, 12, 5
    tokens = _tokens((B, T))
    full = np.asarray(model(tokens))
    cache = init_cache(model.cfg, B, 16)
    pos = jnp.broadcast_to(jnp.arange(T), (B, T))
    seg = jnp.ones((B, T), jnp.int32)
    out, cache = model(tokens[:, :P], pos[:, :P], seg[:, :P], cache=cache)
    steps = [np.asarray(out)]
    for t in range(P, T):
        out, cache = model(tokens[:, t : t + 1], pos[:, t : t + 1], seg[:, t : t + 1], cache=cache)
        steps.append(np.asarray(out))
    assert int(cache["index"]) == T
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=TOL, rtol=0)


def test_kv_cache_left_padding(model):
    """Left-padded prompts (segment id 0) decode exactly as each prompt alone."""
    lengths, T_new, S = [4, 7], 5, 16
    width = max(lengths)
    seqs = [np.asarray(_tokens((1, n + T_new), seed=10 + i))[0] for i, n in enumerate(lengths)]
    prompts = np.zeros((2, width), np.int32)
    seg = np.zeros((2, width), np.int32)
    pos = np.zeros((2, width), np.int32)
    for i, n in enumerate(lengths):
        prompts[i, width - n :] = seqs[i][:n]
        seg[i, width - n :] = 1
        pos[i, width - n :] = np.arange(n)
    cache = init_cache(model.cfg, 2, S)
    out, cache = model(jnp.asarray(prompts), jnp.asarray(pos), jnp.asarray(seg), cache=cache)
    got = [[np.asarray(out)[i, -1]] for i in range(2)]  # the prediction after each prompt
    ones = jnp.ones((2, 1), jnp.int32)
    for t in range(T_new - 1):
        step = jnp.asarray([[seqs[i][n + t]] for i, n in enumerate(lengths)])
        p = jnp.asarray([[n + t] for n in lengths])
        out, cache = model(step, p, ones, cache=cache)
        for i in range(2):
            got[i].append(np.asarray(out)[i, 0])
    # Each sequence alone, unpadded, in one batch: right padding is invisible to a causal model.
    alone = np.zeros((2, width + T_new - 1), np.int32)
    for i, n in enumerate(lengths):
        alone[i, : n + T_new - 1] = seqs[i][: n + T_new - 1]
    alone = np.asarray(model(jnp.asarray(alone)))
    full = np.asarray(model(jnp.asarray(prompts), jnp.asarray(pos), jnp.asarray(seg)))
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(
            np.stack(got[i]), alone[i, n - 1 : n + T_new - 1], atol=TOL, rtol=0
        )
        # The full (cacheless) forward with the same left padding agrees too.
        np.testing.assert_allclose(full[i, width - n :], alone[i, :n], atol=TOL, rtol=0)


@pytest.mark.parametrize("per_layer", [False, True], ids=["stacked", "per_layer"])
def test_shared_prompt_decoding_matches_full_forward(model, per_layer):
    """`decode_shared`: n samples per left-padded prompt over one shared prompt cache and a
    generated cache in blocks (some not yet written) give each sample's full-forward logits,
    in both layouts: stacked caches under the layer scan, where the caller writes the new
    (k, v), and one array per layer (unrolled), where each layer writes its own."""
    lengths, n, T_new, C = [3, 6], 3, 7, 4
    width = max(lengths)
    rng = np.random.RandomState(5)
    prompts = np.zeros((2, width), np.int32)
    seg = np.zeros((2, width), np.int32)
    pos = np.zeros((2, width), np.int32)
    for i, L in enumerate(lengths):
        prompts[i, width - L :] = rng.randint(1, CFG.vocab_size, L)
        seg[i, width - L :] = 1
        pos[i, width - L :] = np.arange(L)
    new = rng.randint(1, CFG.vocab_size, (2 * n, T_new))  # each sample its own continuation
    _, cache = model(
        jnp.asarray(prompts), jnp.asarray(pos), jnp.asarray(seg), cache=init_cache(CFG, 2, width)
    )
    prefix = {"k": cache["k"], "v": cache["v"], "mask": cache["segment_ids"] != 0}
    L, shape = CFG.n_layers, (2 * n, CFG.n_heads, C, CFG.head_dim)
    if per_layer:
        prefix |= {name: tuple(prefix[name][i] for i in range(L)) for name in ("k", "v")}
        empty = lambda: tuple(jnp.zeros(shape) for _ in range(L))  # noqa: E731
    else:
        empty = lambda: jnp.zeros((L, *shape))  # noqa: E731
    blocks = [{"k": empty(), "v": empty()} for _ in range(-(-T_new // C))]

    def decode(st, tok, p, blk, t):
        m = nnx.merge(model.graphdef, st)
        return m.decode_shared(tok, p, prefix, blk, t, m.layer_params() if per_layer else None)

    step = jax.jit(decode)
    got = []
    for t in range(T_new):
        j = t // C
        p = np.repeat(np.asarray(lengths), n)[:, None] + t
        out, kv = step(
            model.state, jnp.asarray(new[:, t : t + 1]), jnp.asarray(p), tuple(blocks[: j + 1]), t
        )
        got.append(np.asarray(out)[:, 0])
        if per_layer:  # the blocks come back, block j holding this token's (k, v)
            blocks[: j + 1] = kv
        else:
            for name, x in zip(("k", "v"), kv):
                blocks[j][name] = blocks[j][name].at[:, :, :, t % C].set(x)
    for i, L in enumerate(lengths):
        for s in range(n):
            row = i * n + s
            seq = np.concatenate([prompts[i, width - L :], new[row]])[None]
            full = np.asarray(model(jnp.asarray(seq)))[0, L:]
            np.testing.assert_allclose(np.stack(got)[:, row], full, atol=TOL, rtol=0)


def test_packed_segments_do_not_attend_across_documents(model):
    """A document packed after another gives the same outputs as that document alone."""
    a, b = _tokens((1, 5), seed=1), _tokens((1, 7), seed=2)
    packed = jnp.concatenate([a, b, jnp.zeros((1, 3), jnp.int32)], axis=1)  # + 3 padding slots
    seg = jnp.asarray([[1] * 5 + [2] * 7 + [0] * 3])
    pos = jnp.asarray([list(range(5)) + list(range(7)) + [0] * 3])
    out = np.asarray(model(packed, pos, seg))
    np.testing.assert_allclose(out[:, :5], np.asarray(model(a)), atol=TOL, rtol=0)
    np.testing.assert_allclose(out[:, 5:12], np.asarray(model(b)), atol=TOL, rtol=0)
    # Without the segment ids, the second document does see the first (the test can fail).
    mixed = np.asarray(model(packed, pos))
    assert np.abs(mixed[:, 5:12] - np.asarray(model(b))).max() > 1e-3


def test_remat_and_jit_agree(model):
    tokens = _tokens((2, 9))
    ref = np.asarray(model(tokens))
    remat = _with_config(model, model.cfg.replace(remat=True))
    np.testing.assert_allclose(np.asarray(remat(tokens)), ref, atol=TOL, rtol=0)


def test_bfloat16_compute_is_close(model):
    tokens = _tokens((2, 9))
    ref = np.asarray(model(tokens))
    out = np.asarray(_with_config(model, model.cfg.replace(dtype="bfloat16"))(tokens))
    assert out.dtype == np.float32
    assert 0 < np.abs(out - ref).max() < 0.05 * max(1.0, np.abs(ref).max())


def test_phi15_param_count():
    from tinygsm_jax.config import load_config_file

    assert count_params(ModelConfig.from_config(load_config_file("phi1_5").model)) == 1_418_270_720
    tiny = ModelConfig.from_config(load_config_file("tiny").model)
    assert 1_000_000 < count_params(tiny) < 20_000_000


def test_config_validation():
    with pytest.raises(ValueError, match="rotary_dim"):
        CFG.replace(rotary_dim=5)
    with pytest.raises(ValueError, match="divisible"):
        CFG.replace(n_heads=5)
    with pytest.raises(ValueError, match="head"):
        CFG.replace(head="classifier")
    with pytest.raises(ValueError, match="scan_unroll"):
        CFG.replace(scan_unroll=CFG.n_layers + 1)


def test_scan_unroll_follows_the_platform_unless_set():
    """The "auto" setting unrolls every layer on CPU and none on accelerators; a command-line
    value (a string) is a number of layers."""
    base = {**CFG.to_dict(), "scan_unroll": "auto"}
    assert ModelConfig.from_config(base).scan_unroll == CFG.n_layers  # tests run on CPU
    assert ModelConfig.from_config({**base, "scan_unroll": "1"}).scan_unroll == 1
    tpu = ModelConfig.from_config({**base, "dtype": "auto"}, platform="tpu")  # AOT, on a CPU
    assert (tpu.scan_unroll, tpu.dtype) == (1, "bfloat16")
    with pytest.raises(ValueError, match="number of layers"):
        ModelConfig.from_config({**base, "scan_unroll": "all"})
    assert CFG.for_platform("tpu").scan_unroll == 1
    assert CFG.for_platform("cpu").scan_unroll == CFG.n_layers


def test_unrolled_layers_compute_what_the_scan_does(model):
    """Unrolling is how the program runs, not what it computes: same logits and gradients."""
    tokens = jnp.asarray(np.random.RandomState(0).randint(1, CFG.vocab_size, (2, 9)))
    graphdef, state = nnx.split(nnx.merge(model.graphdef, model.state))
    out = {}
    for unroll in (1, CFG.n_layers):
        m = nnx.merge(graphdef, state)
        m.cfg = CFG.replace(scan_unroll=unroll)
        g = nnx.grad(lambda m: jnp.sum(m(tokens) ** 2))(m)
        out[unroll] = (np.asarray(m(tokens)), nnx.to_pure_dict(g))
    np.testing.assert_allclose(out[1][0], out[CFG.n_layers][0], atol=1e-5, rtol=0)
    for a, b in zip(jax.tree.leaves(out[1][1]), jax.tree.leaves(out[CFG.n_layers][1])):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------- dropout
def _plain_forward(model: Phi, *args, **kw):
    graphdef, state = nnx.split(model)
    return jax.jit(lambda s, *a, **k: nnx.merge(graphdef, s)(*a, **k))(state, *args, **kw)


@pytest.mark.parametrize("head", ["lm", "value"])
def test_dropout_is_off_without_a_key_and_changes_training_forwards(head):
    """Rate 0.2, no key (sampling, scoring): the rate-0 outputs bit for bit; with a key the
    output changes, the same key gives the same masks and another key other ones."""
    cfg = CFG.replace(head=head)
    plain, dropped = _model(cfg), _model(cfg.replace(dropout=0.2))
    tokens = _tokens((2, 10))
    want = np.asarray(_plain_forward(plain, tokens))
    np.testing.assert_array_equal(np.asarray(_plain_forward(dropped, tokens)), want)
    # the cached (decoding) path too
    pos = jnp.broadcast_to(jnp.arange(10), (2, 10))
    seg = jnp.ones((2, 10), jnp.int32)
    out, _ = _plain_forward(dropped, tokens, pos, seg, cache=init_cache(cfg, 2, 12))
    np.testing.assert_allclose(np.asarray(out), want, atol=TOL, rtol=0)

    key = jax.random.key(7)
    a = np.asarray(_plain_forward(dropped, tokens, dropout_rng=key))
    b = np.asarray(_plain_forward(dropped, tokens, dropout_rng=key))
    c = np.asarray(_plain_forward(dropped, tokens, dropout_rng=jax.random.key(8)))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - want).max() > 1e-3 and np.abs(a - c).max() > 1e-3


def test_dropout_rate_zero_adds_no_op_even_with_a_key():
    model = _model(CFG)
    tokens = _tokens((2, 10))
    graphdef, state = nnx.split(model)

    def run(s, **kw):
        return nnx.merge(graphdef, s)(tokens, **kw)

    with_key = jax.make_jaxpr(lambda s: run(s, dropout_rng=jax.random.key(1)))(state)
    without = jax.make_jaxpr(lambda s: run(s))(state)
    assert "random_bits" not in str(with_key) and "random_bits" not in str(without)
    assert str(with_key).count("dot_general") == str(without).count("dot_general")
    g2, s2 = nnx.split(_model(CFG.replace(dropout=0.1)))
    dropped = jax.make_jaxpr(lambda s: nnx.merge(g2, s)(tokens, dropout_rng=jax.random.key(1)))(s2)
    assert "random_bits" in str(dropped)  # what the assertions above look for
    np.testing.assert_array_equal(
        np.asarray(_plain_forward(model, tokens, dropout_rng=jax.random.key(1))),
        np.asarray(_plain_forward(model, tokens)),
    )


def test_dropout_zeroes_the_rate_and_keeps_the_mean():
    from tinygsm_jax.model import dropout

    x = jnp.ones((200, 500), jnp.float32)
    y = np.asarray(dropout(x, 0.2, jax.random.key(0)))
    assert abs((y == 0).mean() - 0.2) < 0.01
    np.testing.assert_allclose(y[y != 0], 1.25, rtol=1e-6)
    assert abs(y.mean() - 1.0) < 0.02


def test_dropout_is_refused_in_a_cached_forward_and_out_of_range():
    dropped = _model(CFG.replace(dropout=0.1))
    with pytest.raises(ValueError, match="dropout is for training"):
        dropped.hidden(_tokens((1, 4)), cache=init_cache(CFG, 1, 8), dropout_rng=jax.random.key(0))
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="model.dropout"):
            CFG.replace(dropout=bad)
