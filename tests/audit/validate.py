"""Validates rendered audit events against their real schemas.

    tests/audit/.venv/bin/python tests/audit/validate.py DIR

DIR holds NAME.ocsf.json, NAME.ecs.json, NAME.cef and NAME.fhir.json, one
event each (tests/audit_schemas.rs writes them).

* OCSF: the OCSF 1.8.0 JSON schema (ocsf-json-schema) of the event's class
  with the profiles it declares in metadata.profiles, under jsonschema's
  Draft 2020-12 validator (additionalProperties is false everywhere).
* FHIR: fhir.resources' R4B AuditEvent model (AuditEvent is the same in R4
  and R4B; the package has no R4 module), plus the R4 rules the model does
  not enforce: cardinalities, required code bindings, invariant sev-1.
* ECS: a structural check: nested objects, every field outside `phigate`
  known with its type, ECS's allowed categorization values.
* CEF: header fields, escaping, extension keys from the CEF dictionary.

Prints one "FORMAT N ok" line per format and exits 0 when everything
passes, 1 when anything fails, 3 when a package is missing.
"""

import ipaddress
import json
import pathlib
import re
import sys

try:
    import jsonschema
    from fhir.resources.R4B.auditevent import AuditEvent
    from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema
except ImportError as err:
    print(f"missing Python package: {err}; run scripts/setup", file=sys.stderr)
    sys.exit(3)

OCSF_VERSION = "1.8.0"
_ocsf = None
_validators = {}


def ocsf_validator(class_uid, profiles):
    global _ocsf
    if _ocsf is None:
        _ocsf = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=OCSF_VERSION))
    key = (class_uid, tuple(sorted(profiles)))
    if key not in _validators:
        name = _ocsf.lookup_class_name_from_uid(class_uid)
        schema = _ocsf.get_class_schema(name, list(profiles))
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        _validators[key] = cls(schema)
    return _validators[key]


def check_ocsf(doc):
    errs = []
    md = doc.get("metadata", {})
    if md.get("version") != OCSF_VERSION:
        errs.append(f"metadata.version is {md.get('version')!r}")
    profiles = md.get("profiles", [])
    try:
        v = ocsf_validator(doc.get("class_uid"), profiles)
    except Exception as err:  # an unknown class or profile
        return [f"no schema for class {doc.get('class_uid')} {profiles}: {err}"]
    for e in sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        path = "/".join(str(p) for p in e.absolute_path) or "(root)"
        errs.append(f"{path}: {e.message[:300]}")
    if doc.get("type_uid") != doc.get("class_uid", 0) * 100 + doc.get("activity_id", -1):
        errs.append("type_uid is not class_uid * 100 + activity_id")
    return errs


# --- FHIR -------------------------------------------------------------------

ACTIONS = {"C", "R", "U", "D", "E"}
OUTCOMES = {"0", "4", "8", "12"}
NETWORK_TYPES = {"1", "2", "3", "4", "5"}


def empties(v, path="$"):
    """FHIR has no empty objects, arrays or strings."""
    if isinstance(v, dict):
        if not v:
            yield path
        for k, x in v.items():
            yield from empties(x, f"{path}.{k}")
    elif isinstance(v, list):
        if not v:
            yield path
        for i, x in enumerate(v):
            yield from empties(x, f"{path}[{i}]")
    elif v is None or (isinstance(v, str) and not v.strip()):
        yield path


def check_fhir(doc):
    errs = []
    try:
        AuditEvent.model_validate(doc)
    except Exception as err:
        errs.append(str(err)[:1500])
    errs += [f"{p} is empty" for p in empties(doc)]
    for key in ("type", "recorded", "source"):
        if key not in doc:
            errs.append(f"{key} is required")
    if not doc.get("agent"):
        errs.append("agent is 1..*")
    if doc.get("action") not in ACTIONS | {None}:
        errs.append(f"action {doc.get('action')!r} is not in {sorted(ACTIONS)}")
    if doc.get("outcome") not in OUTCOMES | {None}:
        errs.append(f"outcome {doc.get('outcome')!r} is not in {sorted(OUTCOMES)}")
    for i, a in enumerate(doc.get("agent", [])):
        if not isinstance(a.get("requestor"), bool):
            errs.append(f"agent[{i}].requestor is required")
        net = a.get("network")
        if net and net.get("type") not in NETWORK_TYPES:
            errs.append(f"agent[{i}].network.type {net.get('type')!r}")
    if "observer" not in doc.get("source", {}):
        errs.append("source.observer is required")
    for i, e in enumerate(doc.get("entity", [])):
        if "name" in e and "query" in e:
            errs.append(f"entity[{i}] has both name and query (sev-1)")
    return errs


# --- ECS --------------------------------------------------------------------

