"""``python -m scaler.cli``."""

from scaler.cli import main

main()
