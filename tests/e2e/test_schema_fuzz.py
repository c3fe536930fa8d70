"""schemathesis over the OpenAPI document against the real running service: no 5xx, and
every answer conforms to the schema. Bounded here; `QFLEET_FUZZ_EXAMPLES=500 pytest
tests/e2e/test_schema_fuzz.py` is the longer run."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from qfleet_server.stack import Stack

pytestmark = pytest.mark.e2e
EXAMPLES = int(os.environ.get("QFLEET_FUZZ_EXAMPLES", "15"))


def test_no_server_errors_and_answers_match_the_schema(stack: Stack) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    tried = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith("/v1/admin/keys") and operation.method.upper() in ("POST", "DELETE"):
            continue  # would create or revoke the stack's own keys

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers=headers, checks=[not_a_server_error, response_schema_conformance, status_code_conformance]
            )

        run()
        tried.append(f"{operation.method.upper()} {operation.path}")
    assert "POST /v1/jobs" in tried and len(tried) >= 8
