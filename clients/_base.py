"""What the sync and async clients share: configuration, input coercion, error mapping and the retry loop.

Both clients run the same state machine (`Call`) and differ only in how they wait and send: the sync one
sleeps and uses `httpx.Client`, the async one awaits. Nothing here does network I/O.

Retry policy (every paretorm request is idempotent: scoring the same input twice gives the same numbers
and changes no server state, so a retry can never double-count):
- connection errors (refused, reset, a replica killed mid-call), per-attempt timeouts, 502 and 503: retry,
  preferably on another replica; the failure counts towards taking that replica out;
- 429: retry after the server's `Retry-After` (another replica first, if one is free);
- every other 4xx: raise at once (`BadRequest`, `Unauthorized`); 500: raise at once (`RewardServiceError`);
- 504, or the call's total deadline running out: `Timeout`.
Waits are jittered exponential backoff (`RetryPolicy`), never shorter than `Retry-After` when the same
replica is retried, and never past the deadline. The remaining deadline travels with each attempt in the
`X-Request-Deadline-Ms` header, so the server drops work nobody will read.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from clients._pool import Replica, ReplicaPool
from clients.errors import BadRequest, Overloaded, RewardServiceError, Timeout, Unauthorized, Unavailable
from clients.protocol import ErrorResponse, Prompt, ScoreGroup, ScoreItem
from clients.wire_values import first_invalid_value

API_KEY_ENV = "PARETORM_API_KEY"
URL_ENV = "PARETORM_URL"
DEADLINE_HEADER = "X-Request-Deadline-Ms"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
"""Per-attempt limits; the whole call is bounded by `deadline_s` as well."""
DEFAULT_DEADLINE_S = 300.0
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
RETRY_STATUSES = frozenset({502, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """Jittered exponential backoff: wait n is uniform in [d/2, d], d = min(max, initial * factor**n)."""

    max_attempts: int = 10
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")

    def backoff(self, retry: int, rng: random.Random) -> float:
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * self.factor**retry)
        return rng.uniform(ceiling / 2, ceiling)


def resolve_urls(url: str | Sequence[str] | None) -> list[str]:
    """URLs from the argument, else from `PARETORM_URL` (comma-separated for several replicas)."""
    if url is None:
        url = os.environ.get(URL_ENV, "")
    urls = [u.strip() for u in url.split(",")] if isinstance(url, str) else [str(u).strip() for u in url]
    urls = [u for u in urls if u]
    for u in urls:
        if not u.startswith(("http://", "https://")):
            raise ValueError(f"service URL {u!r} needs a scheme: write 'http://{u}'")
    if not urls:
        raise ValueError(f"no service URL: pass url='http://host:port' or set {URL_ENV}")
    return urls


def resolve_api_key(api_key: str | None) -> str | None:
    return api_key if api_key is not None else (os.environ.get(API_KEY_ENV) or None)


def coerce_prompt(prompt: Any) -> Prompt:
    """A prompt as text, or as chat messages (dicts with `role` and `content`; extra keys are dropped)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence):
        return [{"role": m["role"], "content": m["content"]} if isinstance(m, Mapping) else m for m in prompt]  # type: ignore[return-value]
    raise TypeError(f"a prompt is a str or a list of messages, got {type(prompt).__name__}")


def coerce_item(item: ScoreItem | Mapping[str, Any] | tuple[Any, str]) -> ScoreItem:
    """Accept a `ScoreItem`, its dict form, or a `(prompt, response)` pair."""
    if isinstance(item, ScoreItem):
        return item
    try:
        if isinstance(item, tuple):
            prompt, response = item
            return ScoreItem(prompt=coerce_prompt(prompt), response=response)
        return ScoreItem.model_validate(item)
    except ValidationError as exc:
        raise BadRequest(f"invalid item {item!r}: {exc}", error_type="invalid_request") from exc


def coerce_group(group: ScoreGroup | Mapping[str, Any]) -> ScoreGroup:
    if isinstance(group, ScoreGroup):
        return group
    try:
        return ScoreGroup.model_validate(group)
    except ValidationError as exc:
        raise BadRequest(f"invalid group: {exc}", error_type="invalid_request") from exc


def parse_retry_after(headers: httpx.Headers, now: Callable[[], float] = time.time) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date), or None when absent or unreadable."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def error_from_response(response: httpx.Response, url: str) -> RewardServiceError:
    """Map a non-2xx answer to the exception tree, keeping the server's message."""
    status = response.status_code
    message, error_type = f"HTTP {status}", None
    try:
        envelope = ErrorResponse.model_validate_json(response.content)
        message, error_type = envelope.error.message, envelope.error.type
    except ValidationError:
        text = response.text.strip()
        if text:
            message = f"HTTP {status}: {text[:500]}"
    kwargs: dict[str, Any] = {"status_code": status, "error_type": error_type, "url": url}
    if status == 401 or status == 403:
        return Unauthorized(f"{message} (pass api_key= or set {API_KEY_ENV})", **kwargs)
    if status == 429:
        return Overloaded(message, **kwargs)
    if status in RETRY_STATUSES:
        return Unavailable(message, **kwargs)
    if status == 504:
        return Timeout(message, **kwargs)
    if 400 <= status < 500:
        return BadRequest(message, **kwargs)
    return RewardServiceError(message, **kwargs)


