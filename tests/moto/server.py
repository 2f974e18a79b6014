#!/usr/bin/env python3
"""Local S3 server for vault's integration tests: moto 5.2.5, Object Lock, IAM enforced.

    python3 tests/moto/server.py [--port N] [--without PATCH ...]

Starts moto's server on 127.0.0.1 (a free port unless --port is given), creates an
admin user (Allow * on *) with the three requests moto lets through unauthenticated,
prints one JSON line on stdout and then runs until its standard input reaches EOF or
it gets SIGTERM/SIGINT:

    {"endpoint": "http://127.0.0.1:PORT", "region": "us-east-1",
     "admin": {"access_key_id": "...", "secret_access_key": "..."}}

From then on every request must be signed by a known key and is checked against the
caller's IAM policies. Request logs go to stderr when VAULT_MOTO_VERBOSE=1.

Stock moto differs from AWS in ways that matter for Object Lock; the patches below
correct those, each with the AWS behaviour it restores. If moto changes so that a
patch no longer fits, the server refuses to start and names the patch.
selftest.py proves each patch still works. `--without PATCH` leaves a patch off (stock
moto behaviour, e.g. a backend that lets COMPLIANCE retention be shortened); an
unknown name is an error.

Test hooks outside S3's API (unauthenticated, loopback only) are described in
TestHooks: POST /_vault_test/expire-lock ends one object version's lock, POST
/_vault_test/requests counts the requests each access key made, by operation.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import urllib.request

# moto reads this when it is imported: the first three requests are not
# authenticated (they create the admin), every later one is.
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"

import moto  # noqa: E402
import xmltodict  # noqa: E402
from moto import settings  # noqa: E402
from moto.core import errors as moto_errors  # noqa: E402
from moto.core import serialize as moto_serialize  # noqa: E402
from moto.core.authorization import ActionAuthenticatorMixin  # noqa: E402
from moto.core.exceptions import InvalidClientTokenIdError  # noqa: E402
from moto.core.responses import ActionResult  # noqa: E402
from moto.iam.access_control import IAMRequestBase, S3IAMRequest  # noqa: E402
from moto.s3 import exceptions as s3_exceptions  # noqa: E402
from moto.s3.models import FakeKey, S3Backend  # noqa: E402
from moto.s3.responses import S3Response  # noqa: E402
from moto.utilities.utils import get_partition  # noqa: E402
from werkzeug.datastructures import Headers  # noqa: E402

REGION = "us-east-1"
MOTO_VERSION = "5.2.5"
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
CHECKSUM_ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")


# --------------------------------------------------------------------------- helpers


class PatchError(Exception):
    pass


PATCHES: list = []


def patch(name: str):
    """Register a patch function under a name used in error messages."""

    def register(fn):
        PATCHES.append((name, fn))
        return fn

    return register


def original(owner, attr: str, params: tuple[str, ...] | None = None):
    """The attribute a patch replaces; PatchError if moto no longer has it as expected."""
    fn = owner.__dict__.get(attr)
    if fn is None:
        raise PatchError(f"moto has no {owner.__name__}.{attr}")
    if params is not None:
        found = tuple(inspect.signature(fn).parameters)
        if found[: len(params)] != params:
            raise PatchError(
                f"{owner.__name__}.{attr} takes {found}, the patch expects {params}"
            )
    return fn


def require_names(module, *names: str) -> None:
    for name in names:
        if not hasattr(module, name):
            raise PatchError(f"moto has no {module.__name__}.{name}")


def auth_active() -> bool:
    """Whether moto checks signatures and policies yet (after the admin bootstrap)."""
    return ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT


def require_permission(resp, action: str, bucket: str, key: str | None = None) -> None:
    """Raise AccessDenied unless the caller's policies allow s3:<action> on bucket[/key].

    Used after moto has verified the request's signature, so only the policies are
    evaluated here (the headers may have been adjusted since).
    """
    if not auth_active():
        return
    if "Authorization" not in resp.headers:
        raise s3_exceptions.S3AccessDeniedError()
    resource = f"arn:{get_partition(resp.region)}:s3:::{bucket}" + (f"/{key}" if key else "")
    S3IAMRequest(
        account_id=resp.current_account,
        method=resp.method,
        path=resp.raw_path,
        data=resp.data,
        body=resp.raw_body,
        headers=resp.headers,
        action=action,
    ).check_action_permitted(resource)


def has_permission(resp, action: str, bucket: str, key: str | None = None) -> bool:
    try:
        require_permission(resp, action, bucket, key)
        return True
    except s3_exceptions.S3AccessDeniedError:
        return False


def replace_headers(resp, set_: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> None:
    """Give this request a modified (mutable) copy of its headers."""
    headers = Headers(list(resp.headers.items()))
    for name in drop:
        headers.pop(name, None)
    for name, value in (set_ or {}).items():
        headers[name] = value
    resp.headers = headers


def parse_time(value: str) -> datetime.datetime:
    """An ISO 8601 timestamp as sent by SDKs; InvalidArgument if it is not one."""
    try:
        parsed = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise s3_exceptions.InvalidArgumentError(
            "The retain until date is not a valid date", "RetainUntilDate", value
        )
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def bypass_requested(resp) -> bool:
    return resp.headers.get("x-amz-bypass-governance-retention", "").strip().lower() == "true"


def validate_retention(mode: str | None, until: str | None, mode_name: str, until_name: str) -> None:
    """AWS: mode and date come together, the mode is known, the date is in the future."""
    if bool(mode) != bool(until):
        raise s3_exceptions.InvalidArgumentError(
            f"{until_name} and {mode_name} must both be supplied", mode_name, mode or ""
        )
    if mode and mode not in LOCK_MODES:
        raise s3_exceptions.InvalidArgumentError("Unknown wormMode directive.", mode_name, mode)
    if until and parse_time(until) <= now():
        raise s3_exceptions.InvalidArgumentError(
            "The retain until date must be in the future!", until_name, until
        )


def requested_lock(resp, bucket) -> tuple[str | None, str | None, str | None]:
    """The lock a PutObject/CopyObject/CreateMultipartUpload asks for in its headers."""
    mode = resp.headers.get("x-amz-object-lock-mode")
    until = resp.headers.get("x-amz-object-lock-retain-until-date")
    hold = resp.headers.get("x-amz-object-lock-legal-hold")
    if not (mode or until or hold):
        return None, None, None
    if not bucket.object_lock_enabled:
        raise s3_exceptions.LockNotEnabled()
    validate_retention(mode, until, "x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date")
    if hold and hold not in ("ON", "OFF"):
        raise s3_exceptions.InvalidArgumentError(
            "Legal Hold must be either of 'ON' or 'OFF'", "x-amz-object-lock-legal-hold", hold
        )
    return mode, until, hold


def lock_for_new_object(bucket, mode, until, hold) -> tuple[str | None, str | None, str | None]:
    """AWS: the bucket's default retention applies whenever no mode/date was given
    (a legal hold alone does not stop it)."""
    if not mode and bucket.object_lock_enabled and bucket.has_default_lock:
        mode, until = bucket.default_lock_mode, bucket.default_retention()
    return mode, until, hold


def retention_in_force(key) -> tuple[str | None, datetime.datetime | None]:
    if key.lock_mode in LOCK_MODES and key.lock_until:
        until = parse_time(key.lock_until)
        if until > now():
            return key.lock_mode, until
    return None, None


# --------------------------------------------------------------------------- patches


@patch("unsigned-requests-denied")
def _():
    # moto: once authentication is on, a request without an Authorization header
    # crashes inside moto (KeyError) and is answered 500.
    # AWS: an anonymous request is refused, 403 AccessDenied (IAM: 403 as well).
    # Presigned URLs (query-string auth) are not supported and are refused too.
    orig = original(
        ActionAuthenticatorMixin,
        "_authenticate_and_authorize_action",
        ("self", "iam_request_cls", "resource"),
    )

    def _authenticate_and_authorize_action(self, iam_request_cls, resource="*"):
        if auth_active() and "Authorization" not in self.headers:
            if issubclass(iam_request_cls, S3IAMRequest):
                raise s3_exceptions.S3AccessDeniedError()
            raise InvalidClientTokenIdError()
        return orig(self, iam_request_cls, resource)

    ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate_and_authorize_action


@patch("web-identity-is-unsigned")
def _():
    # moto demands a signature on every call once authentication is on, so
    # AssumeRoleWithWebIdentity (which a Kubernetes pod makes with nothing but its
    # service-account token) fails with InvalidClientTokenId.
    # AWS: AssumeRoleWithWebIdentity and AssumeRoleWithSAML are unsigned calls; the
    # token (or assertion) is the credential. moto does not check the token itself.
    orig = original(
        ActionAuthenticatorMixin,
        "_authenticate_and_authorize_action",
        ("self", "iam_request_cls", "resource"),
    )
    token_calls = {"AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"}

    def _authenticate_and_authorize_action(self, iam_request_cls, resource="*"):
        if getattr(self, "service_name", None) == "sts" and self._get_action() in token_calls:
            return None
        return orig(self, iam_request_cls, resource)

    ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate_and_authorize_action


@patch("error-status-codes")
def _():
    # moto answers S3 error codes its service model lacks with HTTP 400.
    # AWS: InvalidBucketState is 409 Conflict, NoSuchObjectLockConfiguration is 404.
    status = {"InvalidBucketState": 409, "NoSuchObjectLockConfiguration": 404}
    require_names(moto_serialize, "get_error_model")
    require_names(moto_errors, "ErrorShape")
    orig = moto_serialize.get_error_model

    def get_error_model(exception, default_service_model):
        shape = orig(exception, default_service_model)
        code = getattr(exception, "code", None)
        if code in status and "httpStatusCode" not in shape.metadata.get("error", {}):
            shape = moto_errors.ErrorShape(
                shape_name=code,
                shape_model={
                    "exception": True,
                    "type": "structure",
                    "members": {},
                    "error": {"code": code, "httpStatusCode": status[code]},
                },
            )
        return shape

    moto_serialize.get_error_model = get_error_model


@patch("iam-action-names")
def _():
    # moto authorises these requests as the wrong IAM action: ?retention and
    # ?legal-hold as s3:GetObject/s3:PutObject (or s3:GetObjectVersion), bucket
    # ?object-lock as s3:ListBucket/s3:CreateBucket, HEAD with versionId as
    # s3:GetObject and HEAD bucket as the non-existent s3:HeadBucket.
    # AWS: each has its own action, as listed here. (?versioning, ?lifecycle,
    # ?policy, ?versions, versionId GET/DELETE and DELETE ?uploadId are already right.)
    real_actions = [  # (resource type, method, query parameter or None, IAM action)
        ("KEY", "GET", "retention", "GetObjectRetention"),
        ("KEY", "PUT", "retention", "PutObjectRetention"),
        ("KEY", "GET", "legal-hold", "GetObjectLegalHold"),
        ("KEY", "PUT", "legal-hold", "PutObjectLegalHold"),
        ("KEY", "HEAD", "versionId", "GetObjectVersion"),
        ("BUCKET", "GET", "object-lock", "GetBucketObjectLockConfiguration"),
        ("BUCKET", "PUT", "object-lock", "PutBucketObjectLockConfiguration"),
        ("BUCKET", "HEAD", None, "ListBucket"),
    ]
    orig = original(S3Response, "_set_action", ("self", "action_resource_type", "method", "querystring"))

    def _set_action(self, action_resource_type, method, querystring):
        orig(self, action_resource_type, method, querystring)
        for rtype, meth, param, action in real_actions:
            if (rtype, meth) == (action_resource_type, method) and (param is None or param in querystring):
                self.data["Action"] = action
                return

    S3Response._set_action = _set_action


@patch("lock-headers-need-permission")
def _():
    # moto: PutObject/CopyObject/CreateMultipartUpload with Object Lock headers need
    # only s3:PutObject.
    # AWS (and MinIO): x-amz-object-lock-mode / -retain-until-date also need
    # s3:PutObjectRetention, x-amz-object-lock-legal-hold needs s3:PutObjectLegalHold.
    orig = original(
        ActionAuthenticatorMixin,
        "_authenticate_and_authorize_s3_action",
        ("self", "bucket_name", "key_name"),
    )

    def _authenticate_and_authorize_s3_action(self, bucket_name=None, key_name=None):
        orig(self, bucket_name=bucket_name, key_name=key_name)
        if self.data.get("Action") == "PutObject" and self.method in ("PUT", "POST"):
            if self.headers.get("x-amz-object-lock-mode") or self.headers.get(
                "x-amz-object-lock-retain-until-date"
            ):
                require_permission(self, "PutObjectRetention", bucket_name, key_name)
            if self.headers.get("x-amz-object-lock-legal-hold"):
                require_permission(self, "PutObjectLegalHold", bucket_name, key_name)

    S3Response._authenticate_and_authorize_s3_action = _authenticate_and_authorize_s3_action


@patch("checksum-header-names-algorithm")
def _():
    # moto learns the checksum algorithm only from x-amz-sdk-checksum-algorithm, so
    # with just x-amz-checksum-crc32 (what aws-sdk-rust sends, or x-amz-trailer:
    # x-amz-checksum-crc32 for streamed bodies) it refuses Object Lock uploads
    # ("Content-MD5 or x-amz-sdk-checksum-algorithm required"), stores no checksum
    # and returns no ChecksumCRC32 from UploadPart.
    # AWS: the x-amz-checksum-<algorithm> header (or trailer) names the algorithm and
    # satisfies the integrity requirement of Object Lock uploads.
    orig = original(S3Response, "setup_class", ("self", "request", "full_url", "headers"))
    original(S3Response, "_get_checksum")  # the consumer of the header we add

    def setup_class(self, request, full_url=None, headers=None):
        orig(self, request, full_url, headers)
        if self.headers.get("x-amz-sdk-checksum-algorithm"):
            return
        trailer = self.headers.get("x-amz-trailer", "").strip().lower()
        for algorithm in CHECKSUM_ALGORITHMS:
            name = f"x-amz-checksum-{algorithm.lower()}"
            if self.headers.get(name) or trailer == name:
                replace_headers(self, set_={"x-amz-sdk-checksum-algorithm": algorithm})
                return

    S3Response.setup_class = setup_class


@patch("lock-header-validation")
def _():
    # moto stores whatever lock headers PutObject/CopyObject carry (a date in the
    # past, a mode without a date) and skips the bucket default retention when only
    # a legal hold is given.
    # AWS: 400 InvalidArgument unless mode and date come together, the mode is
    # GOVERNANCE or COMPLIANCE and the date is in the future; the default retention
    # applies whenever no mode/date is given.
    original(S3Response, "_get_lock_details", ("self", "bucket", "lock_enabled"))

    def _get_lock_details(self, bucket, lock_enabled):
        mode, until, hold = lock_for_new_object(bucket, *requested_lock(self, bucket))
        return hold, mode, until

    S3Response._get_lock_details = _get_lock_details


@patch("multipart-object-lock")
def _():
    # moto: CreateMultipartUpload ignores the x-amz-object-lock-* headers and the
    # completed object gets neither them nor the bucket's default retention.
    # AWS: the completed object carries the lock asked for in CreateMultipartUpload,
    # else the bucket default retention (mode, now + days/years), as PutObject does.
    orig_post = original(
        S3Response, "_key_response_post", ("self", "request", "body", "bucket_name", "query", "key_name")
    )
    orig_complete = original(S3Backend, "complete_multipart_upload", ("self", "bucket_name", "multipart_id", "body"))

    def _key_response_post(self, request, body, bucket_name, query, key_name):
        if not (body == b"" and "uploads" in query):
            return orig_post(self, request, body, bucket_name, query, key_name)
        # CreateMultipartUpload: authorise first (as moto does, and will again), then validate.
        self._set_action("KEY", "POST", query)
        self._authenticate_and_authorize_s3_action(bucket_name=bucket_name, key_name=key_name)
        bucket = self.backend.get_bucket(bucket_name)
        lock = requested_lock(self, bucket)
        status, headers, resp_body = orig_post(self, request, body, bucket_name, query, key_name)
        text = resp_body.decode() if isinstance(resp_body, bytes) else str(resp_body)
        found = re.search(r"<UploadId>([^<]+)</UploadId>", text)
        if status != 200 or not found:
            raise RuntimeError("patch multipart-object-lock: no UploadId in moto's CreateMultipartUpload answer")
        bucket.multiparts[found.group(1)].vault_lock = lock
        return status, headers, resp_body

    def complete_multipart_upload(self, bucket_name, multipart_id, body):
        bucket = self.get_bucket(bucket_name)
        multipart = bucket.multiparts.get(multipart_id)
        if multipart is None:  # see unknown-upload-id
            raise s3_exceptions.NoSuchUpload(upload_id=multipart_id)
        requested = getattr(multipart, "vault_lock", (None, None, None))
        key = orig_complete(self, bucket_name, multipart_id, body)
        if key is not None and bucket.object_lock_enabled:
            key.lock_mode, key.lock_until, key.lock_legal_status = lock_for_new_object(bucket, *requested)
        return key

    S3Response._key_response_post = _key_response_post
    S3Backend.complete_multipart_upload = complete_multipart_upload


@patch("unknown-upload-id")
def _():
    # moto: UploadPart / CompleteMultipartUpload with an unknown (aborted or
    # completed) upload id crash with KeyError, answered 500.
    # AWS: 404 NoSuchUpload. (CompleteMultipartUpload is handled in multipart-object-lock.)
    orig = original(S3Backend, "upload_part", ("self", "bucket_name", "multipart_id", "part_id", "value"))

    def upload_part(self, bucket_name, multipart_id, part_id, value):
        if multipart_id not in self.get_bucket(bucket_name).multiparts:
            raise s3_exceptions.NoSuchUpload(upload_id=multipart_id)
        return orig(self, bucket_name, multipart_id, part_id, value)

    S3Backend.upload_part = upload_part


@patch("get-object-retention")
def _():
    # moto serves GET /bucket/key?retention as GetObject (the object's bytes, status 500).
    # AWS: the Retention document (Mode, RetainUntilDate) of the version, 404
    # NoSuchObjectLockConfiguration when it has none.
    orig = original(S3Response, "_key_response_get", ("self", "query", "key_name"))
    original(S3Response, "_get_key")
    require_names(s3_exceptions, "S3ClientError", "LockNotEnabled")

    def _key_response_get(self, query, key_name):
        if "retention" not in query:
            return orig(self, query, key_name)
        self._set_action("KEY", "GET", query)
        self._authenticate_and_authorize_s3_action(bucket_name=self.bucket_name, key_name=key_name)
        if not self.backend.get_bucket(self.bucket_name).object_lock_enabled:
            raise s3_exceptions.LockNotEnabled()
        key, _ = self._get_key()
        if not (key.lock_mode and key.lock_until):
            raise s3_exceptions.S3ClientError(
                "NoSuchObjectLockConfiguration",
                "The specified object does not have a ObjectLock configuration",
            )
        self.data["Action"] = "GetObjectRetention"
        result = {"Retention": {"Mode": key.lock_mode, "RetainUntilDate": parse_time(key.lock_until)}}
        return self.serialized(ActionResult(result))

    S3Response._key_response_get = _key_response_get


@patch("retention-change-rules")
def _():
    # moto's PutObjectRetention overwrites any retention: COMPLIANCE can be shortened,
    # switched to GOVERNANCE or removed; GOVERNANCE can be shortened without bypass.
    # AWS: while a COMPLIANCE retention is in force it can only be extended (same
    # mode); a GOVERNANCE one can be extended in GOVERNANCE mode, anything else
    # (shorten, remove, switch to COMPLIANCE) needs x-amz-bypass-governance-retention:
    # true and s3:BypassGovernanceRetention. Otherwise 403 AccessDenied.
    # The new date must be in the future (400 InvalidArgument).
    original(S3Response, "put_object_retention", ("self",))
    require_names(s3_exceptions, "AccessDeniedByLock", "MissingKey", "MissingVersion", "MalformedXML")

    def put_object_retention(self):
        key_name = self.parse_key_name()
        version_id = self._get_param("versionId")
        if not self.backend.get_bucket(self.bucket_name).object_lock_enabled:
            raise s3_exceptions.LockNotEnabled()
        key = self.backend.get_object(self.bucket_name, key_name, version_id=version_id)
        if key is None:
            raise s3_exceptions.MissingVersion() if version_id else s3_exceptions.MissingKey(key=key_name)
        try:
            retention = xmltodict.parse(self.body).get("Retention") or {}
        except Exception:
            raise s3_exceptions.MalformedXML()
        mode, until = retention.get("Mode"), retention.get("RetainUntilDate")
        validate_retention(mode, until, "Mode", "RetainUntilDate")

        old_mode, old_until = retention_in_force(key)
        keeps_or_extends = bool(until) and old_until is not None and parse_time(until) >= old_until
        if old_mode == "COMPLIANCE" and not (mode == "COMPLIANCE" and keeps_or_extends):
            raise s3_exceptions.AccessDeniedByLock()
        if old_mode == "GOVERNANCE" and not (mode == "GOVERNANCE" and keeps_or_extends):
            if not bypass_requested(self):
                raise s3_exceptions.AccessDeniedByLock()
            require_permission(self, "BypassGovernanceRetention", self.bucket_name, key_name)

        key.lock_mode, key.lock_until = mode, until
        response_headers = self._get_cors_headers_other()
        self._get_checksum(response_headers)
        return 200, response_headers, ""

    S3Response.put_object_retention = put_object_retention


@patch("governance-bypass-needs-permission")
def _():
    # moto honours x-amz-bypass-governance-retention on DeleteObject whatever its
    # value ("false" too) and without checking any permission.
    # AWS: only "true" bypasses GOVERNANCE retention, and only for callers allowed
    # s3:BypassGovernanceRetention; otherwise the locked version stays (403).
    orig_delete = original(S3Response, "delete_object", ("self",))
    orig_delete_keys = original(S3Response, "_bucket_response_delete_keys", ("self", "bucket_name", "authenticated"))
    header = "x-amz-bypass-governance-retention"

    def delete_object(self):
        if header in self.headers and not (
            bypass_requested(self)
            and has_permission(self, "BypassGovernanceRetention", self.bucket_name, self.parse_key_name())
        ):
            replace_headers(self, drop=(header,))
        return orig_delete(self)

    def _bucket_response_delete_keys(self, bucket_name, authenticated=True):
        if header in self.headers and not (
            bypass_requested(self) and has_permission(self, "BypassGovernanceRetention", bucket_name, "*")
        ):
            replace_headers(self, drop=(header,))
        return orig_delete_keys(self, bucket_name, authenticated)

    S3Response.delete_object = delete_object
    S3Response._bucket_response_delete_keys = _bucket_response_delete_keys


_delete_objects_request = threading.local()  # the DeleteObjects request being served by this thread


@patch("delete-objects-per-key-permissions")
def _():
    # moto authorises DeleteObjects (POST /bucket?delete) once, as s3:DeleteObject on
    # the bucket ARN: a user allowed s3:DeleteObject on bucket/* is refused every key,
    # and one allowed s3:DeleteObject on the bucket ARN also deletes versions without
    # s3:DeleteObjectVersion.
    # AWS: each key is authorised on its own, as s3:DeleteObject (no VersionId) or
    # s3:DeleteObjectVersion (with VersionId) on arn:aws:s3:::bucket/key; refused keys
    # come back as AccessDenied entries in the 200 answer.
    original(S3Response, "is_delete_keys", ("self",))
    orig_keys = original(S3Response, "_bucket_response_delete_keys", ("self", "bucket_name", "authenticated"))
    orig_delete = original(S3Backend, "delete_objects", ("self", "bucket_name", "objects", "bypass_retention"))
    orig_auth = S3Response._authenticate_and_authorize_s3_action  # possibly already patched

    def _authenticate_and_authorize_s3_action(self, bucket_name=None, key_name=None):
        if self.method == "POST" and key_name is None and self.data.get("Action") == "DeleteObject" and self.is_delete_keys():
            try:
                orig_auth(self, bucket_name=bucket_name, key_name=key_name)
            except s3_exceptions.S3AccessDeniedError:
                pass  # the signature is valid (checked first); each key is authorised below
            return
        orig_auth(self, bucket_name=bucket_name, key_name=key_name)

    def _bucket_response_delete_keys(self, bucket_name, authenticated=True):
        _delete_objects_request.resp = self
        try:
            return orig_keys(self, bucket_name, authenticated)
        finally:
            _delete_objects_request.resp = None

    def delete_objects(self, bucket_name, objects, bypass_retention=False):
        resp = getattr(_delete_objects_request, "resp", None)
        if resp is None:
            return orig_delete(self, bucket_name, objects, bypass_retention)
        allowed, refused = [], []
        for obj in objects:
            action = "DeleteObjectVersion" if obj.get("VersionId") else "DeleteObject"
            (allowed if has_permission(resp, action, bucket_name, obj["Key"]) else refused).append(obj)
        deleted, errors = orig_delete(self, bucket_name, allowed, bypass_retention)
        return deleted, errors + [obj["Key"] for obj in refused]

    S3Response._authenticate_and_authorize_s3_action = _authenticate_and_authorize_s3_action
    S3Response._bucket_response_delete_keys = _bucket_response_delete_keys
    S3Backend.delete_objects = delete_objects


@patch("versioning-locked")
def _():
    # moto lets PutBucketVersioning suspend versioning on an Object Lock bucket.
    # AWS: 409 InvalidBucketState; versioning stays Enabled.
    orig = original(S3Backend, "put_bucket_versioning", ("self", "bucket_name", "status"))
    require_names(s3_exceptions, "InvalidBucketState")

    def put_bucket_versioning(self, bucket_name, status):
        if self.get_bucket(bucket_name).object_lock_enabled and status != "Enabled":
            raise s3_exceptions.InvalidBucketState(
                "An Object Lock configuration is present on this bucket, "
                "so the versioning state cannot be changed."
            )
        return orig(self, bucket_name, status)

    S3Backend.put_bucket_versioning = put_bucket_versioning


@patch("lock-config-on-nonempty-bucket")
def _():
    # moto refuses PutObjectLockConfiguration once the bucket holds any object
    # ("Bucket needs to be empty"), so the default retention cannot be changed.
    # AWS: the default retention of a versioned/lock bucket can be set or changed at
    # any time; it applies to objects written afterwards.
    orig = original(
        S3Backend,
        "put_object_lock_configuration",
        ("self", "bucket_name", "lock_enabled", "mode", "days", "years"),
    )

    def put_object_lock_configuration(self, bucket_name, lock_enabled, mode=None, days=None, years=None):
        bucket = self.get_bucket(bucket_name)
        if not (lock_enabled and bucket.is_versioned):
            return orig(self, bucket_name, lock_enabled, mode, days, years)
        bucket.object_lock_enabled = True
        bucket.default_lock_mode = mode
        bucket.default_lock_days = days
        bucket.default_lock_years = years

    S3Backend.put_object_lock_configuration = put_object_lock_configuration


@patch("lock-config-days-or-years")
def _():
    # moto's GetObjectLockConfiguration reports both <Days> and <Years>, the unused
    # one as 0 (e.g. Days=1, Years=0).
    # AWS: the DefaultRetention holds exactly one of Days and Years.
    orig = original(S3Backend, "get_object_lock_configuration", ("self", "bucket_name"))

    def get_object_lock_configuration(self, bucket_name):
        enabled, mode, days, years = orig(self, bucket_name)
        return enabled, mode, days or None, years or None

    S3Backend.get_object_lock_configuration = get_object_lock_configuration


@patch("bucket-policy-validation")
def _():
    # moto stores any PutBucketPolicy body, even one that is not JSON; every later
    # request on the bucket then fails with 500 while moto parses it.
    # AWS: 400 MalformedPolicy unless the body is a JSON policy document (an object
    # whose Statement is a statement or a list of them, each with Effect Allow or
    # Deny); the stored policy is unchanged. (Checked after authorisation.)
    orig = original(S3Backend, "put_bucket_policy", ("self", "bucket_name", "policy"))
    require_names(s3_exceptions, "S3ClientError")

    def malformed(why: str):
        return s3_exceptions.S3ClientError("MalformedPolicy", f"Policies must be valid JSON: {why}")

    def put_bucket_policy(self, bucket_name, policy):
        try:
            document = json.loads(policy)
        except (ValueError, UnicodeDecodeError):
            raise malformed("the body is not JSON")
        statements = document.get("Statement") if isinstance(document, dict) else None
        if isinstance(statements, dict):
            statements = [statements]
        if not statements or not isinstance(statements, list):
            raise malformed("Missing required field Statement")
        for statement in statements:
            if not isinstance(statement, dict) or statement.get("Effect") not in ("Allow", "Deny"):
                raise malformed("each statement needs Effect Allow or Deny")
        return orig(self, bucket_name, policy)

    S3Backend.put_bucket_policy = put_bucket_policy


@patch("lifecycle-validation")
def _():
    # moto stores lifecycle rules with a zero or negative number of days (e.g.
    # Expiration Days=0), and clears the old rules before it finds a malformed one.
    # AWS: 400 InvalidArgument ("'Days' for Expiration action must be a positive
    # integer"; likewise NoncurrentDays and DaysAfterInitiation); the stored
    # configuration is unchanged.
    orig = original(S3Backend, "put_bucket_lifecycle_configuration", ("self", "bucket_name", "rules"))
    periods = (  # (rule element, field, AWS's name for the action)
        ("Expiration", "Days", "Expiration"),
        ("NoncurrentVersionExpiration", "NoncurrentDays", "NoncurrentVersionExpiration"),
        ("AbortIncompleteMultipartUpload", "DaysAfterInitiation", "AbortIncompleteMultipartUpload"),
    )

    def put_bucket_lifecycle_configuration(self, bucket_name, rules):
        for rule in rules or []:
            for element, field, action in periods:
                value = (rule.get(element) or {}).get(field) if isinstance(rule, dict) else None
                if value is None:
                    continue
                try:
                    positive = int(value) > 0
                except (TypeError, ValueError):
                    positive = False
                if not positive:
                    raise s3_exceptions.InvalidArgumentError(
                        f"'{field}' for {action} action must be a positive integer", field, str(value)
                    )
        return orig(self, bucket_name, rules)

    S3Backend.put_bucket_lifecycle_configuration = put_bucket_lifecycle_configuration


@patch("lock-config-validation")
def _():
    # moto accepts a PutObjectLockConfiguration rule whose DefaultRetention has a mode
    # but neither Days nor Years, and stores it: the bucket loses its default period.
    # AWS: 400 MalformedXML (exactly one of Days and Years); a zero or negative period
    # is 400 InvalidArgument. The stored configuration is unchanged.
    orig = original(
        S3Backend,
        "put_object_lock_configuration",
        ("self", "bucket_name", "lock_enabled", "mode", "days", "years"),
    )
    require_names(s3_exceptions, "MalformedXML", "InvalidArgumentError")

    def put_object_lock_configuration(self, bucket_name, lock_enabled, mode=None, days=None, years=None):
        if mode is not None:
            if not days and not years:
                raise s3_exceptions.MalformedXML()
            for name, value in (("Days", days), ("Years", years)):
                if value is not None and value < 0:
                    raise s3_exceptions.InvalidArgumentError(
                        "Default retention period must be a positive integer value", name, str(value)
                    )
        return orig(self, bucket_name, lock_enabled, mode, days, years)

    S3Backend.put_object_lock_configuration = put_object_lock_configuration


@patch("list-parts-root-element")
def _():
    # moto serialises ListParts with the root element <ListPartsResponse>, which
    # strict clients (aws-sdk-rust) reject; boto3 does not look at the root.
    # AWS: the root element is <ListPartsResult>.
    orig = original(S3Response, "list_parts", ("self",))

    def list_parts(self):
        status, headers, body = orig(self)
        if isinstance(body, str):
            body = body.replace("<ListPartsResponse", "<ListPartsResult", 1)
            body = body.replace("</ListPartsResponse>", "</ListPartsResult>", 1)
        elif isinstance(body, bytes):
            body = body.replace(b"<ListPartsResponse", b"<ListPartsResult", 1)
            body = body.replace(b"</ListPartsResponse>", b"</ListPartsResult>", 1)
        return status, headers, body

    S3Response.list_parts = list_parts


@patch("versioning-root-element")
def _():
    # moto serialises GetBucketVersioning with the root element
    # <GetBucketVersioningResponse>, which strict clients (aws-sdk-rust) reject.
    # AWS: the root element is <VersioningConfiguration>.
    orig = original(S3Response, "get_bucket_versioning", ("self",))

    def get_bucket_versioning(self):
        status, headers, body = orig(self)
        for old, new in (
            ("<GetBucketVersioningResponse", "<VersioningConfiguration"),
            ("</GetBucketVersioningResponse>", "</VersioningConfiguration>"),
        ):
            body = body.replace(old.encode(), new.encode(), 1) if isinstance(body, bytes) else body.replace(old, new, 1)
        return status, headers, body

    S3Response.get_bucket_versioning = get_bucket_versioning


def apply_patches(without: frozenset[str] = frozenset()) -> None:
    """Applies every patch except those named in `without` (all names must exist)."""
    known = [name for name, _ in PATCHES]
    unknown = sorted(without - set(known))
    if unknown:
        sys.exit(f"vault-moto: --without {', '.join(unknown)}: no such patch (patches: {', '.join(known)})")
    if moto.__version__ != MOTO_VERSION:
        print(
            f"vault-moto: warning: written for moto {MOTO_VERSION}, found {moto.__version__}; "
            "run tests/moto/selftest.py",
            file=sys.stderr,
        )
    for attr in ("lock_mode", "lock_until", "lock_legal_status"):
        if attr not in inspect.signature(FakeKey.__init__).parameters:
            sys.exit(f"vault-moto: FakeKey has no {attr}; the Object Lock patches cannot work")
    try:  # what require_permission() relies on
        original(IAMRequestBase, "__init__", ("self", "account_id", "method", "path", "data", "body", "headers", "action"))
        original(IAMRequestBase, "check_action_permitted", ("self", "resource"))
    except PatchError as e:
        sys.exit(f"vault-moto: cannot check extra permissions (needed by several patches): {e}")
    for name, fn in PATCHES:
        if name in without:
            print(f"vault-moto: patch '{name}' is off: stock moto behaviour", file=sys.stderr)
            continue
        try:
            fn()
        except PatchError as e:
            sys.exit(f"vault-moto: cannot apply patch '{name}': {e} (moto changed?)")


# --------------------------------------------------------------------------- test hooks


# S3 operations by method, whether the path names a key, and a query parameter that
# tells them apart (checked in this order); anything else is named by its method, path
# kind and query parameter names.
OPERATIONS = [
    ("HEAD", True, None, "HeadObject"),
    ("HEAD", False, None, "HeadBucket"),
    ("GET", False, "versions", "ListObjectVersions"),
    ("GET", False, "list-type", "ListObjectsV2"),
    ("GET", False, "versioning", "GetBucketVersioning"),
    ("GET", False, "object-lock", "GetObjectLockConfiguration"),
    ("GET", False, "lifecycle", "GetBucketLifecycleConfiguration"),
    ("GET", False, "policy", "GetBucketPolicy"),
    ("GET", False, "uploads", "ListMultipartUploads"),
    ("GET", True, "retention", "GetObjectRetention"),
    ("GET", True, "uploadId", "ListParts"),
    ("GET", True, None, "GetObject"),
    ("PUT", True, "partNumber", "UploadPart"),
    ("PUT", True, "retention", "PutObjectRetention"),
    ("PUT", True, None, "PutObject"),
    ("POST", True, "uploads", "CreateMultipartUpload"),
    ("POST", True, "uploadId", "CompleteMultipartUpload"),
    ("POST", False, "delete", "DeleteObjects"),
    ("DELETE", True, "uploadId", "AbortMultipartUpload"),
    ("DELETE", True, None, "DeleteObject"),
]


def operation(method: str, path: str, query: str) -> str:
    """The S3 operation of a path-style request, as the counts name it."""
    from urllib.parse import parse_qs

    names = set(parse_qs(query, keep_blank_values=True))
    on_key = len([part for part in path.split("/") if part]) > 1
    for m, key, param, name in OPERATIONS:
        if m == method and key == on_key and (param is None or param in names):
            return name
    kind = "object" if on_key else ("bucket" if path.strip("/") else "service")
    return f"{method} {kind}" + (f"?{','.join(sorted(names))}" if names else "")


class TestHooks:
    """A WSGI wrapper around moto's app for what tests need beyond S3's API.

    Requests under /_vault_test/ are answered here and never reach moto (so no S3
    request path changes and moto's request counting is untouched); every other request
    goes to moto unchanged. The hooks are unauthenticated: test-only, and the server
    listens on 127.0.0.1 alone.

    POST /_vault_test/expire-lock?bucket=B&key=K&versionId=V
        Sets that object version's retain-until date to one second in the past (mode
        and legal hold unchanged), as if its lock had run out, so that an admin can
        then delete the version. 204; 404 when the bucket, key or version does not
        exist; 400 without all three parameters; 405 for another method.

    POST /_vault_test/requests[?reset=1]
        The requests counted so far, by the access key that signed them and operation:
        200 with {"AKID": {"HeadObject": 2000, ...}, ...} (unsigned requests under
        "-"). With reset=1 the counts start again from zero after this answer. Every
        request that is not a test hook is counted once as it arrives, whatever moto
        answers, so a test can count what one vault command asked for.
    """

    PREFIX = "/_vault_test/"

    def __init__(self, app) -> None:
        self.app = app
        self.routes = {"expire-lock": self.expire_lock, "requests": self.requests}
        self.counts: dict[str, dict[str, int]] = {}
        self.counts_lock = threading.Lock()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith(self.PREFIX):
            self.count(environ)
            return self.app(environ, start_response)
        route = self.routes.get(path[len(self.PREFIX):])
        if route is None:
            return self.answer(start_response, 404, f"no test hook {path}")
        if environ.get("REQUEST_METHOD") != "POST":
            return self.answer(start_response, 405, "test hooks take POST")
        from urllib.parse import parse_qs

        params = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        status, message = route(params)
        return self.answer(start_response, status, message)

    @staticmethod
    def answer(start_response, status: int, message: str):
        reasons = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
        body = b"" if status == 204 else (message + "\n").encode()
        start_response(f"{status} {reasons.get(status, '')}", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    def count(self, environ) -> None:
        """Counts one request under its signer's access key and its operation."""
        found = re.search(r"Credential=([^/,\s]+)/", environ.get("HTTP_AUTHORIZATION", ""))
        signer = found.group(1) if found else "-"
        op = operation(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""))
        with self.counts_lock:
            per_op = self.counts.setdefault(signer, {})
            per_op[op] = per_op.get(op, 0) + 1

    def requests(self, params: dict[str, str]) -> tuple[int, str]:
        with self.counts_lock:
            answer = json.dumps(self.counts, sort_keys=True)
            if params.get("reset") == "1":
                self.counts = {}
        return 200, answer

    @staticmethod
    def expire_lock(params: dict[str, str]) -> tuple[int, str]:
        from moto.s3.models import s3_backends

        bucket, key, version = params.get("bucket"), params.get("key"), params.get("versionId")
        if not (bucket and key and version):
            return 400, "expire-lock needs bucket, key and versionId"
        found = s3_backends.bucket_accounts.get(bucket)
        if found is None:
            return 404, f"no bucket {bucket}"
        partition, account = found
        obj = s3_backends[account][partition].get_object(bucket, key, version_id=version)
        if obj is None:
            return 404, f"no version {version} of {key} in {bucket}"
        obj.lock_until = (now() - datetime.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return 204, ""


# --------------------------------------------------------------------------- server


def wait_ready(endpoint: str, timeout: float = 15.0) -> None:
    # Not GET /: that is ListBuckets and would use up one of the unauthenticated requests.
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"vault-moto: server at {endpoint} did not become ready")
        time.sleep(0.05)


