"""Fills a bucket with many small objects through boto3 (a public client),
for benchmarks that need a cloud holding a lot of objects.

Prints one JSON object: {"objects": N, "seconds": S}. Credentials from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; the bucket must exist and be
writable.
"""

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    s3 = boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        region_name="coop",
        config=Config(
            s3={"addressing_style": "path"},
            max_pool_connections=args.threads,
            retries={"max_attempts": 3},
        ),
    )
    body = b"x" * 64

    def put(i):
        s3.put_object(Bucket=args.bucket, Key=f"obj/{i:07d}", Body=body)

    start = time.perf_counter()
    with ThreadPoolExecutor(args.threads) as pool:
        for _ in pool.map(put, range(args.count)):
            pass
    print(json.dumps({"objects": args.count, "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