@dataclass
class Attempt:
    replica: Replica
    headers: dict[str, str]
    timeout: httpx.Timeout
    url: str


@dataclass
class Retry:
    delay_s: float


@dataclass
class Call:
    """One logical call: picks replicas, times attempts, and decides after each one (no I/O)."""

    pool: ReplicaPool
    policy: RetryPolicy
    timeout: httpx.Timeout
    deadline_s: float | None
    base_headers: Mapping[str, str]
    rng: random.Random
    clock: Callable[[], float] = time.monotonic
    budget_s: float | None = None
    started_at: float = field(init=False)
    attempts: int = field(init=False, default=0)
    failed_here: list[Replica] = field(init=False, default_factory=list)
    last_error: RewardServiceError | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.started_at = self.clock()

    def remaining(self) -> float | None:
        if self.deadline_s is None:
            return None
        return self.deadline_s - (self.clock() - self.started_at)

    def _timeout_error(self) -> Timeout:
        last = f"; last error: {self.last_error}" if self.last_error else ""
        return Timeout(
            f"no answer within the call's deadline of {self.budget_s or self.deadline_s} s after "
            f"{self.attempts} attempt(s){last}; "
            "raise deadline_s or check the service",
            url=self.last_error.url if self.last_error else None,
        )

    def begin(self, path: str, replica: Replica) -> Attempt:
        """Prepare an attempt on `replica` (chosen by `next_replica`)."""
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise self._timeout_error()
        self.attempts += 1
        headers = dict(self.base_headers)
        if replica.host_header:
            headers["Host"] = replica.host_header
        timeout = self.timeout
        if remaining is not None:
            headers[DEADLINE_HEADER] = str(max(1, int(remaining * 1000)))
            timeout = httpx.Timeout(
                connect=_cap(self.timeout.connect, remaining),
                read=_cap(self.timeout.read, remaining),
                write=_cap(self.timeout.write, remaining),
                pool=_cap(self.timeout.pool, remaining),
            )
        self.pool.started(replica)
        return Attempt(replica, headers, timeout, replica.url + path)

    def next_replica(self) -> tuple[Replica, float]:
        """The replica for the next attempt and how long to sleep first (jittered, deadline-capped)."""
        if self.pool.all_out():
            self.pool.rediscover()
        replica, wait = self.pool.pick(avoid=self.failed_here)
        if self.attempts > 0 and (wait > 0 or replica in self.failed_here):
            wait = max(wait * self.rng.uniform(1.0, 1.2), self.policy.backoff(self.attempts - 1, self.rng))
        remaining = self.remaining()
        if remaining is not None and wait >= remaining:
            raise self._timeout_error()
        return replica, wait

    def on_response(self, attempt: Attempt, response: httpx.Response) -> Retry | None:
        """None when `response` is the answer; a `Retry` to go again; raises when the call has failed."""
        status = response.status_code
        if status < 400:
            self.pool.succeeded(attempt.replica)
            return None
        error = error_from_response(response, attempt.url)
        retry_after = parse_retry_after(response.headers)
        if status == 429:
            self.pool.busy(attempt.replica, retry_after if retry_after is not None else 1.0)
        elif status in RETRY_STATUSES:
            self.pool.failed(attempt.replica, retry_after)
            self.failed_here.append(attempt.replica)
        else:
            self.pool.answered(attempt.replica)
            raise error
        return self._retry_or_raise(error)

    def on_exception(self, attempt: Attempt, exc: Exception) -> Retry:
        """A transport failure (refused, reset, per-attempt timeout): retry elsewhere or raise."""
        self.pool.failed(attempt.replica)
        self.failed_here.append(attempt.replica)
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        error = Unavailable(f"request {kind}: {type(exc).__name__}: {exc}", url=attempt.url)
        return self._retry_or_raise(error)

    def _retry_or_raise(self, error: RewardServiceError) -> Retry:
        self.last_error = error
        if self.attempts >= self.policy.max_attempts:
            error.message = f"{error.message} (gave up after {self.attempts} attempts)"
            raise error
        return Retry(0.0)


def _cap(value: float | None, remaining: float) -> float:
    return remaining if value is None else min(value, max(remaining, 0.001))


def parse_body(model: type[BaseModel], response: httpx.Response, url: str) -> Any:
    """Validate a 2xx body with the shared protocol model; a mismatch is a protocol error, not a crash."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise RewardServiceError(
            f"the service's answer does not match {model.__name__}: {exc}; client and service versions "
            "differ",
            status_code=response.status_code,
            error_type="protocol_mismatch",
            url=url,
        ) from exc


def check_wire_values(body: Any) -> None:
    """Raise `BadRequest` naming the first value of `body` the service would refuse (see `encode_json`)."""
    problem = first_invalid_value(body)
    if problem is not None:
        raise BadRequest(problem, error_type="invalid_request")


def encode_json(body: Any) -> bytes:
    """The body as UTF-8 JSON; `BadRequest` (never a raw `UnicodeEncodeError`) for what the wire forbids.

    The same check the service runs on every body (`clients.wire_values`), so a lone surrogate, a NaN or
    an integer beyond a float fails here, with the field's path, before a request is sent or retried.
    """
    check_wire_values(body)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def make_headers(api_key: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    headers.update(extra or {})
    return headers
