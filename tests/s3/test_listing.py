"""ListObjects (v1) and ListObjectsV2: prefix, delimiter, paging, ordering."""

import pytest

from conftest import create_bucket, purge_bucket, run_parallel, unique_bucket_name

# A small tree.  The non-ASCII keys make UTF-8 binary order differ from both
# case-insensitive order and UTF-16 order ("\uff21" sorts before the emoji in
# UTF-8, after it in UTF-16).
TREE = [
    "Zebra.txt",
    "a.txt",
    "a/b/c.txt",
    "a/b.txt",
    "a/x.txt",
    "a-b.txt",
    "b/1.txt",
    "b/2.txt",
    "b/c/3.txt",
    "c/4.txt",
    "d.txt",
    "é.txt",
    "\uff21-fullwidth.txt",
    "🚀/rocket.txt",
    "~tilde",
]


def utf8_sorted(keys):
    return sorted(keys, key=lambda k: k.encode("utf-8"))


@pytest.fixture
def tree(s3, bucket):
    run_parallel(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=key.encode()), TREE)
    return bucket


def keys_of(page):
    return [obj["Key"] for obj in page.get("Contents", [])]


def prefixes_of(page):
    return [p["Prefix"] for p in page.get("CommonPrefixes", [])]


def expected_listing(keys, prefix="", delimiter=None):
    """(keys, common prefixes) S3 returns for this prefix and delimiter."""
    contents, common = [], set()
    for key in keys:
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        if delimiter and delimiter in rest:
            common.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
        else:
            contents.append(key)
    return utf8_sorted(contents), utf8_sorted(common)


def test_v2_full_listing_sorted_in_utf8_order(s3, tree):
    """ListObjectsV2 without options returns every key, in UTF-8 binary order,
    with Size, ETag and LastModified; KeyCount matches; not truncated."""
    page = s3.list_objects_v2(Bucket=tree)
    assert keys_of(page) == utf8_sorted(TREE)
    assert page["KeyCount"] == len(TREE)
    assert page["IsTruncated"] is False
    for obj in page["Contents"]:
        assert obj["Size"] == len(obj["Key"].encode())
        assert obj["ETag"].startswith('"')
        assert obj["LastModified"] is not None


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize(
    "prefix,delimiter",
    [("b/", None), ("", "/"), ("b/", "/"), ("a", "/"), ("a/", "/"), ("nothing", "/"), ("", "."), ("🚀", "/")],
)
def test_prefix_and_delimiter(s3, tree, api, prefix, delimiter):
    """Prefix filters keys; Delimiter rolls keys up into CommonPrefixes
    (prefix + text up to and including the delimiter)."""
    params = {"Bucket": tree, "Prefix": prefix}
    if delimiter:
        params["Delimiter"] = delimiter
    page = s3.list_objects(**params) if api == "v1" else s3.list_objects_v2(**params)
    want_keys, want_prefixes = expected_listing(TREE, prefix, delimiter)
    assert keys_of(page) == want_keys
    assert prefixes_of(page) == want_prefixes
    assert page["IsTruncated"] is False
    if api == "v2":
        assert page["KeyCount"] == len(want_keys) + len(want_prefixes)


