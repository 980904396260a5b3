"""The one redaction of text shown to a person (scaler/config/redact.py): secrets by shape in
free text (scripts, clearml.conf snippets), known secret values anywhere, control characters
of a machine's console; references, booleans, numbers and ordinary words stay readable; no
input makes it slow."""

from __future__ import annotations

import time

import pytest

from scaler.config.redact import MASK, escape_control, find, is_secret_name, known_secrets, machine_output, redact
from scaler.types import Secret

S = "s3cr3tVALUE42"  # the secret in every case below

MASKED = {
    "s3 secret (HOCON, dotted)": (f'sdk.aws.s3.secret = "{S}"', 'sdk.aws.s3.secret = "********"'),
    "s3 credentials block": (f"sdk {{ aws {{ s3 {{ key: {S}, secret: {S} }} }} }}", None),
    "azure account_key": (f'azure.storage.containers: [{{account_name: "a", account_key: "{S}"}}]', None),
    "agent git_pass": (f'agent.git_pass: "{S}"', 'agent.git_pass: "********"'),
    "JSON": (f'{{"password": "{S}", "user": "u"}}', '{"password": "********", "user": "u"}'),
    "YAML": (f"token: {S}", "token: ********"),
    "shell export": (f"export AWS_SECRET_ACCESS_KEY={S}", "export AWS_SECRET_ACCESS_KEY=********"),
    "shell single quotes": (f"GIT_PASS='{S}'", "GIT_PASS='********'"),
    "docker login -p": (f"docker login -u bob -p {S} registry.example.com", None),
    "docker login --password=": (f"docker login --password={S} reg", "docker login --password=******** reg"),
    "--password VALUE": (f'tool --password "{S}" x', 'tool --password "********" x'),
    "--registry-token VALUE": (f"tool --registry-token {S}", "tool --registry-token ********"),
    "URL password": (f"git clone https://oauth2:{S}@gitlab.example.com/x.git", None),
    "URL query token": (f"curl https://host:8443/api?token={S}&x=1", None),
    "GitHub token shape": ("git clone https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/x", None),
    "AWS key id shape": ("echo AKIAIOSFODNN7EXAMPLE", "echo ********"),
}


@pytest.mark.parametrize("case", list(MASKED))
def test_secrets_in_free_text_are_masked(case: str) -> None:
    text, expected = MASKED[case]
    shown = redact(text)
    assert S not in shown and "ghp_abc" not in shown and "AKIAIOSFODNN7" not in shown
    assert MASK in shown
    if expected is not None:
        assert shown == expected
    assert find(text), "find() reports what redact() masks"


KEPT = [
    "password = ${?SCALER_GIT_TOKEN}",
    'echo "$REGISTRY_TOKEN" | docker login -u bob --password-stdin registry.example.com',
    'docker login -u bob -p "$REGISTRY_PASSWORD" reg',
    "mkdir -p logs && docker run -p 8080:80 img && ssh -p 22 host && cp -p /a /b",
    'key_name = "my-keypair"\nuse_credentials_chain: true\ncredentials_json: "/etc/gcs.json"',
    'agent.docker_force_pull: true\nsdk.development.default_output_uri: "s3://bucket/x"',
    'api.api_server: "https://api.example.com:443"\ntoken_ttl = 300',
    "pip install --index-url https://pypi.example.com/simple torch",
    "apt-get install -y htop",
    f"secret_key: {MASK}",
]


@pytest.mark.parametrize("text", KEPT)
def test_references_flags_and_ordinary_text_stay_as_written(text: str) -> None:
    assert redact(text) == text
    assert not find(text)


def test_known_values_are_masked_wherever_they_appear() -> None:
    text = f"console: cloning with {S} ... done; again {S}"
    assert redact(text, [S]) == f"console: cloning with {MASK} ... done; again {MASK}"
    assert redact("a b c", ["a"]) == "a b c"  # too short to search for


def test_known_secrets_of_a_configuration() -> None:
    from scaler.config.loading import build_config

    raw = {
        "scaler": {"git": {"user": "bot", "password": "git-token-1"}, "agent_credentials": {"secret_key": "agent-2"}},
        "resources": [{"name": "cpu", "queue": "cpu", "max_instances": 1}],
    }
    config = build_config(raw, provider="simulated")
    assert known_secrets(config, Secret("server-secret-3"), "") == ["server-secret-3", "git-token-1", "agent-2"]


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("sdk.aws.s3.secret", True),
        ("account_key", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("git_pass", True),
        ("--registry-token", True),
        ("clientSecret", True),
        ("apikey", True),
        ("key_name", False),
        ("credentials_file", False),
        ("use_credentials_chain", False),
        ("--password-stdin", False),
        ("bypass", False),
        ("monkey", False),
        ("api_server", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_control_characters_are_shown_not_obeyed() -> None:
    raw = "ok\r\nred \x1b[31mALERT\x1b[0m\rcover-up\x00\x07 tab\tend\n"
    shown = escape_control(raw)
    assert shown == "ok\nred \\x1b[31mALERT\\x1b[0m\\rcover-up\\x00\\x07 tab\tend\n"
    assert machine_output(f"token={S}\x1b]0;title\x07", [S]) == "token=********\\x1b]0;title\\x07"


@pytest.mark.parametrize(
    "text",
    [
        "a." * 50_000,
        "x" * 200_000,
        "key=" * 50_000,
        "-p " * 50_000,
        "?token=a" * 30_000,
        '"' * 100_000,
        "a://" * 50_000,
    ],
    ids=["dots", "one word", "key=", "-p", "query", "quotes", "schemes"],
)
def test_no_input_makes_it_slow(text: str) -> None:
    start = time.perf_counter()
    redact(text, ["somesecret"])
    assert time.perf_counter() - start < 2
