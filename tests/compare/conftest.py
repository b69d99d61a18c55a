import sys
from pathlib import Path

import pytest

BLOBS_APP = Path(__file__).parent / "blobs_app"
BLOBS_CONFIG = {
    "num-server-rounds": 4,
    "local-steps": 30,
    "label-counts": True,
    "fraction-train": 1.0,
}


@pytest.fixture(scope="session")
def blobs():
    """The blobs test app's module (six classes; partition p never holds 2p and 2p + 1)."""
    sys.path.insert(0, str(BLOBS_APP))
    try:
        import blobs
    finally:
        sys.path.remove(str(BLOBS_APP))
    return blobs
