"""The fault suite (issue #15): every fault found in the adversarial pass, through the real CLI.
``helpers`` lives one folder up."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
