"""The built zipapp reads an s3:// source with its host's instance role: `dfly get`
wires the credentials itself (environment in, keys from the metadata service out),
against moto (signatures and session tokens checked) and a loopback IMDSv2."""
import os
import subprocess
import sys

import pytest
from helpers import content
from metadataserver import MetadataServer
from s3server import S3Origin

AWS_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
             "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_REGION", "AWS_DEFAULT_REGION",
             "AWS_EC2_METADATA_DISABLED")


@pytest.fixture(scope="module")
def s3():
    server = S3Origin()
    yield server
    server.stop()


@pytest.mark.time_limit(90)
def test_get_reads_s3_with_the_instance_role_from_imdsv2(pyz, s3, tmp_path):
    data = content(300_000, seed=59)
    s3.put("e2e/role.bin", data)
    metadata = MetadataServer(s3.temporary_credentials)
    try:
        env = {k: v for k, v in os.environ.items() if k not in AWS_NAMES}
        env.update(HOME=str(tmp_path), AWS_EC2_METADATA_SERVICE_ENDPOINT=metadata.url)
        out = tmp_path / "role.bin"
        proc = subprocess.run([sys.executable, pyz, "get", "s3://dfly-bucket/e2e/role.bin",
                               "-o", str(out), "--no-daemon", "--quiet", "--s3-endpoint", s3.endpoint,
                               "--data-dir", str(tmp_path / "data")],
                              env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes() == data
        assert metadata.requests[0] == "PUT /latest/api/token" and len(metadata.issued) == 1
    finally:
        metadata.stop()
