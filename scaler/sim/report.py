"""What a simulated run cost and how long tasks waited (``scaler simulate``'s report).

* per resource and in total: instance-hours, cost, the **lower bound** and cost ÷ lower
  bound. The lower bound of a completed task is its own run time priced at the cheapest
  resource of its queue: no policy can pay less for it. A machine bills from launch to
  termination and runs one task at a time, so the bound is never above the measured cost
  (per resource too: each resource's bound sums the tasks that ran on it).
* task wait p50/p95/max (the time a task spent queued: arrival → first start, plus each
  re-enqueue → the next start; a task the policy dropped, stranded or failed, waits from its
  arrival to the end of the run: it was never served to its end), launches by reason, failed launch calls, terminations by reason
  (a spot reclaim is one, by the cloud), spot reclaims, re-enqueued tasks;
* the work a policy dropped: **stranded** tasks (their machine vanished and nobody re-enqueued
  them: ClearML's autoscaler never does, so they stay "running" forever) and **failed** ones
  (re-enqueued ``max_requeues`` times, then given up), each with its task-hours and what
  running them again would cost at least (their lower bound). The lower bound counts completed
  tasks only, so a policy that drops work would otherwise look cheaper.

``scaler simulate`` prints it (:func:`render_text`) and ``scaler demo`` summarises the same
report after its timeline (:func:`summary_rows`): one computation for both.

Rendered as text tables (:func:`render_text`) or a PNG of pending tasks and fleet size over
time (:func:`plot`, needs matplotlib).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaler.errors import ConfigError
from scaler.sim.world import percentile

if TYPE_CHECKING:
    from scaler.config.model import Config
    from scaler.default_plugins import simulated
    from scaler.sim.trace import SimTrace, TraceWorld


@dataclass
class ResourceRow:
    name: str
    queue: str
    price_per_hour: float
    boot_time: float
    on_demand_price: float = 0.0  # what a spot resource's machine costs when launched on-demand (rollback)
    launched_spot: int = 0
    launched_on_demand: int = 0
    instance_hours: float = 0.0
    task_hours: float = 0.0  # run time of the completed tasks that ran here
    lower_bound: float = 0.0  # task_hours at the cheapest price of the queue
    cost: float = 0.0  # each machine's hours at its price (on-demand machines of a spot resource: on_demand_price)
    boot_cost: float = 0.0  # the part of the cost billed while machines booted
    premium: float = 0.0  # task hours × (the machine's price − the cheapest of the queue)
    cloud: str = ""  # the cloud it runs on, when the trace or the config speaks of clouds

    @property
    def launched(self) -> int:
        return self.launched_spot + self.launched_on_demand

    @property
    def ratio(self) -> float | None:
        return self.cost / self.lower_bound if self.lower_bound > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "resource": self.name,
            **({"cloud": self.cloud} if self.cloud else {}),
            "queue": self.queue,
            "price_per_hour": self.price_per_hour,
            "on_demand_price_per_hour": self.on_demand_price,
            "boot_time": round(self.boot_time, 1),
            "launched": {"spot": self.launched_spot, "on_demand": self.launched_on_demand},
            "instance_hours": round(self.instance_hours, 3),
            "cost": round(self.cost, 4),
            "task_hours": round(self.task_hours, 3),
            "lower_bound": round(self.lower_bound, 4),
            "cost_over_lower_bound": _round(self.ratio),
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class Report:
    trace: str
    policy: str
    seed: int | None
    polling_interval: float
    resources: list[ResourceRow]
    tasks: int = 0
    completed: int = 0
    requeued: int = 0
    stranded: int = 0  # interrupted and never re-enqueued
    stranded_task_hours: float = 0.0  # the run time those tasks needed (lost: none of it counts as done)
    failed: int = 0  # re-enqueued max_requeues times, then given up
    failed_task_hours: float = 0.0
    dropped_lower_bound: float = 0.0  # stranded + failed tasks' run time at the cheapest price of their queue
    unfinished: int = 0  # queued, running or not arrived yet when the run stopped (at the horizon)
    wait_p50: float = 0.0
    wait_p95: float = 0.0
    wait_max: float = 0.0
    launches: Counter[str] = field(default_factory=Counter)  # reason -> machines
    launch_failures: Counter[str] = field(default_factory=Counter)  # reason -> failed launch calls
    terminations: Counter[str] = field(default_factory=Counter)  # reason -> machines
    preempted: int = 0
    never_used: int = 0  # machines that ran no task at all (launched for work another machine took)
    peak_fleet: int = 0
    ticks: int = 0
    end: float = 0.0  # virtual seconds when the run stopped
    timeline: list[tuple[float, int, int]] = field(default_factory=list)

    @property
    def instance_hours(self) -> float:
        return sum(r.instance_hours for r in self.resources)

    @property
    def cost(self) -> float:
        return sum(r.cost for r in self.resources)

    @property
    def lower_bound(self) -> float:
        return sum(r.lower_bound for r in self.resources)

    @property
    def ratio(self) -> float | None:
        return self.cost / self.lower_bound if self.lower_bound > 0 else None

    def overhead(self) -> dict[str, float]:
        """Where cost − lower bound went, in $: booting (billed before the agent runs), the
        premium of running tasks on a dearer resource than the cheapest of their queue, and the
        rest — idle time, machines that ran nothing, runs lost to reclaims."""
        boot = sum(row.boot_cost for row in self.resources)
        premium = sum(row.premium for row in self.resources)
        return {"boot": boot, "premium": premium, "idle": self.cost - self.lower_bound - boot - premium}

    def clouds(self) -> list[ResourceRow]:
        """Per cloud, in order of first resource: its resources' figures summed (one row each,
        ``name`` the cloud's); empty when no resource names its cloud."""
        rows: dict[str, ResourceRow] = {}
        for r in self.resources:
            if not r.cloud:
                continue
            row = rows.setdefault(r.cloud, ResourceRow(r.cloud, "", 0.0, 0.0, cloud=r.cloud))
            row.launched_spot += r.launched_spot
            row.launched_on_demand += r.launched_on_demand
            row.instance_hours += r.instance_hours
            row.task_hours += r.task_hours
            row.lower_bound += r.lower_bound
            row.cost += r.cost
            row.boot_cost += r.boot_cost
            row.premium += r.premium
        return list(rows.values())

    @property
    def max_boot_time(self) -> float:
        return max((r.boot_time for r in self.resources), default=0.0)

    def as_dict(self, timeline: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "trace": self.trace,
            "policy": self.policy,
            "seed": self.seed,
            "polling_interval": self.polling_interval,
            "resources": [r.as_dict() for r in self.resources],
            **({"clouds": [_cloud_dict(c) for c in self.clouds()]} if self.clouds() else {}),
            "total": {
                "launched": sum(r.launched for r in self.resources),
                "instance_hours": round(self.instance_hours, 3),
                "cost": round(self.cost, 4),
                "lower_bound": round(self.lower_bound, 4),
                "cost_over_lower_bound": _round(self.ratio),
            },
            "tasks": {
                "total": self.tasks,
                "completed": self.completed,
                "requeued": self.requeued,
                "stranded": self.stranded,
                "stranded_task_hours": round(self.stranded_task_hours, 3),
                "failed": self.failed,
                "failed_task_hours": round(self.failed_task_hours, 3),
                "dropped_lower_bound": round(self.dropped_lower_bound, 4),
                "unfinished": self.unfinished,
            },
            "wait_seconds": {
                "p50": round(self.wait_p50, 1),
                "p95": round(self.wait_p95, 1),
                "max": round(self.wait_max, 1),
            },
            "launches": dict(sorted(self.launches.items())),
            "launch_failures": dict(sorted(self.launch_failures.items())),
            "terminations": dict(sorted(self.terminations.items())),
            "overhead": {k: round(v, 4) for k, v in self.overhead().items()},
            "spot_reclaims": self.preempted,
            "machines_that_ran_no_task": self.never_used,
            "peak_fleet": self.peak_fleet,
            "ticks": self.ticks,
            "end_seconds": round(self.end, 1),
        }
        if timeline:
            out["timeline"] = [list(point) for point in self.timeline]
        return out


