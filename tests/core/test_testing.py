"""The conformance kit (scaler.testing) fails broken providers.

A small provider over an in-memory "cloud" passes the kit; each variant below breaks one
promise a provider makes to the loop, and the kit must fail it, in the test that covers
that promise, with a message that says what is wrong. The cloud behaves like the real ones
where the variants go wrong: it lists in pages, refuses a delete naming an unknown id,
keeps idempotency keys, boots machines after a while and answers with its own error codes.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import pytest

from scaler.api import (
    TAG_LAUNCH_TOKEN,
    TAG_RESOURCE,
    TAG_SCALER,
    AuthError,
    CapacityError,
    Instance,
    InstanceState,
    ProviderError,
    QuotaError,
    ScriptPart,
    TransientError,
    hookimpl,
)
from scaler.config.model import Config
from scaler.host import Provider
from scaler.testing import FAULTS, FaultInjector, ProviderConformance, config_for, provider_for

pytest_plugins = ["pytester"]

NAME = "memory"
FAULT_CODES = {"capacity": "NoCapacity", "quota": "QuotaExceeded", "auth": "Forbidden", "transient": "Busy"}
TYPED: dict[str, type[ProviderError]] = {
    "NoCapacity": CapacityError,
    "QuotaExceeded": QuotaError,
    "Forbidden": AuthError,
    "Busy": TransientError,
}


# -- the cloud ---------------------------------------------------------------------------------


class CloudError(Exception):
    def __init__(self, code: str, ids: list[str] | None = None) -> None:
        super().__init__(code if not ids else f"{code}: {', '.join(ids)}")
        self.code = code
        self.ids = ids or []


@dataclass
class MemoryCloud:
    page_size: int = 3
    boot_time: float = 10.0  # well past the kit's launch_time_limit (5 s): a launch that waits is caught
    machines: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: dict[str, list[str]] = field(default_factory=dict)  # idempotency key -> machine ids
    failing: dict[str, str] = field(default_factory=dict)  # call -> error code, until cleared
    ids: Any = field(default_factory=lambda: itertools.count(1))

    def _check(self, call: str) -> None:
        if call in self.failing:
            raise CloudError(self.failing[call])

    def state(self, machine: dict[str, Any]) -> str:
        if machine["deleted"]:
            return "terminated"
        return "running" if time.time() - machine["launched_at"] >= self.boot_time else "pending"

    def run(self, count: int, tags: dict[str, str], spot: bool, key: str = "") -> list[dict[str, Any]]:
        self._check("launch")
        if key and key in self.requests:
            return [self.machines[i] for i in self.requests[key]]
        made = []
        for _ in range(count):
            machine_id = f"m-{next(self.ids):04d}"
            self.machines[machine_id] = {
                "id": machine_id,
                "tags": dict(tags),
                "spot": spot,
                "launched_at": time.time(),
                "deleted": False,
            }
            made.append(machine_id)
        if key:
            self.requests[key] = made
        return [self.machines[i] for i in made]

    def describe(self, tags: dict[str, str], page: int = 0) -> tuple[list[dict[str, Any]], int | None]:
        self._check("list")
        found = [
            m
            for m in self.machines.values()
            if not m["deleted"] and all(m["tags"].get(k) == v for k, v in tags.items())
        ]
        end = page + self.page_size
        return found[page:end], (end if end < len(found) else None)

    def tag(self, ids: list[str], tags: dict[str, str]) -> None:
        for machine_id in ids:
            if machine_id in self.machines:
                self.machines[machine_id]["tags"].update(tags)

    def delete(self, ids: list[str]) -> None:
        self._check("terminate")
        unknown = [i for i in ids if i not in self.machines]
        if unknown:  # like EC2: the whole call fails, naming the ids it does not know
            raise CloudError("NotFound", unknown)
        for machine_id in ids:
            self.machines[machine_id]["deleted"] = True

    def console(self, machine_id: str) -> str:
        if machine_id not in self.machines:
            raise CloudError("NotFound", [machine_id])
        return f"[boot] {machine_id}\n"


def typed(exc: CloudError) -> ProviderError:
    return TYPED.get(exc.code, ProviderError)(f"memory cloud: {exc}", code=exc.code)


# -- a provider that passes the kit ------------------------------------------------------------


class GoodProvider:
    """Keeps nothing in memory but its handle on the cloud."""

    def __init__(self, cloud: MemoryCloud) -> None:
        self.cloud = cloud

    def _instance(self, machine: dict[str, Any]) -> Instance:
        state = InstanceState(self.cloud.state(machine))
        return Instance.from_tags(machine["id"], machine["tags"], state, machine["launched_at"], spot=machine["spot"])

    def _run(self, config: Config, resource: Any, count: int, token: str, spot: bool) -> list[dict[str, Any]]:
        return self.cloud.run(count, config.tags_for(resource.name, token), spot, key=token)

    def _pages(self, config: Config) -> list[dict[str, Any]]:
        machines: list[dict[str, Any]] = []
        page: int | None = 0
        while page is not None:
            found, page = self.cloud.describe({TAG_SCALER: config.scaler.name}, page)
            machines += [m for m in found if config.listed(m["tags"])]
        return machines

    @hookimpl
    def scaler_tag_instances(self, config: Config, instance_ids: list[str], tags: dict[str, str]) -> bool:
        self.cloud.tag(list(instance_ids), tags)
        return True

    @hookimpl
    def scaler_launch(self, config: Config, resource: Any, count: int, launch_token: str, spot: bool) -> list[Instance]:
        try:
            return [self._instance(m) for m in self._run(config, resource, count, launch_token, spot)]
        except CloudError as exc:
            raise typed(exc) from exc

    @hookimpl
    def scaler_list_instances(self, config: Config) -> list[Instance]:
        try:
            return [self._instance(m) for m in self._pages(config)]
        except CloudError as exc:
            raise typed(exc) from exc

    @hookimpl
    def scaler_terminate(self, config: Config, instance_ids: list[str]) -> bool:
        ids = list(instance_ids)
        while ids:
            try:
                self.cloud.delete(ids)
                return True
            except CloudError as exc:
                if exc.code != "NotFound":
                    raise typed(exc) from exc
                ids = [i for i in ids if i not in exc.ids]  # already gone: success
        return True

    @hookimpl
    def scaler_console_output(self, config: Config, instance_id: str) -> str:
        try:
            return self.cloud.console(instance_id)
        except CloudError as exc:
            raise typed(exc) from exc

    @hookimpl
    def scaler_init_script_parts(self, provider: str) -> list[ScriptPart]:
        if provider != NAME:
            return []
        return [ScriptPart(200, "instance identity (memory)", 'export SCALER_INSTANCE_ID="$(hostname)"')]


# -- the broken variants -------------------------------------------------------------------------


class FirstPageOnly(GoodProvider):
    def _pages(self, config: Config) -> list[dict[str, Any]]:
        return [m for m in self.cloud.describe({TAG_SCALER: config.scaler.name})[0] if config.listed(m["tags"])]


class NameOnlyOwnership(GoodProvider):
    """Lists every machine with the scaler's name, whichever deployment launched it."""

    def _pages(self, config: Config) -> list[dict[str, Any]]:
        machines: list[dict[str, Any]] = []
        page: int | None = 0
        while page is not None:
            found, page = self.cloud.describe({TAG_SCALER: config.scaler.name}, page)
            machines += found
        return machines


