//! Tests of the redb store: openraft's conformance suite, the apply rules,
//! durability across a reopen and snapshot transfer.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader, RaftSnapshotBuilder,
    StorageError, StorageIOError, StoredMembership, Vote,
};

use coop_identity::{Certificate, CertificateBody, CloudId};
use coop_types::PeerId;

use super::{
    FORMAT, LogStore, META, META_FORMAT, SM, StateMachine, StateStore, StoreError, put_value,
};
use crate::TypeConfig;
use crate::records::{
    CloudInfo, Command, CommandError, InviteRecord, PeerNode, PeerRecord, TokenRecord,
};

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("coop-state-{label}-{}-{n}", std::process::id()));
        // A leftover of an earlier run that had the same pid must not leak
        // state into this one.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir(path)
    }

    fn db(&self) -> PathBuf {
        self.0.join("state.redb")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// openraft's suite builds node ids from integers, which a `PeerId` is not,
// so it runs the same storage code under a config with `u64` node ids.
openraft::declare_raft_types!(
    SuiteConfig:
        D = Command,
        R = Result<(), CommandError>,
        NodeId = u64,
        Node = PeerNode,
        Entry = openraft::Entry<SuiteConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

struct SuiteBuilder;

impl StoreBuilder<SuiteConfig, LogStore<SuiteConfig>, StateMachine<SuiteConfig>, TempDir>
    for SuiteBuilder
{
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore<SuiteConfig>, StateMachine<SuiteConfig>), StorageError<u64>>
    {
        let dir = TempDir::new("suite");
        let store = StateStore::open(&dir.db()).map_err(|e| StorageIOError::write(&e))?;
        let log = store.log_store_of();
        let sm = store.state_machine_of();
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(SuiteBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}

fn log_id(index: u64) -> LogId<PeerId> {
    LogId::new(CommittedLeaderId::new(1, PeerId::default()), index)
}

fn normal(index: u64, command: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(command),
    }
}

fn cloud_id() -> CloudId {
    CloudId([9; 32])
}

fn peer_record(n: u8) -> PeerRecord {
    PeerRecord {
        cert: Certificate {
            body: CertificateBody {
                cloud: cloud_id(),
                peer: PeerId([n; 32]),
                name: format!("peer-{n}"),
                zone: "home".into(),
                roles: Vec::new(),
                issued_at: 100,
                expires_at: 100_000,
            },
            signature: Vec::new(),
        },
        joined_at: 100,
        addrs: vec![format!("10.0.0.{n}:7000")],
        revoked_at: None,
    }
}

fn cloud() -> CloudInfo {
    CloudInfo {
        id: cloud_id(),
        name: "home".into(),
        created_at: 100,
        founder: PeerId([1; 32]),
    }
}

fn init_cloud() -> Command {
    Command::InitCloud {
        cloud: cloud(),
        founder: peer_record(1),
    }
}

fn invite(n: u8) -> InviteRecord {
    InviteRecord {
        id: [n; 16],
        secret_hash: [n; 32],
        expires_at: 1_000,
        created_by: PeerId([1; 32]),
        created_at: 100,
        used_by: None,
    }
}

fn redeem(n: u8, secret: u8, peer: u8, now: u64) -> Command {
    Command::RedeemInvite {
        invite_id: [n; 16],
        secret_hash: [secret; 32],
        peer: peer_record(peer),
        now,
    }
}

fn set_config(key: &str, value: Option<&str>) -> Command {
    Command::SetConfig {
        key: key.into(),
        value: value.map(str::to_owned),
    }
}

/// A fresh store whose state machine is fed one command per log index.
pub(super) struct Harness {
    pub(super) store: StateStore,
    sm: StateMachine,
    next: u64,
    _dir: TempDir,
}

impl Harness {
    pub(super) fn new(label: &str) -> Self {
        let dir = TempDir::new(label);
        let store = StateStore::open(&dir.db()).expect("open the store");
        let sm = store.state_machine();
        Harness {
            store,
            sm,
            next: 0,
            _dir: dir,
        }
    }

    /// Closes the database and opens it again, as a restart of the peer does.
    pub(super) fn reopen(self) -> Self {
        let Harness {
            store,
            sm,
            next,
            _dir,
        } = self;
        drop((store, sm));
        let store = StateStore::open(&_dir.db()).expect("reopen the store");
        let sm = store.state_machine();
        Harness {
            store,
            sm,
            next,
            _dir,
        }
    }

    pub(super) async fn run(&mut self, command: Command) -> Result<(), CommandError> {
        self.next += 1;
        let mut responses = self
            .sm
            .apply([normal(self.next, command)])
            .await
            .expect("apply");
        assert_eq!(responses.len(), 1);
        responses.remove(0)
    }
}

#[tokio::test]
async fn init_cloud_once() {
    let mut h = Harness::new("init");
    assert_eq!(h.store.cloud().unwrap(), None);
    assert_eq!(h.run(init_cloud()).await, Ok(()));
    assert_eq!(h.store.cloud().unwrap(), Some(cloud()));
    assert_eq!(h.store.peers().unwrap(), vec![peer_record(1)]);
    assert_eq!(
        h.run(init_cloud()).await,
        Err(CommandError::AlreadyInitialized)
    );
    assert_eq!(h.store.last_applied_index().unwrap(), Some(2));
}

#[tokio::test]
async fn redeem_invite_rules() {
    let mut h = Harness::new("invite");
    h.run(init_cloud()).await.unwrap();
    h.run(Command::CreateInvite(invite(5))).await.unwrap();
    assert_eq!(h.store.invites().unwrap(), vec![invite(5)]);

    assert_eq!(
        h.run(redeem(6, 6, 2, 500)).await,
        Err(CommandError::InviteUnknown)
    );
    assert_eq!(
        h.run(redeem(5, 5, 2, 1_001)).await,
        Err(CommandError::InviteExpired)
    );
    assert_eq!(
        h.run(redeem(5, 7, 2, 500)).await,
        Err(CommandError::InviteSecretMismatch)
    );
    assert_eq!(
        h.run(redeem(5, 5, 1, 500)).await,
        Err(CommandError::PeerExists(PeerId([1; 32])))
    );
    // None of the refusals may have touched the invite.
    assert_eq!(h.store.invites().unwrap(), vec![invite(5)]);

    // The expiry instant itself is still valid.
    assert_eq!(h.run(redeem(5, 5, 2, 1_000)).await, Ok(()));
    let used = h.store.invites().unwrap();
    assert_eq!(used[0].used_by, Some(PeerId([2; 32])));
    assert_eq!(
        h.store.peer(&PeerId([2; 32])).unwrap(),
        Some(peer_record(2))
    );
    assert_eq!(
        h.run(redeem(5, 5, 3, 500)).await,
        Err(CommandError::InviteUsed)
    );
    assert_eq!(h.store.peer(&PeerId([3; 32])).unwrap(), None);
    // Replaying the create must not make the used invite fresh again.
    assert_eq!(
        h.run(Command::CreateInvite(invite(5))).await,
        Err(CommandError::InviteExists)
    );
    assert_eq!(h.store.invites().unwrap()[0].used_by, Some(PeerId([2; 32])));
}

#[tokio::test]
async fn peer_updates_and_revocation() {
    let mut h = Harness::new("peers");
    h.run(init_cloud()).await.unwrap();
    h.run(Command::CreateInvite(invite(4))).await.unwrap();
    h.run(redeem(4, 4, 3, 500)).await.unwrap();
    let ids: Vec<PeerId> = h
        .store
        .peers()
        .unwrap()
        .iter()
        .map(PeerRecord::id)
        .collect();
    assert_eq!(ids, vec![PeerId([1; 32]), PeerId([3; 32])], "sorted by id");

    let stranger = PeerId([8; 32]);
    let addrs = vec!["192.168.1.3:7000".to_owned()];
    assert_eq!(
        h.run(Command::UpdatePeerAddrs {
            peer: stranger,
            addrs: addrs.clone()
        })
        .await,
        Err(CommandError::PeerUnknown(stranger))
    );
    let three = PeerId([3; 32]);
    assert_eq!(
        h.run(Command::UpdatePeerAddrs {
            peer: three,
            addrs: addrs.clone()
        })
        .await,
        Ok(())
    );
    assert_eq!(h.store.peer(&three).unwrap().unwrap().addrs, addrs);

    assert_eq!(
        h.run(Command::RevokePeer {
            peer: stranger,
            at: 700
        })
        .await,
        Err(CommandError::PeerUnknown(stranger))
    );
    assert_eq!(
        h.run(Command::RevokePeer {
            peer: three,
            at: 700
        })
        .await,
        Ok(())
    );
    assert_eq!(h.store.peer(&three).unwrap().unwrap().revoked_at, Some(700));
    assert_eq!(
        h.run(Command::RevokePeer {
            peer: three,
            at: 800
        })
        .await,
        Err(CommandError::PeerRevoked(three))
    );
    assert_eq!(h.store.peer(&three).unwrap().unwrap().revoked_at, Some(700));
}

#[tokio::test]
async fn tokens_and_settings() {
    let mut h = Harness::new("config");
    let token = TokenRecord {
        hash: [7; 32],
        user: "admin".into(),
        created_by: PeerId([1; 32]),
        created_at: 100,
    };
    assert_eq!(h.run(Command::CreateToken(token.clone())).await, Ok(()));
    assert_eq!(h.store.token(&[7; 32]).unwrap(), Some(token.clone()));
    assert_eq!(h.store.token(&[6; 32]).unwrap(), None);
    assert_eq!(h.store.tokens().unwrap(), vec![token]);
    assert_eq!(
        h.run(Command::RevokeToken { hash: [6; 32] }).await,
        Err(CommandError::TokenUnknown)
    );
    assert_eq!(h.run(Command::RevokeToken { hash: [7; 32] }).await, Ok(()));
    assert_eq!(h.store.token(&[7; 32]).unwrap(), None);
    assert!(h.store.tokens().unwrap().is_empty());

    for bad in ["", "Upper", "with space", "slash/key", &"k".repeat(129)] {
        let refused = h.run(set_config(bad, Some("x"))).await;
        assert!(
            matches!(refused, Err(CommandError::InvalidConfig(_))),
            "`{bad}` was accepted: {refused:?}"
        );
    }
    let long = "v".repeat(4097);
    assert!(matches!(
        h.run(set_config("motd", Some(&long))).await,
        Err(CommandError::InvalidConfig(_))
    ));
    assert!(h.store.config().unwrap().is_empty());

    let longest_key = "k".repeat(128);
    let longest_value = "v".repeat(4096);
    assert_eq!(
        h.run(set_config("log.level-2_x", Some("debug"))).await,
        Ok(())
    );
    assert_eq!(
        h.run(set_config(&longest_key, Some(&longest_value))).await,
        Ok(())
    );
    let settings = h.store.config().unwrap();
    assert_eq!(settings.len(), 2);
    assert_eq!(settings["log.level-2_x"], "debug");
    assert_eq!(settings[&longest_key], longest_value);

    assert_eq!(h.run(set_config("log.level-2_x", None)).await, Ok(()));
    assert_eq!(h.run(set_config("never.set", None)).await, Ok(()));
    assert_eq!(
        h.store.config().unwrap().keys().collect::<Vec<_>>(),
        vec![&longest_key]
    );
}

#[tokio::test]
async fn batch_applies_in_order_and_notifies() {
    let mut h = Harness::new("batch");
    let mut applied = h.store.subscribe();
    assert_eq!(*applied.borrow_and_update(), 0);

    let members = Membership::new(vec![[PeerId([1; 32])].into_iter().collect()], None);
    let batch = vec![
        Entry {
            log_id: log_id(1),
            payload: EntryPayload::Blank,
        },
        normal(2, init_cloud()),
        normal(3, init_cloud()),
        Entry {
            log_id: log_id(4),
            payload: EntryPayload::Membership(members.clone()),
        },
        normal(5, set_config("zone", Some("eu"))),
    ];
    let responses = h.sm.apply(batch).await.unwrap();
    assert_eq!(
        responses,
        vec![
            Ok(()),
            Ok(()),
            Err(CommandError::AlreadyInitialized),
            Ok(()),
            Ok(())
        ]
    );
    assert!(applied.has_changed().unwrap());
    assert_eq!(*applied.borrow_and_update(), 5);
    assert_eq!(h.store.last_applied_index().unwrap(), Some(5));
    let (last, membership) = h.sm.applied_state().await.unwrap();
    assert_eq!(last, Some(log_id(5)));
    assert_eq!(membership, StoredMembership::new(Some(log_id(4)), members));
    assert_eq!(h.store.config().unwrap()["zone"], "eu");
}

#[tokio::test]
async fn state_survives_reopen() {
    let dir = TempDir::new("reopen");
    let vote = Vote::new(3, PeerId([1; 32]));
    let (applied, logged) = {
        let store = StateStore::open(&dir.db()).unwrap();
        assert!(!store.has_raft_state().unwrap());
        let mut log = store.log_store();
        let mut sm = store.state_machine();
        log.save_vote(&vote).await.unwrap();
        assert!(store.has_raft_state().unwrap());
        let entries = vec![
            normal(1, init_cloud()),
            normal(2, Command::CreateInvite(invite(5))),
            normal(3, set_config("zone", Some("eu"))),
        ];
        log.blocking_append(entries.clone()).await.unwrap();
        log.save_committed(Some(log_id(3))).await.unwrap();
        sm.apply(entries.clone()).await.unwrap();
        (sm.applied_state().await.unwrap(), entries)
    };

    let store = StateStore::open(&dir.db()).expect("reopen after drop");
    assert!(store.has_raft_state().unwrap());
    assert_eq!(*store.subscribe().borrow(), 3);
    assert_eq!(store.last_applied_index().unwrap(), Some(3));
    assert_eq!(store.cloud().unwrap(), Some(cloud()));
    assert_eq!(store.peers().unwrap(), vec![peer_record(1)]);
    assert_eq!(store.invites().unwrap(), vec![invite(5)]);
    assert_eq!(store.config().unwrap()["zone"], "eu");

    let mut log = store.log_store();
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(3)));
    assert_eq!(log.try_get_log_entries(1..4).await.unwrap(), logged);
    let mut sm = store.state_machine();
    assert_eq!(sm.applied_state().await.unwrap(), applied);
}

