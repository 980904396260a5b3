"""A service account key given as its JSON content (``gcp.credentials_json``, as ClearML's GCP
autoscaler and its vault take it), not only as a file path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scaler.config.loading import build_config
from scaler.errors import AuthError
from scaler.host import PluginHost
from scaler_gcp import clients
from tests.fakes.gce_server import FakeGCE

RESOURCE = {
    "name": "gpu",
    "queue": "q",
    "max_instances": 1,
    "gcp": {"machine_type": "n1-standard-4", "zones": ["us-central1-a"], "image": "family/debian-12"},
}


def key_json() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "from-the-content",
            "private_key_id": "abc",
            "private_key": pem,
            "client_email": "scaler@from-the-content.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )


def raw(**gcp: Any) -> dict[str, Any]:
    return {"scaler": {"name": "s"}, "gcp": gcp, "resources": [RESOURCE]}


def test_a_key_given_as_content_builds_the_session(fake_gce: FakeGCE, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(clients.EMULATOR_ENV, raising=False)
    clients.reset_sessions()
    content = key_json()
    host = PluginHost()
    config_raw = raw(credentials_json=content, api_endpoint=fake_gce.url)
    assert not [p for p in host.validate(config_raw, "gcp", host.provider_names()) if p.severity == "error"]
    config = build_config(config_raw, provider="gcp")
    assert "PRIVATE KEY" not in repr(config.provider_settings)  # a secret: masked wherever it is printed
    session = clients.session_for(config)
    assert session.project == "from-the-content"
    assert "scaler@from-the-content.iam.gserviceaccount.com (gcp.credentials_json)" in session.principal
    assert clients.session_for(config) is session  # cached by the key's digest
    clients.reset_sessions()


def test_the_content_is_checked_and_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(clients.EMULATOR_ENV, raising=False)
    host = PluginHost()
    providers = host.provider_names()
    problems = host.validate(raw(credentials_json="not json secretstuff"), "gcp", providers)
    assert [p.path for p in problems] == ["gcp.credentials_json"]
    assert "secretstuff" not in problems[0].render()
    both = host.validate(raw(credentials_json=key_json(), credentials_file="/tmp/key.json"), "gcp", providers)
    assert any("not both" in p.message for p in both)
    garbage = '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nsecretstuff"}'
    clients.reset_sessions()
    with pytest.raises(AuthError, match="credentials_json is not a usable service account") as info:
        clients.session_for(build_config(raw(credentials_json=garbage, project="p-12345"), provider="gcp"))
    assert "secretstuff" not in str(info.value)


def test_the_vault_and_clearml_spellings_set_it() -> None:
    catalog = PluginHost().catalog()
    keys = catalog.vault_keys("gcp")
    assert keys["gcp_credentials"] == keys["gcp_credentials_json"] == "gcp.credentials_json"
    assert catalog.vault_keys("aws")["aws_credentials_key_id"] == "aws.access_key_id"
    assert catalog.env_for(("gcp", "credentials_json")) == "SCALER_GCP_CREDENTIALS_JSON"
