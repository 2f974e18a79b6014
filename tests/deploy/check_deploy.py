#!/usr/bin/env python3
"""Static checks of the deploy files: the vault account's and the systemd units.

    python3 tests/deploy/check_deploy.py [CHECK ...]

CHECK is one or more of (default: all of them):

  cfn-lint           cfn-lint passes on deploy/cloudformation/vault-account.yaml with no
                     error, warning or informational finding.
  template           The template's role policies are deploy/iam/{writer,writer-bucket-default,
                     verifier,restorer}.json and its bucket policy is
                     deploy/iam/bucket-policy.json (modulo placeholders); the bucket and the
                     trust policies are set up as docs/iam.md says.
  bucket-policy      deploy/iam/bucket-policy.json denies what it must (insecure transport,
                     version deletes, governance bypass, retention beyond the cap, ...) and
                     never what vault needs.
  identity-policies  The four identity policies: valid, no Condition, least privilege,
                     explicit denies of every destructive action, no deny over a needed allow.
  systemd            deploy/systemd/: every service hardened alike (ProtectSystem=strict, no
                     capabilities, a system-call filter, ...); the backup timer and oneshot;
                     vault.service (vault run) with Type=notify, SIGHUP reload, KillMode=mixed
                     and a stop timeout longer than the scheduler's drain (systemd_units.py).

Prints one line per thing checked; exits 0 when everything passed, 1 when a check
failed, 2 when a tool is missing or the usage is wrong. Needs Python 3.11 with
cfn-lint 1.58.0 and PyYAML (./scripts/test installs them).

The identity policies are also enforced by the S3 test server in the integration
tests; the bucket policy is only checked here, statically, by evaluating its
statements for the requests vault makes (and for the ones it must refuse).
"""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from systemd_units import check_systemd

ROOT = Path(__file__).resolve().parents[2]
IAM = ROOT / "deploy" / "iam"
TEMPLATE = ROOT / "deploy" / "cloudformation" / "vault-account.yaml"

BUCKET = "arn:aws:s3:::${VAULT_BUCKET}"
OBJECTS = BUCKET + "/*"
AN_OBJECT = BUCKET + "/acme/prod/app-db/data/2025/01/01/20250101T031500Z-x.sqlite.zst.age"

ROLE_PLACEHOLDERS = {
    "writer": "${WRITER_ROLE_ARN}",
    "verifier": "${VERIFIER_ROLE_ARN}",
    "restorer": "${RESTORER_ROLE_ARN}",
}
ADMIN = "arn:aws:iam::999988887777:role/Admin"  # some other principal of the vault account

# The longest default tier (yearly, 7y) in days, leap days included: the retention cap
# must allow it, or yearly backups would be refused.
LONGEST_DEFAULT_TIER_DAYS = 7 * 365 + 2

# What each identity needs (must be allowed) and may have (nothing else is allowed).
NEEDED = {
    "writer.json": {"s3:PutObject", "s3:AbortMultipartUpload", "s3:PutObjectRetention"},
    "writer-bucket-default.json": {"s3:PutObject", "s3:AbortMultipartUpload"},
    "verifier.json": {
        "s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention", "s3:GetObjectLegalHold",
        "s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketVersioning",
        "s3:GetBucketObjectLockConfiguration", "s3:GetLifecycleConfiguration",
        "s3:GetBucketPolicy", "s3:GetBucketLocation",
    },
    # verify --deep runs as the restorer and checks the bucket settings as verify does.
    "restorer.json": {
        "s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:ListBucketVersions",
        "s3:GetBucketVersioning", "s3:GetBucketObjectLockConfiguration",
        "s3:GetLifecycleConfiguration", "s3:GetBucketPolicy",
    },
}
# vault prune reads backups and their locks and hides expired ones with delete markers
# (DeleteObject without a version id, on a versioned bucket).
NEEDED["pruner.json"] = NEEDED["verifier.json"] | {"s3:DeleteObject"}
PERMITTED = {name: set(actions) for name, actions in NEEDED.items()}
PERMITTED["restorer.json"] |= {"s3:GetObjectRetention"}

