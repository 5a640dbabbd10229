"""CopyObject (PUT with x-amz-copy-source)."""

import os

from conftest import expect_error, http_status, quoted_md5

SOURCE_KEY = "src/ünïcode key+plus.bin"


def put_source(s3, bucket, data):
    s3.put_object(
        Bucket=bucket, Key=SOURCE_KEY, Body=data, ContentType="image/png", Metadata={"origin": "source"}
    )


def test_copy_same_bucket_copies_metadata(s3, bucket):
    """Default directive COPY: data, Content-Type and user metadata are copied;
    the result's ETag equals the source's (MD5 of the data) and the source is
    untouched.  The copy source key is URL-encoded by the client."""
    data = os.urandom(10_000)
    put_source(s3, bucket, data)
    response = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": SOURCE_KEY})
    assert http_status(response) == 200
    assert response["CopyObjectResult"]["ETag"] == quoted_md5(data)
    assert response["CopyObjectResult"]["LastModified"] is not None

    copy = s3.get_object(Bucket=bucket, Key="dst")
    assert copy["Body"].read() == data
    assert copy["ContentType"] == "image/png"
    assert copy["Metadata"] == {"origin": "source"}
    assert s3.get_object(Bucket=bucket, Key=SOURCE_KEY)["Body"].read() == data


def test_copy_to_other_bucket(s3, bucket, bucket_factory):
    """CopyObject between two buckets of the same owner."""
    data = os.urandom(5000)
    put_source(s3, bucket, data)
    target = bucket_factory()
    s3.copy_object(Bucket=target, Key="copied", CopySource={"Bucket": bucket, "Key": SOURCE_KEY})
    copy = s3.get_object(Bucket=target, Key="copied")
    assert copy["Body"].read() == data
    assert copy["Metadata"] == {"origin": "source"}


def test_copy_with_replace_directive(s3, bucket):
    """MetadataDirective=REPLACE: the copy gets exactly the metadata and
    Content-Type given on the copy request, none of the source's."""
    data = b"replace me"
    put_source(s3, bucket, data)
    s3.copy_object(
        Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": SOURCE_KEY},
        MetadataDirective="REPLACE", ContentType="text/plain", Metadata={"fresh": "yes"},
    )
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"fresh": "yes"}
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == data


def test_copy_with_copy_directive_ignores_new_metadata(s3, bucket):
    """MetadataDirective=COPY: metadata sent on the request is ignored."""
    put_source(s3, bucket, b"x")
    s3.copy_object(
        Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": SOURCE_KEY},
        MetadataDirective="COPY", Metadata={"ignored": "1"},
    )
    assert s3.head_object(Bucket=bucket, Key="dst")["Metadata"] == {"origin": "source"}


def test_copy_onto_itself_with_replace(s3, bucket):
    """Copying an object onto itself is allowed with REPLACE and changes its
    metadata in place."""
    put_source(s3, bucket, b"self")
    s3.copy_object(
        Bucket=bucket, Key=SOURCE_KEY, CopySource={"Bucket": bucket, "Key": SOURCE_KEY},
        MetadataDirective="REPLACE", Metadata={"rev": "2"},
    )
    got = s3.get_object(Bucket=bucket, Key=SOURCE_KEY)
    assert got["Body"].read() == b"self"
    assert got["Metadata"] == {"rev": "2"}


def test_copy_onto_itself_without_changes_rejected(s3, bucket):
    """Copying an object onto itself without changing anything -> 400
    InvalidRequest."""
    put_source(s3, bucket, b"self")
    with expect_error("InvalidRequest", 400):
        s3.copy_object(Bucket=bucket, Key=SOURCE_KEY, CopySource={"Bucket": bucket, "Key": SOURCE_KEY})


def test_copy_missing_source(s3, bucket):
    """CopyObject from a key that doesn't exist -> 404 NoSuchKey, and no
    destination object is created."""
    with expect_error("NoSuchKey", 404):
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "no-such-source"})
    with expect_error(None, 404):
        s3.head_object(Bucket=bucket, Key="dst")
