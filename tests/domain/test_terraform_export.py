"""The HCL emitter: strings survive a round trip through python-hcl2 exactly, names are valid."""

from __future__ import annotations

import json
import re

import hcl2
import pytest

from domain.terraform_export import (
    Block,
    TfResource,
    identifier,
    jsonencode,
    quote,
    render_file,
    unique_names,
)

NASTY = [
    'say "hi"',
    "C:\\path\\to",
    "${var.secret} and %{ if x }",
    "line one\nline two\ttabbed\r",
    "$${already} \\${mixed}",
    "unicode: é ✓",
    "",
]


def test_quote_escapes_what_hcl_would_read_otherwise() -> None:
    assert quote('a"b') == '"a\\"b"'
    assert quote("a\\b") == '"a\\\\b"'
    assert quote("${x}") == '"$${x}"'
    assert quote("%{x}") == '"%%{x}"'
    assert quote("a\nb") == '"a\\nb"'


OPTIONS = hcl2.SerializationOptions(
    strip_string_quotes=True, explicit_blocks=False, with_comments=False
)


def _text(parsed: str) -> str:
    """python-hcl2 unescapes a string but keeps Terraform's template escapes."""
    return parsed.replace("$${", "${").replace("%%{", "%{")


def _document(parsed: str) -> object:
    """The document inside ``${jsonencode(...)}``, read back by the same parser."""
    assert parsed.startswith("${jsonencode(") and parsed.endswith(")}")
    inner = hcl2.loads(f"v = {parsed[len('${jsonencode(') : -2]}\n", serialization_options=OPTIONS)
    return json.loads(_text(json.dumps(inner["v"])))


@pytest.mark.parametrize("text", NASTY)
def test_strings_round_trip_through_an_hcl_parser(text: str) -> None:
    document = {"Sid": text, "List": [text, 1, True], text or "k": {"x = 1": text}}
    resource = TfResource(
        "aws_thing",
        "x",
        {"description": text, "policy": jsonencode(document)},
        import_id=text,
        blocks=[Block("inner", {"name": text})],
    )
    parsed = hcl2.loads(render_file([resource], "header"), serialization_options=OPTIONS)
    body = parsed["resource"][0]["aws_thing"]["x"]
    assert _text(body["description"]) == text
    assert _text(body["inner"][0]["name"]) == text
    assert _text(parsed["import"][0]["id"]) == text
    assert _document(body["policy"]) == document


def test_names_are_valid_stable_and_unique() -> None:
    valid = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]*$")
    for raw in ("Admins", "123 team", "a.b@example.com", "***", "wé-ird name"):
        assert valid.match(identifier(raw)), raw
    assert identifier("Admins", "111122223333") == "admins_111122223333"
    clash = [TfResource("t", identifier("a b"), {}), TfResource("t", identifier("a.b"), {})]
    assert [r.name for r in unique_names(clash)] == ["a_b", "a_b_2"]