# Every identity must explicitly deny these (an explicit Deny survives a broader Allow
# added later, for example a managed policy attached by mistake).
MUST_DENY_ALL = [
    "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersionTagging", "s3:BypassGovernanceRetention", "s3:PutObjectLegalHold",
    "s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:PutLifecycleConfiguration",
    "s3:PutBucketVersioning", "s3:PutBucketObjectLockConfiguration", "s3:DeleteBucket",
]
MUST_DENY = {
    "writer.json": MUST_DENY_ALL + [
        "s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention", "s3:ListBucket",
        "s3:ListBucketVersions", "s3:ListMultipartUploadParts", "s3:GetBucketPolicy",
    ],
    "writer-bucket-default.json": MUST_DENY_ALL + [
        "s3:PutObjectRetention", "s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention",
        "s3:ListBucket", "s3:ListBucketVersions", "s3:ListMultipartUploadParts", "s3:GetBucketPolicy",
    ],
    "verifier.json": MUST_DENY_ALL + ["s3:PutObject", "s3:PutObjectRetention", "s3:AbortMultipartUpload"],
    "restorer.json": MUST_DENY_ALL + ["s3:PutObject", "s3:PutObjectRetention", "s3:AbortMultipartUpload"],
    "pruner.json": [a for a in MUST_DENY_ALL if a != "s3:DeleteObject"]
    + ["s3:PutObject", "s3:PutObjectRetention", "s3:AbortMultipartUpload"],
}

MISSING_TOOLS_HINT = (
    "python3 with cfn-lint 1.58.0 and PyYAML is needed: ./scripts/test installs them "
    "(or: python3 -m pip install cfn-lint==1.58.0 pyyaml)"
)


class Report:
    """Collects results; every check line says what was checked."""

    def __init__(self) -> None:
        self.failures = 0

    def ok(self, what: str) -> None:
        print(f"  ok    {what}")

    def fail(self, what: str, detail: str = "") -> None:
        self.failures += 1
        print(f"  FAIL  {what}")
        for line in detail.rstrip().splitlines():
            print(f"        {line}")

    def expect(self, condition: bool, what: str, detail: str = "") -> bool:
        if condition:
            self.ok(what)
        else:
            self.fail(what, detail)
        return condition


# --------------------------------------------------------------------------------------
# IAM action data (from cfn-lint's copy of the service authorization reference)


def s3_actions() -> dict[str, list[str]]:
    """Lower-case S3 action name -> resource types ('object', 'bucket', ...)."""
    import cfnlint

    path = Path(cfnlint.__file__).parent / "data" / "AdditionalSpecs" / "Policies.json"
    data = json.loads(path.read_text())
    return {name: spec.get("Resources", []) for name, spec in data["s3"]["Actions"].items()}


def wildcard(pattern: str, value: str, ignore_case: bool) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def resource_for(action: str, actions: dict[str, list[str]]) -> str:
    """The vault resource a request for `action` is authorised against."""
    types = actions.get(action.split(":", 1)[1].lower(), [])
    if "object" in types:
        return AN_OBJECT
    if "bucket" in types:
        return BUCKET
    return "*"


def check_action_names(report: Report, where: str, policy: dict, actions: dict[str, list[str]]) -> None:
    bad = []
    for statement in policy.get("Statement", []):
        for action in as_list(statement.get("Action", [])):
            if not isinstance(action, str) or ":" not in action:
                bad.append(f"{statement.get('Sid')}: {action!r} is not service:action")
                continue
            service, name = action.split(":", 1)
            if service != "s3":
                bad.append(f"{statement.get('Sid')}: {action} is not an S3 action")
            elif not any(wildcard(name, real, ignore_case=True) for real in actions):
                bad.append(f"{statement.get('Sid')}: {action} is not a real IAM action")
    report.expect(not bad, f"{where}: every action is a real S3 IAM action name", "\n".join(bad))


# --------------------------------------------------------------------------------------
# A small policy evaluator: enough of IAM's rules for the statements these files use.


def condition_holds(condition: dict, context: dict[str, str]) -> bool:
    """All operators must hold, every key of an operator, any value of a key."""
    for operator, keys in condition.items():
        for key, wanted in keys.items():
            wanted = [str(v).lower() if isinstance(v, bool) else str(v) for v in as_list(wanted)]
            present = key in context
            actual = context.get(key)
            if operator == "Null":
                holds = any((w == "true") == (not present) for w in wanted)
            elif not present:
                holds = False
            elif operator == "Bool":
                holds = any(actual.lower() == w.lower() for w in wanted)
            elif operator == "StringEquals":
                holds = actual in wanted
            elif operator in ("ArnEquals", "ArnLike"):
                holds = any(wildcard(w, actual, ignore_case=False) for w in wanted)
            elif operator == "NumericGreaterThan":
                holds = any(float(actual) > float(w) for w in wanted)
            elif operator == "NumericLessThan":
                holds = any(float(actual) < float(w) for w in wanted)
            else:
                raise ValueError(f"the checker cannot evaluate condition operator {operator}")
            if not holds:
                return False
    return True


def principal_matches(principal: Any, who: str | None) -> bool:
    if principal is None:  # identity policy: the identity itself
        return True
    if principal == "*" or principal == {"AWS": "*"}:
        return True
    if isinstance(principal, dict) and "AWS" in principal:
        return who in as_list(principal["AWS"])
    return False


