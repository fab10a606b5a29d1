"""Fixtures of the convkit-otel tests: the SDK's in-memory span exporter and metric reader."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import convkit_otel
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from convkit.testing import FakeChatServer

# Installed plugins (this one included) are not loaded from entry points while tests run:
# each test registers exactly the plugins it means to.
sys._called_from_test = True  # type: ignore[attr-defined]


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio."""
    return "asyncio"


class Telemetry:
    """What the plugin emitted during one test."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        """Every histogram data point of metric ``name``."""
        data = self.reader.get_metrics_data()
        out = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        out.extend(metric.data.data_points)
        return out

    def unit(self, name: str) -> str:
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        return str(metric.unit)
        raise KeyError(name)


@pytest.fixture
def telemetry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Telemetry]:
    """The plugin configured to send to in-memory exporters (content capture off)."""
    monkeypatch.delenv(convkit_otel.CAPTURE_ENV, raising=False)
    t = Telemetry()
    convkit_otel.configure(tracer_provider=t.tracer_provider, meter_provider=t.meter_provider)
    try:
        yield t
    finally:
        convkit_otel.configure()
        t.tracer_provider.shutdown()
        t.meter_provider.shutdown()


@pytest.fixture
def server() -> Iterator[FakeChatServer]:
    with FakeChatServer() as s:
        yield s
