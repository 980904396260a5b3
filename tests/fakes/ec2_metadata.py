"""A fake EC2 instance metadata service (IMDSv2) for tests, standard library only, as the AWS
plugin's instance-identity fragment reads it: ``PUT /latest/api/token`` (header
``X-aws-ec2-metadata-token-ttl-seconds``) answers a session token, ``GET
/latest/meta-data/instance-id`` with that token in ``X-aws-ec2-metadata-token`` answers the
instance id; a GET without a valid token gets 401, as with ``HttpTokens = required``. Point the
fragment at it with ``AWS_EC2_METADATA_SERVICE_ENDPOINT=<fake.url>`` (the AWS SDKs' own override).
``requests`` records ``(method, path)`` of each request.
"""

from __future__ import annotations

import secrets

from tests.fakes.loopback import LoopbackServer, QuietHandler

TOKEN_PATH = "/latest/api/token"
INSTANCE_ID_PATH = "/latest/meta-data/instance-id"


class FakeIMDS(LoopbackServer):
    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self.requests: list[tuple[str, str]] = []
        self._tokens: set[str] = set()
        fake = self

        class Handler(QuietHandler):
            def do_PUT(self) -> None:
                fake.requests.append(("PUT", self.path))
                if self.path != TOKEN_PATH:
                    self._answer(404, "Not Found")
                elif not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    self._answer(400, "Missing TTL header")
                else:
                    token = secrets.token_urlsafe(24)
                    fake._tokens.add(token)
                    self._answer(200, token)

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path))
                if self.headers.get("X-aws-ec2-metadata-token") not in fake._tokens:
                    self._answer(401, "Unauthorized")
                elif self.path != INSTANCE_ID_PATH:
                    self._answer(404, "Not Found")
                else:
                    self._answer(200, fake.instance_id)

            def _answer(self, status: int, body: str) -> None:
                self.send_text(status, body, {"Content-Type": "text/plain"})

        super().__init__(Handler)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the value of ``AWS_EC2_METADATA_SERVICE_ENDPOINT``."""
        return f"http://127.0.0.1:{self.port}"