#[tokio::test]
async fn fresh_store_has_no_raft_state_until_a_vote() {
    let dir = TempDir::new("fresh");
    let store = StateStore::open(&dir.db()).unwrap();
    assert!(!store.has_raft_state().unwrap());
    assert_eq!(store.last_applied_index().unwrap(), None);
    assert_eq!(*store.subscribe().borrow(), 0);
    store
        .log_store()
        .save_vote(&Vote::new(1, PeerId([2; 32])))
        .await
        .unwrap();
    assert!(store.has_raft_state().unwrap());
}

#[tokio::test]
async fn snapshot_round_trip() {
    let mut leader = Harness::new("snap-leader");
    leader.run(init_cloud()).await.unwrap();
    leader.run(Command::CreateInvite(invite(5))).await.unwrap();
    leader.run(redeem(5, 5, 2, 500)).await.unwrap();
    leader
        .run(Command::CreateToken(TokenRecord {
            hash: [7; 32],
            user: "admin".into(),
            created_by: PeerId([1; 32]),
            created_at: 100,
        }))
        .await
        .unwrap();
    leader.run(set_config("zone", Some("eu"))).await.unwrap();

    let snapshot = leader
        .sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(5)));
    let again = leader
        .sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_ne!(snapshot.meta.snapshot_id, again.meta.snapshot_id);

    // The follower holds state of its own that the install must wipe.
    let mut follower = Harness::new("snap-follower");
    follower
        .run(set_config("stale", Some("yes")))
        .await
        .unwrap();
    let mut applied = follower.store.subscribe();

    let mut incoming = follower.sm.begin_receiving_snapshot().await.unwrap();
    assert!(incoming.get_ref().is_empty());
    *incoming = Cursor::new(snapshot.snapshot.get_ref().clone());
    follower
        .sm
        .install_snapshot(&snapshot.meta, incoming)
        .await
        .unwrap();

    let (a, b) = (&leader.store, &follower.store);
    assert_eq!(b.cloud().unwrap(), a.cloud().unwrap());
    assert_eq!(b.peers().unwrap(), a.peers().unwrap());
    assert_eq!(b.invites().unwrap(), a.invites().unwrap());
    assert_eq!(b.token(&[7; 32]).unwrap(), a.token(&[7; 32]).unwrap());
    assert_eq!(b.config().unwrap(), a.config().unwrap());
    assert!(!b.config().unwrap().contains_key("stale"));
    assert_eq!(
        follower.sm.applied_state().await.unwrap(),
        leader.sm.applied_state().await.unwrap()
    );
    assert_eq!(*applied.borrow_and_update(), 5);
    let current = follower.sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snapshot.meta);
    assert_eq!(current.snapshot.get_ref(), snapshot.snapshot.get_ref());

    // Data that does not match its metadata is refused, not half-installed.
    let mut wrong = snapshot.meta.clone();
    wrong.last_log_id = Some(log_id(9));
    let mut fresh = Harness::new("snap-mismatch");
    let refused = fresh
        .sm
        .install_snapshot(
            &wrong,
            Box::new(Cursor::new(snapshot.snapshot.get_ref().clone())),
        )
        .await;
    assert!(refused.is_err());
    assert_eq!(fresh.store.cloud().unwrap(), None);
}

