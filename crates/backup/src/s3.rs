//! A small S3 client for backup repositories: put, get (whole or a
//! range), delete and list under a prefix, signed with AWS Signature
//! Version 4 (path-style addressing, so any endpoint works: another coop
//! cloud, Garage, MinIO, AWS). Not a general S3 SDK: no multipart, no
//! virtual-host buckets; repository files are at most a pack's size.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// A request that does not answer in this long is given up (and retried by
/// the caller where that is safe).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Keys per page of a listing, S3's maximum.
const PAGE: usize = 1000;

/// What went wrong talking to the S3 endpoint.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error(
        "`{0}` is not an S3 target: give s3://HOST[:PORT]/BUCKET[/PREFIX] or http(s)://HOST[:PORT]/BUCKET[/PREFIX]"
    )]
    BadUrl(String),
    #[error("cannot reach {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("{method} {key}: {code} (HTTP {status}): {message}")]
    Refused {
        method: &'static str,
        key: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("no object `{0}` in the target")]
    NotFound(String),
    #[error("the endpoint's answer to a listing is not S3's: {0}")]
    BadListing(String),
}

/// Where a repository lives and how to sign for it.
#[derive(Clone)]
pub struct S3Location {
    /// `http://host:port` or `https://host:port`, no trailing `/`.
    pub endpoint: String,
    pub bucket: String,
    /// Inside the bucket, without leading or trailing `/`; may be empty.
    pub prefix: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Location")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

impl S3Location {
    /// Reads `s3://HOST[:PORT]/BUCKET[/PREFIX]` (plain HTTP, as coop's S3
    /// port is unless a proxy fronts it) or `http(s)://HOST[:PORT]/BUCKET[/PREFIX]`.
    pub fn parse(url: &str, access_key: &str, secret_key: &str) -> Result<Self, S3Error> {
        let bad = || S3Error::BadUrl(url.to_owned());
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("s3://") {
            ("http", rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            ("http", rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            ("https", rest)
        } else {
            return Err(bad());
        };
        let (host, path) = rest.split_once('/').ok_or_else(bad)?;
        let path = path.trim_matches('/');
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if host.is_empty() || bucket.is_empty() || host.contains(['@', '?', '#']) {
            return Err(bad());
        }
        Ok(S3Location {
            endpoint: format!("{scheme}://{host}"),
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            region: "us-east-1".to_owned(),
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
        })
    }

    /// The target as a URL, for people: no secrets in it.
    pub fn url(&self) -> String {
        let host = self
            .endpoint
            .split_once("://")
            .map_or(self.endpoint.as_str(), |(_, h)| h);
        if self.prefix.is_empty() {
            format!("s3://{host}/{}", self.bucket)
        } else {
            format!("s3://{host}/{}/{}", self.bucket, self.prefix)
        }
    }

    fn host(&self) -> &str {
        self.endpoint
            .split_once("://")
            .map_or(self.endpoint.as_str(), |(_, h)| h)
    }

    /// The object key of `name` (relative to the prefix).
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }
}

/// An S3 client for one location.
#[derive(Clone, Debug)]
pub struct S3Client {
    location: S3Location,
    http: reqwest::Client,
}

/// One listed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The key relative to the location's prefix.
    pub name: String,
    pub size: u64,
}

impl S3Client {
    pub fn new(location: S3Location) -> Result<Self, S3Error> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| S3Error::Unreachable {
                endpoint: location.endpoint.clone(),
                reason: e.to_string(),
            })?;
        Ok(S3Client { location, http })
    }

    pub fn location(&self) -> &S3Location {
        &self.location
    }

    /// Stores `body` at `name`.
    pub async fn put(&self, name: &str, body: Bytes) -> Result<(), S3Error> {
        let key = self.location.key(name);
        self.send("PUT", &key, &[], body, None).await.map(drop)
    }

    /// The object at `name`, whole.
    pub async fn get(&self, name: &str) -> Result<Bytes, S3Error> {
        let key = self.location.key(name);
        self.send("GET", &key, &[], Bytes::new(), None).await
    }

    /// `length` bytes of the object at `name` from `offset`.
    pub async fn get_range(&self, name: &str, offset: u64, length: u64) -> Result<Bytes, S3Error> {
        let key = self.location.key(name);
        let range = format!("bytes={offset}-{}", offset + length.max(1) - 1);
        self.send("GET", &key, &[], Bytes::new(), Some(range)).await
    }

    /// Deletes the object at `name`; deleting what is not there is fine.
    pub async fn delete(&self, name: &str) -> Result<(), S3Error> {
        let key = self.location.key(name);
        match self.send("DELETE", &key, &[], Bytes::new(), None).await {
            Ok(_) | Err(S3Error::NotFound(_)) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Whether the bucket answers (it must exist; the client does not
    /// create it).
    pub async fn check_bucket(&self) -> Result<(), S3Error> {
        self.send(
            "GET",
            "",
            &[("list-type", "2".into()), ("max-keys", "1".into())],
            Bytes::new(),
            None,
        )
        .await
        .map(drop)
    }

    /// Every object under `dir` (relative to the prefix; `""` for all),
    /// names relative to the prefix.
    pub async fn list(&self, dir: &str) -> Result<Vec<Listed>, S3Error> {
        let prefix = match (self.location.prefix.is_empty(), dir.is_empty()) {
            (true, _) => dir.to_owned(),
            (false, true) => format!("{}/", self.location.prefix),
            (false, false) => format!("{}/{dir}", self.location.prefix),
        };
        let strip = if self.location.prefix.is_empty() {
            0
        } else {
            self.location.prefix.len() + 1
        };
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("list-type", "2".to_owned()),
                ("max-keys", PAGE.to_string()),
                ("prefix", prefix.clone()),
            ];
            if let Some(token) = &token {
                query.push(("continuation-token", token.clone()));
            }
            let body = self.send("GET", "", &query, Bytes::new(), None).await?;
            let text = String::from_utf8_lossy(&body);
            let page = parse_listing(&text)?;
            for (key, size) in page.contents {
                if let Some(name) = key.get(strip..) {
                    found.push(Listed {
                        name: name.to_owned(),
                        size,
                    });
                }
            }
            match page.next {
                Some(next) if page.truncated => token = Some(next),
                _ => return Ok(found),
            }
        }
    }

    async fn send(
        &self,
        method: &'static str,
        key: &str,
        query: &[(&str, String)],
        body: Bytes,
        range: Option<String>,
    ) -> Result<Bytes, S3Error> {
        let loc = &self.location;
        let path = if key.is_empty() {
            format!("/{}", uri_encode(&loc.bucket, false))
        } else {
            format!(
                "/{}/{}",
                uri_encode(&loc.bucket, false),
                uri_encode(key, false)
            )
        };
        let mut pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
            .collect();
        pairs.sort();
        let canonical_query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let payload_hash = hex(&Sha256::digest(&body));
        let now = amz_date(SystemTime::now());
        let mut headers = vec![
            ("host".to_owned(), loc.host().to_owned()),
            ("x-amz-content-sha256".to_owned(), payload_hash.clone()),
            ("x-amz-date".to_owned(), now.clone()),
        ];
        if let Some(range) = &range {
            headers.push(("range".to_owned(), range.clone()));
        }
        headers.sort();
        let authorization = authorization(
            &Signing {
                method,
                path: &path,
                query: &canonical_query,
                headers: &headers,
                payload_hash: &payload_hash,
                amz_date: &now,
                region: &loc.region,
            },
            &loc.access_key,
            &loc.secret_key,
        );
        let url = if canonical_query.is_empty() {
            format!("{}{path}", loc.endpoint)
        } else {
            format!("{}{path}?{canonical_query}", loc.endpoint)
        };
        let method_value =
            reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| S3Error::Unreachable {
                endpoint: loc.endpoint.clone(),
                reason: e.to_string(),
            })?;
        let mut request = self
            .http
            .request(method_value, &url)
            .header("authorization", authorization)
            .header("x-amz-content-sha256", &payload_hash)
            .header("x-amz-date", &now);
        if let Some(range) = range {
            request = request.header("range", range);
        }
        if method == "PUT" {
            request = request.body(body);
        }
        let response = request.send().await.map_err(|e| S3Error::Unreachable {
            endpoint: loc.endpoint.clone(),
            reason: e.to_string(),
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| S3Error::Unreachable {
            endpoint: loc.endpoint.clone(),
            reason: format!("the answer broke off: {e}"),
        })?;
        if status.is_success() {
            return Ok(bytes);
        }
        let text = String::from_utf8_lossy(&bytes);
        let code = between(&text, "<Code>", "</Code>").unwrap_or_default();
        if status.as_u16() == 404 && (code.is_empty() || code == "NoSuchKey") {
            return Err(S3Error::NotFound(key.to_owned()));
        }
        Err(S3Error::Refused {
            method,
            key: if key.is_empty() {
                loc.bucket.clone()
            } else {
                key.to_owned()
            },
            status: status.as_u16(),
            code: if code.is_empty() {
                status.canonical_reason().unwrap_or("error").to_owned()
            } else {
                xml_unescape(&code)
            },
            message: xml_unescape(&between(&text, "<Message>", "</Message>").unwrap_or_default()),
        })
    }
}

