"""The train step: same losses on any mesh, accumulation = large batch, the verifier learns."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train_support import SMALL, synthetic_batch

from tinygsm_jax import sharding
from tinygsm_jax.config import load_config
from tinygsm_jax.train_step import (
    build_train_step,
    decay_mask,
    last_token_mask,
    lr_schedule,
    make_trainer,
)


def small_config(*extra: str):
    return load_config("tiny", SMALL + list(extra))


def run_steps(config, mesh, n_steps: int = 3) -> list[float]:
    t = make_trainer(config, mesh)
    state = t.init(0)
    losses = []
    for k in range(n_steps):
        b = synthetic_batch(0, k, t.global_batch, t.seq_len, 256, config.objective)
        state, m = t.step_fn(state, t.put_batch(b))
        losses.append(float(m["loss"]))
    return losses


def one_device():
    return sharding.make_mesh(devices=jax.devices()[:1])


@pytest.fixture(scope="module")
def reference_losses():
    return run_steps(small_config(), one_device())


@pytest.mark.parametrize("shape", [(2, 2, 2), (1, 8, 1)], ids=["2x2x2", "fsdp8"])
def test_same_losses_on_any_mesh(reference_losses, shape):
    assert len(jax.devices()) == 8
    losses = run_steps(small_config(), sharding.make_mesh(*shape))
    np.testing.assert_allclose(losses, reference_losses, rtol=2e-4)
    assert losses[-1] < losses[0]  # it trains


def test_gradient_accumulation_equals_large_batch(reference_losses):
    # micro-batches of 4 rows on a 2x2x2 mesh (data*fsdp = 4): two scan iterations per step,
    # run by the executable compiled from abstract arguments alone (what the AOT tool does)
    t = make_trainer(small_config("--config.train.micro_batch=4"), sharding.make_mesh(2, 2, 2))
    compiled = t.step_fn.lower(t.abstract_state, t.abstract_batch).compile()
    state, losses = t.init(0), []
    for k in range(3):
        state, m = compiled(state, t.put_batch(synthetic_batch(0, k, 8, 32, 256, "generator")))
        losses.append(float(m["loss"]))
    np.testing.assert_allclose(losses, reference_losses, rtol=2e-4)


def test_verifier_learns_a_separable_labelling():
    config = small_config(
        "--config.objective=verifier",
        "--config.model.head=value",
        "--config.train.steps=40",
        "--config.train.lr=3e-3",
        "--config.train.warmup_steps=5",
    )
    t = make_trainer(config, one_device())
    state = t.init(0)
    history = []
    for k in range(40):
        b = synthetic_batch(1, k, t.global_batch, t.seq_len, 256, "verifier")
        state, m = t.step_fn(state, t.put_batch(b))
        history.append((float(m["loss"]), float(m["last_token_accuracy"])))
    first_loss, last = history[0][0], history[-5:]
    assert first_loss > 0.6  # chance level is log 2 = 0.69
    assert all(loss < 0.1 for loss, _ in last), history[-5:]
    assert all(acc == 1.0 for _, acc in last), history[-5:]


def test_build_train_step_lowers_from_abstract_arguments():
    fn, args = build_train_step(
        small_config("--config.train.micro_batch=4"), sharding.make_mesh(2, 2, 2)
    )
    state, batch = args
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(args))
    assert batch["inputs"].shape == (8, 32) and set(state) == {"params", "opt_state", "step"}
    assert "while" in fn.lower(*args).as_text()  # the accumulation scan


def test_lr_schedule_warms_up_then_decays():
    tc = small_config(
        "--config.train.steps=10", "--config.train.warmup_steps=4", "--config.train.lr=1.0"
    ).train
    lr = [float(lr_schedule(tc)(jnp.asarray(i))) for i in range(12)]
    np.testing.assert_allclose(lr[:4], [0.25, 0.5, 0.75, 1.0], rtol=1e-6)
    assert lr[4] < 1.0 and all(a >= b for a, b in zip(lr[3:], lr[4:]))
    np.testing.assert_allclose(
        lr[9:], [tc.end_lr_ratio] * 3, rtol=1e-6
    )  # floor at lr * end_lr_ratio


def _hand_written_lr(tc, count: int) -> float:
    """The schedule as it was written before optax's (the reference the optax one must equal)."""
    peak, end = float(tc.lr), float(tc.lr) * float(tc.end_lr_ratio)
    warm, total, step = max(int(tc.warmup_steps), 0), int(tc.steps), count + 1.0
    if step <= warm:
        return peak * step / max(warm, 1)
    return peak + (end - peak) * min(max((step - warm) / max(total - warm, 1), 0.0), 1.0)


