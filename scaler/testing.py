"""The conformance kit: the pytest tests every provider plugin passes against its backend.

Subclass :class:`ProviderConformance` in a test module of your plugin, name the provider, and
supply the fixtures that connect the kit to your cloud's fake, emulator or sandbox::

    import pytest
    from scaler.testing import ProviderConformance, config_for


    class TestMyCloud(ProviderConformance):
        provider_name = "mycloud"

        @pytest.fixture
        def conformance_config(self, my_fake_cloud):
            return config_for("mycloud", {"size": "small"}, top={"region": "eu-1"})

        @pytest.fixture
        def list_page_size(self, my_fake_cloud):
            my_fake_cloud.page_size = 3  # list answers in pages of 3
            return 3  # None: the backend answers every list in one page

        @pytest.fixture
        def inject_fault(self, my_fake_cloud):
            # kind: capacity | quota | auth | transient; call: launch | list | terminate
            return lambda kind, call: my_fake_cloud.fail_every(call, CLOUD_ERROR_CODES[kind])

Fixtures (``conformance_config``, ``list_page_size`` and ``inject_fault`` are required):

``conformance_config``
    A :class:`~scaler.config.model.Config` for the provider with one resource (built with
    :func:`config_for`), pointing at the backend.
``list_page_size``
    The page size the backend answers lists with, or ``None`` when it answers in one page.
    The kit launches more machines than that and expects all of them listed.
``inject_fault``
    ``inject_fault(kind, call)`` makes the backend fail every following ``call`` (``launch``,
    ``list`` or ``terminate``) with the cloud's own error for ``kind`` (``capacity``,
    ``quota``, ``auth``, ``transient``) until the test ends, so the provider's own retries
    meet it too. The kit expects the matching typed error of :mod:`scaler.api`.
``provider``
    The :class:`~scaler.host.Provider` under test; by default the installed plugin named
    :attr:`ProviderConformance.provider_name`, loaded as ``scaler`` loads it.
``foreign_instance``
    Id of a machine in the backend that no scaler owns (no tags), or ``None`` (skipped).
``legacy_instance``
    Id of a machine tagged the way scalers tagged before fleet identities: with the
    configuration's scaler name (``TAG_SCALER``), resource ``res-a`` and a launch token, but no
    ``TAG_FLEET``; or ``None`` (skipped).
``unknown_instance_id``
    A well-formed id of a machine that does not exist.
``launch_in_fresh_process``
    ``launch_in_fresh_process(config, count, launch_token, spot)`` launches from a new Python
    process (the plugin imported anew, nothing shared but the backend) and returns the ids.
    The default runs a subprocess; override it only when the backend lives in the test
    process and a new process could not reach it.

Class attributes: :attr:`~ProviderConformance.launch_time_limit` bounds how long a launch
may take (a launch must not wait for the machine to boot), and
:attr:`~ProviderConformance.clock_tolerance` how far ``launched_at`` may be from now.

Decisions the kit enforces, beyond the hook docstrings: terminating an unknown or
already-gone id is success; the console output of an unknown id is a
:class:`~scaler.errors.ProviderError` raised on purpose (not an empty string, so
``scaler console-output`` can say the machine does not exist, and not a crash); a machine
launched by a scaler of the same name for another deployment (another fleet identity) is
never listed; a legacy machine (name, no identity) is listed with an empty ``fleet``, and,
when the provider implements the optional ``scaler_tag_instances``, listed as the fleet's own
once tagged.

The tests call the plugin only through the host, exactly as the loop does.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
import time
import types
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from scaler.errors import AuthError, CapacityError, ProviderError, QuotaError, TransientError
from scaler.host import PluginBugError, PluginHost, Provider
from scaler.types import TAG_FLEET, InstanceState, RenderContext, ServerInfo, fleet_identity

if TYPE_CHECKING:
    from scaler.config.model import Config

SCRIPT = "#!/bin/bash\necho conformance\n"
#: the typed error the kit expects for each kind of injected fault
EXPECTED_ERRORS: dict[str, type[ProviderError]] = {
    "capacity": CapacityError,
    "quota": QuotaError,
    "auth": AuthError,
    "transient": TransientError,
}
#: (call, kind) pairs the kit injects: every kind on launch; what can break a list or a terminate
FAULTS = (
    ("launch", "capacity"),
    ("launch", "quota"),
    ("launch", "auth"),
    ("launch", "transient"),
    ("list", "auth"),
    ("list", "transient"),
    ("terminate", "auth"),
    ("terminate", "transient"),
)
IDENTITY_ORDER = 200
IDENTITY_RE = re.compile(r"(?<![\w$])(?:export\s+)?SCALER_INSTANCE_ID=")

FaultInjector = Callable[[str, str], None]
FreshLaunch = Callable[["Config", int, str, bool], list[str]]


def _token() -> str:
    return str(uuid.uuid4())


def _ids(instances: Any) -> list[str]:
    return [i.id for i in instances]


class ProviderConformance:
    """The behaviour every provider owes the loop. Set :attr:`provider_name` and supply the
    fixtures described in :mod:`scaler.testing`."""

    provider_name: ClassVar[str] = ""
    #: seconds a launch of one machine may take: it returns once the cloud accepted the
    #: request, it never waits for the machine to boot or a spot request to be fulfilled. A boot
    #: or a waiter takes tens of seconds (botocore's EC2 waiters poll every 15 s); the margin
    #: below that keeps a busy test machine's slow API round trips from failing the check
    launch_time_limit: ClassVar[float] = 5.0
    #: seconds ``launched_at`` may differ from the scaler's clock (it is unix seconds)
    clock_tolerance: ClassVar[float] = 3600.0

    # -- fixtures ------------------------------------------------------------------------

    @pytest.fixture
    def provider(self) -> Provider:
        return PluginHost().provider(self.provider_name)

    @pytest.fixture
    def conformance_config(self) -> Config:
        pytest.fail(f"{type(self).__name__}: supply the conformance_config fixture (see scaler.testing)")

    @pytest.fixture
    def list_page_size(self) -> int | None:
        pytest.fail(
            f"{type(self).__name__}: supply the list_page_size fixture: the page size your backend "
            "lists with (None if it answers in one page); see scaler.testing"
        )

    @pytest.fixture
    def inject_fault(self) -> FaultInjector:
        pytest.fail(
            f"{type(self).__name__}: supply the inject_fault fixture: inject_fault(kind, call) makes the "
            "backend fail with the cloud's error for capacity/quota/auth/transient; see scaler.testing"
        )

    @pytest.fixture
    def foreign_instance(self) -> str | None:
        """Id of an instance that exists in the backend but belongs to no scaler."""
        return None

    @pytest.fixture
    def legacy_instance(self) -> str | None:
        """Id of an instance tagged with the scaler's name but no fleet identity (launched before identities)."""
        return None

    @pytest.fixture
    def unknown_instance_id(self) -> str:
        return "scaler-conformance-unknown-0"

    @pytest.fixture
    def launch_in_fresh_process(self, provider: Provider) -> FreshLaunch:
        def launch(config: Config, count: int, launch_token: str, spot: bool) -> list[str]:
            return launch_in_subprocess(provider, config, count, launch_token, spot)

        return launch

    # -- helpers -------------------------------------------------------------------------

    def _alive(self, provider: Provider, config: Config) -> dict[str, Any]:
        return {i.id: i for i in provider.list_instances(config) if i.state.alive}

    def _check_launched_at(self, value: float, before: float, after: float, where: str) -> None:
        low, high = before - self.clock_tolerance, after + self.clock_tolerance
        assert low <= value <= high, (
            f"{where}: launched_at {value!r} is not unix seconds near the launch ({before:.0f}); "
            "milliseconds or another clock?"
        )

    # -- launch, list, terminate ---------------------------------------------------------

    def test_launch_list_console_terminate(self, provider: Provider, conformance_config: Config) -> None:
        config = conformance_config
        resource = config.resources[0]
        token = _token()
        created = provider.launch(config, resource, 2, SCRIPT, token, False)
        assert len(created) == 2, f"launch(count=2) returned {len(created)} instances: {_ids(created)}"
        listed = {i.id: i for i in provider.list_instances(config)}
        for inst in created:
            assert inst.id in listed, f"launched {inst.id} is not listed at once (tags must be set in the launch call)"
            found = listed[inst.id]
            assert found.resource == resource.name, f"{inst.id} is listed with resource {found.resource!r}"
            assert found.launch_token == token, f"{inst.id} is listed with launch token {found.launch_token!r}"
            assert found.fleet == config.fleet_id, (
                f"{inst.id} is listed with fleet {found.fleet!r}, not the fleet identity {config.fleet_id!r}: "
                "tag every machine with config.tags_for(resource.name, launch_token) and read it back "
                "(Instance.from_tags)"
            )
            assert found.state in (InstanceState.PENDING, InstanceState.RUNNING), f"{inst.id} is {found.state}"
        assert isinstance(provider.console_output(config, created[0].id), str)
        provider.terminate(config, _ids(created))
        alive = set(self._alive(provider, config))
        assert not (set(_ids(created)) & alive), f"terminated instances are still alive: {set(_ids(created)) & alive}"

    def test_a_fleet_across_clouds_gives_the_provider_only_its_own(
        self, provider: Provider, conformance_config: Config
    ) -> None:
        """With resources of another cloud beside its own, the provider launches, lists and
        terminates its machines exactly as alone: its hooks get only its own view
        (``config.for_provider``), and nothing of the other cloud's reaches it."""
        alone = conformance_config
        other = "other-cloud" if provider.name != "other-cloud" else "another-cloud"
        elsewhere = replace(
            alone.resources[0], name="elsewhere-" + alone.resources[0].name[:40], provider={}, provider_name=other
        )
        own = tuple(replace(r, provider_name=provider.name) for r in alone.resources)
        fleet = replace(
            alone,
            resources=(elsewhere, *own),
            provider_name="",
            provider_settings={},
            providers={other: {}, provider.name: dict(alone.provider_settings)},
        )
        view = fleet.for_provider(provider.name)
        assert [r.name for r in view.resources] == [r.name for r in own]
        assert view.provider_settings == alone.provider_settings
        token = _token()
        created = provider.launch(fleet, own[0], 1, SCRIPT, token, False)
        assert len(created) == 1, f"launch in a fleet across clouds returned {len(created)} instances"
        listed = {i.id: i for i in provider.list_instances(fleet)}
        assert created[0].id in listed, "a machine launched in a fleet across clouds is not listed by it"
        assert listed[created[0].id].resource == own[0].name
        assert all(i.resource != elsewhere.name for i in listed.values())
        assert created[0].id in {i.id for i in provider.list_instances(alone)}, (
            "the machine is not the same fleet's when listed alone: tags must not depend on the other clouds"
        )
        provider.terminate(fleet, [created[0].id])
        assert created[0].id not in self._alive(provider, alone)

    def test_launched_at_is_unix_seconds(self, provider: Provider, conformance_config: Config) -> None:
        config = conformance_config
        before = time.time()
        created = provider.launch(config, config.resources[0], 1, SCRIPT, _token(), False)
        after = time.time()
        self._check_launched_at(created[0].launched_at, before, after, "launch")
        listed = self._alive(provider, config)[created[0].id]
        self._check_launched_at(listed.launched_at, before, after, "list")

    def test_launch_does_not_wait_for_boot(self, provider: Provider, conformance_config: Config) -> None:
        config = conformance_config
        provider.list_instances(config)  # warm up: clients, connections, lazy imports
        start = time.monotonic()
        provider.launch(config, config.resources[0], 1, SCRIPT, _token(), False)
        took = time.monotonic() - start
        assert took <= self.launch_time_limit, (
            f"launch took {took:.2f}s (limit {self.launch_time_limit:g}s): a launch must return once the cloud "
            "accepted the request, never wait for the machine to boot (the next tick sees it); "
            "raise launch_time_limit if your cloud's API itself is that slow"
        )

    def test_spot_launch_is_listed_as_spot(self, provider: Provider, conformance_config: Config) -> None:
        config = conformance_config
        token = _token()
        try:
            created = provider.launch(config, config.resources[0], 1, SCRIPT, token, True)
        except CapacityError:
            pytest.skip("the backend has no spot capacity (CapacityError is the right answer then)")
        assert created, "launch(spot=True) returned no instance"
        listed = self._alive(provider, config)
        for inst in created:
            assert inst.spot, f"launch(spot=True) returned {inst.id} as on-demand: was spot ignored?"
            assert listed[inst.id].spot, f"asked for spot, {inst.id} is listed as on-demand: was spot ignored?"
        regular = provider.launch(config, config.resources[0], 1, SCRIPT, _token(), False)
        assert not self._alive(provider, config)[regular[0].id].spot, "asked for on-demand, got spot"

    # -- idempotency -----------------------------------------------------------------------

    def test_launch_token_is_idempotent(self, provider: Provider, conformance_config: Config) -> None:
        config = conformance_config
        resource = config.resources[0]
        token = _token()
        first = provider.launch(config, resource, 1, SCRIPT, token, False)
        again = provider.launch(config, resource, 1, SCRIPT, token, False)
        assert set(_ids(again)) <= set(_ids(first)), "a retried launch returns the first call's instances"
        same = [i.id for i in self._alive(provider, config).values() if i.launch_token == token]
        assert sorted(same) == sorted(_ids(first)), f"a retried launch with the same token created more: {same}"

    def test_launch_retried_from_a_fresh_process_creates_nothing_new(
        self, provider: Provider, conformance_config: Config, launch_in_fresh_process: FreshLaunch
    ) -> None:
        config = conformance_config
        token = _token()
        first = set(_ids(provider.launch(config, config.resources[0], 2, SCRIPT, token, False)))
        again = set(launch_in_fresh_process(config, 2, token, False))
        same = {i.id for i in self._alive(provider, config).values() if i.launch_token == token}
        assert same == first, (
            f"a launch retried from a fresh process with the same token created a second batch "
            f"({sorted(same - first)} besides {sorted(first)}): idempotency must live in the cloud "
            "(its idempotency key, or a lookup by the launch-token tag), not in process memory"
        )
        assert again <= first, f"the retried launch returned instances of no launch: {sorted(again - first)}"

    # -- list --------------------------------------------------------------------------------

    def test_list_reads_every_page(
        self, provider: Provider, conformance_config: Config, list_page_size: int | None
    ) -> None:
        config = conformance_config
        count = (list_page_size or 2) + 1
        created = set(_ids(provider.launch(config, config.resources[0], count, SCRIPT, _token(), False)))
        assert len(created) == count, f"launch(count={count}) created {len(created)}"
        listed = _ids(provider.list_instances(config))
        assert len(listed) == len(set(listed)), f"list returned duplicates: {sorted(listed)}"
        missing = created - set(listed)
        assert not missing, (
            f"list returned {len(created & set(listed))} of {count} instances (page size {list_page_size}): "
            f"it must follow every page; missing {sorted(missing)}"
        )

    def test_list_ignores_foreign_instances(
        self, provider: Provider, conformance_config: Config, foreign_instance: str | None
    ) -> None:
        if foreign_instance is None:
            pytest.skip("the backend fixture gives no foreign instance")
        listed = set(_ids(provider.list_instances(conformance_config)))
        assert foreign_instance not in listed, f"list returned {foreign_instance}, which no scaler owns"

    def test_list_is_per_scaler_name(self, provider: Provider, conformance_config: Config) -> None:
        config = conformance_config
        created = set(_ids(provider.launch(config, config.resources[0], 1, SCRIPT, _token(), False)))
        other = replace(config, scaler=replace(config.scaler, name=f"{config.scaler.name}-other"))
        theirs = set(_ids(provider.list_instances(other)))
        assert not (created & theirs), f"scaler {other.scaler.name!r} lists {created & theirs}, which it does not own"

    def test_list_never_returns_another_deployments_instances(
        self, provider: Provider, conformance_config: Config
    ) -> None:
        """Two deployments with the same scaler name (e.g. the default) in one account: neither
        lists the other's machines, so neither can ever terminate them."""
        config = conformance_config
        other = replace(config, fleet_id=fleet_identity(config.scaler.name, "https://other.invalid", "other"))
        theirs = set(_ids(provider.launch(other, other.resources[0], 1, SCRIPT, _token(), False)))
        ours = set(_ids(provider.launch(config, config.resources[0], 1, SCRIPT, _token(), False)))
        listed = {i.id: i for i in provider.list_answer(config)}
        assert not (theirs & set(listed)), (
            f"list returned {sorted(theirs & set(listed))}, launched with the same scaler name by another "
            "deployment (another fleet identity): keep only the machines for which config.listed(tags) holds"
        )
        assert ours <= set(listed), f"list lost this fleet's own {sorted(ours - set(listed))}"
        assert not (ours & set(_ids(provider.list_answer(other)))), "the other deployment lists this one's machines"
        for inst in provider.list_answer(config, include_foreign=True):
            if inst.id in theirs:  # a provider may show them to `scaler status`, as foreign
                assert inst.fleet == other.fleet_id, f"{inst.id} is listed as foreign with fleet {inst.fleet!r}"

    def test_legacy_instances_are_listed_without_identity_and_adopted_by_tagging(
        self, provider: Provider, conformance_config: Config, legacy_instance: str | None, unknown_instance_id: str
    ) -> None:
        if legacy_instance is None:
            pytest.skip("the backend fixture gives no legacy instance")
        config = conformance_config
        listed = {i.id: i for i in provider.list_instances(config)}
        assert legacy_instance in listed, (
            "a machine tagged with the scaler's name but no fleet identity (launched before identities) must be "
            "listed, with an empty fleet: core adopts it once its worker shows it is this fleet's"
        )
        assert listed[legacy_instance].fleet == "", (
            f"legacy {legacy_instance} is listed with fleet {listed[legacy_instance].fleet!r}"
        )
        if not provider.implements("scaler_tag_instances"):
            return
        # an id the cloud does not know (the machine is gone) is skipped, not an error
        provider.tag_instances(config, [legacy_instance, unknown_instance_id], {TAG_FLEET: config.fleet_id})
        after = {i.id: i for i in provider.list_instances(config)}
        assert after[legacy_instance].fleet == config.fleet_id, "tag_instances did not tag the fleet identity"
        assert after[legacy_instance].resource == listed[legacy_instance].resource, "tagging lost the other tags"
        assert after[legacy_instance].launch_token == listed[legacy_instance].launch_token, "tagging lost a tag"
        other = replace(config, fleet_id=fleet_identity(config.scaler.name, "https://other.invalid", "other"))
        assert legacy_instance not in set(_ids(provider.list_answer(other))), (
            "once adopted, the machine is no longer listed by another deployment of the same name"
        )

    # -- terminate ---------------------------------------------------------------------------

    def _terminate(self, provider: Provider, config: Config, ids: list[str], what: str) -> None:
        try:
            provider.terminate(config, ids)
        except ProviderError as exc:
            pytest.fail(
                f"terminate({ids}) with {what} raised {type(exc).__name__}: {exc}; "
                "terminating an unknown or already-gone instance is success"
            )

    def test_terminate_unknown_id_is_success(
        self, provider: Provider, conformance_config: Config, unknown_instance_id: str
    ) -> None:
        config = conformance_config
        self._terminate(provider, config, [unknown_instance_id], "an unknown id")
        live = _ids(provider.launch(config, config.resources[0], 1, SCRIPT, _token(), False))
        self._terminate(provider, config, [unknown_instance_id, *live], "an unknown and a live id")
        assert not (set(live) & set(self._alive(provider, config))), (
            "terminate([unknown, live]) left the live instance running"
        )

    def test_terminate_twice_is_success(self, provider: Provider, conformance_config: Config) -> None:
        config = conformance_config
        ids = _ids(provider.launch(config, config.resources[0], 1, SCRIPT, _token(), False))
        provider.terminate(config, ids)
        self._terminate(provider, config, ids, "already terminated ids")
        assert not (set(ids) & set(self._alive(provider, config)))

    # -- console output ----------------------------------------------------------------------

    def test_console_output_of_unknown_id_is_a_typed_error(
        self, provider: Provider, conformance_config: Config, unknown_instance_id: str
    ) -> None:
        try:
            text = provider.console_output(conformance_config, unknown_instance_id)
        except PluginBugError as exc:
            pytest.fail(f"console output of an unknown id crashed the plugin: {exc}")
        except ProviderError:
            return
        pytest.fail(
            f"console output of an unknown id returned {text!r}: raise ProviderError (the machine does not exist)"
        )

    # -- typed errors ------------------------------------------------------------------------

    @pytest.mark.parametrize(("call", "kind"), FAULTS, ids=[f"{call}-{kind}" for call, kind in FAULTS])
    def test_cloud_errors_are_typed(
        self,
        provider: Provider,
        conformance_config: Config,
        inject_fault: FaultInjector,
        call: str,
        kind: str,
    ) -> None:
        config = conformance_config
        expected = EXPECTED_ERRORS[kind]
        token = _token()
        victims = _ids(provider.launch(config, config.resources[0], 1, SCRIPT, _token(), False))
        inject_fault(kind, call)
        try:
            if call == "launch":
                provider.launch(config, config.resources[0], 1, SCRIPT, token, False)
            elif call == "list":
                provider.list_instances(config)
            else:
                provider.terminate(config, victims)
        except ProviderError as exc:
            assert isinstance(exc, expected), (
                f"a {kind} fault in {call} raised {type(exc).__name__} ({exc}); expected {expected.__name__}"
            )
        else:
            pytest.fail(f"a {kind} fault in {call} raised nothing; expected {expected.__name__}")
        if call == "launch":
            left = [i.id for i in provider.list_instances(config) if i.launch_token == token and i.state.alive]
            assert not left, f"the launch that failed with {expected.__name__} left instances behind: {left}"

    # -- init script ---------------------------------------------------------------------------

    def test_init_script_sets_the_instance_id(self, provider: Provider, conformance_config: Config) -> None:
        config = conformance_config
        context = RenderContext(ServerInfo("http://clearml.invalid:8008"))
        parts = provider.host.init_script_parts(config, config.resources[0], provider.name, context)
        identity = [p for p in parts if p.order == IDENTITY_ORDER and IDENTITY_RE.search(p.text)]
        assert identity, (
            f"no init-script part at order {IDENTITY_ORDER} sets SCALER_INSTANCE_ID: the worker id "
            "<prefix>:<resource>:<instance id> needs the machine's own id (scaler_init_script_parts)"
        )
        for part in identity:
            check = subprocess.run(["bash", "-n"], input=part.text, capture_output=True, text=True, timeout=30)
            assert check.returncode == 0, f"identity part {part.name!r} is not valid bash: {check.stderr}"
        others = provider.host.init_script_parts(config, config.resources[0], f"{provider.name}-other", context)
        foreign = [p.name for p in others if p.order == IDENTITY_ORDER]
        assert not foreign, f"identity parts contributed when another provider is chosen: {foreign}"


