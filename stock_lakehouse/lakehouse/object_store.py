"""Files under a lake root, on a local folder or an S3-compatible store, for what is not Delta
(the landing zone). The same settings serve Spark's S3A, boto3 and delta-rs, so nothing is MinIO-only."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

S3_SCHEMES = ("s3a://", "s3://", "s3n://")


def is_s3(uri: str) -> bool:
    return uri.startswith(S3_SCHEMES)


def split_s3(uri: str) -> tuple[str, str]:
    """``s3a://bucket/some/key`` -> (``bucket``, ``some/key``)."""
    rest = uri.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    return bucket, key


@dataclass(frozen=True)
class S3Location:
    """Where and how to reach the store (no keys: they are read from the environment when used)."""

    endpoint: str | None = None
    region: str = "us-east-1"
    path_style: bool = True

    def boto3_client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path" if self.path_style else "auto"}),
        )

    def delta_rs_options(self) -> dict[str, str]:
        """``storage_options`` for delta-rs (object_store), keys from the environment."""
        opts = {"AWS_REGION": self.region, "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": str(not self.path_style).lower()}
        if self.endpoint:
            opts["AWS_ENDPOINT_URL"] = self.endpoint
            opts["AWS_ALLOW_HTTP"] = str(self.endpoint.startswith("http://")).lower()
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            if os.environ.get(name):
                opts[name] = os.environ[name]
        return opts


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
