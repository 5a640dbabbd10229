"""Conditional GET and HEAD: If-Match, If-None-Match, If-Modified-Since,
If-Unmodified-Since (AWS GetObject/HeadObject docs, RFC 7232)."""

import datetime

import pytest

from conftest import expect_error, http_status, quoted_md5

DATA = b"conditional body"
ETAG = quoted_md5(DATA)
OTHER_ETAG = '"00000000000000000000000000000000"'
PAST = datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)


def future():
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)


@pytest.fixture
def obj(s3, bucket):
    s3.put_object(Bucket=bucket, Key="cond", Body=DATA)
    last_modified = s3.head_object(Bucket=bucket, Key="cond")["LastModified"]
    return {"Bucket": bucket, "Key": "cond", "last_modified": last_modified}


def call(s3, method, obj, **conditions):
    params = {"Bucket": obj["Bucket"], "Key": obj["Key"], **conditions}
    return getattr(s3, f"{method}_object")(**params)


def expect_status(s3, method, obj, status, code=None, **conditions):
    """Success statuses are checked on the response; 304/412 surface as
    ClientError (a HEAD response has no body, so no error code)."""
    if status == 200:
        assert http_status(call(s3, method, obj, **conditions)) == 200
        return
    with expect_error(code if method == "get" else None, status):
        call(s3, method, obj, **conditions)


METHODS = pytest.mark.parametrize("method", ["get", "head"])


@METHODS
def test_if_match(s3, obj, method):
    """If-Match with the current ETag -> 200; with another ETag -> 412
    PreconditionFailed."""
    expect_status(s3, method, obj, 200, IfMatch=ETAG)
    expect_status(s3, method, obj, 412, "PreconditionFailed", IfMatch=OTHER_ETAG)


@METHODS
def test_if_none_match(s3, obj, method):
    """If-None-Match with the current ETag -> 304 Not Modified; with another
    ETag -> 200."""
    expect_status(s3, method, obj, 304, IfNoneMatch=ETAG)
    expect_status(s3, method, obj, 200, IfNoneMatch=OTHER_ETAG)


@METHODS
def test_if_modified_since(s3, obj, method):
    """If-Modified-Since: a date before Last-Modified -> 200; Last-Modified
    itself or a later (future) date -> 304 Not Modified."""
    expect_status(s3, method, obj, 200, IfModifiedSince=PAST)
    expect_status(s3, method, obj, 304, IfModifiedSince=obj["last_modified"])
    expect_status(s3, method, obj, 304, IfModifiedSince=future())


@METHODS
def test_if_unmodified_since(s3, obj, method):
    """If-Unmodified-Since: a date before Last-Modified -> 412
    PreconditionFailed; a future date -> 200."""
    expect_status(s3, method, obj, 412, "PreconditionFailed", IfUnmodifiedSince=PAST)
    expect_status(s3, method, obj, 200, IfUnmodifiedSince=future())


@METHODS
def test_if_match_wins_over_if_unmodified_since(s3, obj, method):
    """If-Match true and If-Unmodified-Since false -> 200 (documented AWS
    precedence)."""
    expect_status(s3, method, obj, 200, IfMatch=ETAG, IfUnmodifiedSince=PAST)


@METHODS
def test_if_none_match_wins_over_if_modified_since(s3, obj, method):
    """If-None-Match false and If-Modified-Since true -> 304 (documented AWS
    precedence)."""
    expect_status(s3, method, obj, 304, IfNoneMatch=ETAG, IfModifiedSince=PAST)
