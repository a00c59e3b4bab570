//! [`ReplayServer`]: a loopback HTTP/1.1 forward proxy that answers from WARC `response`
//! records — status, reason, headers (`X-Robots-Tag` and redirects included) and the
//! de-chunked, decoded body — so that archived images take exactly the live-web code path, and
//! any HTTP client that honours `http_proxy` (img2dataset's urllib too) can fetch from an archive.
//!
//! # Layout
//!
//! - `record`: WARC records read in sequence from an uncompressed stream;
//! - `warc`: the index of `response` records by URL, and reading one back on demand;
//! - `archived`: the HTTP response of a record, its transfer and content codings removed;
//! - `server`: the hyper service answering proxy requests from the index.

mod archived;
mod record;
mod server;
mod warc;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use warc::WarcIndex;

/// Why the replay server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A WARC file cannot be opened or read.
    #[error("cannot read WARC file {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file does not start with a WARC record (plain or gzip-compressed).
    #[error("{0} is not a WARC file")]
    NotWarc(PathBuf),
    /// No loopback port can be bound.
    #[error("cannot bind the replay server to 127.0.0.1: {0}")]
    Bind(std::io::Error),
    /// The server's runtime or thread cannot start.
    #[error("cannot start the replay server: {0}")]
    Start(std::io::Error),
}

/// A running replay server on `127.0.0.1`, serving from its own thread; stopped (and its
/// thread joined) when dropped.
///
/// It answers absolute-form requests (`GET http://host/path`, as sent to a proxy) and
/// origin-form ones with a `Host` header, for `GET` and `HEAD`. An `http://` URL that is not
/// archived is answered from its `https://` record, if any; an unknown URL gets `404 Not Found`,
/// and `CONNECT` (https through the proxy) `501 Not Implemented`.
#[derive(Debug)]
pub struct ReplayServer {
    /// The archived responses.
    index: Arc<WarcIndex>,
    /// Where it listens.
    addr: SocketAddr,
    /// Fired (or dropped) to stop accepting.
    stop: Option<oneshot::Sender<()>>,
    /// The thread running the server's runtime.
    thread: Option<JoinHandle<()>>,
}

impl ReplayServer {
    /// Indexes `warcs` (plain or gzip, WARC/0.17 to 1.1) and starts serving on a free loopback
    /// port. Damaged records are skipped and counted ([`Self::skipped`]); a truncated file
    /// serves what it holds.
    ///
    /// # Errors
    /// [`ReplayError::Open`] or [`ReplayError::NotWarc`] for a file, [`ReplayError::Bind`] or
    /// [`ReplayError::Start`] for the server.
    pub fn start(warcs: &[PathBuf]) -> Result<Self, ReplayError> {
        let index = Arc::new(WarcIndex::build(warcs)?);
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(ReplayError::Bind)?;
        listener.set_nonblocking(true).map_err(ReplayError::Bind)?;
        let addr = listener.local_addr().map_err(ReplayError::Bind)?;
        let readers = std::thread::available_parallelism().map_or(2, usize::from);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(readers)
            .build()
            .map_err(ReplayError::Start)?;
        let (stop, stopped) = oneshot::channel();
        let served = Arc::clone(&index);
        let thread = std::thread::Builder::new()
            .name("cascade-replay".to_owned())
            .spawn(move || runtime.block_on(server::serve(listener, served, stopped)))
            .map_err(ReplayError::Start)?;
        tracing::info!(%addr, urls = index.len(), skipped = index.malformed(), "WARC replay server started.");
        Ok(Self { index, addr, stop: Some(stop), thread: Some(thread) })
    }

    /// The proxy URL to give HTTP clients: `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The number of URLs it can answer (each archived URL once, `http` and `https` apart).
    #[must_use]
    pub fn urls(&self) -> usize {
        self.index.len()
    }

    /// The URLs it can answer, as archived, in archive order.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.index.urls()
    }

    /// How many records were skipped as damaged while indexing (unparsable headers, bytes that
    /// were no record, `response` records of web URLs without an HTTP response).
    #[must_use]
    pub fn skipped(&self) -> usize {
        self.index.malformed()
    }

    /// The body served for `url` (exactly: de-chunked and decoded), looked up as a request
    /// for it is; `None` when it is not archived or its record cannot be read back.
    #[must_use]
    pub fn payload(&self, url: &str) -> Option<Vec<u8>> {
        let key = self.index.find(url)?;
        self.index.response(key).ok().flatten().map(|response| response.body)
    }
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // An error means the server already stopped.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("The replay server's thread panicked.");
            }
        }
    }
}

#[cfg(test)]
mod tests;
