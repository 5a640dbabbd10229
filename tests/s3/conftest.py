"""Shared configuration, fixtures and helpers for the coop S3 conformance suite.

The suite is black-box: it only talks HTTP to the endpoint(s) named in the
environment (see README.md).  Everything shared by several test modules lives
here; test modules import the plain helpers with ``from conftest import ...``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import hmac
import http.client
import os
import secrets
import urllib.parse
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Sequence

import boto3
import botocore.handlers
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

MIB = 1024 * 1024
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"


# --------------------------------------------------------------------------
# Settings from the environment
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    endpoint: str
    endpoints: tuple
    access_key: str
    secret_key: str
    region: str
    other_access_key: Optional[str]
    other_secret_key: Optional[str]
    big_mib: int
    vhost_domain: Optional[str]
    max_body_mib: Optional[int]

    @property
    def has_other_key(self) -> bool:
        return bool(self.other_access_key and self.other_secret_key)


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.exit(f"environment variable {name} is required (see tests/s3/README.md)", returncode=4)
    return value


def _optional(name: str) -> Optional[str]:
    value = os.environ.get(name, "").strip()
    return value or None


def load_settings() -> Settings:
    endpoint = _required("COOP_S3_ENDPOINT").rstrip("/")
    endpoints = [endpoint]
    for extra in (_optional("COOP_S3_ENDPOINTS") or "").split(","):
        extra = extra.strip().rstrip("/")
        if extra and extra not in endpoints:
            endpoints.append(extra)
    max_body = _optional("COOP_S3_MAX_BODY_MIB")
    return Settings(
        endpoint=endpoint,
        endpoints=tuple(endpoints),
        access_key=_required("COOP_S3_ACCESS_KEY"),
        secret_key=_required("COOP_S3_SECRET_KEY"),
        region=_optional("COOP_S3_REGION") or "coop",
        other_access_key=_optional("COOP_S3_OTHER_ACCESS_KEY"),
        other_secret_key=_optional("COOP_S3_OTHER_SECRET_KEY"),
        big_mib=int(_optional("COOP_S3_BIG_MIB") or "100"),
        vhost_domain=_optional("COOP_S3_VHOST_DOMAIN"),
        max_body_mib=int(max_body) if max_body else None,
    )


# --------------------------------------------------------------------------
# Plain helpers (imported by the test modules)
# --------------------------------------------------------------------------


def quoted_md5(data: bytes) -> str:
    """The ETag AWS returns for a single-request PUT of ``data``."""
    return '"%s"' % hashlib.md5(data).hexdigest()


def http_status(response: dict) -> int:
    return response["ResponseMetadata"]["HTTPStatusCode"]


def error_of(exc: ClientError) -> tuple:
    """(code, http status) of a botocore ClientError."""
    return exc.response["Error"].get("Code"), exc.response["ResponseMetadata"]["HTTPStatusCode"]


@contextlib.contextmanager
def expect_error(code, status: int) -> Iterator[pytest.ExceptionInfo]:
    """Assert that the block raises a ClientError with this HTTP status and
    error code.  ``code`` may be a string, a set of acceptable codes, or None
    when the response has no body (HEAD requests)."""
    with pytest.raises(ClientError) as info:
        yield info
    got_code, got_status = error_of(info.value)
    assert got_status == status, f"expected HTTP {status}, got {got_status} ({got_code})"
    if code is not None:
        allowed = {code} if isinstance(code, str) else set(code)
        assert got_code in allowed, f"expected error code {sorted(allowed)}, got {got_code!r}"


def parse_error_xml(body: bytes) -> dict:
    """Parse an S3 error document; returns its child elements by tag name.

    Asserts the documented shape: root element <Error> with <Code> and
    <Message> children.
    """
    assert body, "error response has an empty body; S3 sends an XML <Error> document"
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise AssertionError(f"error body is not XML ({exc}): {body[:300]!r}") from None
    tag = root.tag.split("}")[-1]
    assert tag == "Error", f"root element is <{tag}>, expected <Error>: {body[:300]!r}"
    children = {child.tag.split("}")[-1]: (child.text or "") for child in root}
    assert "Code" in children, f"<Error> has no <Code>: {body[:300]!r}"
    assert "Message" in children, f"<Error> has no <Message>: {body[:300]!r}"
    return children


def unique_bucket_name(tag: str = "t") -> str:
    """A fresh, valid, lower-case bucket name (3-63 chars)."""
    return f"coop-{tag}-{secrets.token_hex(6)}"[:63]


def run_parallel(func, items: Iterable, workers: int = 16) -> list:
    """Apply ``func`` to every item on a thread pool; re-raises the first error."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(func, items))