def _cloud_dict(row: ResourceRow) -> dict[str, Any]:
    return {
        "cloud": row.name,
        "launched": {"spot": row.launched_spot, "on_demand": row.launched_on_demand},
        "instance_hours": round(row.instance_hours, 3),
        "cost": round(row.cost, 4),
        "task_hours": round(row.task_hours, 3),
        "lower_bound": round(row.lower_bound, 4),
    }


def build_report(
    world: TraceWorld,
    config: Config,
    spec: SimTrace,
    policy: str,
    polling_interval: float,
    *,
    launches: Counter[str],
    launch_failures: Counter[str],
    terminations: Counter[str],
    requeued: int,
    ticks: int,
) -> Report:
    rows: dict[str, ResourceRow] = {}
    spot_resources = {r.name for r in config.resources if r.spot}
    cheapest: dict[str, float] = {}
    for r in config.resources:
        price = spec.prices.get(r.name, r.price_per_hour)
        on_demand = spec.on_demand_prices.get(r.name, price) if r.spot else price
        rows[r.name] = ResourceRow(
            r.name, r.queue, price, spec.boot_time(r.name), on_demand, cloud=spec.resource_clouds.get(r.name, "")
        )
        cheapest[r.queue] = min(cheapest.get(r.queue, math.inf), price)

    def price_of(inst: simulated.SimInstance, row: ResourceRow) -> float:
        return row.on_demand_price if inst.resource in spot_resources and not inst.spot else row.price_per_hour

    now = world.clock.now
    for inst in world.cloud.instances.values():
        row = rows.setdefault(inst.resource, ResourceRow(inst.resource, "", 0.0, spec.boot_time(inst.resource)))
        if inst.spot:
            row.launched_spot += 1
        else:
            row.launched_on_demand += 1
        hours = max(0.0, (inst.ended_at if inst.ended_at else now) - inst.launched_at) / 3600
        row.instance_hours += hours
        row.cost += hours * price_of(inst, row)
        row.boot_cost += min(hours, world.cloud.boot_of(inst) / 3600) * price_of(inst, row)
    tasks = list(world.queue.tasks.values())
    for task in tasks:
        machine = world.cloud.instances.get(task.worker.rsplit(":", 1)[-1])
        if task.status != "completed" or machine is None or machine.resource not in rows:
            continue
        ran_on = rows[machine.resource]
        hours = task.duration / 3600
        floor = cheapest.get(task.queue, ran_on.price_per_hour)
        ran_on.task_hours += hours
        ran_on.lower_bound += hours * floor
        ran_on.premium += hours * (price_of(machine, ran_on) - floor)
    stranded = set(world.stranded())
    failed = [t for t in tasks if t.status == "failed"]
    # a task a policy dropped (stranded: ClearML's never re-enqueues; failed: max_requeues) never ran
    # to its end: it counts as waiting from its arrival to the end of the run, not as served
    gave_up = stranded | {t.id for t in failed}
    waits = [now - t.arrived if t.id in gave_up else world.queue.wait(t, now) for t in tasks]
    dropped = [t for t in tasks if t.id in stranded] + failed
    report = Report(
        trace=spec.name,
        policy=policy,
        seed=spec.seed,
        polling_interval=polling_interval,
        resources=list(rows.values()),
        tasks=len(tasks),
        completed=sum(1 for t in tasks if t.status == "completed"),
        requeued=requeued,
        stranded=len(stranded),
        stranded_task_hours=sum(t.duration for t in tasks if t.id in stranded) / 3600,
        failed=len(failed),
        failed_task_hours=sum(t.duration for t in failed) / 3600,
        dropped_lower_bound=sum(t.duration / 3600 * cheapest.get(t.queue, 0.0) for t in dropped),
        unfinished=len(spec.trace.tasks) - sum(1 for t in tasks if t.status in ("completed", "failed")) - len(stranded),
        wait_p50=percentile(waits, 50),
        wait_p95=percentile(waits, 95),
        wait_max=max(waits, default=0.0),
        launches=launches,
        launch_failures=launch_failures,
        terminations=terminations,
        preempted=world.preempted,
        never_used=sum(1 for i in world.cloud.instances if i not in world.used),
        peak_fleet=max((f for _, _, f in world.timeline), default=0),
        ticks=ticks,
        end=now,
        timeline=list(world.timeline),
    )
    if world.preempted:
        report.terminations["spot reclaim (by the cloud)"] += world.preempted
    return report


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())) or "none"