@pytest.mark.parametrize("steps,warmup", [(10, 4), (20000, 500), (10, 0), (10, 1), (3, 5)])
def test_lr_schedule_equals_the_hand_written_one(steps, warmup):
    tc = small_config(
        f"--config.train.steps={steps}",
        f"--config.train.warmup_steps={warmup}",
        "--config.train.lr=1e-4",
        "--config.train.end_lr_ratio=0.1",
    ).train
    schedule = lr_schedule(tc)
    counts = sorted({0, 1, 2, 3, 4, 5, 9, 10, 11, 250, 498, 499, 500, 501, 10000, 19998, 19999})
    got = [float(schedule(jnp.asarray(c))) for c in counts]
    want = [_hand_written_lr(tc, c) for c in counts]
    # optax computes (init - end) * (1 - t / T) + end in float32: equal to float32 rounding of
    # the peak (early warm-up values differ by ~6e-12 at lr 1e-4, 3e-5 of their own size)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * float(tc.lr))
    jitted = float(jax.jit(schedule)(jnp.asarray(counts[2])))  # traced, as in the optimiser
    assert jitted == pytest.approx(want[2], rel=1e-6, abs=1e-6 * float(tc.lr))


def test_no_weight_decay_on_biases_and_layernorm():
    t = make_trainer(small_config(), one_device())
    mask = decay_mask(t.abstract_state["params"])
    assert mask["embed"] and mask["blocks"]["q_kernel"] and mask["lm_head_kernel"]
    assert (
        not mask["blocks"]["q_bias"]
        and not mask["blocks"]["ln_scale"]
        and not mask["final_ln_bias"]
    )


def test_last_token_mask_marks_the_end_of_each_packed_document():
    loss_mask = jnp.array([[0, 1, 1, 0, 1, 1, 1, 0]])
    segments = jnp.array([[1, 1, 1, 2, 2, 2, 3, 0]])
    got = last_token_mask(loss_mask, segments)
    assert got.tolist() == [[False, False, True, False, False, True, True, False]]


# ------------------------------------------------------------------- the joint objective
def _joint_models():
    """A joint verifier with random weights, and a pure verifier and a generator that share
    its trunk and its value or LM head exactly."""
    from flax import nnx
    from test_sampler import random_model

    joint = random_model("value", 3, keep_lm_head=True)
    params = nnx.to_pure_dict(nnx.state(joint, nnx.Param))

    def sharing(head: str):
        other = random_model(head, 4)
        graphdef, state = nnx.split(other)
        keys = nnx.to_pure_dict(state).keys()
        nnx.replace_by_pure_dict(state, {k: v for k, v in params.items() if k in keys})
        return nnx.merge(graphdef, state)

    return joint, sharing("value"), sharing("lm")


def _verifier_batch():
    b = synthetic_batch(2, 0, 4, 32, 256, "verifier")
    return {k: jnp.asarray(v) for k, v in b.items()}


def test_joint_loss_with_weight_zero_is_the_value_loss_exactly():
    """Weight 0 is today's verifier loss, computed independently from the model's output."""
    import optax

    from tinygsm_jax.train_step import loss_sums

    _, value_model, _ = _joint_models()
    b = _verifier_batch()
    got, counters = loss_sums(value_model, b, "verifier", 0.0)
    scores = value_model(b["inputs"], b["positions"], b["segment_ids"])
    want = jnp.sum(optax.sigmoid_binary_cross_entropy(scores, b["labels"]) * b["loss_mask"])
    assert float(got) == float(want) and "lm_loss_sum" not in counters
    default, _ = loss_sums(value_model, b, "verifier")  # the default weight is 0
    assert float(default) == float(got)


