"""Multipart uploads: Create, UploadPart, UploadPartCopy, ListParts,
ListMultipartUploads, Complete, Abort and their documented errors."""

import hashlib
import os

import pytest

from conftest import MIB, expect_error, http_status, quoted_md5

PART = 5 * MIB  # the minimum size of every part but the last


def multipart_etag(parts_data) -> str:
    """AWS multipart ETag: MD5 of the concatenated binary MD5s of the parts,
    hex, suffixed with '-<number of parts>', quoted."""
    digests = b"".join(hashlib.md5(data).digest() for data in parts_data)
    return '"%s-%d"' % (hashlib.md5(digests).hexdigest(), len(parts_data))


def upload_ids(s3, bucket, prefix=""):
    return [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])]


class Upload:
    """A multipart upload in progress, with the parts sent so far."""

    def __init__(self, s3, bucket, key, **create_params):
        self.s3, self.bucket, self.key = s3, bucket, key
        self.id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create_params)["UploadId"]
        self.parts = {}  # part number -> ETag

    @property
    def ref(self):
        return {"Bucket": self.bucket, "Key": self.key, "UploadId": self.id}

    def put(self, number, data):
        etag = self.s3.upload_part(**self.ref, PartNumber=number, Body=data)["ETag"]
        assert etag == quoted_md5(data), "UploadPart ETag must be the quoted MD5 of the part"
        self.parts[number] = etag
        return etag

    def copy(self, number, source_bucket, source_key, byte_range=None):
        params = {"CopySource": {"Bucket": source_bucket, "Key": source_key}}
        if byte_range:
            params["CopySourceRange"] = byte_range
        result = self.s3.upload_part_copy(**self.ref, PartNumber=number, **params)["CopyPartResult"]
        self.parts[number] = result["ETag"]
        return result

    def complete(self, numbers=None, etags=None):
        numbers = sorted(self.parts) if numbers is None else numbers
        etags = etags or {}
        parts = [{"PartNumber": n, "ETag": etags.get(n, self.parts.get(n, '"unknown"'))} for n in numbers]
        return self.s3.complete_multipart_upload(**self.ref, MultipartUpload={"Parts": parts})


def test_full_multipart_upload_with_part_copy(s3, bucket):
    """Parts from UploadPart and UploadPartCopy (whole source, and a
    CopySourceRange) plus a small last part: ListParts reports them, the
    completed object is their concatenation, carries the metadata given at
    creation, and has the AWS multipart ETag; the upload is then gone."""
    source = os.urandom(6 * MIB)
    s3.put_object(Bucket=bucket, Key="source.bin", Body=source)
    pieces = [os.urandom(PART), source, source[1 * MIB:6 * MIB], os.urandom(1000)]

    upload = Upload(s3, bucket, "mp/object.bin", ContentType="application/x-test", Metadata={"kind": "multipart"})
    upload.put(1, pieces[0])
    whole = upload.copy(2, bucket, "source.bin")
    assert whole["ETag"] == quoted_md5(pieces[1])
    ranged = upload.copy(3, bucket, "source.bin", f"bytes={1 * MIB}-{6 * MIB - 1}")
    assert ranged["ETag"] == quoted_md5(pieces[2])
    upload.put(4, pieces[3])

    listed = s3.list_parts(**upload.ref)
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2, 3, 4]
    assert [p["Size"] for p in listed["Parts"]] == [len(p) for p in pieces]
    assert [p["ETag"] for p in listed["Parts"]] == [quoted_md5(p) for p in pieces]
    assert upload.id in upload_ids(s3, bucket, prefix="mp/")
    assert upload.id not in upload_ids(s3, bucket, prefix="other/")

    completed = upload.complete()
    assert http_status(completed) == 200
    assert completed["ETag"] == multipart_etag(pieces)
    assert completed["Key"] == "mp/object.bin"

    got = s3.get_object(Bucket=bucket, Key="mp/object.bin")
    assert got["Body"].read() == b"".join(pieces)
    assert got["ETag"] == multipart_etag(pieces)
    assert got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"kind": "multipart"}
    assert upload.id not in upload_ids(s3, bucket)


