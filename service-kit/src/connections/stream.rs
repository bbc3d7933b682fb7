//! The idle bound, applied to the TCP stream under TLS, whatever protocol runs over it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::Slot;

/// A TCP connection that holds its [`Slot`] and fails with `TimedOut` once it has moved
/// no byte in either direction for the idle bound, whatever protocol runs over it: a client
/// that stops reading its responses is cut as surely as one that stops sending.
#[derive(Debug)]
pub struct GuardedStream {
    tcp: TcpStream,
    /// Held for its `Drop`: the connection's place is given back when the stream goes.
    _slot: Slot,
    idle: Duration,
    last_activity: Instant,
    timer: Pin<Box<Sleep>>,
}

impl GuardedStream {
    pub(super) fn new(tcp: TcpStream, slot: Slot, idle: Duration) -> Self {
        let now = Instant::now();
        Self {
            tcp,
            _slot: slot,
            idle,
            last_activity: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
        }
    }

    fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    /// Pending while the connection has been idle less than the bound (the timer is set to
    /// wake this task when it would expire); the timer is re-armed lazily from the last
    /// activity rather than on every byte.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let deadline = self.last_activity + self.idle;
            if deadline <= Instant::now() {
                return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "connection idle"));
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.tcp).poll_write(cx, data) {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    this.touch();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Gate;
    use super::super::tests::options;
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_times_out_and_an_active_one_does_not() -> io::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut client = TcpStream::connect(listener.local_addr()?).await?;
        let (server, peer) = listener.accept().await?;
        let gate = Gate::new("test", &options(10, 10, 10));
        let slot = gate.admit(peer.ip()).expect("admitted");
        let mut guarded = GuardedStream::new(server, slot, Duration::from_secs(60));
        let mut byte = [0u8; 1];

        tokio::time::advance(Duration::from_secs(50)).await;
        client.write_all(b"x").await?;
        guarded.read_exact(&mut byte).await?;
        tokio::time::advance(Duration::from_secs(50)).await;
        client.write_all(b"y").await?;
        guarded.read_exact(&mut byte).await?;
        assert_eq!(&byte, b"y", "activity within the bound keeps the connection");

        let idle = guarded.read(&mut byte).await.expect_err("idle for the whole bound");
        assert_eq!(idle.kind(), io::ErrorKind::TimedOut);
        drop(guarded);
        assert_eq!(gate.open(), 0);
        Ok(())
    }
}
