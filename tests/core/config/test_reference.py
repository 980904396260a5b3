"""docs/configuration.md is generated from the declared sections and must be current."""

from __future__ import annotations

import subprocess
import sys

from tests.support import REPO


def test_configuration_reference_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "docs" / "gen_configuration.py"), "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, "docs/configuration.md is stale: run python docs/gen_configuration.py"
    text = (REPO / "docs" / "configuration.md").read_text()
    assert "| `aws.access_key_id` | secret string (write `${?AWS_ACCESS_KEY_ID}`)" in text  # Field.env
    assert "| `git_pass` | `scaler.git.password` |" in text  # core's Field.vault
    assert "### `auto_scaler.v1.gcp`" in text and "| `gcp_project` | `gcp.project` |" in text
