//! The S3 API of a coop peer, over the erasure-coded store.
//!
//! [`s3s`] parses requests, checks SigV4 signatures (headers, presigned
//! URLs and `aws-chunked` streaming bodies) and renders XML; this crate
//! decides: who may do what ([`access`]), where bucket and object metadata
//! live (the control plane, so every peer agrees), and how bytes become
//! blocks and come back ([`body`]). Every peer serves the same S3 view of
//! the cloud; a request on any of them sees every write completed before it.
//!
//! Not here: the storage of shards (`coop-store`) and the CLI for keys and
//! buckets (`coop`).

mod access;
mod body;
mod buckets;
mod conditions;
mod errors;
mod host;
mod listing;
mod multipart;
mod objects;
mod service;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use service::{CoopS3, S3Limits};

/// Binds the S3 listener; a busy port fails here, before the agent joins.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves S3 on `listener` until `shutdown` resolves.
pub async fn serve_on(
    listener: TcpListener,
    s3: CoopS3,
    domains: Vec<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = service::router(Arc::new(s3), domains);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
