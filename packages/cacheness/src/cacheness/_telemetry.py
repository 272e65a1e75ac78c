"""OpenTelemetry metrics and spans of the cache layer (private).

Built on :func:`cacheness.storage.instrumentation`: without ``opentelemetry-api`` or
without a configured provider, each hook costs one dictionary look-up. With one, the
cache's counters (:class:`cacheness.stats.CacheStats`) are also the metrics
``cacheness.cache.hits``, ``.misses``, ``.puts``, ``.evictions``, ``.expirations``,
``.errors``, ``.integrity_failures`` and ``.invalid_signatures``, labelled by handler
(where one is known) and by the metadata and blob backends; the payload sizes go to the histogram
``cacheness.cache.payload.size`` and every public operation is a span
``cacheness.cache.<operation>`` (its duration in ``cacheness.cache.operation.duration``)
whose children are the storage spans. Names: ``docs/observability.md``.

Example:
    >>> from cacheness._telemetry import counted
    >>> counted({"hits": 1}, {}, handler="raw")  # no provider: nothing recorded
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, ParamSpec, TypeVar

from cacheness.storage import instrumentation, traced

P = ParamSpec("P")
R = TypeVar("R")

CACHE: Final = "cacheness.cache"
"""The cache layer's prefix of span and metric names."""

_COUNTERS: Final = {
    "hits": "cacheness.cache.hits",
    "misses": "cacheness.cache.misses",
    "puts": "cacheness.cache.puts",
    "evictions": "cacheness.cache.evictions",
    "expirations": "cacheness.cache.expirations",
    "errors": "cacheness.cache.errors",
    "integrity_failures": "cacheness.cache.integrity_failures",
    "invalid_signatures": "cacheness.cache.invalid_signatures",
    "memory_hits": "cacheness.cache.memory_hits",
}
"""CacheStats counter -> metric name (the byte counters become the size histogram)."""

_PAYLOADS: Final = {"bytes_read": "get", "bytes_written": "put"}


def counted(
    counts: Mapping[str, int],
    labels: Mapping[str, str],
    *,
    handler: str | None = None,
    reason: str | None = None,
) -> None:
    """Record counter increments of a cache as metrics (and a hit or miss on the span).

    ``labels`` are the cache's backend attributes; ``reason`` is a miss's
    (``absent``, ``expired``, ``error``, ``signature``, ``other_version``, ``too_old``).
    """
    tel = instrumentation()
    if tel is None:
        return
    attributes: dict[str, str] = dict(labels)
    if handler:
        attributes["cacheness.handler"] = handler
    for name, amount in counts.items():
        if not amount:
            continue
        metric = _COUNTERS.get(name)
        if metric is not None:
            extra = {"cacheness.miss_reason": reason} if name == "misses" and reason else {}
            tel.add(metric, amount, {**attributes, **extra})
        elif name in _PAYLOADS:
            tel.record(
                f"{CACHE}.payload.size",
                amount,
                {**attributes, "cacheness.operation": _PAYLOADS[name]},
                unit="By",
            )
    if tel.tracer is not None and ("hits" in counts or "misses" in counts):
        from opentelemetry import trace

        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("cacheness.hit", bool(counts.get("hits")))
            if reason:
                span.set_attribute("cacheness.miss_reason", reason)


def cache_operation(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a cache method: the span ``cacheness.cache.<name>`` and its duration.

    The span has the cache's backends and, when the call names one, its key prefix
    (never the key parameters).
    """
    return traced(name, CACHE, _call_attributes)


def _call_attributes(cache: Any, kwargs: Mapping[str, Any]) -> dict[str, str]:
    return span_attributes(cache, kwargs.get("key_prefix"))


def span_attributes(cache: Any, key_prefix: object) -> dict[str, str]:
    """The attributes of a cache operation's span: backends, and the key prefix if any."""
    labels: dict[str, str] = dict(cache._stats.labels)
    if isinstance(key_prefix, str) and key_prefix:
        labels["cacheness.key_prefix"] = key_prefix
    return labels
