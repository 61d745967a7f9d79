"""Prometheus metrics, in a registry of the app's own (so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import Enum as EnumMetric

from runner.schemas import HealthStatus

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
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
            "runner_model_load_seconds", "Seconds the model took to load and warm up.", registry=r
        )
        self.overloads = Counter(
            "runner_overloaded_requests", "Requests refused because the queue was full.", registry=r
        )

        self.cancellations = Counter(
            "runner_cancelled_requests",
            "Requests stopped before their answer: the client disconnected, or the deadline.",
            ["reason"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
