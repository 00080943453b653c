//! Access and refresh tokens for the REST API (protocol §1.1). Tokens are JWT-shaped but opaque to
//! clients: the simulator only looks them up. Access tokens expire after the configured lifetime
//! (600 s by default, shorter in tests); refresh tokens live for a day.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use rand::Rng;

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid")]
    Invalid,
}

#[derive(Debug, Clone)]
struct Issued {
    script: String,
    /// The HumanUser login the script acts as (`scope=sudo_as_login:<login>`).
    sudo: Option<String>,
    expires: Instant,
}

/// The token registry.
#[derive(Debug)]
pub struct Auth {
    access: Mutex<HashMap<String, Issued>>,
    refresh: Mutex<HashMap<String, Issued>>,
    ttl: Mutex<Duration>,
}

/// A freshly issued token pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

const REFRESH_TTL: Duration = Duration::from_secs(24 * 3600);

fn random_part(n: usize) -> String {
    let mut rng = rand::rng();
    let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Auth {
    pub fn new(ttl: Duration) -> Auth {
        Auth {
            access: Mutex::new(HashMap::new()),
            refresh: Mutex::new(HashMap::new()),
            ttl: Mutex::new(ttl),
        }
    }

    /// The current access-token lifetime.
    pub fn ttl(&self) -> Duration {
        *self.ttl.lock()
    }

    /// Changes the lifetime of tokens issued from now on.
    pub fn set_ttl(&self, ttl: Duration) {
        *self.ttl.lock() = ttl;
    }

    /// Makes every issued access token expired (refresh tokens stay valid).
    pub fn expire_all(&self) {
        let past = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or_else(Instant::now);
        for t in self.access.lock().values_mut() {
            t.expires = past;
        }
    }

    /// Issues a token pair for a script (or user) name.
    pub fn issue(&self, script: &str, user_id: i64) -> TokenPair {
        self.issue_as(script, user_id, None)
    }

    /// Issues a token pair for a script acting as the user `sudo` (when given).
    pub fn issue_as(&self, script: &str, user_id: i64, sudo: Option<&str>) -> TokenPair {
        let ttl = self.ttl();
        let now = Instant::now();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let exp = time::OffsetDateTime::now_utc().unix_timestamp() + ttl.as_secs() as i64;
        let payload = serde_json::json!({
            "user": {"type": "ApiUser", "id": user_id}, "sudo_as_login": sudo, "auth_type": "script",
            "session_uuid": null, "exp": exp, "jti": random_part(12),
        });
        let access_token = format!(
            "{header}.{}.{}",
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            random_part(32)
        );
        let refresh_token = random_part(48);
        {
            let mut access = self.access.lock();
            access.retain(|_, t| t.expires + Duration::from_secs(3600) > now);
            access.insert(
                access_token.clone(),
                Issued {
                    script: script.to_owned(),
                    sudo: sudo.map(str::to_owned),
                    expires: now + ttl,
                },
            );
        }
        {
            let mut refresh = self.refresh.lock();
            refresh.retain(|_, t| t.expires > now);
            refresh.insert(
                refresh_token.clone(),
                Issued {
                    script: script.to_owned(),
                    sudo: sudo.map(str::to_owned),
                    expires: now + REFRESH_TTL,
                },
            );
        }
        TokenPair {
            access_token,
            refresh_token,
            expires_in: ttl.as_secs(),
        }
    }

    /// The script a bearer token belongs to.
    pub fn check(&self, token: &str) -> Result<String, TokenError> {
        self.check_as(token).map(|(s, _)| s)
    }

    /// The script a bearer token belongs to and the login it acts as, if any.
    pub fn check_as(&self, token: &str) -> Result<(String, Option<String>), TokenError> {
        let access = self.access.lock();
        let t = access.get(token).ok_or(TokenError::Invalid)?;
        if t.expires <= Instant::now() {
            return Err(TokenError::Expired);
        }
        Ok((t.script.clone(), t.sudo.clone()))
    }

    /// Consumes a refresh token; returns the script it was issued to and the login it acts as.
    pub fn redeem_refresh(&self, token: &str) -> Option<(String, Option<String>)> {
        let mut refresh = self.refresh.lock();
        let t = refresh.remove(token)?;
        (t.expires > Instant::now()).then_some((t.script, t.sudo))
    }
}