class NoFleetTag(GoodProvider):
    """Tags machines the way scalers did before fleet identities."""

    def _run(self, config: Config, resource: Any, count: int, token: str, spot: bool) -> list[dict[str, Any]]:
        tags = {TAG_SCALER: config.scaler.name, TAG_RESOURCE: resource.name, TAG_LAUNCH_TOKEN: token}
        return self.cloud.run(count, tags, spot, key=token)


class TerminateRaisesOnUnknown(GoodProvider):
    @hookimpl
    def scaler_terminate(self, config: Config, instance_ids: list[str]) -> bool:
        try:
            self.cloud.delete(list(instance_ids))
        except CloudError as exc:
            raise typed(exc) from exc
        return True


class IdempotencyInMemory(GoodProvider):
    """Remembers tokens itself instead of passing them to the cloud."""

    def __init__(self, cloud: MemoryCloud) -> None:
        super().__init__(cloud)
        self.launched: dict[str, list[dict[str, Any]]] = {}

    def _run(self, config: Config, resource: Any, count: int, token: str, spot: bool) -> list[dict[str, Any]]:
        if token not in self.launched:
            self.launched[token] = self.cloud.run(count, config.tags_for(resource.name, token), spot)
        return self.launched[token]


class MillisecondLaunchedAt(GoodProvider):
    def _instance(self, machine: dict[str, Any]) -> Instance:
        found = super()._instance(machine)
        return replace(found, launched_at=found.launched_at * 1000)


