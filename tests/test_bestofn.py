"""The weighted picks and the bootstrap intervals, recomputed by hand from candidate rows."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from tinygsm_jax.bestofn import (
    bootstrap_ci,
    bootstrap_intervals,
    compute_metrics,
    joint_logprob,
    log_sigmoid,
    per_question_outcomes,
    ranking_quality,
    sample_weights,
    verifier_correct,
    weighted_majority_correct,
)


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def row(q: int, i: int, answer, correct: bool, score: float, logprob: float) -> dict:
    return {"question_id": q, "sample": i, "code": f"q{q}s{i}", "answer": answer,
            "correct": correct, "score": score, "logprob": logprob}  # fmt: skip


# Five questions, four samples each (answer, correct, verifier score, generator log-prob).
QUESTIONS = [
    # q0: 3 and 3.0 are one answer: sigmoid weights 0.5 + 0.5 = 1.0 beat 5's sigmoid(2) = 0.881,
    # though 5 has the top score; the crash scores higher still and never counts. By likelihood
    # 5 wins: e^-1 = 0.368 against 2 e^-2 = 0.271.
    [(5, False, 2.0, -1.0), (3, True, 0.0, -2.0), (3.0, True, 0.0, -2.0), (None, False, 10.0, 0.0)],
    # q1: raw logits would sum to -2 for 8 against -0.5 for 7; sigmoids give 2 x 0.269 = 0.538
    # against 0.378, so 8. Likelihood: 2 e^-1.5 = 0.446 against e^-1 = 0.368, 8 again.
    [(7, False, -0.5, -1.0), (8, True, -1.0, -1.5), (8, True, -1.0, -1.5), (None, False, 0.0, 0.0)],
    # q2: an exact tie (two samples of 0.5 each side; four equal probabilities): 4, seen first.
    [(4, False, 0.0, -3.0), (6, True, 0.0, -3.0), (6, True, 0.0, -3.0), (4, False, 0.0, -3.0)],
    # q3: no sample returned a number: wrong for every pick.
    [(None, False, 5.0, -1.0)] * 4,
    # q4: long programs: e^-1000 underflows to 0.0, so unnormalised weights would tie and give 7;
    # normalised over the question, 8's two samples weigh 2 e^-0.5 against 7's 1.
    [(7, False, 0.0, -1000.0), (8, True, 0.0, -1000.5), (8, True, 0.0, -1000.5),
     (None, False, 0.0, -999.0)],
]  # fmt: skip
ROWS = [row(q, i, *s) for q, samples in enumerate(QUESTIONS) for i, s in enumerate(samples)]
GREEDY = [
    {"question_id": q, "sample": 0, "answer": 1, "correct": c}
    for q, c in enumerate([True, False, True, False, False])
]
# Per-question outcomes at k = 4, by hand from the comments above.
HAND = {
    "weighted@4": [1, 1, 0, 0, 1],
    "weighted_likelihood@4": [0, 1, 0, 0, 1],
    "verify@4": [0, 0, 0, 0, 0],  # q0 5, q1 7; q2 and q4 tie, first: 4 and 7
    "maj@4": [1, 1, 0, 0, 1],
    "likelihood@4": [0, 0, 0, 0, 0],  # q0 5, q1 7, q2 first, q4 7 (-1000 beats -1000.5)
    "greedy@1": [1, 0, 1, 0, 0],
}


def test_weights_are_sigmoid_scores_and_normalised_probabilities():
    q0 = [row(0, i, *s) for i, s in enumerate(QUESTIONS[0])]
    assert sample_weights(q0, "score") == pytest.approx([sig(2.0), 0.5, 0.5])  # crash left out
    total = math.exp(-1) + 2 * math.exp(-2)
    want = [math.exp(-1) / total, math.exp(-2) / total, math.exp(-2) / total]
    assert sample_weights(q0, "logprob") == pytest.approx(want)
    q4 = [row(4, i, *s) for i, s in enumerate(QUESTIONS[4])]
    w = sample_weights(q4, "logprob")
    assert sum(w) == pytest.approx(1.0) and w[0] == pytest.approx(1 / (1 + 2 * math.exp(-0.5)))
    assert sample_weights([row(3, 0, *QUESTIONS[3][0])], "logprob") == []
    with pytest.raises(ValueError, match="no weights for key"):
        sample_weights(q0, "answer")


def test_weighted_picks_by_hand():
    for q, samples in enumerate(QUESTIONS):
        rows = [row(q, i, *s) for i, s in enumerate(samples)]
        assert weighted_majority_correct(rows, "score") == bool(HAND["weighted@4"][q]), q
        assert weighted_majority_correct(rows, "logprob") == bool(
            HAND["weighted_likelihood@4"][q]
        ), q
    m = compute_metrics(random.Random(0).sample(ROWS, len(ROWS)), GREEDY)  # row order is free
    for name, values in HAND.items():
        assert m[name] == pytest.approx(sum(values) / 5), name
    # First two samples only: q0 5 (0.881) beats 3 (0.5); q1 7 (0.378) beats 8 (0.269); q2 and
    # q4 tie one sample each, first seen: wrong everywhere. By likelihood the same, first wins.
    assert m["weighted@2"] == 0.0 and m["weighted_likelihood@2"] == 0.0
    assert m["weighted@1"] == m["weighted_likelihood@1"] == m["verify@1"] == 0.0
    # The picks exist only when the rows carry what they weigh.
    no_score = [{k: v for k, v in r.items() if k != "score"} for r in ROWS]
    keys = compute_metrics(no_score)
    assert "weighted@4" not in keys and "weighted_likelihood@4" in keys
    no_lp = [{k: v for k, v in r.items() if k != "logprob"} for r in ROWS]
    keys = compute_metrics(no_lp)
    assert "weighted_likelihood@4" not in keys and "weighted@4" in keys


def test_per_question_outcomes_are_the_metrics_per_question():
    qids, values = per_question_outcomes(ROWS[::-1], GREEDY[::-1])
    assert qids == [0, 1, 2, 3, 4]
    for name, hand in HAND.items():
        assert values[name].tolist() == hand, name
    m = compute_metrics(ROWS, GREEDY)
    assert set(values) == {"greedy@1"} | {k for k in m if k.endswith("@4")}
    for name, v in values.items():
        assert float(v.mean()) == pytest.approx(m[name]), name
    with pytest.raises(ValueError, match="no greedy row for question_id 4"):
        per_question_outcomes(ROWS, GREEDY[:4])


def test_bootstrap_ci_is_the_documented_percentile_bootstrap():
    v = np.asarray([1.0, 0.0, 1.0, 1.0, 0.0])
    idx = np.random.default_rng(3).integers(0, 5, (50, 5))
    means = v[idx].mean(axis=1)
    assert bootstrap_ci(v, n_boot=50, seed=3) == [
        float(np.quantile(means, 0.025)),
        float(np.quantile(means, 0.975)),
    ]
    # Two questions, one right: a resample's mean is 0, 1/2 or 1 with chance 1/4, 1/2, 1/4, so
    # 2.5% and 97.5% of 2000 resamples land on 0 and 1.
    assert bootstrap_ci(np.asarray([1.0, 0.0])) == [0.0, 1.0]
    assert bootstrap_ci(np.ones(7)) == [1.0, 1.0]
    assert bootstrap_ci(v, seed=1) == bootstrap_ci(v, seed=1)  # deterministic
    lo, hi = bootstrap_ci(v)
    assert lo < v.mean() < hi
    # Paired against itself every resampled difference is 0.
    assert bootstrap_ci(v, v) == [0.0, 0.0]
    # Paired: the same indices for both, so it is the interval of the per-question differences.
    # Here they are [0, 1, 0, 0, 0]: a resample's mean is j/5, j ~ Binomial(5, 1/5) the draws of
    # question 1; P(j = 0) = 0.33 and P(j >= 3) = 0.058 > 2.5% > P(j >= 4) = 0.007: [0, 3/5].
    w = np.asarray([1.0, 1.0, 1.0, 1.0, 0.0])
    assert bootstrap_ci(w, v) == bootstrap_ci(w - v)
    assert bootstrap_ci(w, v) == [0.0, pytest.approx(0.6)]
    with pytest.raises(ValueError):
        bootstrap_ci(np.asarray([]))


def test_bootstrap_intervals_from_rows():
    got = bootstrap_intervals(ROWS, GREEDY, n_boot=500, seed=7)
    greedy = np.asarray(HAND["greedy@1"], float)
    assert set(got["intervals"]) == set(per_question_outcomes(ROWS, GREEDY)[1])
    for name, hand in HAND.items():
        v = np.asarray(hand, float)
        assert got["intervals"][name] == bootstrap_ci(v, n_boot=500, seed=7), name
        if name != "greedy@1":
            assert got["vs_greedy"][name] == {
                "diff": pytest.approx(float(v.mean() - greedy.mean())),
                "ci95": bootstrap_ci(v, greedy, n_boot=500, seed=7),
            }, name
    assert "greedy@1" not in got["vs_greedy"]
    assert got["intervals"]["verify@4"] == [0.0, 0.0]  # never right: no spread
    # Rows in any order give the same intervals (questions are matched by id, then sorted).
    assert bootstrap_intervals(ROWS[::-1], GREEDY[::-1], n_boot=500, seed=7) == got


def test_a_pick_against_itself_has_a_zero_paired_interval():
    """One sample per question equal to the greedy decode: pass@1 minus greedy is [0, 0]."""
    rows = [row(q, 0, 1, c, 0.0, -1.0) for q, c in enumerate([True, False, True, True, False])]
    greedy = [dict(r) for r in rows]
    got = bootstrap_intervals(rows, greedy)
    for name in ("pass@1", "maj@1", "verify@1", "likelihood@1", "weighted@1"):
        assert got["vs_greedy"][name] == {"diff": 0.0, "ci95": [0.0, 0.0]}, name
        assert got["intervals"][name] == got["intervals"]["greedy@1"], name


def test_joint_pick_multiplies_the_verifier_and_generator_probabilities():
    """joint@k by hand: log sigmoid(score) + logprob, over numeric samples, first of equals."""
    assert log_sigmoid(0.0) == pytest.approx(math.log(0.5))
    assert log_sigmoid(2.0) == pytest.approx(math.log(sig(2.0)))
    assert log_sigmoid(-800.0) == -800.0 and log_sigmoid(800.0) == 0.0  # no overflow, no log(0)
    # A: the verifier's favourite (wrong), C: the generator's favourite (wrong), B: right.
    # joint: A log sig(3) - 5 = -5.049, B log sig(1) - 2.5 = -2.813, C log sig(-2) - 1 = -3.127.
    q = [row(0, 0, 5, False, 3.0, -5.0), row(0, 1, 6, True, 1.0, -2.5),
         row(0, 2, 7, False, -2.0, -1.0), row(0, 3, None, False, 9.0, 0.0)]  # fmt: skip
    assert joint_logprob(q[1]) == pytest.approx(math.log(sig(1.0)) - 2.5)
    # The crash has the best of both and is passed over.
    assert verifier_correct(q, joint_logprob) is True
    m = compute_metrics(q[::-1], [{"correct": False}])
    assert m["verify@4"] == 0.0 and m["likelihood@4"] == 0.0 and m["joint@4"] == 1.0
    assert m["joint@1"] == 0.0 and m["joint@2"] == 1.0  # A alone; then B beats A
    # Equal joint values: the first sample wins, as for verify@k.
    tie = [row(1, 0, 4, False, 0.0, -1.0), row(1, 1, 8, True, 0.0, -1.0)]
    assert verifier_correct(tie, joint_logprob) is False
    assert verifier_correct([q[3]], joint_logprob) is False
    # Its within-question AUC: B above A and C, so 2 of 2 pairs.
    assert ranking_quality(q, key=joint_logprob) == {"within_question_auc": 1.0, "questions": 1}
    # Only when the rows carry both a score and a log-probability.
    assert "joint@4" not in compute_metrics(
        [{k: v for k, v in r.items() if k != "logprob"} for r in q]
    )
    assert "joint@4" not in compute_metrics(
        [{k: v for k, v in r.items() if k != "score"} for r in q]
    )
