"""Talking to a teacher: rate limits, retries with backoff, and a clear line for fatal errors.

The openai client's own retries are switched off (`max_retries=0`) so that every retry is
counted, honours the server's `retry-after`, draws on a shared retry budget, and slows all
workers down together after a 429 rather than each one finding out on its own.

Limits are client-side GCRA schedules (a "virtual time" per limit): a request may start
when the schedule allows it, and then pushes the schedule forward by its cost. RPM is
enforced with one request of slack (a start that woke up late does not lose its slot, but no
burst builds up), so any interval of T seconds holds at most T*RPM/60 + 2 starts; TPM is charged with an estimate (prompt + max_tokens) and corrected
with the real usage when the answer comes back.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass, field

import openai

from tinygsm_jax.cli import UserError


class RateLimiter:
    """Start no more than `per_minute` units per minute (GCRA with `burst_s` of slack)."""

    def __init__(self, per_minute: float | None, burst_s: float = 0.0) -> None:
        self.rate = (per_minute / 60.0) if per_minute else None
        self.burst_s = burst_s
        self._tat = 0.0  # theoretical arrival time: when the schedule is free again
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until `amount` units may be spent now, then spend them."""
        async with self._lock:  # first come, first served
            while True:
                now = time.monotonic()
                ready = max(self._paused_until, self._tat - self.burst_s if self.rate else 0.0)
                if now >= ready:
                    break
                await asyncio.sleep(ready - now)
            if self.rate:
                self._tat = max(self._tat, now) + amount / self.rate

    def adjust(self, delta: float) -> None:
        """Correct a charge after the fact (real usage minus the estimate)."""
        if self.rate:
            self._tat += delta / self.rate

    def pause(self, seconds: float) -> None:
        """Start nothing for `seconds` (a server asked to wait, e.g. 429 with retry-after)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter, a per-request cap and a shared budget.

    The budget allows `budget_min` retries plus `budget_ratio` retries per successful
    request (the retry-budget idea of Finagle/gRPC): a sick server makes the run stop with a
    clear message instead of hammering it forever; a rerun resumes.
    """

    max_attempts: int = 8
    base_s: float = 1.0
    cap_s: float = 60.0
    budget_min: int = 100
    budget_ratio: float = 0.5

    def backoff(self, attempt: int) -> float:
        return random.uniform(0.5, 1.0) * min(self.cap_s, self.base_s * 2**attempt)


@dataclass
class Completion:
    """One answer, with what it cost to get."""

    text: str
    finish_reason: str
    usage: dict = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class SeedFailed(Exception):
    """This seed could not be completed now (a rerun will try it again)."""

    def __init__(self, message: str, usage: dict | None = None) -> None:
        super().__init__(message)
        self.usage = usage or {}


class Fatal(UserError):
    """The run cannot go on (bad key, unknown model, unreachable server, budget spent)."""


def _retry_after(err: openai.APIStatusError) -> float | None:
    headers = err.response.headers
    if "retry-after-ms" in headers:
        try:
            return float(headers["retry-after-ms"]) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


class Teacher:
    """An OpenAI-compatible chat model behind limits, retries and accounting."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        *,
        temperature: float = 1.0,
        max_tokens: int = 4096,
        rpm: float | None = None,
        tpm: float | None = None,
        concurrency: int = 8,
        policy: RetryPolicy | None = None,
        price: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        self.client, self.model = client, model
        self.temperature, self.max_tokens = temperature, max_tokens
        self.rpm = RateLimiter(rpm, burst_s=60.0 / rpm if rpm else 0.0)  # one start of slack
        self.tpm = RateLimiter(tpm, burst_s=5.0)
        self.slots = asyncio.Semaphore(concurrency)
        self.policy = policy or RetryPolicy()
        self.price = price
        self.ok = 0  # successful requests in this run
        self.retries = 0  # retries in this run
        self.base_url = str(client.base_url)

    def _budget_left(self) -> bool:
        return self.retries < self.policy.budget_min + self.policy.budget_ratio * self.ok

    async def complete(self, messages: list[dict[str, str]], est_tokens: int) -> Completion:
        """Ask once for `messages`, retrying transient failures; raise SeedFailed or Fatal."""
        usage = {"requests": 0, "retries": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}
        attempt = 0
        while True:
            charge = est_tokens + self.max_tokens
            async with self.slots:
                await self.rpm.acquire()
                await self.tpm.acquire(charge)
                usage["requests"] += 1
                wait = None
                try:
                    resp = await self.client.chat.completions.create(
                        model=self.model,
                        messages=messages,
                        temperature=self.temperature,
                        max_tokens=self.max_tokens,
                    )
                except openai.AuthenticationError as e:
                    raise Fatal(
                        f"authentication failed at {self.base_url} ({e.status_code}): check OPENAI_API_KEY"
                    ) from None
                except openai.NotFoundError:
                    raise Fatal(f"model {self.model!r} not found at {self.base_url}") from None
                except openai.PermissionDeniedError as e:
                    raise Fatal(f"permission denied at {self.base_url}: {e.message}") from None
                except openai.RateLimitError as e:
                    wait = _retry_after(e)
                    if wait is not None:
                        self.rpm.pause(wait)
                    error = "429 rate limited"
                except openai.APIStatusError as e:
                    if e.status_code < 500 and e.status_code not in (408, 409):
                        raise SeedFailed(f"HTTP {e.status_code}: {e.message}", usage) from None
                    error = f"HTTP {e.status_code}"
                except openai.APITimeoutError:
                    error = "timeout"
                except openai.APIConnectionError as e:
                    error = f"connection error ({e.__cause__ or e})"
                    if self.ok == 0 and attempt + 1 >= min(3, self.policy.max_attempts):
                        raise Fatal(
                            f"cannot reach the server at {self.base_url}: {error}"
                        ) from None
                else:
                    self.ok += 1
                    u = resp.usage
                    t_in = u.prompt_tokens if u else est_tokens
                    t_out = u.completion_tokens if u else 0
                    self.tpm.adjust(t_in + t_out - charge)
                    usage["tokens_in"] += t_in
                    usage["tokens_out"] += t_out
                    usage["cost_usd"] = (
                        usage["tokens_in"] * self.price[0] + usage["tokens_out"] * self.price[1]
                    ) / 1e6
                    if not resp.choices:
                        raise SeedFailed("answer without choices", usage)
                    choice = resp.choices[0]
                    return Completion(
                        choice.message.content or "", choice.finish_reason or "stop", usage
                    )
            attempt += 1
            if attempt >= self.policy.max_attempts:
                raise SeedFailed(f"gave up after {attempt} attempts: {error}", usage)
            if not self._budget_left():
                raise Fatal(
                    f"retry budget spent ({self.retries} retries, last: {error}); the server looks unhealthy, rerun to resume"
                )
            self.retries += 1
            usage["retries"] += 1
            delay = self.policy.backoff(attempt)
            if wait is not None:
                delay = wait + random.uniform(0, 0.1 * wait + 0.05)
            await asyncio.sleep(delay)
