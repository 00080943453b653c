//! A thin client for the ReQL JSON wire protocol (V1_0 handshake with SCRAM-SHA-256, token-multiplexed
//! queries, partial-sequence continuation), used instead of the `reql` crate's query API.
//!
//! # Why our own layer
//! The `reql` crate (0.11.2, unmaintained; therefore not a dependency) cannot send optional arguments for arbitrary terms (`with_opts` is
//! `pub(crate)`): `order_by` with an index, `index_wait`, compound-key `get_all`, `return_changes` on
//! `replace`, and `non_atomic` are either broken or unreachable through it. It also serialises every
//! query on a session behind one mutex, has no timeouts, and dropping one of its futures mid-exchange
//! leaves the session in an unknown state. Terms here are plain `serde_json` values in the protocol's
//! `[type, [args], {optargs}]` form (`super::term` builds them), so every term and optarg the server
//! knows is reachable. Term and response numbers come from `ql2`, the protocol definition `reql` uses.
//!
//! One [`Conn`] is one TCP connection. Many queries may run on it at once (each has its own token);
//! a reader task dispatches responses. A dropped query future removes its token (and stops a partial
//! sequence), so a timed-out call never corrupts the connection. When the socket fails, every pending
//! query gets [`WireError::Broken`] and the connection reports itself broken; the pool reconnects.
//! A connection also counts the frames it has received ([`Conn::frames_heard`]), so a caller whose
//! query timed out can tell a slow query (the server kept answering others) from a silent server
//! (a stalled process or a dead network path, which TCP alone may not report for minutes); it then
//! [`close`](Conn::close)s the connection, failing every query still waiting on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use ql2::query::QueryType;
use ql2::response::{ErrorType, ResponseType};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

/// Errors of the wire layer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum WireError {
    /// The TCP connection could not be opened, or failed.
    #[error("connection to {addr} failed: {reason}")]
    Connect { addr: String, reason: String },
    /// The handshake or authentication was refused.
    #[error("handshake with {addr} failed: {reason}")]
    Handshake { addr: String, reason: String },
    /// The connection broke while the query was running.
    #[error("connection broken: {0}")]
    Broken(String),
    /// The server answered with an error.
    #[error("{kind:?} error: {message}")]
    Server {
        kind: ServerErrorKind,
        message: String,
    },
    /// The server's answer was not valid protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Which class of server error; decides the `StoreError` a failure maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerErrorKind {
    Client,
    Compile,
    Internal,
    ResourceLimit,
    QueryLogic,
    NonExistence,
    /// `OP_FAILED` / `OP_INDETERMINATE`: the cluster cannot serve the table right now.
    Availability,
    User,
    Permission,
}

/// One response frame.
#[derive(Debug)]
struct Response {
    t: i64,
    r: Vec<Json>,
    e: Option<i64>,
}

type Pending = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Result<Response, WireError>>>>>;

/// One connection to a ReQL server. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Conn {
    inner: Arc<ConnInner>,
}

struct ConnInner {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending,
    next_token: AtomicU64,
    broken: Arc<AtomicBool>,
    /// Frames received so far (any token): the liveness signal of the server.
    heard: Arc<AtomicU64>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for ConnInner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub(crate) struct ConnectOptions {
    pub(crate) addr: String,
    pub(crate) user: String,
    pub(crate) password: String,
}

const V1_0: u32 = ql2::version_dummy::Version::V10 as u32;

impl Conn {
    /// Opens a connection and performs the V1_0 handshake (SCRAM-SHA-256).
    pub(crate) async fn connect(opts: &ConnectOptions) -> Result<Conn, WireError> {
        let addr = opts.addr.clone();
        let connect_err = |e: std::io::Error| WireError::Connect {
            addr: addr.clone(),
            reason: e.to_string(),
        };
        let stream = TcpStream::connect(&opts.addr).await.map_err(connect_err)?;
        stream.set_nodelay(true).map_err(connect_err)?;
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        handshake(&mut read, &mut write, opts).await?;
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let broken = Arc::new(AtomicBool::new(false));
        let heard = Arc::new(AtomicU64::new(0));
        let reader = tokio::spawn(read_loop(
            read,
            pending.clone(),
            broken.clone(),
            heard.clone(),
        ));
        Ok(Conn {
            inner: Arc::new(ConnInner {
                writer: tokio::sync::Mutex::new(write),
                pending,
                next_token: AtomicU64::new(1),
                broken,
                heard,
                reader,
            }),
        })
    }

    /// Whether the socket has failed (the pool then replaces this connection).
    pub(crate) fn is_broken(&self) -> bool {
        self.inner.broken.load(Ordering::SeqCst)
    }

    /// How many response frames this connection has received (for any query).
    pub(crate) fn frames_heard(&self) -> u64 {
        self.inner.heard.load(Ordering::SeqCst)
    }

