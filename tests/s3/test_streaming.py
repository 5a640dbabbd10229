"""Uploads signed with STREAMING-AWS4-HMAC-SHA256-PAYLOAD (aws-chunked
encoding, per-chunk signatures chained from the seed signature), as the AWS
SDKs for Java/Go/JS send them.  The encoder lives in conftest.RawS3."""

import os

import pytest

from conftest import encode_aws_chunked, expect_error, quoted_md5, sigv4_signing_key

CHUNK = 64 * 1024


@pytest.mark.parametrize("size", [0, 1, 3 * CHUNK, 200_000], ids=["empty", "one-byte", "exact-chunks", "partial-last"])
def test_chunked_upload_roundtrip(raw, s3, bucket, size):
    """The object stores the decoded payload: same bytes, Content-Length =
    x-amz-decoded-content-length, ETag = MD5 of the decoded data, and the
    aws-chunked content coding is not kept on the object."""
    data = os.urandom(size)
    response = raw.put_chunked(bucket, "chunked.bin", data, chunk_size=CHUNK, content_type="application/x-chunked")
    assert response.status == 200, response.body[:500]
    assert response.headers.get("ETag") == quoted_md5(data)

    got = s3.get_object(Bucket=bucket, Key="chunked.bin")
    assert got["Body"].read() == data
    assert got["ContentLength"] == size
    assert got["ETag"] == quoted_md5(data)
    assert got["ContentType"] == "application/x-chunked"
    assert "aws-chunked" not in got.get("ContentEncoding", "")


def test_chunked_upload_with_bad_chunk_signature(raw, s3, bucket):
    """Altering a chunk's data after signing breaks its chunk signature ->
    403 SignatureDoesNotMatch, and no object is stored."""
    response = raw.put_chunked(bucket, "tampered.bin", os.urandom(3 * CHUNK), chunk_size=CHUNK, tamper_chunk=1)
    assert response.status == 403
    assert response.error_code == "SignatureDoesNotMatch"
    with expect_error(None, 404):
        s3.head_object(Bucket=bucket, Key="tampered.bin")


def test_chunk_encoder_matches_aws_example():
    """Self-check of the suite's aws-chunked encoder (no server involved):
    AWS's documented example (65 KiB of 'a' in 64 KiB chunks, seed signature
    4f232c43...) must give AWS's chunk signatures and Content-Length."""
    key = sigv4_signing_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1")
    body = encode_aws_chunked(
        b"a" * (65 * 1024), 64 * 1024, key, "20130524T000000Z", "20130524/us-east-1/s3/aws4_request",
        "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
    )
    assert len(body) == 66824
    signatures = [line.split(b"chunk-signature=")[1] for line in body.split(b"\r\n") if b"chunk-signature=" in line]
    assert signatures == [
        b"ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        b"0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        b"b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ]
