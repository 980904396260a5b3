"""The one worker↔instance join (scaler.engine.fleet), used by the policy, the reconciler and
``scaler status``; and that the reconciler changes the policy's state only through the policy."""

from __future__ import annotations

import ast
import inspect

from scaler.engine import reconciler
from scaler.engine.fleet import WorkerObs, join, worker_home, worker_id
from scaler.types import Instance, InstanceState

PREFIX = "dyn"


def M(iid: str, res: str = "a", state: str = "running") -> Instance:
    return Instance(iid, res, InstanceState(state), 0.0)


def W(wid: str, task: str | None = None) -> WorkerObs:
    return WorkerObs(wid, ("q",), task)


def test_workers_join_their_instance_by_id() -> None:
    instances = [M("i-1"), M("i-2", "b", "pending"), M("i-3", "a"), M("i-9", "a", "terminated")]
    workers = [
        W("dyn:a:i-1", "t-1"),
        W("dyn:a:i-1:2"),  # a second agent on the same machine
        W("dyn:b:i-2"),
        W("dyn:a:i-9", "t-9"),  # the dead worker of a terminated machine, still listed by ClearML
        W("dyn:a:i-7"),  # our prefix, no instance of ours at all
        W("dyn:b:i-1"),  # our prefix, an instance of ours under another resource: not its worker
        W("old:a:i-3", "t-3"),  # registered before workers_prefix changed: i-3's worker all the same
        W("other:a:i-77", "t-5"),  # another fleet's worker: foreign
        W("static-agent", "t-4"),
    ]
    fleet = join(PREFIX, instances, workers)
    assert {r: [i.id for i in insts] for r, insts in fleet.alive.items()} == {"a": ["i-1", "i-3"], "b": ["i-2"]}
    assert fleet.count("a") == 2 and fleet.count("b") == 1 and fleet.count("c") == 0
    assert fleet.alive_ids() == {"i-1", "i-2", "i-3"}
    assert {k: [w.id for w in v] for k, v in fleet.workers_of.items()} == {
        "i-1": ["dyn:a:i-1", "dyn:a:i-1:2"],
        "i-2": ["dyn:b:i-2"],
        "i-3": ["old:a:i-3"],
    }
    assert fleet.renamed == {"old:a:i-3": "old"}
    # dead workers whose instance is gone count for nothing: strays, like a worker with no instance
    assert [w.id for w in fleet.strays] == ["dyn:a:i-9", "dyn:a:i-7", "dyn:b:i-1"]
    assert [w.id for w in fleet.foreign] == ["other:a:i-77", "static-agent"]
    # ... but `scaler status` still shows a dead worker beside its (terminated) machine
    assert [w.id for w in fleet.workers_on("i-9")] == ["dyn:a:i-9"]
    assert [w.id for w in fleet.workers_on("i-1")] == ["dyn:a:i-1", "dyn:a:i-1:2"]
    assert [w.id for w in fleet.workers_on("i-3")] == ["old:a:i-3"]
    # a dead worker's task is run by nobody; a foreign worker's task is run
    assert fleet.live_tasks() == {"t-1", "t-3", "t-4", "t-5"}


def test_a_worker_is_known_by_its_instance_id_whatever_the_prefix() -> None:
    """workers_prefix changed from "old" to "dyn": the busy machine launched before keeps its worker."""
    fleet = join(PREFIX, [M("i-1"), M("i-2")], [W("old:a:i-1", "t-1"), W("old:a:i-2:2"), W("old:a:i-5", "t-5")])
    assert fleet.workers_of == {"i-1": [W("old:a:i-1", "t-1")], "i-2": [W("old:a:i-2:2")]}
    assert fleet.renamed == {"old:a:i-1": "old", "old:a:i-2:2": "old"}
    assert [w.id for w in fleet.foreign] == ["old:a:i-5"] and fleet.strays == []


def F(iid: str, fleet: str, res: str = "a", state: str = "running") -> Instance:
    return Instance(iid, res, InstanceState(state), 0.0, fleet=fleet)


def test_instances_by_identity_own_legacy_foreign() -> None:
    instances = [F("i-own", "me"), F("i-legacy", ""), F("i-claimed", ""), F("i-remembered", ""), F("i-theirs", "you")]
    workers = [W("dyn:a:i-own"), W("dyn:a:i-claimed", "t-1"), W("dyn:a:i-theirs", "t-2")]
    fleet = join(PREFIX, instances, workers, fleet_id="me", claimed={"i-remembered"})
    assert [i.id for i in fleet.own] == ["i-own", "i-claimed", "i-remembered"]
    assert [i.id for i in fleet.claimed] == ["i-claimed", "i-remembered"]
    assert [i.id for i in fleet.unclaimed] == ["i-legacy"]
    assert [i.id for i in fleet.foreign_instances] == ["i-theirs"]
    assert fleet.alive_ids() == {"i-own", "i-claimed", "i-remembered"}
    # an unclaimed legacy machine may be ours still booting: it counts against max_instances
    assert fleet.count("a") == 4 and fleet.total() == 4
    # a worker naming a foreign machine is not this fleet's to count
    assert [w.id for w in fleet.strays] == ["dyn:a:i-theirs"]
    # without an identity (the simulator), everything listed without one is the fleet's
    plain = join(PREFIX, [F("i-1", ""), F("i-2", "")], [], fleet_id="")
    assert [i.id for i in plain.own] == ["i-1", "i-2"] and plain.unclaimed == []


def test_unread_sources_join_to_an_empty_fleet() -> None:
    fleet = join(PREFIX, None, None)
    assert (fleet.alive, fleet.workers_of, fleet.strays, fleet.foreign) == ({}, {}, [], [])
    only_workers = join(PREFIX, None, [W("dyn:a:i-1", "t-1")])
    assert [w.id for w in only_workers.strays] == ["dyn:a:i-1"] and only_workers.live_tasks() == set()
    only_instances = join(PREFIX, [M("i-1")], None)
    assert only_instances.count("a") == 1 and only_instances.workers_of == {}


def test_worker_ids() -> None:
    assert worker_id(PREFIX, "gpu", "i-0abc") == "dyn:gpu:i-0abc"
    assert worker_home(PREFIX, "dyn:gpu:i-0abc") == ("gpu", "i-0abc")
    assert worker_home(PREFIX, "dyn:gpu:i-0abc:2") == ("gpu", "i-0abc")
    assert worker_home(PREFIX, "dyn:gpu") is None
    assert worker_home(PREFIX, "dynamic:gpu:i-1") is None
    assert worker_home(PREFIX, "other:gpu:i-1") is None


def test_the_reconciler_changes_policy_state_only_through_the_policy() -> None:
    """No ``self.state.<field> = ...``, ``self.state.<field>[k] = ...`` or ``self.state.<field>.pop(...)``
    in the reconciler: it does the I/O and reports back through the policy's functions."""

    def on_state(node: ast.AST) -> bool:
        """``self.state.<field>`` or anything under it."""
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "state"
                and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "self"
            ):
                return True
            node = node.value
        return False

    mutators = {"pop", "setdefault", "update", "clear", "add", "discard", "remove", "popitem", "append"}
    writes = []
    for node in ast.walk(ast.parse(inspect.getsource(reconciler))):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = list(node.targets)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in mutators:
            targets = [node.func.value]
        writes += [ast.unparse(t) for t in targets if on_state(t)]
    assert writes == []
