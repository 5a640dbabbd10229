//! Bucket usage and quotas: what counts, what is refused, and that the
//! count survives a restart and a snapshot install.

use std::collections::BTreeMap;
use std::io::Cursor;

use openraft::RaftSnapshotBuilder;
use openraft::storage::RaftStateMachine;

use super::objects_tests::{bucket, complete, key, part, put, refs};
use super::tests::Harness;
use crate::objects::{MIN_PART_SIZE, UploadRecord};
use crate::records::{Command, CommandError};

const MIB: u64 = 1 << 20;

fn set_quota(bucket: &str, quota: Option<u64>) -> Command {
    Command::SetBucketQuota {
        bucket: bucket.into(),
        quota,
    }
}

fn delete(bucket: &str, keys: &[&str]) -> Command {
    Command::DeleteObjects {
        bucket: bucket.into(),
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        now: 300,
    }
}

/// A harness with key `CKA` and bucket `photos` capped at `quota` bytes.
async fn photos(label: &str, quota: Option<u64>) -> Harness {
    let mut h = Harness::new(label);
    h.run(key("CKA")).await.unwrap();
    h.run(bucket("photos", "CKA")).await.unwrap();
    h.run(set_quota("photos", quota)).await.unwrap();
    h
}

fn usage(h: &Harness) -> u64 {
    h.store.bucket_usage("photos").unwrap()
}

#[tokio::test]
async fn a_put_past_the_quota_is_refused_before_anything_changes() {
    let mut h = photos("quota-put", Some(100)).await;
    h.run(put("photos", "a", &[(1, 60)], &[1])).await.unwrap();
    assert_eq!(usage(&h), 60);
    assert_eq!(
        h.run(put("photos", "b", &[(2, 41)], &[2])).await,
        Err(CommandError::QuotaExceeded {
            bucket: "photos".into(),
            quota: 100,
            usage: 60,
            needed: 41,
        })
    );
    // Nothing of the refused write is recorded: its shards have no stripe
    // row, which is what the store's collection looks for.
    assert_eq!(h.store.object("photos", "b").unwrap(), None);
    assert_eq!(h.store.stripe(&[2; 32]).unwrap(), None);
    assert_eq!(usage(&h), 60);
    // Up to the quota exactly is fine.
    h.run(put("photos", "b", &[(2, 40)], &[2])).await.unwrap();
    assert_eq!(usage(&h), 100);
    // A bucket without a quota still counts.
    h.run(bucket("open", "CKA")).await.unwrap();
    h.run(put("open", "x", &[(3, 1000)], &[3])).await.unwrap();
    assert_eq!(h.store.bucket_usage("open").unwrap(), 1000);
    assert_eq!(usage(&h), 100);
}

#[test]
fn the_refusal_says_how_much_in_human_units() {
    let refusal = CommandError::QuotaExceeded {
        bucket: "photos".into(),
        quota: 500 * MIB,
        usage: 500 * MIB,
        needed: 3 * MIB,
    };
    let text = refusal.to_string();
    assert!(
        text.starts_with(
            "bucket `photos` is over its quota: 500.0 MiB used of 500.0 MiB, this write needs 3.0 MiB more"
        ),
        "{text}"
    );
    assert!(text.contains("coop bucket set photos --quota"), "{text}");
}

#[tokio::test]
async fn replacing_counts_the_difference_and_deleting_frees() {
    let mut h = photos("quota-replace", Some(100)).await;
    h.run(put("photos", "a", &[(1, 60)], &[1])).await.unwrap();
    h.run(put("photos", "b", &[(2, 40)], &[2])).await.unwrap();
    // Full: growing `a` by 10 does not fit, shrinking it does, and growing
    // it back to where it was fits again.
    assert!(matches!(
        h.run(put("photos", "a", &[(3, 70)], &[3])).await,
        Err(CommandError::QuotaExceeded {
            usage: 100,
            needed: 10,
            ..
        })
    ));
    h.run(put("photos", "a", &[(3, 50)], &[3])).await.unwrap();
    assert_eq!(usage(&h), 90);
    h.run(put("photos", "a", &[(4, 60)], &[4])).await.unwrap();
    assert_eq!(usage(&h), 100);
    // A copy shares blocks but counts its size again.
    assert!(matches!(
        h.run(put("photos", "c", &[(4, 60)], &[])).await,
        Err(CommandError::QuotaExceeded { needed: 60, .. })
    ));
    assert_eq!(refs(&h, 4), (1, None));
    h.run(delete("photos", &["b", "never-there"]))
        .await
        .unwrap();
    assert_eq!(usage(&h), 60);
    h.run(set_quota("photos", Some(120))).await.unwrap();
    h.run(put("photos", "c", &[(4, 60)], &[])).await.unwrap();
    assert_eq!(usage(&h), 120);
    assert_eq!(refs(&h, 4), (2, None));
    h.run(delete("photos", &["a", "c"])).await.unwrap();
    assert_eq!(usage(&h), 0);
    // A deleted bucket takes its count along; a new one starts at zero
    // without a quota.
    h.run(Command::DeleteBucket {
        name: "photos".into(),
        now: 400,
    })
    .await
    .unwrap();
    h.run(bucket("photos", "CKA")).await.unwrap();
    assert_eq!(usage(&h), 0);
    assert_eq!(h.store.bucket("photos").unwrap().unwrap().quota, None);
}