class SpotIgnored(GoodProvider):
    def _run(self, config: Config, resource: Any, count: int, token: str, spot: bool) -> list[dict[str, Any]]:
        return super()._run(config, resource, count, token, False)


class LaunchWaitsForBoot(GoodProvider):
    def _run(self, config: Config, resource: Any, count: int, token: str, spot: bool) -> list[dict[str, Any]]:
        machines = super()._run(config, resource, count, token, spot)
        while any(self.cloud.state(m) == "pending" for m in machines):
            time.sleep(0.05)
        return machines


class NoIdentityPart(GoodProvider):
    @hookimpl
    def scaler_init_script_parts(self, provider: str) -> list[ScriptPart]:
        return []


class ConsoleCrashesOnUnknown(GoodProvider):
    @hookimpl
    def scaler_console_output(self, config: Config, instance_id: str) -> str:
        return self.cloud.machines[instance_id]["id"]  # KeyError for an unknown id


class UntypedErrors(GoodProvider):
    """Lets the cloud's own exceptions escape."""

    @hookimpl
    def scaler_launch(self, config: Config, resource: Any, count: int, launch_token: str, spot: bool) -> list[Instance]:
        return [self._instance(m) for m in self._run(config, resource, count, launch_token, spot)]

    @hookimpl
    def scaler_list_instances(self, config: Config) -> list[Instance]:
        return [self._instance(m) for m in self._pages(config)]

    @hookimpl
    def scaler_terminate(self, config: Config, instance_ids: list[str]) -> bool:
        try:
            self.cloud.delete(list(instance_ids))
        except CloudError as exc:
            if exc.code != "NotFound":
                raise
            self.cloud.delete([i for i in instance_ids if i not in exc.ids])
        return True


# -- the kit wired to the memory cloud -----------------------------------------------------------


def memory_provider(plugin: GoodProvider) -> Provider:
    return provider_for(plugin, NAME)