def bucket_location_config(region: str) -> dict:
    """CreateBucketConfiguration as a real client sends it for ``region``."""
    if region == "us-east-1":
        return {}
    return {"CreateBucketConfiguration": {"LocationConstraint": region}}


def create_bucket(client, name: str, region: str) -> dict:
    return client.create_bucket(Bucket=name, **bucket_location_config(region))


def list_all_keys(client, bucket: str, prefix: str = "") -> list:
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys


def purge_bucket(client, bucket: str) -> None:
    """Remove every upload, object and finally the bucket itself.

    Cleanup problems are reported as warnings so that they don't hide the
    outcome of the test that owned the bucket."""
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for upload in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        keys = list_all_keys(client, bucket)
        run_parallel(lambda key: client.delete_object(Bucket=bucket, Key=key), keys)
        client.delete_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_of(exc)[0] not in ("NoSuchBucket", "404"):
            warnings.warn(f"cleanup of bucket {bucket} failed: {exc}")
    except Exception as exc:  # network trouble etc.: still only a warning
        warnings.warn(f"cleanup of bucket {bucket} failed: {exc!r}")


def make_client(settings: Settings, endpoint: str, access_key: str, secret_key: str, addressing_style: str = "path"):
    config = Config(
        s3={"addressing_style": addressing_style},
        retries={"max_attempts": 1},
        signature_version="s3v4",
        connect_timeout=10,
        read_timeout=120,
        max_pool_connections=32,
    )
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=settings.region,
        config=config,
    )
    # Bucket names are validated by the server, not by the client: let
    # deliberately invalid names reach the wire.
    client.meta.events.unregister("before-parameter-build.s3", botocore.handlers.validate_bucket_name)
    return client


# --------------------------------------------------------------------------
# Raw HTTP requests, signed with botocore's SigV4 signer
# --------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def error(self) -> dict:
        """The parsed <Error> document (asserts its shape)."""
        return parse_error_xml(self.body)

    @property
    def error_code(self) -> str:
        return self.error()["Code"]


class _FixedPayloadS3SigV4Auth(S3SigV4Auth):
    """botocore's S3 signer with a given x-amz-content-sha256 value: a hash
    computed elsewhere (streamed bodies) or the aws-chunked marker."""

    def __init__(self, credentials, service_name, region_name, payload_hash):
        super().__init__(credentials, service_name, region_name)
        self._payload_hash = payload_hash

    def payload(self, request):
        return self._payload_hash


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def sigv4_signing_key(secret_key: str, date: str, region: str, service: str = "s3") -> bytes:
    k_date = _hmac(("AWS4" + secret_key).encode("utf-8"), date)
    return _hmac(_hmac(_hmac(k_date, region), service), "aws4_request")


