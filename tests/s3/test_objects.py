"""Single objects: PutObject, GetObject, HeadObject, DeleteObject."""

import email.utils
import os

import pytest

from conftest import expect_error, http_status, list_all_keys, quoted_md5

SPECIAL_KEYS = {
    "unicode": "unicodé/日本語/ключ-🚀.txt",
    "spaces": "with some spaces.txt",
    "plus": "a+b+c",
    "percent": "100%/per%25cent%",
    "nested": "a/b/c/d/e/f.txt",
    "punctuation": "q?x=1&y=2#frag;semi,comma:colon@at=eq'quote!",
    "1024-bytes": "k/" + "x" * 1022,
}


def assert_last_modified(headers: dict):
    """Last-Modified is present and is a valid HTTP date."""
    value = headers.get("last-modified")
    assert value, "Last-Modified header missing"
    assert email.utils.parsedate_to_datetime(value) is not None


def test_put_get_head_delete_roundtrip(s3, bucket):
    """PutObject returns the quoted MD5 ETag; GetObject returns the bytes with
    Content-Length, ETag and Last-Modified; HeadObject returns the same
    headers without a body; DeleteObject -> 204 and the key is gone."""
    data = os.urandom(4096)
    put = s3.put_object(Bucket=bucket, Key="obj", Body=data)
    assert http_status(put) == 200
    assert put["ETag"] == quoted_md5(data)

    got = s3.get_object(Bucket=bucket, Key="obj")
    headers = got["ResponseMetadata"]["HTTPHeaders"]
    assert got["Body"].read() == data
    assert int(headers["content-length"]) == len(data)
    assert headers["etag"] == quoted_md5(data)
    assert_last_modified(headers)

    head = s3.head_object(Bucket=bucket, Key="obj")
    head_headers = head["ResponseMetadata"]["HTTPHeaders"]
    assert int(head_headers["content-length"]) == len(data)
    assert head_headers["etag"] == quoted_md5(data)
    assert head_headers["last-modified"] == headers["last-modified"]

    assert http_status(s3.delete_object(Bucket=bucket, Key="obj")) == 204
    with expect_error("NoSuchKey", 404):
        s3.get_object(Bucket=bucket, Key="obj")


def test_get_missing_key(s3, bucket):
    """GetObject of a key that doesn't exist -> 404 NoSuchKey."""
    with expect_error("NoSuchKey", 404):
        s3.get_object(Bucket=bucket, Key="does/not/exist")


def test_head_missing_key(s3, bucket):
    """HeadObject of a key that doesn't exist -> 404 (HEAD has no body)."""
    with expect_error(None, 404):
        s3.head_object(Bucket=bucket, Key="does/not/exist")


def test_delete_missing_key_is_204(s3, bucket):
    """DeleteObject of a key that doesn't exist still succeeds with 204."""
    assert http_status(s3.delete_object(Bucket=bucket, Key="never-written")) == 204


def test_content_type_and_user_metadata_roundtrip(s3, bucket):
    """Content-Type and x-amz-meta-* headers given on PUT come back on GET and
    HEAD (metadata names lower-cased)."""
    metadata = {"color": "blue", "owner-name": "alice", "with-space": "a b c"}
    s3.put_object(Bucket=bucket, Key="meta", Body=b"{}", ContentType="application/json", Metadata=metadata)
    for response in (s3.get_object(Bucket=bucket, Key="meta"), s3.head_object(Bucket=bucket, Key="meta")):
        assert response["ContentType"] == "application/json"
        assert response["Metadata"] == metadata


def test_default_content_type(s3, bucket):
    """An object stored without Content-Type is served with some Content-Type
    (AWS defaults to binary/octet-stream)."""
    s3.put_object(Bucket=bucket, Key="plain", Body=b"abc")
    assert s3.head_object(Bucket=bucket, Key="plain")["ContentType"]


def test_zero_byte_object(s3, bucket):
    """An empty object: Content-Length 0, ETag = MD5 of the empty string,
    empty body."""
    put = s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert put["ETag"] == quoted_md5(b"")
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["ContentLength"] == 0
    assert got["ETag"] == quoted_md5(b"")
    assert got["Body"].read() == b""
    assert s3.head_object(Bucket=bucket, Key="empty")["ContentLength"] == 0


@pytest.mark.parametrize("key", SPECIAL_KEYS.values(), ids=SPECIAL_KEYS.keys())
def test_special_keys(s3, bucket, key):
    """Keys are arbitrary UTF-8 up to 1024 bytes: unicode, spaces, '+', '%',
    URL punctuation and '/' nesting round-trip exactly through PUT, GET, HEAD,
    ListObjectsV2 and DELETE."""
    assert len(key.encode("utf-8")) <= 1024
    data = key.encode("utf-8")
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(data)
    assert list_all_keys(s3, bucket) == [key]
    s3.delete_object(Bucket=bucket, Key=key)
    assert list_all_keys(s3, bucket) == []


def test_plus_is_not_space(s3, bucket):
    """'a+b' and 'a b' are different keys."""
    s3.put_object(Bucket=bucket, Key="a+b", Body=b"plus")
    s3.put_object(Bucket=bucket, Key="a b", Body=b"space")
    assert s3.get_object(Bucket=bucket, Key="a+b")["Body"].read() == b"plus"
    assert s3.get_object(Bucket=bucket, Key="a b")["Body"].read() == b"space"
    assert list_all_keys(s3, bucket) == ["a b", "a+b"]


def test_key_longer_than_1024_bytes_rejected(s3, bucket):
    """A key longer than 1024 bytes of UTF-8 -> 400 KeyTooLongError."""
    with expect_error("KeyTooLongError", 400):
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")


def test_overwrite_replaces_content(s3, bucket):
    """A second PUT to the same key replaces data, ETag and metadata."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"first version", Metadata={"v": "1"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"second", ContentType="text/plain")
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"second"
    assert got["ETag"] == quoted_md5(b"second")
    assert got["ContentLength"] == len(b"second")
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {}
    assert list_all_keys(s3, bucket) == ["k"]


def test_get_missing_key_error_document(raw, bucket):
    """The 404 NoSuchKey response carries an XML <Error> document with Code
    and Message."""
    response = raw.request("GET", bucket, "missing-key")
    assert response.status == 404
    assert response.error()["Code"] == "NoSuchKey"
    assert "xml" in response.headers.get("Content-Type", "")
