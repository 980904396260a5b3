"""Prometheus metrics of the loop (``scaler run --metrics-port PORT``).

A tick listener updates them from each :class:`~scaler.engine.reconciler.TickReport`; the exporter
serves them on ``http://HOST:PORT/metrics``. Every series a dashboard or alert needs exists
from the first scrape (labels of configured resources and queues start at 0).

================================================ ===================================================
``scaler_fleet_instances{resource,state}``       live instances, state = booting | idle | busy
``scaler_max_instances{resource}``               the resource's ``max_instances``
``scaler_price_per_hour{resource}``              the resource's ``price_per_hour`` (0 when not set)
``scaler_fleet_hourly_cost``                     what the live fleet costs per hour, by ``price_per_hour``
``scaler_pending_tasks{queue}``                  tasks waiting in each served queue
``scaler_launches_total{resource}``              instances launched
``scaler_terminations_total{reason}``            instances terminated: idle | consolidation | stuck | orphan | spot_unfulfilled | stopped
``scaler_requeued_tasks_total``                  interrupted tasks put back in their queue
``scaler_failed_tasks_total``                    interrupted tasks left failed: re-enqueued ``max_requeues`` times already
``scaler_adopted_instances_total``               legacy instances (no fleet identity) tagged as this fleet's
``scaler_errors_total{kind}``                    errors by kind (capacity, quota, auth, transient, ...)
``scaler_tick_duration_seconds``                 histogram of tick durations
``scaler_ticks_total``                           ticks run
``scaler_last_tick_timestamp_seconds``           unix time of the last tick
``scaler_source_up{source}``                     1 when ``clearml`` / ``cloud`` was read last tick
``scaler_lease_held``                            1 while this scaler holds its fleet's lease (0: standby)
``scaler_lease_invalid_entries``                 lease entries of the fleet no scaler of it wrote (forged, or an
                                                 over-long timeout): ignored; anything above 0 needs an operator
================================================ ===================================================

Fleet gauges keep their last value on a tick where the cloud could not be listed, pending
gauges on a tick where ClearML could not be read (``scaler_source_up`` says so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scaler.engine.policy import TerminationKind

if TYPE_CHECKING:
    from scaler.config.model import Config
    from scaler.engine.reconciler import TickReport

STATES = ("booting", "idle", "busy")
TERMINATION_REASONS = tuple(kind.value for kind in TerminationKind)
ERROR_KINDS = ("capacity", "quota", "auth", "transient", "bug")
TICK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """The scaler's metrics in their own registry (several can live in one process)."""

    def __init__(self, config: Config, registry: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.fleet = Gauge(
            "scaler_fleet_instances", "Live instances by resource and state.", ["resource", "state"], registry=r
        )
        self.max_instances = Gauge("scaler_max_instances", "max_instances of each resource.", ["resource"], registry=r)
        self.pending = Gauge("scaler_pending_tasks", "Tasks waiting in each served queue.", ["queue"], registry=r)
        self.price = Gauge("scaler_price_per_hour", "price_per_hour of each resource.", ["resource"], registry=r)
        self.hourly_cost = Gauge(
            "scaler_fleet_hourly_cost",
            "What the live fleet costs per hour (price_per_hour of each instance).",
            registry=r,
        )
        self.launches = Counter("scaler_launches", "Instances launched, by resource.", ["resource"], registry=r)
        self.terminations = Counter("scaler_terminations", "Instances terminated, by reason.", ["reason"], registry=r)
        self.requeued = Counter("scaler_requeued_tasks", "Interrupted tasks re-enqueued.", registry=r)
        self.failed_tasks = Counter(
            "scaler_failed_tasks", "Interrupted tasks left failed after max_requeues re-enqueues.", registry=r
        )
        self.adopted = Counter(
            "scaler_adopted_instances", "Legacy instances tagged with this fleet's identity.", registry=r
        )
        self.errors = Counter("scaler_errors", "Errors, by kind.", ["kind"], registry=r)
        self.tick_duration = Histogram(
            "scaler_tick_duration_seconds", "Duration of one tick.", buckets=TICK_BUCKETS, registry=r
        )
        self.ticks = Counter("scaler_ticks", "Ticks run.", registry=r)
        self.last_tick = Gauge("scaler_last_tick_timestamp_seconds", "Unix time of the last tick.", registry=r)
        self.up = Gauge("scaler_source_up", "1 when the source was read in the last tick.", ["source"], registry=r)
        self.provider_up = Gauge(
            "scaler_provider_up",
            "1 when the provider's instances were listed in the last tick (one per cloud of the fleet).",
            ["provider"],
            registry=r,
        )
        self.resource_info = Gauge(
            "scaler_resource_info",
            "1 for each resource, labelled with its provider (cloud) and queue: join on resource to see the "
            "cloud of any per-resource series.",
            ["resource", "provider", "queue"],
            registry=r,
        )
        self.lease = Gauge(
            "scaler_lease_held", "1 when this scaler holds its fleet's lease and acts; 0 on standby.", registry=r
        )
        self.invalid_leases = Gauge(
            "scaler_lease_invalid_entries",
            "Lease entries of this fleet that no scaler of it wrote (another ClearML identity, or a timeout "
            "longer than the lease TTL); ignored.",
            registry=r,
        )
        for name in config.provider_names:
            self.provider_up.labels(name).set(0)
        for resource in config.resources:
            self.resource_info.labels(resource.name, config.provider_of(resource.name), resource.queue).set(1)
            self.max_instances.labels(resource.name).set(resource.max_instances)
            self.price.labels(resource.name).set(resource.price_per_hour)
            self.launches.labels(resource.name)
            for state in STATES:
                self.fleet.labels(resource.name, state).set(0)
        for queue in config.queues:
            self.pending.labels(queue).set(0)
        for reason in TERMINATION_REASONS:
            self.terminations.labels(reason)
        for kind in ERROR_KINDS:
            self.errors.labels(kind)
        self._server: Any = None

    def __call__(self, report: TickReport) -> None:
        if report.cloud_ok:
            names = [r.name for r in self.config.resources] + [n for n in report.fleet if not self.config.resource(n)]
            for name in names:
                stats = report.fleet.get(name, {})
                for state in STATES:
                    self.fleet.labels(name, state).set(stats.get(state, 0))
            self.hourly_cost.set(
                sum(
                    sum(report.fleet.get(r.name, {}).get(state, 0) for state in STATES) * r.price_per_hour
                    for r in self.config.resources
                )
            )
        if report.clearml_ok:
            for queue, count in report.pending.items():
                self.pending.labels(queue).set(count)
        for resource, count in report.launched.items():
            self.launches.labels(resource).inc(count)
        for reason, count in report.terminated.items():
            self.terminations.labels(reason).inc(count)
        if report.requeued:
            self.requeued.inc(report.requeued)
        if report.failed_tasks:
            self.failed_tasks.inc(report.failed_tasks)
        if report.adopted:
            self.adopted.inc(report.adopted)
        self.invalid_leases.set(report.invalid_leases)
        for kind, count in report.errors.items():
            self.errors.labels(kind).inc(count)
        self.tick_duration.observe(report.duration)
        self.ticks.inc()
        self.last_tick.set(report.now)
        self.up.labels("clearml").set(1 if report.clearml_ok else 0)
        standby = bool(report.errors.get("lease"))
        self.lease.set(0 if standby else 1)
        if not standby:  # a standby scaler does not list the cloud: that is not the cloud being down
            # every cloud of the fleet listed: 1; any one unreadable: 0 (scaler_provider_up says which)
            self.up.labels("cloud").set(1 if report.cloud_ok and not report.unlisted else 0)
            for name in self.config.provider_names:
                self.provider_up.labels(name).set(1 if report.cloud_ok and name not in report.unlisted else 0)

    def serve(self, port: int, host: str = "0.0.0.0") -> int:
        """Serve ``/metrics`` in a background thread; the port actually bound (``0`` picks one)."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return int(server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def text(self) -> str:
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode("utf-8")
