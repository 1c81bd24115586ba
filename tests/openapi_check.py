"""Reply bodies checked against the OpenAPI document the API serves (unit and e2e tests)."""

from typing import Any, Collection

from openapi_schema_validator import OAS31Validator, oas31_format_checker
from openapi_schema_validator import validate as validate_schema

from opengslb.api.openapi import openapi_document

DOCUMENT = openapi_document()


def check_against_document(method: str, path: str, status: int, body: Any,
                           undocumented: Collection[int] = ()) -> None:
    """``body`` matches the document's schema for (``path`` as the document writes it, ``method``,
    ``status``).  A status the document does not list for them must be one of ``undocumented``,
    and its body must be the document's Error."""
    responses = DOCUMENT["paths"].get(path, {}).get(method.lower(), {}).get("responses", {})
    if str(status) in responses:
        schema = responses[str(status)]["content"]["application/json"]["schema"]
    else:
        assert status in undocumented, f"undocumented status {status} for {method} {path}: {body}"
        schema = {"$ref": "#/components/schemas/Error"}
    validate_schema(body, {**schema, "components": DOCUMENT["components"]}, cls=OAS31Validator,
                    format_checker=oas31_format_checker)
