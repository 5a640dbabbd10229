"""Virtual-hosted-style addressing (bucket.<COOP_S3_VHOST_DOMAIN>:port).
Skipped unless COOP_S3_VHOST_DOMAIN is set."""


def test_virtual_hosted_roundtrip(vhost_s3, s3, bucket):
    """PUT, GET and ListObjectsV2 addressed as http://<bucket>.<domain>:port/
    act on the same bucket as path-style requests."""
    vhost_s3.put_object(Bucket=bucket, Key="via/vhost.txt", Body=b"virtual")
    assert s3.get_object(Bucket=bucket, Key="via/vhost.txt")["Body"].read() == b"virtual"
    assert vhost_s3.get_object(Bucket=bucket, Key="via/vhost.txt")["Body"].read() == b"virtual"
    assert [o["Key"] for o in vhost_s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["via/vhost.txt"]
