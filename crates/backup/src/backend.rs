//! A restic repository in an S3 bucket, as `rustic_core` reads and writes
//! it: the same layout as restic's S3 backend (`config`, `keys/ID`,
//! `index/ID`, `snapshots/ID`, `data/XX/ID` with `XX` the id's first two
//! hex digits), so `restic -r s3:...` opens what coop writes.
//!
//! rustic calls backends from its own threads and blocks on them; each call
//! here runs the S3 request on the node's tokio runtime and waits for it.
//! A failed request is tried again a few times (rustic writes every file
//! under its content's id, so a repeated write is harmless).

use std::time::Duration;

use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};
use tokio::runtime::Handle;

use crate::s3::{Listed, S3Client, S3Error};

/// Where a repository's files are kept: an S3 bucket, or a friend's.
pub trait RepoFiles: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The place, for people (no secrets).
    fn url(&self) -> String;
    fn put(&self, name: &str, body: Bytes) -> impl Future<Output = Result<(), S3Error>> + Send;
    fn get(&self, name: &str) -> impl Future<Output = Result<Bytes, S3Error>> + Send;
    fn get_range(
        &self,
        name: &str,
        offset: u64,
        length: u64,
    ) -> impl Future<Output = Result<Bytes, S3Error>> + Send;
    fn delete(&self, name: &str) -> impl Future<Output = Result<(), S3Error>> + Send;
    fn list(&self, dir: &str) -> impl Future<Output = Result<Vec<Listed>, S3Error>> + Send;
    /// Whether the place answers and may be written.
    fn check(&self) -> impl Future<Output = Result<(), S3Error>> + Send;
}

impl RepoFiles for S3Client {
    fn url(&self) -> String {
        self.location().url()
    }
    fn put(&self, name: &str, body: Bytes) -> impl Future<Output = Result<(), S3Error>> + Send {
        S3Client::put(self, name, body)
    }
    fn get(&self, name: &str) -> impl Future<Output = Result<Bytes, S3Error>> + Send {
        S3Client::get(self, name)
    }
    fn get_range(
        &self,
        name: &str,
        offset: u64,
        length: u64,
    ) -> impl Future<Output = Result<Bytes, S3Error>> + Send {
        S3Client::get_range(self, name, offset, length)
    }
    fn delete(&self, name: &str) -> impl Future<Output = Result<(), S3Error>> + Send {
        S3Client::delete(self, name)
    }
    fn list(&self, dir: &str) -> impl Future<Output = Result<Vec<Listed>, S3Error>> + Send {
        S3Client::list(self, dir)
    }
    fn check(&self) -> impl Future<Output = Result<(), S3Error>> + Send {
        S3Client::check_bucket(self)
    }
}

/// Attempts of one request before the error goes to rustic.
const ATTEMPTS: u32 = 4;
/// Wait before the first retry; doubled each time.
const FIRST_RETRY: Duration = Duration::from_millis(250);

/// A repository on S3 or at a friend's, for rustic.
#[derive(Clone, Debug)]
pub struct S3Backend<F: RepoFiles> {
    client: F,
    runtime: Handle,
}

impl<F: RepoFiles> S3Backend<F> {
    /// A backend whose requests run on `runtime` (call it from a thread
    /// that is not one of that runtime's workers: rustic blocks).
    pub fn new(client: F, runtime: Handle) -> Self {
        S3Backend { client, runtime }
    }

    fn name(tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        match tpe {
            FileType::Config => "config".to_owned(),
            FileType::Pack => format!("data/{}/{}", &hex[..2], &*hex),
            other => format!("{}/{}", other.dirname(), &*hex),
        }
    }

    /// Runs `request` with retries of what may pass (the endpoint
    /// unreachable, a 5xx), not of what will not (refused, missing).
    fn run<T, R, Fut>(&self, what: &str, request: R) -> RusticResult<T>
    where
        R: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, S3Error>>,
    {
        let mut wait = FIRST_RETRY;
        let mut attempt = 1;
        loop {
            match self.runtime.block_on(request()) {
                Ok(value) => return Ok(value),
                Err(err) if attempt < ATTEMPTS && transient(&err) => {
                    tracing::debug!(%err, attempt, "an S3 request failed; trying again");
                    std::thread::sleep(wait);
                    wait *= 2;
                    attempt += 1;
                }
                Err(err) => {
                    let kind = match err {
                        S3Error::NotFound(_) => ErrorKind::MissingInput,
                        _ => ErrorKind::Backend,
                    };
                    return Err(RusticError::with_source(
                        kind,
                        format!("{what} at {}", self.client.url()),
                        err,
                    ));
                }
            }
        }
    }
}

/// Whether trying the same request again may succeed.
fn transient(err: &S3Error) -> bool {
    match err {
        S3Error::Unreachable { .. } => true,
        S3Error::Refused { status, .. } => *status >= 500 || *status == 429,
        _ => false,
    }
}

impl<F: RepoFiles> ReadBackend for S3Backend<F> {
    fn location(&self) -> String {
        self.client.url()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        let dir = match tpe {
            FileType::Config => "config".to_owned(),
            other => format!("{}/", other.dirname()),
        };
        let listed = self.run("listing the repository", || self.client.list(&dir))?;
        if tpe == FileType::Config {
            return Ok(listed
                .into_iter()
                .filter(|l| l.name == "config")
                .map(|l| (Id::default(), u32::try_from(l.size).unwrap_or(u32::MAX)))
                .collect());
        }
        Ok(listed
            .into_iter()
            .filter_map(|l| {
                let id = l.name.rsplit('/').next()?.parse::<Id>().ok()?;
                Some((id, u32::try_from(l.size).unwrap_or(u32::MAX)))
            })
            .collect())
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let name = Self::name(tpe, id);
        self.run("reading a repository file", || self.client.get(&name))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let name = Self::name(tpe, id);
        self.run("reading part of a repository file", || {
            self.client
                .get_range(&name, u64::from(offset), u64::from(length))
        })
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        Self::name(tpe, id)
    }
}

impl<F: RepoFiles> WriteBackend for S3Backend<F> {
    fn create(&self) -> RusticResult<()> {
        self.run("checking the target bucket", || self.client.check())
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let name = Self::name(tpe, id);
        let parts = content.into_vec();
        let body = if parts.len() == 1 {
            parts.into_iter().next().unwrap_or_default()
        } else {
            Bytes::from(parts.concat())
        };
        self.run("writing a repository file", || {
            self.client.put(&name, body.clone())
        })
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let name = Self::name(tpe, id);
        self.run("removing a repository file", || self.client.delete(&name))
    }
}
