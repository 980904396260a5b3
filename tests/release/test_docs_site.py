"""The documentation builds as a site (mkdocs, strict: a broken link, a missing anchor or a page
left out of the navigation fails), its home page is the README with its commands, and every
page of docs/ is in the navigation."""

from __future__ import annotations

import html
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support import REPO

DOCS = REPO / "docs"
#: pages docs/mkdocs_hooks.py makes from files outside docs/
GENERATED = {"index.md": "README.md", "changelog.md": "CHANGELOG.md"}


def nav_pages(entries: Any) -> list[str]:
    pages: list[str] = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            pages.extend(nav_pages(value))
        elif isinstance(value, str) and not value.startswith(("http://", "https://")):
            pages.append(value)
    return pages


def mkdocs_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    return config


def test_every_docs_page_is_in_the_nav() -> None:
    config = mkdocs_config()
    assert config["docs_dir"] == "docs" and config["strict"] is True
    listed = nav_pages(config["nav"])
    assert len(listed) == len(set(listed)), "a page is listed twice"
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    missing = [p for p in pages if p not in listed]
    assert not missing, f"docs pages not in the nav of mkdocs.yml (add them under the right section): {missing}"
    unknown = [p for p in listed if p not in pages and p not in GENERATED]
    assert not unknown, f"mkdocs.yml lists pages that do not exist: {unknown}"
    assert listed[0] == "index.md", "the home page (the README) comes first"
    assert set(GENERATED) <= set(listed)


def test_the_site_builds_strictly_with_the_readme_as_home(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(REPO / "mkdocs.yml"),
            "-d",
            str(site),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "WARNING" not in output, output
    home = html.unescape((site / "index.html").read_text())
    readme = (REPO / "README.md").read_text()
    commands = readme.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(commands) == 2
    for command in commands:  # the README's two commands, on the home page
        assert command in home, command
    for page in nav_pages(mkdocs_config()["nav"]):
        assert (site / page.removesuffix(".md") / "index.html").is_file() or page == "index.md", page
    # links that leave docs/ point at the repository, not at files the site does not have
    repo = mkdocs_config()["repo_url"].rstrip("/")
    deploying = html.unescape((site / "deploying" / "index.html").read_text())
    assert f'href="{repo}/blob/main/deploy/systemd/clearml-scaler.service"' in deploying
    assert 'href="../deploy/' not in deploying
