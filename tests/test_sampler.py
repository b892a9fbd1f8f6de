"""The best-of-N sampler: HF-exact greedy, temperature -> 0, batch-layout independence, stopping."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tinygsm_jax.sampler import Sampler, SamplingParams, _bucket, _filter_logits, token_tables
from tinygsm_jax.solution_format import body_end, make_prompt

torch = pytest.importorskip("torch")

TINY = dict(vocab_size=320, d_model=32, n_layers=1, n_heads=2, d_mlp=64, rotary_dim=8, max_len=1024)


def random_model(head: str = "lm", seed: int = 0, **overrides):
    """A tiny Phi with random numpy weights: no compilation at all (eager init compiles every op)."""
    import jax
    from flax import nnx

    from tinygsm_jax.model import ModelConfig, Phi

    cfg = ModelConfig(**{**TINY, **overrides}, head=head)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Phi(cfg, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(seed)

    def fill(path, x):
        if "ln_scale" in str(path[-1]):
            return np.ones(x.shape, np.float32)
        return (0.1 * rng.standard_normal(x.shape)).astype(np.float32)

    nnx.replace_by_pure_dict(state, jax.tree_util.tree_map_with_path(fill, nnx.to_pure_dict(state)))
    return nnx.merge(graphdef, state)


@pytest.fixture(scope="module")
def hf_pair():
    """A tiny random HF PhiForCausalLM with odd sizes, and the same weights in our Phi."""
    from flax import nnx
    from transformers import PhiConfig, PhiForCausalLM

    from tinygsm_jax.hf import config_from_hf, hf_to_params
    from tinygsm_jax.model import Phi

    torch.manual_seed(0)
    hc = PhiConfig(
        vocab_size=131,
        hidden_size=96,
        intermediate_size=200,
        num_hidden_layers=2,
        num_attention_heads=6,
        max_position_embeddings=256,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "partial_rotary_factor": 0.5,
        },
        initializer_range=0.3,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attention_dropout=0.0,
    )
    hf = PhiForCausalLM(hc).eval()
    weights = {k: v.numpy() for k, v in hf.state_dict().items()}
    cfg = config_from_hf(hc.to_dict(), "lm")
    params = hf_to_params(cfg, weights.__getitem__, set(weights))  # the HF engineer's importer
    model = Phi(cfg, rngs=nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(model, state)
    return hf, model


def _hf_greedy(hf, prompt: list[int], max_new: int, eos: int | None) -> list[int]:
    with torch.no_grad():
        out = hf.generate(
            torch.tensor([prompt]),
            max_new_tokens=max_new,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=0,
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        )
    return out[0, len(prompt) :].tolist()


PROMPTS = [
    [5, 17, 99, 3, 42],
    [7] * 3 + list(range(20, 36)),
    [120, 1, 64, 9, 9, 9, 30, 77, 11, 2, 3],
]


MAX_NEW = 32


@pytest.mark.parametrize("unroll", [1, 2], ids=["scan", "unrolled"])
def test_greedy_equals_hf_generate(hf_pair, unroll):
    """Both decode layouts (`_sample_parts`): the layer scan (accelerators) and one array per
    layer (unrolled, the CPU default)."""
    from flax import nnx

    hf, model = hf_pair
    model = nnx.clone(model)
    model.cfg = model.cfg.replace(scan_unroll=unroll)
    free = [_hf_greedy(hf, p, MAX_NEW, None) for p in PROMPTS]
    # An EOS none of the greedy continuations produce: every comparison covers all 32 tokens.
    eos = next(t for t in range(130, 0, -1) if all(t not in f for f in free))
    sampler = Sampler(model, None, eos_id=eos, questions_per_batch=4)
    out = sampler.sample_ids(PROMPTS, SamplingParams(n=2, temperature=0.0, max_new_tokens=MAX_NEW))
    for f, samples in zip(free, out):
        assert len(f) == MAX_NEW
        for s in samples:  # left-padded in one batch with prompts of other lengths, yet exact
            assert s["tokens"].tolist() == f
            assert s["reason"] == "length"
    # With an EOS that greedy does hit, we stop exactly where HF stops (EOS included).
    eos2 = free[0][10]
    ref = _hf_greedy(hf, PROMPTS[0], MAX_NEW, eos2)
    s2 = Sampler(model, None, eos_id=eos2, questions_per_batch=4)
    got = s2.sample_ids(PROMPTS, SamplingParams(n=2, max_new_tokens=MAX_NEW))[0][0]
    assert got["tokens"].tolist() == ref and ref[-1] == eos2 and got["reason"] == "eos"
    # Log-probs are the raw model's: check against HF's logits for the first prompt.
    with torch.no_grad():
        seq = torch.tensor([PROMPTS[0] + ref])
        lp = torch.log_softmax(hf(seq).logits[0].double(), -1)
    want = [lp[len(PROMPTS[0]) - 1 + i, t].item() for i, t in enumerate(ref)]
    np.testing.assert_allclose(got["logprobs"], want, atol=2e-4)


def test_low_temperature_equals_greedy_and_batch_layout_does_not_matter(hf_pair):
    from tinygsm_jax.sharding import make_mesh

    _, model = hf_pair
    sampler = Sampler(model, None, eos_id=130, questions_per_batch=4)
    greedy = sampler.sample_ids(
        PROMPTS, SamplingParams(n=2, temperature=0.0, max_new_tokens=MAX_NEW)
    )
    compiles = sampler.stats.compiles
    cold = sampler.sample_ids(
        PROMPTS, SamplingParams(n=2, temperature=1e-4, max_new_tokens=MAX_NEW, seed=3)
    )
    # Temperature and seed are inputs, not compile-time constants: no new program.
    assert sampler.stats.compiles == compiles
    for g, c in zip(greedy, cold):
        for a, b in zip(g, c):
            assert a["tokens"].tolist() == b["tokens"].tolist()

    params = SamplingParams(
        n=2, temperature=1.0, top_k=40, top_p=0.9, max_new_tokens=MAX_NEW, seed=7
    )
    qids = [10, 11, 12]
    big = sampler.sample_ids(PROMPTS, params, question_ids=qids)
    one = Sampler(model, None, eos_id=130, questions_per_batch=1)
    # Another batch size and another order: each sample's stream is keyed by (question id, sample).
    rev = one.sample_ids(PROMPTS[::-1], params, question_ids=qids[::-1])[::-1]
    # Data parallel: 4 questions x 2 samples = one row on each of the 8 fake CPU devices.
    sharded = Sampler(model, None, eos_id=130, questions_per_batch=4, mesh=make_mesh(data=-1))
    par = sharded.sample_ids(PROMPTS, params, question_ids=qids)
    for a_q, b_q, c_q in zip(big, rev, par):
        for a, b, c in zip(a_q, b_q, c_q):
            assert a["tokens"].tolist() == b["tokens"].tolist() == c["tokens"].tolist()
            np.testing.assert_allclose(a["logprobs"], b["logprobs"], atol=1e-5)
    # Sampling really samples: the two samples of a question differ, and differ from greedy.
    assert any(q[0]["tokens"].tolist() != q[1]["tokens"].tolist() for q in big)
    assert big[0][0]["tokens"].tolist() != greedy[0][0]["tokens"].tolist()
    # Another seed gives other samples.
    other = sampler.sample_ids(PROMPTS, dataclasses.replace(params, seed=8), question_ids=qids)
    assert any(a[0]["tokens"].tolist() != b[0]["tokens"].tolist() for a, b in zip(big, other))


def test_filter_logits_top_k_and_top_p():
    import jax.numpy as jnp

    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    neg = jnp.finfo(jnp.float32).min
    k2 = _filter_logits(logits, 2, False, jnp.float32(1.0))
    assert (np.asarray(k2[0, 2:]) == neg).all() and (np.asarray(k2[0, :2]) > neg).all()
    p = _filter_logits(logits, 0, True, jnp.float32(0.7))  # 0.5 + 0.3 covers 0.7
    assert (np.asarray(p[0, :2]) > neg).all() and (np.asarray(p[0, 2:]) == neg).all()
    p_small = _filter_logits(logits, 0, True, jnp.float32(0.1))  # the top token always survives
    assert (np.asarray(p_small[0]) > neg).tolist() == [True, False, False, False]


def test_buckets_are_powers_of_two():
    assert [_bucket(n, 4096) for n in (1, 32, 33, 100, 129)] == [32, 32, 64, 128, 256]
    assert _bucket(300, 260) == 260


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from helpers import make_tokenizer
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(make_tokenizer(tmp_path_factory.mktemp("tok"))))


def test_function_end_truncates_text_tokens_and_logprob(tok):
    """The host applies body_end exactly; tokens and the log-prob are cut to match."""
    sampler = Sampler(random_model(max_len=128), tok)
    body = "    a = 12\n    result = a * 2\n    return result\n"
    ids = tok(body + "print(result)\n", add_special_tokens=False)["input_ids"]
    lps = np.linspace(-1, -2, len(ids))
    c = sampler.to_completion({"tokens": np.array(ids), "logprobs": lps, "reason": "length"}, True)
    assert c.text == body and c.finish_reason == "function_end"
    assert tok.decode(c.tokens) == body
    assert c.logprob == pytest.approx(lps[: len(c.tokens)].sum())
    # Without the stop rule, and for an EOS-terminated sample, nothing is cut but the EOS.
    eos_ids = ids + [tok.eos_token_id]
    lps2 = np.full(len(eos_ids), -0.5)
    c2 = sampler.to_completion(
        {"tokens": np.array(eos_ids), "logprobs": lps2, "reason": "eos"}, False
    )
    assert c2.text == body + "print(result)\n" and c2.logprob == pytest.approx(-0.5 * len(eos_ids))
    # The device-side tables agree with body_end on every token that starts a line.
    table = token_tables(tok, TINY["vocab_size"])
    for t in range(len(tok)):
        text = tok.decode([t])
        if text:
            assert bool(table[t, 0]) == (body_end(text + "\n") == 0)


def test_generate_stops_at_the_function_end(tok):
    sampler = Sampler(random_model(seed=1, max_len=256), tok, questions_per_batch=2)
    prompts = [
        make_prompt(q) for q in ("Natalia sold 48 clips. How many?", "Weng earns $12 an hour.")
    ]
    out = sampler.generate(
        prompts, SamplingParams(n=6, temperature=1.0, max_new_tokens=40, stop_at_function_end=True)
    )
    reasons = set()
    for per_q in out:
        assert len(per_q) == 6
        for c in per_q:
            reasons.add(c.finish_reason)
            # No complete unindented line inside the kept text.
            assert body_end(c.text + "\n") in (None, len(c.text))
            assert c.logprob == pytest.approx(sum(c.token_logprobs), abs=1e-4)
            assert c.logprob <= 0 and len(c.tokens) <= 40
            if c.finish_reason == "length":
                assert c.n_generated == 40
    assert "function_end" in reasons  # a random model starts an unindented line quickly
    assert sampler.stats.generated_tokens > 0 and sampler.stats.compile_seconds > 0


def test_samples_follow_the_model_distribution(hf_pair):
    """Inverse-CDF sampling at temperature 1: first-token frequencies match the model's softmax."""
    _, model = hf_pair
    n = 4000
    sampler = Sampler(model, None, eos_id=130, questions_per_batch=1)
    out = sampler.sample_ids(PROMPTS[:1], SamplingParams(n=n, temperature=1.0, max_new_tokens=1))[0]
    probs, counts = {}, {}
    for s in out:
        t = int(s["tokens"][0])
        probs[t] = float(np.exp(s["logprobs"][0]))
        counts[t] = counts.get(t, 0) + 1
    assert len(counts) > 3  # a real distribution, not a point mass
    for t, c in counts.items():
        # within 5 binomial standard deviations (plus a little for float32 rounding)
        sd = np.sqrt(probs[t] * (1 - probs[t]) / n)
        assert abs(c / n - probs[t]) <= 5 * sd + 1e-3, (t, c / n, probs[t])
    assert sum(probs.values()) > 0.95  # tokens never drawn carry (almost) no probability


def test_short_jobs_decode_no_dummy_questions(hf_pair):
    """A batch holds at most the power of two that fits the call's questions: 3 questions in
    batches of 8 decode 4 rows' worth of questions, not 8 (5 of them dummies)."""
    _, model = hf_pair
    sampler = Sampler(model, None, eos_id=130, questions_per_batch=8)
    assert sampler.batch_questions_for(48, 3) == 4
    assert sampler.batch_questions_for(48, 1) == 1
    assert sampler.batch_questions_for(48, 100) == 8
