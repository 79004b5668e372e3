//! An upgraded (WebSocket) connection spliced to its upstream, closed when idle.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Copies both ways until either side closes or nothing has moved either way
/// for `idle`.
pub async fn tunnel<D, U>(down: D, up: U, idle: Duration)
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let start = tokio::time::Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut down = Noted::new(down, start, last.clone());
    let mut up = Noted::new(up, start, last.clone());
    let idle_out = async {
        loop {
            let deadline = start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
            if deadline <= tokio::time::Instant::now() {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
        () = idle_out => tracing::debug!(idle = ?idle, "tunnel idle; closed"),
    }
}

/// A tunnel's end that notes when it last read anything, in milliseconds since
/// the tunnel opened (shared by both ends: traffic either way counts).
struct Noted<T> {
    io: T,
    start: tokio::time::Instant,
    last: Arc<AtomicU64>,
}

impl<T> Noted<T> {
    fn new(io: T, start: tokio::time::Instant, last: Arc<AtomicU64>) -> Self {
        Noted { io, start, last }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Noted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut self.io).poll_read(cx, buf));
        if buf.filled().len() > before {
            let ms = self.start.elapsed().as_millis();
            self.last
                .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        Poll::Ready(result)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Noted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tunnel closes once nothing has moved for its idle time, and not before:
    /// traffic either way keeps it open (paused clock: no real waiting).
    #[tokio::test(start_paused = true)]
    async fn tunnels_close_when_idle() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, down) = tokio::io::duplex(64);
        let (up, mut app) = tokio::io::duplex(64);
        let idle = Duration::from_secs(10);
        let started = tokio::time::Instant::now();
        let task = tokio::spawn(tunnel(down, up, idle));
        let mut buf = [0u8; 4];
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            client.write_all(b"ping").await.unwrap();
            app.read_exact(&mut buf).await.unwrap();
            tokio::time::sleep(Duration::from_secs(6)).await;
            app.write_all(b"pong").await.unwrap();
            client.read_exact(&mut buf).await.unwrap();
        }
        assert!(
            !task.is_finished(),
            "traffic every 6 s keeps a 10 s tunnel open"
        );
        task.await.unwrap();
        let lived = started.elapsed();
        assert!(
            lived >= Duration::from_secs(46) && lived < Duration::from_secs(47),
            "closed {lived:?} after opening: 10 s after the last traffic at 36 s"
        );
        assert_eq!(
            client.read(&mut buf).await.unwrap(),
            0,
            "the caller's end is closed"
        );
    }
}