def dropped_text(report: Report) -> str:
    """``"3 stranded (5.2 task-h), 1 failed (0.5 task-h)"``, or ``""`` when no work was dropped."""
    parts = []
    if report.stranded:
        parts.append(f"{report.stranded} stranded ({report.stranded_task_hours:.1f} task-h)")
    if report.failed:
        parts.append(f"{report.failed} failed ({report.failed_task_hours:.1f} task-h)")
    return ", ".join(parts)


def summary_rows(report: Report, clock: Callable[[float], str] | None = None) -> list[tuple[str, str]]:
    """The report in a few lines (``scaler demo``'s summary): ``(figure, value)`` rows, virtual
    times spelt by ``clock`` (default: hours)."""
    spell = clock or (lambda seconds: f"{seconds / 3600:.2f} h")
    names = sorted(report.resources, key=lambda row: row.name)
    completed = f"{report.completed} of {report.tasks}" + (f" ({dropped_text(report)})" if dropped_text(report) else "")
    ratio = f", cost ÷ bound {_ratio(report.ratio)}" if report.ratio is not None else ""
    return [
        (
            "instances launched",
            f"{sum(r.launched for r in names)} (" + ", ".join(f"{r.name}: {r.launched}" for r in names) + ")",
        ),
        ("failed launch calls", _counts(report.launch_failures)),
        ("instances terminated", f"{sum(report.terminations.values())} ({_counts(report.terminations)})"),
        ("spot reclaims / tasks re-enqueued", f"{report.preempted} / {report.requeued}"),
        ("tasks completed", completed),
        ("task wait p50 / p95 / max", f"{report.wait_p50:.0f}s / {report.wait_p95:.0f}s / {report.wait_max:.0f}s"),
        (
            "instance-hours",
            f"{report.instance_hours:.2f} (" + ", ".join(f"{r.name}: {r.instance_hours:.2f}" for r in names) + ")",
        ),
        ("fleet cost", f"{_money(report.cost)} (lower bound {_money(report.lower_bound)}{ratio})"),
        ("peak fleet", str(report.peak_fleet)),
        ("ticks / virtual end", f"{report.ticks} / {spell(report.end)}"),
    ]


