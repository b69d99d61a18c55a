from pathlib import Path

import pytest


@pytest.fixture
def apps_dir():
    """The folder that holds fixture_apps.py, for import strings like 'fixture_apps:noisy'."""
    return Path(__file__).parent
