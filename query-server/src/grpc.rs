//! The tonic adapter: `shotgun_cache.v1.QueryService` over the domain [`QueryService`].
//!
//! This file only converts (through `convert`), enforces per-call deadlines, and records per-rpc
//! metrics. Wire types do not go past it. It also holds the two pieces of gRPC plumbing that sit
//! in front of the service: the bearer-token interceptor and the layer that reports an oversized
//! request as `RESOURCE_EXHAUSTED`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use shotgun_cache_proto::v1 as pb;
use tonic::codegen::http;
use tonic::{Request, Response, Status};

use crate::coalesce::Load;
use crate::convert;
use crate::error::QueryError;
use crate::service::QueryService;

/// The gRPC face of the query service.
pub struct GrpcQueryService {
    svc: QueryService,
    /// The longest any unary call may run, whatever the client's deadline.
    call_cap: Duration,
    /// Counts the unary calls in flight (see `coalesce`).
    load: Load,
}

impl GrpcQueryService {
    pub(crate) fn new(svc: QueryService, call_cap: Duration, load: Load) -> GrpcQueryService {
        GrpcQueryService {
            svc,
            call_cap,
            load,
        }
    }
}

/// Parses a `grpc-timeout` header value (`<digits><unit>`, unit one of H M S m u n).
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The deadline of a call: the client's `grpc-timeout` (a little earlier, so this server answers
/// DEADLINE_EXCEEDED before tonic's own timer cancels the call), capped by the server's limit.
fn call_deadline(md: &tonic::metadata::MetadataMap, cap: Duration) -> Duration {
    let client = md
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map(|d| d.saturating_sub(Duration::from_millis(2)));
    match client {
        Some(d) => d.min(cap),
        None => cap,
    }
}

fn record(method: &'static str, started: Instant, code: tonic::Code) {
    metrics::histogram!("grpc_server_handling_seconds", "method" => method)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("grpc_server_handled_total", "method" => method, "code" => code_name(code))
        .increment(1);
}

/// The status code's name as gRPC spells it (a static string: no allocation per call).
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl GrpcQueryService {
    /// Runs one unary call under its deadline and records its metrics.
    async fn unary<T, F>(
        &self,
        method: &'static str,
        md: &tonic::metadata::MetadataMap,
        fut: F,
    ) -> Result<Response<T>, Status>
    where
        F: std::future::Future<Output = Result<T, QueryError>>,
    {
        let _in_flight = self.load.enter();
        let started = Instant::now();
        let deadline = call_deadline(md, self.call_cap);
        let result = match tokio::time::timeout(deadline, fut).await {
            // The timer has millisecond resolution; an answer that still came after the deadline
            // is past it all the same (the client has given up on it).
            Ok(_) if started.elapsed() > deadline => Err(QueryError::Deadline(deadline)),
            Ok(r) => r,
            Err(_) => Err(QueryError::Deadline(deadline)),
        };
        match result {
            Ok(v) => {
                record(method, started, tonic::Code::Ok);
                tracing::debug!(
                    method,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "answered"
                );
                Ok(Response::new(v))
            }
            Err(e) => {
                let status = Status::from(e);
                record(method, started, status.code());
                if status.code() == tonic::Code::Internal {
                    tracing::error!(method, error = %status.message(), "query failed");
                } else {
                    tracing::debug!(method, code = ?status.code(), error = %status.message(), "query refused");
                }
                Err(status)
            }
        }
    }
}

