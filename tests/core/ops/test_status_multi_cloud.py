"""``scaler status`` of a fleet across clouds (issue 18): every cloud's machines, each with its
provider; one cloud that cannot be listed is an error naming it while the others' machines are
still shown. The clouds are the simulated cloud standing in for aws and gcp (scaler.sim.clouds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from scaler.config.loading import load_config
from scaler.default_plugins.simulated import SimulatedCloud
from scaler.errors import TransientError
from scaler.host import PluginHost
from scaler.ops.status import collect, render
from scaler.sim.clouds import stand_in_host
from scaler.sim.world import SimQueue, VirtualClock

CONFIG = """
scaler { name = "multi", workers_prefix = "mc" }
aws { region = "us-east-1" }
gcp { project = "my-ml-project" }
resources = [
  { name = "a10", queue = "gpu", max_instances = 2, aws { instance_type = "g5.xlarge", ami_id = "ami-0abcdef1234567890" } }
  { name = "l4", queue = "gpu", max_instances = 2, provider = gcp,
    gcp { machine_type = "g2-standard-8", zones = ["us-central1-a"],
          image = "projects/debian-cloud/global/images/family/debian-12" } }
]
"""


class Unreadable:
    """A provider whose listing fails (its API is down)."""

    name = "gcp"

    def list_instances(self, config: Any, *, include_foreign: bool = False) -> list[Any]:
        raise TransientError("503 Service Unavailable", code="503")


def test_status_shows_each_machines_cloud_and_names_the_one_it_cannot_list(tmp_path: Path) -> None:
    path = tmp_path / "fleet.conf"
    path.write_text(CONFIG)
    loaded = load_config(path, PluginHost(), infer_provider=True)
    config = loaded.config
    assert config is not None and config.multi_cloud, loaded.problems
    clock = VirtualClock(1000.0)
    cloud = SimulatedCloud(clock=clock, boot_time=60)
    host = stand_in_host(config.provider_names, cloud)
    aws, gcp = host.provider("aws"), host.provider("gcp")
    aws.launch(config, config.resources[0], 2, "#!/bin/bash\n", "tok-aws", True)
    gcp.launch(config, config.resources[1], 1, "#!/bin/bash\n", "tok-gcp", True)
    queue = SimQueue(clock)

    snapshot = collect(config, [aws, gcp], queue, now=clock())
    assert snapshot["cloud_ok"] and snapshot["providers"] == ["aws", "gcp"]
    assert sorted((row["resource"], row["provider"]) for row in snapshot["instances"]) == [
        ("a10", "aws"),
        ("a10", "aws"),
        ("l4", "gcp"),
    ]
    assert {row["name"]: row["provider"] for row in snapshot["resources"]} == {"a10": "aws", "l4": "gcp"}
    console = Console(width=200, record=True, markup=False, highlight=False)
    render(snapshot, console)
    shown = console.export_text()
    assert "on aws + gcp" in shown and "provider" in shown

    down = collect(config, [aws, Unreadable()], queue, now=clock())
    assert not down["cloud_ok"]
    assert any("provider 'gcp' could not be listed (transient)" in e for e in down["errors"]), down["errors"]
    assert [row["provider"] for row in down["instances"]] == ["aws", "aws"]  # the readable cloud's are shown
