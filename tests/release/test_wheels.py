"""The release artefacts, as a user gets them: sdists and wheels of core and both plugins built
with ``python -m build`` (the wheel from the sdist, so a file missing from either fails),
checked with ``twine check --strict``, installed (not editable) into a fresh virtualenv, and
smoke-run there: ``scaler --version``, ``scaler providers``, ``validate-config`` on every
example, ``scaler demo``.

The fresh virtualenv reuses the dependencies already installed in this one (clearml, boto3,
google-cloud-compute, ...) through a folder of links to them that leaves our own three
distributions out, so the test needs no network and no index: the three wheels are installed
with ``--no-deps --no-index`` and ``pip check`` then confirms that every requirement they
declare is met.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from scaler import __version__
from tests.release.support import source_files
from tests.support import REPO

#: project folder (relative to the repository) → distribution, import package
PROJECTS = {
    ".": ("clearml-scaler", "scaler"),
    "plugins/aws": ("clearml-scaler-aws", "scaler_aws"),
    "plugins/gcp": ("clearml-scaler-gcp", "scaler_gcp"),
}
#: what the providers command must list from the installed wheels
PROVIDERS = ("aws", "gcp", "simulated")


def run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(map(str, args))} exited {proc.returncode}:\n{output}"
    assert "Traceback" not in output, output
    return proc.stdout


def package_data(files: list[str], project: str, package: str) -> set[str]:
    """The files of ``package`` a wheel must carry besides its Python modules, relative to the project."""
    base = "" if project == "." else f"{project}/"
    return {
        name.removeprefix(base)
        for name in files
        if name.startswith(f"{base}{package}/") and not name.endswith((".py", ".pyc")) and "__pycache__" not in name
    }


def missing_from_wheel(wheel: Path, expected: set[str]) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return expected - set(archive.namelist())


@dataclass
class Built:
    source: Path
    dist: Path
    files: list[str]

    def wheel(self, distribution: str) -> Path:
        return self.dist / f"{distribution.replace('-', '_')}-{__version__}-py3-none-any.whl"

    def sdist(self, distribution: str) -> Path:
        return self.dist / f"{distribution.replace('-', '_')}-{__version__}.tar.gz"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """sdist + wheel of the three projects, built from a copy of the source tree (so nothing is
    written into the checkout) with the build backend installed here (``--no-isolation``)."""
    root = tmp_path_factory.mktemp("release")
    source, dist = root / "source", root / "dist"
    files = source_files()
    for name in files:
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    for project in PROJECTS:
        run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, source / project, timeout=180)
    return Built(source, dist, files)


def test_build_makes_an_sdist_and_a_wheel_of_each(built: Built) -> None:
    expected = set()
    for distribution, _package in PROJECTS.values():
        expected |= {built.wheel(distribution).name, built.sdist(distribution).name}
    assert {path.name for path in built.dist.iterdir()} == expected


def test_twine_check(built: Built) -> None:
    output = run(sys.executable, "-m", "twine", "check", "--strict", *sorted(built.dist.iterdir()))
    assert output.count("PASSED") == 2 * len(PROJECTS), output


@pytest.mark.parametrize("project", sorted(PROJECTS))
def test_each_wheel_and_sdist_carries_its_data_files_and_licence(built: Built, project: str) -> None:
    distribution, package = PROJECTS[project]
    wheel, sdist = built.wheel(distribution), built.sdist(distribution)
    data = package_data(built.files, project, package)
    if project == ".":
        assert {"scaler/sim/data/demo-trace.json", "scaler/sim/data/demo.conf"} <= data  # what `scaler demo` reads
    assert not missing_from_wheel(wheel, data), f"{wheel.name} lacks package data (tool.setuptools.package-data)"
    dist_info = f"{distribution.replace('-', '_')}-{__version__}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        meta = archive.read(f"{dist_info}/METADATA").decode()
    assert f"{dist_info}/licenses/LICENSE" in names
    assert {name.split("/")[0] for name in names} == {package, dist_info}, "nothing but the package (no tests/)"
    assert f"Version: {__version__}" in meta and "License-Expression: Apache-2.0" in meta
    assert "Description-Content-Type: text/markdown" in meta
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "pyproject.toml"} <= members
    assert data <= members


def test_the_data_file_check_catches_a_wheel_without_its_data(built: Built, tmp_path: Path) -> None:
    """The check above on a wheel that lost scaler/sim/data (e.g. package-data dropped)."""
    wheel = built.wheel("clearml-scaler")
    broken = tmp_path / wheel.name
    with zipfile.ZipFile(wheel) as good, zipfile.ZipFile(broken, "w") as bad:
        for item in good.infolist():
            if not item.filename.startswith("scaler/sim/data/"):
                bad.writestr(item, good.read(item))
    assert missing_from_wheel(broken, package_data(built.files, ".", "scaler")) == {
        "scaler/sim/data/demo-trace.json",
        "scaler/sim/data/demo.conf",
    }


# -- the installed wheels ----------------------------------------------------------------------


def dependency_view(target: Path) -> Path:
    """A folder of links to everything installed in this environment except the distributions
    that register ``scaler`` plugins (ours, editable here, and any example plugin)."""
    site = Path(sysconfig.get_paths()["purelib"])
    skip: set[str] = set()
    for dist in metadata.distributions():
        if dist.metadata["Name"] == "clearml-scaler" or dist.entry_points.select(group="scaler"):
            for file in dist.files or []:
                skip.add(file.parts[0])
    target.mkdir()
    for entry in site.iterdir():
        if entry.name not in skip and not entry.name.startswith("__editable__"):
            (target / entry.name).symlink_to(entry)
    return target


@pytest.fixture(scope="module")
def venv(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("venv")
    env_dir = root / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", env_dir)
    python = env_dir / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    view = dependency_view(root / "dependencies")
    (Path(purelib) / "_clearml_scaler_test_dependencies.pth").write_text(
        f"import site; site.addsitedir({str(view)!r})\n"
    )
    wheels = [built.wheel(distribution) for distribution, _ in PROJECTS.values()]
    pip = (sys.executable, "-m", "pip", "--python", python, "--disable-pip-version-check")
    run(*pip, "install", "--quiet", "--no-deps", "--no-index", *wheels, timeout=180)
    run(*pip, "check")
    yield env_dir


def smoke_env(tmp: Path) -> dict[str, str]:
    """The user's environment, less what would let the checkout leak in (PYTHONPATH) or
    restrict the plugins (SCALER_LOAD_PLUGINS: the wheels must load by default)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SCALER_LOAD_PLUGINS")}
    env["HOME"] = str(tmp)
    return env


