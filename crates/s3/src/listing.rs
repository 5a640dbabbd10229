//! ListObjects (v1 and v2): prefix, delimiter, markers and continuation
//! tokens, over the control plane's object rows in key order.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use coop_state::after_all_with;

use crate::access::Need;
use crate::buckets::timestamp_ms;
use crate::errors::internal;
use crate::service::CoopS3;

/// S3's default and largest page.
const MAX_KEYS: usize = 1000;
/// One page of a listing (built by the control plane's store).
type Page = coop_state::ObjectPage;

/// Builds one page: keys under `prefix` after `after`, folding keys that
/// contain `delimiter` past the prefix into common prefixes.
fn page(
    s3: &CoopS3,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<String>,
    max: usize,
) -> S3Result<Page> {
    s3.store()
        .list_page(bucket, prefix, delimiter, after, max)
        .map_err(internal)
}

fn max_keys(requested: Option<i32>) -> S3Result<usize> {
    match requested {
        None => Ok(MAX_KEYS),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok((n as usize).min(MAX_KEYS)),
    }
}

/// Percent-encodes a key as S3 does for `encoding-type=url` (clients decode
/// with form rules, so `+` and space must be escaped too).
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(byte))
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

struct Encoder(bool);

impl Encoder {
    fn new(encoding: &Option<EncodingType>) -> S3Result<Self> {
        match encoding {
            None => Ok(Encoder(false)),
            Some(e) if e.as_str() == EncodingType::URL => Ok(Encoder(true)),
            Some(e) => Err(s3_error!(
                InvalidArgument,
                "Invalid Encoding Method specified in Request: {}",
                e.as_str()
            )),
        }
    }

    fn apply(&self, text: String) -> String {
        if self.0 { url_encode(&text) } else { text }
    }
}

fn contents(page: &mut Page, enc: &Encoder) -> Vec<Object> {
    std::mem::take(&mut page.objects)
        .into_iter()
        .map(|(key, object)| Object {
            e_tag: Some(ETag::Strong(object.etag)),
            key: Some(enc.apply(key)),
            last_modified: Some(timestamp_ms(object.modified_ms)),
            size: i64::try_from(object.size).ok(),
            storage_class: Some(ObjectStorageClass::from_static(
                ObjectStorageClass::STANDARD,
            )),
            ..Default::default()
        })
        .collect()
}

fn common_prefixes(page: &mut Page, enc: &Encoder) -> Vec<CommonPrefix> {
    std::mem::take(&mut page.prefixes)
        .into_iter()
        .map(|p| CommonPrefix {
            prefix: Some(enc.apply(p)),
        })
        .collect()
}

pub(crate) async fn list_v1(
    s3: &CoopS3,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let input = req.input;
    s3.bucket_for(&req.credentials, &input.bucket, Need::Read)
        .await?;
    let enc = Encoder::new(&input.encoding_type)?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let max = max_keys(input.max_keys)?;
    let marker = input.marker.clone().filter(|m| !m.is_empty());
    let mut page = page(
        s3,
        &input.bucket,
        &prefix,
        input.delimiter.as_deref(),
        marker.clone(),
        max,
    )?;
    // S3 sends NextMarker only with a delimiter; without one, clients use
    // the last key.
    let next_marker = (page.truncated && input.delimiter.is_some())
        .then(|| page.last.clone())
        .flatten()
        .map(|m| enc.apply(m));
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket),
        prefix: Some(enc.apply(prefix)),
        marker: Some(enc.apply(marker.unwrap_or_default())),
        max_keys: Some(max as i32),
        is_truncated: Some(page.truncated),
        contents: Some(contents(&mut page, &enc)),
        common_prefixes: Some(common_prefixes(&mut page, &enc)),
        delimiter: input.delimiter.map(|d| enc.apply(d)),
        next_marker,
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}

/// Continuation tokens are opaque to clients: the resume point, base64.
fn encode_token(resume: &str) -> String {
    data_encoding::BASE64URL_NOPAD.encode(resume.as_bytes())
}

fn decode_token(token: &str) -> S3Result<String> {
    data_encoding::BASE64URL_NOPAD
        .decode(token.as_bytes())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

pub(crate) async fn list_v2(
    s3: &CoopS3,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let input = req.input;
    s3.bucket_for(&req.credentials, &input.bucket, Need::Read)
        .await?;
    let enc = Encoder::new(&input.encoding_type)?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let max = max_keys(input.max_keys)?;
    let after = match &input.continuation_token {
        Some(token) => Some(decode_token(token)?),
        None => input.start_after.clone().filter(|s| !s.is_empty()),
    };
    let mut page = page(
        s3,
        &input.bucket,
        &prefix,
        input.delimiter.as_deref(),
        after,
        max,
    )?;
    // Resume after the last common prefix as a whole, not inside it.
    let next = page.truncated.then(|| {
        page.last.clone().map(|last| {
            if page.prefixes.last() == Some(&last) {
                encode_token(&after_all_with(&last))
            } else {
                encode_token(&last)
            }
        })
    });
    let key_count = page.objects.len() + page.prefixes.len();
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: Some(enc.apply(prefix)),
        max_keys: Some(max as i32),
        key_count: Some(key_count as i32),
        continuation_token: input.continuation_token,
        is_truncated: Some(page.truncated),
        next_continuation_token: next.flatten(),
        contents: Some(contents(&mut page, &enc)),
        common_prefixes: Some(common_prefixes(&mut page, &enc)),
        delimiter: input.delimiter.map(|d| enc.apply(d)),
        encoding_type: input.encoding_type,
        start_after: input.start_after.map(|s| enc.apply(s)),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_encode_as_clients_decode_them() {
        assert_eq!(url_encode("a/b c+d%e"), "a/b%20c%2Bd%25e");
        assert_eq!(url_encode("é"), "%C3%A9");
        assert!(after_all_with("photos/").as_str() > "photos/zzz");
        assert!(after_all_with("photos/").as_str() < "photos0");
    }
}
