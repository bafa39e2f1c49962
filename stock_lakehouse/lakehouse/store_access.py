"""The application's own S3 user on MinIO, allowed the lake's bucket and nothing else.

Why: the processes that run pipelines (code server, daemon, webserver) hold S3 keys in their environment.
With the store's root login there, any of them could read or delete every bucket and create users. So
the deployment's one-shot set-up step (``stock-lakehouse provision-store``, run with the root login) creates
the lake's bucket, a policy naming that bucket only, and a user with the application's keys bound to it;
the long-running services get the application's keys and never the root login.

The admin side uses MinIO's admin API (``minio.MinioAdmin``); the bucket and the keys come from the
same settings the application reads (``Lake`` and ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``),
so the provisioned user is the one the pipeline uses. Every step is idempotent: re-running rotates the
user's secret to the configured one and rewrites the policy. Keys are never printed or raised.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from stock_lakehouse.lakehouse.object_store import S3Location

#: S3 bucket naming rules (lower-case letters, digits, dots, hyphens; 3-63 characters). Anything else,
#: a ``*`` above all, would widen the policy's resource to other buckets.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
#: MinIO's limits for a (non-root) user's keys.
_ACCESS_KEY = re.compile(r"[A-Za-z0-9._@+=,-]{3,128}")
_SECRET_LENGTH = (8, 40)

#: What S3A, delta-rs and boto3 need for Delta tables and the landing zone: objects, listings, multipart
#: uploads. No bucket administration (policy, versioning, deletion) and no other bucket.
BUCKET_ACTIONS = ("s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads")
OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)


class StoreAccessError(ValueError):
    """A bucket name or key that cannot be provisioned (names the field, never a key's value)."""


def check_bucket(bucket: str) -> str:
    """``bucket`` if it is a valid S3 bucket name, else ``StoreAccessError`` naming it."""
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise StoreAccessError(
            f"bucket {bucket!r} is not a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-'); check lake_root"
        )
    return bucket


def bucket_policy(bucket: str) -> dict[str, object]:
    """An IAM policy allowing the application's object work in ``bucket`` only."""
    check_bucket(bucket)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": list(BUCKET_ACTIONS), "Resource": [f"arn:aws:s3:::{bucket}"]},
            {"Effect": "Allow", "Action": list(OBJECT_ACTIONS), "Resource": [f"arn:aws:s3:::{bucket}/*"]},
        ],
    }


def policy_name(bucket: str) -> str:
    return f"stock-lakehouse-{check_bucket(bucket)}"


@dataclass(frozen=True)
class Keys:
    """An S3 key pair. ``repr`` shows neither part."""

    access_key: str
    secret_key: str

    def __repr__(self) -> str:
        return "Keys(<hidden>)"

    def check(self, role: str) -> Keys:
        """Self, or ``StoreAccessError`` naming ``role`` and the rule broken (not the value)."""
        if not _ACCESS_KEY.fullmatch(self.access_key or ""):
            raise StoreAccessError(f"{role} access key: 3-128 characters of A-Z a-z 0-9 . _ @ + = , - expected")
        low, high = _SECRET_LENGTH
        if not low <= len(self.secret_key or "") <= high:
            raise StoreAccessError(f"{role} secret key: {low}-{high} characters expected")
        return self


@dataclass(frozen=True)
class Provisioned:
    bucket: str
    bucket_created: bool
    policy: str


def _admin_api(s3: S3Location, admin: Keys):
    from minio import MinioAdmin
    from minio.credentials import StaticProvider

    url = urlsplit(s3.endpoint or "")
    return MinioAdmin(
        endpoint=url.netloc,
        credentials=StaticProvider(admin.access_key, admin.secret_key),
        region=s3.region,
        secure=url.scheme == "https",
    )


def provision_bucket_user(s3: S3Location, bucket: str, admin: Keys, app: Keys) -> Provisioned:
    """Create ``bucket`` (if missing), its policy and the application's user bound to it; idempotent.

    Args:
        s3: the store (its endpoint must be a MinIO server: the admin API is MinIO's).
        bucket: the lake's bucket.
        admin: a login allowed to administer users (MinIO's root login).
        app: the keys the application will use; must differ from ``admin``.

    Raises:
        StoreAccessError: invalid bucket name or keys, or ``app`` is the admin login.
        minio.error.MinioAdminException / botocore errors: the store refused a step (keys never included).
    """
    from minio.error import MinioAdminException

    check_bucket(bucket)
    if not (admin.access_key and admin.secret_key):
        raise StoreAccessError("admin login: set MINIO_ROOT_USER and MINIO_ROOT_PASSWORD")
    app.check("application")
    if app.access_key == admin.access_key:
        raise StoreAccessError("application access key is the admin login's: give the application its own keys")
    if not s3.endpoint:
        raise StoreAccessError("s3 endpoint: a MinIO endpoint is needed to create users (AWS: use IAM instead)")
    client = s3.boto3_client(keys=(admin.access_key, admin.secret_key))
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    created = bucket not in existing
    if created:
        client.create_bucket(Bucket=bucket)

    admin_api = _admin_api(s3, admin)
    name = policy_name(bucket)
    admin_api.policy_add(name, policy=bucket_policy(bucket))
    admin_api.user_add(app.access_key, app.secret_key)
    try:
        admin_api.attach_policy([name], user=app.access_key)
    except MinioAdminException as exc:
        # Attaching a policy the user already has is refused; that is the state we want.
        if "already" not in str(exc).lower():
            raise
    return Provisioned(bucket, created, name)


def user_policies(s3: S3Location, admin: Keys, access_key: str) -> list[str]:
    """The policies attached to a user (what a test or an operator checks after provisioning)."""
    info = json.loads(_admin_api(s3, admin).user_info(access_key))
    return [p for p in (info.get("policyName") or "").split(",") if p]
