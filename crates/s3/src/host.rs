//! Virtual-host style addressing: `bucket.<domain>[:port]` names a bucket;
//! any other host (an IP address, `localhost`, a peer's name) is path style.

use std::borrow::Cow;

use s3s::S3Result;
use s3s::host::{S3Host, VirtualHost};

/// The domains under which buckets are addressed as sub-domains.
pub(crate) struct CoopHost {
    domains: Vec<String>,
}

impl CoopHost {
    pub(crate) fn new(domains: Vec<String>) -> Self {
        let domains = domains
            .into_iter()
            .map(|d| d.trim_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect();
        CoopHost { domains }
    }

    /// The bucket a host name addresses, if it is `bucket.<domain>`.
    fn bucket_of<'a>(&self, name: &'a str) -> Option<&'a str> {
        self.domains.iter().find_map(|domain| {
            let bucket = name.strip_suffix(domain.as_str())?.strip_suffix('.')?;
            (!bucket.is_empty()).then_some(bucket)
        })
    }
}

/// The host without its port (`[::1]:7401` → `[::1]`).
fn without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..=h.len()]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

impl S3Host for CoopHost {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let name = without_port(host);
        match self.bucket_of(name) {
            Some(bucket) => Ok(VirtualHost::new(host).with_bucket(Cow::Borrowed(bucket))),
            None => Ok(VirtualHost::new(host)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_domains_name_buckets_and_the_rest_is_path_style() {
        let host = CoopHost::new(vec!["s3.example.org".into(), "localhost".into()]);
        assert_eq!(host.bucket_of("photos.s3.example.org"), Some("photos"));
        assert_eq!(host.bucket_of("photos.localhost"), Some("photos"));
        assert_eq!(host.bucket_of("s3.example.org"), None);
        assert_eq!(host.bucket_of("localhost"), None);
        assert_eq!(host.bucket_of("127.0.0.1"), None);
        assert_eq!(without_port("a.localhost:7401"), "a.localhost");
        assert_eq!(without_port("[::1]:7401"), "[::1]");
        assert_eq!(without_port("10.0.0.1"), "10.0.0.1");
    }
}
