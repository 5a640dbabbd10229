//! The REST API under `/v1` (axum), its OpenAPI document, Prometheus
//! metrics and the web console. The API is the product: the CLI and the
//! console are clients of it. Handlers stay thin; they read the local
//! replica of the control plane and write through it.

mod auth;
pub mod backups;
mod cloud;
pub mod compute;
mod console;
mod error;
pub mod events;
pub mod history;
mod metrics;
pub mod networks;
pub mod objects;
mod openapi;
mod peers;
mod storage;
mod terminal;
mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::routing::{get, post, put};
use tokio::net::TcpListener;

use coop_identity::{CloudId, PeerKey};
use coop_mesh::Mesh;
use coop_orchestra::Orchestra;
use coop_state::ControlPlane;
use coop_store::{HealthBook, LocalDisks, StoreMetrics, Stripes};

pub use cloud::{BrandView, ConfigValue, InviteCreated, InviteRequest, RevokeResult, StatusView};
pub use error::ApiError;
pub use openapi::openapi_json;
pub use tokens::{TokenCreated, TokenView};

/// Everything a handler may need; cloned into every request.
#[derive(Clone)]
pub struct AppState {
    pub key: PeerKey,
    pub cloud: CloudId,
    pub control: ControlPlane,
    pub mesh: Mesh,
    pub started: Instant,
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) stripes: Option<Stripes>,
    pub(crate) disks: Option<LocalDisks>,
    pub(crate) store_metrics: Option<Arc<StoreMetrics>>,
    pub(crate) health: Arc<HealthBook>,
    pub(crate) compute: Option<Orchestra>,
    /// The private networks' data plane, for its counters.
    pub(crate) networks: Option<coop_net::Forwarder>,
    /// What this peer saw happen to the others (see [`events`]).
    pub(crate) events: Arc<events::EventLog>,
    /// What this peer did itself: repairs, restarts (see [`events`]).
    pub(crate) actions: Arc<events::EventLog>,
    /// The last hour of this peer's load (see [`history`]).
    pub(crate) history: Arc<history::History>,
    /// What the S3 front served, for the history.
    pub(crate) s3_counters: Option<Arc<coop_types::S3Counters>>,
    /// The cloud's backups, as this peer runs them.
    pub(crate) backups: Option<coop_backup::Backups>,
}

impl AppState {
    pub fn new(key: PeerKey, cloud: CloudId, control: ControlPlane, mesh: Mesh) -> Self {
        AppState {
            key,
            cloud,
            control,
            mesh,
            started: Instant::now(),
            metrics: Arc::new(metrics::Metrics::new()),
            stripes: None,
            disks: None,
            store_metrics: None,
            health: Arc::default(),
            compute: None,
            networks: None,
            events: Arc::default(),
            actions: Arc::default(),
            history: Arc::default(),
            s3_counters: None,
            backups: None,
        }
    }

    /// Lets storage endpoints and metrics see this peer's storage, with
    /// the health counts it keeps.
    pub fn with_storage(
        mut self,
        stripes: Stripes,
        disks: LocalDisks,
        metrics: Arc<StoreMetrics>,
        health: Arc<HealthBook>,
    ) -> Self {
        self.stripes = Some(stripes);
        self.disks = Some(disks);
        self.store_metrics = Some(metrics);
        self.health = health;
        self
    }
}

impl AppState {
    /// Lets template and container endpoints and metrics use this peer's
    /// compute service.
    pub fn with_compute(mut self, compute: Orchestra) -> Self {
        self.compute = Some(compute);
        self
    }

    /// The log [`events::watch_peers`] fills, shown at `/v1/events`.
    pub fn event_log(&self) -> Arc<events::EventLog> {
        self.events.clone()
    }

    /// Lists this peer's own actions (noted by its storage upkeep and
    /// compute service) at `/v1/events`, and answers other peers'
    /// `coop/events/1` from them.
    pub fn with_actions(mut self, actions: Arc<events::EventLog>) -> Self {
        self.actions = actions;
        self
    }

    /// The service that answers other peers' `coop/events/1` calls.
    pub fn events_service(&self) -> events::EventsService {
        events::EventsService(self.actions.clone())
    }

    /// Counts the S3 front's requests into the history's samples.
    pub fn with_s3_counters(mut self, counters: Arc<coop_types::S3Counters>) -> Self {
        self.s3_counters = Some(counters);
        self
    }

    /// Serves `/v1/backups` from this peer's backup service.
    pub fn with_backups(mut self, backups: coop_backup::Backups) -> Self {
        self.backups = Some(backups);
        self
    }