    /// Gives the connection up: marks it broken, stops its reader and fails every query still
    /// waiting on it with [`WireError::Broken`]. The socket closes when the last clone is dropped.
    pub(crate) fn close(&self, reason: &str) {
        self.inner.broken.store(true, Ordering::SeqCst);
        self.inner.reader.abort();
        fail_pending(&self.inner.pending, reason);
    }

    /// Starts a query and returns its cursor. `opts` are the global optargs (e.g. `{"db": ...}`).
    pub(crate) async fn start(&self, term: &Json, opts: &Json) -> Result<Cursor, WireError> {
        let token = self.inner.next_token.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner
            .pending
            .lock()
            .expect("pending map lock is never poisoned")
            .insert(token, tx);
        // Checked after registering: `close` marks the connection broken before it fails the
        // registered queries, so a query is either refused here or failed there, never left waiting.
        if self.is_broken() {
            self.inner
                .pending
                .lock()
                .expect("pending map lock is never poisoned")
                .remove(&token);
            return Err(WireError::Broken("the connection was closed".into()));
        }
        let cursor = Cursor {
            conn: self.clone(),
            token,
            rx,
            done: false,
            partial: false,
            buffered: Vec::new(),
        };
        let msg = json!([QueryType::Start as i32, term, opts]);
        self.send(token, &msg).await?;
        Ok(cursor)
    }

    /// Runs a query and returns its result as one list: every document of a sequence, or the atom
    /// (an array atom is flattened into its elements, so in-memory results and table scans read alike;
    /// reqlite also answers table scans with one array atom).
    pub(crate) async fn run_list(&self, term: &Json, opts: &Json) -> Result<Vec<Json>, WireError> {
        let mut cursor = self.start(term, opts).await?;
        let mut out = Vec::new();
        while let Some(batch) = cursor.next_batch().await? {
            out.extend(batch);
        }
        Ok(out)
    }

    /// Runs a query whose result is one value (a sequence is returned as an array).
    pub(crate) async fn run_atom(&self, term: &Json, opts: &Json) -> Result<Json, WireError> {
        let mut cursor = self.start(term, opts).await?;
        let first = cursor.next_response().await?;
        match first {
            Some(Response { t, mut r, .. }) if t == ResponseType::SuccessAtom as i64 => {
                Ok(if r.is_empty() {
                    Json::Null
                } else {
                    r.swap_remove(0)
                })
            }
            Some(resp) => {
                let mut items = resp.r;
                while let Some(batch) = cursor.next_batch().await? {
                    items.extend(batch);
                }
                Ok(Json::Array(items))
            }
            None => Ok(Json::Null),
        }
    }

    async fn send(&self, token: u64, msg: &Json) -> Result<(), WireError> {
        let body = serde_json::to_vec(msg)
            .map_err(|e| WireError::Protocol(format!("cannot encode query: {e}")))?;
        let len = u32::try_from(body.len())
            .map_err(|_| WireError::Protocol("query larger than 4 GiB".into()))?;
        let mut frame = Vec::with_capacity(12 + body.len());
        frame.extend_from_slice(&token.to_le_bytes());
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&body);
        let mut w = self.inner.writer.lock().await;
        if let Err(e) = w.write_all(&frame).await {
            self.inner.broken.store(true, Ordering::SeqCst);
            return Err(WireError::Broken(e.to_string()));
        }
        Ok(())
    }
}

/// The results of one query, batch by batch. Dropping it forgets the token and, for an unfinished
/// sequence or feed, tells the server to stop.
pub(crate) struct Cursor {
    conn: Conn,
    token: u64,
    rx: mpsc::UnboundedReceiver<Result<Response, WireError>>,
    done: bool,
    partial: bool,
    buffered: Vec<Json>,
}

