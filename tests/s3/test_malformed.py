"""Malformed request bodies and over-sized uploads, sent as raw signed
requests."""

import base64
import hashlib
import os

import pytest

from conftest import MIB, expect_error

MALFORMED_BODIES = {
    "truncated": b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>",
    "not-xml": b"this is not xml at all",
}


def content_md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
def test_complete_multipart_malformed_xml(raw, s3, bucket, body):
    """CompleteMultipartUpload whose body isn't well-formed XML -> 400
    MalformedXML; the upload stays open."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"part")
    response = raw.request("POST", bucket, "mp", query=[("uploadId", upload_id)], body=body)
    assert response.status == 400
    assert response.error_code == "MalformedXML"
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id)["Parts"]] == [1]


@pytest.mark.parametrize(
    "body",
    [b"<Delete><Object><Key>a</Key></Object>", b"not xml", b"<Delete><Object><Key>a</Key></Obj></Delete>"],
    ids=["truncated", "not-xml", "mismatched-tag"],
)
def test_delete_objects_malformed_xml(raw, s3, bucket, body):
    """DeleteObjects (with the required Content-MD5) whose body isn't
    well-formed XML -> 400 MalformedXML; nothing is deleted."""
    s3.put_object(Bucket=bucket, Key="a", Body=b"still here")
    response = raw.request("POST", bucket, query=[("delete", None)], body=body,
                           headers={"Content-MD5": content_md5(body)})
    assert response.status == 400
    assert response.error_code == "MalformedXML"
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"still here"


def test_complete_multipart_without_parts(raw, s3, bucket):
    """A well-formed CompleteMultipartUpload that lists no part -> 400
    MalformedXML (AWS requires at least one Part)."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    body = b'<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></CompleteMultipartUpload>'
    response = raw.request("POST", bucket, "mp", query=[("uploadId", upload_id)], body=body)
    assert response.status == 400
    assert response.error_code == "MalformedXML"


def test_put_larger_than_server_limit(raw, s3, settings, bucket):
    """A single PUT declaring (and streaming) slightly more than the server's
    maximum body size (COOP_S3_MAX_BODY_MIB) -> 400 EntityTooLarge, or a 4xx
    and the connection closed before the body was fully read.  Nothing is
    stored."""
    if settings.max_body_mib is None:
        pytest.skip("COOP_S3_MAX_BODY_MIB not set")
    size = settings.max_body_mib * MIB + MIB
    response, send_error = raw.put_generated(bucket, "too-big", size, os.urandom(MIB))
    assert response is not None, f"connection closed without an HTTP response ({send_error!r})"
    assert 400 <= response.status < 500, f"got HTTP {response.status}"
    if response.body or send_error is None:
        assert response.status == 400
        assert response.error_code == "EntityTooLarge"
    with expect_error(None, 404):
        s3.head_object(Bucket=bucket, Key="too-big")