def bootstrap_admin(endpoint: str) -> dict[str, str]:
    """The three requests moto lets through without checking (INITIAL_NO_AUTH_ACTION_COUNT=3).

    They are signed with a throwaway key only so that moto routes them to IAM; moto
    does not verify them. Afterwards every request is verified.
    """
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
    )
    iam.create_user(UserName="admin")
    iam.put_user_policy(
        UserName="admin",
        PolicyName="admin",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName="admin")["AccessKey"]
    if not auth_active():
        sys.exit("vault-moto: IAM enforcement did not switch on after the admin bootstrap")
    return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="PATCH",
        help="leave this patch off: stock moto behaviour (repeatable; e.g. retention-change-rules)",
    )
    args = parser.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    # Only the JSON line goes to stdout; anything moto prints goes to stderr.
    stdout = sys.stdout
    sys.stdout = sys.stderr
    verbose = os.environ.get("VAULT_MOTO_VERBOSE") == "1"
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.INFO if verbose else logging.ERROR)

    apply_patches(frozenset(args.without))

    # What moto.server / ThreadedMotoServer run, but bound here so that a busy port
    # is an error rather than a hang.
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    try:
        server = make_server(
            "127.0.0.1",
            args.port,
            TestHooks(DomainDispatcherApplication(create_backend_app)),
            threaded=True,
            request_handler=MotoRequestHandler,
        )
    except OSError as e:
        sys.exit(f"vault-moto: cannot listen on 127.0.0.1:{args.port}: {e}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    wait_ready(endpoint)
    admin = bootstrap_admin(endpoint)

    def watch_stdin() -> None:
        try:
            while sys.stdin.buffer.read1(65536):
                pass
        except Exception:  # stdin closed or missing: same as EOF
            pass
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()

    stdout.write(json.dumps({"endpoint": endpoint, "region": REGION, "admin": admin}) + "\n")
    stdout.flush()

    while not stop.wait(0.5):
        pass
    server.shutdown()
    sys.stderr.flush()
    # Not sys.exit(): the stdin watcher may still be blocked in read(), and interpreter
    # shutdown would then abort while trying to take the stdin lock.
    os._exit(0)


if __name__ == "__main__":
    main()
