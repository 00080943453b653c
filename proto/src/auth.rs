//! Bearer-token authentication shared by both gRPC services (`QueryService`, `SyncerService`).
//! Pure request inspection, no I/O: it checks the `authorization` metadata of each call.

use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::{Request, Status};

/// Checks `authorization: Bearer <token>` against the configured tokens in constant time.
/// Health and reflection are mounted without it, so probes and grpcurl discovery stay open.
#[derive(Clone)]
pub struct BearerAuth {
    required: bool,
    /// Each accepted header value, `Bearer <token>`, as bytes.
    accepted: Arc<Vec<Vec<u8>>>,
    /// Called once per rejected call (e.g. to count it in metrics).
    on_reject: Option<fn()>,
}

impl BearerAuth {
    pub fn new(required: bool, tokens: &[String]) -> BearerAuth {
        BearerAuth {
            required,
            accepted: Arc::new(
                tokens
                    .iter()
                    .map(|t| format!("Bearer {t}").into_bytes())
                    .collect(),
            ),
            on_reject: None,
        }
    }

    /// Runs `f` for every rejected call.
    pub fn on_reject(mut self, f: fn()) -> BearerAuth {
        self.on_reject = Some(f);
        self
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        if !self.required {
            return Ok(req);
        }
        let given = req
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        // Compare against every token (no early exit), so timing does not reveal which one matched.
        let mut ok = subtle::Choice::from(0u8);
        for t in self.accepted.iter() {
            ok |= t.as_slice().ct_eq(given);
        }
        if bool::from(ok) {
            return Ok(req);
        }
        if let Some(f) = self.on_reject {
            f();
        }
        Err(Status::unauthenticated(if given.is_empty() {
            "missing bearer token: send metadata 'authorization: Bearer <token>'"
        } else {
            "invalid bearer token"
        }))
    }
}
