//! A bucket as a backup source and a restore target.
//!
//! Each object becomes a file of the snapshot at `/BUCKET/KEY`, the key's
//! `/`s making directories, so `restic restore` gives people a plain tree
//! of their files. What a path cannot hold exactly is kept in extended
//! attributes of the file's node (`user.coop.key`, `user.coop.content-type`,
//! `user.coop.etag`, `user.coop.meta.NAME`), which a restore into a bucket
//! reads back: keys with empty, `.` or `..` parts (escaped in the path),
//! a key that is also a "folder" of other keys (its file gets a suffix),
//! the object's content type and user metadata.
//!
//! An object's file has the object's size and modification time, so the
//! next backup finds it unchanged in its parent snapshot and does not read
//! it again.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use bytes::{Buf, Bytes};
use futures::stream::{BoxStream, StreamExt};
use rustic_core::repofile::{Metadata, Node, NodeType};
use rustic_core::{ReadSource, ReadSourceEntry, ReadSourceOpen, RusticResult};
use tokio::runtime::Handle;

use md5::{Digest, Md5};

use coop_state::{BucketRecord, Command, ControlPlane, ObjectRecord, StateStore};
use coop_store::{BlockWriter, Stripes, WRITES_IN_FLIGHT, spans};

/// Blocks read ahead of the archiver while it chunks an object.
const READS_AHEAD: usize = 4;
/// Objects listed from the control plane per batch.
const LIST_BATCH: usize = 1000;

/// The extended attribute holding an object's exact key.
pub const KEY_ATTR: &str = "user.coop.key";
/// Its content type, when it has one.
pub const CONTENT_TYPE_ATTR: &str = "user.coop.content-type";
/// Its ETag as S3 gave it.
pub const ETAG_ATTR: &str = "user.coop.etag";
/// Each `x-amz-meta-NAME` header, by name.
pub const META_ATTR_PREFIX: &str = "user.coop.meta.";

/// One object to back up, with the snapshot path it goes to.
#[derive(Clone, Debug)]
struct Planned {
    path: PathBuf,
    key: String,
    object: ObjectRecord,
}

/// Every object of a bucket as it was when the backup started.
pub struct BucketSource {
    bucket: String,
    planned: Vec<Planned>,
    stripes: Stripes,
    store: StateStore,
    runtime: Handle,
    /// Objects that could not be read: rustic skips a file it cannot read
    /// with a warning, so the run counts them to fail honestly.
    unreadable: Arc<AtomicU64>,
}

impl BucketSource {
    /// Lists `bucket` now (later writes are not in this backup).
    pub fn new(
        bucket: &str,
        store: StateStore,
        stripes: Stripes,
        runtime: Handle,
    ) -> Result<Self, coop_state::StoreError> {
        let mut objects = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let batch = store.list_objects(bucket, "", after.as_deref(), LIST_BATCH)?;
            let full = batch.len() == LIST_BATCH;
            after = batch.last().map(|(k, _)| k.clone());
            objects.extend(batch);
            if !full {
                break;
            }
        }
        Ok(BucketSource {
            bucket: bucket.to_owned(),
            planned: plan(bucket, objects),
            stripes,
            store,
            runtime,
            unreadable: Arc::default(),
        })
    }

    /// The snapshot path of the whole bucket: `/BUCKET`.
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/{}", self.bucket))
    }

    /// How many objects the backup holds.
    pub fn objects(&self) -> usize {
        self.planned.len()
    }

    /// How many objects could not be read so far.
    pub fn unreadable(&self) -> u64 {
        self.unreadable.load(AtomicOrdering::Relaxed)
    }
}

/// The snapshot paths of `objects` (in key order), sorted as trees want
/// them: by path components, so each directory's entries come together
/// and in name order.
fn plan(bucket: &str, objects: Vec<(String, ObjectRecord)>) -> Vec<Planned> {
    let root = PathBuf::from(format!("/{bucket}"));
    let mut paths: Vec<(Vec<String>, String, ObjectRecord)> = objects
        .into_iter()
        .map(|(key, object)| (key.split('/').map(escape_part).collect(), key, object))
        .collect();
    // Directories any key needs; a file of the same name moves aside.
    let dirs: HashSet<Vec<String>> = paths
        .iter()
        .flat_map(|(parts, _, _)| (1..parts.len()).map(|n| parts[..n].to_vec()))
        .collect();
    let mut taken: HashSet<Vec<String>> = HashSet::new();
    for (parts, _, _) in &mut paths {
        if dirs.contains(parts.as_slice()) || taken.contains(parts.as_slice()) {
            let last = parts.len() - 1;
            let base = parts[last].clone();
            let mut n = 1;
            loop {
                parts[last] = format!("{base}%{n}");
                if !dirs.contains(parts.as_slice()) && !taken.contains(parts.as_slice()) {
                    break;
                }
                n += 1;
            }
        }
        taken.insert(parts.clone());
    }
    paths.sort_by(|a, b| compare_parts(&a.0, &b.0));
    paths
        .into_iter()
        .map(|(parts, key, object)| {
            let mut path = root.clone();
            path.extend(parts);
            Planned { path, key, object }
        })
        .collect()
}

