"""``scaler simulate`` of a fleet across clouds (issue 18): the simulated cloud stands for each
provider of the configuration, with the trace's per-cloud boot times and outages, through the
real multi-provider loop."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from scaler.default_plugins import simulated
from scaler.engine.reconciler import TickReport
from scaler.errors import CapacityError, ConfigError
from scaler.host import PluginHost
from scaler.sim.run import SimTrace, load, run_scaler_policy, simulate
from scaler.sim.trace import TraceCloud, make_world
from tests.support import REPO
from tests.support.cli import run_cli

AWS = 'aws { instance_type = "g5.xlarge", ami_id = "ami-0abcdef1234567890" }'
GCP = 'gcp { machine_type = "g2-standard-8", zones = ["us-central1-a"], image = "projects/debian-cloud/global/images/family/debian-12" }'
FLEET = f"""
scaler {{ name = "fleet", workers_prefix = "fl", polling_interval = 30s, max_idle_time = 2m, stuck_timeout = 20m }}
aws {{ region = "us-east-1" }}
gcp {{ project = "my-ml-project" }}
resources = [
  {{ name = "aws-spot", provider = aws, queue = "gpu", max_instances = 2, spot = true, price_per_hour = 0.4, {AWS} }}
  {{ name = "gcp-spot", provider = gcp, queue = "gpu", max_instances = 2, spot = true, price_per_hour = 0.3, {GCP} }}
  {{ name = "aws-od", provider = aws, queue = "gpu", max_instances = 1, price_per_hour = 1.0, {AWS} }}
  {{ name = "gcp-od", provider = gcp, queue = "gpu", max_instances = 2, price_per_hour = 0.9, {GCP} }}
]
"""
MAX = {"aws-spot": 2, "gcp-spot": 2, "aws-od": 1, "gcp-od": 2}
CLOUD = {"aws-spot": "aws", "gcp-spot": "gcp", "aws-od": "aws", "gcp-od": "gcp"}


def trace(**extra: object) -> dict[str, object]:
    return {"name": "mc", "boot_time": 120, "horizon": 20000, **extra}


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


def write(tmp_path: Path, data: dict[str, object], conf: str = FLEET) -> tuple[Path, Path]:
    config, spec = tmp_path / "fleet.conf", tmp_path / "trace.json"
    config.write_text(conf)
    spec.write_text(json.dumps(data))
    return config, spec


def test_an_outage_of_one_cloud_moves_launches_to_the_other_in_config_order_within_limits(
    host: PluginHost, tmp_path: Path
) -> None:
    # AWS has no capacity at all (spot and on-demand) for the first two hours; 6 tasks arrive at once.
    data = trace(
        clouds={"aws": {"outages": [{"start": 0, "end": 7200}]}},
        tasks=[{"at": 0, "queue": "gpu", "duration": 1800, "count": 6}, {"at": 9000, "queue": "gpu", "duration": 600}],
    )
    config, spec = load(host, *write(tmp_path, data))
    assert config.multi_cloud and config.provider_names == ("aws", "gcp")
    first_launch: dict[str, float] = {}
    alive_peak: Counter[str] = Counter()

    def watch(report: TickReport) -> None:
        cloud = simulated.active_cloud()
        assert cloud is not None
        alive = Counter(i.resource for i in cloud.alive())
        for name, count in alive.items():
            assert count <= MAX[name], f"{name}: {count} machines at {report.now}"
            alive_peak[name] = max(alive_peak[name], count)
        for name in report.launched:
            first_launch.setdefault(name, report.now)

    report = run_scaler_policy(config, host, spec, on_tick=watch)
    # during the outage nothing starts on AWS; GCP spot fills first, then GCP on-demand (aws-od is out too)
    assert first_launch["gcp-spot"] <= first_launch["gcp-od"] < 7200
    assert first_launch["aws-spot"] >= 7200 and "aws-od" not in first_launch
    assert alive_peak["gcp-spot"] == 2 and alive_peak["gcp-od"] == 2
    assert report.completed == report.tasks == 7
    assert any(k.startswith("aws: ") for k in report.launch_failures)  # AWS's refusals, named by cloud
    assert not any(k.startswith("gcp: ") for k in report.launch_failures)
    clouds = {row.name: row for row in report.clouds()}
    assert set(clouds) == {"aws", "gcp"}
    assert clouds["gcp"].launched == 4 and clouds["aws"].launched == 1  # the late task: AWS spot, outage over
    assert [(r.name, r.cloud) for r in report.resources] == list(CLOUD.items())
    assert report.cost == pytest.approx(sum(c.cost for c in clouds.values()))


def test_each_cloud_boots_in_its_own_time_and_a_resource_s_own_boot_time_wins(host: PluginHost, tmp_path: Path) -> None:
    conf = FLEET.replace('queue = "gpu", max_instances = 1', 'queue = "solo", max_instances = 1')
    data = trace(
        clouds={"aws": {"boot_time": 300}, "gcp": {"boot_time": 60}},
        resources={"aws-od": {"boot_time": 200}},
        tasks=[{"at": 0, "queue": "gpu", "duration": 600}, {"at": 0, "queue": "solo", "duration": 600}],
    )
    config, spec = load(host, *write(tmp_path, data, conf))
    report = simulate(config, host, spec)
    boots = {row.name: row.boot_time for row in report.resources}
    assert boots == {"aws-spot": 300, "gcp-spot": 60, "aws-od": 200, "gcp-od": 60}
    # the gpu task goes to aws-spot (first in order): arrives at 5, launched at the tick at 30,
    # running 300 s later; the solo task runs on aws-od, 200 s after the same tick
    assert sorted([report.wait_p50, report.wait_max]) == [225.0, 325.0]


def test_spot_only_outage_of_a_cloud_leaves_its_on_demand_and_can_name_resources(host: PluginHost) -> None:
    from scaler.config.loading import build_config
    from scaler.sim.trace import with_clouds

    spec = SimTrace.from_dict(
        trace(
            clouds={
                "aws": {"outages": [{"start": 0, "end": 100, "spot_only": True}]},
                "gcp": {"outages": [{"start": 0, "end": 100, "resources": ["gcp-od"]}]},
            },
            tasks=[],
        )
    )
    config = build_config(
        {
            "scaler": {"name": "f"},
            "resources": [
                {"name": n, "queue": "q", "max_instances": 1, "provider": CLOUD[n], "spot": "spot" in n} for n in MAX
            ],
        }
    )
    world = make_world(config, with_clouds(spec, config))
    cloud = world.cloud
    assert isinstance(cloud, TraceCloud)
    for name, spot, refused in [
        ("aws-spot", True, True),
        ("aws-od", False, False),
        ("gcp-spot", True, False),
        ("gcp-od", False, True),
    ]:
        if refused:
            with pytest.raises(CapacityError):
                cloud.launch("f", name, 1, f"t-{name}", spot)
        else:
            assert len(cloud.launch("f", name, 1, f"t-{name}", spot)) == 1
    world.clock.now = 100  # the outages are over
    assert len(cloud.launch("f", "aws-spot", 1, "later", True)) == 1


def test_a_one_cloud_config_gets_its_own_cloud_s_outage(host: PluginHost, tmp_path: Path) -> None:
    # an AWS config simulated as before (wholly on the simulated cloud); the trace's clouds.aws applies,
    # clouds.gcp (not its cloud) does nothing
    conf = f"""
