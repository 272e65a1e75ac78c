"""OpenTelemetry metrics and traces of both packages, paid for only when someone listens.

``opentelemetry-api`` is an optional dependency (the ``otel`` extra). Instrumented code
asks :func:`instrumentation` at each operation boundary; it returns None - after one
``sys.modules`` look-up, without importing anything - unless the application has
installed a tracer provider or a meter provider (``trace.set_tracer_provider``,
``metrics.set_meter_provider``, or ``opentelemetry-instrument``). Then it returns the
:class:`Instrumentation` built for those providers (built once, rebuilt when a provider
is replaced), whose spans, counters and histograms follow the names documented in
``docs/observability.md``. The names are versioned: every span and data point carries
``cacheness.schema_version`` (:data:`SCHEMA_VERSION`), changed only with a release note.

Attributes describe the operation (backend, handler, sizes, key prefix, retries),
never key parameter values, keys or stored data.

Example:
    >>> from cacheness.storage import instrumentation
    >>> instrumentation() is None  # no provider configured in this process
    True
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from cacheness.storage.errors import IntegrityError

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, Meter, Observation
    from opentelemetry.trace import Span, Tracer

__all__ = ["SCHEMA_VERSION", "Instrumentation", "instrumentation", "traced"]

SCHEMA_VERSION = "1"
"""Version of the metric and span names and attributes (``cacheness.schema_version``)."""

P = ParamSpec("P")
R = TypeVar("R")

STORAGE = "cacheness.storage"
"""The storage layer's prefix of span and metric names."""

SCOPE = "cacheness"
"""The instrumentation scope (tracer and meter name)."""

Attributes = Mapping[str, str | bool | int | float]
_modules = sys.modules
_built: Instrumentation | None = None
_build_lock = threading.Lock()
_gauges: list[Callable[[], Iterable[tuple[str, float, Attributes]]]] = []


def instrumentation() -> Instrumentation | None:
    """Return the instrumentation for the configured OpenTelemetry providers, or None.

    None when ``opentelemetry-api`` is not installed or not imported, or when the
    application has set neither a tracer provider nor a meter provider: the check is
    a dictionary look-up, so uninstrumented code pays nothing measurable.

    Example:
        >>> instrumentation() is None
        True
    """
    trace = _modules.get("opentelemetry.trace")
    if trace is None:
        return None
    tracer_provider = trace._TRACER_PROVIDER
    metrics = _modules.get("opentelemetry.metrics._internal")
    meter_provider = None if metrics is None else metrics._METER_PROVIDER
    if tracer_provider is None and meter_provider is None:
        return None
    built = _built
    if (
        built is not None
        and built.tracer_provider is tracer_provider
        and built.meter_provider is meter_provider
    ):
        return built
    return _build(tracer_provider, meter_provider)


def _build(tracer_provider: Any, meter_provider: Any) -> Instrumentation:
    global _built
    with _build_lock:
        built = _built
        if (
            built is None
            or built.tracer_provider is not tracer_provider
            or built.meter_provider is not meter_provider
        ):
            built = _built = Instrumentation(tracer_provider, meter_provider)
        return built


def register_gauges(source: Callable[[], Iterable[tuple[str, float, Attributes]]]) -> None:
    """Add a source of gauge readings ``(metric name, value, attributes)``.

    Sources are read when a meter provider collects (e.g. a Prometheus scrape); a
    source stays registered for the life of the process, so it should hold its objects
    weakly and yield nothing once they are gone.
    """
    with _build_lock:
        _gauges.append(source)


GAUGES: dict[str, tuple[str, str]] = {
    "cacheness.storage.pool.size": ("{connection}", "Connections the pool keeps open."),
    "cacheness.storage.pool.checked_out": ("{connection}", "Connections in use."),
    "cacheness.storage.pool.overflow": ("{connection}", "Connections beyond pool_size."),
    "cacheness.storage.pool.waits": ("{checkout}", "Checkouts that found the pool exhausted."),
    "cacheness.storage.pool.timeouts": ("{checkout}", "Checkouts that timed out."),
}
"""Observable gauges read from :func:`register_gauges` sources: name -> (unit, description)."""


def entry_inline(entry: object) -> bool | None:
    """Whether an entry's payload lives in the index (None: not an entry)."""
    if not hasattr(entry, "inline"):
        return None
    return entry.inline is not None


