"""Request authentication failures and the XML error document."""

import pytest

from conftest import RawS3, expect_error, make_client


@pytest.fixture
def stored_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="private.txt", Body=b"private")
    return bucket, "private.txt"


def client_with(settings, access_key, secret_key):
    return make_client(settings, settings.endpoint, access_key, secret_key)


def test_wrong_secret_key(settings, stored_object):
    """A valid access key signed with the wrong secret -> 403
    SignatureDoesNotMatch, for object and bucket operations."""
    bucket, key = stored_object
    client = client_with(settings, settings.access_key, settings.secret_key + "x")
    with expect_error("SignatureDoesNotMatch", 403):
        client.get_object(Bucket=bucket, Key=key)
    with expect_error("SignatureDoesNotMatch", 403):
        client.list_objects_v2(Bucket=bucket)
    with expect_error("SignatureDoesNotMatch", 403):
        client.put_object(Bucket=bucket, Key="intruder", Body=b"x")


def test_unknown_access_key(settings, stored_object):
    """An access key the server doesn't know -> 403 InvalidAccessKeyId."""
    bucket, key = stored_object
    client = client_with(settings, "AKIDNOSUCHKEY0000000", "whatever-secret")
    with expect_error("InvalidAccessKeyId", 403):
        client.get_object(Bucket=bucket, Key=key)
    with expect_error("InvalidAccessKeyId", 403):
        client.list_buckets()


def test_anonymous_get_denied(raw, stored_object):
    """An unsigned GET of a private object -> 403 with an XML <Error> whose
    Code is AccessDenied."""
    bucket, key = stored_object
    response = raw.anonymous("GET", bucket, key)
    assert response.status == 403
    assert response.error()["Code"] == "AccessDenied"
    assert b"private" not in response.body.replace(b"private.txt", b"")


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_anonymous_write_denied(raw, s3, stored_object, method):
    """Unsigned PUT/DELETE of an object -> 403 AccessDenied and nothing
    changes."""
    bucket, key = stored_object
    response = raw.anonymous(method, bucket, key)
    assert response.status == 403
    assert response.error()["Code"] == "AccessDenied"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"private"


def test_anonymous_list_denied(raw, stored_object):
    """Unsigned ListObjects and ListBuckets -> 403 AccessDenied."""
    bucket, _ = stored_object
    for response in (raw.anonymous("GET", bucket), raw.anonymous("GET")):
        assert response.status == 403
        assert response.error()["Code"] == "AccessDenied"


def test_signature_error_document(settings, stored_object):
    """The 403 for a bad signature is an XML <Error> document with Code
    SignatureDoesNotMatch and a Message."""
    bucket, key = stored_object
    bad = RawS3(settings, settings.endpoint, settings.access_key, "not-the-secret")
    response = bad.request("GET", bucket, key)
    assert response.status == 403
    error = response.error()
    assert error["Code"] == "SignatureDoesNotMatch"
    assert error["Message"]


def test_tampered_payload_rejected(raw, settings, s3, bucket):
    """A body that doesn't match the signed x-amz-content-sha256 is rejected
    (AWS: 400 XAmzContentSHA256Mismatch) and nothing is stored."""
    url = raw.url(bucket, "tampered")
    signed = raw.sign("PUT", url, b"signed body")
    response = raw.send("PUT", url, dict(signed.headers.items()), b"other body!")
    assert response.status == 400
    assert response.error()["Code"] == "XAmzContentSHA256Mismatch"
    with expect_error(None, 404):
        s3.head_object(Bucket=bucket, Key="tampered")