def test_v2_max_keys_and_continuation(s3, tree):
    """MaxKeys=4: each page holds at most 4 entries with KeyCount, IsTruncated
    and NextContinuationToken until the last page; following the tokens yields
    every key exactly once in order."""
    seen, token, pages = [], None, 0
    while True:
        params = {"Bucket": tree, "MaxKeys": 4}
        if token:
            params["ContinuationToken"] = token
        page = s3.list_objects_v2(**params)
        pages += 1
        assert page["KeyCount"] == len(keys_of(page)) <= 4
        assert page["MaxKeys"] == 4
        seen += keys_of(page)
        if not page["IsTruncated"]:
            assert "NextContinuationToken" not in page
            break
        assert page["KeyCount"] == 4
        token = page["NextContinuationToken"]
        assert pages < 20, "pagination does not terminate"
    assert seen == utf8_sorted(TREE)
    assert pages == -(-len(TREE) // 4)


def test_v2_continuation_with_delimiter(s3, tree):
    """MaxKeys counts keys and CommonPrefixes together; paging with a
    delimiter never repeats a prefix."""
    entries, token = [], None
    while True:
        params = {"Bucket": tree, "MaxKeys": 2, "Delimiter": "/"}
        if token:
            params["ContinuationToken"] = token
        page = s3.list_objects_v2(**params)
        assert page["KeyCount"] == len(keys_of(page)) + len(prefixes_of(page)) <= 2
        entries += keys_of(page) + prefixes_of(page)
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    want_keys, want_prefixes = expected_listing(TREE, "", "/")
    assert sorted(entries) == sorted(want_keys + want_prefixes)
    assert len(entries) == len(set(entries))


def test_v2_start_after(s3, tree):
    """StartAfter returns only keys strictly after the given key, and it is
    echoed back."""
    page = s3.list_objects_v2(Bucket=tree, StartAfter="b/2.txt")
    assert keys_of(page) == [k for k in utf8_sorted(TREE) if k.encode() > b"b/2.txt"]
    assert page["StartAfter"] == "b/2.txt"


def test_v1_marker_without_delimiter(s3, tree):
    """ListObjects v1 with MaxKeys: truncated pages; the client continues with
    Marker = last key returned (NextMarker is only required with a
    delimiter)."""
    seen, marker = [], ""
    while True:
        page = s3.list_objects(Bucket=tree, MaxKeys=5, Marker=marker)
        assert len(keys_of(page)) <= 5
        seen += keys_of(page)
        if not page["IsTruncated"]:
            break
        marker = page.get("NextMarker") or keys_of(page)[-1]
    assert seen == utf8_sorted(TREE)


def test_v1_next_marker_with_delimiter(s3, tree):
    """ListObjects v1 with a delimiter: a truncated page returns NextMarker
    (the last key or common prefix); continuing from it skips everything
    under a returned prefix."""
    entries, marker = [], ""
    while True:
        page = s3.list_objects(Bucket=tree, MaxKeys=2, Delimiter="/", Marker=marker)
        page_entries = keys_of(page) + prefixes_of(page)
        assert len(page_entries) <= 2
        entries += page_entries
        if not page["IsTruncated"]:
            break
        assert page["NextMarker"] == max(page_entries, key=lambda e: e.encode())
        marker = page["NextMarker"]
    want_keys, want_prefixes = expected_listing(TREE, "", "/")
    assert sorted(entries) == sorted(want_keys + want_prefixes)
    assert len(entries) == len(set(entries))


def test_empty_bucket_listing(s3, bucket):
    """An empty bucket lists no Contents, KeyCount 0, not truncated."""
    page = s3.list_objects_v2(Bucket=bucket)
    assert keys_of(page) == []
    assert page["KeyCount"] == 0
    assert page["IsTruncated"] is False


# ---------------------------------------------------------------------------
# 1500 keys: paging at the default page size of 1000.
# ---------------------------------------------------------------------------

MANY_TOP = [f"top-{i:04d}" for i in range(1200)]
MANY_NESTED = [f"sub-{i % 30:02d}/obj-{i:04d}" for i in range(300)]
MANY_KEYS = MANY_TOP + MANY_NESTED


@pytest.fixture(scope="module")
def many_keys_bucket(s3, settings):
    """A bucket holding 1500 keys, shared read-only by the paging tests of
    this module (uploading them once keeps the suite fast)."""
    name = unique_bucket_name("many")
    create_bucket(s3, name, settings.region)
    try:
        run_parallel(lambda key: s3.put_object(Bucket=name, Key=key, Body=b""), MANY_KEYS, workers=16)
        yield name
    finally:
        purge_bucket(s3, name)


@pytest.mark.parametrize("api", ["list_objects", "list_objects_v2"])
@pytest.mark.parametrize("delimiter", [None, "/"], ids=["flat", "delimited"])
def test_paginate_1500_keys(s3, many_keys_bucket, api, delimiter):
    """The paginator (server default page size: 1000 entries) returns exactly
    the expected keys and CommonPrefixes over at least two pages, each page
    sorted, none repeated."""
    params = {"Bucket": many_keys_bucket}
    if delimiter:
        params["Delimiter"] = delimiter
    pages = list(s3.get_paginator(api).paginate(**params))
    keys = [k for page in pages for k in keys_of(page)]
    prefixes = [p for page in pages for p in prefixes_of(page)]

    want_keys, want_prefixes = expected_listing(MANY_KEYS, "", delimiter)
    assert len(pages) >= 2
    assert len(keys_of(pages[0])) + len(prefixes_of(pages[0])) == 1000
    assert keys == want_keys
    assert prefixes == want_prefixes
    for page in pages[:-1]:
        assert page["IsTruncated"] is True
    assert pages[-1]["IsTruncated"] is False