class _NoSpan:
    """What :meth:`Instrumentation.span` gives without a tracer provider."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SPAN = _NoSpan()


class Instrumentation:
    """Tracer and meter of one pair of providers, with the instruments made on demand.

    Use :func:`instrumentation` to get the current one. The cache layer records its
    own instruments through :meth:`counter`, :meth:`histogram` and :meth:`operation`.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> tel = Instrumentation(TracerProvider(), None)
        >>> with tel.operation("cacheness.storage", "get", {}) as op:
        ...     op.span.is_recording()
        True
    """

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        from cacheness.storage._version import __version__

        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.tracer: Tracer | None = (
            None if tracer_provider is None else tracer_provider.get_tracer(SCOPE, __version__)
        )
        self.meter: Meter | None = (
            None if meter_provider is None else meter_provider.get_meter(SCOPE, __version__)
        )
        self._counters: dict[str, Counter] = {}
        self._histograms: dict[str, Histogram] = {}
        self._lock = threading.Lock()
        if self.meter is not None:
            for name, (unit, description) in GAUGES.items():
                self.meter.create_observable_gauge(
                    name, [self._observe_gauge(name)], unit=unit, description=description
                )

    # -- metrics ------------------------------------------------------------------------

    def counter(self, name: str, unit: str = "1", description: str = "") -> Counter | None:
        """Return the counter ``name`` (made once), or None without a meter provider."""
        return cast("Counter | None", self._instrument(self._counters, name, unit, description))

    def histogram(self, name: str, unit: str = "1", description: str = "") -> Histogram | None:
        """Return the histogram ``name`` (made once), or None without a meter provider."""
        return cast("Histogram | None", self._instrument(self._histograms, name, unit, description))

    def _instrument(
        self, made: dict[str, Any], name: str, unit: str, description: str
    ) -> Counter | Histogram | None:
        found = made.get(name)
        if found is None and self.meter is not None:
            create = (
                self.meter.create_counter if made is self._counters else self.meter.create_histogram
            )
            with self._lock:
                found = made.get(name)
                if found is None:
                    found = made[name] = create(name, unit=unit, description=description)
        return cast("Counter | Histogram | None", found)

    def add(self, name: str, amount: int, attributes: Attributes, unit: str = "1") -> None:
        """Add ``amount`` to counter ``name`` with the schema version among the attributes."""
        counter = self.counter(name, unit)
        if counter is not None and amount:
            counter.add(amount, {**attributes, "cacheness.schema_version": SCHEMA_VERSION})

    def record(self, name: str, value: float, attributes: Attributes, unit: str = "1") -> None:
        """Record ``value`` in histogram ``name``."""
        histogram = self.histogram(name, unit)
        if histogram is not None:
            histogram.record(value, {**attributes, "cacheness.schema_version": SCHEMA_VERSION})

    def _observe_gauge(self, name: str) -> Callable[[Any], Iterator[Observation]]:
        def observe(_options: Any) -> Iterator[Observation]:
            from opentelemetry.metrics import Observation

            with _build_lock:
                sources = list(_gauges)
            for source in sources:
                for metric, value, attributes in source():
                    if metric == name:
                        yield Observation(
                            value, {**attributes, "cacheness.schema_version": SCHEMA_VERSION}
                        )

        return observe

    # -- traces -------------------------------------------------------------------------

    def span(self, name: str, attributes: Attributes) -> Any:
        """A context manager: a child span ``name`` (the current span yielded), or nothing."""
        if self.tracer is None:
            return _NO_SPAN
        return self.tracer.start_as_current_span(
            name, attributes={**attributes, "cacheness.schema_version": SCHEMA_VERSION}
        )

    def operation(self, layer: str, name: str, attributes: Attributes) -> Operation:
        """A context manager around one public operation of ``layer``.

        Opens the span ``{layer}.{name}``, records its duration in the histogram
        ``{layer}.operation.duration`` and a failure in the counter ``{layer}.errors``
        (with ``error.type``); the span gets the exception and an error status.
        """
        return Operation(self, layer, name, attributes)


class Operation:
    """One operation in progress (see :meth:`Instrumentation.operation`).

    :meth:`set` adds span attributes once they are known (a hit, the handler, the size).
    """

    __slots__ = ("_attributes", "_context", "_layer", "_name", "_start", "span", "tel")

    def __init__(self, tel: Instrumentation, layer: str, name: str, attributes: Attributes) -> None:
        self.tel = tel
        self._layer = layer
        self._name = name
        self._attributes = {"cacheness.operation": name, **attributes}
        self._context: Any = None
        self.span: Span | None = None
        self._start = 0.0

    def __enter__(self) -> Operation:
        tracer = self.tel.tracer
        if tracer is not None:
            self._context = tracer.start_as_current_span(
                f"{self._layer}.{self._name}",
                attributes={**self._attributes, "cacheness.schema_version": SCHEMA_VERSION},
            )
            self.span = self._context.__enter__()
        self._start = time.perf_counter()
        return self

    def set(self, name: str, value: str | bool | int | float) -> None:
        """Set a span attribute of this operation."""
        if self.span is not None:
            self.span.set_attribute(name, value)

    def payload(self, handler: str, size: int, *, inline: bool | None = None) -> None:
        """Describe the payload written or read: span attributes and the size histogram."""
        if self.span is not None:
            self.span.set_attribute("cacheness.handler", handler)
            self.span.set_attribute("cacheness.size", size)
            if inline is not None:
                self.span.set_attribute("cacheness.inline", inline)
        attributes = {**self._attributes, "cacheness.handler": handler}
        self.tel.record(f"{self._layer}.payload.size", size, attributes, unit="By")

    def describe(self, result: object) -> None:
        """Describe the span by an operation's result: an entry read or written, a count."""
        entry = getattr(result, "entry", result)  # a Lookup carries its entry
        handler = getattr(entry, "handler", None)
        if isinstance(handler, str) and handler:
            self.payload(handler, int(getattr(entry, "size", 0)), inline=entry_inline(entry))
        elif isinstance(result, int) and not isinstance(result, bool):
            self.set("cacheness.count", result)
        elif isinstance(result, list | dict):
            self.set("cacheness.count", len(result))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._start
        attributes = dict(self._attributes)
        if exc_type is not None:
            attributes["error.type"] = exc_type.__name__
            self.tel.add(f"{self._layer}.errors", 1, attributes)
            if isinstance(exc, IntegrityError):
                self.tel.add(f"{self._layer}.integrity_failures", 1, self._attributes)
        self.tel.record(f"{self._layer}.operation.duration", elapsed, attributes, unit="s")
        if self._context is not None:
            self._context.__exit__(exc_type, exc, tb)


