//! The api3 JSON-RPC envelope (protocol §2.1): parsing a request body, the auth shapes, and the
//! answers (`{"results": ...}` or a fault `{"exception": true, "message", "error_code"}` with HTTP 200).

use serde_json::{Value as Json, json};

/// Error codes the real server uses that `shotgun_api3` maps to exception classes (protocol §2.1).
pub(crate) const ERR_AUTH: i64 = 102;
/// The code the site gives for a bad request (unknown field, bad operator, bad value).
pub(crate) const ERR_REQUEST: i64 = 103;

/// A fault answered as HTTP 200 `{"exception": true, "message", "error_code"}`, as the site does.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} (error_code {code})")]
pub(crate) struct Fault {
    pub(crate) code: i64,
    pub(crate) message: String,
}

impl Fault {
    pub(crate) fn new(code: i64, message: impl Into<String>) -> Fault {
        Fault {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn to_json(&self) -> Json {
        json!({"exception": true, "message": self.message, "error_code": self.code})
    }
}

/// The credentials a request carries (the first element of `params`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Auth {
    /// `{"script_name", "script_key"}`.
    Script { name: String, key: String },
    /// `{"user_login", "user_password"}` or `{"session_token"}`: the cache cannot check these.
    Other(&'static str),
    /// No auth element at all (only `info` may do that).
    None,
}

/// One parsed JSON-RPC call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    pub(crate) method: String,
    pub(crate) auth: Auth,
    /// The method parameters: the second element of `params` (`Null` when absent). For `batch` a list.
    pub(crate) params: Json,
}

/// Parses a request body.
///
/// # Errors
/// A [`Fault`] worded for the client when the body is not a JSON-RPC call.
pub(crate) fn parse_call(body: &[u8]) -> Result<Call, Fault> {
    let v: Json = serde_json::from_slice(body)
        .map_err(|e| Fault::new(ERR_REQUEST, format!("request body is not valid JSON: {e}")))?;
    let method = v
        .get("method_name")
        .and_then(Json::as_str)
        .ok_or_else(|| Fault::new(ERR_REQUEST, "request has no method_name"))?
        .to_owned();
    let params = match v.get("params") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(a)) => a.clone(),
        Some(other) => {
            return Err(Fault::new(
                ERR_REQUEST,
                format!("params must be a list, got {other}"),
            ));
        }
    };
    let auth = match params.first() {
        None => Auth::None,
        Some(a) => parse_auth(a),
    };
    let params = params.get(1).cloned().unwrap_or(Json::Null);
    Ok(Call {
        method,
        auth,
        params,
    })
}

fn parse_auth(a: &Json) -> Auth {
    let s = |k: &str| a.get(k).and_then(Json::as_str).map(str::to_owned);
    if let (Some(name), Some(key)) = (s("script_name"), s("script_key")) {
        return Auth::Script { name, key };
    }
    if a.get("user_login").is_some() {
        return Auth::Other("user_login/user_password");
    }
    if a.get("session_token").is_some() {
        return Auth::Other("session_token");
    }
    Auth::None
}

/// Checks script credentials against the cache's own client list, in constant time per entry.
///
/// # Errors
/// An authentication [`Fault`] (code 102, which `shotgun_api3` raises as `AuthenticationFault`).
pub(crate) fn check_auth(auth: &Auth, clients: &[(String, String)]) -> Result<(), Fault> {
    use subtle::ConstantTimeEq;
    match auth {
        Auth::Script { name, key } => {
            let mut ok = subtle::Choice::from(0u8);
            for (n, k) in clients {
                let same = n.as_bytes().ct_eq(name.as_bytes()) & k.as_bytes().ct_eq(key.as_bytes());
                ok |= same;
            }
            if bool::from(ok) {
                Ok(())
            } else if clients.is_empty() {
                Err(Fault::new(
                    ERR_AUTH,
                    "The cache has no api3 clients configured (SHOTGUN_CACHE_API3__CLIENTS), so it accepts no script.",
                ))
            } else {
                // The site's own wording, so a script sees the same message with or without the cache.
                Err(Fault::new(
                    ERR_AUTH,
                    format!("Can't authenticate script '{name}'"),
                ))
            }
        }
        Auth::Other(kind) => Err(Fault::new(
            ERR_AUTH,
            format!(
                "The cache accepts script credentials only (script_name/script_key), not {kind}."
            ),
        )),
        Auth::None => Err(Fault::new(
            ERR_AUTH,
            "No credentials: the request has no auth parameters.",
        )),
    }
}

/// `{"results": value}`.
pub(crate) fn results(v: Json) -> Json {
    json!({ "results": v })
}
