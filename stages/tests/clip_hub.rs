//! `hf:` weights against a loopback hub: a "hub" server that answers `/{repo}/resolve/{rev}/{file}`
//! with a redirect to a "CDN" server (another port, so another origin) serving the fixture
//! model; the cache is a temporary folder. Endpoint and cache are passed explicitly (tests run
//! in parallel threads: no process environment).
#![cfg(feature = "clip")]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cascade_stages::clip::{ClipFilter, ClipStage, HubError, HubSettings, ModelSettings, WeightsSource};
use cascade_stages::stage::{Stage, StageContext};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clip/fixtures/model")
}

/// One request a server saw.
#[derive(Debug, Clone)]
struct Seen {
    server: &'static str,
    path: String,
    authorization: Option<String>,
}

/// The two loopback servers and what they saw.
struct LoopbackHub {
    endpoint: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl LoopbackHub {
    fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cdn = TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn_origin = format!("http://{}", cdn.local_addr().unwrap());
        let hub = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", hub.local_addr().unwrap());
        for (name, listener, cdn_origin) in [("cdn", cdn, String::new()), ("hub", hub, cdn_origin)] {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    serve(name, stream, &cdn_origin, &seen);
                }
            });
        }
        Self { endpoint, seen }
    }

    fn settings(&self, cache: &Path) -> HubSettings {
        HubSettings { endpoint: self.endpoint.clone(), cache_dir: cache.to_owned(), token: Some("hf_test".into()) }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, &str)], body: &[u8], length: usize) {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {length}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

/// Hub: `/{owner}/{name}/resolve/main/{file}` → 302 to the CDN (with `X-Repo-Commit`) for
/// owner `tiny`, 404 otherwise. CDN: `/files/{name}/{file}` → the fixture file; for repo
/// `broken` half of it, then the connection closes.
fn serve(server: &'static str, mut stream: TcpStream, cdn_origin: &str, seen: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    let _ = reader.read_line(&mut request_line);
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_owned());
            }
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
    seen.lock().unwrap().push(Seen { server, path: path.clone(), authorization });
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (server, parts.as_slice()) {
        ("hub", ["tiny", name, "resolve", "main", file]) => {
            let location = format!("{cdn_origin}/files/{name}/{file}");
            respond(&mut stream, "302 Found", &[("Location", &location), ("X-Repo-Commit", COMMIT)], b"", 0);
        }
        ("cdn", ["files", name, file]) => match std::fs::read(model_dir().join(file)) {
            Ok(bytes) if *name == "broken" => respond(&mut stream, "200 OK", &[], &bytes[..bytes.len() / 2], bytes.len()),
            Ok(bytes) => respond(&mut stream, "200 OK", &[], &bytes, bytes.len()),
            Err(_) => respond(&mut stream, "404 Not Found", &[], b"", 0),
        },
        _ => respond(&mut stream, "404 Not Found", &[("X-Error-Code", "RepoNotFound")], b"", 0),
    }
}