impl Cursor {
    async fn next_response(&mut self) -> Result<Option<Response>, WireError> {
        if self.done {
            return Ok(None);
        }
        let resp = match self.rx.recv().await {
            Some(r) => r?,
            None => return Err(WireError::Broken("connection closed".into())),
        };
        let t = resp.t;
        if t == ResponseType::SuccessPartial as i64 {
            self.partial = true;
            // Ask for the next batch right away; it is buffered in the channel until read.
            let msg = json!([QueryType::Continue as i32]);
            self.conn.send(self.token, &msg).await?;
        } else {
            self.done = true;
            self.partial = false;
        }
        if t == ResponseType::SuccessAtom as i64
            || t == ResponseType::SuccessSequence as i64
            || t == ResponseType::SuccessPartial as i64
            || t == ResponseType::WaitComplete as i64
            || t == ResponseType::ServerInfo as i64
        {
            return Ok(Some(resp));
        }
        let message = resp
            .r
            .first()
            .and_then(Json::as_str)
            .unwrap_or("unknown error")
            .to_owned();
        let kind = if t == ResponseType::ClientError as i64 {
            ServerErrorKind::Client
        } else if t == ResponseType::CompileError as i64 {
            ServerErrorKind::Compile
        } else {
            match resp.e {
                Some(e) if e == ErrorType::ResourceLimit as i64 => ServerErrorKind::ResourceLimit,
                Some(e) if e == ErrorType::QueryLogic as i64 => ServerErrorKind::QueryLogic,
                Some(e) if e == ErrorType::NonExistence as i64 => ServerErrorKind::NonExistence,
                Some(e)
                    if e == ErrorType::OpFailed as i64
                        || e == ErrorType::OpIndeterminate as i64 =>
                {
                    ServerErrorKind::Availability
                }
                Some(e) if e == ErrorType::User as i64 => ServerErrorKind::User,
                Some(e) if e == ErrorType::PermissionError as i64 => ServerErrorKind::Permission,
                _ => ServerErrorKind::Internal,
            }
        };
        Err(WireError::Server { kind, message })
    }

    /// The next batch of items (`None` at the end). An atom that is an array is flattened.
    pub(crate) async fn next_batch(&mut self) -> Result<Option<Vec<Json>>, WireError> {
        if !self.buffered.is_empty() {
            return Ok(Some(std::mem::take(&mut self.buffered)));
        }
        loop {
            let Some(resp) = self.next_response().await? else {
                return Ok(None);
            };
            let items = if resp.t == ResponseType::SuccessAtom as i64 {
                match resp.r.into_iter().next() {
                    Some(Json::Array(items)) => items,
                    Some(Json::Null) | None => Vec::new(),
                    Some(other) => vec![other],
                }
            } else {
                resp.r
            };
            if !items.is_empty() || self.done {
                return Ok(if items.is_empty() { None } else { Some(items) });
            }
        }
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        self.conn
            .inner
            .pending
            .lock()
            .expect("pending map lock is never poisoned")
            .remove(&self.token);
        if self.partial && !self.done && !self.conn.is_broken() {
            let conn = self.conn.clone();
            let token = self.token;
            // Stopping is best effort: the server frees the cursor anyway when the connection closes.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = conn.send(token, &json!([QueryType::Stop as i32])).await;
                });
            }
        }
    }
}

async fn read_loop(
    mut read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    pending: Pending,
    broken: Arc<AtomicBool>,
    heard: Arc<AtomicU64>,
) {
    let reason = loop {
        let mut header = [0u8; 12];
        if let Err(e) = read.read_exact(&mut header).await {
            break e.to_string();
        }
        let token = u64::from_le_bytes(header[..8].try_into().expect("8-byte slice"));
        let len = u32::from_le_bytes(header[8..].try_into().expect("4-byte slice")) as usize;
        let mut body = vec![0u8; len];
        if let Err(e) = read.read_exact(&mut body).await {
            break e.to_string();
        }
        heard.fetch_add(1, Ordering::SeqCst);
        let parsed: Result<Response, WireError> = serde_json::from_slice::<Json>(&body)
            .map_err(|e| WireError::Protocol(format!("response is not JSON: {e}")))
            .and_then(|v| {
                let t = v
                    .get("t")
                    .and_then(Json::as_i64)
                    .ok_or_else(|| WireError::Protocol(format!("response without type: {v}")))?;
                let r = match v.get("r") {
                    Some(Json::Array(r)) => r.clone(),
                    _ => Vec::new(),
                };
                Ok(Response {
                    t,
                    r,
                    e: v.get("e").and_then(Json::as_i64),
                })
            });
        let keep = matches!(&parsed, Ok(r) if r.t == ResponseType::SuccessPartial as i64);
        let mut map = pending.lock().expect("pending map lock is never poisoned");
        if let Some(tx) = map.get(&token) {
            let _ = tx.send(parsed);
            if !keep {
                map.remove(&token);
            }
        }
    };
    broken.store(true, Ordering::SeqCst);
    fail_pending(&pending, &reason);
}

/// Fails every waiting query with [`WireError::Broken`].
fn fail_pending(pending: &Pending, reason: &str) {
    let mut map = pending.lock().expect("pending map lock is never poisoned");
    for (_, tx) in map.drain() {
        let _ = tx.send(Err(WireError::Broken(reason.to_owned())));
    }
}

