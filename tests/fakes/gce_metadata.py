"""A fake GCE metadata server for tests (standard library only), as the instance-identity
fragment of the GCP plugin reads it: ``GET /computeMetadata/v1/instance/name`` with the header
``Metadata-Flavor: Google``. Point the fragment at it with ``GCE_METADATA_HOST=<fake.host>``
(Google's own override of the metadata server's address).

Knobs (public attributes): ``name`` (the instance name answered), ``status`` (200; anything
else answers an HTML error page, the way a proxy or an unhealthy server would) and ``body``
(answered instead of ``name`` when set, e.g. an HTML page with status 200). A request without
the flavor header gets 403, as on GCE. ``requests`` records each path asked for.
"""

from __future__ import annotations

from tests.fakes.loopback import LoopbackServer, QuietHandler

NAME_PATH = "/computeMetadata/v1/instance/name"


class FakeGCEMetadata(LoopbackServer):
    def __init__(self, name: str = "scaler-vm-1", status: int = 200, body: str | None = None) -> None:
        self.name = name
        self.status = status
        self.body = body
        self.requests: list[str] = []
        fake = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                fake.requests.append(self.path)
                if self.headers.get("Metadata-Flavor") != "Google":
                    self._answer(403, "<html><body>Missing Metadata-Flavor:Google header.</body></html>")
                elif self.path != NAME_PATH:
                    self._answer(404, "<html><body>404 Not Found</body></html>")
                elif fake.status != 200:
                    self._answer(fake.status, f"<html><body>Error {fake.status} (Server Error)</body></html>")
                else:
                    self._answer(200, fake.name if fake.body is None else fake.body)

            def _answer(self, status: int, body: str) -> None:
                content_type = "text/html" if body.startswith("<") else "application/text"
                self.send_text(status, body, {"Metadata-Flavor": "Google", "Content-Type": content_type})

        super().__init__(Handler)

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``: the value of ``GCE_METADATA_HOST``."""
        return f"127.0.0.1:{self.port}"
