//! The query-server's one error type, [`QueryError`], and its one mapping to gRPC status codes.
//!
//! Every failure of a query-server call ends up here: bad input (from the wire conversion or the
//! shared filter validation), types not yet served, store failures, limits and deadlines. The
//! mapping to `tonic::Status` is an exhaustive match (no `_` arm), so a new variant must choose its
//! code deliberately.

use std::time::Duration;

use shotgun_cache_core::filter::FilterError;
use shotgun_cache_core::store::StoreError;

/// Why a query-server call failed. Messages name the field, operator, value or type at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The request is malformed (a missing or out-of-range parameter, a bad value shape).
    #[error("{0}")]
    InvalidArgument(String),
    /// The filter, a field path or a sort failed the shared validation against the site schema.
    #[error("{0}")]
    Filter(#[from] FilterError),
    /// The type exists on the site but the cache does not keep it.
    #[error("entity type {0} is not cached")]
    TypeNotCached(String),
    /// A field exists on the site but the cache does not keep it, so the cache cannot answer for it.
    #[error(
        "field {entity_type}.{field} is not cached, so the cache cannot answer it (used in {usage})"
    )]
    FieldNotCached {
        entity_type: String,
        field: String,
        usage: String,
    },
    /// A type is still in its first import and must not be served partially.
    #[error("{0}")]
    TypeImporting(String),
    /// The request exceeds a size limit (or a Watch subscriber fell behind its bounded buffer).
    #[error("{0}")]
    ResourceExhausted(String),
    /// A Watch asked to resume from a journal position that was trimmed.
    #[error("{0}")]
    OutOfRange(String),
    /// A Watch subscriber read too slowly for its bounded buffer; it may resume after `resume_after`.
    #[error(
        "watch subscriber too slow: its buffer stayed full, so the stream was ended; resume with after_seq = {resume_after}"
    )]
    WatchLagged { resume_after: u64 },
    /// A Watch stream was ended by the server shutting down; resume (on any replica) after `resume_after`.
    #[error("the server is shutting down; resume with after_seq = {resume_after}")]
    WatchInterrupted { resume_after: u64 },
    /// The call ran past its deadline.
    #[error("deadline exceeded after {0:?}")]
    Deadline(Duration),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server has no schema yet (the syncer has not persisted one).
    #[error("the cache has no site schema yet (the syncer has not finished preparing the store)")]
    NoSchema,
}

impl From<QueryError> for tonic::Status {
    fn from(e: QueryError) -> tonic::Status {
        let msg = e.to_string();
        match e {
            QueryError::InvalidArgument(_)
            | QueryError::Filter(_)
            | QueryError::TypeNotCached(_)
            | QueryError::FieldNotCached { .. } => tonic::Status::invalid_argument(msg),
            QueryError::TypeImporting(_) | QueryError::NoSchema => tonic::Status::unavailable(msg),
            QueryError::ResourceExhausted(_) => tonic::Status::resource_exhausted(msg),
            QueryError::OutOfRange(_) => tonic::Status::out_of_range(msg),
            QueryError::WatchLagged { resume_after } => {
                with_resume(tonic::Status::resource_exhausted(msg), resume_after)
            }
            QueryError::WatchInterrupted { resume_after } => {
                with_resume(tonic::Status::unavailable(msg), resume_after)
            }
            QueryError::Deadline(_) => tonic::Status::deadline_exceeded(msg),
            QueryError::Store(store) => match store {
                StoreError::Unavailable(_) => tonic::Status::unavailable(msg),
                StoreError::Timeout(_) => tonic::Status::deadline_exceeded(msg),
                StoreError::Invalid(_) => tonic::Status::invalid_argument(msg),
                StoreError::Corrupt(_) | StoreError::Internal(_) => tonic::Status::internal(msg),
            },
        }
    }
}

/// The trailer that tells a Watch client where to resume.
pub const RESUME_TRAILER: &str = "resume-after-seq";

fn with_resume(status: tonic::Status, resume_after: u64) -> tonic::Status {
    let mut md = tonic::metadata::MetadataMap::new();
    md.insert(
        RESUME_TRAILER,
        tonic::metadata::MetadataValue::from(resume_after),
    );
    tonic::Status::with_metadata(status.code(), status.message().to_owned(), md)
}

/// Shorthand for an [`QueryError::InvalidArgument`] with a formatted message.
pub(crate) fn invalid(msg: impl Into<String>) -> QueryError {
    QueryError::InvalidArgument(msg.into())
}
