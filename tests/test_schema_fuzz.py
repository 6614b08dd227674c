"""Schemathesis against the service's own OpenAPI schema: no input ever gets a 500."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings

from service.api.app import create_app
from tests.conftest import CountingEmbedder, make_settings
from tests.servers import running


def test_no_input_gets_a_500(tmp_path: Path, embedder: CountingEmbedder) -> None:
    app = create_app(make_settings(tmp_path / "d", upstream={"api_key": None}), embedder=embedder)
    schema = schemathesis.openapi.from_dict(app.openapi())
    statuses: list[int] = []
    with running(app) as url:

        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=schema.as_strategy())
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=url, timeout=30)
            statuses.append(response.status_code)
            assert response.status_code != 500, (case.method, case.path, response.text)
            # /dashboard is a page for people: its errors are HTML on purpose.
            if response.status_code >= 400 and case.path != "/dashboard":
                assert "json" in str(response.headers.get("content-type")), (
                    case.method,
                    case.path,
                    response.status_code,
                    response.text[:200],
                )
                assert response.json()["type"] == "error"

        check()
    assert len(statuses) >= 50 and any(s < 300 for s in statuses)