def render_text(report: Report) -> str:
    """The report as plain text tables (what ``scaler simulate`` prints)."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    buffer = StringIO()
    console = Console(file=buffer, width=120, markup=False, highlight=False, color_system=None)
    seed = "as written" if report.seed is None else f"seed {report.seed}"
    console.print(
        f"simulate: {report.trace} — policy {report.policy}, {seed}, polling every {report.polling_interval:g}s"
    )
    table = Table(title="Per resource")
    for column in (
        "resource",
        "queue",
        "$/h",
        "boot",
        "launched (spot/od)",
        "instance-h",
        "cost",
        "task-h",
        "lower bound",
        "cost ÷ bound",
    ):
        table.add_column(column, justify="left" if column in ("resource", "queue") else "right")
    for row in report.resources:
        table.add_row(
            row.name,
            row.queue,
            f"{row.price_per_hour:g}"
            + (f" ({row.on_demand_price:g} od)" if row.on_demand_price != row.price_per_hour else ""),
            f"{row.boot_time:g}s",
            f"{row.launched} ({row.launched_spot}/{row.launched_on_demand})",
            f"{row.instance_hours:.2f}",
            _money(row.cost),
            f"{row.task_hours:.2f}",
            _money(row.lower_bound),
            _ratio(row.ratio),
        )
    table.add_row(
        "total",
        "",
        "",
        "",
        str(sum(r.launched for r in report.resources)),
        f"{report.instance_hours:.2f}",
        _money(report.cost),
        f"{sum(r.task_hours for r in report.resources):.2f}",
        _money(report.lower_bound),
        _ratio(report.ratio),
    )
    console.print(table)
    clouds = report.clouds()
    if clouds:
        per_cloud = Table(title="Per cloud")
        for column in ("cloud", "launched (spot/od)", "instance-h", "cost", "task-h", "lower bound"):
            per_cloud.add_column(column, justify="left" if column == "cloud" else "right")
        for row in clouds:
            per_cloud.add_row(
                row.name,
                f"{row.launched} ({row.launched_spot}/{row.launched_on_demand})",
                f"{row.instance_hours:.2f}",
                _money(row.cost),
                f"{row.task_hours:.2f}",
                _money(row.lower_bound),
            )
        console.print(per_cloud)
    summary = Table(title="Tasks and fleet")
    summary.add_column("figure")
    summary.add_column("value")
    summary.add_row(
        "tasks completed",
        f"{report.completed} of {report.tasks}"
        + (f" ({report.unfinished} unfinished at the horizon)" if report.unfinished else ""),
    )
    summary.add_row("re-enqueued / stranded", f"{report.requeued} / {report.stranded}")
    summary.add_row(
        "work dropped (stranded, failed)",
        (dropped_text(report) + f": at least {_money(report.dropped_lower_bound)} to run again, not in the bound")
        if report.stranded or report.failed
        else "none",
    )
    summary.add_row(
        "task wait p50 / p95 / max", f"{report.wait_p50:.0f}s / {report.wait_p95:.0f}s / {report.wait_max:.0f}s"
    )
    parts = report.overhead()
    summary.add_row(
        "cost above the bound",
        f"{_money(report.cost - report.lower_bound)}: booting {_money(parts['boot'])}, dearer resource "
        f"{_money(parts['premium'])}, idle or unused {_money(parts['idle'])}",
    )
    summary.add_row("launches by reason", _counts(report.launches))
    summary.add_row("failed launch calls", _counts(report.launch_failures))
    summary.add_row("terminations by reason", _counts(report.terminations))
    summary.add_row("machines that ran no task", str(report.never_used))
    summary.add_row("peak fleet", str(report.peak_fleet))
    summary.add_row("ticks / virtual end", f"{report.ticks} / {report.end / 3600:.2f} h")
    console.print(summary)
    return buffer.getvalue()


def require_matplotlib() -> Any:
    """matplotlib (an optional extra), or a clear error saying how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(
            "plotting needs matplotlib: pip install 'clearml-scaler[plot]' (or pip install matplotlib)"
        ) from None
    return matplotlib