#[tokio::test]
async fn a_lowered_quota_blocks_growth_only() {
    let mut h = photos("quota-set", None).await;
    h.run(put("photos", "a", &[(1, 80)], &[1])).await.unwrap();
    // Lowering below what is stored is allowed and removes nothing.
    h.run(set_quota("photos", Some(50))).await.unwrap();
    assert_eq!(h.store.bucket("photos").unwrap().unwrap().quota, Some(50));
    assert!(h.store.object("photos", "a").unwrap().is_some());
    assert!(matches!(
        h.run(put("photos", "b", &[(2, 1)], &[2])).await,
        Err(CommandError::QuotaExceeded {
            quota: 50,
            usage: 80,
            needed: 1,
            ..
        })
    ));
    // Overwriting with less is not growth, even while over.
    h.run(put("photos", "a", &[(3, 70)], &[3])).await.unwrap();
    assert_eq!(usage(&h), 70);
    h.run(set_quota("photos", None)).await.unwrap();
    h.run(put("photos", "b", &[(2, 1)], &[2])).await.unwrap();
    assert_eq!(usage(&h), 71);
    assert_eq!(
        h.run(set_quota("nope", Some(1))).await,
        Err(CommandError::BucketUnknown("nope".into()))
    );
}

#[tokio::test]
async fn parts_count_while_uploading_and_the_object_once_complete() {
    let quota = 12 * MIB;
    let mut h = photos("quota-multipart", Some(quota)).await;
    h.run(put("photos", "small", &[(9, MIB as u32)], &[9]))
        .await
        .unwrap();
    h.run(Command::CreateUpload(UploadRecord {
        id: "u1".into(),
        bucket: "photos".into(),
        key: "movie".into(),
        content_type: None,
        metadata: BTreeMap::new(),
        initiated_ms: 1,
        initiator: "CKA".into(),
    }))
    .await
    .unwrap();
    let big = MIN_PART_SIZE;
    h.run(part(1, big, 1)).await.unwrap();
    h.run(part(2, big, 2)).await.unwrap();
    // The bucket's 1 MiB and the upload's 10 MiB leave room for 1 MiB.
    assert_eq!(
        h.run(part(3, big, 3)).await,
        Err(CommandError::QuotaExceeded {
            bucket: "photos".into(),
            quota,
            usage: MIB + 2 * big,
            needed: big,
        })
    );
    assert_eq!(h.store.stripe(&[3; 32]).unwrap(), None);
    // Parts are not the bucket's usage until the upload completes.
    assert_eq!(usage(&h), MIB);
    // Uploading a part again counts only the difference.
    h.run(part(2, big, 4)).await.unwrap();
    h.run(part(3, MIB, 5)).await.unwrap();
    // Completing is checked too: lowered by a byte, the object no longer fits.
    h.run(set_quota("photos", Some(quota - 1))).await.unwrap();
    let all = [(1, "etag1"), (2, "etag2"), (3, "etag3")];
    assert_eq!(
        h.run(complete(&all)).await,
        Err(CommandError::QuotaExceeded {
            bucket: "photos".into(),
            quota: quota - 1,
            usage: MIB,
            needed: 2 * big + MIB,
        })
    );
    assert!(h.store.upload("u1").unwrap().is_some());
    assert_eq!(h.store.parts("u1").unwrap().len(), 3);
    assert_eq!(refs(&h, 1), (1, None));
    h.run(set_quota("photos", Some(quota))).await.unwrap();
    h.run(complete(&all)).await.unwrap();
    assert_eq!(usage(&h), quota);
    assert_eq!(h.store.upload("u1").unwrap(), None);
}

#[tokio::test]
async fn usage_survives_a_restart_and_a_snapshot_install() {
    let mut h = photos("quota-restart", Some(1000)).await;
    h.run(put("photos", "a", &[(1, 300)], &[1])).await.unwrap();
    h.run(put("photos", "b", &[(2, 200)], &[2])).await.unwrap();
    h.run(delete("photos", &["a"])).await.unwrap();
    let mut h = h.reopen();
    assert_eq!(usage(&h), 200);
    h.run(put("photos", "c", &[(3, 50)], &[3])).await.unwrap();
    assert_eq!(usage(&h), 250);

    let snapshot = h
        .store
        .state_machine()
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    // The follower counted another bucket of the same name; the install
    // replaces its count with the leader's.
    let mut follower = photos("quota-follower", None).await;
    follower
        .run(put("photos", "z", &[(7, 999)], &[7]))
        .await
        .unwrap();
    let mut sm = follower.store.state_machine();
    let mut incoming = sm.begin_receiving_snapshot().await.unwrap();
    *incoming = Cursor::new(snapshot.snapshot.get_ref().clone());
    sm.install_snapshot(&snapshot.meta, incoming).await.unwrap();
    assert_eq!(usage(&follower), 250);
    assert_eq!(
        follower.store.bucket("photos").unwrap().unwrap().quota,
        Some(1000)
    );
    // And it goes on counting from there.
    assert!(matches!(
        follower.run(put("photos", "d", &[(8, 751)], &[8])).await,
        Err(CommandError::QuotaExceeded { usage: 250, .. })
    ));
}
