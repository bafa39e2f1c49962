"""Files under a lake root, on a local folder or an S3-compatible store, for what is not Delta
(the landing zone). The same settings serve Spark's S3A, boto3 and delta-rs, so nothing is MinIO-only.

``S3Location`` is a Dagster ``Config``: it is the settings file's ``s3:`` block and the ``Lake``
resource's ``s3`` field alike, so the store's endpoint, region and addressing are declared once."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import dagster as dg
from pydantic import ConfigDict

S3_SCHEMES = ("s3a://", "s3://", "s3n://")


def is_s3(uri: str) -> bool:
    return uri.startswith(S3_SCHEMES)


def split_s3(uri: str) -> tuple[str, str]:
    """``s3a://bucket/some/key`` -> (``bucket``, ``some/key``)."""
    rest = uri.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    return bucket, key


class S3Location(dg.Config):
    """An S3-compatible object store for ``s3a://`` lake roots (AWS S3, MinIO, Ceph RGW, SeaweedFS, ...).

    Keys are never part of it: they come from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` in the
    environment when used (read by Spark's S3A, boto3 and delta-rs alike).

    Attributes:
        endpoint: S3-compatible endpoint (MinIO, Ceph, ...); None for AWS S3.
        region: region used for request signing.
        path_style: path-style addressing, needed by most S3-compatible servers.
    """

    model_config = ConfigDict(extra="forbid")

    endpoint: str | None = None
    region: str = "us-east-1"
    path_style: bool = True

    @property
    def endpoint_url(self) -> str:
        """The endpoint requests go to (AWS's regional one when none is set)."""
        return self.endpoint or f"https://s3.{self.region}.amazonaws.com"

    def boto3_client(
        self,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        attempts: int = 3,
        signed: bool = True,
        keys: tuple[str, str] | None = None,
    ):
        """An S3 client with bounded waits: an unreachable store fails in seconds, not minutes.

        Args:
            keys: (access key, secret key) to sign with; default: the environment's, as everywhere else.
        """
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        access_key, secret_key = keys or (None, None)
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(
                signature_version="s3v4" if signed else UNSIGNED,
                s3={"addressing_style": "path" if self.path_style else "auto"},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"total_max_attempts": attempts, "mode": "standard"},  # max_attempts counts retries
            ),
        )

    def probe(self, bucket: str, timeout: float = 5.0) -> str | None:
        """Why ``bucket`` cannot be used now (store unreachable, no such bucket, no or wrong keys), or None.

        One HEAD request, a short timeout, no retry: the pre-flight check of a run on an ``s3a://`` lake,
        so a wrong endpoint fails in seconds instead of after Spark's retries. Never names a key.
        """
        from botocore import exceptions as bex

        where = f"S3 endpoint {self.endpoint_url}"

        def head(signed: bool) -> None:
            client = self.boto3_client(connect_timeout=timeout, read_timeout=timeout, attempts=1, signed=signed)
            client.head_bucket(Bucket=bucket)

        try:
            try:
                head(signed=True)
            except bex.NoCredentialsError:
                # Without keys, an unsigned HEAD still tells an unreachable store from a missing key.
                with contextlib.suppress(bex.ClientError):
                    head(signed=False)
                return f"no credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        except (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ReadTimeoutError) as exc:
            detail = str(getattr(exc, "kwargs", {}).get("error", exc))
            if isinstance(exc, bex.ReadTimeoutError):
                detail = "no answer"
            reason = next(
                (
                    label
                    for needle, label in (
                        ("refused", "connection refused"),
                        ("no answer", f"no answer within {timeout:g} s"),
                        ("timed out", f"no connection within {timeout:g} s"),
                        ("timeout", f"no connection within {timeout:g} s"),
                        ("Name or service not known", "unknown host"),
                        ("nodename nor servname", "unknown host"),
                        ("Temporary failure in name resolution", "unknown host"),
                    )
                    if needle in detail
                ),
                detail.splitlines()[0][:200] if detail else type(exc).__name__,
            )
            return f"{where} unreachable ({reason}); check s3.endpoint / STOCK_LAKEHOUSE_S3_ENDPOINT"
        except bex.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "")) or "error"
            if code in ("404", "NoSuchBucket"):
                return f"bucket {bucket!r} does not exist at {where}: create it, or fix lake_root"
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return (
                    f"{where} refused access to bucket {bucket!r} (HTTP 403): check AWS_ACCESS_KEY_ID / "
                    "AWS_SECRET_ACCESS_KEY and the bucket's policy"
                )
            return f"{where} answered {code} to a HEAD of bucket {bucket!r}; check s3.endpoint and s3.region"
        except bex.BotoCoreError as exc:
            return f"{where} unusable ({type(exc).__name__}: {str(exc)[:200]}); check the s3 settings"
        return None

    def delta_rs_options(self) -> dict[str, str]:
        """``storage_options`` for delta-rs (object_store), keys from the environment."""
        opts = {
            "AWS_REGION": self.region,
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": str(not self.path_style).lower(),
            # bounded waits (object_store's defaults retry for up to 3 minutes)
            "connect_timeout": "5s",
            "timeout": "120s",
            "max_retries": "3",
            "retry_timeout": "60s",
        }
        if self.endpoint:
            opts["AWS_ENDPOINT_URL"] = self.endpoint
            opts["AWS_ALLOW_HTTP"] = str(self.endpoint.startswith("http://")).lower()
        return opts | s3_keys()


#: The S3 keys' environment variables (the standard AWS names): keys come from the environment only, never
#: from settings or resource config, which the UI shows.
S3_KEY_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def s3_keys() -> dict[str, str]:
    """The S3 keys set in the environment, by their variable's name."""
    return {name: os.environ[name] for name in S3_KEY_ENV if os.environ.get(name)}


class ObjectFiles:
    """put/get/list of whole files under a root URI (local path or ``s3a://bucket/prefix``)."""

    def __init__(self, root_uri: str, s3: S3Location | None = None) -> None:
        self.root_uri = root_uri.rstrip("/")
        self.s3 = s3 or S3Location()
        self._client = self.s3.boto3_client() if is_s3(root_uri) else None

    def uri(self, rel: str) -> str:
        return f"{self.root_uri}/{rel}"

    def put(self, rel: str, data: bytes) -> str:
        if self._client is None:
            path = Path(self.uri(rel))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            tmp.write_bytes(data)
            tmp.replace(path)  # atomic: a crash never leaves half a file under its final name
        else:
            bucket, key = split_s3(self.uri(rel))
            self._client.put_object(Bucket=bucket, Key=key, Body=data)  # S3 PUTs are atomic
        return self.uri(rel)

    def get(self, rel: str) -> bytes:
        if self._client is None:
            return Path(self.uri(rel)).read_bytes()
        bucket, key = split_s3(self.uri(rel))
        return self._client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def list(self, rel_dir: str) -> list[str]:
        """File names directly under ``rel_dir``, sorted."""
        if self._client is None:
            folder = Path(self.uri(rel_dir))
            return (
                sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.endswith(".part"))
                if folder.is_dir()
                else []
            )
        bucket, prefix = split_s3(self.uri(rel_dir) + "/")
        names = []
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            names += [obj["Key"][len(prefix) :] for obj in page.get("Contents", [])]
        return sorted(names)