def test_range_get_across_part_boundary(s3, bucket):
    """A range spanning two parts of a completed multipart object returns the
    right bytes."""
    pieces = [os.urandom(PART), os.urandom(100)]
    upload = Upload(s3, bucket, "joined")
    for number, data in enumerate(pieces, 1):
        upload.put(number, data)
    upload.complete()
    whole = b"".join(pieces)
    response = s3.get_object(Bucket=bucket, Key="joined", Range=f"bytes={PART - 10}-{PART + 9}")
    assert response["Body"].read() == whole[PART - 10:PART + 10]
    assert response["ContentRange"] == f"bytes {PART - 10}-{PART + 9}/{len(whole)}"


def test_get_and_head_by_part_number(s3, bucket):
    """GET and HEAD with partNumber serve one part of a multipart object,
    as a 206 with its Content-Range and the object's part count; a single
    PUT is one part; an unknown part is 416 InvalidPartNumber, and a Range
    with partNumber is 400."""
    pieces = [os.urandom(PART), os.urandom(PART), os.urandom(1000)]
    upload = Upload(s3, bucket, "by-part")
    for number, data in enumerate(pieces, 1):
        upload.put(number, data)
    upload.complete()
    total = sum(len(p) for p in pieces)
    second = s3.get_object(Bucket=bucket, Key="by-part", PartNumber=2)
    assert http_status(second) == 206
    assert second["Body"].read() == pieces[1]
    assert second["ContentLength"] == PART
    assert second["PartsCount"] == 3
    assert second["ContentRange"] == f"bytes {PART}-{2 * PART - 1}/{total}"
    last = s3.head_object(Bucket=bucket, Key="by-part", PartNumber=3)
    assert last["ContentLength"] == 1000
    assert last["PartsCount"] == 3
    assert last["ContentRange"] == f"bytes {2 * PART}-{total - 1}/{total}"
    with expect_error("InvalidPartNumber", 416):
        s3.get_object(Bucket=bucket, Key="by-part", PartNumber=4)
    with expect_error(None, 416):
        s3.head_object(Bucket=bucket, Key="by-part", PartNumber=4)
    with expect_error("InvalidRequest", 400):
        s3.get_object(Bucket=bucket, Key="by-part", PartNumber=1, Range="bytes=0-9")
    s3.put_object(Bucket=bucket, Key="single", Body=b"one piece")
    single = s3.get_object(Bucket=bucket, Key="single", PartNumber=1)
    assert single["Body"].read() == b"one piece"
    assert "PartsCount" not in single
    with expect_error("InvalidPartNumber", 416):
        s3.get_object(Bucket=bucket, Key="single", PartNumber=2)


def test_reupload_part_replaces_it(s3, bucket):
    """Uploading the same part number again replaces the earlier data."""
    upload = Upload(s3, bucket, "reupload")
    upload.put(1, b"old part data")
    upload.put(1, b"new")
    assert [p["Size"] for p in s3.list_parts(**upload.ref)["Parts"]] == [3]
    upload.complete()
    assert s3.get_object(Bucket=bucket, Key="reupload")["Body"].read() == b"new"


def test_list_multipart_uploads_by_prefix(s3, bucket):
    """ListMultipartUploads lists in-progress uploads with Key and UploadId,
    filtered by Prefix."""
    first = Upload(s3, bucket, "logs/one")
    second = Upload(s3, bucket, "logs/two")
    third = Upload(s3, bucket, "data/three")
    uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix="logs/")["Uploads"]
    assert sorted((u["Key"], u["UploadId"]) for u in uploads) == [("logs/one", first.id), ("logs/two", second.id)]
    assert upload_ids(s3, bucket) and set(upload_ids(s3, bucket)) == {first.id, second.id, third.id}