CATEGORIES = {
    "api", "authentication", "configuration", "database", "driver", "email",
    "file", "host", "iam", "intrusion_detection", "library", "malware",
    "network", "package", "process", "registry", "session", "threat",
    "vulnerability", "web",
}
TYPES = {
    "access", "admin", "allowed", "change", "connection", "creation",
    "deletion", "denied", "device", "end", "error", "group", "indicator",
    "info", "installation", "protocol", "start", "user",
}
STR, INT, STRS = "keyword", "long", "keyword[]"
ECS_FIELDS = {
    "@timestamp": STR, "ecs.version": STR, "message": STR,
    "event.id": STR, "event.kind": STR, "event.category": STRS,
    "event.type": STRS, "event.action": STR, "event.outcome": STR,
    "event.reason": STR, "event.sequence": INT, "event.duration": INT,
    "event.severity": INT, "event.dataset": STR, "event.module": STR,
    "service.name": STR, "service.version": STR,
    "user.id": STR, "user.name": STR, "user.roles": STRS,
    "organization.name": STR, "source.ip": "ip", "source.port": INT,
    "user_agent.original": STR, "http.request.method": STR,
    "http.request.id": STR, "http.response.status_code": INT,
    "http.response.body.bytes": INT, "url.path": STR, "url.query": STR,
    "trace.id": STR, "rule.name": STR, "rule.version": STR,
    "tls.client.x509.subject.distinguished_name": STR,
    "tls.client.hash.sha256": STR, "related.user": STRS, "related.ip": "ip[]",
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def leaves(v, path=""):
    if isinstance(v, dict) and not (path and path.split(".")[0] == "phigate"):
        for k, x in v.items():
            yield from leaves(x, f"{path}.{k}" if path else k)
    else:
        yield path, v


def typed(kind, v):
    if kind == STR:
        return isinstance(v, str)
    if kind == INT:
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == STRS:
        return isinstance(v, list) and v and all(isinstance(x, str) for x in v)
    if kind in ("ip", "ip[]"):
        vs = v if kind == "ip[]" else [v]
        try:
            return all(ipaddress.ip_address(x) for x in vs)
        except (ValueError, TypeError):
            return False
    return False


def check_ecs(doc):
    errs = []
    for path, v in leaves(doc):
        if path == "phigate":
            if not isinstance(v, dict):
                errs.append("phigate is not an object")
            continue
        if "." in path.split(".")[-1] and path != "@timestamp":
            errs.append(f"dotted key {path}")
        kind = ECS_FIELDS.get(path)
        if kind is None:
            errs.append(f"{path} is not a known ECS field")
        elif not typed(kind, v):
            errs.append(f"{path} is not a {kind}: {v!r}")
    if not TIMESTAMP.match(str(doc.get("@timestamp"))):
        errs.append(f"@timestamp {doc.get('@timestamp')!r}")
    ev = doc.get("event", {})
    if ev.get("kind") != "event":
        errs.append("event.kind is not event")
    errs += [f"event.category {c!r}" for c in ev.get("category", []) if c not in CATEGORIES]
    errs += [f"event.type {t!r}" for t in ev.get("type", []) if t not in TYPES]
    if ev.get("outcome") not in {"success", "failure", "unknown"}:
        errs.append(f"event.outcome {ev.get('outcome')!r}")
    for key in ("id", "category", "type", "outcome", "sequence"):
        if key not in ev:
            errs.append(f"event.{key} is missing")
    return errs


# --- CEF --------------------------------------------------------------------

CEF_KEYS = {
    "rt", "externalId", "cat", "outcome", "reason", "act", "suser", "suid",
    "spriv", "src", "spt", "requestMethod", "request",
    "requestClientApplication", "out", "msg",
    *(f"cs{i}" for i in range(1, 7)), *(f"cs{i}Label" for i in range(1, 7)),
    *(f"cn{i}" for i in range(1, 4)), *(f"cn{i}Label" for i in range(1, 4)),
    "flexString1", "flexString1Label", "flexString2", "flexString2Label",
}
HEADER_FIELD = re.compile(r"(?:[^\\|]|\\[\\|])*")
EXT_KEY = re.compile(r"(?:^| )([A-Za-z0-9_]+)=")


def check_cef(text):
    errs = []
    if "\n" in text or "\r" in text:
        errs.append("more than one line")
    if not text.startswith("CEF:0|"):
        return errs + ["does not start with CEF:0|"]
    rest, fields = text[len("CEF:0|"):], []
    for _ in range(6):
        m = HEADER_FIELD.match(rest)
        fields.append(m.group(0))
        rest = rest[m.end():]
        if not rest.startswith("|"):
            return errs + [f"header has {len(fields)} fields, expected 7"]
        rest = rest[1:]
    if fields[0] != "phigate" or fields[1] != "phigate":
        errs.append(f"vendor/product {fields[:2]}")
    if not fields[5].isdigit() or not 0 <= int(fields[5]) <= 10:
        errs.append(f"severity {fields[5]!r}")
    # Extension: `key=value` pairs; an unescaped `=` only ends a key.
    keys = []
    pos = 0
    for m in EXT_KEY.finditer(rest):
        if m.start() > 0 and rest[m.start() - 1] == "\\":
            continue
        keys.append(m.group(1))
        value = rest[pos:m.start()]
        pos = m.end()
        if re.search(r"(?<!\\)(?:\\\\)*=", value):
            errs.append(f"unescaped = before {m.group(1)}")
    for k in keys:
        if k not in CEF_KEYS:
            errs.append(f"extension key {k!r} is not in the dictionary")
        if k in CEF_KEYS and not k.endswith("Label") and f"{k}Label" in CEF_KEYS and f"{k}Label" not in keys:
            errs.append(f"{k} without {k}Label")
    if len(keys) != len(set(keys)):
        errs.append("a key repeats")
    return errs


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = pathlib.Path(argv[1])
    checks = [
        ("ocsf", ".ocsf.json", lambda t: check_ocsf(json.loads(t))),
        ("fhir", ".fhir.json", lambda t: check_fhir(json.loads(t))),
        ("ecs", ".ecs.json", lambda t: check_ecs(json.loads(t))),
        ("cef", ".cef", check_cef),
    ]
    failed = False
    for fmt, suffix, check in checks:
        files = sorted(root.glob(f"*{suffix}"))
        bad = 0
        for f in files:
            errs = check(f.read_text(encoding="utf-8"))
            if errs:
                bad += 1
                print(f"FAIL {f.name}:", file=sys.stderr)
                for e in errs:
                    print(f"  {e}", file=sys.stderr)
        failed |= bad > 0 or not files
        print(f"{fmt} {len(files) - bad} ok" + (f", {bad} failed" if bad else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
