"""``scaler simulate``: replay a trace on the real policy and reconciler (or on ClearML's own
autoscaler, :mod:`scaler.sim.clearml_autoscaler`) against the simulated cloud, on a virtual clock,
and report what the fleet cost against a lower bound.

The trace and the world replaying it are in :mod:`scaler.sim.trace`, the report (cost against
the lower bound, waits, launches and terminations by reason; text and plot) in
:mod:`scaler.sim.report`; this module runs a policy on a trace and loads the inputs. A
configuration whose resources run on several providers is simulated with the simulated cloud
standing for each of them (:mod:`scaler.sim.clouds`), through the real multi-provider loop.
The trace format (a JSON file) is described in ``docs/simulate.md``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from scaler.default_plugins import simulated
from scaler.errors import ConfigError
from scaler.host import Provider
from scaler.sim.clouds import stand_in_host
from scaler.sim.report import Report, build_report, plot, render_text, require_matplotlib
from scaler.sim.trace import SimTrace, make_world, vary, with_clouds

if TYPE_CHECKING:
    from scaler.config.model import Config, Resource
    from scaler.engine.reconciler import TickReport
    from scaler.host import PluginHost
    from scaler.types import Instance

__all__ = [
    "POLICIES",
    "Report",
    "SimTrace",
    "load",
    "plot",
    "render_text",
    "require_matplotlib",
    "run_scaler_policy",
    "simulate",
    "vary",
]

POLICIES = ("scaler", "clearml")


# --- running -----------------------------------------------------------------------------------


@contextmanager
def quiet_logs() -> Iterator[None]:
    """The reconciler logs every action; a simulation reports them in its summary instead."""
    logger = logging.getLogger("scaler")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


class _RecordingProvider(Provider):
    """The simulated provider, recording each launch call's outcome (for launches by reason);
    ``label`` prefixes its failed calls (the cloud's name, in a multi-cloud run)."""

    def __init__(self, host: PluginHost, name: str, config: Config, label: str = "") -> None:
        super().__init__(host, name)
        self.config = config
        self.label = label
        self.tokens: set[str] = set()
        self.launches: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()

    def launch(
        self, config: Config, resource: Resource, count: int, init_script: str, launch_token: str, spot: bool
    ) -> list[Instance]:
        if launch_token in self.tokens:
            reason = "retry (same launch token)"
        elif resource.spot and not spot:
            reason = "demand, on-demand (spot failing: rollback/blackout)"
        else:
            reason = f"demand ({'spot' if spot else 'on-demand'})"
        self.tokens.add(launch_token)
        try:
            created = super().launch(config, resource, count, init_script, launch_token, spot)
        except Exception as exc:
            kind = getattr(exc, "kind", type(exc).__name__)
            self.failures[f"{self.label}{kind} ({'spot' if spot else 'on-demand'})"] += 1
            raise
        self.launches[reason] += len(created)
        return created


def run_scaler_policy(
    config: Config, host: PluginHost, spec: SimTrace, *, on_tick: Callable[[TickReport], None] | None = None
) -> Report:
    """Replay ``spec`` with this project's policy and reconciler on the simulated provider
    (``on_tick`` sees each tick's report: the demo's timeline). The run stops once every task has
    arrived and is done or stranded and no machine is left, at the latest at the trace's horizon.

    A multi-cloud ``config`` runs on a host of stand-ins (:func:`scaler.sim.clouds.stand_in_host`)
    for its providers, all acting on the one simulated cloud of the run; ``host`` is not used."""
    from scaler.engine.reconciler import Reconciler

    spec = with_clouds(spec, config)
    world = make_world(config, spec)
    clock = world.clock
    providers: Mapping[str, _RecordingProvider]
    if config.multi_cloud:
        host = stand_in_host(config.provider_names, world.cloud)
        providers = {name: _RecordingProvider(host, name, config, f"{name}: ") for name in config.provider_names}
    else:
        providers = {simulated.NAME: _RecordingProvider(host, simulated.NAME, config)}
    terminations: Counter[str] = Counter()
    requeued = ticks = 0
    simulated.use_cloud(world.cloud)
    try:
        with quiet_logs():
            reconciler = Reconciler(config, host, dict(providers), world.queue, clock=clock)
            last_arrival = spec.trace.tasks[-1].at if spec.trace.tasks else 0.0
            now = 0.0
            while now <= spec.trace.horizon:
                world.advance(now)
                report = reconciler.tick()
                ticks += 1
                if on_tick is not None:
                    on_tick(report)
                terminations.update(report.terminated)
                requeued += report.requeued
                if now >= last_arrival and world.settled():
                    break
                now += config.scaler.polling_interval
    finally:
        simulated.use_cloud(None)
    return build_report(
        world,
        config,
        spec,
        "scaler",
        config.scaler.polling_interval,
        launches=sum((p.launches for p in providers.values()), Counter()),
        launch_failures=sum((p.failures for p in providers.values()), Counter()),
        terminations=Counter({f"{k}": v for k, v in terminations.items()}),
        requeued=requeued,
        ticks=ticks,
    )


def simulate(
    config: Config, host: PluginHost, spec: SimTrace, policy: str = "scaler", seed: int | None = None
) -> Report:
    """Run one policy on ``spec`` (varied by ``seed``) and report."""
    varied = with_clouds(vary(spec, seed), config)
    if policy == "scaler":
        return run_scaler_policy(config, host, varied)
    if policy == "clearml":
        from scaler.sim.clearml_autoscaler import run_clearml_policy

        return run_clearml_policy(config, varied)
    raise ConfigError(f"unknown policy {policy!r}; choose one of: {', '.join(POLICIES)}")


def load(host: PluginHost, config_path: str | Path, trace_path: str | Path) -> tuple[Config, SimTrace]:
    """The config (validated) and the trace, the trace's ``clouds`` resolved against the config.

    A configuration of one cloud (or none) is loaded as for the simulated provider, wholly on it;
    its trace's ``clouds.<the cloud it was written for>`` applies to its resources. One whose
    resources run on several providers keeps each resource on its provider, validated by the
    installed plugins when every one of them is installed, else with each cloud's sections taken
    as written (then every resource should name its ``provider``)."""
    from scaler.config.loading import ConfigFileError, load_config

    clouds = _clouds_of(host, config_path)
    try:
        if len(clouds) > 1:
            installed = set(host.provider_names())
            checker = host if all(name in installed for name in clouds) else stand_in_host(clouds)
            result = load_config(config_path, checker)
        else:
            result = load_config(config_path, host, provider=simulated.NAME)
    except ConfigFileError as exc:
        raise ConfigError(str(exc)) from None
    if not result.ok or result.config is None:
        raise ConfigError(f"{config_path}: " + "; ".join(p.render() for p in result.errors))
    config = result.config
    spec = with_clouds(SimTrace.load(trace_path), config, clouds[0] if len(clouds) == 1 else "")
    return config, spec


def _clouds_of(host: PluginHost, config_path: str | Path) -> list[str]:
    """The providers a configuration's resources run on, in config order: as the installed
    plugins tell them, or a resource's ``provider`` key naming one that is not installed. Empty
    when the file cannot be read or parsed (loading then says why)."""
    from scaler.config.loading import parse_hocon, read_text

    try:
        raw, problems = parse_hocon(
            read_text(config_path), source=str(config_path), base_dir=Path(config_path).resolve().parent
        )
    except ConfigError:
        return []
    items = raw.get("resources") if isinstance(raw, Mapping) else None
    if problems or not isinstance(items, list):
        return []
    found, _ = host.catalog().resource_providers(raw)
    named = [item.get("provider") if isinstance(item, Mapping) else None for item in items]
    names = [known or (own if isinstance(own, str) else "") for known, own in zip(found, named, strict=False)]
    return list(dict.fromkeys(name for name in names if name))
