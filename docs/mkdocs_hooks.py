"""mkdocs hooks of the documentation site (mkdocs.yml): the README is the home page and
CHANGELOG.md the changelog page, without copies in docs/; a link that leaves docs/ (to
examples/, deploy/, the code) becomes a link to that file in the repository."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
#: generated page → the repository file it shows
GENERATED = {"index.md": "README.md", "changelog.md": "CHANGELOG.md"}
_LINK = re.compile(r"(\]\()([^)\s]+)(\))")
_CODE = re.compile(r"(```.*?```|`[^`\n]*`)", re.S)


def on_files(files: Files, config: Any) -> Files:
    for page, source in GENERATED.items():
        files.append(File.generated(config, page, content=(ROOT / source).read_text()))
    return files


def _rewrite(target: str, source_dir: str, repo: str) -> str:
    """``target`` as written in a file of ``source_dir`` (relative to the repository)."""
    if re.match(r"[a-z][a-z0-9+.-]*:|#|/", target):  # absolute URL, anchor, site-absolute
        return target
    path, hashmark, anchor = target.partition("#")
    resolved = posixpath.normpath(posixpath.join(source_dir, path))
    if resolved.startswith("docs/"):
        return resolved.removeprefix("docs/") + hashmark + anchor if source_dir != "docs" else target
    if resolved in GENERATED.values():  # README.md, CHANGELOG.md: their pages
        return next(p for p, s in GENERATED.items() if s == resolved) + hashmark + anchor
    kind = "tree" if (ROOT / resolved).is_dir() else "blob"
    return f"{repo}/{kind}/main/{resolved}" + hashmark + anchor


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    source = GENERATED.get(page.file.src_uri, f"docs/{page.file.src_uri}")
    source_dir = posixpath.dirname(source)
    repo = config["repo_url"].rstrip("/")

    def links(text: str) -> str:
        return _LINK.sub(lambda m: m.group(1) + _rewrite(m.group(2), source_dir, repo) + m.group(3), text)

    # not inside code: a regular expression in backticks is no link
    parts = _CODE.split(markdown)
    return "".join(part if n % 2 else links(part) for n, part in enumerate(parts))