#: a vault is merged into a configuration of its provider: this one, which pins no zone (the
#: example vault moves the example fleet to another region, away from aws.conf's zones: see
#: tests/core/config/test_validate.py); ``{prefix}`` is the example's workers_prefix, so the
#: vault's ``match`` sections apply
VAULT_BASE = {
    "aws": """
scaler { workers_prefix = "{prefix}" }
aws { region = "us-east-1" }
resources = [ { name = "gpu", queue = "gpu", max_instances = 1,
                aws { instance_type = "g5.xlarge", ami_id = "ami-0abcdef1234567890" } } ]
""",
}


def examples(source: Path, tmp: Path) -> list[tuple[str, list[str]]]:
    """Each example file with the arguments that validate it: a configuration with its provider
    (its cloud section), a vault (``auto_scaler.v1.<provider>``) merged into a configuration of
    its provider."""
    configs: dict[str, Path] = {}
    vaults: dict[str, Path] = {}
    fleets: list[Path] = []  # a fleet across clouds: validated as a whole, each resource on its cloud
    for path in sorted((source / "examples").glob("*.conf")):
        text = path.read_text()
        vault = re.search(r"^auto_scaler\.v1\.(\w+)", text, re.M)
        if vault:
            vaults[vault.group(1)] = path
            continue
        sections = [p for p in PROVIDERS if re.search(rf"^{p}\s*\{{", text, re.M)]
        assert sections, f"{path.name}: which provider? (no cloud section)"
        if len(sections) > 1:
            fleets.append(path)
            continue
        configs[sections[0]] = path
    cases = [(path.name, ["--provider", provider, str(path)]) for provider, path in configs.items()]
    cases += [(path.name, [str(path)]) for path in fleets]
    for provider, vault_path in vaults.items():
        assert provider in VAULT_BASE, f"{vault_path.name}: add a {provider} configuration to VAULT_BASE"
        prefix = re.search(r'workers_prefix\s*=\s*"([^"]+)"', configs[provider].read_text())
        assert prefix, f"{configs[provider].name} names no workers_prefix"
        base = tmp / f"{provider}-vault-base.conf"
        base.write_text(VAULT_BASE[provider].replace("{prefix}", prefix.group(1)))
        cases.append((vault_path.name, ["--provider", provider, "--vault", str(vault_path), str(base)]))
    return cases


def test_the_installed_wheels_run(venv: Path, built: Built, tmp_path: Path) -> None:
    bin_dir = venv / "bin"
    env = smoke_env(tmp_path)
    scaler = bin_dir / "scaler"

    where = run(
        bin_dir / "python",
        "-c",
        "import scaler, scaler_aws, scaler_gcp; print(scaler.__file__, scaler_aws.__file__, scaler_gcp.__file__)",
        cwd=tmp_path,
        env=env,
    )
    for path in where.split():
        assert Path(path).is_relative_to(venv), f"imported from outside the fresh venv: {path}"

    version = run(scaler, "--version", cwd=tmp_path, env=env).splitlines()
    assert version[0] == f"clearml-scaler {__version__}"
    assert f"  plugin aws: clearml-scaler-aws {__version__}" in version
    assert f"  plugin gcp: clearml-scaler-gcp {__version__}" in version

    providers = run(scaler, "providers", cwd=tmp_path, env=env)
    for name in PROVIDERS:
        assert re.search(rf"\b{name}\b", providers), providers
    assert "fail" not in providers.lower(), providers

    cases = examples(built.source, tmp_path)
    assert len(cases) >= 3, cases
    for label, args in cases:
        out = run(scaler, "validate-config", *args, cwd=tmp_path, env=env)
        assert "error" not in out.lower(), f"{label}: {out}"

    demo = run(scaler, "demo", cwd=tmp_path, env=env, timeout=120)
    for line in ("instances launched", "tasks completed", "peak fleet"):
        assert line in demo, demo
