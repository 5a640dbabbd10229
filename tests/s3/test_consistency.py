"""Read-after-write consistency, across every peer named in
COOP_S3_ENDPOINTS (or just the one endpoint), and under concurrent writers."""

import threading

from conftest import create_bucket, expect_error, list_all_keys, quoted_md5, run_parallel


def assert_visible_everywhere(peers, bucket, key, data):
    for index, peer in enumerate(peers):
        got = peer.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert got == data, f"peer #{index} serves stale data for {key!r}"
        assert key in list_all_keys(peer, bucket), f"peer #{index} does not list {key!r}"


def assert_gone_everywhere(peers, bucket, key):
    for index, peer in enumerate(peers):
        with expect_error("NoSuchKey", 404):
            peer.get_object(Bucket=bucket, Key=key)
        assert key not in list_all_keys(peer, bucket), f"peer #{index} still lists {key!r}"


def test_put_then_delete_visible_on_every_peer(peer_clients, bucket):
    """For each peer as writer: a PUT is immediately readable and listed on
    every peer; a DELETE is immediately effective on every peer."""
    for writer_index, writer in enumerate(peer_clients):
        key = f"from-peer-{writer_index}/object"
        data = f"written via peer {writer_index}".encode()
        writer.put_object(Bucket=bucket, Key=key, Body=data)
        assert_visible_everywhere(peer_clients, bucket, key, data)
        writer.delete_object(Bucket=bucket, Key=key)
        assert_gone_everywhere(peer_clients, bucket, key)


def test_overwrite_visible_on_every_peer(peer_clients, bucket):
    """Successive overwrites, each through another peer, are each immediately
    the version every peer serves."""
    for version in range(2 * len(peer_clients)):
        data = f"version {version}".encode()
        peer_clients[version % len(peer_clients)].put_object(Bucket=bucket, Key="shared", Body=data)
        assert_visible_everywhere(peer_clients, bucket, "shared", data)


def test_bucket_create_and_delete_visible_on_every_peer(peer_clients, bucket_factory, settings):
    """A bucket created through one peer exists on every peer right after;
    deleted, it is gone from every peer."""
    name = bucket_factory(create=False)
    create_bucket(peer_clients[0], name, settings.region)
    for peer in peer_clients:
        peer.head_bucket(Bucket=name)
    peer_clients[-1].delete_bucket(Bucket=name)
    for peer in peer_clients:
        with expect_error(None, 404):
            peer.head_bucket(Bucket=name)


def test_concurrent_writers_distinct_keys(peer_clients, bucket):
    """8 threads (spread over the peers) each write 20 keys and delete every
    other one of their own; the final listing on every peer is exactly the
    surviving keys, each with the right content."""
    writers, per_writer = 8, 20

    def work(writer):
        client = peer_clients[writer % len(peer_clients)]
        mine = [f"w{writer}/k{i:02d}" for i in range(per_writer)]
        for key in mine:
            client.put_object(Bucket=bucket, Key=key, Body=key.encode())
        for key in mine[::2]:
            client.delete_object(Bucket=bucket, Key=key)
        return mine[1::2]

    survivors = sorted(k for kept in run_parallel(work, range(writers), workers=writers) for k in kept)
    for peer in peer_clients:
        assert list_all_keys(peer, bucket) == survivors
    bodies = run_parallel(lambda k: peer_clients[0].get_object(Bucket=bucket, Key=k)["Body"].read(), survivors)
    assert bodies == [k.encode() for k in survivors]


def test_concurrent_writers_same_key(peer_clients, bucket):
    """8 threads overwrite one key at once: afterwards every peer serves the
    same complete version (one of those written, never a mix) with the
    matching ETag."""
    candidates = [bytes([i]) * (100_000 + i) for i in range(8)]
    start = threading.Barrier(len(candidates))

    def write(index):
        start.wait()
        peer_clients[index % len(peer_clients)].put_object(Bucket=bucket, Key="contended", Body=candidates[index])

    run_parallel(write, range(len(candidates)), workers=len(candidates))
    results = [peer.get_object(Bucket=bucket, Key="contended") for peer in peer_clients]
    bodies = [r["Body"].read() for r in results]
    assert bodies[0] in candidates
    assert all(body == bodies[0] for body in bodies), "peers disagree on the final version"
    assert all(r["ETag"] == quoted_md5(bodies[0]) for r in results)
