//! One socket write per HTTP/2 flush round instead of one per batch of frames.
//!
//! `h2` writes a DATA frame whose payload is larger than 256 bytes straight from the payload buffer
//! (a vectored write, no copy), and buffers nothing behind it until that write is done. A unary
//! gRPC answer is HEADERS, DATA and the trailers HEADERS, so every Find was two `writev` calls: the
//! headers with the data, then 10 bytes of trailers. On loopback, each write delivers a segment and
//! wakes the client, which then reads an answer it cannot finish before the second one. Under
//! `strace`, a 50-row Find was `writev(3839 bytes)` then `writev(10 bytes)`; under `perf` at one
//! client, waking the reader in `writev` was a quarter of the server's CPU time.
//!
//! [`CoalescingIo`] copies small writes into a buffer. While other calls are in flight ([`Load`]),
//! it puts off the first flush of a round by one task poll (it yields to the scheduler and returns
//! `Pending`); `h2` comes back to finish the flush after buffering what it could not buffer before
//! (the trailers), and that second flush writes everything in one `write`. With nothing else in
//! flight it writes at once: the yield then costs a lone client more than the second write. Writes larger than [`BUFFER_LIMIT`] go to the socket as they are,
//! after what is buffered, so a large page is not copied.
//!
//! `tokio::io::BufWriter` buffers the same way but writes on every flush, which is what `h2`
//! already asks for; putting a flush off is the part it cannot do.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// Writes that fit in the buffer with what it holds are copied; larger ones are written through.
const BUFFER_LIMIT: usize = 16 * 1024;

/// The number of unary calls the server is answering; flushes are put off only while it is not 0.
#[derive(Clone, Default)]
pub(crate) struct Load(Arc<AtomicUsize>);

impl Load {
    /// Counts a call as in flight until the guard is dropped.
    pub(crate) fn enter(&self) -> LoadGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        LoadGuard(self.0.clone())
    }

    fn busy(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

/// One call in flight (see [`Load::enter`]).
pub(crate) struct LoadGuard(Arc<AtomicUsize>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection whose small writes are coalesced until a flush (see the module docs).
pub(crate) struct CoalescingIo<T> {
    load: Load,
    io: T,
    buf: Vec<u8>,
    /// The bytes at the front of `buf` already written to `io`.
    written: usize,
    /// The current flush is put off until this yield completes (see `poll_flush`).
    deferred: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The current flush is writing `buf` out; it is not put off again.
    draining: bool,
}

impl<T> CoalescingIo<T> {
    pub(crate) fn new(io: T, load: Load) -> CoalescingIo<T> {
        CoalescingIo {
            load,
            io,
            buf: Vec::new(),
            written: 0,
            deferred: None,
            draining: false,
        }
    }
}

impl<T: AsyncWrite + Unpin> CoalescingIo<T> {
    /// Writes out everything buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CoalescingIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CoalescingIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.buf.len() + data.len() > BUFFER_LIMIT {
            ready!(me.poll_drain(cx))?;
            if data.len() > BUFFER_LIMIT {
                return Pin::new(&mut me.io).poll_write(cx, data);
            }
        }
        me.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if me.buf.len() + total > BUFFER_LIMIT {
            ready!(me.poll_drain(cx))?;
            if total > BUFFER_LIMIT {
                return Pin::new(&mut me.io).poll_write_vectored(cx, bufs);
            }
        }
        for b in bufs {
            me.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.buf.is_empty() {
            me.deferred = None;
            me.draining = false;
            return Pin::new(&mut me.io).poll_flush(cx);
        }
        // Come back once more: the caller finishes its flush on the next poll, with whatever it
        // buffers in between. Only while other calls are in flight: putting the flush off goes
        // through the scheduler, which wakes an idle worker thread to do it, and with nothing else
        // to do that costs a lone client more latency than the second write did. Once the put-off
        // flush has started writing (a full socket can make it take several polls), it is not
        // put off again.
        if !me.draining {
            if me.deferred.is_some() || me.load.busy() {
                ready!(
                    me.deferred
                        .get_or_insert_with(|| Box::pin(tokio::task::yield_now()))
                        .as_mut()
                        .poll(cx)
                );
                me.deferred = None;
            }
            me.draining = true;
        }
        ready!(me.poll_drain(cx))?;
        me.draining = false;
        Pin::new(&mut me.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(me.poll_drain(cx))?;
        Pin::new(&mut me.io).poll_shutdown(cx)
    }
}

impl<T: Connected> Connected for CoalescingIo<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A flush put off while busy still completes when the peer reads slowly (the socket fills
    /// and the flush takes many polls), with every byte in order.
    #[tokio::test]
    async fn a_put_off_flush_completes_against_a_slow_reader() {
        let (a, mut b) = tokio::io::duplex(7);
        let load = Load::default();
        let _busy = load.enter();
        let mut w = CoalescingIo::new(a, load.clone());
        let data: Vec<u8> = (0..200u8).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut chunk = [0u8; 5];
            while got.len() < 200 {
                let n = b.read(&mut chunk).await.expect("read");
                assert!(n > 0, "the writer closed early");
                got.extend_from_slice(&chunk[..n]);
                tokio::task::yield_now().await;
            }
            got
        });
        w.write_all(&data).await.expect("write");
        w.flush().await.expect("flush");
        assert_eq!(reader.await.expect("reader"), data);
    }

    /// Small writes reach the peer in one piece at the flush, a large one in order after them, and
    /// nothing is written before the flush.
    #[tokio::test]
    async fn small_writes_reach_the_peer_together_at_the_flush() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = CoalescingIo::new(a, Load::default());
        w.write_all(b"headers+data").await.expect("write");
        w.write_all(b"|trailers").await.expect("write");
        let mut probe = [0u8; 64];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(50), b.read(&mut probe)).await;
        assert!(early.is_err(), "nothing is written before the flush");
        w.flush().await.expect("flush");
        let n = b.read(&mut probe).await.expect("read");
        assert_eq!(&probe[..n], b"headers+data|trailers", "one piece");

        // While another call is in flight, the first flush is put off by one poll, then completes.
        let load = Load::default();
        let mut w2 = CoalescingIo::new(tokio::io::duplex(1 << 20).0, load.clone());
        let busy = load.enter();
        w2.write_all(b"data").await.expect("write");
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        assert!(
            Pin::new(&mut w2).poll_flush(&mut cx).is_pending(),
            "put off while busy"
        );
        assert!(
            Pin::new(&mut w2).poll_flush(&mut cx).is_ready(),
            "done the next time"
        );
        drop(busy);
        w2.write_all(b"data").await.expect("write");
        assert!(
            Pin::new(&mut w2).poll_flush(&mut cx).is_ready(),
            "at once when idle"
        );

        let big = vec![7u8; BUFFER_LIMIT + 1];
        w.write_all(b"small").await.expect("write");
        w.write_all(&big).await.expect("write large");
        w.flush().await.expect("flush");
        w.shutdown().await.expect("shutdown");
        let mut all = Vec::new();
        b.read_to_end(&mut all).await.expect("read rest");
        assert_eq!(&all[..5], b"small");
        assert_eq!(&all[5..], &big[..]);
    }
}
