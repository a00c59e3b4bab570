//! [`ReplayServer`]: a loopback HTTP/1.1 forward proxy that answers from WARC `response`
//! records — status, headers (`X-Robots-Tag` and redirects included) and the de-chunked,
//! decoded body — so that archived images take exactly the live-web code path, and any HTTP
//! client that honours `http_proxy` (img2dataset's urllib too) can fetch from an archive.

mod archived;
mod warc;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
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
    /// A file is not a WARC file.
    #[error("{0} is not a WARC file")]
    NotWarc(PathBuf),
    /// The loopback server cannot start.
    #[error("cannot start the replay server: {0}")]
    Start(std::io::Error),
}

/// A running replay server on `127.0.0.1`; stopped when dropped.
#[derive(Debug)]
pub struct ReplayServer {
    index: Arc<WarcIndex>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ReplayServer {
    /// Indexes `warcs` and starts serving on a free loopback port.
    ///
    /// # Errors
    /// [`ReplayError`].
    pub fn start(warcs: &[PathBuf]) -> Result<Self, ReplayError> {
        let index = Arc::new(WarcIndex::build(warcs)?);
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(ReplayError::Start)?;
        listener.set_nonblocking(true).map_err(ReplayError::Start)?;
        let addr = listener.local_addr().map_err(ReplayError::Start)?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ReplayError::Start)?;
        let (stop, stopped) = oneshot::channel();
        let served = Arc::clone(&index);
        let thread = std::thread::Builder::new()
            .name("cascade-replay".to_owned())
            .spawn(move || runtime.block_on(serve(listener, served, stopped)))
            .map_err(ReplayError::Start)?;
        tracing::info!(%addr, urls = index.urls().count(), "WARC replay server started.");
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

    /// The number of URLs it can answer.
    #[must_use]
    pub fn urls(&self) -> usize {
        self.index.urls().count()
    }

    /// The URLs it can answer, in archive order.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.index.urls()
    }

    /// The body served for `url` (exactly, de-chunked and decoded), if archived.
    #[must_use]
    pub fn payload(&self, url: &str) -> Option<Vec<u8>> {
        self.index.response(&lookup_key(&self.index, url)?).map(|r| r.body)
    }
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The archived URL that answers `url`: itself, or its `https://` twin for an `http://` URL.
fn lookup_key(index: &WarcIndex, url: &str) -> Option<String> {
    if index.contains(url) {
        return Some(url.to_owned());
    }
    let twin = format!("https://{}", url.strip_prefix("http://")?);
    index.contains(&twin).then_some(twin)
}

/// Accepts connections until `stopped` fires.
async fn serve(listener: std::net::TcpListener, index: Arc<WarcIndex>, mut stopped: oneshot::Receiver<()>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => return tracing::error!(%error, "Replay server cannot listen."),
    };
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let index = Arc::clone(&index);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let index = Arc::clone(&index);
                async move { Ok::<_, Infallible>(answer(&index, &request)) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// The archived answer to one proxied request.
fn answer(index: &WarcIndex, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &str| {
        let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
        *response.status_mut() = status;
        response
    };
    if request.method() == Method::CONNECT {
        return plain(StatusCode::NOT_IMPLEMENTED, "the replay server cannot tunnel https: ask for http:// URLs\n");
    }
    let uri = request.uri();
    let url = if uri.scheme().is_some() {
        uri.to_string()
    } else {
        let host = request.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        format!("http://{host}{uri}")
    };
    let Some(archived) = lookup_key(index, &url).and_then(|key| index.response(&key)) else {
        return plain(StatusCode::NOT_FOUND, "not in the archive\n");
    };
    let mut builder = Response::builder().status(StatusCode::from_u16(archived.status).unwrap_or(StatusCode::BAD_GATEWAY));
    for (name, value) in &archived.headers {
        // Header lines that HTTP no longer allows are dropped, not fatal.
        if let (Ok(name), Ok(value)) =
            (hyper::header::HeaderName::try_from(name.as_str()), hyper::header::HeaderValue::try_from(value.as_str()))
        {
            builder = builder.header(name, value);
        }
    }
    let body = if request.method() == Method::HEAD { Bytes::new() } else { Bytes::from(archived.body) };
    builder.body(Full::new(body)).unwrap_or_else(|_| plain(StatusCode::BAD_GATEWAY, "unservable archived response\n"))
}

#[cfg(test)]
mod tests;
