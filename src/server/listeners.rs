//! Accepting connections for the gRPC listeners.

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// Accepted connections with Nagle's algorithm off: a response written as several HTTP/2
/// frames would otherwise wait for the client's delayed ACK (40 ms on Linux).
pub(super) fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|stream| {
        let stream = stream?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}
