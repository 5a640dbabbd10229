"""Access control between keys: a second valid key with no grants on the
main key's buckets (COOP_S3_OTHER_ACCESS_KEY / COOP_S3_OTHER_SECRET_KEY)."""

import pytest

from conftest import expect_error

OPERATIONS = {
    "get_object": lambda c, b: c.get_object(Bucket=b, Key="owned.txt"),
    "put_object": lambda c, b: c.put_object(Bucket=b, Key="intruder.txt", Body=b"x"),
    "overwrite_object": lambda c, b: c.put_object(Bucket=b, Key="owned.txt", Body=b"x"),
    "delete_object": lambda c, b: c.delete_object(Bucket=b, Key="owned.txt"),
    "list_objects_v2": lambda c, b: c.list_objects_v2(Bucket=b),
    "list_objects": lambda c, b: c.list_objects(Bucket=b),
    "delete_objects": lambda c, b: c.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "owned.txt"}]}),
    "create_multipart_upload": lambda c, b: c.create_multipart_upload(Bucket=b, Key="intruder.bin"),
    "delete_bucket": lambda c, b: c.delete_bucket(Bucket=b),
}


@pytest.fixture
def owned(s3, bucket):
    s3.put_object(Bucket=bucket, Key="owned.txt", Body=b"mine")
    return bucket


def assert_untouched(s3, bucket):
    assert s3.get_object(Bucket=bucket, Key="owned.txt")["Body"].read() == b"mine"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])] == ["owned.txt"]


def test_other_key_is_valid(other_s3):
    """Sanity check: the second key authenticates (ListBuckets succeeds)."""
    other_s3.list_buckets()


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_other_key_denied(other_s3, s3, owned, operation):
    """Every read or write by a key without grants -> 403 AccessDenied; the
    bucket and object are unchanged."""
    with expect_error("AccessDenied", 403):
        OPERATIONS[operation](other_s3, owned)
    assert_untouched(s3, owned)


def test_other_key_head_denied(other_s3, owned):
    """HeadObject and HeadBucket by a key without grants -> 403 (no body)."""
    with expect_error(None, 403):
        other_s3.head_object(Bucket=owned, Key="owned.txt")
    with expect_error(None, 403):
        other_s3.head_bucket(Bucket=owned)


def test_other_key_copy_from_bucket_denied(other_s3, s3, owned):
    """CopyObject with a source in a bucket the key can't read -> 403
    AccessDenied (the destination is the owner's bucket too)."""
    with expect_error("AccessDenied", 403):
        other_s3.copy_object(Bucket=owned, Key="copy.txt", CopySource={"Bucket": owned, "Key": "owned.txt"})
    assert_untouched(s3, owned)


def test_other_key_does_not_see_bucket(other_s3, owned):
    """ListBuckets for the other key doesn't include a bucket it has no
    grants on."""
    names = [b["Name"] for b in other_s3.list_buckets()["Buckets"]]
    assert owned not in names
