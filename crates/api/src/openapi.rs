//! The OpenAPI document at `/v1/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "coop", description = "The REST API of a coop peer: peers, invites, cloud settings, S3 keys, buckets, storage, templates, containers and environments."),
    paths(
        crate::cloud::status,
        crate::peers::list,
        crate::peers::revoke,
        crate::peers::path,
        crate::peers::speed,
        crate::cloud::create_invite,
        crate::cloud::get_config,
        crate::cloud::set_config,
        crate::cloud::delete_config,
        crate::cloud::brand,
        crate::cloud::brand_logo,
        crate::events::list,
        crate::history::show,
        crate::objects::list,
        crate::objects::put,
        crate::objects::get,
        crate::objects::remove,
        crate::tokens::list,
        crate::tokens::create,
        crate::tokens::revoke,
        crate::storage::list_keys,
        crate::storage::create_key,
        crate::storage::delete_key,
        crate::storage::list_buckets,
        crate::storage::create_bucket,
        crate::storage::show_bucket,
        crate::storage::update_bucket,
        crate::storage::delete_bucket,
        crate::storage::set_grant,
        crate::storage::status,
        crate::compute::templates::import,
        crate::compute::templates::list,
        crate::compute::templates::show,
        crate::compute::templates::remove,
        crate::compute::containers::status,
        crate::compute::containers::run,
        crate::compute::containers::list,
        crate::compute::containers::show,
        crate::compute::containers::start,
        crate::compute::containers::stop,
        crate::compute::containers::restart,
        crate::compute::containers::remove,
        crate::compute::containers::logs,
        crate::compute::containers::stats,
        crate::compute::containers::exec,
        crate::compute::environments::plan,
        crate::compute::environments::create,
        crate::compute::environments::list,
        crate::compute::environments::show,
        crate::compute::environments::remove,
        crate::compute::environments::scale,
        crate::compute::environments::rollback,
        crate::compute::environments::restart,
        crate::networks::create,
        crate::networks::list,
        crate::networks::show,
        crate::networks::remove,
        crate::backups::list,
        crate::backups::create,
        crate::backups::show,
        crate::backups::remove,
        crate::backups::snapshots,
        crate::backups::key,
        crate::backups::run,
        crate::backups::restore,
        crate::backups::check,
        crate::backups::invite_friend,
        crate::backups::add_friend,
        crate::backups::friends,
        crate::backups::remove_friend,
    ),
    components(schemas(
        coop_types::PeerView,
        coop_types::PeerState,
        coop_types::Connection,
        coop_types::PathReport,
        coop_types::PathLine,
        coop_types::NatReport,
        coop_types::NatMapping,
        coop_types::Sighting,
        coop_types::PathVerdict,
        coop_types::SpeedReport,
        crate::error::ErrorBody,
        coop_backup::RunSummary,
        coop_backup::RestoreSummary,
        coop_backup::Keep,
    )),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// The document as JSON text.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

pub(crate) async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