scaler {{ name = "one", workers_prefix = "one", polling_interval = 30s, max_idle_time = 2m }}
aws {{ region = "us-east-1" }}
resources = [ {{ name = "aws-od", queue = "gpu", max_instances = 1, price_per_hour = 1.0, {AWS} }} ]
"""
    data = trace(
        clouds={"aws": {"outages": [{"start": 0, "end": 3600}]}, "gcp": {"boot_time": 5}},
        tasks=[{"at": 0, "queue": "gpu", "duration": 600}],
    )
    config, spec = load(host, *write(tmp_path, data, conf))
    assert config.provider_name == simulated.NAME and not config.multi_cloud
    report = simulate(config, host, spec)
    assert report.completed == 1
    assert report.wait_p95 >= 3600 - 5  # waited for the outage to end
    assert [(r.name, r.cloud, r.boot_time) for r in report.resources] == [("aws-od", "aws", 120)]


def test_a_provider_that_is_not_installed_is_stood_in_for(host: PluginHost, tmp_path: Path) -> None:
    conf = FLEET.replace("provider = gcp", "provider = othercloud").replace(GCP, 'othercloud { size = "big" }')
    conf = conf.replace('gcp { project = "my-ml-project" }', 'othercloud { region = "north" }')
    data = trace(
        clouds={"aws": {"outages": [{"start": 0, "end": 7200}]}}, tasks=[{"at": 0, "queue": "gpu", "duration": 600}]
    )
    config, spec = load(host, *write(tmp_path, data, conf))
    assert config.provider_names == ("aws", "othercloud")
    report = simulate(config, host, spec)
    assert report.completed == 1
    assert [c.name for c in report.clouds() if c.launched] == ["othercloud"]


def test_simulate_cli_reports_each_cloud_in_json(tmp_path: Path) -> None:
    config, spec = write(
        tmp_path,
        trace(
            clouds={"aws": {"outages": [{"start": 0, "end": 7200}]}},
            # hour-long tasks: the third outlasts any spill_delay a reader may set, so gcp-od runs it
            tasks=[{"at": 0, "queue": "gpu", "duration": 3600, "count": 3}],
        ),
    )
    result = run_cli("simulate", "--config", str(config), "--trace", str(spec), "--format", "json", timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    clouds = {c["cloud"]: c for c in data["clouds"]}
    assert clouds["aws"]["launched"] == {"spot": 0, "on_demand": 0}
    assert clouds["gcp"]["launched"]["spot"] == 2 and clouds["gcp"]["launched"]["on_demand"] == 1
    assert {r["resource"]: r["cloud"] for r in data["resources"]} == CLOUD
    text = run_cli("simulate", "--config", str(config), "--trace", str(spec), timeout=120)
    assert text.returncode == 0 and "Per cloud" in text.stdout


def test_the_example_multi_cloud_config_simulates(host: PluginHost, tmp_path: Path) -> None:
    spec = tmp_path / "t.json"
    spec.write_text(json.dumps(trace(tasks=[{"at": 0, "queue": "gpu", "duration": 600, "count": 2}])))
    config, loaded = load(host, REPO / "examples" / "multi-cloud.conf", spec)
    report = simulate(config, host, loaded)
    assert report.completed == 2 and {c.name for c in report.clouds()} == {"aws", "gcp"}


@pytest.mark.parametrize(
    ("clouds", "message"),
    [
        ({"gcp": {"boot": 1}}, "clouds.gcp: unknown key(s) boot"),
        ({"gcp": {"outages": [{"start": 10, "end": 5}]}}, "end (5) must come after start (10)"),
        ({"gcp": {"outages": [{"start": 0, "end": 5, "resources": "gcp-od"}]}}, "must be a list of resource names"),
        ({"gcp": []}, "clouds.gcp: must be an object"),
    ],
)
def test_bad_clouds_in_a_trace_are_clear_errors(tmp_path: Path, clouds: object, message: str) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(trace(clouds=clouds, tasks=[])))
    with pytest.raises(ConfigError, match="trace .*" + message.replace("(", r"\(").replace(")", r"\)")):
        SimTrace.load(path)
