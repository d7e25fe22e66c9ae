"""Fixtures the unit tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.secret_files import secret_files


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Files for the Redis TLS and password-file settings; the password is ``SECRET``."""
    return secret_files(tmp_path)