def test_joint_loss_adds_the_generators_loss_on_the_same_batch():
    from tinygsm_jax.train_step import loss_sums

    joint, value_model, generator = _joint_models()
    b = _verifier_batch()
    value_sum, _ = loss_sums(value_model, b, "verifier", 0.0)
    lm_sum, _ = loss_sums(generator, b, "generator")  # same inputs, targets and loss mask
    for w in (0.5, 2.0):
        total, c = loss_sums(joint, b, "verifier", w)
        np.testing.assert_allclose(float(total), float(value_sum) + w * float(lm_sum), rtol=1e-6)
        np.testing.assert_allclose(
            [float(c["value_loss_sum"]), float(c["lm_loss_sum"])],
            [float(value_sum), float(lm_sum)],
            rtol=1e-6,
        )


def test_joint_verifier_trains_both_heads_and_logs_both_losses():
    config = small_config(
        "--config.objective=verifier",
        "--config.model.head=value",
        "--config.train.lm_loss_weight=0.5",
    )
    t = make_trainer(config, one_device())
    assert t.model_cfg.keep_lm_head and "lm_head_kernel" in t.abstract_state["params"]
    state = t.init(0)
    first = None
    for k in range(6):
        state, m = t.step_fn(state, t.put_batch(synthetic_batch(1, k, 8, 32, 256, "verifier")))
        np.testing.assert_allclose(
            float(m["loss"]), float(m["value_loss"]) + 0.5 * float(m["lm_loss"]), rtol=1e-5
        )
        first = first or (float(m["value_loss"]), float(m["lm_loss"]))
    assert float(m["value_loss"]) < first[0] and float(m["lm_loss"]) < first[1]
    # Without the weight the verifier has no LM head, as before.
    plain = make_trainer(
        small_config("--config.objective=verifier", "--config.model.head=value"), one_device()
    )
    assert not plain.model_cfg.keep_lm_head
    assert "lm_head_kernel" not in plain.abstract_state["params"]


@pytest.mark.parametrize(
    "extra", [["--config.train.lm_loss_weight=-1"], ["--config.train.lm_loss_weight=0.5"]]
)
def test_lm_loss_weight_is_checked(extra):
    """Negative, or set for the generator objective: one clear line."""
    from tinygsm_jax.cli import UserError

    objective = (
        ["--config.objective=verifier", "--config.model.head=value"] if "-1" in extra[0] else []
    )
    with pytest.raises(UserError, match="lm_loss_weight"):
        make_trainer(small_config(*objective, *extra), one_device())


def test_joint_verifier_starts_from_the_generators_lm_head():
    from flax import nnx

    from tinygsm_jax.checkpoint import transplant

    _, _, generator = _joint_models()
    source = nnx.to_pure_dict(nnx.state(generator, nnx.Param))
    from test_sampler import random_model

    target = nnx.to_pure_dict(nnx.state(random_model("value", 9, keep_lm_head=True), nnx.Param))
    got = transplant(target, source, source_head="lm", target_head="value")
    np.testing.assert_array_equal(got["lm_head_kernel"], source["lm_head_kernel"])
    np.testing.assert_array_equal(got["blocks"]["q_kernel"], source["blocks"]["q_kernel"])
    np.testing.assert_array_equal(got["value_kernel"], target["value_kernel"])  # fresh


# ------------------------------------------------------------------------------- dropout
def _run_state(config, mesh, n_steps: int, objective: str = "generator"):
    t = make_trainer(config, mesh)
    state, losses = t.init(0), []
    for k in range(n_steps):
        b = synthetic_batch(0, k, t.global_batch, t.seq_len, 256, objective)
        state, m = t.step_fn(state, t.put_batch(b))
        losses.append(float(m["loss"]))
    return t, state, losses


