"""DeleteObjects (POST /bucket?delete)."""

from conftest import http_status, list_all_keys


def put_keys(s3, bucket, keys):
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())


def test_delete_objects_verbose(s3, bucket):
    """Quiet=false: every requested key is reported under Deleted, including
    a key that never existed (AWS treats it as a successful delete); no
    Errors; the existing keys are gone, the unlisted one stays."""
    put_keys(s3, bucket, ["one", "two", "dir/three", "keep"])
    requested = ["one", "two", "dir/three", "never-existed"]
    response = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": k} for k in requested], "Quiet": False}
    )
    assert http_status(response) == 200
    assert sorted(d["Key"] for d in response.get("Deleted", [])) == sorted(requested)
    assert response.get("Errors", []) == []
    assert list_all_keys(s3, bucket) == ["keep"]


def test_delete_objects_quiet(s3, bucket):
    """Quiet=true: successful deletions are not listed (no Deleted entries),
    no Errors, and the objects are gone."""
    put_keys(s3, bucket, ["a", "b", "c"])
    response = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": k} for k in ["a", "b", "missing"]], "Quiet": True}
    )
    assert http_status(response) == 200
    assert response.get("Deleted", []) == []
    assert response.get("Errors", []) == []
    assert list_all_keys(s3, bucket) == ["c"]


def test_delete_objects_special_keys(s3, bucket):
    """Keys needing XML escaping or unicode are matched exactly."""
    keys = ["a&b<c>", "unicodé 🚀", "quote\"'", "sp ace+plus"]
    put_keys(s3, bucket, keys)
    response = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    assert sorted(d["Key"] for d in response["Deleted"]) == sorted(keys)
    assert list_all_keys(s3, bucket) == []