class MemoryKit(ProviderConformance):
    """The kit against a provider class over the memory cloud (collected through subclasses)."""

    provider_name = NAME
    provider_class: ClassVar[type[GoodProvider]] = GoodProvider

    @pytest.fixture
    def cloud(self) -> MemoryCloud:
        return MemoryCloud()

    @pytest.fixture
    def provider(self, cloud: MemoryCloud) -> Provider:
        return memory_provider(self.provider_class(cloud))

    @pytest.fixture
    def conformance_config(self, provider: Provider) -> Config:
        return config_for(NAME, {}, host=provider.host)

    @pytest.fixture
    def list_page_size(self, cloud: MemoryCloud) -> int:
        return cloud.page_size

    @pytest.fixture
    def inject_fault(self, cloud: MemoryCloud) -> FaultInjector:
        def inject(kind: str, call: str) -> None:
            cloud.failing[call] = FAULT_CODES[kind]

        return inject

    @pytest.fixture
    def foreign_instance(self, cloud: MemoryCloud) -> str:
        return str(cloud.run(1, {}, False)[0]["id"])

    @pytest.fixture
    def legacy_instance(self, cloud: MemoryCloud, conformance_config: Config) -> str:
        tags = {TAG_SCALER: conformance_config.scaler.name, TAG_RESOURCE: "res-a", TAG_LAUNCH_TOKEN: "legacy"}
        return str(cloud.run(1, tags, False)[0]["id"])

    @pytest.fixture
    def launch_in_fresh_process(
        self, cloud: MemoryCloud, provider: Provider
    ) -> Callable[[Config, int, str, bool], list[str]]:
        """The cloud lives in this process: a fresh process is a new plugin object (all its
        memory gone) in a new host, sharing only the cloud."""

        def launch(config: Config, count: int, launch_token: str, spot: bool) -> list[str]:
            fresh = memory_provider(type(provider.plugin)(cloud))
            return [i.id for i in fresh.launch(config, config.resources[0], count, "#!/bin/bash\n", launch_token, spot)]

        return launch


class TestKitPassesTheGoodProvider(MemoryKit):
    provider_class = GoodProvider


VARIANTS = [
    (
        NameOnlyOwnership,
        [
            "test_list_never_returns_another_deployments_instances",
            "test_legacy_instances_are_listed_without_identity_and_adopted_by_tagging",
        ],
        "another deployment",
    ),
    (
        NoFleetTag,
        ["test_launch_list_console_terminate", "test_list_never_returns_another_deployments_instances"],
        "fleet identity",
    ),
    (FirstPageOnly, ["test_list_reads_every_page"], "it must follow every page"),
    (TerminateRaisesOnUnknown, ["test_terminate_unknown_id_is_success"], "is success"),
    (IdempotencyInMemory, ["test_launch_retried_from_a_fresh_process_creates_nothing_new"], "second batch"),
    (MillisecondLaunchedAt, ["test_launched_at_is_unix_seconds"], "is not unix seconds"),
    (SpotIgnored, ["test_spot_launch_is_listed_as_spot"], "was spot ignored?"),
    (LaunchWaitsForBoot, ["test_launch_does_not_wait_for_boot"], "never wait for the machine to boot"),
    (NoIdentityPart, ["test_init_script_sets_the_instance_id"], "sets SCALER_INSTANCE_ID"),
    (ConsoleCrashesOnUnknown, ["test_console_output_of_unknown_id_is_a_typed_error"], "crashed the plugin"),
    (UntypedErrors, [f"test_cloud_errors_are_typed[{c}-{k}]" for c, k in FAULTS], "expected "),
]
#: every launch of this variant takes the boot time: run only the test it fails
ONLY_ITS_TEST = {LaunchWaitsForBoot}

INNER = """
from tests.core.test_testing import MemoryKit, {variant}


class TestVariant(MemoryKit):
    provider_class = {variant}
"""


@pytest.mark.parametrize(("variant", "failing", "message"), VARIANTS, ids=[v[0].__name__ for v in VARIANTS])
def test_the_kit_fails_a_broken_provider(
    pytester: pytest.Pytester, variant: type[GoodProvider], failing: list[str], message: str
) -> None:
    pytester.makepyfile(test_variant=INNER.format(variant=variant.__name__))
    args = ["-p", "no:cacheprovider"]
    if variant in ONLY_ITS_TEST:
        args += ["-k", failing[0]]
    recorder = pytester.inline_run(*args)
    passed, _skipped, failed = recorder.listoutcomes()
    assert sorted(report.nodeid.split("::")[-1] for report in failed) == sorted(failing)
    for report in failed:
        assert message in report.longreprtext, report.longreprtext
    if variant not in ONLY_ITS_TEST:
        assert len(passed) > 10  # the rest of the kit ran and passed: the failure is the variant's
