"""The app's /api route table as test parameters, and a concrete URL for each route."""

from __future__ import annotations

import pytest

from collab.http.app import API
from collab.http.openapi import Route, openapi_path

BODY_ROUTES = [pytest.param(r, id=f"{r.method} {openapi_path(r.path)}") for r in API if r.body]
ROOM_ROUTES = [
    pytest.param(r, id=f"{r.method} {openapi_path(r.path)}") for r in API if "{room" in r.path
]


def url_of(route: Route, room: str) -> str:
    path = openapi_path(route.path)
    return path.replace("{room}", room).replace("{seq}", "1").replace("{id}", "1")