async fn read_null_terminated<R: AsyncReadExt + Unpin>(
    read: &mut R,
    addr: &str,
) -> Result<Json, WireError> {
    let mut buf = Vec::new();
    loop {
        let b = read.read_u8().await.map_err(|e| WireError::Handshake {
            addr: addr.to_owned(),
            reason: format!("server closed the connection: {e}"),
        })?;
        if b == 0 {
            break;
        }
        buf.push(b);
        if buf.len() > 64 * 1024 {
            return Err(WireError::Handshake {
                addr: addr.to_owned(),
                reason: "handshake message too long".into(),
            });
        }
    }
    let v: Json = serde_json::from_slice(&buf).map_err(|_| WireError::Handshake {
        addr: addr.to_owned(),
        reason: format!(
            "not a ReQL server (answered {:?})",
            String::from_utf8_lossy(&buf)
        ),
    })?;
    if v.get("success").and_then(Json::as_bool) != Some(true) {
        let reason = v
            .get("error")
            .and_then(Json::as_str)
            .unwrap_or("refused")
            .to_owned();
        return Err(WireError::Handshake {
            addr: addr.to_owned(),
            reason,
        });
    }
    Ok(v)
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// PBKDF2-HMAC-SHA256 with one 32-byte block (RFC 8018 §5.2), as SCRAM-SHA-256 needs.
fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut salt1 = salt.to_vec();
    salt1.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &salt1);
    let mut out = u.clone();
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (o, x) in out.iter_mut().zip(&u) {
            *o ^= x;
        }
    }
    out
}

fn scram_attrs(s: &str) -> HashMap<String, String> {
    s.split(',')
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

async fn handshake<R: AsyncReadExt + Unpin>(
    read: &mut R,
    write: &mut OwnedWriteHalf,
    opts: &ConnectOptions,
) -> Result<(), WireError> {
    let addr = opts.addr.as_str();
    let fail = |reason: String| WireError::Handshake {
        addr: addr.to_owned(),
        reason,
    };
    let nonce: [u8; 18] = rand::random();
    let client_nonce = B64.encode(nonce);
    let user = opts.user.replace('=', "=3D").replace(',', "=2C");
    let client_first_bare = format!("n={user},r={client_nonce}");
    let first = json!({
        "protocol_version": 0,
        "authentication_method": "SCRAM-SHA-256",
        "authentication": format!("n,,{client_first_bare}"),
    });
    let mut out = V1_0.to_le_bytes().to_vec();
    out.extend_from_slice(first.to_string().as_bytes());
    out.push(0);
    write
        .write_all(&out)
        .await
        .map_err(|e| fail(e.to_string()))?;

    let _hello = read_null_terminated(read, addr).await?;
    let server_first_msg = read_null_terminated(read, addr).await?;
    let server_first = server_first_msg
        .get("authentication")
        .and_then(Json::as_str)
        .ok_or_else(|| fail("no SCRAM challenge".into()))?
        .to_owned();
    let attrs = scram_attrs(&server_first);
    let full_nonce = attrs
        .get("r")
        .ok_or_else(|| fail("SCRAM challenge without nonce".into()))?;
    if !full_nonce.starts_with(&client_nonce) {
        return Err(fail("SCRAM nonce does not extend ours".into()));
    }
    let salt = attrs
        .get("s")
        .and_then(|s| B64.decode(s).ok())
        .ok_or_else(|| fail("SCRAM challenge with an invalid salt".into()))?;
    let iterations: u32 = attrs
        .get("i")
        .and_then(|i| i.parse().ok())
        .filter(|i| *i >= 1)
        .ok_or_else(|| fail("SCRAM challenge with an invalid iteration count".into()))?;

    let salted = pbkdf2_sha256(opts.password.as_bytes(), &salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key);
    let without_proof = format!("c=biws,r={full_nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let client_sig = hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&client_sig)
        .map(|(a, b)| a ^ b)
        .collect();
    let server_key = hmac(&salted, b"Server Key");
    let server_sig = hmac(&server_key, auth_message.as_bytes());

    let last = json!({"authentication": format!("{without_proof},p={}", B64.encode(proof))});
    let mut out = last.to_string().into_bytes();
    out.push(0);
    write
        .write_all(&out)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let final_msg = read_null_terminated(read, addr).await?;
    let v = final_msg
        .get("authentication")
        .and_then(Json::as_str)
        .map(scram_attrs)
        .and_then(|a| a.get("v").cloned())
        .ok_or_else(|| fail("no server signature".into()))?;
    if B64.decode(&v).ok().as_deref() != Some(server_sig.as_slice()) {
        return Err(fail(
            "the server's SCRAM signature is wrong (not the server we expect)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3 test vector for SCRAM-SHA-256 (user "user", password "pencil").
    #[test]
    fn scram_sha256_matches_rfc7677() {
        let salt = B64
            .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
            .expect("valid base64");
        let salted = pbkdf2_sha256(b"pencil", &salt, 4096);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key);
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let sig = hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        assert_eq!(
            B64.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let server_sig = hmac(&hmac(&salted, b"Server Key"), auth.as_bytes());
        assert_eq!(
            B64.encode(server_sig),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }
}
