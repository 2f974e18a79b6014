#!/usr/bin/env python3
"""Self-test of the vault test S3 server: every patch works and IAM is enforced.

    python3 tests/moto/selftest.py

Starts server.py and admin.py as subprocesses, the way the Rust tests do, then checks
with boto3 each AWS behaviour the patches restore (and the stock moto behaviour vault
relies on). Prints "ok: ..." and exits 0, or names each failing check, prefixed with
the patch it belongs to, and exits 1.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import boto3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

HERE = Path(__file__).resolve().parent
REGION = "us-east-1"
DAY = datetime.timedelta(days=1)

CHECKS: list = []


def check(label: str):
    def register(fn):
        CHECKS.append((label, fn))
        return fn

    return register


class Fail(AssertionError):
    pass


def expect(condition, message: str) -> None:
    if not condition:
        raise Fail(message)


def error_of(fn, *args, **kwargs) -> tuple[str, int] | None:
    """(error code, HTTP status) of a failing call, None when it succeeds."""
    try:
        fn(*args, **kwargs)
    except ClientError as e:
        return e.response["Error"].get("Code", ""), e.response["ResponseMetadata"]["HTTPStatusCode"]
    return None


def expect_error(code: str, status: int, fn, *args, **kwargs) -> None:
    got = error_of(fn, *args, **kwargs)
    expect(got == (code, status), f"{fn.__name__}: expected {code} ({status}), got {got or 'success'}")


def expect_denied(fn, *args, **kwargs) -> None:
    got = error_of(fn, *args, **kwargs)
    expect(
        got is not None and got[1] == 403 and got[0] in ("AccessDenied", "403"),
        f"{fn.__name__}: expected 403 AccessDenied, got {got or 'success'}",
    )


def utc(dt: datetime.datetime) -> datetime.datetime:
    return dt.astimezone(datetime.timezone.utc)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


# --------------------------------------------------------------------------- fixture


class Server:
    """server.py as a subprocess, held by a stdin pipe like the Rust harness does."""

    def __init__(self, *args: str) -> None:
        self.stderr = tempfile.TemporaryFile()  # a file, not a pipe: it cannot fill up and block the server
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "server.py"), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise SystemExit(f"selftest: server.py did not start:\n{self.errors()}")
        self.info = json.loads(line)

    def errors(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace").strip()

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # EOF: the server's signal to exit
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode


class Ctx:
    def __init__(self, server: Server, workdir: Path) -> None:
        info = server.info
        self.endpoint = info["endpoint"]
        self.admin_keys = info["admin"]
        self.workdir = workdir
        self.admin = self.s3(self.admin_keys)
        self.iam = self.client("iam", self.admin_keys)

    def client(self, service: str, keys: dict, **config):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=keys["access_key_id"],
            aws_secret_access_key=keys["secret_access_key"],
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
        )

    def s3(self, keys: dict, **config):
        return self.client("s3", keys, **config)

    def rust_like(self, keys: dict):
        """Sends x-amz-checksum-crc32 without x-amz-sdk-checksum-algorithm, as aws-sdk-rust
        does when no ChecksumAlgorithm is set on the request."""
        s3 = self.s3(keys)

        def strip(request, **_):
            if "x-amz-sdk-checksum-algorithm" in request.headers:
                del request.headers["x-amz-sdk-checksum-algorithm"]

        s3.meta.events.register("before-sign.s3.*", strip)
        return s3

    def admin_cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(
            os.environ,
            VAULT_MOTO_ENDPOINT=self.endpoint,
            VAULT_MOTO_ADMIN_KEY=self.admin_keys["access_key_id"],
            VAULT_MOTO_ADMIN_SECRET=self.admin_keys["secret_access_key"],
        )
        done = subprocess.run(
            [sys.executable, str(HERE / "admin.py"), *args], env=env, capture_output=True, text=True, timeout=30
        )
        if check and done.returncode != 0:
            raise Fail(f"admin.py {' '.join(args)} failed: {done.stderr.strip()}")
        return done

    def user(self, name: str, statements: list[dict]):
        """An IAM user with one inline policy; returns its S3 client."""
        self.iam.create_user(UserName=name)
        self.iam.put_user_policy(
            UserName=name,
            PolicyName="p",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
        )
        key = self.iam.create_access_key(UserName=name)["AccessKey"]
        return self.s3({"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]})

    def put(self, bucket: str, key: str, body: bytes = b"data", **kwargs) -> str:
        return self.admin.put_object(Bucket=bucket, Key=key, Body=body, **kwargs)["VersionId"]

    def multipart(self, s3, bucket: str, key: str, create: dict | None = None, complete: dict | None = None):
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key, **(create or {}))["UploadId"]
        part = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"part one")
        return s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
            **(complete or {}),
        )


def allow(actions, bucket: str, effect: str = "Allow") -> dict:
    return {
        "Effect": effect,
        "Action": actions,
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
    }


DEFAULT = "vault-default"  # COMPLIANCE 1 day by default
LOCK = "vault-lock"  # Object Lock, no default retention
PLAIN = "vault-plain"  # no Object Lock


# --------------------------------------------------------------------------- checks


@check("setup (admin.py)")
def setup(c: Ctx) -> None:
    c.admin_cli("create-bucket", DEFAULT, "--default-mode", "COMPLIANCE", "--default-days", "1")
    out = json.loads(c.admin_cli("create-bucket", LOCK).stdout)
    expect(out == {"bucket": LOCK}, f"create-bucket printed {out}")
    c.admin.create_bucket(Bucket=PLAIN)
    cfg = c.admin.get_object_lock_configuration(Bucket=DEFAULT)["ObjectLockConfiguration"]
    expect(cfg["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE", f"default retention: {cfg}")
    expect(c.admin.get_bucket_versioning(Bucket=LOCK).get("Status") == "Enabled", "lock bucket not versioned")

    policy = c.workdir / "writer.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::${VAULT_BUCKET}/*"}]}))
    keys = json.loads(c.admin_cli("create-user", "writer", "--policy", str(policy), "--var", f"VAULT_BUCKET={DEFAULT}").stdout)
    expect(set(keys) == {"access_key_id", "secret_access_key"}, f"create-user printed {keys}")
    c.writer = c.s3(keys)
    stored = c.iam.get_user_policy(UserName="writer", PolicyName="writer")["PolicyDocument"]
    stored = json.loads(stored) if isinstance(stored, str) else stored  # boto3 decodes it
    expect(stored["Statement"][0]["Resource"] == f"arn:aws:s3:::{DEFAULT}/*", f"policy not substituted: {stored}")

    done = c.admin_cli("create-user", "nobody", "--policy", str(policy), check=False)
    expect(done.returncode != 0 and "${VAULT_BUCKET}" in done.stderr, f"unsubstituted variable accepted: {done}")
    expect_error("NoSuchEntity", 404, c.iam.get_user, UserName="nobody")


@check("IAM enforced")
def iam_enforced(c: Ctx) -> None:
    c.writer.put_object(Bucket=DEFAULT, Key="w/obj", Body=b"x")
    expect_denied(c.writer.get_object, Bucket=DEFAULT, Key="w/obj")
    expect_error("403", 403, c.writer.head_object, Bucket=DEFAULT, Key="w/obj")
    expect_denied(c.writer.list_objects_v2, Bucket=DEFAULT)
    expect_denied(c.writer.delete_object, Bucket=DEFAULT, Key="w/obj")
    expect_denied(c.writer.put_object, Bucket=LOCK, Key="w/obj", Body=b"x")
    c.admin.get_object(Bucket=DEFAULT, Key="w/obj")["Body"].read()
    c.admin.head_object(Bucket=DEFAULT, Key="w/obj")
    c.admin.list_objects_v2(Bucket=DEFAULT)
    c.admin.delete_object(Bucket=DEFAULT, Key="w/obj")  # a delete marker
    bogus = c.s3({"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "x"})
    expect_error("InvalidAccessKeyId", 403, bogus.list_objects_v2, Bucket=DEFAULT)
    wrong_secret = c.s3({"access_key_id": c.admin_keys["access_key_id"], "secret_access_key": "wrong"})
    expect_error("SignatureDoesNotMatch", 403, wrong_secret.list_objects_v2, Bucket=DEFAULT)


@check("unsigned-requests-denied")
def unsigned(c: Ctx) -> None:
    for path in ("/", f"/{DEFAULT}", f"/{DEFAULT}/missing-key"):
        try:
            urllib.request.urlopen(c.endpoint + path, timeout=10)
            raise Fail(f"unsigned GET {path} succeeded")
        except urllib.error.HTTPError as e:
            expect(e.code == 403, f"unsigned GET {path}: HTTP {e.code}, expected 403")


@check("IAM wildcards and explicit Deny")
def iam_wildcards(c: Ctx) -> None:
    c.put(LOCK, "wild/obj")
    getter = c.user("wild-getter", [allow("s3:Get*", LOCK), allow("s3:List*", LOCK)])
    getter.get_object(Bucket=LOCK, Key="wild/obj")["Body"].read()
    getter.list_objects_v2(Bucket=LOCK)
    expect_denied(getter.put_object, Bucket=LOCK, Key="wild/x", Body=b"x")
    denier = c.user("wild-denier", [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Deny", "Action": ["s3:Delete*", "s3:PutBucket*"], "Resource": "*"},
    ])
    denier.get_object(Bucket=LOCK, Key="wild/obj")["Body"].read()
    denier.put_object(Bucket=LOCK, Key="wild/obj2", Body=b"x")
    expect_denied(denier.delete_object, Bucket=LOCK, Key="wild/obj")
    expect_denied(denier.put_bucket_versioning, Bucket=LOCK, VersioningConfiguration={"Status": "Enabled"})
    expect_denied(denier.put_object_lock_configuration, Bucket=LOCK,
                  ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})


@check("iam-action-names")
def action_names(c: Ctx) -> None:
    b = LOCK
    v1 = c.put(b, "act/obj")
    c.put(b, "act/obj")
    v_del = c.put(b, "act/delme")
    until = now() + DAY
    upload = c.admin.create_multipart_upload(Bucket=b, Key="act/mpu")["UploadId"]

    # Only GetObject/PutObject/ListBucket: none of the lock sub-resources may pass.
    plain = c.user("act-plain", [allow(["s3:GetObject", "s3:PutObject", "s3:ListBucket"], b)])
    expect_denied(plain.get_object_retention, Bucket=b, Key="act/obj")
    expect_denied(plain.put_object_retention, Bucket=b, Key="act/obj",
                  Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})
    expect_denied(plain.get_object_legal_hold, Bucket=b, Key="act/obj")
    expect_denied(plain.put_object_legal_hold, Bucket=b, Key="act/obj", LegalHold={"Status": "OFF"})
    expect_denied(plain.get_object_lock_configuration, Bucket=b)
    expect_denied(plain.put_object_lock_configuration, Bucket=b,
                  ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    expect_denied(plain.get_object, Bucket=b, Key="act/obj", VersionId=v1)
    expect_error("403", 403, plain.head_object, Bucket=b, Key="act/obj", VersionId=v1)
    expect_denied(plain.list_object_versions, Bucket=b)

    # A user allowed exactly one action can make the request that needs it.
    cases = [
        ("PutObjectRetention", lambda s3: s3.put_object_retention(
            Bucket=b, Key="act/obj", Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})),
        ("GetObjectRetention", lambda s3: s3.get_object_retention(Bucket=b, Key="act/obj")),
        ("PutObjectLegalHold", lambda s3: s3.put_object_legal_hold(
            Bucket=b, Key="act/obj", LegalHold={"Status": "OFF"})),
        ("GetObjectLegalHold", lambda s3: s3.get_object_legal_hold(Bucket=b, Key="act/obj")),
        ("PutBucketObjectLockConfiguration", lambda s3: s3.put_object_lock_configuration(
            Bucket=b, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})),
        ("GetBucketObjectLockConfiguration", lambda s3: s3.get_object_lock_configuration(Bucket=b)),
        ("GetBucketVersioning", lambda s3: s3.get_bucket_versioning(Bucket=b)),
        ("PutBucketVersioning", lambda s3: s3.put_bucket_versioning(
            Bucket=b, VersioningConfiguration={"Status": "Enabled"})),
        ("GetLifecycleConfiguration", lambda s3: s3.get_bucket_lifecycle_configuration(Bucket=b)),
        ("PutLifecycleConfiguration", lambda s3: s3.put_bucket_lifecycle_configuration(
            Bucket=b, LifecycleConfiguration={"Rules": [{"ID": "r", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
                                                         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}]})),
        ("GetBucketPolicy", lambda s3: s3.get_bucket_policy(Bucket=b)),
        ("ListBucketVersions", lambda s3: s3.list_object_versions(Bucket=b)),
        ("ListBucket", lambda s3: s3.head_bucket(Bucket=b)),
        ("GetObjectVersion", lambda s3: s3.get_object(Bucket=b, Key="act/obj", VersionId=v1)),
        ("GetObjectVersion", lambda s3: s3.head_object(Bucket=b, Key="act/obj", VersionId=v1)),
        ("DeleteObjectVersion", lambda s3: s3.delete_object(Bucket=b, Key="act/delme", VersionId=v_del)),
        ("AbortMultipartUpload", lambda s3: s3.abort_multipart_upload(Bucket=b, Key="act/mpu", UploadId=upload)),
    ]
    for i, (action, request) in enumerate(cases):
        s3 = c.user(f"act-{i}", [allow(f"s3:{action}", b)])
        got = error_of(request, s3)  # e.g. NoSuchBucketPolicy is fine: authorised, then answered
        expect(got is None or got[1] != 403, f"request needing s3:{action} (case {i}) denied to a user allowed it: {got}")
    c.admin.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": []})


@check("lock-headers-need-permission")
def lock_headers_permission(c: Ctx) -> None:
    until = now() + DAY
    c.writer.put_object(Bucket=DEFAULT, Key="perm/plain", Body=b"x")  # default retention: no extra permission
    expect_denied(c.writer.put_object, Bucket=DEFAULT, Key="perm/a", Body=b"x",
                  ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
    expect_denied(c.writer.put_object, Bucket=DEFAULT, Key="perm/b", Body=b"x", ObjectLockLegalHoldStatus="ON")
    expect_denied(c.writer.create_multipart_upload, Bucket=DEFAULT, Key="perm/c",
                  ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    upload = c.writer.create_multipart_upload(Bucket=DEFAULT, Key="perm/d")["UploadId"]
    c.admin.abort_multipart_upload(Bucket=DEFAULT, Key="perm/d", UploadId=upload)
    locker = c.user("locker", [allow(["s3:PutObject", "s3:PutObjectRetention"], DEFAULT)])
    locker.put_object(Bucket=DEFAULT, Key="perm/e", Body=b"x", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
    expect_denied(locker.put_object, Bucket=DEFAULT, Key="perm/f", Body=b"x", ObjectLockLegalHoldStatus="ON")
    upload = locker.create_multipart_upload(Bucket=DEFAULT, Key="perm/g", ObjectLockMode="GOVERNANCE",
                                            ObjectLockRetainUntilDate=until)["UploadId"]
    c.admin.abort_multipart_upload(Bucket=DEFAULT, Key="perm/g", UploadId=upload)


@check("lock-header-validation")
def lock_header_validation(c: Ctx) -> None:
    past = now() - DAY
    expect_error("InvalidArgument", 400, c.admin.put_object, Bucket=LOCK, Key="val/a", Body=b"x",
                 ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=past)
    expect_error("InvalidArgument", 400, c.admin.put_object, Bucket=LOCK, Key="val/b", Body=b"x",
                 ObjectLockMode="GOVERNANCE")
    expect_error("InvalidRequest", 400, c.admin.put_object, Bucket=PLAIN, Key="val/c", Body=b"x",
                 ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=now() + DAY)
    c.admin.put_object(Bucket=DEFAULT, Key="val/hold", Body=b"x", ObjectLockLegalHoldStatus="ON")
    head = c.admin.head_object(Bucket=DEFAULT, Key="val/hold")
    expect(head.get("ObjectLockMode") == "COMPLIANCE" and head.get("ObjectLockLegalHoldStatus") == "ON",
           f"legal hold alone should keep the default retention: {head}")


@check("multipart-object-lock")
def multipart_lock(c: Ctx) -> None:
    until = (now() + 3 * DAY).replace(microsecond=0)
    done = c.multipart(c.admin, LOCK, "mpu/explicit", create={
        "ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": until, "ObjectLockLegalHoldStatus": "ON"})
    head = c.admin.head_object(Bucket=LOCK, Key="mpu/explicit", VersionId=done["VersionId"])
    expect(head.get("ObjectLockMode") == "GOVERNANCE", f"explicit mode lost: {head.get('ObjectLockMode')}")
    expect(utc(head["ObjectLockRetainUntilDate"]) == until, f"explicit date lost: {head.get('ObjectLockRetainUntilDate')}")
    expect(head.get("ObjectLockLegalHoldStatus") == "ON", "explicit legal hold lost")

    single = c.admin.head_object(Bucket=DEFAULT, Key="mpu/single", VersionId=c.put(DEFAULT, "mpu/single"))
    done = c.multipart(c.admin, DEFAULT, "mpu/default")
    head = c.admin.head_object(Bucket=DEFAULT, Key="mpu/default", VersionId=done["VersionId"])
    expect(head.get("ObjectLockMode") == "COMPLIANCE", f"default mode not applied: {head.get('ObjectLockMode')}")
    drift = abs(utc(head["ObjectLockRetainUntilDate"]) - utc(single["ObjectLockRetainUntilDate"]))
    expect(drift < datetime.timedelta(seconds=30), f"default date differs from PutObject's by {drift}")

    expect_error("InvalidRequest", 400, c.admin.create_multipart_upload, Bucket=PLAIN, Key="mpu/x",
                 ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
    expect_error("InvalidArgument", 400, c.admin.create_multipart_upload, Bucket=LOCK, Key="mpu/y",
                 ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=now() - DAY)


@check("list-parts-root-element")
def list_parts_root(c: Ctx) -> None:
    upload = c.admin.create_multipart_upload(Bucket=LOCK, Key="lp/x")
    seen = []

    def keep(http_response, **_):
        seen.append(http_response.content)

    c.admin.meta.events.register("after-call.s3.ListParts", keep)
    try:
        c.admin.list_parts(Bucket=LOCK, Key="lp/x", UploadId=upload["UploadId"])
    finally:
        c.admin.meta.events.unregister("after-call.s3.ListParts", keep)
    c.admin.abort_multipart_upload(Bucket=LOCK, Key="lp/x", UploadId=upload["UploadId"])
    expect(seen and b"<ListPartsResult" in seen[0], f"ListParts root element: {seen[:1]}")


@check("versioning-root-element")
def versioning_root(c: Ctx) -> None:
    seen = []

    def keep(http_response, **_):
        seen.append(http_response.content)

    c.admin.meta.events.register("after-call.s3.GetBucketVersioning", keep)
    try:
        status = c.admin.get_bucket_versioning(Bucket=LOCK).get("Status")
    finally:
        c.admin.meta.events.unregister("after-call.s3.GetBucketVersioning", keep)
    expect(status == "Enabled", f"versioning status {status!r}")
    expect(seen and b"<VersioningConfiguration" in seen[0], f"GetBucketVersioning root element: {seen[:1]}")


@check("web-identity-is-unsigned")
def web_identity(c: Ctx) -> None:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    iam = c.iam
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Federated": "*"}, "Action": "sts:AssumeRoleWithWebIdentity"}]}
    arn = iam.create_role(RoleName="web-identity", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    sts = boto3.client("sts", endpoint_url=c.endpoint, region_name="us-east-1",
                       config=Config(signature_version=UNSIGNED))
    creds = sts.assume_role_with_web_identity(RoleArn=arn, RoleSessionName="pod", WebIdentityToken="token")
    expect(creds["Credentials"]["AccessKeyId"], "no credentials for a web identity")
    # Other STS calls still need a signature.
    from botocore.exceptions import ClientError

    try:
        sts.assume_role(RoleArn=arn, RoleSessionName="unsigned")
        status = 200
    except ClientError as e:
        status = e.response["ResponseMetadata"]["HTTPStatusCode"]
    expect(status == 403, f"unsigned AssumeRole answered {status}")


@check("retention-change-rules")
def retention_rules(c: Ctx) -> None:
    t = now().replace(microsecond=0)
    comp = c.put(LOCK, "ret/comp", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=t + 2 * DAY)
    gov = c.put(LOCK, "ret/gov", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=t + 2 * DAY)

    def retain(s3, key, version, mode, until, **kw):
        retention = {"Mode": mode, "RetainUntilDate": until} if mode else {}
        return s3.put_object_retention(Bucket=LOCK, Key=key, VersionId=version, Retention=retention, **kw)

    def current(key, version):
        r = c.admin.get_object_retention(Bucket=LOCK, Key=key, VersionId=version)["Retention"]
        return r["Mode"], utc(r["RetainUntilDate"])

    for mode, until in (("COMPLIANCE", t + DAY), ("GOVERNANCE", t + 3 * DAY), (None, None)):
        expect_denied(retain, c.admin, "ret/comp", comp, mode, until)
        expect_denied(retain, c.admin, "ret/comp", comp, mode, until, BypassGovernanceRetention=True)
    expect(current("ret/comp", comp) == ("COMPLIANCE", t + 2 * DAY), "COMPLIANCE retention changed")
    retain(c.admin, "ret/comp", comp, "COMPLIANCE", t + 3 * DAY)
    expect(current("ret/comp", comp) == ("COMPLIANCE", t + 3 * DAY), "COMPLIANCE retention not extended")
    expect_error("InvalidArgument", 400, retain, c.admin, "ret/comp", comp, "COMPLIANCE", t - DAY)

    expect_denied(retain, c.admin, "ret/gov", gov, "GOVERNANCE", t + DAY)
    expect_denied(retain, c.admin, "ret/gov", gov, "COMPLIANCE", t + 3 * DAY)
    expect_denied(retain, c.admin, "ret/gov", gov, None, None)
    no_bypass = c.user("no-bypass", [allow("s3:PutObjectRetention", LOCK)])
    expect_denied(retain, no_bypass, "ret/gov", gov, "GOVERNANCE", t + DAY, BypassGovernanceRetention=True)
    retain(no_bypass, "ret/gov", gov, "GOVERNANCE", t + 3 * DAY)
    expect(current("ret/gov", gov) == ("GOVERNANCE", t + 3 * DAY), "GOVERNANCE retention not extended")
    retain(c.admin, "ret/gov", gov, "GOVERNANCE", t + DAY, BypassGovernanceRetention=True)
    expect(current("ret/gov", gov) == ("GOVERNANCE", t + DAY), "GOVERNANCE retention not shortened with bypass")


@check("get-object-retention")
def get_retention(c: Ctx) -> None:
    until = (now() + 2 * DAY).replace(microsecond=0)
    old = c.put(LOCK, "get/obj", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    c.put(LOCK, "get/obj")
    r = c.admin.get_object_retention(Bucket=LOCK, Key="get/obj", VersionId=old)["Retention"]
    expect((r["Mode"], utc(r["RetainUntilDate"])) == ("COMPLIANCE", until), f"retention by versionId: {r}")
    expect_error("NoSuchObjectLockConfiguration", 404, c.admin.get_object_retention, Bucket=LOCK, Key="get/obj")
    expect_error("NoSuchKey", 404, c.admin.get_object_retention, Bucket=LOCK, Key="get/missing")
    r = c.admin.get_object_retention(Bucket=DEFAULT, Key="mpu/single")["Retention"]
    expect(r["Mode"] == "COMPLIANCE", f"default retention not reported: {r}")


@check("versioning-locked")
def versioning_locked(c: Ctx) -> None:
    expect_error("InvalidBucketState", 409, c.admin.put_bucket_versioning, Bucket=LOCK,
                 VersioningConfiguration={"Status": "Suspended"})
    expect(c.admin.get_bucket_versioning(Bucket=LOCK).get("Status") == "Enabled", "versioning changed")
    c.admin.put_bucket_versioning(Bucket=PLAIN, VersioningConfiguration={"Status": "Suspended"})


@check("conditional writes (stock moto)")
def conditional_writes(c: Ctx) -> None:
    c.admin.put_object(Bucket=DEFAULT, Key="cond/a", Body=b"1", IfNoneMatch="*")
    expect_error("PreconditionFailed", 412, c.admin.put_object, Bucket=DEFAULT, Key="cond/a", Body=b"2", IfNoneMatch="*")
    c.multipart(c.admin, DEFAULT, "cond/m", complete={"IfNoneMatch": "*"})
    expect_error("PreconditionFailed", 412, c.multipart, c.admin, DEFAULT, "cond/m", complete={"IfNoneMatch": "*"})
    expect_error("PreconditionFailed", 412, c.multipart, c.admin, DEFAULT, "cond/a", complete={"IfNoneMatch": "*"})
    versions = c.admin.list_object_versions(Bucket=DEFAULT, Prefix="cond/")["Versions"]
    expect(len(versions) == 2, f"a refused write left a version: {versions}")


@check("checksum-header-names-algorithm")
def checksums(c: Ctx) -> None:
    rust = c.rust_like(c.admin_keys)
    body = b"rust sdk body"
    out = rust.put_object(Bucket=DEFAULT, Key="sum/put", Body=body)
    expect(out.get("ChecksumCRC32") == crc32(body), f"PutObject checksum: {out.get('ChecksumCRC32')}")
    got = c.admin.get_object(Bucket=DEFAULT, Key="sum/put", ChecksumMode="ENABLED")
    expect(got["Body"].read() == body and got.get("ChecksumCRC32") == crc32(body), "stored checksum")
    upload = rust.create_multipart_upload(Bucket=DEFAULT, Key="sum/mpu")["UploadId"]
    part = rust.upload_part(Bucket=DEFAULT, Key="sum/mpu", UploadId=upload, PartNumber=1, Body=body)
    expect(part.get("ChecksumCRC32") == crc32(body), f"UploadPart checksum: {part.get('ChecksumCRC32')}")
    rust.abort_multipart_upload(Bucket=DEFAULT, Key="sum/mpu", UploadId=upload)

    # A streamed body: aws-chunked with the checksum in a trailer (aws-sdk-rust's PutObject from a stream).
    body = os.urandom(70_000)
    encoded = (f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n"
               + f"x-amz-checksum-crc32:{crc32(body)}\r\n\r\n".encode())
    request = AWSRequest(method="PUT", url=f"{c.endpoint}/{DEFAULT}/sum/stream", data=encoded, headers={
        "Content-Type": "application/octet-stream",  # else urllib sends a form type
        "Content-Encoding": "aws-chunked",
        "Content-Length": str(len(encoded)),
        "x-amz-decoded-content-length": str(len(body)),
        "x-amz-trailer": "x-amz-checksum-crc32",
    })
    request.context["checksum"] = {"request_algorithm": {"in": "trailer", "algorithm": "crc32", "name": "x-amz-checksum-crc32"}}
    S3SigV4Auth(Credentials(c.admin_keys["access_key_id"], c.admin_keys["secret_access_key"]), "s3", REGION).add_auth(request)
    raw = urllib.request.Request(request.url, data=encoded, method="PUT", headers=dict(request.headers.items()))
    with urllib.request.urlopen(raw, timeout=10) as r:
        expect(r.headers.get("x-amz-checksum-crc32") == crc32(body), f"trailer checksum: {r.headers.get('x-amz-checksum-crc32')} != {crc32(body)}")
    got = c.admin.get_object(Bucket=DEFAULT, Key="sum/stream", ChecksumMode="ENABLED")
    expect(got["Body"].read() == body, "streamed body corrupted")
    expect(got.get("ChecksumCRC32") == crc32(body), f"streamed checksum stored: {got.get('ChecksumCRC32')}")
    expect(got.get("ObjectLockMode") == "COMPLIANCE", "streamed object lost the default retention")

    # Neither Content-MD5 nor a checksum: AWS refuses Object Lock uploads.
    bare = c.s3(c.admin_keys, request_checksum_calculation="when_required")
    got = error_of(bare.put_object, Bucket=DEFAULT, Key="sum/bare", Body=b"x")
    expect(got is not None and got[1] == 400, f"lock upload without checksum: {got or 'success'}")


@check("unknown-upload-id")
def unknown_upload(c: Ctx) -> None:
    expect_error("NoSuchUpload", 404, c.admin.upload_part, Bucket=LOCK, Key="u/x", UploadId="nope", PartNumber=1, Body=b"x")
    expect_error("NoSuchUpload", 404, c.admin.complete_multipart_upload, Bucket=LOCK, Key="u/x", UploadId="nope",
                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]})


@check("governance-bypass-needs-permission")
def bypass_delete(c: Ctx) -> None:
    until = now() + DAY
    v1 = c.put(LOCK, "byp/obj", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
    v2 = c.put(LOCK, "byp/obj", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
    deleter = c.user("deleter", [allow(["s3:DeleteObject", "s3:DeleteObjectVersion"], LOCK)])
    expect_denied(deleter.delete_object, Bucket=LOCK, Key="byp/obj", VersionId=v1)
    expect_denied(deleter.delete_object, Bucket=LOCK, Key="byp/obj", VersionId=v1, BypassGovernanceRetention=True)
    expect_denied(c.admin.delete_object, Bucket=LOCK, Key="byp/obj", VersionId=v1, BypassGovernanceRetention=False)
    out = deleter.delete_objects(Bucket=LOCK, BypassGovernanceRetention=True,
                                 Delete={"Objects": [{"Key": "byp/obj", "VersionId": v2}]})
    expect(not out.get("Deleted"), f"DeleteObjects bypassed without permission: {out}")
    c.admin.delete_object(Bucket=LOCK, Key="byp/obj", VersionId=v1, BypassGovernanceRetention=True)
    ids = [v["VersionId"] for v in c.admin.list_object_versions(Bucket=LOCK, Prefix="byp/")["Versions"]]
    expect(ids == [v2], f"versions left: {ids}")


@check("delete-objects-per-key-permissions")
def delete_objects(c: Ctx) -> None:
    v = c.put(LOCK, "dob/obj")
    per_key = c.user("dob-key", [allow("s3:DeleteObject", LOCK)])
    out = per_key.delete_objects(Bucket=LOCK, Delete={"Objects": [{"Key": "dob/obj", "VersionId": v}]})
    expect([e["Code"] for e in out.get("Errors", [])] == ["AccessDenied"] and not out.get("Deleted"),
           f"version deleted without s3:DeleteObjectVersion: {out}")
    out = per_key.delete_objects(Bucket=LOCK, Delete={"Objects": [{"Key": "dob/obj"}]})
    expect([d.get("DeleteMarker") for d in out.get("Deleted", [])] == [True], f"s3:DeleteObject on bucket/* refused: {out}")
    bucket_arn = c.user("dob-bucket", [{"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": f"arn:aws:s3:::{LOCK}"}])
    out = bucket_arn.delete_objects(Bucket=LOCK, Delete={"Objects": [{"Key": "dob/obj", "VersionId": v}]})
    expect(not out.get("Deleted"), f"s3:DeleteObject on the bucket ARN deleted a version: {out}")
    versioned = c.user("dob-version", [allow("s3:DeleteObjectVersion", LOCK)])
    out = versioned.delete_objects(Bucket=LOCK, Delete={"Objects": [{"Key": "dob/obj", "VersionId": v}]})
    expect([d.get("VersionId") for d in out.get("Deleted", [])] == [v], f"s3:DeleteObjectVersion refused: {out}")


@check("lock-config-on-nonempty-bucket")
def relock(c: Ctx) -> None:
    c.admin_cli("create-bucket", "vault-relock")
    c.put("vault-relock", "before")
    c.admin.put_object_lock_configuration(Bucket="vault-relock", ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 2}}})
    head = c.admin.head_object(Bucket="vault-relock", Key="after", VersionId=c.put("vault-relock", "after"))
    expect(head.get("ObjectLockMode") == "GOVERNANCE", f"new default not applied: {head.get('ObjectLockMode')}")


@check("lock-config-days-or-years")
def days_or_years(c: Ctx) -> None:
    cfg = c.admin.get_object_lock_configuration(Bucket=DEFAULT)["ObjectLockConfiguration"]
    expect(cfg["Rule"]["DefaultRetention"] == {"Mode": "COMPLIANCE", "Days": 1}, f"days: {cfg}")
    c.admin_cli("create-bucket", "vault-years", "--default-mode", "GOVERNANCE", "--default-years", "1")
    cfg = c.admin.get_object_lock_configuration(Bucket="vault-years")["ObjectLockConfiguration"]
    expect(cfg["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Years": 1}, f"years: {cfg}")


@check("object lock basics (stock moto)")
def lock_basics(c: Ctx) -> None:
    until = (now() + DAY).replace(microsecond=0)
    v = c.put(LOCK, "basic/obj", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    expect_denied(c.admin.delete_object, Bucket=LOCK, Key="basic/obj", VersionId=v)
    expect_denied(c.admin.delete_object, Bucket=LOCK, Key="basic/obj", VersionId=v, BypassGovernanceRetention=True)
    marker = c.admin.delete_object(Bucket=LOCK, Key="basic/obj")
    expect(marker.get("DeleteMarker") is True and marker.get("VersionId"), f"no delete marker: {marker}")
    expect_error("404", 404, c.admin.head_object, Bucket=LOCK, Key="basic/obj")
    for call in (c.admin.head_object, c.admin.get_object):
        out = call(Bucket=LOCK, Key="basic/obj", VersionId=v)
        expect(out.get("ObjectLockMode") == "COMPLIANCE" and utc(out["ObjectLockRetainUntilDate"]) == until,
               f"{call.__name__} with versionId lacks the lock: {out.get('ObjectLockMode')}")
    listing = c.admin.list_object_versions(Bucket=LOCK, Prefix="basic/")
    expect([x["VersionId"] for x in listing.get("Versions", [])] == [v], f"versions: {listing.get('Versions')}")
    expect([x["VersionId"] for x in listing.get("DeleteMarkers", [])] == [marker["VersionId"]],
           f"delete markers: {listing.get('DeleteMarkers')}")


@check("bucket-policy-validation")
def policy_validation(c: Ctx) -> None:
    b = "vault-policy"
    c.admin_cli("create-bucket", b)
    for body in ("vault doctor: not a policy", "[]", '{"Version": "2012-10-17"}', '{"Statement": [{"Action": "s3:*"}]}'):
        expect_error("MalformedPolicy", 400, c.admin.put_bucket_policy, Bucket=b, Policy=body)
    expect_error("NoSuchBucketPolicy", 404, c.admin.get_bucket_policy, Bucket=b)
    c.put(b, "still/readable")  # moto would answer 500 to every request once it held a broken policy
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*",
                         "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{b}/never/*"}]})
    c.admin.put_bucket_policy(Bucket=b, Policy=policy)
    expect_error("MalformedPolicy", 400, c.admin.put_bucket_policy, Bucket=b, Policy="{")
    expect(c.admin.get_bucket_policy(Bucket=b)["Policy"] == policy, "a refused policy replaced the stored one")
    c.admin.get_object(Bucket=b, Key="still/readable")["Body"].read()


@check("lifecycle-validation")
def lifecycle_validation(c: Ctx) -> None:
    b = "vault-lifecycle"
    c.admin_cli("create-bucket", b)
    good = {"ID": "abort", "Status": "Enabled", "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}
    c.admin.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": [good]})
    for bad in ({"Expiration": {"Days": 0}}, {"NoncurrentVersionExpiration": {"NoncurrentDays": 0}},
                {"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 0}}):
        rule = {"ID": "vault-doctor", "Status": "Enabled", "Filter": {"Prefix": "x/"}, **bad}
        expect_error("InvalidArgument", 400, c.admin.put_bucket_lifecycle_configuration, Bucket=b,
                     LifecycleConfiguration={"Rules": [good, rule]})
    rules = c.admin.get_bucket_lifecycle_configuration(Bucket=b)["Rules"]
    expect([r["ID"] for r in rules] == ["abort"], f"a refused lifecycle changed the stored one: {rules}")


@check("lock-config-validation")
def lock_config_validation(c: Ctx) -> None:
    expect_error("MalformedXML", 400, c.admin.put_object_lock_configuration, Bucket=DEFAULT, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE"}}})
    cfg = c.admin.get_object_lock_configuration(Bucket=DEFAULT)["ObjectLockConfiguration"]
    expect(cfg["Rule"]["DefaultRetention"] == {"Mode": "COMPLIANCE", "Days": 1}, f"refused rule changed the default: {cfg}")


@check("doctor probes are answered after authorisation, harmlessly (stock moto + patches)")
def doctor_probes(c: Ctx) -> None:
    # vault doctor reads any non-403 answer as "allowed": each of its probes must be
    # authorised first, then refused (or be a no-op) without changing the bucket.
    key = "doctor/.vault-doctor/canary"
    until = (now() + DAY).replace(microsecond=0)
    version = c.put(LOCK, key, ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    bogus = version[:-1] + ("0" if version[-1] != "0" else "1")
    nobody = c.user("doctor-nobody", [allow("s3:GetObject", "no-such-bucket")])
    probes = [  # (request, answer when allowed)
        (lambda s3: s3.delete_object(Bucket=LOCK, Key=key, VersionId=bogus), None),
        (lambda s3: s3.abort_multipart_upload(Bucket=LOCK, Key=key, UploadId="vault-doctor-no-such-upload"),
         ("NoSuchUpload", 404)),
        (lambda s3: s3.put_object(Bucket=LOCK, Key=key, Body=b"probe", IfNoneMatch="*"), ("PreconditionFailed", 412)),
        (lambda s3: s3.put_object_legal_hold(Bucket=LOCK, Key=key, VersionId=version, LegalHold={"Status": "OFF"}), None),
        (lambda s3: s3.put_bucket_versioning(Bucket=LOCK, VersioningConfiguration={"Status": "Suspended"}),
         ("InvalidBucketState", 409)),
        (lambda s3: s3.delete_bucket(Bucket=LOCK), ("BucketNotEmpty", 409)),
        (lambda s3: s3.put_bucket_policy(Bucket=LOCK, Policy="vault doctor: not a policy"), ("MalformedPolicy", 400)),
        (lambda s3: s3.put_bucket_lifecycle_configuration(Bucket=LOCK, LifecycleConfiguration={"Rules": [
            {"ID": "vault-doctor", "Status": "Enabled", "Filter": {"Prefix": "doctor/"}, "Expiration": {"Days": 0}}]}),
         ("InvalidArgument", 400)),
        (lambda s3: s3.put_object_lock_configuration(Bucket=LOCK, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE"}}}), ("MalformedXML", 400)),
    ]
    for i, (request, answer) in enumerate(probes):
        got = error_of(request, nobody)
        expect(got is not None and got[1] == 403, f"probe {i} not denied to a user without permission: {got or 'success'}")
        got = error_of(request, c.admin)
        expect(got == answer, f"probe {i} as admin: expected {answer or 'success'}, got {got or 'success'}")
    versions = c.admin.list_object_versions(Bucket=LOCK, Prefix=key)
    expect([v["VersionId"] for v in versions.get("Versions", [])] == [version] and not versions.get("DeleteMarkers"),
           f"the probes changed the canary's versions: {versions.get('Versions')}")
    expect_error("NoSuchBucketPolicy", 404, c.admin.get_bucket_policy, Bucket=LOCK)
    expect_error("NoSuchLifecycleConfiguration", 404, c.admin.get_bucket_lifecycle_configuration, Bucket=LOCK)
    expect(c.admin.get_bucket_versioning(Bucket=LOCK).get("Status") == "Enabled", "versioning changed")
    head = c.admin.head_object(Bucket=LOCK, Key=key, VersionId=version)
    expect(head.get("ObjectLockMode") == "COMPLIANCE" and utc(head["ObjectLockRetainUntilDate"]) == until,
           f"the canary's lock changed: {head.get('ObjectLockMode')} {head.get('ObjectLockRetainUntilDate')}")


@check("principals: STS and IAM (stock moto)")
def principals(c: Ctx) -> None:
    # AWS answers GetCallerIdentity to any valid credential, whatever its policies (an
    # explicit Deny included); vault doctor asks each identity who it is. IAM calls are
    # authorised like any other: vault doctor warns when the writer gets an answer.
    c.iam.create_user(UserName="who")
    c.iam.put_user_policy(UserName="who", PolicyName="p", PolicyDocument=json.dumps({"Version": "2012-10-17",
                          "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}))
    key = c.iam.create_access_key(UserName="who")["AccessKey"]
    keys = {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}
    me = c.client("sts", keys).get_caller_identity()
    expect(me["Arn"].endswith(":user/who"), f"GetCallerIdentity: {me}")
    expect_denied(c.client("iam", keys).get_account_summary)
    c.iam.put_user_policy(UserName="who", PolicyName="p", PolicyDocument=json.dumps({"Version": "2012-10-17",
                          "Statement": [{"Effect": "Allow", "Action": "iam:GetAccountSummary", "Resource": "*"}]}))
    expect("SummaryMap" in c.client("iam", keys).get_account_summary(), "GetAccountSummary allowed but not answered")


@check("admin.py --policy-json and create-access-key")
def admin_policy_json(c: Ctx) -> None:
    document = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::${VAULT_BUCKET}"}]})
    env = dict(os.environ, VAULT_MOTO_ENDPOINT=c.endpoint, VAULT_MOTO_ADMIN_KEY=c.admin_keys["access_key_id"],
               VAULT_MOTO_ADMIN_SECRET=c.admin_keys["secret_access_key"])
    done = subprocess.run([sys.executable, str(HERE / "admin.py"), "create-user", "lister", "--policy-json", "-",
                           "--var", f"VAULT_BUCKET={LOCK}"], input=document, env=env, capture_output=True, text=True,
                          timeout=30)
    expect(done.returncode == 0, f"create-user --policy-json -: {done.stderr.strip()}")
    first = json.loads(done.stdout)
    second = json.loads(c.admin_cli("create-access-key", "lister").stdout)
    expect(first["access_key_id"] != second["access_key_id"], "create-access-key returned the same key")
    for keys in (first, second):
        c.s3(keys).list_objects_v2(Bucket=LOCK)
        expect_denied(c.s3(keys).list_objects_v2, Bucket=DEFAULT)
    done = c.admin_cli("create-user", "no-policy", check=False)
    expect(done.returncode != 0 and "at least one" in done.stderr, f"create-user without a policy: {done}")


@check("test hook expire-lock")
def expire_lock(c: Ctx) -> None:
    until = now() + DAY
    version = c.put(LOCK, "hook/obj", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    expect_denied(c.admin.delete_object, Bucket=LOCK, Key="hook/obj", VersionId=version)

    def hook(query: str, method: str = "POST") -> int:
        request = urllib.request.Request(f"{c.endpoint}/_vault_test/expire-lock?{query}", data=b"", method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    expect(hook(f"bucket={LOCK}&key=hook/obj&versionId={version}") == 204, "expire-lock did not answer 204")
    head = c.admin.head_object(Bucket=LOCK, Key="hook/obj", VersionId=version)
    expect(head.get("ObjectLockMode") == "COMPLIANCE" and utc(head["ObjectLockRetainUntilDate"]) < now(),
           f"lock not expired: {head.get('ObjectLockMode')} {head.get('ObjectLockRetainUntilDate')}")
    c.admin.delete_object(Bucket=LOCK, Key="hook/obj", VersionId=version)
    expect(hook(f"bucket={LOCK}&key=hook/obj&versionId={version}") == 404, "expire-lock of a deleted version")
    expect(hook(f"bucket=no-such-bucket&key=k&versionId=v") == 404, "expire-lock in a missing bucket")
    expect(hook(f"bucket={LOCK}&key=hook/obj") == 400, "expire-lock without versionId")
    expect(hook(f"bucket={LOCK}&key=hook/obj&versionId={version}", "GET") == 405, "expire-lock by GET")


@check("test hook requests")
def request_counts(c: Ctx) -> None:
    def counts(query: str = "") -> dict:
        request = urllib.request.Request(f"{c.endpoint}/_vault_test/requests{query}", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as r:
            expect(r.status == 200, f"requests answered {r.status}")
            return json.loads(r.read())

    counts("?reset=1")
    me = c.admin_keys["access_key_id"]
    version = c.put(LOCK, "count/obj")
    c.admin.head_object(Bucket=LOCK, Key="count/obj", VersionId=version)
    c.admin.get_object(Bucket=LOCK, Key="count/obj")["Body"].read()
    c.admin.list_object_versions(Bucket=LOCK, Prefix="count/")
    c.admin.list_object_versions(Bucket=LOCK, Prefix="count/")
    expect_error("NoSuchKey", 404, c.admin.get_object, Bucket=LOCK, Key="count/missing")
    got = counts("?reset=1")
    expect(got == {me: {"PutObject": 1, "HeadObject": 1, "GetObject": 2, "ListObjectVersions": 2}},
           f"counts after put, head, two gets and two listings: {got}")
    expect(counts() == {}, "reset=1 did not start the counts again")


@check("unversioned bucket (stock moto, admin.py --no-object-lock)")
def unversioned(c: Ctx) -> None:
    # What vault relies on to refuse such a bucket, as AWS answers: no version id for a
    # new object (moto's CompleteMultipartUpload says "null", which vault reads alike),
    # lock headers refused, no lock configuration.
    b = "vault-unversioned"
    expect(json.loads(c.admin_cli("create-bucket", b, "--no-object-lock").stdout) == {"bucket": b}, "create-bucket")
    done = c.admin_cli("create-bucket", "vault-nonsense", "--no-object-lock", "--default-mode", "COMPLIANCE",
                       "--default-days", "1", check=False)
    expect(done.returncode != 0, "--no-object-lock with a default retention was accepted")
    expect(c.admin.get_bucket_versioning(Bucket=b).get("Status") is None, "the bucket is versioned")
    put = c.admin.put_object(Bucket=b, Key="k", Body=b"x", ChecksumAlgorithm="CRC32")
    expect(put.get("VersionId") is None, f"PutObject answered version {put.get('VersionId')}")
    completed = c.multipart(c.admin, b, "m")
    expect(completed.get("VersionId") in (None, "null"), f"CompleteMultipartUpload: {completed.get('VersionId')}")
    expect_error("InvalidRequest", 400, c.admin.put_object, Bucket=b, Key="l", Body=b"x", ChecksumAlgorithm="CRC32",
                 ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=now() + DAY)
    expect_error("ObjectLockConfigurationNotFoundError", 404, c.admin.get_object_lock_configuration, Bucket=b)


@check("--without PATCH")
def without(c: Ctx) -> None:
    done = subprocess.run([sys.executable, str(HERE / "server.py"), "--without", "no-such-patch"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    expect(done.returncode != 0 and "no-such-patch" in done.stderr and "retention-change-rules" in done.stderr,
           f"an unknown --without name was accepted: {done.returncode} {done.stderr.strip()[-300:]}")
    stock = Server("--without", "retention-change-rules")
    try:
        info = stock.info
        admin = boto3.client("s3", endpoint_url=info["endpoint"], region_name=REGION,
                             aws_access_key_id=info["admin"]["access_key_id"],
                             aws_secret_access_key=info["admin"]["secret_access_key"],
                             config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
        admin.create_bucket(Bucket=LOCK, ObjectLockEnabledForBucket=True)
        t = now().replace(microsecond=0)
        version = admin.put_object(Bucket=LOCK, Key="k", Body=b"x", ObjectLockMode="COMPLIANCE",
                                   ObjectLockRetainUntilDate=t + 2 * DAY)["VersionId"]
        admin.put_object_retention(Bucket=LOCK, Key="k", VersionId=version,
                                   Retention={"Mode": "COMPLIANCE", "RetainUntilDate": t + DAY})
        r = admin.get_object_retention(Bucket=LOCK, Key="k", VersionId=version)["Retention"]
        expect(utc(r["RetainUntilDate"]) == t + DAY, f"stock moto did not shorten COMPLIANCE retention: {r}")
        expect("'retention-change-rules' is off" in stock.errors(), "server.py did not say the patch is off")
    finally:
        code = stock.stop()
    expect(code == 0, f"server.py --without exited with {code}")


def unexpected(e: Exception) -> str:
    line = next((f.lineno for f in reversed(traceback.extract_tb(e.__traceback__)) if f.filename == __file__), "?")
    return f"unexpected {type(e).__name__} at selftest.py:{line}: {e}"


def main() -> int:
    started = time.monotonic()
    server = Server()
    failures = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ctx = Ctx(server, Path(tmp))
            for label, fn in CHECKS:
                try:
                    fn(ctx)
                except Exception as e:
                    detail = str(e) if isinstance(e, Fail) else unexpected(e)
                    failures.append(f"FAIL [{label}] {detail}")
                    if label.startswith("setup"):
                        break
    finally:
        code = server.stop()
    if code != 0:
        failures.append(f"FAIL [server shutdown] server.py exited with {code} after stdin EOF")
    rest = server.proc.stdout.read() if code is not None else b""
    if rest:
        failures.append(f"FAIL [server stdout] more than the one JSON line: {rest[:200]!r}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        err = server.errors()
        if err:
            print(f"--- server.py stderr ---\n{err[-4000:]}", file=sys.stderr)
        return 1
    print(f"ok: {len(CHECKS)} checks passed in {time.monotonic() - started:.1f}s "
          f"({', '.join(label for label, _ in CHECKS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