def child(name: str, backend: str) -> Any:
    """A context manager: the span of one backend call, or nothing without a tracer.

    Example:
        >>> with child("cacheness.metadata.put", "sqlite"):
        ...     pass
    """
    tel = instrumentation()
    if tel is None:
        return _NO_SPAN
    return tel.span(name, {"cacheness.backend": backend})


def traced(
    name: str,
    layer: str = STORAGE,
    attributes: Callable[[Any, Mapping[str, Any]], Attributes] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a method: the operation ``<layer>.<name>`` (span, duration, errors).

    Off (no provider), the cost is one call of :func:`instrumentation`. ``attributes``
    gives the span's attributes from the object and the call's keyword arguments
    (default: the ``BlobStore``'s backends). The result describes the span when it is
    an entry (handler, size, inline) or a count.

    Example:
        >>> class Index:
        ...     _telemetry_attributes = {"cacheness.metadata_backend": "memory"}
        ...     @traced("size")
        ...     def size(self):
        ...         return 3
        >>> Index().size()
        3
    """

    def decorate(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            tel = instrumentation()
            if tel is None:
                return method(*args, **kwargs)
            owner: Any = args[0]
            described = (
                owner._telemetry_attributes if attributes is None else attributes(owner, kwargs)
            )
            with tel.operation(layer, name, described) as op:
                result = method(*args, **kwargs)
                op.describe(result)
                return result

        return run

    return decorate


def record_retry(attempt: int, attributes: Attributes) -> None:
    """Note a retried request on the current span: an event, and ``cacheness.retries``.

    ``attempt`` is the number of the attempt about to be made (2 for the first retry).
    """
    tel = instrumentation()
    if tel is None or tel.tracer is None:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("cacheness.retries", attempt - 1)
        span.add_event(
            "cacheness.retry",
            {**attributes, "attempt": attempt, "cacheness.schema_version": SCHEMA_VERSION},
        )