type WatchEvents = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::query_service_server::QueryService for GrpcQueryService {
    async fn find(
        &self,
        req: Request<pb::FindRequest>,
    ) -> Result<Response<pb::FindResponse>, Status> {
        self.unary("Find", req.metadata(), async {
            let p = convert::find_from_pb(req.get_ref())?;
            let page = self.svc.find(&p).await?;
            // The records' encoding is kept with them: an answer the store's result cache serves
            // again is converted and encoded once, not on every hit.
            let encoded_records = page.records.wire(crate::wire::encode_records);
            Ok(pb::FindResponse {
                records: Vec::new(),
                next_cursor: page.next_cursor.unwrap_or_default(),
                encoded_records,
            })
        })
        .await
    }

    async fn find_one(
        &self,
        req: Request<pb::FindOneRequest>,
    ) -> Result<Response<pb::FindOneResponse>, Status> {
        self.unary("FindOne", req.metadata(), async {
            let p = convert::find_one_from_pb(req.get_ref())?;
            let page = self.svc.find(&p).await?;
            Ok(pb::FindOneResponse {
                record: page.records.first().map(convert::record_to_pb),
            })
        })
        .await
    }

    async fn count(
        &self,
        req: Request<pb::CountRequest>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        self.unary("Count", req.metadata(), async {
            let p = convert::count_from_pb(req.get_ref())?;
            Ok(pb::CountResponse {
                count: self.svc.count(&p).await?,
            })
        })
        .await
    }

    async fn get_schema(
        &self,
        req: Request<pb::GetSchemaRequest>,
    ) -> Result<Response<pb::GetSchemaResponse>, Status> {
        self.unary("GetSchema", req.metadata(), async {
            let types = self.svc.schema(&req.get_ref().entity_types).await?;
            Ok(convert::schema_to_pb(types))
        })
        .await
    }

    async fn sync_status(
        &self,
        req: Request<pb::SyncStatusRequest>,
    ) -> Result<Response<pb::SyncStatusResponse>, Status> {
        self.unary("SyncStatus", req.metadata(), async {
            Ok(convert::sync_status_to_pb(self.svc.sync_status().await?))
        })
        .await
    }

    async fn summarize(
        &self,
        req: Request<pb::SummarizeRequest>,
    ) -> Result<Response<pb::SummarizeResponse>, Status> {
        self.unary(
            "Summarize",
            req.metadata(),
            crate::api3::summarize_grpc(&self.svc, req.get_ref()),
        )
        .await
    }

    type WatchStream = WatchEvents;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let started = Instant::now();
        let planned = async {
            let p = convert::watch_from_pb(req.get_ref())?;
            self.svc.plan_watch(&p).await
        };
        let plan = match tokio::time::timeout(self.call_cap, planned).await {
            Ok(Ok(plan)) => plan,
            Ok(Err(e)) => {
                let status = Status::from(e);
                record("Watch", started, status.code());
                return Err(status);
            }
            Err(_) => {
                let status = Status::from(QueryError::Deadline(self.call_cap));
                record("Watch", started, status.code());
                return Err(status);
            }
        };
        record("Watch", started, tonic::Code::Ok);
        let stream = self.svc.hub().subscribe(plan).map(|item| match item {
            Ok(item) => Ok(convert::watch_item_to_pb(&item)),
            Err(e) => Err(Status::from(e)),
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// A layer that corrects the codes tonic gives to requests it cannot decode, before the service
/// sees them:
/// - "decoded message length too large" (`OUT_OF_RANGE`) becomes `RESOURCE_EXHAUSTED`, the code gRPC
///   specifies for a request over the size limit;
/// - "failed to decode Protobuf message" (`INTERNAL`) becomes `INVALID_ARGUMENT` (the client sent
///   it), with a plain message when the cause is prost's recursion limit (a filter nested too deep).
#[derive(Clone, Copy, Default)]
pub struct WireErrorsLayer;

impl<S> tower::Layer<S> for WireErrorsLayer {
    type Service = WireErrors<S>;
    fn layer(&self, inner: S) -> WireErrors<S> {
        WireErrors { inner }
    }
}

#[derive(Clone)]
pub struct WireErrors<S> {
    inner: S,
}

/// Decodes a percent-encoded `grpc-message` value.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The corrected `(grpc-status, grpc-message)` for a trailers-only error, if it needs one.
fn corrected(status: &str, message: &str) -> Option<(&'static str, Option<&'static str>)> {
    let message = percent_decode(message);
    match status {
        "11" if message.contains("message length too large") => Some(("8", None)),
        "13" if message.contains("failed to decode Protobuf message") => {
            if message.contains("recursion limit reached") {
                Some((
                    "3",
                    Some(
                        "request nested too deeply: the filter tree exceeds the protobuf decoder's recursion limit (about 49 nested groups)",
                    ),
                ))
            } else {
                Some(("3", None))
            }
        }
        _ => None,
    }
}

impl<S, B, RB> tower::Service<http::Request<B>> for WireErrors<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            let h = resp.headers();
            let fix = match (
                h.get("grpc-status").and_then(|v| v.to_str().ok()),
                h.get("grpc-message").and_then(|v| v.to_str().ok()),
            ) {
                (Some(status), Some(message)) => corrected(status, message),
                _ => None,
            };
            if let Some((status, message)) = fix {
                resp.headers_mut()
                    .insert("grpc-status", http::HeaderValue::from_static(status));
                if let Some(m) = message {
                    let encoded = m.replace('%', "%25").replace(' ', "%20");
                    if let Ok(v) = http::HeaderValue::from_str(&encoded) {
                        resp.headers_mut().insert("grpc-message", v);
                    }
                }
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_header_units() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("10u"), Some(Duration::from_micros(10)));
        assert_eq!(parse_grpc_timeout("x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
        assert_eq!(parse_grpc_timeout("5Q"), None);
    }

    #[test]
    fn wire_errors_are_corrected() {
        assert_eq!(percent_decode("a%20b%2Cc%"), "a b,c%");
        assert_eq!(
            corrected(
                "11",
                "Error,%20decoded%20message%20length%20too%20large:%20found%201"
            ),
            Some(("8", None))
        );
        assert_eq!(corrected("11", "journal%20trimmed"), None);
        assert_eq!(
            corrected("13", "failed%20to%20decode%20Protobuf%20message:%20x"),
            Some(("3", None))
        );
        assert!(matches!(
            corrected(
                "13",
                "failed%20to%20decode%20Protobuf%20message:%20recursion%20limit%20reached"
            ),
            Some(("3", Some(_)))
        ));
        assert_eq!(corrected("13", "other"), None);
    }

    #[test]
    fn deadline_is_capped_and_slightly_early() {
        let mut md = tonic::metadata::MetadataMap::new();
        assert_eq!(
            call_deadline(&md, Duration::from_secs(30)),
            Duration::from_secs(30)
        );
        md.insert(
            "grpc-timeout",
            tonic::metadata::MetadataValue::from_static("100m"),
        );
        assert_eq!(
            call_deadline(&md, Duration::from_secs(30)),
            Duration::from_millis(98)
        );
        md.insert(
            "grpc-timeout",
            tonic::metadata::MetadataValue::from_static("1H"),
        );
        assert_eq!(
            call_deadline(&md, Duration::from_secs(30)),
            Duration::from_secs(30)
        );
    }
}
