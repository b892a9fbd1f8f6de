"""Best-of-N metrics, computed from candidate rows alone (so a report can always be re-derived).

Rows are what `python -m tinygsm_jax.eval` writes to candidates.jsonl: `question_id`,
`sample` (0..N-1), `answer` (number or null), `correct` (bool), optional `score`. Greedy
decodes live in greedy.jsonl (one row per question, same fields) because the issue's
candidates.jsonl holds only the N samples.

Definitions (k = 1, 2, 4, ... and N itself):

* ``greedy@1``: fraction of questions whose greedy decode is correct.
* ``pass@k``: the unbiased estimator of Chen et al. (2021), 1 - C(n-c, k) / C(n, k) per
  question with n samples of which c are correct, averaged over questions.
* ``maj@k``: majority vote over each question's first k samples, counting only samples that
  returned a number; answers equal under `answers.answers_match` share a vote; a tie goes to
  the answer seen first among the k; a question with no numeric answer counts as wrong.
* ``verify@k``: the highest verifier score among those of the first k samples that returned a
  number (ties: the first); correct if that sample is. As for maj@k, a program that failed to
  run gives no answer, so it cannot be the one answered with; a question with no numeric
  answer counts as wrong. Only when the rows carry scores.

Three baselines say whether a verifier beats the generator it was trained from; each picks
among the same numeric samples as verify@k, and a question with none counts as wrong:

* ``random@k``: the expected accuracy of a uniform pick among the numeric samples of the first
  k (the share of them that is correct).
* ``distinct@k``: the same among their distinct programs (exact code text). Right programs
  repeat and wrong ones differ, so a score unrelated to correctness, which sees each distinct
  program once, tends to land here rather than at random@k.
* ``likelihood@k``: the numeric sample with the highest generator log-probability (`logprob`,
  summed over the body's tokens; ties: the first). Only when the rows carry `logprob`.

Two weighted majorities (Uesato et al. 2022, Li et al. 2023) combine the vote with a ranking:
the numeric samples of the first k are grouped by answer (`answers.answers_match`, as for
maj@k), each group's weights are summed, and the group with the largest sum is the answer (a
tie goes to the group seen first); a question with no numeric sample counts as wrong.

* ``weighted@k``: each sample weighs sigmoid(`score`), the verifier's probability that it is
  right (its score is a logit; a raw logit could be negative and cancel a group's votes). Only
  when the rows carry scores.
* ``weighted_likelihood@k``: each sample weighs its generator probability exp(`logprob`),
  normalised over the question's numeric samples (a softmax, which leaves the argmax alone and
  keeps long programs' tiny probabilities from underflowing). Only when the rows carry `logprob`.

One pick combines the two rankings, as LEVER (Ni et al. 2023) reranks programs:

* ``joint@k``: the numeric sample with the highest P_verifier(right) x P_generator(program),
  i.e. log sigmoid(`score`) + `logprob` (ties: the first). The two rank on different knowledge
  (the verifier reads the execution result; the generator knows its own training data), and
  the product has no weight to tune. Only when the rows carry both.

`bootstrap_intervals` gives 95% intervals for every pick at k = N and, paired on the same
resampled questions, for each pick minus greedy@1: a difference of 5 points is only a result if
its interval excludes 0 (at 200 questions one accuracy's standard error is about 3.5 points).

Beside the metrics, `ranking_quality` says how well a key (the verifier's `score`, `logprob`,
or `joint_logprob`) orders each question's own numeric samples, the only ones the picks choose
from: the probability that a correct one outscores a wrong one of the same question, over
questions that have both (a within-question AUC; 0.5 is chance).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from tinygsm_jax.answers import answers_match


def ks_for(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one question: n samples, c correct."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_correct(samples: Sequence[dict]) -> bool:
    """Whether the majority answer among `samples` (in order) is correct; see module doc."""
    groups: list[list] = []  # [representative answer, votes, correct of its first sample]
    for s in samples:
        a = s.get("answer")
        if a is None:
            continue
        for g in groups:
            if answers_match(a, g[0]):
                g[1] += 1
                break
        else:
            groups.append([a, 1, bool(s["correct"])])
    if not groups:
        return False
    best = max(groups, key=lambda g: g[1])  # max keeps the first of equals: first seen wins ties
    return best[2]


def _numeric(samples: Sequence[dict]) -> list[dict]:
    return [s for s in samples if s.get("answer") is not None]


Key = str | Callable[[dict], float]  # a row's field, or a function of the row (`joint_logprob`)


def _key_value(key: Key) -> Callable[[dict], float]:
    return key if callable(key) else (lambda r: float(r[key]))


def verifier_correct(samples: Sequence[dict], key: Key = "score") -> bool:
    """Whether the numeric sample with the highest `key` (the first of equals) is correct."""
    numeric = _numeric(samples)
    if not numeric:
        return False
    return bool(max(numeric, key=_key_value(key))["correct"])


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def log_sigmoid(x: float) -> float:
    """log(sigmoid(x)) without overflow or log(0) at large |x|."""
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def joint_logprob(sample: dict) -> float:
    """log P_verifier(right) + log P_generator(program): the `joint@k` key."""
    return log_sigmoid(float(sample["score"])) + float(sample["logprob"])


def sample_weights(samples: Sequence[dict], key: str) -> list[float]:
    """Non-negative, comparable weights of the numeric samples, in order (see the module doc).

    `score`: sigmoid(score), the verifier's probability. `logprob`: a softmax of the log-probs
    over these samples, so the weights sum to 1 whatever the programs' lengths.
    """
    numeric = _numeric(samples)
    if key == "score":
        return [_sigmoid(float(s["score"])) for s in numeric]
    if key == "logprob":
        if not numeric:
            return []
        top = max(float(s["logprob"]) for s in numeric)
        exps = [math.exp(float(s["logprob"]) - top) for s in numeric]
        total = sum(exps)
        return [e / total for e in exps]
    raise ValueError(f"no weights for key {key!r} (expected 'score' or 'logprob')")


def weighted_majority_correct(samples: Sequence[dict], key: str = "score") -> bool:
    """Whether the answer with the largest summed weight (`sample_weights`) is correct.

    Groups as `majority_correct` does: numeric samples only, answers equal under
    `answers_match` share a group, the group seen first wins a tie, none counts as wrong.
    """
    groups: list[list] = []  # [representative answer, summed weight, correct of its first sample]
    for s, w in zip(_numeric(samples), sample_weights(samples, key)):
        for g in groups:
            if answers_match(s["answer"], g[0]):
                g[1] += w
                break
        else:
            groups.append([s["answer"], w, bool(s["correct"])])
    if not groups:
        return False
    return max(groups, key=lambda g: g[1])[2]  # max keeps the first of equals


def random_pick_accuracy(samples: Sequence[dict]) -> float:
    """Expected accuracy of a uniform pick among the numeric samples (0 when there are none)."""
    numeric = _numeric(samples)
    return sum(bool(s["correct"]) for s in numeric) / len(numeric) if numeric else 0.0


def distinct_pick_accuracy(samples: Sequence[dict]) -> float:
    """Expected accuracy of a uniform pick among the distinct programs of the numeric samples."""
    programs: dict[str, bool] = {}
    for s in _numeric(samples):
        programs.setdefault(s["code"], bool(s["correct"]))
    return sum(programs.values()) / len(programs) if programs else 0.0


def _by_question(rows: Iterable[dict]) -> dict[int, list[dict]]:
    per_q: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        per_q[int(r["question_id"])].append(r)
    for q in per_q.values():
        q.sort(key=lambda r: int(r["sample"]))
    return dict(per_q)


def _shape(per_q: dict[int, list[dict]]) -> tuple[int, dict[str, bool]]:
    """Samples per question, and which optional fields every row carries."""
    if not per_q:
        raise ValueError("no candidates")
    sizes = {len(v) for v in per_q.values()}
    if len(sizes) != 1:
        raise ValueError(f"questions have different numbers of samples: {sorted(sizes)}")
    rows = [r for v in per_q.values() for r in v]
    has = {
        "score": all(r.get("score") is not None for r in rows),
        "logprob": all(r.get("logprob") is not None for r in rows),
        "code": all("code" in r for r in rows),
    }
    return sizes.pop(), has


def _question_values(samples: list[dict], n: int, k: int, has: dict[str, bool]) -> dict[str, float]:
    """Each pick's outcome on one question (1/0, or an expectation), from its first k samples."""
    first = samples[:k]
    v = {
        "pass": pass_at_k(n, sum(bool(r["correct"]) for r in samples), k),
        "maj": float(majority_correct(first)),
        "random": random_pick_accuracy(first),
    }
    if has["code"]:
        v["distinct"] = distinct_pick_accuracy(first)
    if has["logprob"]:
        v["likelihood"] = float(verifier_correct(first, "logprob"))
        v["weighted_likelihood"] = float(weighted_majority_correct(first, "logprob"))
    if has["score"]:
        v["verify"] = float(verifier_correct(first))
        v["weighted"] = float(weighted_majority_correct(first, "score"))
        if has["logprob"]:
            v["joint"] = float(verifier_correct(first, joint_logprob))
    return v


