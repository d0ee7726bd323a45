"""A real MinIO server on loopback with a temp data dir, for everything that talks S3."""

from __future__ import annotations

import contextlib
import secrets
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.process import ManagedProcess, free_port, tool


@dataclass(frozen=True)
class MinioServer:
    endpoint: str
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        """The environment a Job or predictor pod receives from the storage Secret."""
        return {
            "S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )

    def create_bucket(self, prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        return name


@contextlib.contextmanager
def minio_server(workdir: Path) -> Iterator[MinioServer]:
    binary = tool("minio")
    port, console = free_port(), free_port()
    access_key, secret_key = "creditmodel", secrets.token_hex(16)
    workdir.mkdir(parents=True, exist_ok=True)
    process = ManagedProcess(
        "minio",
        [
            binary,
            "server",
            workdir / "data",
            "--address",
            f"127.0.0.1:{port}",
            "--console-address",
            f"127.0.0.1:{console}",
            "--quiet",
        ],
        workdir,
        env={
            "MINIO_ROOT_USER": access_key,
            "MINIO_ROOT_PASSWORD": secret_key,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
        },
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        process.wait_ready(
            lambda: urllib.request.urlopen(f"{endpoint}/minio/health/ready", timeout=2).status
            == 200,
            timeout=60,
            what="ready (/minio/health/ready)",
        )
        yield MinioServer(endpoint=endpoint, access_key=access_key, secret_key=secret_key)
    finally:
        process.stop()


@dataclass(frozen=True)
class S3Bucket:
    server: MinioServer
    bucket: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}"

    def env(self) -> dict[str, str]:
        return self.server.env()
