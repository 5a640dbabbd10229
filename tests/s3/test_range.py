"""Range GETs (RFC 7233 as implemented by S3)."""

import pytest

from conftest import expect_error, http_status

DATA = bytes(range(256)) * 4  # 1024 bytes, every offset distinguishable
SIZE = len(DATA)

# Range header -> (first byte, last byte) that S3 serves.
SATISFIABLE = {
    "bytes=0-0": (0, 0),
    "bytes=10-19": (10, 19),
    "bytes=-5": (SIZE - 5, SIZE - 1),
    "bytes=5-": (5, SIZE - 1),
    f"bytes=1000-{SIZE * 2}": (1000, SIZE - 1),  # end past EOF is clamped
    f"bytes=0-{SIZE - 1}": (0, SIZE - 1),
}


@pytest.fixture
def ranged_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="ranged", Body=DATA)
    return bucket, "ranged"


@pytest.mark.parametrize("header", SATISFIABLE)
def test_satisfiable_range(s3, ranged_object, header):
    """206 Partial Content, exactly the requested bytes, Content-Length of the
    slice and Content-Range 'bytes first-last/size'."""
    bucket, key = ranged_object
    first, last = SATISFIABLE[header]
    response = s3.get_object(Bucket=bucket, Key=key, Range=header)
    assert http_status(response) == 206
    assert response["Body"].read() == DATA[first:last + 1]
    assert response["ContentLength"] == last - first + 1
    assert response["ContentRange"] == f"bytes {first}-{last}/{SIZE}"


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 100}-{SIZE + 200}"])
def test_unsatisfiable_range(s3, ranged_object, header):
    """A range starting at or beyond the end of the object -> 416
    InvalidRange."""
    bucket, key = ranged_object
    with expect_error("InvalidRange", 416):
        s3.get_object(Bucket=bucket, Key=key, Range=header)


def test_range_on_head(s3, ranged_object):
    """HeadObject honours a satisfiable Range: Content-Length is that of the
    slice (AWS answers 206 with Content-Range)."""
    bucket, key = ranged_object
    response = s3.head_object(Bucket=bucket, Key=key, Range="bytes=10-19")
    assert http_status(response) in (200, 206)
    assert response["ContentLength"] == 10
    if http_status(response) == 206:
        assert response["ContentRange"] == f"bytes 10-19/{SIZE}"


def test_no_range_advertises_accept_ranges(s3, ranged_object):
    """A plain GET is 200 with the whole body and Accept-Ranges: bytes."""
    bucket, key = ranged_object
    response = s3.get_object(Bucket=bucket, Key=key)
    assert http_status(response) == 200
    assert response["AcceptRanges"] == "bytes"
    assert response["Body"].read() == DATA
