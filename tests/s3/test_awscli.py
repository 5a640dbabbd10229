"""aws-cli (the `aws` of this Python environment) end to end: s3 mb, cp up
and down (multipart at the default thresholds), ls, s3api head-object, rm,
rb."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from conftest import MIB, expect_error

AWS_CLI = os.path.join(os.path.dirname(sys.executable), "aws")
CHUNK = 8 * MIB  # aws-cli's default multipart_threshold and multipart_chunksize


@pytest.fixture
def aws(settings, tmp_path):
    """Run `aws ...` with only our credentials, region and path-style
    addressing configured; returns the CompletedProcess (check=True)."""
    if not os.path.exists(AWS_CLI):
        pytest.fail(f"aws-cli not found at {AWS_CLI}; pip install -r tests/s3/requirements.txt")
    config = tmp_path / "aws-config"
    config.write_text(f"[default]\nregion = {settings.region}\ns3 =\n    addressing_style = path\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=settings.access_key,
        AWS_SECRET_ACCESS_KEY=settings.secret_key,
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
    )

    def run(*args, check=True):
        result = subprocess.run(
            [AWS_CLI, "--endpoint-url", settings.endpoint, *args],
            env=env, capture_output=True, text=True, timeout=900,
        )
        if check:
            assert result.returncode == 0, f"aws {' '.join(args)} failed:\n{result.stderr}"
        return result

    return run


def write_random_file(path, size):
    """Write ``size`` random bytes in 1 MiB blocks; returns the sha256 hex."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            block = os.urandom(min(MIB, remaining))
            digest.update(block)
            f.write(block)
            remaining -= len(block)
    return digest.hexdigest()


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def test_awscli_big_copy_roundtrip(aws, s3, settings, bucket_factory, tmp_path):
    """`aws s3 mb` creates the bucket; `aws s3 cp` uploads a COOP_S3_BIG_MIB
    MiB file (multipart) and downloads it back bit-identical; `aws s3 ls`
    lists it with its size; `aws s3api head-object` reports ContentLength and
    a multipart ETag; `aws s3 rm` removes it; `aws s3 rb` removes the bucket."""
    name = bucket_factory(create=False, tag="cli")
    size = settings.big_mib * MIB
    upload, download = tmp_path / "big.bin", tmp_path / "big.down"
    expected_sha = write_random_file(upload, size)

    aws("s3", "mb", f"s3://{name}")
    s3.head_bucket(Bucket=name)

    aws("s3", "cp", str(upload), f"s3://{name}/dir/big.bin")
    listing = aws("s3", "ls", f"s3://{name}/dir/").stdout
    assert any(line.split()[-1:] == ["big.bin"] and str(size) in line.split() for line in listing.splitlines()), listing

    head = json.loads(aws("s3api", "head-object", "--bucket", name, "--key", "dir/big.bin").stdout)
    assert head["ContentLength"] == size
    if size >= CHUNK:
        assert head["ETag"].endswith(f'-{-(-size // CHUNK)}"'), head["ETag"]

    aws("s3", "cp", f"s3://{name}/dir/big.bin", str(download))
    assert sha256_file(download) == expected_sha

    aws("s3", "rm", f"s3://{name}/dir/big.bin")
    assert aws("s3api", "head-object", "--bucket", name, "--key", "dir/big.bin", check=False).returncode != 0
    assert "big.bin" not in aws("s3", "ls", f"s3://{name}/", check=False).stdout

    aws("s3", "rb", f"s3://{name}")
    with expect_error(None, 404):
        s3.head_bucket(Bucket=name)


def test_awscli_small_files_and_recursive(aws, s3, bucket, tmp_path):
    """`aws s3 cp --recursive` of a small tree, `aws s3 ls --recursive`, and
    `aws s3 rm --recursive` (which uses DeleteObjects)."""
    tree = {"a.txt": b"a", "sub/b.txt": b"bb", "sub/deeper/c d.txt": b"ccc"}
    for rel, data in tree.items():
        path = tmp_path / "src" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    aws("s3", "cp", "--recursive", str(tmp_path / "src"), f"s3://{bucket}/tree/")
    listing = aws("s3", "ls", "--recursive", f"s3://{bucket}/").stdout
    for rel in tree:
        assert f"tree/{rel}" in listing
    for rel, data in tree.items():
        assert s3.get_object(Bucket=bucket, Key=f"tree/{rel}")["Body"].read() == data

    aws("s3", "rm", "--recursive", f"s3://{bucket}/tree/")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