#[tokio::test]
async fn corrupt_bytes_are_errors() {
    let h = Harness::new("corrupt");
    let txn = h.store.db.begin_write().unwrap();
    {
        let mut sm = txn.open_table(SM).unwrap();
        sm.insert("cloud", [0xff_u8, 0xff, 0xff].as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
    let err = h.store.cloud().unwrap_err();
    assert!(matches!(err, StoreError::Decode { .. }), "{err}");
    assert!(err.to_string().contains("cloud"), "{err}");
}

#[tokio::test]
async fn once_applies_a_request_at_most_once() {
    let mut h = Harness::new("once");
    h.run(init_cloud()).await.unwrap();
    h.run(Command::CreateInvite(invite(5))).await.unwrap();
    let once = |id: u8| Command::Once {
        id: [id; 16],
        command: Box::new(redeem(5, 5, 2, 500)),
    };
    // The first attempt redeems; a retry of the same request gets the same
    // answer instead of "already used"; another request is really refused.
    assert_eq!(h.run(once(1)).await, Ok(()));
    assert_eq!(h.run(once(1)).await, Ok(()));
    assert_eq!(h.run(once(2)).await, Err(CommandError::InviteUsed));
    assert_eq!(h.run(once(2)).await, Err(CommandError::InviteUsed));
    assert_eq!(h.store.peers().unwrap().len(), 2);
}

#[tokio::test]
async fn a_database_of_another_format_is_refused_at_open() {
    let dir = TempDir::new("format");
    {
        let store = StateStore::open(&dir.db()).unwrap();
        store
            .log_store()
            .save_vote(&Vote::new(1, PeerId([1; 32])))
            .await
            .unwrap();
    }
    // Reopening the same format is fine.
    drop(StateStore::open(&dir.db()).expect("same format"));
    // A database from before formats were numbered: used, but no format.
    {
        let db = redb::Database::create(dir.db()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().remove(META_FORMAT).unwrap();
        txn.commit().unwrap();
    }
    let err = StateStore::open(&dir.db())
        .err()
        .expect("format 1 is refused");
    assert!(matches!(err, StoreError::Format { found: 1, .. }), "{err}");
    assert!(err.to_string().contains("new data dir"), "{err}");
    // A future format.
    {
        let db = redb::Database::create(dir.db()).unwrap();
        let txn = db.begin_write().unwrap();
        put_value(
            &mut txn.open_table(META).unwrap(),
            META_FORMAT,
            &(FORMAT + 1),
        )
        .unwrap();
        txn.commit().unwrap();
    }
    let err = StateStore::open(&dir.db())
        .err()
        .expect("a newer format is refused");
    assert!(
        matches!(err, StoreError::Format { found, .. } if found == FORMAT + 1),
        "{err}"
    );
}