def compute_metrics(
    candidates: Iterable[dict], greedy: Iterable[dict] | None = None
) -> dict[str, float]:
    """The report's `metrics` from candidate rows (and greedy rows); see the module docstring."""
    per_q = _by_question(candidates)
    n, has = _shape(per_q)
    nq = len(per_q)
    metrics: dict[str, float] = {}
    if greedy is not None:
        g = list(greedy)
        metrics["greedy@1"] = sum(bool(r["correct"]) for r in g) / len(g) if g else 0.0
    for k in ks_for(n):
        values = [_question_values(v, n, k, has) for v in per_q.values()]
        for name in values[0]:
            metrics[f"{name}@{k}"] = sum(x[name] for x in values) / nq
    return metrics


def bootstrap_ci(
    values: np.ndarray,
    baseline: np.ndarray | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> list[float]:
    """Percentile bootstrap interval of mean(values - baseline) over questions.

    Resamples question indices with `np.random.default_rng(seed).integers(0, n, (n_boot, n))`;
    with a baseline the same indices serve both (a paired interval, far tighter than two
    separate ones when the picks agree on most questions). Quantiles are numpy's default
    (linear) at (1 - level) / 2 and (1 + level) / 2.
    """
    v = np.asarray(values, np.float64)
    if baseline is not None:
        v = v - np.asarray(baseline, np.float64)
    if v.ndim != 1 or not len(v):
        raise ValueError("need a non-empty 1-D array of per-question values")
    idx = np.random.default_rng(seed).integers(0, len(v), (n_boot, len(v)))
    means = v[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def per_question_outcomes(
    candidates: Iterable[dict], greedy: Iterable[dict]
) -> tuple[list[int], dict[str, np.ndarray]]:
    """(question ids, sorted; each k = N pick's per-question outcome, greedy@1 included).

    Greedy rows are matched to the candidates by `question_id`; each pick's mean is its entry
    in `compute_metrics`.
    """
    per_q = _by_question(candidates)
    n, has = _shape(per_q)
    g: dict[int, float] = {}
    for r in greedy:
        g[int(r["question_id"])] = float(bool(r["correct"]))
    qids = sorted(per_q)
    missing = [q for q in qids if q not in g]
    if missing:
        raise ValueError(f"no greedy row for question_id {missing[0]} ({len(missing)} missing)")
    values = [_question_values(per_q[q], n, n, has) for q in qids]
    out = {"greedy@1": np.asarray([g[q] for q in qids])}
    for name in values[0]:
        out[f"{name}@{n}"] = np.asarray([x[name] for x in values])
    return qids, out


def bootstrap_intervals(
    candidates: Iterable[dict],
    greedy: Iterable[dict],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict]:
    """`intervals` (each k = N pick's and greedy@1's) and `vs_greedy` (each pick minus greedy).

    Every interval is `bootstrap_ci` with the same seed, so all picks see the same resampled
    question sets; `vs_greedy[pick]` is {"diff": mean difference, "ci95": paired interval}.
    """
    _, values = per_question_outcomes(candidates, greedy)
    base = values["greedy@1"]
    intervals = {name: bootstrap_ci(v, None, n_boot, seed, level) for name, v in values.items()}
    vs_greedy = {
        name: {
            "diff": float(np.mean(v - base)),
            "ci95": bootstrap_ci(v, base, n_boot, seed, level),
        }
        for name, v in values.items()
        if name != "greedy@1"
    }
    return {"intervals": intervals, "vs_greedy": vs_greedy}


def ranking_quality(
    candidates: Iterable[dict], key: Key = "score"
) -> dict[str, float | int | None]:
    """Within-question AUC of `key` (a field, or a function of a row such as `joint_logprob`)
    over numeric samples (ties count half), and how many questions it covers."""
    value = _key_value(key)
    wins = pairs = 0.0
    mixed = 0
    for samples in _by_question(candidates).values():
        numeric = _numeric(samples)
        right = [value(r) for r in numeric if r["correct"]]
        wrong = [value(r) for r in numeric if not r["correct"]]
        if not right or not wrong:
            continue
        mixed += 1
        for a in right:
            wins += sum(1.0 if a > b else 0.5 if a == b else 0.0 for b in wrong)
        pairs += len(right) * len(wrong)
    return {"within_question_auc": wins / pairs if pairs else None, "questions": mixed}
