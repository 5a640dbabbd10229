//! The apply rules of S3 records: reference counts of shared blocks,
//! multipart completion, and what deleting a bucket takes with it.

use std::collections::BTreeMap;

use coop_types::PeerId;

use super::tests::Harness;
use crate::objects::{
    BlockRef, BucketRecord, Completion, Grant, MIN_PART_SIZE, NewStripe, ObjectRecord, PartRecord,
    S3KeyRecord, ShardLocation, StripeLayout, StripeRecord, UploadRecord,
};
use crate::records::{Command, CommandError};

pub(super) fn key(id: &str) -> Command {
    Command::CreateS3Key(S3KeyRecord {
        id: id.into(),
        secret: "secret".into(),
        name: id.to_lowercase(),
        created_at: 1,
        create_bucket: true,
    })
}

pub(super) fn bucket(name: &str, owner: &str) -> Command {
    Command::CreateBucket(BucketRecord {
        name: name.into(),
        created_at: 1,
        policy: None,
        zone_spread: false,
        grants: BTreeMap::from([(owner.to_owned(), Grant::ALL)]),
        quota: None,
    })
}

pub(super) fn stripe(n: u8, len: u32) -> NewStripe {
    NewStripe {
        id: [n; 32],
        stripe: StripeRecord {
            layout: StripeLayout::Replicas { copies: 1 },
            len,
            shard_len: len,
            shards: vec![ShardLocation {
                peer: PeerId([9; 32]),
                disk: "d0".into(),
                checksum: [n; 32],
            }],
            refs: 7,
            dead_since: Some(3),
        },
    }
}

fn object(blocks: &[(u8, u32)]) -> ObjectRecord {
    ObjectRecord {
        size: blocks.iter().map(|(_, len)| u64::from(*len)).sum(),
        etag: "e".into(),
        content_type: None,
        metadata: BTreeMap::new(),
        modified_ms: 1,
        blocks: blocks
            .iter()
            .map(|(n, len)| BlockRef {
                id: [*n; 32],
                len: *len,
            })
            .collect(),
        parts: Vec::new(),
    }
}

pub(super) fn put(bucket: &str, key: &str, blocks: &[(u8, u32)], new: &[u8]) -> Command {
    Command::PutObject {
        bucket: bucket.into(),
        key: key.into(),
        object: object(blocks),
        stripes: new
            .iter()
            .map(|n| {
                let len = blocks.iter().find(|(b, _)| b == n).map_or(0, |(_, l)| *l);
                stripe(*n, len)
            })
            .collect(),
        now: 100,
    }
}

pub(super) fn refs(h: &Harness, n: u8) -> (u32, Option<u64>) {
    let s = h.store.stripe(&[n; 32]).unwrap().expect("stripe exists");
    (s.refs, s.dead_since)
}

#[tokio::test]
async fn shared_blocks_are_counted_and_die_with_their_last_object() {
    let mut h = Harness::new("s3-refs");
    h.run(key("CKA")).await.unwrap();
    h.run(bucket("photos", "CKA")).await.unwrap();
    // A writer's refs and dead marks are ignored: new stripes start at one.
    h.run(put("photos", "a", &[(1, 10), (2, 5)], &[1, 2]))
        .await
        .unwrap();
    assert_eq!(refs(&h, 1), (1, None));
    // A copy shares the blocks.
    h.run(put("photos", "b", &[(1, 10), (2, 5)], &[]))
        .await
        .unwrap();
    assert_eq!(refs(&h, 2), (2, None));
    // Overwriting `a` releases its blocks once.
    h.run(put("photos", "a", &[(3, 4)], &[3])).await.unwrap();
    assert_eq!(refs(&h, 1), (1, None));
    h.run(Command::DeleteObjects {
        bucket: "photos".into(),
        keys: vec!["b".into(), "never-there".into()],
        now: 200,
    })
    .await
    .unwrap();
    assert_eq!(refs(&h, 1), (0, Some(200)));
    assert_eq!(refs(&h, 3), (1, None));
    // A dead block cannot be shared again, and nothing changes.
    assert_eq!(
        h.run(put("photos", "c", &[(1, 10)], &[])).await,
        Err(CommandError::StripeGone)
    );
    assert_eq!(h.store.object("photos", "c").unwrap(), None);
    // Sizes must add up, buckets must exist.
    assert!(matches!(
        h.run(put("photos", "d", &[(4, 10)], &[])).await,
        Err(CommandError::StripeGone)
    ));
    let mut lying = put("photos", "d", &[(4, 10)], &[4]);
    if let Command::PutObject { object, .. } = &mut lying {
        object.size = 11;
    }
    assert!(matches!(
        h.run(lying).await,
        Err(CommandError::InvalidRecord(_))
    ));
    assert_eq!(
        h.run(put("nope", "d", &[(5, 1)], &[5])).await,
        Err(CommandError::BucketUnknown("nope".into()))
    );
}

