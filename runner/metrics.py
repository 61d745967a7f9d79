"""Prometheus metrics, in a registry of the app's own (so several apps can live in one process).

The one place metrics are recorded: each request once, when it ends (``record_request``, from
the gate); the runner's state read from the runtime whenever ``/metrics`` is scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import Enum as EnumMetric
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pipelines.acceleration_report import AccelerationReport
from runner.schemas import HealthStatus

if TYPE_CHECKING:
    from runner.runtime import Reading

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)


class AccelerationCollector(Collector):
    """SFAST/DEEPCACHE state, read from the pipeline whenever ``/metrics`` is scraped."""

    def __init__(self, report: Callable[[], AccelerationReport | None]) -> None:
        self.report = report

    def collect(self) -> Iterator[Metric]:
        r = self.report() or AccelerationReport()
        yield InfoMetricFamily(
            "runner_acceleration",
            "What accelerates the model: its compiler, and whether DeepCache is on.",
            value={"compiler": r.compiler, "deepcache": str(r.deepcache).lower()},
        )
        yield GaugeMetricFamily(
            "runner_compile_failed",
            "1 when SFAST compiling failed and the model is served uncompiled.",
            value=int(r.compile_failed),
        )
        yield GaugeMetricFamily(
            "runner_compiled_model_active",
            "1 when requests run on the SFAST-compiled pipeline (0 while it compiles, also "
            "in the background after the LOADING budget, and when it failed).",
            value=int(r.compiled_active),
        )
        yield CounterMetricFamily(
            "runner_recompiles",
            "Compiles after the warm-up, for request shapes it did not cover.",
            value=r.recompiles,
        )
        if r.warmup_seconds is not None:
            yield GaugeMetricFamily(
                "runner_warmup_seconds",
                "Seconds the warm-up (and the compiling in it) took.",
                value=r.warmup_seconds,
            )


@dataclass(frozen=True)
class RequestRecord:
    """One answered request, as the gate saw it end."""

    route: str | None  # the pipeline route; None for any other path
    status: int  # 499 when the client went away
    seconds: float
    queue_seconds: float
    inference_seconds: float  # 0 when it never ran
    stopped_by: str | None  # "disconnect", "deadline" or "shutdown" when it was cancelled
    at_capacity: bool  # refused because every place was taken


class Metrics:
    def __init__(
        self,
        reading: Callable[[], Reading],
        acceleration: Callable[[], AccelerationReport | None] = lambda: None,
    ) -> None:
        self._reading = reading
        self.registry = CollectorRegistry()
        r = self.registry
        r.register(AccelerationCollector(acceleration))
        self.requests = Counter(
            "runner_requests",
            "Answered requests by route and status.",
            ["route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "runner_request_duration_seconds",
            "End-to-end time of pipeline requests.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_seconds = Histogram(
            "runner_queue_wait_seconds",
            "Time requests waited for the model and an inference slot.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "runner_inference_duration_seconds",
            "Time spent in the model.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("runner_queue_depth", "Requests waiting for a slot.", registry=r)
        self.in_flight = Gauge("runner_in_flight", "Inferences running now.", registry=r)
        self.health = EnumMetric(
            "runner_health",
            "The /health status.",
            states=[status.value for status in HealthStatus],
            registry=r,
        )
        self.load_seconds = Gauge(
            "runner_model_load_seconds",
            "Seconds from the start of loading until /health left LOADING.",
            registry=r,
        )
        self.warmup_running = Gauge(
            "runner_warmup_running",
            "1 while the warm-up runs; after the LOADING budget it goes on while requests run.",
            registry=r,
        )
        self.overloads = Counter(
            "runner_overloaded_requests", "Requests refused because the queue was full.", registry=r
        )

        self.memory_trims = Counter(
            "runner_memory_trims",
            "Times freed memory was returned to the system after a large request.",
            registry=r,
        )
        self.cancellations = Counter(
            "runner_cancelled_requests",
            "Requests stopped before their answer: the client disconnected, or the deadline.",
            ["reason"],
            registry=r,
        )

    def record_request(self, record: RequestRecord) -> None:
        route = record.route or "other"
        if record.stopped_by:
            self.cancellations.labels(reason=record.stopped_by).inc()
        if record.at_capacity:
            self.overloads.inc()
        self.requests.labels(route=route, status=str(record.status)).inc()
        if record.route is not None:
            self.request_seconds.labels(route=route).observe(record.seconds)
            if record.inference_seconds:
                self.queue_seconds.labels(route=route).observe(record.queue_seconds)
                self.inference_seconds.labels(route=route).observe(record.inference_seconds)

    def render(self) -> bytes:
        """The exposition, with the runner's state as it is now."""
        now = self._reading()
        self.health.state(now.health.value)
        self.queue_depth.set(now.waiting)
        self.in_flight.set(now.running)
        self.warmup_running.set(int(now.warmup_running))
        if now.load_seconds is not None:
            self.load_seconds.set(now.load_seconds)
        return generate_latest(self.registry)
