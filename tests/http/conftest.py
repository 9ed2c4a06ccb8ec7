"""Fixtures of the HTTP tests: a server with auth on (``tests.http.api.SECRET``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from collab.config import Config
from tests.conftest import Server, start_server
from tests.http.api import SECRET


@pytest.fixture
def auth_config(config: Config) -> Config:
    return config.replace(auth_secret=SECRET, revocation_poll=0.2)


@pytest.fixture
async def auth_server(auth_config: Config) -> AsyncIterator[Server]:
    async with start_server(auth_config) as running:
        yield running