#[tokio::test]
async fn listing_is_in_key_order_within_a_bucket() {
    let mut h = Harness::new("s3-list");
    h.run(key("CKA")).await.unwrap();
    h.run(bucket("aaa", "CKA")).await.unwrap();
    h.run(bucket("aaa-b", "CKA")).await.unwrap();
    for k in ["b/2", "a", "b/1", "é", "Z"] {
        h.run(put("aaa", k, &[], &[])).await.unwrap();
    }
    h.run(put("aaa-b", "x", &[], &[])).await.unwrap();
    let keys = |prefix: &str, after: Option<&str>, limit: usize| -> Vec<String> {
        h.store
            .list_objects("aaa", prefix, after, limit)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(keys("", None, 10), ["Z", "a", "b/1", "b/2", "é"]);
    assert_eq!(keys("b/", None, 10), ["b/1", "b/2"]);
    assert_eq!(keys("", Some("a"), 2), ["b/1", "b/2"]);
    assert_eq!(keys("b/", Some("b/1"), 10), ["b/2"]);
    assert_eq!(
        h.run(Command::DeleteBucket {
            name: "aaa".into(),
            now: 1
        })
        .await,
        Err(CommandError::BucketNotEmpty("aaa".into()))
    );
}

pub(super) fn part(number: u32, size: u64, block: u8) -> Command {
    Command::PutPart {
        upload: "u1".into(),
        part: PartRecord {
            number,
            size,
            etag: format!("etag{number}"),
            modified_ms: 1,
            blocks: vec![BlockRef {
                id: [block; 32],
                len: size as u32,
            }],
        },
        stripes: vec![stripe(block, size as u32)],
        now: 10,
    }
}

pub(super) fn complete(parts: &[(u32, &str)]) -> Command {
    Command::CompleteUpload {
        upload: "u1".into(),
        completion: Completion {
            parts: parts.iter().map(|(n, e)| (*n, (*e).to_owned())).collect(),
            etag: "multi-2".into(),
            modified_ms: 5,
        },
        now: 50,
    }
}

#[tokio::test]
async fn multipart_completion_checks_parts_and_keeps_only_the_chosen() {
    let mut h = Harness::new("s3-multipart");
    h.run(key("CKA")).await.unwrap();
    h.run(bucket("media", "CKA")).await.unwrap();
    h.run(Command::CreateUpload(UploadRecord {
        id: "u1".into(),
        bucket: "media".into(),
        key: "movie".into(),
        content_type: Some("video/mp4".into()),
        metadata: BTreeMap::new(),
        initiated_ms: 1,
        initiator: "CKA".into(),
    }))
    .await
    .unwrap();
    let big = MIN_PART_SIZE;
    h.run(part(1, big, 1)).await.unwrap();
    h.run(part(2, 10, 2)).await.unwrap();
    h.run(part(3, 7, 3)).await.unwrap();
    // Re-uploading a part replaces it and releases the old blocks.
    h.run(part(3, 8, 4)).await.unwrap();
    assert_eq!(refs(&h, 3), (0, Some(10)));
    assert_eq!(
        h.run(complete(&[(2, "etag2"), (1, "etag1")])).await,
        Err(CommandError::InvalidPartOrder)
    );
    assert_eq!(
        h.run(complete(&[(1, "etag1"), (2, "wrong")])).await,
        Err(CommandError::InvalidPart { part: 2 })
    );
    assert_eq!(
        h.run(complete(&[(1, "etag1"), (9, "etag9")])).await,
        Err(CommandError::InvalidPart { part: 9 })
    );
    assert_eq!(
        h.run(complete(&[(2, "etag2"), (3, "etag3")])).await,
        Err(CommandError::PartTooSmall { part: 2, size: 10 })
    );
    // Parts 1 and 2 make the object; part 3 is dropped with the upload.
    h.run(complete(&[(1, "etag1"), (2, "etag2")]))
        .await
        .unwrap();
    let movie = h.store.object("media", "movie").unwrap().expect("object");
    assert_eq!(movie.size, big + 10);
    assert_eq!(movie.etag, "multi-2");
    assert_eq!(movie.content_type.as_deref(), Some("video/mp4"));
    assert_eq!(refs(&h, 1), (1, None));
    assert_eq!(refs(&h, 4), (0, Some(50)));
    assert_eq!(h.store.upload("u1").unwrap(), None);
    assert!(h.store.parts("u1").unwrap().is_empty());
    assert_eq!(
        h.run(complete(&[(1, "etag1")])).await,
        Err(CommandError::UploadUnknown("u1".into()))
    );
}

#[tokio::test]
async fn deleting_a_bucket_aborts_its_uploads_and_a_key_takes_its_grants() {
    let mut h = Harness::new("s3-bucket");
    h.run(key("CKA")).await.unwrap();
    h.run(key("CKB")).await.unwrap();
    assert!(matches!(
        h.run(bucket("Bad_Name", "CKA")).await,
        Err(CommandError::InvalidRecord(_))
    ));
    assert_eq!(
        h.run(bucket("tmp", "CKX")).await,
        Err(CommandError::S3KeyUnknown("CKX".into()))
    );
    h.run(bucket("tmp", "CKA")).await.unwrap();
    assert_eq!(
        h.run(bucket("tmp", "CKB")).await,
        Err(CommandError::BucketExists("tmp".into()))
    );
    h.run(Command::SetGrant {
        bucket: "tmp".into(),
        key: "CKB".into(),
        grant: Some(Grant {
            read: true,
            write: false,
            owner: false,
        }),
    })
    .await
    .unwrap();
    h.run(Command::CreateUpload(UploadRecord {
        id: "u1".into(),
        bucket: "tmp".into(),
        key: "k".into(),
        content_type: None,
        metadata: BTreeMap::new(),
        initiated_ms: 1,
        initiator: "CKA".into(),
    }))
    .await
    .unwrap();
    h.run(part(1, 3, 7)).await.unwrap();
    h.run(Command::DeleteS3Key { id: "CKB".into() })
        .await
        .unwrap();
    let tmp = h.store.bucket("tmp").unwrap().expect("bucket");
    assert_eq!(tmp.grants.keys().collect::<Vec<_>>(), ["CKA"]);
    h.run(Command::DeleteBucket {
        name: "tmp".into(),
        now: 70,
    })
    .await
    .unwrap();
    assert_eq!(h.store.bucket("tmp").unwrap(), None);
    assert_eq!(h.store.upload("u1").unwrap(), None);
    assert_eq!(refs(&h, 7), (0, Some(70)));
}
