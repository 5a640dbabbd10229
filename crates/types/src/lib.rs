//! Plain data shared by several coop rooms: peer ids, peer status and the
//! wire shapes the API returns. Nothing here does I/O except reading the
//! clock and [`fs::usage`], the one filesystem query several rooms share;
//! every type here is serializable and cheap to clone.

mod bytes;
mod events;
pub mod fs;
mod net;
mod path;
mod peer;
mod resources;
mod storage;
mod time;

pub use bytes::human_bytes;
pub use events::{EVENTS_KEPT, EVENTS_WINDOW_SECS, EventLog, EventView};
pub use net::{Ipv4Subnet, NetworkId, SubnetError};
pub use path::{NatMapping, NatReport, PathLine, PathReport, PathVerdict, Sighting, SpeedReport};
pub use peer::{
    Connection, DiskStatus, MAX_STATUS_RTTS, PeerId, PeerIdParseError, PeerState, PeerStatus,
    PeerView, Role,
};
pub use resources::{Limits, Resources};
pub use storage::{
    BlockHealth, BucketPatch, BucketRequest, BucketView, DiskView, GrantView, S3Counters,
    S3KeyCreated, S3KeyRequest, S3KeyView, StorageView,
};
pub use time::{unix_now, unix_now_ms};
