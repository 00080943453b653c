//! The REST error envelope (protocol §1.4):
//! `{"errors": [{"id", "status", "code", "title", "source", "detail", "meta"}]}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use crate::site::SiteError;

/// A JSON error response in the real envelope.
pub fn envelope(
    status: StatusCode,
    code: u32,
    title: &str,
    source: Option<Json>,
    detail: Option<String>,
) -> Response {
    let id = crate::site::uuid_hex();
    let body = json!({"errors": [{
        "id": id, "status": status.as_u16(), "code": code, "title": title,
        "source": source.unwrap_or(Json::Null), "detail": detail, "meta": null,
    }]});
    (
        status,
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// A site error as the REST API reports it.
pub fn site_error(e: &SiteError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let title = e.to_string();
    let source = e.source_key().map(|k| json!({ k: format!(" {title}") }));
    envelope(status, e.code(), &title, source, None)
}

pub fn bad_request(code: u32, title: impl Into<String>) -> Response {
    envelope(StatusCode::BAD_REQUEST, code, &title.into(), None, None)
}