def evaluate(policy: dict, action: str, resource: str, who: str | None = None,
             context: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """'deny' (explicit), 'allow' or 'none', and the Sids of the statements that matched."""
    context = dict(context or {})
    if who is not None:
        context.setdefault("aws:PrincipalArn", who)
    denied, allowed = [], []
    for statement in policy["Statement"]:
        if not any(wildcard(p, action, ignore_case=True) for p in as_list(statement.get("Action", []))):
            continue
        if not any(wildcard(p, resource, ignore_case=False) for p in as_list(statement.get("Resource", []))):
            continue
        if not principal_matches(statement.get("Principal"), who):
            continue
        if "Condition" in statement and not condition_holds(statement["Condition"], context):
            continue
        (denied if statement["Effect"] == "Deny" else allowed).append(statement.get("Sid", "?"))
    if denied:
        return "deny", denied
    if allowed:
        return "allow", allowed
    return "none", []


# --------------------------------------------------------------------------------------
# Loading


def load_json(report: Report, path: Path) -> dict | None:
    rel = path.relative_to(ROOT)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        report.fail(f"{rel} exists")
        return None
    except json.JSONDecodeError as err:
        report.fail(f"{rel} is valid JSON", str(err))
        return None
    report.ok(f"{rel} is valid JSON")
    return document


def placeholders(document: Any) -> set[str]:
    return set(re.findall(r"\$\{([^}]*)\}", json.dumps(document)))


def find_key(document: Any, key: str) -> bool:
    if isinstance(document, dict):
        return key in document or any(find_key(v, key) for v in document.values())
    if isinstance(document, list):
        return any(find_key(v, key) for v in document)
    return False


def check_common_shape(report: Report, rel: str, policy: dict, allowed_placeholders: set[str]) -> bool:
    good = report.expect(policy.get("Version") == "2012-10-17", f"{rel}: Version is 2012-10-17",
                         f"Version is {policy.get('Version')!r}")
    statements = policy.get("Statement")
    if not isinstance(statements, list) or not statements:
        report.fail(f"{rel}: Statement is a non-empty list")
        return False
    sids = [s.get("Sid") for s in statements]
    good &= report.expect(
        all(isinstance(s, str) and re.fullmatch(r"[A-Za-z0-9]+", s) for s in sids) and len(set(sids)) == len(sids),
        f"{rel}: every statement has a unique alphanumeric Sid", f"Sids: {sids}")
    unknown = {k for s in statements for k in s} - {"Sid", "Effect", "Principal", "Action", "Resource", "Condition"}
    good &= report.expect(not unknown, f"{rel}: statements use only Sid/Effect/Principal/Action/Resource/Condition "
                          "(no NotAction, NotResource, NotPrincipal)", f"found: {sorted(unknown)}")
    good &= report.expect(all(s.get("Effect") in ("Allow", "Deny") for s in statements),
                          f"{rel}: every Effect is Allow or Deny")
    found = placeholders(policy)
    good &= report.expect(found <= allowed_placeholders,
                          f"{rel}: placeholders are only {', '.join('${' + p + '}' for p in sorted(allowed_placeholders))}",
                          f"unexpected: {sorted(found - allowed_placeholders)}")
    resources = {r for s in statements for r in as_list(s.get("Resource"))}
    good &= report.expect(resources <= {BUCKET, OBJECTS},
                          f"{rel}: every Resource is {BUCKET} or {OBJECTS}",
                          f"other resources: {sorted(map(str, resources - {BUCKET, OBJECTS}))}")
    return good


# --------------------------------------------------------------------------------------
# Checks


def check_identity_policies(report: Report) -> None:
    actions = s3_actions()
    for name in ("writer.json", "writer-bucket-default.json", "verifier.json", "restorer.json", "pruner.json"):
        rel = f"deploy/iam/{name}"
        print(f"{rel}:")
        policy = load_json(report, IAM / name)
        if policy is None:
            continue
        if not check_common_shape(report, rel, policy, {"VAULT_BUCKET"}):
            continue
        statements = policy["Statement"]
        report.expect(not find_key(policy, "Condition"),
                      f"{rel}: no Condition anywhere (the S3 test server turns any Condition "
                      "in an identity policy into an explicit Deny)")
        report.expect(not any("Principal" in s for s in statements), f"{rel}: no Principal (an identity policy)")
        check_action_names(report, rel, policy, actions)

        allow_actions = {a for s in statements if s["Effect"] == "Allow" for a in as_list(s["Action"])}
        report.expect(not any("*" in a or "?" in a for a in allow_actions),
                      f"{rel}: Allow names single actions, no wildcards", f"allowed: {sorted(allow_actions)}")
        extra = allow_actions - PERMITTED[name]
        report.expect(not extra, f"{rel}: every allowed action is one this identity needs: "
                      f"{', '.join(sorted(PERMITTED[name]))}", f"not permitted here: {sorted(extra)}")

        for action in sorted(NEEDED[name]):
            resource = resource_for(action, actions)
            verdict, sids = evaluate(policy, action, resource)
            report.expect(verdict == "allow", f"{rel}: {action} on {resource.replace(AN_OBJECT, OBJECTS)} is allowed",
                          f"it is {'explicitly denied by ' + ', '.join(sids) if verdict == 'deny' else 'not allowed'}")

        overlaps = []
        for deny in (s for s in statements if s["Effect"] == "Deny"):
            for pattern in as_list(deny["Action"]):
                for action in sorted(allow_actions):
                    if wildcard(pattern, action, ignore_case=True):
                        overlaps.append(f"Deny {pattern} ({deny['Sid']}) covers allowed {action}")
        report.expect(not overlaps, f"{rel}: no Deny action overlaps an allowed action", "\n".join(overlaps))

        for action in MUST_DENY[name]:
            resource = resource_for(action, actions)
            verdict, sids = evaluate(policy, action, resource)
            report.expect(verdict == "deny", f"{rel}: {action} is explicitly denied"
                          + (f" ({', '.join(sids)})" if sids else ""),
                          f"evaluates to {verdict!r}; add it (or a wildcard that matches it) to a Deny statement")


def check_bucket_policy(report: Report) -> None:
    actions = s3_actions()
    rel = "deploy/iam/bucket-policy.json"
    print(f"{rel}:")
    policy = load_json(report, IAM / "bucket-policy.json")
    if policy is None:
        return
    allowed = {"VAULT_BUCKET", "WRITER_ROLE_ARN", "VERIFIER_ROLE_ARN", "RESTORER_ROLE_ARN"}
    if not check_common_shape(report, rel, policy, allowed):
        return
    statements = policy["Statement"]
    check_action_names(report, rel, policy, actions)
    report.expect(all(s["Effect"] == "Deny" for s in statements),
                  f"{rel}: only Deny statements (access is granted by the roles' identity policies alone)")
    report.expect(all("Principal" in s for s in statements), f"{rel}: every statement names a Principal")

    def everyone(s: dict) -> bool:
        return s.get("Principal") in ("*", {"AWS": "*"})

    def covers(s: dict, action: str, resource: str) -> bool:
        return (any(wildcard(p, action, ignore_case=True) for p in as_list(s["Action"]))
                and any(wildcard(p, resource, ignore_case=False) for p in as_list(s["Resource"])))

    # Structure: the statements the design relies on, in the form it relies on.
    tls = [s for s in statements if everyone(s) and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
           and covers(s, "s3:*", BUCKET) and covers(s, "s3:*", AN_OBJECT)
           and all(covers(s, a, AN_OBJECT) for a in ("s3:GetObject", "s3:PutObject"))]
    report.expect(bool(tls), f"{rel}: a Deny of every action on the bucket and its objects for Principal \"*\" "
                  "when aws:SecureTransport is false" + (f" ({tls[0]['Sid']})" if tls else ""))
    for action in ("s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"):
        found = [s for s in statements if everyone(s) and "Condition" not in s and covers(s, action, AN_OBJECT)]
        report.expect(bool(found), f"{rel}: an unconditional Deny of {action} for Principal \"*\""
                      + (f" ({found[0]['Sid']})" if found else ""))
    caps = [s for s in statements if everyone(s) and covers(s, "s3:PutObject", AN_OBJECT)
            and covers(s, "s3:PutObjectRetention", AN_OBJECT)
            and list(s.get("Condition", {})) == ["NumericGreaterThan"]
            and list(s["Condition"]["NumericGreaterThan"]) == ["s3:object-lock-remaining-retention-days"]]
    if report.expect(bool(caps), f"{rel}: a Deny of s3:PutObject and s3:PutObjectRetention for Principal \"*\" "
                     "with NumericGreaterThan s3:object-lock-remaining-retention-days"
                     + (f" ({caps[0]['Sid']})" if caps else "")):
        raw = caps[0]["Condition"]["NumericGreaterThan"]["s3:object-lock-remaining-retention-days"]
        cap = int(raw) if isinstance(raw, str) and raw.isdigit() else None
        report.expect(cap is not None and LONGEST_DEFAULT_TIER_DAYS <= cap <= 36500,
                      f"{rel}: the retention cap ({raw!r} days) is a whole number of days, at least the "
                      f"yearly tier's {LONGEST_DEFAULT_TIER_DAYS} and at most 100 years")
    else:
        cap = None

    # Behaviour: the requests vault makes pass, the ones it must not make are refused.
    roles = ROLE_PLACEHOLDERS
    legit = {"aws:SecureTransport": "true"}
    upload = {**legit, "s3:if-none-match": "*", "s3:ObjectCreationOperation": "true",
              "s3:object-lock-remaining-retention-days": str(LONGEST_DEFAULT_TIER_DAYS)}
    part = {**legit, "s3:ObjectCreationOperation": "false"}
    requests_that_pass = [
        ("writer", "s3:PutObject", upload, "PutObject / CompleteMultipartUpload with If-None-Match and a 7y lock"),
        ("writer", "s3:PutObject", {**legit, "s3:if-none-match": "*", "s3:ObjectCreationOperation": "true"},
         "PutObject with If-None-Match and no lock headers (bucket-default mode)"),
        ("writer", "s3:PutObject", part, "CreateMultipartUpload / UploadPart (no If-None-Match)"),
        ("writer", "s3:PutObjectRetention", upload, "the lock headers of an upload"),
        ("writer", "s3:AbortMultipartUpload", legit, "AbortMultipartUpload"),
    ] + [(role, a, legit, a) for role in ("verifier", "restorer")
         for a in sorted(NEEDED[f"{role}.json"])]
    for role, action, context, what in requests_that_pass:
        verdict, sids = evaluate(policy, action, resource_for(action, actions), roles[role], context)
        report.expect(verdict != "deny", f"{rel}: {role} may still do {what}",
                      f"denied by {', '.join(sids)}")
    verdict, sids = evaluate(policy, "s3:DeleteObject", AN_OBJECT, ADMIN, legit)
    report.expect(verdict != "deny", f"{rel}: another principal of the vault account may still add a delete "
                  "marker (DeleteObject without a version id), the way expired backups are pruned",
                  f"denied by {', '.join(sids)}")

    requests_refused = [
        (ADMIN, "s3:GetObject", {"aws:SecureTransport": "false"}, "any request without TLS"),
        (roles["restorer"], "s3:GetObject", {"aws:SecureTransport": "false"}, "restorer GetObject without TLS"),
        (ADMIN, "s3:DeleteObjectVersion", legit, "any principal deleting an object version"),
        (ADMIN, "s3:BypassGovernanceRetention", legit, "any principal bypassing GOVERNANCE retention"),
        (ADMIN, "s3:UpdateObjectEncryption", legit, "any principal re-encrypting objects (e.g. under a KMS key "
                                                    "it can later delete)"),
        (ADMIN, "s3:DeleteBucket", legit, "any principal deleting the bucket (freeing its name)"),
        (ADMIN, "s3:PutObject", {**legit, "s3:ObjectCreationOperation": "true"},
         "an upload without If-None-Match (overwriting a key, e.g. a manifest)"),
    ]
    if cap is not None:
        for action in ("s3:PutObject", "s3:PutObjectRetention"):
            requests_refused.append((roles["writer"], action,
                                     {**upload, "s3:object-lock-remaining-retention-days": str(cap + 1)},
                                     f"writer {action} with a lock of {cap + 1} days (over the cap)"))
    for action in ("s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:ListBucketVersions",
                   "s3:GetBucketPolicy"):
        requests_refused.append((roles["writer"], action, legit, f"writer {action}"))
    for role in ("verifier", "restorer"):
        for action in ("s3:PutObject", "s3:PutObjectRetention", "s3:AbortMultipartUpload"):
            requests_refused.append((roles[role], action, upload, f"{role} {action}"))
    for role in ("writer", "verifier", "restorer"):
        for action in ("s3:DeleteObject", "s3:PutObjectLegalHold", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy",
                       "s3:PutLifecycleConfiguration", "s3:PutBucketVersioning",
                       "s3:PutBucketObjectLockConfiguration", "s3:PutEncryptionConfiguration"):
            requests_refused.append((roles[role], action, legit, f"{role} {action}"))
    for who, action, context, what in requests_refused:
        verdict, sids = evaluate(policy, action, resource_for(action, actions), who, context)
        report.expect(verdict == "deny", f"{rel}: refuses {what}" + (f" ({', '.join(sids)})" if sids else ""),
                      "no statement denies it")


def run_cfn_lint(report: Report) -> None:
    rel = TEMPLATE.relative_to(ROOT)
    print(f"{rel}:")
    # cfn-lint's console entry point, run by this interpreter (python3 -m cfnlint has no __main__).
    command = [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())",
               "--include-checks", "I", "--", str(TEMPLATE)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    report.expect(result.returncode == 0 and not output,
                  f"cfn-lint {rel}: no errors, warnings or informational findings",
                  f"cfn-lint exited with {result.returncode}:\n{output}")


# --- template -------------------------------------------------------------------------


class Unresolvable(Exception):
    pass


def plain(node: Any) -> Any:
    """cfn-lint's node classes -> plain dicts, lists and scalars."""
    return json.loads(json.dumps(node))


def resolve(node: Any, template: dict, conditions: dict[str, bool]) -> Any:
    """Template policy -> deploy/iam form: ${BucketName} -> ${VAULT_BUCKET}, role ARNs -> their
    placeholders, parameters -> their defaults, Fn::If by the given conditions."""
    if isinstance(node, list):
        return [resolve(v, template, conditions) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key, value), = node.items()
        if key == "Fn::Sub":
            if not isinstance(value, str):
                raise Unresolvable(f"Fn::Sub with variables: {value}")
            return value.replace("${AWS::Partition}", "aws").replace("${BucketName}", "${VAULT_BUCKET}")
        if key == "Fn::GetAtt":
            target = value if isinstance(value, list) else value.split(".", 1)
            role = {"VaultWriterRole": "writer", "VaultVerifierRole": "verifier",
                    "VaultRestorerRole": "restorer", "VaultPrunerRole": "pruner"}.get(target[0])
            if role and target[1] == "Arn":
                return ROLE_PLACEHOLDERS[role]
            raise Unresolvable(f"Fn::GetAtt {target}")
        if key == "Ref":
            if value == "MaxRetentionDays":
                return str(template["Parameters"]["MaxRetentionDays"]["Default"])
            raise Unresolvable(f"Ref {value}")
        if key == "Fn::If":
            name, if_true, if_false = value
            if name not in conditions:
                raise Unresolvable(f"Fn::If on condition {name}")
            return resolve(if_true if conditions[name] else if_false, template, conditions)
        if key.startswith("Fn::"):
            raise Unresolvable(f"{key}")
    return {k: resolve(v, template, conditions) for k, v in node.items()}


def diff(expected: Any, actual: Any, expected_name: str, actual_name: str) -> str:
    a = json.dumps(expected, indent=2).splitlines()
    b = json.dumps(actual, indent=2).splitlines()
    return "\n".join(difflib.unified_diff(a, b, expected_name, actual_name, lineterm="", n=2))


def trust_document(report: Report, role: str, node: Any, conditions: dict[str, bool]) -> dict | None:
    """A role's trust policy with dummy values for the parameters, as a plain document."""
    dummies = {
        "AWS::Partition": "aws", "AWS::AccountId": "999988887777", "ProdAccountId": "111122223333",
        "ExternalId": "external-id", "VerifierExternalId": "verifier-id", "RestorerExternalId": "restorer-id",
        "VerifierTrustedPrincipal": "444455556666", "RestorerTrustedPrincipal": "555566667777",
        "WriterOidcProviderArn": "arn:aws:iam::999988887777:oidc-provider/oidc.example.com/id/CLUSTER",
        "WriterOidcSubject": "system:serviceaccount:backup:vault-writer",
        "WriterOidcAudience": "sts.amazonaws.com",
    }

    def sub(text: str, extra: dict[str, str]) -> str:
        def one(match: re.Match) -> str:
            name = match.group(1)
            if name in extra:
                return extra[name]
            if name in dummies:
                return dummies[name]
            raise Unresolvable(f"${{{name}}} in {role}'s trust policy")
        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def walk(n: Any) -> Any:
        if isinstance(n, list):
            return [walk(v) for v in n]
        if not isinstance(n, dict):
            return n
        if len(n) == 1:
            (key, value), = n.items()
            if key == "Fn::If":
                return walk(value[1] if conditions[value[0]] else value[2])
            if key == "Ref":
                return dummies[value]
            if key == "Fn::Sub":
                if isinstance(value, str):
                    return sub(value, {})
                text, variables = value
                extra = {}
                for name, expr in variables.items():
                    if "Fn::Select" in expr:  # the issuer: the part of the provider ARN after oidc-provider/
                        extra[name] = dummies["WriterOidcProviderArn"].split(":oidc-provider/", 1)[1]
                    else:
                        extra[name] = str(walk(expr))
                return sub(text, extra)
        return {k: walk(v) for k, v in n.items()}

    try:
        document = walk(plain(node))
        return json.loads(document) if isinstance(document, str) else document
    except (Unresolvable, KeyError, json.JSONDecodeError) as err:
        report.fail(f"template: {role}'s trust policy can be rendered ({conditions})", str(err))
        return None


def check_template(report: Report) -> None:
    try:
        import cfnlint.decode
    except ImportError:
        raise SystemExit(MISSING_TOOLS_HINT)
    rel = TEMPLATE.relative_to(ROOT)
    print(f"{rel}:")
    template, matches = cfnlint.decode.decode(str(TEMPLATE))
    if matches or template is None:
        report.fail(f"{rel} parses", "\n".join(str(m) for m in matches))
        return
    report.ok(f"{rel} parses")
    resources = plain(template.get("Resources", {}))
    params = template.get("Parameters", {})
    conds = plain(template.get("Conditions", {}))

    report.expect(params.get("LockMode", {}).get("AllowedValues") == ["per-object", "bucket-default"],
                  "template: LockMode parameter is per-object | bucket-default")
    report.expect(conds.get("PerObjectLock") == {"Fn::Equals": [{"Ref": "LockMode"}, "per-object"]},
                  "template: condition PerObjectLock is LockMode == per-object")
    report.expect(params.get("ExternalId", {}).get("NoEcho") is True, "template: ExternalId is NoEcho")

    by_type: dict[str, list[str]] = {}
    for name, resource in resources.items():
        by_type.setdefault(resource.get("Type"), []).append(name)
    report.expect(sorted(by_type.get("AWS::IAM::Role", [])) == ["VaultPrunerRole", "VaultRestorerRole",
                                                                 "VaultVerifierRole", "VaultWriterRole"],
                  "template: exactly four roles, VaultWriterRole, VaultVerifierRole, VaultRestorerRole, "
                  "VaultPrunerRole",
                  f"roles: {by_type.get('AWS::IAM::Role')}")
    grants = [t for t in by_type if t in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy",
                                          "AWS::IAM::User", "AWS::IAM::Group")]
    report.expect(not grants, "template: no other IAM policies, users or groups that could add permissions",
                  f"found: {grants}")

    # (b) role policies == deploy/iam/*.json
    cases = [
        ("VaultWriterRole", {"PerObjectLock": True}, "writer.json"),
        ("VaultWriterRole", {"PerObjectLock": False}, "writer-bucket-default.json"),
        ("VaultVerifierRole", {}, "verifier.json"),
        ("VaultRestorerRole", {}, "restorer.json"),
        ("VaultPrunerRole", {}, "pruner.json"),
    ]
    for logical, conditions, filename in cases:
        props = resources.get(logical, {}).get("Properties", {})
        policies = props.get("Policies", [])
        if not report.expect(len(policies) == 1 and not props.get("ManagedPolicyArns"),
                             f"template: {logical} has exactly one inline policy and no managed policies"):
            continue
        expected = load_json(report, IAM / filename)
        if expected is None:
            continue
        try:
            actual = resolve(policies[0]["PolicyDocument"], template, conditions)
        except Unresolvable as err:
            report.fail(f"template: {logical}'s policy resolves", str(err))
            continue
        when = f" when LockMode is {'per-object' if conditions['PerObjectLock'] else 'bucket-default'}" \
            if conditions else ""
        report.expect(actual == expected, f"template: {logical}'s policy{when} is deploy/iam/{filename}",
                      diff(expected, actual, f"deploy/iam/{filename}", f"{rel} {logical}"))

    # (c) bucket policy == deploy/iam/bucket-policy.json
    policies = by_type.get("AWS::S3::BucketPolicy", [])
    buckets = by_type.get("AWS::S3::Bucket", [])
    if report.expect(len(policies) == 1 and len(buckets) == 1, "template: one bucket and one bucket policy"):
        bp = resources[policies[0]]["Properties"]
        report.expect(bp.get("Bucket") == {"Ref": buckets[0]}, "template: the bucket policy is on the vault bucket")
        expected = load_json(report, IAM / "bucket-policy.json")
        if expected is not None:
            try:
                actual = resolve(bp["PolicyDocument"], template, {})
                report.expect(actual == expected, "template: the bucket policy is deploy/iam/bucket-policy.json",
                              diff(expected, actual, "deploy/iam/bucket-policy.json", f"{rel} {policies[0]}"))
            except Unresolvable as err:
                report.fail("template: the bucket policy resolves", str(err))
        check_bucket(report, resources[buckets[0]], params)

    # Trust policies
    for web in (False, True):
        doc = trust_document(report, "VaultWriterRole",
                             resources.get("VaultWriterRole", {}).get("Properties", {}).get("AssumeRolePolicyDocument"),
                             {"WriterWebIdentity": web})
        if doc is None:
            continue
        statements = doc.get("Statement", [])
        prod = [s for s in statements if s.get("Action") == "sts:AssumeRole"
                and s.get("Principal") == {"AWS": "arn:aws:iam::111122223333:root"}
                and s.get("Condition") == {"StringEquals": {"sts:ExternalId": "external-id"}}]
        report.expect(bool(prod), f"template: writer trust (web identity {'on' if web else 'off'}) lets the prod "
                      "account assume it with the external id only", json.dumps(doc, indent=2))
        oidc = [s for s in statements if s.get("Action") == "sts:AssumeRoleWithWebIdentity"]
        if web:
            issuer = "oidc.example.com/id/CLUSTER"
            report.expect(len(oidc) == 1 and oidc[0].get("Condition") == {"StringEquals": {
                f"{issuer}:sub": "system:serviceaccount:backup:vault-writer", f"{issuer}:aud": "sts.amazonaws.com"}},
                "template: writer web-identity trust is limited to the service account (sub) and audience (aud)",
                json.dumps(doc, indent=2))
        report.expect(len(statements) == (2 if web else 1),
                      f"template: writer trust has {'two statements' if web else 'one statement'} "
                      f"(web identity {'on' if web else 'off'})", json.dumps(doc, indent=2))
    for logical in ("VaultVerifierRole", "VaultRestorerRole"):
        for own in (False, True):
            conditions = {c: own for c in conds if c.endswith("TrustsThisAccount")}
            conditions |= {c: own for c in conds if c.endswith("OwnExternalId")}
            doc = trust_document(report, logical, resources.get(logical, {}).get("Properties", {})
                                 .get("AssumeRolePolicyDocument"), conditions)
            if doc is None:
                continue
            statements = doc.get("Statement", [])
            report.expect(bool(statements) and all(
                s.get("Action") == "sts:AssumeRole" and set(s.get("Condition", {}).get("StringEquals", {}))
                == {"sts:ExternalId"} for s in statements),
                f"template: {logical} trust requires an external id (own parameters {'set' if own else 'empty'})",
                json.dumps(doc, indent=2))