fn compare_parts(a: &[String], b: &[String]) -> Ordering {
    a.iter()
        .map(String::as_bytes)
        .cmp(b.iter().map(String::as_bytes))
}

/// A part of a key as a file name: `%` is `%25`, an empty part `%`, `.`
/// and `..` are `%2E` and `%2E%2E`. The exact key is in the node's
/// attributes anyway; this keeps the tree valid and readable.
fn escape_part(part: &str) -> String {
    match part {
        "" => "%".to_owned(),
        "." => "%2E".to_owned(),
        ".." => "%2E%2E".to_owned(),
        _ => part.replace('%', "%25"),
    }
}

/// The key part a file name stands for (the inverse of [`escape_part`]
/// for names it made; the exact key is in the node's attributes anyway).
pub(crate) fn unescape_part(name: &str) -> String {
    match name {
        "%" => String::new(),
        "%2E" => ".".to_owned(),
        "%2E%2E" => "..".to_owned(),
        _ => name.replace("%25", "%"),
    }
}

/// The node of an object's file.
fn node_of(planned: &Planned) -> Node {
    let object = &planned.object;
    let time = rustic_core::jiff::Timestamp::from_millisecond(
        i64::try_from(object.modified_ms).unwrap_or(0),
    )
    .ok();
    let mut attrs: Vec<(String, &[u8])> = vec![
        (KEY_ATTR.to_owned(), planned.key.as_bytes()),
        (ETAG_ATTR.to_owned(), object.etag.as_bytes()),
    ];
    if let Some(content_type) = &object.content_type {
        attrs.push((CONTENT_TYPE_ATTR.to_owned(), content_type.as_bytes()));
    }
    for (name, value) in &object.metadata {
        attrs.push((format!("{META_ATTR_PREFIX}{name}"), value.as_bytes()));
    }
    // rustic does not export its attribute type, only restic's JSON form
    // of it: a name and a base64 value.
    let attrs = serde_json::Value::Array(
        attrs
            .into_iter()
            .map(|(name, value)| {
                serde_json::json!({ "name": name, "value": data_encoding::BASE64.encode(value) })
            })
            .collect(),
    );
    let meta = Metadata {
        mode: Some(0o644),
        mtime: time,
        ctime: time,
        size: object.size,
        extended_attributes: serde_json::from_value(attrs)
            .expect("restic's form of extended attributes"),
        ..Metadata::default()
    };
    let name = planned.path.file_name().unwrap_or_else(|| OsStr::new("%"));
    Node::new_node(name, NodeType::File, meta)
}

/// The attributes of a restored object, read back from its node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectAttributes {
    pub key: Option<String>,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

impl ObjectAttributes {
    pub fn of(node: &Node) -> Self {
        let mut found = ObjectAttributes::default();
        for attr in &node.meta.extended_attributes {
            let Some(value) = attr
                .value
                .as_ref()
                .and_then(|v| String::from_utf8(v.clone()).ok())
            else {
                continue;
            };
            if attr.name == KEY_ATTR {
                found.key = Some(value);
            } else if attr.name == CONTENT_TYPE_ATTR {
                found.content_type = Some(value);
            } else if let Some(name) = attr.name.strip_prefix(META_ATTR_PREFIX) {
                found.metadata.insert(name.to_owned(), value);
            }
        }
        found
    }
}

