"""The toy cloud's SDK: a "cloud" kept in a JSON file, with the API of a real one.

It stands in for boto3 or google-cloud-compute, and knows nothing of the scaler: the provider
(``scaler_toycloud``) calls it the way a real provider calls its cloud's SDK. Like a real
cloud it answers lists in pages, keeps the idempotency token of every run request, and
answers a failing call with an error code. Its machines never boot: there is no cloud.
"""

import json
import time
from pathlib import Path

#: machines per page of ``describe``
PAGE_SIZE = 2


class ToyCloudError(Exception):
    """The toy cloud's error answer; ``code`` is one of ``NoCapacity``, ``Quota``, ``Denied``,
    ``Busy`` (try again later) or ``NotFound``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class ToyCloud:
    """The cloud in ``state_file``. Every method is one API call."""

    def __init__(self, state_file: str) -> None:
        self.path = Path(state_file)
        empty = {"machines": {}, "tokens": {}, "errors": {}}
        self.state = json.loads(self.path.read_text()) if self.path.exists() else empty

    def run(self, count: int, size: str, tags: dict, user_data: str, spot: bool, client_token: str) -> list[dict]:
        """Start ``count`` machines with ``tags``; a repeated ``client_token`` gets the machines
        of the first request instead of new ones."""
        self._answer("run")
        machines, tokens = self.state["machines"], self.state["tokens"]
        if client_token not in tokens:
            tokens[client_token] = [f"toy-{len(machines) + n}" for n in range(count)]
            for machine_id in tokens[client_token]:
                machines[machine_id] = {
                    "id": machine_id,
                    "state": "pending",
                    "launched_at": time.time(),
                    "size": size,
                    "spot": spot,
                    "tags": dict(tags),
                    "user_data": user_data,
                }
            self._save()
        return [machines[machine_id] for machine_id in tokens[client_token]]

    def describe(self, tags: dict, page_token: str | None = None) -> tuple[list[dict], str | None]:
        """One page of the machines that carry all ``tags`` and are not terminated, and the
        token of the next page (``None`` after the last)."""
        self._answer("describe")
        found = [
            m
            for m in self.state["machines"].values()
            if m["state"] != "terminated" and tags.items() <= m["tags"].items()
        ]
        start = int(page_token or 0)
        end = start + PAGE_SIZE
        return found[start:end], (str(end) if end < len(found) else None)

    def terminate(self, machine_ids: list[str]) -> None:
        """Terminate machines; ids it does not know are ignored."""
        self._answer("terminate")
        for machine_id in set(machine_ids) & set(self.state["machines"]):
            self.state["machines"][machine_id]["state"] = "terminated"
        self._save()

    def tag(self, machine_ids: list[str], tags: dict) -> None:
        """Add ``tags`` to machines (keeping their other tags); ids it does not know are ignored."""
        self._answer("tag")
        for machine_id in set(machine_ids) & set(self.state["machines"]):
            self.state["machines"][machine_id]["tags"].update(tags)
        self._save()

    def console(self, machine_id: str) -> str:
        """The machine's console output (toy machines print nothing)."""
        self._answer("console")
        if machine_id not in self.state["machines"]:
            raise ToyCloudError("NotFound", f"there is no machine {machine_id}")
        return ""

    def fail(self, call: str, code: str) -> None:
        """From now on, answer every ``call`` (``run``, ``describe``, ...) with the error ``code``."""
        self.state["errors"][call] = code
        self._save()

    def _answer(self, call: str) -> None:
        if call in self.state["errors"]:
            raise ToyCloudError(self.state["errors"][call], f"the toy cloud refuses {call}")

    def _save(self) -> None:
        self.path.write_text(json.dumps(self.state))
