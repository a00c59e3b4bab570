//! Loopback image server for download benchmarks: `GET /img/{i}.jpg` answers, after a fixed
//! delay that stands in for web latency, one of the real JPEG and PNG images of a WARC crawl
//! (the bundled 2008 archive.org crawl by default), cycled over `i`.
//!
//! ```text
//! image_server --delay-ms 100 --bind 127.0.0.1:0 --hosts 64
//! ```
//!
//! The first line on stdout is the server's address (`http://127.0.0.1:PORT`); it then serves
//! until killed. With `--hosts H` it also listens on the next loopback addresses (127.0.0.2 …
//! 127.0.0.H, same port), so downloaders with per-host limits see H hosts. Every `i` is valid,
//! so a pair shard of N URLs `…/img/0.jpg` to `…/img/{N-1}.jpg` downloads N images without
//! repeating a URL (`benches/download_load.sh`).
//! Everything runs on one thread (hyper on a current-thread tokio runtime): the server must
//! take as little of the machine as it can from the downloaders it is measuring.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cascade_stages::download::ReplayServer;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};

/// Serves real images on loopback with a delay per response.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// Milliseconds before each answer.
    #[arg(long, default_value_t = 100)]
    delay_ms: u64,
    /// Listen on this many consecutive loopback addresses from `bind` (127.0.0.1, 127.0.0.2…,
    /// same port), so that downloaders see as many hosts, as on the web.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..))]
    hosts: u8,
    /// The WARC whose JPEG and PNG responses are served (default: the bundled crawl).
    #[arg(long)]
    warc: Option<PathBuf>,
}

/// One image to serve.
struct Image {
    body: Bytes,
    content_type: &'static str,
}

/// The JPEG and PNG payloads of `warc`'s responses, in the crawl's order.
fn load_images(warc: PathBuf) -> Result<Vec<Image>, String> {
    let replay = ReplayServer::start(std::slice::from_ref(&warc)).map_err(|e| format!("{}: {e}", warc.display()))?;
    let images: Vec<Image> = replay
        .targets()
        .filter_map(|url| {
            let payload = replay.payload(url)?;
            let bytes: &[u8] = &payload;
            let content_type = if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
                "image/jpeg"
            } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
                "image/png"
            } else {
                return None;
            };
            Some(Image { body: Bytes::copy_from_slice(bytes), content_type })
        })
        .collect();
    if images.is_empty() {
        return Err(format!("{} holds no JPEG or PNG response", warc.display()));
    }
    Ok(images)
}

/// Answers `/img/{i}.{ext}` with image `i mod len` after `delay`, anything else with 404.
async fn answer(request: Request<Incoming>, images: Arc<Vec<Image>>, delay: Duration) -> Result<Response<Full<Bytes>>, hyper::http::Error> {
    let index = request
        .uri()
        .path()
        .strip_prefix("/img/")
        .and_then(|name| name.split('.').next())
        .and_then(|i| i.parse::<usize>().ok());
    tokio::time::sleep(delay).await;
    let Some(index) = index else {
        return Response::builder().status(StatusCode::NOT_FOUND).body(Full::new(Bytes::from_static(b"not found")));
    };
    let image = &images[index % images.len()];
    Response::builder().header(hyper::header::CONTENT_TYPE, image.content_type).body(Full::new(image.body.clone()))
}

/// Listens on `bind` and on the next `hosts - 1` loopback addresses (same port), prints the
/// first address, and serves until killed.
async fn serve(bind: SocketAddr, hosts: u8, images: Arc<Vec<Image>>, delay: Duration) -> std::io::Result<()> {
    let first = listen(bind)?;
    let port = first.local_addr()?.port();
    let mut listeners = vec![first];
    if hosts > 1 {
        let SocketAddr::V4(v4) = bind else {
            return Err(std::io::Error::other("--hosts needs an IPv4 loopback --bind"));
        };
        let [a, b, c, d] = v4.ip().octets();
        if a != 127 || u16::from(d) + u16::from(hosts) > 256 {
            return Err(std::io::Error::other("--hosts needs a 127.x.y.z --bind with room for the hosts"));
        }
        for k in 1..hosts {
            listeners.push(listen(SocketAddr::from(([a, b, c, d + k], port)))?);
        }
    }
    println!("http://{}", listeners[0].local_addr()?);
    eprintln!("serving {} images on {} addresses with a {} ms delay", images.len(), listeners.len(), delay.as_millis());
    let accepting: Vec<_> = listeners.into_iter().map(|l| tokio::spawn(accept(l, Arc::clone(&images), delay))).collect();
    for task in accepting {
        task.await.map_err(std::io::Error::other)??;
    }
    Ok(())
}

/// A listening socket with a deep backlog: a thousand downloader connections may arrive at once.
fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(4096)
}

/// Serves every connection of `listener`, one task each.
async fn accept(listener: TcpListener, images: Arc<Vec<Image>>, delay: Duration) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let images = Arc::clone(&images);
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, Arc::clone(&images), delay));
            // A client hanging up mid-answer is not the server's problem.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn main() {
    let args = Args::parse();
    let warc = args.warc.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../stages/tests/data/warc/ia-archive-org-2008.warc.gz")
    });
    let images = match load_images(warc) {
        Ok(images) => Arc::new(images),
        Err(e) => {
            eprintln!("image_server: {e}");
            std::process::exit(1);
        }
    };
    let delay = Duration::from_millis(args.delay_ms);
    // unwrap: a current-thread runtime with I/O and timers always builds.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let served = runtime.block_on(serve(args.bind, args.hosts, images, delay));
    if let Err(e) = served {
        eprintln!("image_server: {e}");
        std::process::exit(1);
    }
}
