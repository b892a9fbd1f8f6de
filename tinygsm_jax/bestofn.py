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

Beside the metrics, `ranking_quality` says how well a key (the verifier's `score`, or
`logprob`) orders each question's own numeric samples, the only ones verify@k chooses from:
the probability that a correct one outscores a wrong one of the same question, over questions
that have both (a within-question AUC; 0.5 is chance).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

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


def verifier_correct(samples: Sequence[dict], key: str = "score") -> bool:
    """Whether the numeric sample with the highest `key` (the first of equals) is correct."""
    numeric = _numeric(samples)
    if not numeric:
        return False
    return bool(max(numeric, key=lambda s: s[key])["correct"])


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


def compute_metrics(
    candidates: Iterable[dict], greedy: Iterable[dict] | None = None
) -> dict[str, float]:
    """The report's `metrics` from candidate rows (and greedy rows); see the module docstring."""
    per_q = _by_question(candidates)
    if not per_q:
        raise ValueError("no candidates")
    sizes = {len(v) for v in per_q.values()}
    if len(sizes) != 1:
        raise ValueError(f"questions have different numbers of samples: {sorted(sizes)}")
    n = sizes.pop()
    nq = len(per_q)
    with_scores = all(r.get("score") is not None for v in per_q.values() for r in v)
    with_logprob = all(r.get("logprob") is not None for v in per_q.values() for r in v)
    with_code = all("code" in r for v in per_q.values() for r in v)
    metrics: dict[str, float] = {}
    if greedy is not None:
        g = list(greedy)
        metrics["greedy@1"] = sum(bool(r["correct"]) for r in g) / len(g) if g else 0.0
    for k in ks_for(n):
        metrics[f"pass@{k}"] = (
            sum(pass_at_k(n, sum(bool(r["correct"]) for r in v), k) for v in per_q.values()) / nq
        )
        metrics[f"maj@{k}"] = sum(majority_correct(v[:k]) for v in per_q.values()) / nq
        metrics[f"random@{k}"] = sum(random_pick_accuracy(v[:k]) for v in per_q.values()) / nq
        if with_code:
            metrics[f"distinct@{k}"] = (
                sum(distinct_pick_accuracy(v[:k]) for v in per_q.values()) / nq
            )
        if with_logprob:
            metrics[f"likelihood@{k}"] = (
                sum(verifier_correct(v[:k], "logprob") for v in per_q.values()) / nq
            )
        if with_scores:
            metrics[f"verify@{k}"] = sum(verifier_correct(v[:k]) for v in per_q.values()) / nq
    return metrics


def ranking_quality(
    candidates: Iterable[dict], key: str = "score"
) -> dict[str, float | int | None]:
    """Within-question AUC of `key` over numeric samples (ties count half), questions covered."""
    wins = pairs = 0.0
    mixed = 0
    for samples in _by_question(candidates).values():
        numeric = _numeric(samples)
        right = [float(r[key]) for r in numeric if r["correct"]]
        wrong = [float(r[key]) for r in numeric if not r["correct"]]
        if not right or not wrong:
            continue
        mixed += 1
        for a in right:
            wins += sum(1.0 if a > b else 0.5 if a == b else 0.0 for b in wrong)
        pairs += len(right) * len(wrong)
    return {"within_question_auc": wins / pairs if pairs else None, "questions": mixed}
