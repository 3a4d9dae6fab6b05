//! Listening sockets that outlive a server generation, so that a reload
//! keeps every endpoint whose address did not change: no port is closed
//! and reopened, and a client connecting during the reload waits a moment
//! instead of being refused.
//!
//! Each bound endpoint has an acceptor task that accepts connections and
//! queues them; the servers of the current generation take them from the
//! queue ([`Connections`], served plainly or through TLS by
//! [`tls::Listener`](super::tls::Listener)). When a generation stops (graceful shutdown), it
//! stops taking; the next one takes what queued meanwhile.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

/// Connections accepted and not yet taken by a server, per endpoint.
const QUEUED: usize = 1024;

/// One bound endpoint.
#[derive(Debug)]
struct Bound {
    addr: SocketAddr,
    queue: Arc<Mutex<mpsc::Receiver<TcpStream>>>,
    close: CancellationToken,
}

/// What identifies an endpoint across reloads: the component serving it,
/// the configured owner (a receiver's or exporter's id) and the configured
/// address (`127.0.0.1:0` stays the port it was given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointKey {
    /// `otlp-grpc`, `otlp-http`, `prometheus` or `api` (the log's name).
    pub component: String,
    /// The receiver or exporter id (`otlp`, `prometheus`), or `service`.
    pub owner: String,
    /// The address as configured.
    pub endpoint: String,
}

impl EndpointKey {
    /// A key.
    pub fn new(component: &str, owner: &str, endpoint: &str) -> EndpointKey {
        EndpointKey {
            component: component.to_string(),
            owner: owner.to_string(),
            endpoint: endpoint.to_string(),
        }
    }

    fn id(&self) -> (String, String) {
        (
            format!("{}/{}", self.component, self.owner),
            self.endpoint.clone(),
        )
    }
}

/// The endpoints bound so far, by component and configured address.
#[derive(Debug, Default)]
pub struct Endpoints {
    bound: HashMap<(String, String), Bound>,
}

impl Endpoints {
    /// The connections of `key`'s endpoint: the one bound before under the
    /// same key, or a new one. Logs `Listening.` with the address either way.
    pub async fn take(&mut self, key: &EndpointKey) -> anyhow::Result<Connections> {
        self.reserve(key).await?;
        let bound = &self.bound[&key.id()];
        tracing::info!(component = %key.component, addr = %bound.addr, "Listening.");
        Ok(Connections {
            addr: bound.addr,
            queue: bound.queue.clone(),
        })
    }

    /// Binds `key`'s endpoint now if it is not bound yet, without serving
    /// it: a reload binds its new endpoints before it stops anything, so
    /// that an address in use refuses the reload instead of leaving verdict
    /// half-configured.
    pub async fn reserve(&mut self, key: &EndpointKey) -> anyhow::Result<()> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.bound.entry(key.id()) {
            slot.insert(bind(&key.endpoint, &key.component).await?);
        }
        Ok(())
    }

    /// Closes every endpoint not in `keep` (connections still queued there
    /// are dropped: nobody serves that address any more).
    pub fn retain(&mut self, keep: &[EndpointKey]) {
        let keep: Vec<(String, String)> = keep.iter().map(EndpointKey::id).collect();
        self.bound.retain(|key, bound| {
            let kept = keep.contains(key);
            if !kept {
                bound.close.cancel();
                tracing::info!(component = %key.0, addr = %bound.addr, "Closed.");
            }
            kept
        });
    }

    /// Closes every endpoint.
    pub fn close(&mut self) {
        self.retain(&[]);
    }
}

impl Drop for Endpoints {
    fn drop(&mut self) {
        for bound in self.bound.values() {
            bound.close.cancel();
        }
    }
}

async fn bind(endpoint: &str, component: &str) -> anyhow::Result<Bound> {
    let listener = TcpListener::bind(endpoint)
        .await
        .with_context(|| format!("binding {component} to {endpoint}"))?;
    let addr = listener
        .local_addr()
        .with_context(|| format!("reading the address of {component}"))?;
    let (tx, rx) = mpsc::channel(QUEUED);
    let close = CancellationToken::new();
    let stop = close.clone();
    let component = component.to_string();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, _)) => {
                    // Small requests and answers must not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    let sent = tokio::select! {
                        () = stop.cancelled() => break,
                        s = tx.send(stream) => s,
                    };
                    if sent.is_err() {
                        break;
                    }
                }
                // Out of file descriptors and the like: wait, then go on.
                Err(err) => {
                    tracing::warn!(component = %component, error = %err, "Accept failed.");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    });
    Ok(Bound {
        addr,
        queue: Arc::new(Mutex::new(rx)),
        close,
    })
}

/// The connections of one endpoint, as one server generation takes them.
#[derive(Debug, Clone)]
pub struct Connections {
    addr: SocketAddr,
    queue: Arc<Mutex<mpsc::Receiver<TcpStream>>>,
}

impl Connections {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next connection; `None` once the endpoint is closed.
    pub(super) async fn next(&self) -> Option<TcpStream> {
        self.queue.lock().await.recv().await
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn an_endpoint_outlives_its_server_and_queues_meanwhile() {
        let mut endpoints = Endpoints::default();
        let key = EndpointKey::new("api", "service", "127.0.0.1:0");
        let first = endpoints.take(&key).await.expect("binds");
        let addr = first.addr();
        // Taken again under the same key: the same socket.
        let again = endpoints.take(&key).await.expect("same");
        let other = EndpointKey::new("prometheus", "prometheus", "127.0.0.1:0");
        assert_ne!(endpoints.take(&other).await.expect("binds").addr(), addr);
        assert_eq!(again.addr(), addr);
        // A client connects while nobody serves: it waits in the queue, and
        // the next server takes it.
        let mut client = TcpStream::connect(addr).await.expect("connects");
        client.write_all(b"ping").await.expect("writes");
        let mut served = again.next().await.expect("queued connection");
        let mut buf = [0u8; 4];
        served.read_exact(&mut buf).await.expect("reads");
        assert_eq!(&buf, b"ping");
        // Closed when no longer kept: connecting is refused.
        endpoints.retain(&[other]);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
