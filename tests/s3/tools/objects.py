"""Object workloads the Rust integration tests drive against a coop cloud.

Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; the region
is `coop`. Every command prints one JSON document on stdout and exits non-zero
when something was wrong, so a test can assert on both.

    put        write objects of assorted sizes with seeded content (up to
               --max-size bytes each, if given); prints {key: sha256}
    verify     read every object of a manifest back; prints what differed
    multipart  upload one object in parts (slowly, if asked); prints its
               sha256 and ETag
               (with --abandon, never completes it; prints the upload id)
    uploads    how many multipart uploads the bucket has in progress
    exists     whether a key is visible to HEAD and to a listing
    fill       write objects of --size bytes until a PUT is refused (at most
               --max); prints {"stored": {key: sha256}, "refused": the
               error's code, status and message, or null}
    delete     delete every object of a manifest
"""

import argparse
import hashlib
import json
import random
import sys
import time

import boto3
from botocore.config import Config

MIB = 1024 * 1024
# Sizes around the 1 MiB block boundary, empty, tiny and several blocks.
SIZES = [0, 1, 4096, MIB - 1, MIB, MIB + 1, 3 * MIB + 12345, 200_000]
# The content type `--meta` objects carry (with `origin` metadata: the key).
META_TYPE = "application/x-coop-test"


def client(endpoint):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="coop",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2},
            connect_timeout=5,
            read_timeout=60,
        ),
    )


def content(seed, key, size):
    rng = random.Random(f"{seed}/{key}")
    return rng.randbytes(size)


def cmd_put(args):
    s3 = client(args.endpoint)
    manifest = {}
    sizes = [s for s in SIZES if args.max_size is None or s <= args.max_size]
    for i in range(args.count):
        key = f"{args.prefix}obj-{i:04d}"
        size = sizes[i % len(sizes)]
        body = content(args.seed, key, size)
        extra = {}
        if args.meta:
            extra = {"Metadata": {"origin": key}, "ContentType": META_TYPE}
        s3.put_object(Bucket=args.bucket, Key=key, Body=body, **extra)
        manifest[key] = hashlib.sha256(body).hexdigest()
    json.dump(manifest, sys.stdout)
    return 0


def cmd_verify(args):
    s3 = client(args.endpoint)
    with open(args.manifest) as f:
        manifest = json.load(f)
    bad = {}
    for key, want in manifest.items():
        try:
            got = s3.get_object(Bucket=args.bucket, Key=key)
            digest = hashlib.sha256(got["Body"].read()).hexdigest()
        except Exception as exc:  # report every failure, keep checking
            bad[key] = f"error: {exc}"
            continue
        if digest != want:
            bad[key] = f"sha256 {digest}, expected {want}"
        elif args.meta and (got["Metadata"].get("origin") != key or got["ContentType"] != META_TYPE):
            bad[key] = f"metadata {got['Metadata']}, content type {got['ContentType']}"
    json.dump({"checked": len(manifest), "bad": bad}, sys.stdout)
    return 1 if bad else 0


def cmd_multipart(args):
    s3 = client(args.endpoint)
    upload = s3.create_multipart_upload(Bucket=args.bucket, Key=args.key)["UploadId"]
    sys.stderr.write(f"upload {upload}\n")
    sys.stderr.flush()
    digest = hashlib.sha256()
    parts = []
    for n in range(1, args.parts + 1):
        body = content(args.seed, f"{args.key}/{n}", args.part_mib * MIB)
        digest.update(body)
        etag = s3.upload_part(Bucket=args.bucket, Key=args.key, UploadId=upload, PartNumber=n, Body=body)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
        sys.stderr.write(f"part {n} done\n")
        sys.stderr.flush()
        time.sleep(args.pause)
    if args.abandon:
        json.dump({"upload": upload}, sys.stdout)
        return 0
    done = s3.complete_multipart_upload(
        Bucket=args.bucket, Key=args.key, UploadId=upload, MultipartUpload={"Parts": parts}
    )
    json.dump({"sha256": digest.hexdigest(), "etag": done["ETag"]}, sys.stdout)
    return 0


def cmd_fill(args):
    s3 = client(args.endpoint)
    stored = {}
    refused = None
    for i in range(args.max):
        key = f"{args.prefix}fill-{i:04d}"
        body = content(args.seed, key, args.size)
        try:
            s3.put_object(Bucket=args.bucket, Key=key, Body=body)
        except s3.exceptions.ClientError as exc:
            refused = {
                "key": key,
                "code": exc.response["Error"].get("Code"),
                "status": exc.response["ResponseMetadata"]["HTTPStatusCode"],
                "message": exc.response["Error"].get("Message"),
            }
            break
        stored[key] = hashlib.sha256(body).hexdigest()
    json.dump({"stored": stored, "refused": refused}, sys.stdout)
    return 0


def cmd_delete(args):
    s3 = client(args.endpoint)
    with open(args.manifest) as f:
        keys = list(json.load(f))
    for start in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        s3.delete_objects(Bucket=args.bucket, Delete={"Objects": batch, "Quiet": True})
    json.dump({"deleted": len(keys)}, sys.stdout)
    return 0


def cmd_uploads(args):
    s3 = client(args.endpoint)
    uploads = s3.list_multipart_uploads(Bucket=args.bucket).get("Uploads", [])
    json.dump({"uploads": len(uploads)}, sys.stdout)
    return 0


def cmd_exists(args):
    s3 = client(args.endpoint)
    try:
        s3.head_object(Bucket=args.bucket, Key=args.key)
        head = True
    except s3.exceptions.ClientError as exc:
        if exc.response["ResponseMetadata"]["HTTPStatusCode"] != 404:
            raise
        head = False
    listed = any(
        o["Key"] == args.key
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args.bucket, Prefix=args.key)
        for o in page.get("Contents", [])
    )
    json.dump({"head": head, "listed": listed}, sys.stdout)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    put = sub.add_parser("put")
    put.add_argument("--count", type=int, default=len(SIZES))
    put.add_argument("--seed", default="coop")
    put.add_argument("--prefix", default="")
    put.add_argument("--meta", action="store_true", help="give each object metadata and a content type")
    put.add_argument("--max-size", type=int, default=None,
                     help="only the sizes up to this many bytes")
    verify = sub.add_parser("verify")
    verify.add_argument("--manifest", required=True)
    verify.add_argument("--meta", action="store_true", help="check the metadata `put --meta` gave")
    multi = sub.add_parser("multipart")
    multi.add_argument("--key", required=True)
    multi.add_argument("--parts", type=int, default=3)
    multi.add_argument("--part-mib", type=int, default=5)
    multi.add_argument("--pause", type=float, default=0.0)
    multi.add_argument("--seed", default="coop")
    multi.add_argument("--abandon", action="store_true", help="upload the parts but never complete")
    exists = sub.add_parser("exists")
    exists.add_argument("--key", required=True)
    sub.add_parser("uploads")
    fill = sub.add_parser("fill")
    fill.add_argument("--size", type=int, default=MIB)
    fill.add_argument("--max", type=int, default=100)
    fill.add_argument("--seed", default="coop")
    fill.add_argument("--prefix", default="")
    delete = sub.add_parser("delete")
    delete.add_argument("--manifest", required=True)
    args = parser.parse_args()
    commands = {
        "put": cmd_put,
        "verify": cmd_verify,
        "multipart": cmd_multipart,
        "exists": cmd_exists,
        "delete": cmd_delete,
        "uploads": cmd_uploads,
        "fill": cmd_fill,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
