"""S3 throughput of one endpoint, measured with boto3 (a public client).

Prints one JSON object:
  put_large_mib_s / get_large_mib_s  64 MiB objects, 4 at a time
  put_small_ops_s / get_small_ops_s  4 KiB objects, 16 at a time
  list_2000_s                        listing 2000 keys (two pages of 1000)

Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; the bucket must
exist and be writable.
"""

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

MIB = 1024 * 1024


def client(endpoint, pool):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="coop",
        config=Config(
            s3={"addressing_style": "path"},
            max_pool_connections=pool,
            retries={"max_attempts": 1},
            read_timeout=300,
        ),
    )


def timed(fn, items, threads):
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, items))
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--large-mib", type=int, default=64)
    parser.add_argument("--large-count", type=int, default=8)
    parser.add_argument("--small-count", type=int, default=2000)
    args = parser.parse_args()

    s3 = client(args.endpoint, 32)
    large = os.urandom(args.large_mib * MIB)
    small = os.urandom(4096)
    out = {}

    # Single PUTs of whole objects, so the figure is the server's, not the
    # client's multipart scheduling.
    keys = [f"large/{i}" for i in range(args.large_count)]
    secs = timed(lambda k: s3.put_object(Bucket=args.bucket, Key=k, Body=large), keys, 4)
    out["put_large_mib_s"] = args.large_mib * len(keys) / secs

    def get_large(k):
        body = s3.get_object(Bucket=args.bucket, Key=k)["Body"]
        while body.read(MIB):
            pass

    secs = timed(get_large, keys, 4)
    out["get_large_mib_s"] = args.large_mib * len(keys) / secs

    small_keys = [f"small/{i:05d}" for i in range(args.small_count)]
    secs = timed(lambda k: s3.put_object(Bucket=args.bucket, Key=k, Body=small), small_keys, 16)
    out["put_small_ops_s"] = len(small_keys) / secs
    secs = timed(lambda k: s3.get_object(Bucket=args.bucket, Key=k)["Body"].read(), small_keys, 16)
    out["get_small_ops_s"] = len(small_keys) / secs

    start = time.perf_counter()
    listed = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args.bucket, Prefix="small/"):
        listed += len(page.get("Contents", []))
    out["list_2000_s"] = time.perf_counter() - start
    out["listed"] = listed
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
