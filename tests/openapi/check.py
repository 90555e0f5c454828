"""Validates recorded live responses against the OpenAPI 3.1 document.

Usage: check.py OPENAPI_JSON RECORDS_JSON

RECORDS_JSON is a list of {"method", "path" (the document's template), "status",
"content_type", "body" (parsed JSON, or null for other media types)}. Each must match an
operation, a documented status and a documented media type, and a JSON body must validate
against its schema (JSON Schema 2020-12, the dialect of OpenAPI 3.1). Every documented
operation must have been exercised. Prints one line per problem; exits 1 if there is any.
"""
import json
import sys

import jsonschema


def pointer(*parts):
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def main():
    doc = json.load(open(sys.argv[1]))
    records = json.load(open(sys.argv[2]))
    problems = []
    seen = set()
    for r in records:
        where = f'{r["method"]} {r["path"]} -> {r["status"]}'
        item = doc["paths"].get(r["path"])
        op = item and item.get(r["method"].lower())
        if op is None:
            problems.append(f"{where}: no such operation in the document")
            continue
        seen.add((r["path"], r["method"].lower()))
        status = str(r["status"])
        if status not in op["responses"]:
            problems.append(f"{where}: status not documented (documented: {', '.join(op['responses'])})")
            continue
        resp = op["responses"][status]
        content = resp.get("content")
        if not content:
            if r.get("content_type"):
                problems.append(f"{where}: documented without a body, answered {r['content_type']}")
            continue
        media = (r.get("content_type") or "").split(";")[0].strip()
        if media not in content:
            problems.append(f"{where}: media type {media!r} not documented ({', '.join(content)})")
            continue
        if r.get("body") is None:
            continue
        # The whole document is the root resource, so its #/components references resolve.
        root = dict(doc)
        root["$ref"] = pointer("paths", r["path"], r["method"].lower(), "responses", status, "content", media, "schema")
        validator = jsonschema.Draft202012Validator(root)
        for e in validator.iter_errors(r["body"]):
            problems.append(f"{where}: {e.message} at {'/'.join(map(str, e.absolute_path)) or '(root)'}")
    for path, item in doc["paths"].items():
        for method in ("get", "put", "patch", "post", "delete"):
            if method in item and (path, method) not in seen:
                problems.append(f"{method.upper()} {path}: documented but never exercised")
    for p in problems:
        print(p)
    print(f"{len(records)} responses checked, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