def plot(reports: list[Report], path: str | Path, title: str | None = None, labels: list[str] | None = None) -> Path:
    """Pending tasks and fleet size over time (one PNG; one line per report, named by ``labels``,
    default: each report's policy)."""
    matplotlib = require_matplotlib()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 5.5), dpi=100)
    names = labels or [report.policy for report in reports]
    if len(names) != len(reports):
        raise ValueError(f"plot: {len(reports)} reports but {len(names)} labels")
    for report, name in zip(reports, names, strict=True):
        hours = [t / 3600 for t, _, _ in report.timeline]
        dropped = f", {report.stranded + report.failed} tasks dropped" if report.stranded or report.failed else ""
        label = f"{name} (cost {_money(report.cost)}, p95 wait {report.wait_p95 / 60:.0f} min{dropped})"
        top.step(hours, [p for _, p, _ in report.timeline], where="post", label=label, linewidth=1.2)
        bottom.step(hours, [f for _, _, f in report.timeline], where="post", label=name, linewidth=1.2)
    top.set_ylabel("pending tasks")
    bottom.set_ylabel("machines (alive)")
    bottom.set_xlabel("hours")
    top.set_title(title or (reports[0].trace if reports else ""), fontsize=10)
    top.legend(fontsize=8, loc="upper right")
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})
    plt.close(fig)
    return out
