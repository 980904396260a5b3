"""The pip requirements of a ``scaler run --remote`` task: what is running here, as an agent can
install it.

By default the task asks for the installed distributions (core and the provider's plugin) at the
installed version, read from :mod:`importlib.metadata`. A distribution that a services agent
cannot install from a package index is refused with what to do instead:

* an editable checkout (PEP 610 ``direct_url.json`` with ``dir_info.editable``) or a plain
  local directory install (``dir_info`` without ``editable``);
* an unreleased version: a development or local version (``0.2.0.dev3``, ``0.1.0+g1a2b3c``).

A distribution installed from a VCS URL or a remote archive is asked for by that URL
(``clearml-scaler @ git+https://...@<commit>``), which the agent can install.
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path

CORE_DISTRIBUTION = "clearml-scaler"


@dataclass(frozen=True)
class Requirement:
    """One distribution the task needs: ``spec`` for pip, or ``problem`` when no agent can install it."""

    distribution: str
    version: str
    spec: str
    problem: str = ""


def _direct_urls(name: str) -> list[dict[str, object]]:
    """The PEP 610 records of every installed copy of ``name`` (a stray ``*.egg-info`` of a source
    tree on ``sys.path`` may shadow the real one, so all are read)."""
    found = []
    for dist in importlib.metadata.distributions(name=name):
        text = dist.read_text("direct_url.json")
        if not text:
            continue
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict):
            found.append(data)
    return found


def _unreleased(version: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        parsed = Version(version)
    except InvalidVersion:
        return True
    return parsed.is_devrelease or parsed.local is not None


def requirement_of(name: str, module_file: str | None = None) -> Requirement:
    """How the task asks for the installed distribution ``name``.

    ``module_file`` (the ``__file__`` of its import package) tells an editable checkout apart
    when its metadata does not say so: the code runs from outside the installed distribution.
    """
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return Requirement(name, "", name, f"{name} is not installed as a distribution (running from a source tree)")
    version = dist.version
    for data in _direct_urls(name):
        url = str(data.get("url", ""))
        dir_info = data.get("dir_info")
        if isinstance(dir_info, dict):
            kind = "an editable checkout" if dir_info.get("editable") else "a local directory"
            return Requirement(
                name, version, f"{name}=={version}", f"{name} {version} is installed from {kind} ({url})"
            )
        vcs = data.get("vcs_info")
        if isinstance(vcs, dict) and url and not url.startswith("file:"):
            commit = vcs.get("commit_id") or vcs.get("requested_revision")
            ref = f"@{commit}" if commit else ""
            return Requirement(name, version, f"{name} @ {vcs.get('vcs', 'git')}+{url}{ref}")
        if "archive_info" in data and url.startswith(("http://", "https://")):
            return Requirement(name, version, f"{name} @ {url}")
    if module_file is not None and _outside(module_file, dist):
        return Requirement(
            name,
            version,
            f"{name}=={version}",
            f"{name} {version} runs from a source tree ({Path(module_file).parent})",
        )
    if _unreleased(version):
        return Requirement(name, version, f"{name}=={version}", f"{name} {version} is not a released version")
    return Requirement(name, version, f"{name}=={version}")


def _outside(module_file: str, dist: importlib.metadata.Distribution) -> bool:
    try:
        root = Path(str(dist.locate_file(""))).resolve()
        return not Path(module_file).resolve().is_relative_to(root)
    except (OSError, ValueError, TypeError):
        return False


def default_requirements(plugin_distribution: str | None) -> list[Requirement]:
    """Core and (when it is not built in) the provider plugin's distribution, as installed here."""
    import scaler

    found = [requirement_of(CORE_DISTRIBUTION, scaler.__file__)]
    if plugin_distribution and plugin_distribution != CORE_DISTRIBUTION:
        found.append(requirement_of(plugin_distribution))
    return found


def refusal(problems: list[Requirement], queue: str) -> str:
    """What ``--remote`` says when the agent could not install what runs here."""
    lines = [f"--remote: the agent serving '{queue}' would not be able to install the scaler; nothing was created:"]
    lines += [f"  {item.problem}" for item in problems]
    lines += [
        "Fix it in one of these ways:",
        "  * publish the version and install it here from the package index (pip install clearml-scaler ...);",
        "  * name what the agent installs with --package (repeatable): a released version "
        "(--package clearml-scaler==0.1.0), a wheel URL, or a git URL "
        "(--package 'clearml-scaler @ git+https://github.com/ORG/clearml-scaler@v0.1.0');",
        "  * pre-install it where the agent runs the task (its --docker image, or its Python with "
        "agent.package_manager.system_site_packages = true) and pass --package clearml-scaler "
        "(unpinned: already satisfied there).",
    ]
    return "\n".join(lines)
