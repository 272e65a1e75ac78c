"""Record the OpenTelemetry spans and metrics of a block of code (needs ``opentelemetry-sdk``).

:func:`recording` installs fresh SDK providers as the global ones, with in-memory
exporters, and puts the previous global state back afterwards, so each test sees
only its own telemetry and tests after it run uninstrumented again.

Example:
    >>> from cacheness.storage import BlobStore
    >>> with recording() as telemetry:
    ...     with BlobStore(metadata_backend="memory", blob_backend="memory") as store:
    ...         _ = store.put(1, key="k")
    >>> telemetry.span_names()
    ['cacheness.storage.serialize', 'cacheness.metadata.put', 'cacheness.storage.put']
    >>> telemetry.count("cacheness.storage.operation.duration", {"cacheness.operation": "put"})
    1
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["TelemetryRecorder", "isolated_providers", "recording"]


class TelemetryRecorder:
    """The spans and metrics recorded inside :func:`recording`."""

    def __init__(self, exporter: Any, reader: Any) -> None:
        self._exporter = exporter
        self._reader = reader

    def spans(self) -> list[Any]:
        """The finished spans (SDK ``ReadableSpan``), in the order they ended."""
        return list(self._exporter.get_finished_spans())

    def span_names(self) -> list[str]:
        """The names of the finished spans, in the order they ended."""
        return [span.name for span in self.spans()]

    def tree(self, root: str, which: int = -1) -> dict[str, Any]:
        """A finished span named ``root`` as ``{name: {child name: {...}}}``.

        ``which`` picks among the spans of that name, in the order they ended (default:
        the last). Children with the same name are merged.
        """
        spans = self.spans()
        top = [span for span in spans if span.name == root]
        if not top:
            raise AssertionError(f"no span {root!r} among {[span.name for span in spans]}")

        def below(parent: Any) -> dict[str, Any]:
            tree: dict[str, Any] = {}
            for span in spans:
                if span.parent is not None and span.parent.span_id == parent.context.span_id:
                    tree.setdefault(span.name, {}).update(below(span))
            return tree

        return {root: below(top[which])}

    def clear_spans(self) -> None:
        """Forget the spans recorded so far."""
        self._exporter.clear()

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """``(attributes, point)`` of every data point of metric ``name`` (cumulative)."""
        data = self._reader.get_metrics_data()
        found: list[tuple[dict[str, Any], Any]] = []
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend((dict(p.attributes), p) for p in metric.data.data_points)
        return found

    def value(self, name: str, attributes: Mapping[str, Any] | None = None) -> float:
        """The sum of a counter's (or gauge's) points whose attributes include ``attributes``."""
        return float(
            sum(point.value for attrs, point in self.points(name) if _includes(attrs, attributes))
        )

    def count(self, name: str, attributes: Mapping[str, Any] | None = None) -> int:
        """How many values a histogram recorded, over the points matching ``attributes``."""
        return sum(
            point.count for attrs, point in self.points(name) if _includes(attrs, attributes)
        )

    def total(self, name: str, attributes: Mapping[str, Any] | None = None) -> float:
        """The sum of the values a histogram recorded, over the points matching."""
        return float(
            sum(point.sum for attrs, point in self.points(name) if _includes(attrs, attributes))
        )


def _includes(attributes: Mapping[str, Any], wanted: Mapping[str, Any] | None) -> bool:
    return all(attributes.get(key) == value for key, value in (wanted or {}).items())


@contextlib.contextmanager
def isolated_providers() -> Iterator[None]:
    """Let a block set the global tracer and meter providers; restore them afterwards.

    The OpenTelemetry API lets a process set its providers once; inside this block they
    are unset, so code under test (or a documentation example) may set its own.
    """
    from opentelemetry import trace
    from opentelemetry.metrics import _internal as metrics
    from opentelemetry.util._once import Once

    saved = (
        trace._TRACER_PROVIDER,
        trace._TRACER_PROVIDER_SET_ONCE,
        metrics._METER_PROVIDER,
        metrics._METER_PROVIDER_SET_ONCE,
    )
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = None, Once()
    metrics._METER_PROVIDER, metrics._METER_PROVIDER_SET_ONCE = None, Once()
    try:
        yield
    finally:
        (
            trace._TRACER_PROVIDER,
            trace._TRACER_PROVIDER_SET_ONCE,
            metrics._METER_PROVIDER,
            metrics._METER_PROVIDER_SET_ONCE,
        ) = saved


@contextlib.contextmanager
def recording() -> Iterator[TelemetryRecorder]:
    """Install SDK tracer and meter providers with in-memory exporters for the block."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    with isolated_providers():
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        try:
            yield TelemetryRecorder(exporter, reader)
        finally:
            tracer_provider.shutdown()
            meter_provider.shutdown()
