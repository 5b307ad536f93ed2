#!/usr/bin/env python3
"""Validates HTTP exchanges against EdgeX's official OpenAPI files.

    validate.py EXCHANGES.json

EXCHANGES.json is a list of {"service": "core-command"|"core-metadata"|
"core-data", "method", "path", "query" (a query string or null), "body"
(request body text or null), "status" (null: check the request only),
"response" (response body text)}. tests/edgex.rs writes it from the
simulator's answers and the requests the bridge sent.

The files are loaded with openapi-core (tests/setup.sh installs it) after
two loading fixes (YAML booleans inside string enums; a `required` name
with no property), then checked strictly. An exchange the strict files
refuse is checked again with the errata below, which describe what the real
services send and the files do not allow; the output says which erratum
each such exchange needed, and every erratum must still be needed by some
exchange, so a corrected spec (or a simulator that stopped sending the real
shape) is noticed. Statuses the files do not document (401 and 405 at the
real services) have their body checked for EdgeX's error shape instead.
"""

import copy
import json
import sys
from pathlib import Path

import yaml
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

SPEC = Path(__file__).resolve().parent / "spec"
HOSTS = {
    "core-data": "http://localhost:59880",
    "core-metadata": "http://localhost:59881",
    "core-command": "http://localhost:59882",
}


def walk(o, f):
    if isinstance(o, dict):
        f(o)
        for v in o.values():
            walk(v, f)
    elif isinstance(o, list):
        for v in o:
            walk(v, f)


def loadable(spec):
    """The two edits openapi-core needs before it loads the files at all."""

    def booleans(o):
        if o.get("type") == "string":
            if "enum" in o:
                o["enum"] = [str(v).lower() if isinstance(v, bool) else v for v in o["enum"]]
            if isinstance(o.get("default"), bool):
                o["default"] = str(o["default"]).lower()

    walk(spec, booleans)
    schemas = spec.get("components", {}).get("schemas", {})
    if "DeviceProfileBasicInfoRequest" in schemas:
        # Requires `profileName`, which it never defines.
        schemas["DeviceProfileBasicInfoRequest"]["required"] = []
    return spec


def reading_without_api_version(spec):
    """Readings never carry apiVersion (BaseReading has no Versionable)."""
    r = spec["components"]["schemas"].get("BaseReading", {})
    if "apiVersion" in r.get("required", []):
        r["required"] = [x for x in r["required"] if x != "apiVersion"]


def object_value_types(spec):
    """Object and ObjectArray are value types (device-virtual has both)."""

    def add(o):
        e = o.get("enum")
        if o.get("type") == "string" and isinstance(e, list) and "Float64Array" in e:
            for t in ("Object", "ObjectArray"):
                if t not in e:
                    e.append(t)

    walk(spec, add)


def auto_event_source_name(spec):
    """AutoEvent names its source in `sourceName`; there is no `resource`."""
    a = spec["components"]["schemas"].get("AutoEvent")
    if a and "resource" in a.get("required", []):
        a["required"] = [x for x in a["required"] if x != "resource"]


def object_value_is_json(spec):
    """objectValue is a JSON object or array (ObjectArray), not a base64
    string (core-data) or only an object (core-command)."""

    def any_json(o):
        props = o.get("properties")
        if isinstance(props, dict) and "objectValue" in props:
            props["objectValue"] = {}

    walk(spec, any_json)


ERRATA = [reading_without_api_version, object_value_types, auto_event_source_name, object_value_is_json]


def api(service, errata):
    spec = loadable(yaml.safe_load((SPEC / f"{service}.yaml").read_text()))
    for e in errata:
        e(spec)
    return OpenAPI.from_dict(spec)


def request_of(x):
    args = None
    if x.get("query"):
        args = dict(p.split("=", 1) if "=" in p else (p, "") for p in x["query"].split("&"))
    return MockRequest(
        HOSTS[x["service"]],
        x["method"].lower(),
        x["path"],
        args=args,
        data=x.get("body"),
        content_type="application/json",
    )


def problems(a, x):
    """What `a` finds wrong with the exchange, as text; empty when fine."""
    req = request_of(x)
    found = []
    try:
        a.validate_request(req)
    except Exception as e:  # openapi-core raises one class per kind
        found.append(f"request: {type(e).__name__}: {e.__cause__ or e}")
    if x.get("status") is not None:
        resp = MockResponse(
            (x.get("response") or "").encode(),
            status_code=x["status"],
            content_type="application/json",
        )
        try:
            a.validate_response(req, resp)
        except Exception as e:
            cause = e.__cause__
            errs = getattr(cause, "schema_errors", None)
            detail = [er.message[:160] for er in errs][:3] if errs else str(cause or e)[:300]
            found.append(f"response {x['status']}: {type(e).__name__}: {detail}")
    return found


def error_shape(x):
    body = json.loads(x.get("response") or "null")
    if body == {"message": body.get("message")} and isinstance(body.get("message"), str):
        return []  # echo's own errors
    ok = (
        isinstance(body, dict)
        and body.get("apiVersion") == "v3"
        and body.get("statusCode") == x["status"]
        and isinstance(body.get("message"), str)
    )
    return [] if ok else [f"undocumented {x['status']} without EdgeX's error shape: {body}"]


def main():
    exchanges = json.loads(Path(sys.argv[1]).read_text())
    services = sorted({x["service"] for x in exchanges})
    strict = {s: api(s, []) for s in services}
    full = {s: api(s, ERRATA) for s in services}
    without = {(s, e.__name__): api(s, [x for x in ERRATA if x is not e]) for s in services for e in ERRATA}
    needed = {e.__name__: 0 for e in ERRATA}
    failed = 0
    for i, x in enumerate(exchanges):
        label = f"#{i} {x['service']} {x['method']} {x['path']}" + (f"?{x['query']}" if x.get("query") else "")
        if x.get("status") == 200 and x.get("response") == "" and x["method"] == "GET":
            # ds-returnevent=false: 200 with no body, which no schema allows.
            found = problems(strict[x["service"]], dict(x, status=None))
            print(f"{label}: {'ok (empty body, a real quirk)' if not found else found}")
            failed += bool(found)
            continue
        if x.get("status") in (401, 405):
            found = problems(strict[x["service"]], dict(x, status=None)) + error_shape(x)
            print(f"{label}: {'ok (undocumented status, error shape checked)' if not found else found}")
            failed += bool(found)
            continue
        if not problems(strict[x["service"]], x):
            print(f"{label}: ok")
            continue
        found = problems(full[x["service"]], x)
        if found:
            print(f"{label}: FAIL {found}")
            failed += 1
            continue
        used = [e.__name__ for e in ERRATA if problems(without[(x["service"], e.__name__)], x)]
        for u in used:
            needed[u] += 1
        print(f"{label}: ok with errata {used}")
    for name, n in needed.items():
        print(f"erratum {name}: needed by {n} exchange(s)")
        if n == 0:
            print(f"FAIL: erratum {name} is needed by none: drop it or exercise it")
            failed += 1
    print(f"{len(exchanges)} exchanges, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
