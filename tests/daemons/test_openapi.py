"""docs/openapi.yaml describes exactly the scheduler's client-facing routes."""

from __future__ import annotations

from pathlib import Path

import yaml

from scheduler.app import create_app
from scheduler.settings import SchedulerSettings

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
METHODS = {"get", "post", "put", "delete", "patch"}


def test_openapi_paths_are_the_live_routes():
    spec = yaml.safe_load(SPEC.read_text())
    documented = {(method.upper(), path) for path, item in spec["paths"].items()
                  for method in item if method in METHODS}
    app = create_app(SchedulerSettings())
    live = {(route.method, route.resource.canonical) for route in app.router.routes()
            if route.method != "HEAD" and not route.resource.canonical.startswith("/internal/")}
    assert documented == live