def check_bucket(report: Report, bucket: dict, params: dict) -> None:
    props = bucket.get("Properties", {})
    report.expect(bucket.get("DeletionPolicy") == "Retain" and bucket.get("UpdateReplacePolicy") == "Retain",
                  "template: bucket has DeletionPolicy and UpdateReplacePolicy Retain")
    report.expect(props.get("ObjectLockEnabled") is True, "template: bucket has ObjectLockEnabled true")
    lock = props.get("ObjectLockConfiguration", {})
    report.expect(lock.get("ObjectLockEnabled") == "Enabled"
                  and lock.get("Rule", {}).get("DefaultRetention") == {"Mode": "COMPLIANCE",
                                                                       "Days": {"Ref": "DefaultRetentionDays"}},
                  "template: bucket default retention is COMPLIANCE for DefaultRetentionDays", json.dumps(lock))
    report.expect(props.get("VersioningConfiguration") == {"Status": "Enabled"}, "template: versioning is enabled")
    pab = props.get("PublicAccessBlockConfiguration", {})
    report.expect(all(pab.get(k) is True for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls",
                                                   "RestrictPublicBuckets")),
                  "template: all four public access blocks are on")
    report.expect(props.get("OwnershipControls") == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                  "template: object ownership is BucketOwnerEnforced (ACLs off)")
    report.expect(bool(props.get("BucketEncryption")), "template: default encryption is set")
    rules = props.get("LifecycleConfiguration", {}).get("Rules", [])
    actions = sorted(k for r in rules for k in r if k not in ("Id", "Status", "Prefix", "Filter"))
    report.expect(actions == ["AbortIncompleteMultipartUpload", "NoncurrentVersionExpiration"],
                  "template: lifecycle has only AbortIncompleteMultipartUpload and NoncurrentVersionExpiration "
                  "(current versions never expire, nothing transitions)", f"lifecycle actions: {actions}")
    report.expect(any(r.get("AbortIncompleteMultipartUpload") == {"DaysAfterInitiation": 7}
                      and r.get("Status") == "Enabled" for r in rules),
                  "template: incomplete multipart uploads are aborted after 7 days")
    default = params.get("MaxRetentionDays", {}).get("Default")
    report.expect(isinstance(default, int) and default >= LONGEST_DEFAULT_TIER_DAYS,
                  f"template: MaxRetentionDays default ({default}) covers the yearly tier "
                  f"({LONGEST_DEFAULT_TIER_DAYS} days)")


CHECKS: dict[str, Callable[[Report], None]] = {
    "cfn-lint": run_cfn_lint,
    "template": check_template,
    "bucket-policy": check_bucket_policy,
    "identity-policies": check_identity_policies,
    "systemd": lambda report: check_systemd(report, ROOT),
}


def main(argv: list[str]) -> int:
    names = argv or list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        print(f"unknown check(s): {', '.join(unknown)}; known: {', '.join(CHECKS)}", file=sys.stderr)
        return 2
    try:
        import cfnlint.decode  # noqa: F401
        import cfnlint.runner  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as err:
        print(f"error: {err}. {MISSING_TOOLS_HINT}", file=sys.stderr)
        return 2
    report = Report()
    for name in names:
        print(f"== {name}")
        CHECKS[name](report)
    if report.failures:
        print(f"\n{report.failures} check(s) FAILED", file=sys.stderr)
        return 1
    print(f"\nall passed ({', '.join(names)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
