"""Helpers shared by test modules (no tests here)."""

from pathlib import Path

#: the repository's root folder
REPO = Path(__file__).resolve().parents[2]