    /// Shows the forwarder's counters in `/metrics`.
    pub fn with_networks(mut self, forwarder: coop_net::Forwarder) -> Self {
        self.networks = Some(forwarder);
        self
    }

    pub(crate) fn compute(&self) -> Result<Orchestra, ApiError> {
        self.compute
            .clone()
            .ok_or_else(|| ApiError::Unavailable("compute is not enabled on this peer".into()))
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/status", get(cloud::status))
        .route("/peers", get(peers::list))
        .route("/peers/{peer}/revoke", post(peers::revoke))
        .route("/peers/{peer}/path", get(peers::path))
        .route("/peers/{peer}/speed", post(peers::speed))
        .route("/invites", post(cloud::create_invite))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/config", get(cloud::get_config))
        .route(
            "/s3/keys",
            get(storage::list_keys).post(storage::create_key),
        )
        .route("/s3/keys/{id}", axum::routing::delete(storage::delete_key))
        .route(
            "/buckets",
            get(storage::list_buckets).post(storage::create_bucket),
        )
        .route(
            "/buckets/{name}",
            get(storage::show_bucket)
                .patch(storage::update_bucket)
                .delete(storage::delete_bucket),
        )
        .route("/buckets/{name}/grants/{key}", put(storage::set_grant))
        .route("/buckets/{name}/objects", get(objects::list))
        .route(
            "/buckets/{name}/objects/{*key}",
            get(objects::get).put(objects::put).delete(objects::remove),
        )
        .route("/storage", get(storage::status))
        .route("/events", get(events::list))
        .route("/history", get(history::show))
        .route(
            "/templates",
            get(compute::templates::list).post(compute::templates::import),
        )
        .route(
            "/templates/{name}",
            get(compute::templates::show).delete(compute::templates::remove),
        )
        .route("/compute", get(compute::containers::status))
        .route("/environments/plan", post(compute::environments::plan))
        .route(
            "/environments",
            get(compute::environments::list).post(compute::environments::create),
        )
        .route(
            "/environments/{name}",
            get(compute::environments::show).delete(compute::environments::remove),
        )
        .route(
            "/environments/{name}/scale",
            post(compute::environments::scale),
        )
        .route(
            "/environments/{name}/rollback",
            post(compute::environments::rollback),
        )
        .route(
            "/environments/{name}/restart",
            post(compute::environments::restart),
        )
        .route("/backups", get(backups::list).post(backups::create))
        .route(
            "/backups/{name}",
            get(backups::show).delete(backups::remove),
        )
        .route("/backups/{name}/run", post(backups::run))
        .route("/backups/{name}/snapshots", get(backups::snapshots))
        .route("/backups/{name}/restore", post(backups::restore))
        .route("/backups/{name}/check", post(backups::check))
        .route("/backups/{name}/key", get(backups::key))
        .route("/friends", get(backups::friends).post(backups::add_friend))
        .route("/friends/invites", post(backups::invite_friend))
        .route(
            "/friends/{name}",
            axum::routing::delete(backups::remove_friend),
        )
        .route("/networks", get(networks::list).post(networks::create))
        .route(
            "/networks/{name}",
            get(networks::show).delete(networks::remove),
        )
        .route(
            "/containers",
            get(compute::containers::list).post(compute::containers::run),
        )
        .route(
            "/containers/{name}",
            get(compute::containers::show).delete(compute::containers::remove),
        )
        .route("/containers/{name}/start", post(compute::containers::start))
        .route("/containers/{name}/stop", post(compute::containers::stop))
        .route(
            "/containers/{name}/restart",
            post(compute::containers::restart),
        )
        .route("/containers/{name}/logs", get(compute::containers::logs))
        .route("/containers/{name}/stats", get(compute::containers::stats))
        .route("/containers/{name}/exec", post(compute::containers::exec))
        .route(
            "/config/{key}",
            put(cloud::set_config).delete(cloud::delete_config),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .route("/openapi.json", get(openapi::serve))
        .route("/brand", get(cloud::brand))
        .route("/brand/logo", get(cloud::brand_logo))
        // Its token comes as a WebSocket subprotocol, checked by itself.
        .route("/containers/{name}/terminal", get(terminal::terminal));
    Router::new()
        .nest("/v1", v1)
        .route("/metrics", get(metrics::serve))
        .route("/", get(console::page))
        .route("/console/{*file}", get(console::file))
        .fallback(error::not_found)
        .with_state(state)
}

/// Binds the API listener early, so `coop up` fails fast on a busy port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves on an already bound listener until `shutdown` resolves.
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The hash under which an API token is stored in the control plane.
pub fn token_hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}
