import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("RECSYS_NO_PROGRESS", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared"
MIRROR = SHARED / "data" / "mirror"


@pytest.fixture
def mirror_dir() -> Path:
    if not (MIRROR / "ml-100k.zip").exists():
        pytest.skip(f"MovieLens 100K mirror not found at {MIRROR} (../shared is absent)")
    return MIRROR
