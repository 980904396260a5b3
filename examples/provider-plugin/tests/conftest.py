import sys
from pathlib import Path

# the tests run from a checkout without installing the package (pip install -e . works too)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
