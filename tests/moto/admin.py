#!/usr/bin/env python3
"""Admin actions against the test server started by server.py, signed with the admin keys.

    python3 tests/moto/admin.py --endpoint URL --access-key-id K --secret-access-key S COMMAND ...
    (or VAULT_MOTO_ENDPOINT / VAULT_MOTO_ADMIN_KEY / VAULT_MOTO_ADMIN_SECRET)

Commands:
    create-bucket NAME [--default-mode COMPLIANCE|GOVERNANCE (--default-days N | --default-years N)]
        A bucket with Object Lock enabled (and so versioning), optionally with a default
        retention rule. Prints {"bucket": NAME}.
    create-bucket NAME --no-object-lock
        A plain bucket: no Object Lock, versioning never enabled (what a vault must
        refuse). Prints {"bucket": NAME}.
    create-user NAME (--policy FILE | --policy-json JSON)... [--var KEY=VALUE ...]
        An IAM user with each FILE (a JSON policy document, every ${KEY} replaced by
        VALUE) as an inline policy named after the file's stem, each --policy-json
        document (given inline, or `-` for standard input) as one named inline-N, and
        an access key. Prints {"access_key_id": ..., "secret_access_key": ...}.
    create-role NAME (--policy FILE | --policy-json JSON)... [--var KEY=VALUE ...]
        The same for a role anyone may assume. Prints {"arn": ...}.
    create-access-key NAME
        Another access key of an existing user (a user may hold two). Prints
        {"access_key_id": ..., "secret_access_key": ...}.

Errors go to stderr with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

REGION = "us-east-1"


class Failure(Exception):
    pass


def client(args: argparse.Namespace, service: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=args.endpoint,
        region_name=REGION,
        aws_access_key_id=args.access_key_id,
        aws_secret_access_key=args.secret_access_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


def create_bucket(args: argparse.Namespace) -> dict:
    if bool(args.default_mode) != bool(args.default_days or args.default_years):
        raise Failure("--default-mode needs --default-days or --default-years, and they need it")
    if args.default_days and args.default_years:
        raise Failure("give --default-days or --default-years, not both")
    if args.no_object_lock and args.default_mode:
        raise Failure("a bucket without Object Lock has no default retention")
    s3 = client(args, "s3")
    if args.no_object_lock:
        s3.create_bucket(Bucket=args.name)
        return {"bucket": args.name}
    s3.create_bucket(Bucket=args.name, ObjectLockEnabledForBucket=True)
    if args.default_mode:
        period = {"Days": args.default_days} if args.default_days else {"Years": args.default_years}
        s3.put_object_lock_configuration(
            Bucket=args.name,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": args.default_mode, **period}},
            },
        )
    return {"bucket": args.name}


def load_policy(path: str, variables: dict[str, str], text: str | None = None) -> str:
    """A policy document from the file `path` (or `text`, named `path` in errors)."""
    if text is None:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise Failure(f"cannot read policy {path}: {e}")
    for name, value in variables.items():
        text = text.replace("${" + name + "}", value)
    left = sorted(set(re.findall(r"\$\{[^}]*\}", text)))
    if left:
        raise Failure(f"policy {path}: no --var for {', '.join(left)}")
    try:
        json.loads(text)
    except ValueError as e:
        raise Failure(f"policy {path} is not JSON after substitution: {e}")
    return text


def load_policies(args: argparse.Namespace) -> dict[str, str]:
    variables = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise Failure(f"--var wants KEY=VALUE, got {item!r}")
        variables[name] = value
    policies = {}
    for path in args.policy:
        name = Path(path).stem
        if name in policies:
            raise Failure(f"two policies named {name!r}; policy names come from file stems")
        policies[name] = load_policy(path, variables)
    stdin_used = False
    for number, text in enumerate(args.policy_json, start=1):
        if text == "-":
            if stdin_used:
                raise Failure("--policy-json - given twice: standard input holds one document")
            stdin_used, text = True, sys.stdin.read()
        name = f"inline-{number}"
        if name in policies:
            raise Failure(f"a policy file is named {name!r}, like a --policy-json policy")
        policies[name] = load_policy(f"--policy-json #{number}", variables, text)
    if not policies:
        raise Failure("give at least one --policy FILE or --policy-json JSON")
    return policies


def create_role(args: argparse.Namespace) -> dict:
    """A role with inline policies, assumable by anyone in the account (moto does not
    evaluate trust policies; the test only needs STS to hand out its credentials)."""
    policies = load_policies(args)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"},
            {"Effect": "Allow", "Principal": {"Federated": "*"}, "Action": "sts:AssumeRoleWithWebIdentity"},
        ],
    }
    iam = client(args, "iam")
    role = iam.create_role(RoleName=args.name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    for name, document in policies.items():
        iam.put_role_policy(RoleName=args.name, PolicyName=name, PolicyDocument=document)
    return {"arn": role["Arn"]}


def create_user(args: argparse.Namespace) -> dict:
    policies = load_policies(args)
    iam = client(args, "iam")
    iam.create_user(UserName=args.name)
    for name, document in policies.items():
        iam.put_user_policy(UserName=args.name, PolicyName=name, PolicyDocument=document)
    key = iam.create_access_key(UserName=args.name)["AccessKey"]
    return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}


def create_access_key(args: argparse.Namespace) -> dict:
    key = client(args, "iam").create_access_key(UserName=args.name)["AccessKey"]
    return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}


def main() -> int:
    parser = argparse.ArgumentParser(description="Admin actions against the vault test S3 server.")
    parser.add_argument("--endpoint", default=os.environ.get("VAULT_MOTO_ENDPOINT"))
    parser.add_argument("--access-key-id", default=os.environ.get("VAULT_MOTO_ADMIN_KEY"))
    parser.add_argument("--secret-access-key", default=os.environ.get("VAULT_MOTO_ADMIN_SECRET"))
    commands = parser.add_subparsers(dest="command", required=True)

    bucket = commands.add_parser("create-bucket", help="bucket with Object Lock enabled")
    bucket.add_argument("name")
    bucket.add_argument("--default-mode", choices=["COMPLIANCE", "GOVERNANCE"])
    bucket.add_argument("--default-days", type=int)
    bucket.add_argument("--default-years", type=int)
    bucket.add_argument("--no-object-lock", action="store_true", help="a plain bucket, unversioned")
    bucket.set_defaults(run=create_bucket)

    user = commands.add_parser("create-user", help="IAM user with inline policies and an access key")
    user.add_argument("name")
    role = commands.add_parser("create-role", help="IAM role with inline policies")
    role.add_argument("name")
    for sub in (user, role):
        sub.add_argument("--policy", action="append", default=[], metavar="FILE")
        sub.add_argument("--policy-json", action="append", default=[], metavar="JSON", help="a policy document, or - for stdin")
        sub.add_argument("--var", action="append", default=[], metavar="KEY=VALUE")
    user.set_defaults(run=create_user)
    role.set_defaults(run=create_role)

    access_key = commands.add_parser("create-access-key", help="another access key of an existing user")
    access_key.add_argument("name")
    access_key.set_defaults(run=create_access_key)

    args = parser.parse_args()
    for option, value in (
        ("--endpoint / VAULT_MOTO_ENDPOINT", args.endpoint),
        ("--access-key-id / VAULT_MOTO_ADMIN_KEY", args.access_key_id),
        ("--secret-access-key / VAULT_MOTO_ADMIN_SECRET", args.secret_access_key),
    ):
        if not value:
            parser.error(f"{option} is required")

    from botocore.exceptions import BotoCoreError, ClientError

    try:
        result = args.run(args)
    except (Failure, ClientError, BotoCoreError) as e:
        print(f"admin.py {args.command}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