def chunk_signature(signing_key: bytes, timestamp: str, scope: str, previous: str, chunk: bytes) -> str:
    """Signature of one aws-chunked chunk (AWS "Transferring Payload in
    Multiple Chunks"): chained on the previous chunk's signature."""
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256-PAYLOAD", timestamp, scope, previous, EMPTY_SHA256, hashlib.sha256(chunk).hexdigest()]
    )
    return hmac.new(signing_key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def encode_aws_chunked(data: bytes, chunk_size: int, signing_key: bytes, timestamp: str, scope: str, seed: str) -> bytes:
    """Encode ``data`` as a signed aws-chunked body, ending with the 0-sized chunk."""
    chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    out, previous = [], seed
    for chunk in chunks:
        previous = chunk_signature(signing_key, timestamp, scope, previous, chunk)
        out.append(b"%x;chunk-signature=%s\r\n%s\r\n" % (len(chunk), previous.encode("ascii"), chunk))
    return b"".join(out)


@dataclass
class RawS3:
    """Minimal S3 client that builds requests by hand, for the cases boto3
    won't produce (malformed bodies, bad names, chunked signing...)."""

    settings: Settings
    endpoint: str
    access_key: str
    secret_key: str
    timeout: float = 120.0
    _parsed: urllib.parse.SplitResult = field(init=False, repr=False)

    def __post_init__(self):
        self._parsed = urllib.parse.urlsplit(self.endpoint)

    # -- URL building --------------------------------------------------
    def path(self, bucket: Optional[str] = None, key: Optional[str] = None, query: Sequence = ()) -> str:
        """Path-style request target.  ``query`` is a list of (name, value)
        pairs; a value of None gives a bare sub-resource like ``?delete``."""
        path = "/"
        if bucket is not None:
            path += urllib.parse.quote(bucket, safe="")
            if key is not None:
                path += "/" + urllib.parse.quote(key, safe="/~")
        if query:
            parts = [
                urllib.parse.quote(name, safe="~") if value is None
                else f"{urllib.parse.quote(name, safe='~')}={urllib.parse.quote(value, safe='~')}"
                for name, value in query
            ]
            path += "?" + "&".join(parts)
        return path

    def url(self, *args, **kwargs) -> str:
        return f"{self._parsed.scheme}://{self._parsed.netloc}{self.path(*args, **kwargs)}"

    # -- signing ---------------------------------------------------------
    def _credentials(self) -> Credentials:
        return Credentials(self.access_key, self.secret_key)

    def sign(self, method: str, url: str, body: bytes = b"", headers: Optional[dict] = None,
             payload_hash: Optional[str] = None) -> AWSRequest:
        """SigV4-sign a request (header auth).  The payload hash is computed
        from ``body`` unless given."""
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
        request.headers["Host"] = self._parsed.netloc
        if payload_hash is None:
            signer = S3SigV4Auth(self._credentials(), "s3", self.settings.region)
        else:
            signer = _FixedPayloadS3SigV4Auth(self._credentials(), "s3", self.settings.region, payload_hash)
        signer.add_auth(request)
        return request

    # -- sending ---------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._parsed.scheme == "https" else http.client.HTTPConnection
        return cls(self._parsed.hostname, self._parsed.port, timeout=self.timeout)

    def send(self, method: str, url: str, headers: dict, body=b"") -> RawResponse:
        """Send exactly these headers and body (bytes or an iterable of bytes
        with an explicit Content-Length header)."""
        target = url[len(f"{self._parsed.scheme}://{self._parsed.netloc}"):] if "://" in url else url
        conn = self._connection()
        try:
            conn.request(method, target, body=body if body else None, headers=headers)
            response = conn.getresponse()
            return RawResponse(response.status, response.headers, response.read())
        finally:
            conn.close()

    def request(self, method: str, bucket: Optional[str] = None, key: Optional[str] = None,
                query: Sequence = (), body: bytes = b"", headers: Optional[dict] = None) -> RawResponse:
        """A SigV4-signed request (payload hash included)."""
        url = self.url(bucket, key, query)
        signed = self.sign(method, url, body, headers)
        return self.send(method, url, dict(signed.headers.items()), body)

    def anonymous(self, method: str, bucket: Optional[str] = None, key: Optional[str] = None) -> RawResponse:
        """An unsigned request, as a browser or curl would send it."""
        return self.send(method, self.url(bucket, key), {"Host": self._parsed.netloc})

    def put_chunked(self, bucket: str, key: str, data: bytes, chunk_size: int = 64 * 1024,
                    tamper_chunk: Optional[int] = None, content_type: Optional[str] = None) -> RawResponse:
        """PUT with a STREAMING-AWS4-HMAC-SHA256-PAYLOAD (aws-chunked) body.

        ``tamper_chunk``: index of a chunk whose data is altered after signing
        (the server must then reject the upload)."""
        url = self.url(bucket, key)
        sizes = [min(chunk_size, len(data) - i) for i in range(0, len(data), chunk_size)] + [0]
        encoded_length = sum(len(b"%x;chunk-signature=" % s) + 64 + 2 + s + 2 for s in sizes)
        headers = {
            "Content-Encoding": "aws-chunked",
            "Content-Length": str(encoded_length),
            "X-Amz-Decoded-Content-Length": str(len(data)),
            "X-Amz-Content-SHA256": STREAMING_PAYLOAD,
        }
        if content_type:
            headers["Content-Type"] = content_type
        signed = self.sign("PUT", url, b"", headers, payload_hash=STREAMING_PAYLOAD)
        timestamp = signed.context["timestamp"]
        seed = signed.headers["Authorization"].rsplit("Signature=", 1)[1]
        scope = f"{timestamp[:8]}/{self.settings.region}/s3/aws4_request"
        key_bytes = sigv4_signing_key(self.secret_key, timestamp[:8], self.settings.region)
        body = encode_aws_chunked(data, chunk_size, key_bytes, timestamp, scope, seed)
        assert len(body) == encoded_length
        if tamper_chunk is not None:
            body = _flip_chunk_byte(body, tamper_chunk)
        return self.send("PUT", url, dict(signed.headers.items()), body)


    def put_generated(self, bucket: str, key: str, size: int, block: bytes) -> tuple:
        """Single signed PUT of ``size`` bytes made of ``block`` repeated,
        streamed without holding it in memory.

        Returns (RawResponse or None, exception raised while sending or None):
        a server may answer early and close the connection mid-body."""
        def blocks():
            remaining = size
            while remaining:
                piece = block[:min(len(block), remaining)]
                remaining -= len(piece)
                yield piece

        digest = hashlib.sha256()
        for piece in blocks():
            digest.update(piece)
        url = self.url(bucket, key)
        signed = self.sign("PUT", url, b"", {"Content-Length": str(size)}, payload_hash=digest.hexdigest())
        conn = self._connection()
        send_error = None
        try:
            try:
                conn.request("PUT", self.path(bucket, key), body=blocks(), headers=dict(signed.headers.items()))
            except OSError as exc:  # broken pipe / reset: the server stopped reading
                send_error = exc
            try:
                response = conn.getresponse()
                return RawResponse(response.status, response.headers, response.read()), send_error
            except (OSError, http.client.HTTPException) as exc:
                return None, send_error or exc
        finally:
            conn.close()

def _flip_chunk_byte(body: bytes, index: int) -> bytes:
    """Flip the first data byte of chunk ``index`` in an aws-chunked body."""
    pos = 0
    for _ in range(index):
        header_end = body.index(b"\r\n", pos)
        size = int(body[pos:header_end].split(b";")[0], 16)
        pos = header_end + 2 + size + 2
    data_start = body.index(b"\r\n", pos) + 2
    return body[:data_start] + bytes([body[data_start] ^ 0xFF]) + body[data_start + 1:]


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def s3(settings):
    """boto3 client, path-style, for the main key on the main endpoint."""
    return make_client(settings, settings.endpoint, settings.access_key, settings.secret_key)


@pytest.fixture(scope="session")
def peer_clients(settings) -> list:
    """One client per endpoint of the cloud (just the main one unless
    COOP_S3_ENDPOINTS lists more)."""
    return [make_client(settings, ep, settings.access_key, settings.secret_key) for ep in settings.endpoints]


@pytest.fixture(scope="session")
def other_s3(settings):
    """Client for the second key, which has no grants on our buckets."""
    if not settings.has_other_key:
        pytest.skip("COOP_S3_OTHER_ACCESS_KEY / COOP_S3_OTHER_SECRET_KEY not set")
    return make_client(settings, settings.endpoint, settings.other_access_key, settings.other_secret_key)


@pytest.fixture(scope="session")
def vhost_s3(settings):
    """Client using virtual-hosted-style addressing (bucket.<domain>:port).

    The name is not resolvable without DNS, so just before sending, each
    request is redirected to the real endpoint while the Host header keeps
    the virtual-hosted name the request was signed with."""
    if not settings.vhost_domain:
        pytest.skip("COOP_S3_VHOST_DOMAIN not set")
    real = urllib.parse.urlsplit(settings.endpoint)
    port = real.port or (443 if real.scheme == "https" else 80)
    client = make_client(
        settings, f"{real.scheme}://{settings.vhost_domain}:{port}",
        settings.access_key, settings.secret_key, addressing_style="virtual",
    )

    def route_to_real_endpoint(request, **_):
        target = urllib.parse.urlsplit(request.url)
        request.headers["Host"] = target.netloc
        request.url = urllib.parse.urlunsplit(target._replace(netloc=real.netloc))

    client.meta.events.register("before-send.s3", route_to_real_endpoint)
    return client


@pytest.fixture(scope="session")
def raw(settings) -> RawS3:
    """Hand-built signed/unsigned HTTP requests with the main key."""
    return RawS3(settings, settings.endpoint, settings.access_key, settings.secret_key)


@pytest.fixture
def bucket_factory(s3, settings):
    """Create extra uniquely named buckets; all are purged after the test.

    ``make(create=False)`` only reserves a name (for tests that create the
    bucket themselves); it is still cleaned up if it ends up existing."""
    names = []

    def make(create: bool = True, tag: str = "t") -> str:
        name = unique_bucket_name(tag)
        names.append(name)
        if create:
            create_bucket(s3, name, settings.region)
        return name

    yield make
    for name in names:
        purge_bucket(s3, name)


@pytest.fixture
def bucket(bucket_factory) -> str:
    """A fresh empty bucket owned by the main key, removed after the test."""
    return bucket_factory()
