"""The metric names (LiteLLM's, so that its Grafana dashboards work unchanged) and their text format."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from gateway.metrics.tallies import Tallies

CALLER = ("api_key_alias", "hashed_api_key", "team", "user")
REQUESTS = ("requested_model", *CALLER)
DEPLOYMENT = ("model", "model_id", *CALLER)
UPSTREAM = ("model_group", "model_id", "api_base")


class Spec(NamedTuple):
    kind: str  # counter, histogram or gauge
    doc: str
    labels: tuple[str, ...]
    combine: str = "latest"  # how workers' gauges add up: sum, max or latest


SPECS: dict[str, Spec] = {
    "litellm_proxy_total_requests_metric": Spec(
        "counter", "Requests made to the proxy, by model group, caller and status class",
        (*REQUESTS, "status_class")),
    "litellm_proxy_failed_requests_metric": Spec(
        "counter", "Requests the proxy answered with an error", (*REQUESTS, "exception_status", "exception_class")),
    "litellm_spend_metric": Spec("counter", "Spend on LLM requests, in USD", DEPLOYMENT),
    "litellm_total_tokens_metric": Spec("counter", "Input plus output tokens", DEPLOYMENT),
    "litellm_input_tokens_metric": Spec("counter", "Input (prompt) tokens", DEPLOYMENT),
    "litellm_output_tokens_metric": Spec("counter", "Output (completion) tokens", DEPLOYMENT),
    "litellm_request_total_latency_metric": Spec(
        "histogram", "Seconds from the request's arrival to its last byte", REQUESTS),
    "litellm_llm_api_latency_metric": Spec(
        "histogram", "Seconds the upstream took: to the whole body, or to a stream's end", DEPLOYMENT),
    "litellm_llm_api_time_to_first_token_metric": Spec(
        "histogram", "Seconds from sending a streaming request upstream to its first chunk", DEPLOYMENT),
    "litellm_overhead_latency_metric": Spec(
        "histogram", "Seconds the proxy added: total latency minus the upstream's", DEPLOYMENT),
    "litellm_deployment_state": Spec(
        "gauge", "0 healthy, 1 failing (below allowed_fails), 2 cooling down", UPSTREAM, "max"),
    "litellm_deployment_cooled_down": Spec(
        "counter", "Times a deployment was put to rest after failures or an upstream 429", UPSTREAM),
    "litellm_remaining_requests_metric": Spec(
        "gauge", "Requests left in the upstream's window, from its x-ratelimit-remaining-requests", UPSTREAM),
    "litellm_remaining_tokens_metric": Spec(
        "gauge", "Tokens left in the upstream's window, from its x-ratelimit-remaining-tokens", UPSTREAM),
    "litellm_remaining_api_key_budget_metric": Spec(
        "gauge", "USD left in a key's budget period", ("hashed_api_key", "api_key_alias")),
    "litellm_remaining_team_budget_metric": Spec(
        "gauge", "USD left in a team's budget period", ("team", "team_alias")),
    "litellm_in_flight_requests": Spec("gauge", "Requests being served right now", (), "sum"),
    "gateway_asyncio_tasks": Spec(
        "gauge", "asyncio tasks alive in the worker's event loop, counted when scraped (a leak shows as growth)",
        (), "sum"),
    "litellm_redis_latency": Spec("histogram", "Seconds per Redis call, by what it was for", ("operation",)),
    "litellm_redis_fails": Spec("counter", "Redis calls that failed, by what they were for", ("operation",)),
}
GAUGE_COMBINE = {name: spec.combine for name, spec in SPECS.items() if spec.kind == "gauge"}


def _families(tallies: Tallies) -> Iterator[Metric]:
    for name, spec in SPECS.items():
        if spec.kind == "counter":
            counter = CounterMetricFamily(name, spec.doc, labels=spec.labels)
            for labels, value in tallies.counters.get(name, {}).items():
                counter.add_metric(labels, value)
            yield counter
        elif spec.kind == "gauge":
            gauge = GaugeMetricFamily(name, spec.doc, labels=spec.labels)
            for labels, (value, _) in tallies.gauges.get(name, {}).items():
                gauge.add_metric(labels, value)
            yield gauge
        else:
            histogram = HistogramMetricFamily(name, spec.doc, labels=spec.labels)
            for labels, h in tallies.histograms.get(name, {}).items():
                cumulative, buckets = 0, []
                for bound, count in zip((*h.bounds, float("inf")), h.counts):
                    cumulative += count
                    buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
                histogram.add_metric(labels, buckets, h.total)
            yield histogram


def library_counters() -> dict[str, Any]:
    """Counters other modules keep in prometheus-client's default registry under `litellm_` names
    (the Langfuse logger's drops, say), as snapshot data so that workers' counts add up too."""
    found: dict[str, Any] = {}
    for family in REGISTRY.collect():
        if family.type != "counter" or not family.name.startswith("litellm_") or family.name in SPECS:
            continue
        series = [[sorted(s.labels.items()), s.value] for s in family.samples if s.name.endswith("_total")]
        found[family.name] = {"doc": family.documentation, "series": series}
    return found


def merge_library_counters(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for snapshot in snapshots:
        for name, family in snapshot.items():
            target = merged.setdefault(name, {"doc": family["doc"], "series": {}})
            for labels, value in family["series"]:
                key = tuple(tuple(pair) for pair in labels)
                target["series"][key] = target["series"].get(key, 0.0) + value
    return merged


def _library_families(counters: dict[str, Any]) -> Iterator[Metric]:
    for name, family in counters.items():
        series = family["series"]
        names = [label for label, _ in next(iter(series), ())]
        counter = CounterMetricFamily(name, family["doc"], labels=names)
        for labels, value in series.items():
            counter.add_metric([v for _, v in labels], value)
        yield counter


class _Collected:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def render(tallies: Tallies, library: dict[str, Any], with_process: bool) -> bytes:
    """Prometheus text. `with_process` adds the answering process's own process_/python_ metrics,
    which only make sense when it is the only worker."""
    families = [*_families(tallies), *_library_families(library)]
    if with_process:
        families += [f for f in REGISTRY.collect() if not f.name.startswith("litellm_")]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected(families))
    return generate_latest(registry)