def test_abort(s3, bucket):
    """AbortMultipartUpload -> 204; afterwards UploadPart, ListParts and
    CompleteMultipartUpload -> 404 NoSuchUpload; the upload is no longer
    listed and no object was created."""
    upload = Upload(s3, bucket, "aborted")
    upload.put(1, b"part data")
    assert http_status(s3.abort_multipart_upload(**upload.ref)) == 204

    with expect_error("NoSuchUpload", 404):
        s3.upload_part(**upload.ref, PartNumber=2, Body=b"more")
    with expect_error("NoSuchUpload", 404):
        s3.list_parts(**upload.ref)
    with expect_error("NoSuchUpload", 404):
        upload.complete()
    assert upload.id not in upload_ids(s3, bucket)
    with expect_error(None, 404):
        s3.head_object(Bucket=bucket, Key="aborted")


def test_unknown_upload_id(s3, bucket):
    """UploadPart with an upload id that never existed -> 404 NoSuchUpload."""
    with expect_error("NoSuchUpload", 404):
        s3.upload_part(Bucket=bucket, Key="k", UploadId="no-such-upload-id", PartNumber=1, Body=b"x")


def test_complete_with_wrong_etag(s3, bucket):
    """Completing with an ETag that doesn't match the uploaded part -> 400
    InvalidPart; the upload stays open."""
    upload = Upload(s3, bucket, "wrong-etag")
    upload.put(1, os.urandom(PART))
    upload.put(2, b"tail")
    with expect_error("InvalidPart", 400):
        upload.complete(etags={1: '"%s"' % ("0" * 32)})
    assert upload.id in upload_ids(s3, bucket)


def test_complete_with_missing_part(s3, bucket):
    """Completing with a part number that was never uploaded -> 400
    InvalidPart."""
    upload = Upload(s3, bucket, "missing-part")
    upload.put(1, os.urandom(PART))
    with expect_error("InvalidPart", 400):
        upload.complete(numbers=[1, 2], etags={2: quoted_md5(b"never sent")})


def test_complete_parts_out_of_order(s3, bucket):
    """Parts listed in descending order -> 400 InvalidPartOrder."""
    upload = Upload(s3, bucket, "out-of-order")
    upload.put(1, os.urandom(PART))
    upload.put(2, os.urandom(PART))
    with expect_error("InvalidPartOrder", 400):
        upload.complete(numbers=[2, 1])


def test_complete_with_small_non_last_part(s3, bucket):
    """A part other than the last smaller than 5 MiB -> 400 EntityTooSmall."""
    upload = Upload(s3, bucket, "too-small")
    upload.put(1, b"a" * 1024)
    upload.put(2, b"b" * 1024)
    with expect_error("EntityTooSmall", 400):
        upload.complete()


def test_single_small_part_is_fine(s3, bucket):
    """One part may be smaller than 5 MiB (it is the last part); the ETag has
    suffix -1."""
    upload = Upload(s3, bucket, "single")
    upload.put(1, b"tiny")
    assert upload.complete()["ETag"] == multipart_etag([b"tiny"])
    assert s3.get_object(Bucket=bucket, Key="single")["Body"].read() == b"tiny"


def test_completed_upload_is_gone(s3, bucket):
    """After CompleteMultipartUpload the upload id is not listed and ListParts
    -> 404 NoSuchUpload."""
    upload = Upload(s3, bucket, "done")
    upload.put(1, b"data")
    upload.complete()
    assert upload.id not in upload_ids(s3, bucket)
    with expect_error("NoSuchUpload", 404):
        s3.list_parts(**upload.ref)


@pytest.mark.parametrize("number", [0, 10001])
def test_part_number_out_of_range(s3, bucket, number):
    """Part numbers must be 1..10000 -> otherwise 400 InvalidArgument."""
    upload = Upload(s3, bucket, "bad-number")
    with expect_error("InvalidArgument", 400):
        upload.put(number, b"x")