/// What a signature covers.
struct Signing<'a> {
    method: &'a str,
    /// Already URI-encoded.
    path: &'a str,
    /// Canonical (sorted, encoded) query string.
    query: &'a str,
    /// Lower-case names, sorted, values trimmed.
    headers: &'a [(String, String)],
    payload_hash: &'a str,
    /// `YYYYMMDDTHHMMSSZ`.
    amz_date: &'a str,
    region: &'a str,
}

/// The `Authorization` header of a SigV4 request to S3.
fn authorization(s: &Signing<'_>, access_key: &str, secret_key: &str) -> String {
    let canonical_headers: String = s
        .headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let signed_headers = s
        .headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        s.method, s.path, s.query, s.payload_hash
    );
    let day = &s.amz_date[..8];
    let scope = format!("{day}/{}/s3/aws4_request", s.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        s.amz_date,
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret_key}").as_bytes(), day.as_bytes());
    for part in [s.region, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
    )
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// RFC 3986 encoding as SigV4 wants it: unreserved characters kept, `/`
/// kept in paths unless `slash` says to encode it.
fn uri_encode(text: &str, slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte))
            }
            b'/' if !slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `time` as SigV4's `YYYYMMDDTHHMMSSZ`.
fn amz_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// One page of ListObjectsV2.
struct ListingPage {
    contents: Vec<(String, u64)>,
    truncated: bool,
    next: Option<String>,
}