@pytest.mark.parametrize("micro", ["0", "4"])
def test_dropout_zero_is_the_program_without_the_key(micro):
    """model.dropout=0 compiles the same program as a config without the key, losses and
    parameters bit for bit (with and without gradient accumulation)."""
    extra = [f"--config.train.micro_batch={micro}"]
    without = small_config(*extra)
    del without.model["dropout"]
    zero = small_config(*extra, "--config.model.dropout=0.0")
    mesh = sharding.make_mesh(2, 2, 2) if micro != "0" else one_device()
    t0, s0, l0 = _run_state(without, mesh, 2)
    t1, s1, l1 = _run_state(zero, mesh, 2)
    assert l0 == l1
    for a, b in zip(jax.tree.leaves(s0["params"]), jax.tree.leaves(s1["params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    hlo = [t.step_fn.lower(t.abstract_state, t.abstract_batch).as_text() for t in (t0, t1)]
    assert hlo[0] == hlo[1] and "rng_bit_generator" not in hlo[0] and "threefry" not in hlo[0]


def test_dropout_changes_training_only_and_is_deterministic_in_seed_and_step():
    mesh = one_device()
    _, s0, plain = _run_state(small_config(), mesh, 3)
    t, s1, dropped = _run_state(small_config("--config.model.dropout=0.3"), mesh, 3)
    assert plain[0] != dropped[0]  # same init, same batch: only the dropout masks differ
    _, _, again = _run_state(small_config("--config.model.dropout=0.3"), mesh, 3)
    assert again == dropped  # same seed and steps: the same masks
    _, _, other_seed_masks = _run_state(
        small_config("--config.model.dropout=0.3", "--config.train.seed=1"), mesh, 1
    )
    assert other_seed_masks[0] != dropped[0]
    # Resume: step 3 from the state after step 2 draws the masks of step 3 again.
    _, s2, _ = _run_state(small_config("--config.model.dropout=0.3"), mesh, 2)
    _, m = t.step_fn(s2, t.put_batch(synthetic_batch(0, 2, 8, 32, 256, "generator")))
    assert float(m["loss"]) == dropped[2]
    # Inference reads the weights without dropout: a model of rate 0.3 and one of rate 0 give
    # the same logits from the same parameters.
    from flax import nnx

    from tinygsm_jax.model import Phi

    b = synthetic_batch(0, 0, 8, 32, 256, "generator")
    outs = []
    for rate in (0.3, 0.0):
        graphdef = nnx.split(
            nnx.eval_shape(lambda r=rate: Phi(t.model_cfg.replace(dropout=r), rngs=nnx.Rngs(0)))
        )[0]
        outs.append(
            np.asarray(
                jax.jit(lambda p, g=graphdef: nnx.merge(g, p)(b["inputs"], b["positions"]))(
                    jax.device_get(s1["params"])
                )
            )
        )
    np.testing.assert_array_equal(outs[0], outs[1])


def test_dropout_keys_differ_by_micro_batch_and_step():
    from tinygsm_jax.train_step import dropout_key

    keys = [jax.random.key_data(dropout_key(0, jnp.int32(s))) for s in (0, 1)]
    assert not np.array_equal(keys[0], keys[1])
    assert np.array_equal(keys[0], jax.random.key_data(dropout_key(0, jnp.int32(0))))
    # accumulation runs with dropout and stays deterministic
    config = small_config("--config.train.micro_batch=4", "--config.model.dropout=0.2")
    a = _run_state(config, sharding.make_mesh(2, 2, 2), 2)[2]
    b = _run_state(config, sharding.make_mesh(2, 2, 2), 2)[2]
    assert a == b and np.isfinite(a).all()


# ------------------------------------------------------------ the within-question ranking loss
# (row, start, length, group, label, has loss tokens): three rows of 64 positions
RANK_DOCS = [
    (0, 0, 10, 1, 1, True), (0, 10, 10, 1, 0, True), (0, 20, 10, 2, 1, True),
    (1, 0, 15, 1, 0, True), (1, 15, 10, 2, 0, True), (1, 25, 10, 2, 1, True),
    (1, 35, 10, 3, 1, True),  # question 3 has no wrong candidate: no pair
    (2, 0, 10, 4, 1, False),  # a prompt with no loss token is no candidate
    (2, 10, 10, 4, 0, True), (2, 20, 12, 5, 0, True),
]  # fmt: skip


def _rank_batch(seed: int = 0):
    """A hand-packed verifier batch with question ids, random scores, and the candidates'
    (score, group, label) read off by hand at each last loss token."""
    T = 64
    batch = {k: np.zeros((3, T), np.int32) for k in ("segment_ids", "group")}
    batch["loss_mask"] = np.zeros((3, T), np.float32)
    batch["labels"] = np.zeros((3, T), np.float32)
    scores = np.random.default_rng(seed).normal(size=(3, T)).astype(np.float32) * 2
    seg_of_row, cands = {}, []
    for r, a, n, g, y, has_loss in RANK_DOCS:
        seg_of_row[r] = seg_of_row.get(r, 0) + 1
        batch["segment_ids"][r, a : a + n] = seg_of_row[r]
        batch["group"][r, a : a + n] = g
        batch["labels"][r, a : a + n] = y
        if has_loss:
            batch["loss_mask"][r, a + n // 2 : a + n] = 1.0
            cands.append((float(scores[r, a + n - 1]), g, y))
    return {k: jnp.asarray(v) for k, v in batch.items()}, jnp.asarray(scores), cands


def _softplus(x: float) -> float:
    return float(np.log1p(np.exp(-abs(x))) + max(x, 0.0))


def test_pairwise_rank_loss_equals_a_hand_computation():
    from tinygsm_jax.train_step import rank_loss_sums

    batch, scores, cands = _rank_batch()
    pairs = [
        _softplus(-(si - sj))
        for si, gi, yi in cands
        for sj, gj, yj in cands
        if gi == gj and yi == 1 and yj == 0
    ]
    assert len(pairs) == 4  # question 1: 1 right x 2 wrong; question 2: 2 right x 1 wrong
    total, count = rank_loss_sums(scores, batch, "pairwise")
    assert float(count) == 4
    np.testing.assert_allclose(float(total), sum(pairs), rtol=1e-5)


def test_listwise_rank_loss_equals_a_hand_computation():
    from tinygsm_jax.train_step import rank_loss_sums

    batch, scores, cands = _rank_batch(1)
    want = []
    for g in sorted({g for _, g, _ in cands}):
        s = np.array([c[0] for c in cands if c[1] == g], np.float64)
        y = np.array([c[2] for c in cands if c[1] == g])
        if 0 < y.sum() < len(y):
            want.append(-np.log(np.exp(s[y == 1]).sum() / np.exp(s).sum()))
    assert len(want) == 2  # questions 1 and 2; 3 (all right), 4 and 5 (all wrong) are left out
    total, count = rank_loss_sums(scores, batch, "listwise")
    assert float(count) == 2
    np.testing.assert_allclose(float(total), sum(want), rtol=1e-5)
    # its gradient is finite (the masked entries carry no NaN) and moves only candidates' scores
    grad = np.asarray(jax.grad(lambda s: rank_loss_sums(s, batch, "listwise")[0])(scores))
    assert np.isfinite(grad).all() and np.count_nonzero(grad) == 6  # q 1 and 2: 3 each


def test_no_pairs_give_a_zero_rank_loss():
    from tinygsm_jax.train_step import rank_loss_sums

    batch, scores, _ = _rank_batch()
    batch = dict(batch, labels=jnp.zeros_like(batch["labels"]))  # every candidate wrong
    for kind in ("pairwise", "listwise"):
        total, count = rank_loss_sums(scores, batch, kind)
        assert float(total) == 0.0 and float(count) == 0.0


def _verifier_config(*extra: str):
    return small_config("--config.objective=verifier", "--config.model.head=value", *extra)


def _grouped_batch(k: int) -> dict:
    """synthetic_batch's verifier rows with question ids that keep each question inside one
    micro-batch of 4 rows (rows j, j + 2, j + 4, j + 6): rows {0, 2}, {4, 6}, {1, 3}, {5, 7}."""
    b = synthetic_batch(3, k, 8, 32, 256, "verifier")
    rows = np.arange(8)[:, None]
    b["group"] = np.where(b["segment_ids"] > 0, 1 + rows % 2 + 2 * (rows // 4), 0).astype(np.int32)
    return b


def test_rank_loss_weight_zero_is_the_program_without_the_keys():
    without = _verifier_config()
    for key in ("rank_loss_weight", "rank_loss"):
        del without.train[key]
    del without.data["group_by_question"]
    zero = _verifier_config("--config.train.rank_loss_weight=0.0")
    ts = [make_trainer(c, one_device()) for c in (without, zero)]
    assert "group" not in ts[1].abstract_batch
    hlo = [t.step_fn.lower(t.abstract_state, t.abstract_batch).as_text() for t in ts]
    assert hlo[0] == hlo[1]
    losses = []
    for t in ts:
        state = t.init(0)
        state, m = t.step_fn(state, t.put_batch(synthetic_batch(1, 0, 8, 32, 256, "verifier")))
        losses.append((float(m["loss"]), jax.device_get(state["params"]["value_kernel"])))
    assert losses[0][0] == losses[1][0]
    np.testing.assert_array_equal(losses[0][1], losses[1][1])


@pytest.mark.parametrize("kind", ["pairwise", "listwise"])
def test_rank_loss_joins_the_bce_and_accumulation_keeps_it(kind):
    """loss = BCE (per token) + w * rank loss (per pair or question); with each question
    inside one micro-batch, accumulating micro-batches gives the large batch's step."""
    extra = [
        "--config.train.rank_loss_weight=0.5",
        f"--config.train.rank_loss={kind}",
        "--config.data.group_by_question=True",
    ]
    runs = []
    for micro in ("0", "4"):
        t = make_trainer(
            _verifier_config(*extra, f"--config.train.micro_batch={micro}"), one_device()
        )
        assert "group" in t.abstract_batch
        state, ms = t.init(0), []
        for k in range(3):
            state, m = t.step_fn(state, t.put_batch(_grouped_batch(k)))
            ms.append({key: float(v) for key, v in jax.device_get(m).items()})
        runs.append(ms)
    for m in runs[0]:
        assert m["rank_count"] > 0
        np.testing.assert_allclose(m["loss"], m["value_loss"] + 0.5 * m["rank_loss"], rtol=1e-5)
    for a, b in zip(*runs):
        for key in ("loss", "value_loss", "rank_loss", "rank_count"):
            np.testing.assert_allclose(a[key], b[key], rtol=2e-4)
    # The rank term is the one rank_loss_sums computes from the model's scores at step 0.
    from flax import nnx

    from tinygsm_jax.train_step import rank_loss_sums

    t = make_trainer(_verifier_config(*extra), one_device())
    state, b = t.init(0), {k: jnp.asarray(v) for k, v in _grouped_batch(0).items()}
    model = nnx.merge(t.graphdef, jax.device_get(state["params"]))
    total, count = rank_loss_sums(model(b["inputs"], b["positions"], b["segment_ids"]), b, kind)
    np.testing.assert_allclose(runs[0][0]["rank_loss"], float(total) / float(count), rtol=1e-5)
    assert runs[0][0]["rank_count"] == float(count)


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--config.train.rank_loss_weight=0.5"], "group_by_question"),
        (
            [
                "--config.train.rank_loss_weight=0.5",
                "--config.data.group_by_question=True",
                "--config.train.rank_loss=triplet",
            ],
            "rank_loss must be one of",
        ),
        (["--config.train.rank_loss_weight=-1"], "rank_loss_weight"),
    ],
)
def test_rank_loss_settings_are_checked(extra, match):
    from tinygsm_jax.cli import UserError

    with pytest.raises(UserError, match=match):
        make_trainer(_verifier_config(*extra), one_device())
    with pytest.raises(UserError, match="rank_loss_weight"):  # not for the generator
        make_trainer(small_config("--config.train.rank_loss_weight=0.5"), one_device())
