"""Shared helpers of the benchmark scripts: arguments, markdown tables, the machine they ran on.

Every script runs on its own (``python bench/<name>.py [--smoke] [--markdown FILE]``), prints
its table(s) and figures, and with ``--markdown`` also writes its section of
``docs/performance.md`` (``bench/run_all.py`` assembles them).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/ first; the project's packages live one up
    sys.path.insert(0, str(ROOT))

TRACES = ROOT / "bench" / "traces"
TRACE_NAMES = ("research-day", "nightly-sweep", "steady-trickle", "dl-lab-2days", "mlaas-weekday")


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes: checks the script runs (CI), figures are meaningless"
    )
    parser.add_argument("--markdown", type=Path, help="also write this benchmark's section of docs/performance.md here")
    parser.add_argument("--img-dir", type=Path, default=ROOT / "docs" / "img", help="where plots go (policies only)")
    return parser.parse_args(argv)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A markdown table; ``align`` has one letter per column (l/r), default: first left, rest right."""
    align = align or "l" + "r" * (len(headers) - 1)
    cells = [[str(c) for c in row] for row in rows]
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    out += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(out)


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def emit(args: argparse.Namespace, markdown: str) -> None:
    """Print the section (it is readable as plain text too) and write it when asked."""
    print(markdown)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown + "\n", encoding="utf-8")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GB"
    except OSError:
        pass
    return "unknown"


def machine() -> str:
    """One line about the machine and software the figures come from."""
    versions = []
    for dist in ("clearml", "boto3", "moto"):
        try:
            from importlib.metadata import version

            versions.append(f"{dist} {version(dist)}")
        except Exception:
            pass
    return (
        f"{_cpu_model()}, {os.cpu_count()} CPUs, {_memory_gb()} RAM; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; " + ", ".join(versions)
    )


def run(cmd: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]


def clearml_env(url_env: dict[str, str], home: Path) -> dict[str, str]:
    """Environment for a process whose clearml SDK must reach only the fake server at ``url_env``
    (``FakeClearML.env()``): no stray ``CLEARML_*``, an empty clearml.conf, a private HOME."""
    home.mkdir(parents=True, exist_ok=True)
    conf = home / "clearml.conf"
    conf.write_text("# empty: the CLEARML_* variables say everything\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    env.update(url_env)
    env.update({"HOME": str(home), "CLEARML_CONFIG_FILE": str(conf)})
    env.setdefault("SCALER_LOAD_PLUGINS", "clearml-scaler-aws,clearml-scaler-gcp")
    return env