fn parse_listing(xml: &str) -> Result<ListingPage, S3Error> {
    if !xml.contains("<ListBucketResult") {
        return Err(S3Error::BadListing(xml.chars().take(200).collect()));
    }
    let mut contents = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<Contents>") {
        let after = &rest[start + "<Contents>".len()..];
        let end = after
            .find("</Contents>")
            .ok_or_else(|| S3Error::BadListing("an unclosed <Contents>".into()))?;
        let entry = &after[..end];
        let key = between(entry, "<Key>", "</Key>")
            .ok_or_else(|| S3Error::BadListing("an entry without a <Key>".into()))?;
        let size = between(entry, "<Size>", "</Size>")
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| S3Error::BadListing(format!("no size for `{key}`")))?;
        contents.push((xml_unescape(&key), size));
        rest = &after[end..];
    }
    Ok(ListingPage {
        contents,
        truncated: between(xml, "<IsTruncated>", "</IsTruncated>").as_deref() == Some("true"),
        next: between(xml, "<NextContinuationToken>", "</NextContinuationToken>")
            .map(|t| xml_unescape(&t)),
    })
}

fn between(text: &str, open: &str, close: &str) -> Option<String> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(text[start..end].to_owned())
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of AWS's "Signature Calculations for the
    /// Authorization Header (Single Chunk)": GET /test.txt with a range.
    #[test]
    fn a_get_is_signed_as_aws_documents() {
        let empty = hex(&Sha256::digest(b""));
        let headers = vec![
            (
                "host".to_owned(),
                "examplebucket.s3.amazonaws.com".to_owned(),
            ),
            ("range".to_owned(), "bytes=0-9".to_owned()),
            ("x-amz-content-sha256".to_owned(), empty.clone()),
            ("x-amz-date".to_owned(), "20130524T000000Z".to_owned()),
        ];
        let auth = authorization(
            &Signing {
                method: "GET",
                path: "/test.txt",
                query: "",
                headers: &headers,
                payload_hash: &empty,
                amz_date: "20130524T000000Z",
                region: "us-east-1",
            },
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn dates_and_targets_are_read() {
        assert_eq!(
            amz_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600)),
            "20130524T000000Z"
        );
        let loc = S3Location::parse("s3://127.0.0.1:9000/backups/home/", "k", "s").unwrap();
        assert_eq!(loc.endpoint, "http://127.0.0.1:9000");
        assert_eq!(
            (loc.bucket.as_str(), loc.prefix.as_str()),
            ("backups", "home")
        );
        assert_eq!(loc.key("config"), "home/config");
        assert_eq!(loc.url(), "s3://127.0.0.1:9000/backups/home");
        assert!(format!("{loc:?}").contains("backups") && !format!("{loc:?}").contains("\"s\""));
        for bad in ["ftp://x/b", "s3://host", "s3:///bucket", "s3://u@host/b"] {
            assert!(S3Location::parse(bad, "k", "s").is_err(), "{bad}");
        }
    }

    #[test]
    fn listings_are_parsed_with_escapes_and_pages() {
        let xml = "<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>true</IsTruncated>\
            <Contents><Key>p/data/ab/a&amp;b</Key><Size>12</Size></Contents>\
            <Contents><Key>p/config</Key><ETag>x</ETag><Size>3</Size></Contents>\
            <NextContinuationToken>t1</NextContinuationToken></ListBucketResult>";
        let page = parse_listing(xml).unwrap();
        assert_eq!(
            page.contents,
            vec![("p/data/ab/a&b".to_owned(), 12), ("p/config".to_owned(), 3)]
        );
        assert!(page.truncated);
        assert_eq!(page.next.as_deref(), Some("t1"));
        assert!(parse_listing("<Error/>").is_err());
    }
}
