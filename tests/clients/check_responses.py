#!/usr/bin/env python3
"""Checks live API responses against the OpenAPI document the server serves.

Usage: check_responses.py OPENAPI.json RESPONSES.json

RESPONSES.json is a list of {"label", "method", "path" (the path template of the document, e.g.
"/api/v1/orders/{increment_id}"), "status", "content_type", "body" (JSON, or null for no body)}.
A record with "schema" (a component name) and "media" (a content type) is checked against that
component instead of an operation: for answers no operation documents (unknown routes, methods).

For each response: the operation must be documented, with that status (or `default`) and that
content type, and the body must be valid against the documented schema (JSON Schema 2020-12, as
OpenAPI 3.1 uses), checked strictly:
- object schemas that do not say otherwise are closed, so a member the document does not describe
  fails (the document is derived from the code: an undescribed member means the two have drifted);
- `date-time` must be RFC 3339 with an offset (`2024-05-01T09:30:00Z`); `int32`/`int64` must fit.

Prints `ok LABEL` or `FAIL LABEL (METHOD PATH -> STATUS): at JSON-PATH: reason` per response, and
exits 0 only if every response passed (1 on failure, 2 on bad usage). Needs `jsonschema` (a
dependency of openapi-spec-validator, which .ci/run installs).
"""

import copy
import datetime
import json
import re
import sys

import jsonschema
from jsonschema.exceptions import best_match

RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE
)

checker = jsonschema.FormatChecker(formats=())


@checker.checks("date-time", raises=ValueError)
def is_date_time(value):
    if not isinstance(value, str):
        return True
    if not RFC3339.match(value):
        raise ValueError(f"{value!r} is not RFC 3339 with an offset, like 2024-05-01T09:30:00Z")
    datetime.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return True


def int_range(bits):
    def check(value):
        return not isinstance(value, int) or -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)

    return check


checker.checks("int32")(int_range(32))
checker.checks("int64")(int_range(64))


def close_objects(node, in_all_of=False):
    """Closes every object schema that names its properties and says nothing about others."""
    if isinstance(node, dict):
        is_object = "properties" in node and (
            node.get("type") == "object"
            or (isinstance(node.get("type"), list) and "object" in node["type"])
        )
        if (
            is_object
            and not in_all_of
            and "additionalProperties" not in node
            and "unevaluatedProperties" not in node
        ):
            node["additionalProperties"] = False
        for key, value in node.items():
            close_objects(value, in_all_of=(key == "allOf"))
    elif isinstance(node, list):
        for item in node:
            close_objects(item, in_all_of=in_all_of)


def resolve(doc, node):
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"external reference {ref}")
        node = doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def check(doc, components, r):
    """Returns None when the response is as documented, else why not."""
    if "schema" in r:
        return check_component(components, r)
    where = f"{r['method']} {r['path']} -> {r['status']}"
    operation = doc.get("paths", {}).get(r["path"], {}).get(r["method"].lower())
    if operation is None:
        return f"{where}: the operation is not in the document"
    responses = operation.get("responses", {})
    response = responses.get(str(r["status"]), responses.get("default"))
    if response is None:
        return f"{where}: status {r['status']} is not documented (documented: {sorted(responses)})"
    response = resolve(doc, response)
    content = response.get("content")
    if r["body"] is None:
        return None if not content else f"{where}: no body, but the document promises {sorted(content)}"
    media = (r.get("content_type") or "").split(";")[0].strip()
    if not content or media not in content:
        return f"{where}: content type {media!r} is not documented (documented: {sorted(content or {})})"
    return validate(where, content[media].get("schema", {}), components, r["body"])


def check_component(components, r):
    """A response no operation documents (unknown route, method): checked against a component."""
    where = f"{r['method']} {r['path']} -> {r['status']} as {r['schema']}"
    media = (r.get("content_type") or "").split(";")[0].strip()
    if media != r["media"]:
        return f"{where}: content type {media!r}, not {r['media']!r}"
    return validate(where, {"$ref": f"#/components/schemas/{r['schema']}"}, components, r["body"])


def validate(where, schema, components, body):
    schema = dict(schema)
    schema["components"] = components
    validator = jsonschema.Draft202012Validator(schema, format_checker=checker)
    errors = list(validator.iter_errors(body))
    if not errors:
        return None
    error = best_match(errors)
    lines = [f"{where}: at {error.json_path}: {error.message}"]
    # For a oneOf (a feed event), say why the variant meant by the discriminator did not match.
    for sub in sorted(error.context or [], key=lambda e: len(list(e.absolute_path)), reverse=True)[:3]:
        lines.append(f"    (variant {list(sub.absolute_schema_path)[:2]}) at {sub.json_path}: {sub.message}")
    if len(errors) > 1:
        lines.append(f"    and {len(errors) - 1} more error(s)")
    return "\n".join(lines)


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        doc = json.load(f)
    with open(argv[2]) as f:
        recorded = json.load(f)
    components = copy.deepcopy(doc.get("components", {}))
    close_objects(components)
    failed = 0
    for r in recorded:
        problem = check(doc, components, r)
        if problem is None:
            print(f"ok {r['label']}")
        else:
            failed += 1
            print(f"FAIL {r['label']} ({problem})")
            print(f"    body: {json.dumps(r['body'])[:2000]}")
    print(f"checked {len(recorded)} responses, {failed} not as documented")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
