"""Bucket lifecycle: CreateBucket, HeadBucket, ListBuckets, GetBucketLocation,
DeleteBucket and their documented errors."""

import pytest

from conftest import bucket_location_config, create_bucket, expect_error, http_status

INVALID_BUCKET_NAMES = [
    "ab",                # shorter than 3 characters
    "a" * 64,            # longer than 63 characters
    "UPPER",             # upper-case letters
    "has_underscore",    # underscore
    "-start",            # must begin with a letter or digit
    "192.168.1.1",       # formatted as an IP address
]


def test_bucket_lifecycle(s3, settings, bucket_factory):
    """CreateBucket -> 200; HeadBucket -> 200; ListBuckets includes it;
    DeleteBucket -> 204; HeadBucket afterwards -> 404."""
    name = bucket_factory(create=False)
    assert http_status(create_bucket(s3, name, settings.region)) == 200
    assert http_status(s3.head_bucket(Bucket=name)) == 200
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    assert http_status(s3.delete_bucket(Bucket=name)) == 204
    with expect_error(None, 404):
        s3.head_bucket(Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_list_buckets_entries_have_creation_date(s3, bucket):
    """Each ListBuckets entry carries Name and CreationDate; Owner is present."""
    listing = s3.list_buckets()
    entry = next(b for b in listing["Buckets"] if b["Name"] == bucket)
    assert entry["CreationDate"] is not None
    assert "Owner" in listing


def test_get_bucket_location(s3, settings, bucket):
    """GetBucketLocation returns the LocationConstraint the bucket was created
    with (AWS returns null for us-east-1)."""
    location = s3.get_bucket_location(Bucket=bucket)["LocationConstraint"]
    assert location in (None, "", settings.region)


def test_head_missing_bucket_is_404(s3, bucket_factory):
    """HeadBucket on a bucket that does not exist -> 404 (no body)."""
    with expect_error(None, 404):
        s3.head_bucket(Bucket=bucket_factory(create=False))


def test_delete_non_empty_bucket(s3, bucket):
    """DeleteBucket on a bucket holding an object -> 409 BucketNotEmpty, and
    the bucket and object remain."""
    s3.put_object(Bucket=bucket, Key="keep", Body=b"x")
    with expect_error("BucketNotEmpty", 409):
        s3.delete_bucket(Bucket=bucket)
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"x"


def test_create_existing_bucket(s3, settings, bucket):
    """Creating a bucket that already exists -> 409 BucketAlreadyOwnedByYou
    (same owner) or BucketAlreadyExists."""
    with expect_error({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}, 409):
        create_bucket(s3, bucket, settings.region)


@pytest.mark.parametrize("name", INVALID_BUCKET_NAMES, ids=lambda n: n if len(n) < 20 else f"{len(n)}-chars")
def test_invalid_bucket_name(raw, s3, settings, name):
    """CreateBucket with a name breaking the naming rules -> 400
    InvalidBucketName (sent raw so that no client-side check interferes)."""
    body = b""
    if bucket_location_config(settings.region):
        body = (
            '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<LocationConstraint>{settings.region}</LocationConstraint></CreateBucketConfiguration>"
        ).encode()
    response = raw.request("PUT", name, body=body)
    if response.status == 200:  # don't leave a wrongly created bucket behind
        s3.delete_bucket(Bucket=name)
    assert response.status == 400, f"{name!r} accepted with HTTP {response.status}"
    assert response.error_code == "InvalidBucketName"


MISSING_BUCKET_OPERATIONS = {
    "list_objects": lambda s3, b: s3.list_objects(Bucket=b),
    "list_objects_v2": lambda s3, b: s3.list_objects_v2(Bucket=b),
    "put_object": lambda s3, b: s3.put_object(Bucket=b, Key="k", Body=b"x"),
    "get_object": lambda s3, b: s3.get_object(Bucket=b, Key="k"),
    "delete_object": lambda s3, b: s3.delete_object(Bucket=b, Key="k"),
    "delete_bucket": lambda s3, b: s3.delete_bucket(Bucket=b),
    "get_bucket_location": lambda s3, b: s3.get_bucket_location(Bucket=b),
    "create_multipart_upload": lambda s3, b: s3.create_multipart_upload(Bucket=b, Key="k"),
    "list_multipart_uploads": lambda s3, b: s3.list_multipart_uploads(Bucket=b),
}


@pytest.mark.parametrize("operation", sorted(MISSING_BUCKET_OPERATIONS))
def test_operation_on_missing_bucket(s3, bucket_factory, operation):
    """Any bucket or object operation on a bucket that doesn't exist -> 404
    NoSuchBucket."""
    name = bucket_factory(create=False)
    with expect_error("NoSuchBucket", 404):
        MISSING_BUCKET_OPERATIONS[operation](s3, name)


def test_head_object_in_missing_bucket_is_404(s3, bucket_factory):
    """HeadObject in a bucket that doesn't exist -> 404 (HEAD has no body)."""
    with expect_error(None, 404):
        s3.head_object(Bucket=bucket_factory(create=False), Key="k")
