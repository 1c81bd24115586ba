"""Schemathesis against the real server: the OpenAPI document says exactly what it accepts.

A short, deterministic run of the ``schemathesis`` CLI (every default check:
not_a_server_error, status_code_conformance, content_type_conformance,
response_headers_conformance, response_schema_conformance,
negative_data_rejection, positive_data_acceptance, missing_required_header,
unsupported_method, allow_header_conformance, use_after_free,
ensure_resource_availability, ignored_auth, object_level_authorization)
over the document the real ``twistd -n opengslb`` process serves, once
with the admin token (so every write is exercised, success paths included)
and once without credentials.  Both must report zero failures, and the
server's log must hold no traceback.  No check is excluded: none fails by
design.  Two things make that so, and are part of the contract: read-only
operations declare optional bearer security, so ``unsupported_method``
expects the 401 the gate gives any method but GET and HEAD without a token
(not a 405); and the server is fuzzed once it is ready, because
``/api/v1/ready`` answers 503 before that (for load balancers), which
``not_a_server_error`` would count.

Half a minute to a minute of schemathesis: part of the heavy run
(``python -m pytest -q tests/integration``, which ``.ci/run`` runs), not of
the everyday suite, whose in-memory counterpart is
``tests/unit/test_api_contract.py``.  The longer run for the closing note is
``bench/api_fuzz.py``.
"""

from __future__ import annotations

import pytest

from opengslb.api.openapi import openapi_document
from tests.e2e.api_fuzz import (
    ADMIN_TOKEN,
    FuzzServer,
    run_schemathesis,
    seed_state,
    server_problems,
    start_fuzz_server,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory):
    """One real server for both runs of this module, with an override and a bleeding registration."""
    server = start_fuzz_server(tmp_path_factory.mktemp("fuzz-server"))
    seed_state(server)
    yield server
    server.stop()


def events(server: FuzzServer, name: str) -> int:
    """How many log lines of the server carry ``"event": name``."""
    return server.log().count(f'"event": "{name}"')


def test_schemathesis_with_the_admin_token_finds_nothing(fuzz_server: FuzzServer, tmp_path):
    """Every default check, writes included, over every operation: zero failures, no traceback."""
    result = run_schemathesis(fuzz_server.schema_url, tmp_path, token=ADMIN_TOKEN, max_examples=25)
    assert result.complete and result.exit_code == 0, result.summary()
    assert (result.failures, result.errors) == (0, 0), result.summary()
    operations = sum(1 for item in openapi_document()["paths"].values() for key in item
                     if key in ("get", "put", "post", "delete", "patch", "head", "options"))
    # Schemathesis reports one operation fewer than the document holds (seen with 4.32.5 for
    # every document version: 19 of 20, 20 of 21); every one it selects must be tested.
    assert result.report["operations"]["tested"] == result.report["operations"]["total"]
    assert result.report["operations"]["total"] >= operations - 1
    assert result.cases >= 500, result.summary()
    assert result.report["warnings"]["unsupported_regex"] == [], "schemathesis cannot read a pattern"
    assert server_problems(fuzz_server.log()) == []
    # The run got past the 404s of made-up regions, addresses and ids to the success paths
    # (the set-up made one override and one registration).
    assert events(fuzz_server, "override_set") > 1
    assert events(fuzz_server, "override_deleted") > 0


def test_schemathesis_without_a_token_finds_nothing(fuzz_server: FuzzServer, tmp_path):
    """Without credentials every write is 401 as documented; still zero failures, no traceback."""
    before = events(fuzz_server, "override_set"), events(fuzz_server, "service_registered")
    result = run_schemathesis(fuzz_server.schema_url, tmp_path, token=None, max_examples=10)
    assert result.complete and result.exit_code == 0, result.summary()
    assert (result.failures, result.errors) == (0, 0), result.summary()
    assert result.cases >= 200, result.summary()
    assert server_problems(fuzz_server.log()) == []
    assert (events(fuzz_server, "override_set"), events(fuzz_server, "service_registered")) == before