# -- helpers for kit users ----------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import importlib, json, pickle, sys
    ref, name, config, count, script, token, spot = pickle.load(sys.stdin.buffer)
    module, _, attr = ref.partition(":")
    plugin = importlib.import_module(module)
    if attr:
        plugin = getattr(plugin, attr)()
    from scaler.host import PluginHost
    host = PluginHost(load_entry_points=False)
    if name not in host.plugins:
        host.register(plugin, name)
    created = host.provider(name).launch(config, config.resources[0], count, script, token, spot)
    json.dump([i.id for i in created], sys.stdout)
    """
)


def provider_for(plugin: Any, name: str) -> Provider:
    """The provider ``name`` answered by ``plugin`` (a module or an object), registered by hand
    in a host of its own with core's built-in plugins: for a plugin that is not installed.
    Raises :class:`~scaler.errors.PluginError` when the plugin fails the load-time checks."""
    host = PluginHost(load_entry_points=False)
    host.register(plugin, name)
    return host.provider(name)


def plugin_reference(plugin: Any) -> str:
    """``module`` for a module plugin, ``module:Class`` for an instance of a class a new
    process can build without arguments."""
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    cls = type(plugin)
    return f"{cls.__module__}:{cls.__qualname__}"


def launch_in_subprocess(provider: Provider, config: Config, count: int, launch_token: str, spot: bool) -> list[str]:
    """Launch through ``provider``'s plugin imported anew in a child Python process (same
    environment and import path); returns the ids the child's launch returned."""
    payload = pickle.dumps(
        (plugin_reference(provider.plugin), provider.name, config, count, SCRIPT, launch_token, spot)
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    child = subprocess.run(
        [sys.executable, "-c", _CHILD], input=payload, capture_output=True, env=env, timeout=120, check=False
    )
    if child.returncode != 0:
        pytest.fail(
            f"the launch from a fresh process failed (exit {child.returncode}); if your backend lives in the test "
            f"process, override launch_in_fresh_process:\n{child.stderr.decode(errors='replace')[-3000:]}"
        )
    return list(json.loads(child.stdout.decode() or "[]"))


def config_for(
    provider: str,
    resource: dict[str, Any],
    top: dict[str, Any] | None = None,
    name: str = "conformance",
    host: PluginHost | None = None,
) -> Config:
    """A validated one-resource config for a conformance run (resource ``res-a`` on queue
    ``q``), its sections normalised from the plugins' declarations as ``scaler run`` does, and
    a fleet identity (``config.fleet_id``) as ``scaler run`` sets it.

    ``host`` holds the provider's plugin (default: the installed plugins); pass
    ``provider.host`` for a plugin registered by hand (:func:`provider_for`). Raises
    ``ValueError`` listing the problems when the configuration is invalid."""
    from scaler.config.loading import build_config

    host = host if host is not None else PluginHost()
    raw: dict[str, Any] = {
        "scaler": {"name": name, "workers_prefix": "conf"},
        "resources": [{"name": "res-a", "queue": "q", "max_instances": 5, provider: resource}],
    }
    if top is not None:
        raw[provider] = top
    errors = [p.render() for p in host.validate(raw, provider, host.provider_names()) if p.severity == "error"]
    if errors:
        raise ValueError("the conformance configuration is invalid:\n" + "\n".join(errors))
    config = build_config(raw, provider=provider, catalog=host.catalog())
    # the fleet identity `scaler run` sets from its ClearML server and workspace
    return replace(config, fleet_id=fleet_identity(name, "https://clearml.conformance.invalid", "conformance"))