fn hub(repo: &str) -> WeightsSource {
    format!("hf:{repo}").parse().unwrap()
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                files.push(entry.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    files
}

#[test]
fn downloads_once_into_the_hub_cache_then_reads_it_offline() {
    let server = LoopbackHub::start();
    let cache = tempfile::tempdir().unwrap();
    let settings = server.settings(cache.path());
    let resolved = hub("tiny/clip").resolve(&settings, true).unwrap();
    let snapshot = cache.path().join(format!("models--tiny--clip/snapshots/{COMMIT}"));
    assert_eq!(resolved.weights, snapshot.join("model.safetensors"));
    assert_eq!(resolved.config, Some(snapshot.join("config.json")));
    for file in ["model.safetensors", "config.json"] {
        assert!(std::fs::read(snapshot.join(file)).unwrap() == std::fs::read(model_dir().join(file)).unwrap(), "{file} differs");
    }
    let refs = std::fs::read_to_string(cache.path().join("models--tiny--clip/refs/main")).unwrap();
    assert_eq!(refs, COMMIT);
    assert_eq!(
        files_under(cache.path()),
        [
            "models--tiny--clip/refs/main".to_owned(),
            format!("models--tiny--clip/snapshots/{COMMIT}/config.json"),
            format!("models--tiny--clip/snapshots/{COMMIT}/model.safetensors"),
        ]
    );
    let seen = server.seen();
    let paths: Vec<(&str, &str)> = seen.iter().map(|s| (s.server, s.path.as_str())).collect();
    assert_eq!(
        paths,
        [
            ("hub", "/tiny/clip/resolve/main/model.safetensors"),
            ("cdn", "/files/clip/model.safetensors"),
            ("hub", "/tiny/clip/resolve/main/config.json"),
            ("cdn", "/files/clip/config.json"),
        ]
    );
    // The token goes to the hub only, not to the CDN it redirects to.
    for s in &seen {
        let expected = (s.server == "hub").then(|| "Bearer hf_test".to_owned());
        assert_eq!(s.authorization, expected, "{s:?}");
    }

    // Later uses: the cache, no request at all — with explicit config too.
    assert_eq!(hub("tiny/clip").resolve(&settings, true).unwrap(), resolved);
    assert_eq!(hub("tiny/clip").resolve(&settings, false).unwrap().config, None);
    let offline = HubSettings { endpoint: "http://127.0.0.1:9".into(), ..settings };
    assert_eq!(hub("tiny/clip").resolve(&offline, true).unwrap(), resolved);
    assert_eq!(server.seen().len(), 4, "the cache was read without the network");
}

#[test]
fn reads_a_cache_written_by_python() {
    // huggingface_hub's layout: refs/main names the commit, the snapshot links into blobs/.
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--openai--clip-vit-base-patch32");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join(format!("snapshots/{COMMIT}"))).unwrap();
    std::fs::write(repo.join("refs/main"), format!("{COMMIT}\n")).unwrap();
    std::fs::copy(model_dir().join("model.safetensors"), repo.join("blobs/4f2a")).unwrap();
    let link = repo.join(format!("snapshots/{COMMIT}/model.safetensors"));
    #[cfg(unix)]
    std::os::unix::fs::symlink("../../blobs/4f2a", &link).unwrap();
    #[cfg(not(unix))]
    std::fs::copy(repo.join("blobs/4f2a"), &link).unwrap();
    let offline = HubSettings { endpoint: "http://127.0.0.1:9".into(), cache_dir: cache.path().to_owned(), token: None };
    let resolved = hub("openai/clip-vit-base-patch32").resolve(&offline, false).unwrap();
    assert_eq!(resolved.weights, link);
    // config.json is not cached: the closed port gives the clear error.
    let err = hub("openai/clip-vit-base-patch32").resolve(&offline, true).unwrap_err();
    assert!(
        err.to_string().starts_with("cannot download openai/clip-vit-base-patch32 config.json from http://127.0.0.1:9: "),
        "{err}"
    );
    assert!(err.to_string().ends_with("; download it yourself and set config = \"path/to/config.json\""), "{err}");
}

#[test]
fn a_missing_repository_is_a_clear_error() {
    let server = LoopbackHub::start();
    let cache = tempfile::tempdir().unwrap();
    let err = hub("nobody/nothing").resolve(&server.settings(cache.path()), true).unwrap_err();
    assert!(matches!(err, HubError::Download { status: Some(404), .. }), "{err:?}");
    let message = err.to_string();
    let expected = format!("cannot download nobody/nothing model.safetensors from {}: the server answered 404", server.endpoint);
    assert!(message.starts_with(&expected), "{message}");
    assert!(message.ends_with("; download it yourself and set weights = \"path/to/model.safetensors\""), "{message}");
    assert!(files_under(cache.path()).is_empty());

    // Through the model loader, as the stage's `open` sees it.
    let settings = ModelSettings { weights: hub("nobody/nothing"), ..ModelSettings::default() };
    let err = ClipFilter::load_with(&settings, &server.settings(cache.path())).unwrap_err();
    assert!(err.to_string().starts_with("cannot download nobody/nothing model.safetensors"), "{err}");
}

#[test]
fn a_download_cut_short_leaves_no_file() {
    let server = LoopbackHub::start();
    let cache = tempfile::tempdir().unwrap();
    let settings = server.settings(cache.path());
    for attempt in 1..=2 {
        let err = hub("tiny/broken").resolve(&settings, true).unwrap_err();
        assert!(matches!(err, HubError::Download { status: None, .. }), "{err:?}");
        assert!(err.to_string().starts_with("cannot download tiny/broken model.safetensors from "), "{err}");
        let size = std::fs::metadata(model_dir().join("model.safetensors")).unwrap().len();
        let broke_off = format!("the download broke off after {} of {size} bytes", size / 2);
        assert!(err.to_string().contains(&broke_off), "{err}");
        let left: Vec<String> = files_under(cache.path());
        assert!(left.iter().all(|f| f.ends_with(".partial")), "attempt {attempt} left {left:?}");
        // Not cached: each attempt asks again.
        assert_eq!(server.seen().len(), 2 * attempt);
    }
}

#[test]
fn the_model_loads_from_the_hub() {
    let server = LoopbackHub::start();
    let cache = tempfile::tempdir().unwrap();
    // No explicit config: the repository's config.json gives the tiny model's sizes.
    let settings = ModelSettings { weights: hub("tiny/clip"), ..ModelSettings::default() };
    let from_hub = ClipFilter::load_with(&settings, &server.settings(cache.path())).unwrap();
    assert_eq!(from_hub.config().projection_dim, 8);
    let local = ClipFilter::load(&ModelSettings {
        weights: model_dir().join("model.safetensors").into(),
        config: Some(model_dir().join("config.json")),
        ..ModelSettings::default()
    })
    .unwrap();
    let captions = ["a photo of a cat", "a dog"];
    assert_eq!(from_hub.embed_captions(&captions), local.embed_captions(&captions));

    // The stage, with the hub given to it; the second worker finds the model cached.
    let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap());
    let ctx = StageContext::new("c", cache.path().join("artifacts"), pool);
    let requests = server.seen().len();
    let stage: ClipStage = serde_json::from_str(r#"{"weights": "hf:tiny/clip", "threshold": 0.3}"#).unwrap();
    let mut stage = stage.with_hub(server.settings(cache.path()));
    stage.open(&ctx).unwrap();
    assert_eq!(server.seen().len(), requests);
}