impl ReadSource for BucketSource {
    type Open = ObjectOpen;
    type Iter = std::vec::IntoIter<RusticResult<ReadSourceEntry<ObjectOpen>>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(Some(self.planned.iter().map(|p| p.object.size).sum()))
    }

    fn entries(&self) -> Self::Iter {
        self.planned
            .iter()
            .map(|planned| {
                Ok(ReadSourceEntry {
                    path: planned.path.clone(),
                    node: node_of(planned),
                    open: Some(ObjectOpen {
                        key: planned.key.clone(),
                        object: planned.object.clone(),
                        stripes: self.stripes.clone(),
                        store: self.store.clone(),
                        runtime: self.runtime.clone(),
                        unreadable: self.unreadable.clone(),
                    }),
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
    }
}

/// How to read one object.
pub struct ObjectOpen {
    key: String,
    object: ObjectRecord,
    stripes: Stripes,
    store: StateStore,
    runtime: Handle,
    unreadable: Arc<AtomicU64>,
}

impl ReadSourceOpen for ObjectOpen {
    type Reader = ObjectReader;

    fn open(self) -> RusticResult<ObjectReader> {
        let stream = self
            .stripes
            .read_stream(
                &self.store,
                spans(&self.object.blocks, &(0..self.object.size)),
                READS_AHEAD,
                false,
            )
            .boxed();
        Ok(ObjectReader {
            key: self.key,
            stream,
            current: Bytes::new(),
            runtime: self.runtime,
            unreadable: self.unreadable,
            failed: false,
        })
    }
}

/// An object's bytes as a blocking reader, for rustic's chunker.
pub struct ObjectReader {
    key: String,
    stream: BoxStream<'static, Result<Bytes, coop_store::BlockStreamError>>,
    current: Bytes,
    runtime: Handle,
    unreadable: Arc<AtomicU64>,
    failed: bool,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(err)) => {
                    if !self.failed {
                        self.failed = true;
                        self.unreadable.fetch_add(1, AtomicOrdering::Relaxed);
                    }
                    return Err(std::io::Error::other(format!(
                        "cannot read object `{}`: {err}",
                        self.key
                    )));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// Writes one object into a bucket: blocks as they come, then its record.
pub(crate) struct ObjectWriter {
    writer: BlockWriter,
    md5: Md5,
    size: u64,
}

impl ObjectWriter {
    pub(crate) fn new(stripes: &Stripes, bucket: &BucketRecord) -> Result<Self, String> {
        let layout = stripes
            .layout_for_bucket(bucket)
            .map_err(|e| format!("bucket {}'s policy: {e}", bucket.name))?;
        Ok(ObjectWriter {
            writer: BlockWriter::new(stripes, layout, bucket.zone_spread, WRITES_IN_FLIGHT),
            md5: Md5::new(),
            size: 0,
        })
    }

    pub(crate) async fn push(&mut self, chunk: &[u8]) -> Result<(), String> {
        self.md5.update(chunk);
        self.size += chunk.len() as u64;
        self.writer.push(chunk).await.map_err(|e| e.to_string())
    }

    /// Makes the object `key` of `bucket` (replacing one of that key).
    pub(crate) async fn finish(
        self,
        control: &ControlPlane,
        bucket: &str,
        key: &str,
        content_type: Option<String>,
        metadata: BTreeMap<String, String>,
    ) -> Result<u64, FinishError> {
        let written = self
            .writer
            .finish()
            .await
            .map_err(|e| FinishError::Store(e.to_string()))?;
        let object = ObjectRecord {
            size: self.size,
            etag: data_encoding::HEXLOWER.encode(&self.md5.finalize()),
            content_type,
            metadata,
            modified_ms: crate::unix_now_ms(),
            blocks: written.blocks,
            parts: Vec::new(),
        };
        control
            .write(Command::PutObject {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                object,
                stripes: written.stripes,
                now: crate::unix_now_ms() / 1000,
            })
            .await
            .map_err(FinishError::Refused)?;
        Ok(self.size)
    }
}

/// Why an object was not stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FinishError {
    #[error("{0}")]
    Store(String),
    #[error("{0}")]
    Refused(coop_state::WriteError),
}

/// The whole of `bytes` of an object (or a range of it), read into memory.
pub(crate) async fn read_object(
    stripes: &Stripes,
    store: &StateStore,
    object: &ObjectRecord,
    range: std::ops::Range<u64>,
) -> Result<Vec<u8>, String> {
    let mut stream = stripes
        .read_stream(store, spans(&object.blocks, &range), READS_AHEAD, false)
        .boxed();
    let mut out = Vec::with_capacity(usize::try_from(range.end - range.start).unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(size: u64) -> ObjectRecord {
        ObjectRecord {
            size,
            etag: "e".into(),
            content_type: None,
            metadata: BTreeMap::new(),
            modified_ms: 1_700_000_000_000,
            blocks: Vec::new(),
            parts: Vec::new(),
        }
    }

    fn paths(keys: &[&str]) -> Vec<String> {
        let objects = keys.iter().map(|k| ((*k).to_owned(), object(1))).collect();
        plan("b", objects)
            .into_iter()
            .map(|p| p.path.display().to_string())
            .collect()
    }

    #[test]
    fn keys_become_paths_grouped_by_directory() {
        assert_eq!(
            paths(&["a.txt", "a/x", "a/y", "a0", "b/c/d"]),
            ["/b/a/x", "/b/a/y", "/b/a.txt", "/b/a0", "/b/b/c/d"]
        );
    }

    #[test]
    fn keys_a_path_cannot_hold_are_escaped_or_moved_aside() {
        assert_eq!(
            paths(&["photos", "photos/", "photos/x", "a//b", "./c", "100%"]),
            [
                "/b/%2E/c",
                "/b/100%25",
                "/b/a/%/b",
                "/b/photos/%",
                "/b/photos/x",
                "/b/photos%1",
            ]
        );
    }

    #[test]
    fn attributes_carry_the_exact_key_and_metadata() {
        let mut record = object(3);
        record.content_type = Some("image/png".into());
        record.metadata.insert("camera".into(), "x100".into());
        let planned = Planned {
            path: PathBuf::from("/b/a/%"),
            key: "a/".into(),
            object: record,
        };
        let node = node_of(&planned);
        assert_eq!(node.meta.size, 3);
        let attrs = ObjectAttributes::of(&node);
        assert_eq!(attrs.key.as_deref(), Some("a/"));
        assert_eq!(attrs.content_type.as_deref(), Some("image/png"));
        assert_eq!(
            attrs.metadata.get("camera").map(String::as_str),
            Some("x100")
        );
    }
}
