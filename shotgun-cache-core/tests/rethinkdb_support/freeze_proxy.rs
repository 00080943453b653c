//! A TCP proxy in front of a ReQL server that a test can freeze or cut, to make the server
//! unreachable for the store (or the services) behind it while the test itself keeps a direct
//! connection. The outage tests of the core crate, the query-server and the syncer include this
//! file (`#[path]`), so they work the same against reqlite and a real RethinkDB.
//!
//! - [`Proxy::freeze`]: a stalled server (a `kill -STOP`ed process, a dead network path). New TCP
//!   connections are accepted (as the kernel of a stopped process does) and nothing is forwarded
//!   either way until [`Proxy::open`].
//! - [`Proxy::cut`]: a crashed server. Every proxied connection is closed, and new ones are closed
//!   as soon as they are accepted, until [`Proxy::open`].

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Open,
    Frozen,
    Down,
}

/// The proxy; it stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.mode.send_replace(Mode::Down);
        self.task.abort();
    }
}

impl Proxy {
    /// Starts a proxy on `127.0.0.1:0` forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (mode, _) = watch::channel(Mode::Open);
        let rx = mode.subscribe();
        let upstream = upstream.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, upstream.clone(), rx.clone()));
            }
        });
        Proxy { addr, mode, task }
    }

    /// The address the store should connect to.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    pub fn freeze(&self) {
        self.mode.send_replace(Mode::Frozen);
    }

    pub fn cut(&self) {
        self.mode.send_replace(Mode::Down);
    }

    pub fn open(&self) {
        self.mode.send_replace(Mode::Open);
    }
}

/// Waits while frozen; `false` when the proxy is down.
async fn wait_open(mode: &mut watch::Receiver<Mode>) -> bool {
    loop {
        match *mode.borrow_and_update() {
            Mode::Open => return true,
            Mode::Down => return false,
            Mode::Frozen => {}
        }
        if mode.changed().await.is_err() {
            return false;
        }
    }
}

async fn serve(client: TcpStream, upstream: String, mut mode: watch::Receiver<Mode>) {
    if !wait_open(&mut mode).await {
        return;
    }
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::join!(pump(cr, sw, mode.clone()), pump(sr, cw, mode));
}

/// Copies one direction while open; holds while frozen; returns (closing its write half) when the
/// proxy goes down or either side ends.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !wait_open(&mut mode).await {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        // Bytes read while the proxy froze are held until it opens (like a stopped server's
        // socket buffer).
        if !wait_open(&mut mode).await {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
