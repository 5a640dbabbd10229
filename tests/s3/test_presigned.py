"""Presigned URLs (query-string SigV4) fetched with curl."""

import subprocess
import time

import pytest

from conftest import parse_error_xml


def curl(url, out_path, *extra):
    """Run curl; returns (HTTP status, response body)."""
    result = subprocess.run(
        ["curl", "-sS", "-o", str(out_path), "-w", "%{http_code}", *extra, url],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"curl failed: {result.stderr}"
    return int(result.stdout), out_path.read_bytes()


def presign(s3, method, bucket, key, expires=300):
    return s3.generate_presigned_url(f"{method}_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires)


def tamper_signature(url):
    """Change the first hex digit of X-Amz-Signature."""
    head, signature = url.rsplit("X-Amz-Signature=", 1)
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    return f"{head}X-Amz-Signature={flipped}"


@pytest.fixture(autouse=True)
def need_curl():
    try:
        subprocess.run(["curl", "--version"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.fail("curl is required for the presigned URL tests")


def test_presigned_get(s3, bucket, tmp_path):
    """A presigned GET URL fetched without any credentials returns 200 and the
    object's bytes (key with a space and unicode to exercise encoding)."""
    data = b"presigned content \x00\xff" * 100
    key = "pre signed/ünï.bin"
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    status, body = curl(presign(s3, "get", bucket, key), tmp_path / "out")
    assert status == 200
    assert body == data


def test_presigned_put(s3, bucket, tmp_path):
    """A presigned PUT URL accepts an upload with curl -T; the object then
    reads back identical."""
    data = bytes(range(256)) * 64
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    status, _ = curl(presign(s3, "put", bucket, "uploaded.bin"), tmp_path / "out", "-T", str(source))
    assert status == 200
    assert s3.get_object(Bucket=bucket, Key="uploaded.bin")["Body"].read() == data


def test_presigned_url_expired(s3, bucket, tmp_path):
    """A presigned URL used after X-Amz-Expires has passed -> 403 with
    AccessDenied in the XML error body."""
    s3.put_object(Bucket=bucket, Key="soon-gone", Body=b"x")
    url = presign(s3, "get", bucket, "soon-gone", expires=1)
    time.sleep(2.5)
    status, body = curl(url, tmp_path / "out")
    assert status == 403
    assert parse_error_xml(body)["Code"] == "AccessDenied"


def test_presigned_url_tampered_signature(s3, bucket, tmp_path):
    """A presigned URL whose signature was altered -> 403
    SignatureDoesNotMatch."""
    s3.put_object(Bucket=bucket, Key="guarded", Body=b"secret")
    status, body = curl(tamper_signature(presign(s3, "get", bucket, "guarded")), tmp_path / "out")
    assert status == 403
    assert parse_error_xml(body)["Code"] == "SignatureDoesNotMatch"


def test_presigned_url_for_other_key_rejected(s3, bucket, tmp_path):
    """A presigned URL is only valid for the key it was signed for: editing the
    path -> 403 SignatureDoesNotMatch."""
    s3.put_object(Bucket=bucket, Key="allowed", Body=b"ok")
    s3.put_object(Bucket=bucket, Key="forbidden", Body=b"no")
    url = presign(s3, "get", bucket, "allowed").replace("/allowed?", "/forbidden?")
    status, body = curl(url, tmp_path / "out")
    assert status == 403
    assert parse_error_xml(body)["Code"] == "SignatureDoesNotMatch"
