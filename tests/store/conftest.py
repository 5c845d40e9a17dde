from __future__ import annotations

import pytest

import huntsman


@pytest.fixture
def db() -> huntsman.Database:
    return huntsman.connect()
