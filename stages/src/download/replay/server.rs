//! The replay server's connections: hyper HTTP/1.1 on a tokio listener, each request answered
//! from the [`WarcIndex`], records read on tokio's blocking threads.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::ext::ReasonPhrase;
use hyper::header::{HeaderName, HeaderValue, ALLOW, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use super::archived::ArchivedResponse;
use super::warc::WarcIndex;

/// Accepts connections on `listener` until `stopped` fires or its sender is dropped.
pub(super) async fn serve(listener: std::net::TcpListener, index: Arc<WarcIndex>, mut stopped: oneshot::Receiver<()>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => return tracing::error!(%error, "Replay server cannot listen."),
    };
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::debug!(%error, "Replay server cannot accept a connection.");
                continue;
            }
        };
        let index = Arc::clone(&index);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let index = Arc::clone(&index);
                async move { Ok::<_, Infallible>(answer(index, &request).await) }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%error, "Replay connection ended with an error.");
            }
        });
    }
}

/// The archived answer to one proxied request.
async fn answer(index: Arc<WarcIndex>, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    if method == Method::CONNECT {
        return text(StatusCode::NOT_IMPLEMENTED, "the replay server cannot tunnel https: ask for http:// URLs\n");
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "the replay server answers GET and HEAD only\n");
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let url = request_url(request.uri(), request.headers().get(HOST));
    let Some(key) = index.find(&url).map(str::to_owned) else {
        return text(StatusCode::NOT_FOUND, "not in the archive\n");
    };
    let read = tokio::task::spawn_blocking(move || index.response(&key)).await;
    match read {
        Ok(Ok(Some(archived))) => replayed(archived),
        Ok(Ok(None)) => text(StatusCode::NOT_FOUND, "not in the archive\n"),
        Ok(Err(error)) => {
            tracing::debug!(%url, %error, "Archived record cannot be read back.");
            text(StatusCode::BAD_GATEWAY, "the archived record cannot be read\n")
        }
        Err(error) => {
            tracing::error!(%url, %error, "Reading an archived record failed.");
            text(StatusCode::INTERNAL_SERVER_ERROR, "the archived record cannot be read\n")
        }
    }
}

/// The URL a request asks for: its absolute-form target, or `http://` + `Host` + its path.
/// A default port (`:80` for http, `:443` for https) is dropped, as archives write URLs.
fn request_url(uri: &Uri, host: Option<&HeaderValue>) -> String {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let path = if path.is_empty() { "/" } else { path };
    let (scheme, authority) = match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => (scheme, authority.as_str()),
        _ => ("http", host.and_then(|h| h.to_str().ok()).unwrap_or_default()),
    };
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    format!("{scheme}://{authority}{path}")
}

/// The archived response as served: status, reason, headers, body (for `HEAD`, hyper sends the
/// body's length and not the body).
fn replayed(archived: ArchivedResponse) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(archived.status).ok().filter(|s| !s.is_informational());
    let Some(status) = status else {
        return text(StatusCode::BAD_GATEWAY, "the archived status code cannot be served\n");
    };
    let mut response = Response::new(Full::new(Bytes::from(archived.body)));
    *response.status_mut() = status;
    if !archived.reason.is_empty() && Some(archived.reason.as_slice()) != status.canonical_reason().map(str::as_bytes) {
        if let Ok(reason) = ReasonPhrase::try_from(archived.reason) {
            response.extensions_mut().insert(reason);
        }
    }
    let headers = response.headers_mut();
    for (name, value) in archived.headers {
        // Header lines that HTTP no longer allows are dropped, not fatal.
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(&value)) {
            headers.append(name, value);
        }
    }
    response
}

/// A short plain-text answer of the server itself.
fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_urls_as_archived() {
        let absolute: Uri = "http://example.org:80/a?b=1".parse().unwrap();
        assert_eq!(request_url(&absolute, None), "http://example.org/a?b=1");
        let bare: Uri = "http://example.org".parse().unwrap();
        assert_eq!(request_url(&bare, None), "http://example.org/");
        let origin: Uri = "/img.png".parse().unwrap();
        assert_eq!(request_url(&origin, Some(&HeaderValue::from_static("example.org:8080"))), "http://example.org:8080/img.png");
    }
}
