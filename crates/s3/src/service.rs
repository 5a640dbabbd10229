//! The `s3s` service: limits in front, SigV4 through the control plane's
//! keys, and the S3 trait implemented by the operation modules.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use s3s::dto::*;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3, S3Request, S3Response, S3Result};
use tokio::sync::Semaphore;

use coop_state::{ControlPlane, StateStore};
use coop_store::Stripes;

use crate::access::KeyAuth;
use crate::host::CoopHost;
use crate::{buckets, listing, multipart, objects};

/// Limits applied before a request reaches the S3 logic.
#[derive(Clone, Copy, Debug)]
pub struct S3Limits {
    /// The largest body of one request (a PUT or a part), in bytes. S3's
    /// own limit for a single PUT is 5 GiB.
    pub max_body_bytes: u64,
    /// Requests served at once; more get `503 SlowDown` so a burst cannot
    /// exhaust memory (each in-flight request holds a few blocks).
    pub max_in_flight: usize,
}

impl Default for S3Limits {
    fn default() -> Self {
        S3Limits {
            max_body_bytes: 5 << 30,
            max_in_flight: 256,
        }
    }
}

/// The S3 logic of one peer.
pub struct CoopS3 {
    pub(crate) control: ControlPlane,
    pub(crate) stripes: Stripes,
    pub(crate) limits: S3Limits,
    /// Requests and bytes served, for the console's charts.
    pub(crate) counters: Arc<coop_types::S3Counters>,
}

impl CoopS3 {
    pub fn new(control: ControlPlane, stripes: Stripes, limits: S3Limits) -> Self {
        CoopS3 {
            control,
            stripes,
            limits,
            counters: Arc::default(),
        }
    }

    /// What this front has served so far, updated as it serves.
    pub fn counters(&self) -> Arc<coop_types::S3Counters> {
        self.counters.clone()
    }

    pub(crate) fn store(&self) -> &StateStore {
        self.control.store()
    }
}

/// Shared by every request.
#[derive(Clone)]
struct Front {
    service: S3Service,
    slots: Arc<Semaphore>,
    max_body: u64,
    counters: Arc<coop_types::S3Counters>,
}

/// The HTTP app: limits, then `s3s`.
pub(crate) fn router(s3: Arc<CoopS3>, domains: Vec<String>) -> Router {
    let limits = s3.limits;
    let counters = s3.counters.clone();
    let auth = KeyAuth::new(s3.control.clone());
    let mut builder = S3ServiceBuilder::new(Handler(s3));
    builder.set_auth(auth);
    builder.set_host(CoopHost::new(domains));
    let front = Front {
        service: builder.build(),
        slots: Arc::new(Semaphore::new(limits.max_in_flight)),
        max_body: limits.max_body_bytes,
        counters,
    };
    Router::new().fallback(handle).with_state(front)
}

async fn handle(State(front): State<Front>, request: Request) -> Response {
    let Ok(_slot) = front.slots.clone().try_acquire_owned() else {
        return error_xml(
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "too many requests in flight on this peer; retry with backoff",
        );
    };
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > front.max_body) {
        return error_xml(
            StatusCode::BAD_REQUEST,
            "EntityTooLarge",
            &format!(
                "the request body is larger than the {} bytes this peer accepts in one request; use a multipart upload",
                front.max_body
            ),
        );
    }
    let request = request.map(s3s::Body::http_body_unsync);
    let answered = front.service.call(request).await;
    let sent = answered
        .as_ref()
        .ok()
        .and_then(|r| r.headers().get(http::header::CONTENT_LENGTH))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    front.counters.count(declared.unwrap_or(0), sent);
    match answered {
        Ok(response)
            if response.status().is_client_error() || response.status().is_server_error() =>
        {
            with_message(response.map(axum::body::Body::new)).await
        }
        Ok(response) => response.map(axum::body::Body::new),
        Err(err) => {
            tracing::warn!(error = ?err, "S3 request failed outside the S3 logic");
            error_xml(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "the request failed; see the peer's log",
            )
        }
    }
}

/// Error documents larger than this are passed through untouched.
const ERROR_BODY_MAX: usize = 64 * 1024;

/// `s3s` leaves `<Message>` out of errors it raises itself (bad signature,
/// bad bucket name, malformed XML); clients and people expect one, so a
/// short explanation of the code is added.
async fn with_message(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, ERROR_BODY_MAX).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let text = String::from_utf8_lossy(&bytes);
    let (Some(end), false) = (text.find("</Code>"), text.contains("<Message>")) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let code = text[..end].rsplit('>').next().unwrap_or("");
    let at = end + "</Code>".len();
    let fixed = format!(
        "{}<Message>{}</Message>{}",
        &text[..at],
        xml_escape(default_message(code)),
        &text[at..]
    );
    let mut response = Response::from_parts(parts, axum::body::Body::from(fixed));
    response.headers_mut().remove(http::header::CONTENT_LENGTH);
    response
}

/// What AWS says for the codes `s3s` raises without a message.
fn default_message(code: &str) -> &'static str {
    match code {
        "SignatureDoesNotMatch" => {
            "The request signature we calculated does not match the signature you provided. Check your key and signing method."
        }
        "InvalidAccessKeyId" => "The AWS access key Id you provided does not exist in our records.",
        "AccessDenied" => "Access Denied",
        "InvalidBucketName" => "The specified bucket is not valid.",
        "MalformedXML" => {
            "The XML you provided was not well-formed or did not validate against our published schema."
        }
        "RequestTimeTooSkewed" => {
            "The difference between the request time and the server's time is too large."
        }
        "MissingContentLength" => "You must provide the Content-Length HTTP header.",
        "NotImplemented" => {
            "A header or query you provided implies functionality that is not implemented."
        }
        "MethodNotAllowed" => "The specified method is not allowed against this resource.",
        "InvalidArgument" => "Invalid Argument",
        "InvalidRequest" => "Invalid Request",
        "InvalidURI" => "Couldn't parse the specified URI.",
        "KeyTooLongError" => "Your key is too long.",
        _ => "The request failed.",
    }
}

/// An S3 error document for failures decided before `s3s` runs.
fn error_xml(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message></Error>",
        xml_escape(message)
    );
    (
        status,
        [(http::header::CONTENT_TYPE, "application/xml")],
        body,
    )
        .into_response()
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The S3 trait object `s3s` calls; each operation lives in its module.
struct Handler(Arc<CoopS3>);

#[async_trait::async_trait]
impl S3 for Handler {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        buckets::create(&self.0, req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        buckets::head(&self.0, req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        buckets::list(&self.0, req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        buckets::delete(&self.0, req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        buckets::location(&self.0, req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        objects::put(&self.0, req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        objects::get(&self.0, req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        objects::head(&self.0, req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        objects::delete(&self.0, req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        objects::delete_many(&self.0, req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        objects::copy(&self.0, req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        listing::list_v1(&self.0, req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        listing::list_v2(&self.0, req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        multipart::create(&self.0, req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        multipart::upload_part(&self.0, req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        multipart::upload_part_copy(&self.0, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        multipart::complete(&self.0, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        multipart::abort(&self.0, req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        multipart::list_parts(&self.0, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        multipart::list_uploads(&self.0, req).await
    }
}
