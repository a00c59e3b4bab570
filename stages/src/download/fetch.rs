//! [`Fetcher`]: one image's bytes over HTTP, as img2dataset fetches them (User-Agent, timeouts,
//! redirects, `X-Robots-Tag` opt-outs, its error messages), with a streaming body cap, per-host
//! politeness and a DNS cache.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use reqwest::header::{HeaderMap, USER_AGENT};
use tokio::sync::Semaphore;

use super::dns::CachingResolver;
use super::options::{DownloadOptions, Source};
use crate::stage::error::with_causes;

/// img2dataset's User-Agent (a desktop Firefox), extended with the token when one is set.
const BASE_USER_AGENT: &str = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:72.0) Gecko/20100101 Firefox/72.0";

/// The message of a download refused by an `X-Robots-Tag` header (img2dataset's).
pub(crate) const ROBOTS_DISALLOWED: &str = "Use of image disallowed by X-Robots-Tag directive";

/// Per-host state kept for this many hosts at most before idle hosts are dropped.
const MAX_TRACKED_HOSTS: usize = 10_000;

/// Fetches image bytes; shared by every request of a worker.
pub(crate) struct Fetcher {
    client: reqwest::Client,
    /// Serve `https://` URLs as `http://` (the replay server answers for both).
    rewrite_https: bool,
    user_agent_token: Option<String>,
    disallowed: HashSet<String>,
    retries: u32,
    retry_backoff: Duration,
    deadline: Duration,
    max_body_bytes: u64,
    min_bytes: u64,
    per_host_concurrency: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    rate: Option<DefaultKeyedRateLimiter<String>>,
}

impl Fetcher {
    /// A fetcher for `options`; `proxy` overrides `options.proxy` (the replay server's URL).
    ///
    /// # Errors
    /// A message when the HTTP client cannot be built (a malformed proxy URL, say).
    pub(crate) fn new(options: &DownloadOptions, proxy: Option<&str>) -> Result<Self, String> {
        let mut user_agent = BASE_USER_AGENT.to_owned();
        let token = options.user_agent_token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        if let Some(token) = token {
            user_agent.push_str(&format!(" (compatible; {token}; +https://github.com/rom1504/img2dataset)"));
        }
        let mut headers = HeaderMap::new();
        headers.insert(USER_AGENT, user_agent.parse().map_err(|_| format!("user-agent-token {token:?} is not a valid header value"))?);
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .no_proxy()
            .tls_backend_preconfigured(tls_config()?)
            .connect_timeout(options.timeout())
            .read_timeout(options.timeout())
            .redirect(reqwest::redirect::Policy::limited(options.max_redirects))
            .dns_resolver(Arc::new(CachingResolver::default()))
            .pool_max_idle_per_host(options.per_host_concurrency)
            .tcp_nodelay(true);
        if let Some(proxy) = proxy.or(options.proxy.as_deref()) {
            builder = builder.proxy(reqwest::Proxy::all(proxy).map_err(|e| format!("proxy {proxy}: {e}"))?);
        }
        let client = builder.build().map_err(|e| format!("HTTP client: {}", error_chain(&e)))?;
        let rate = options.per_host_rate.map(|rate| {
            let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
            let quota = Quota::with_period(period).map_or_else(|| Quota::per_second(NonZeroU32::MIN), |q| q.allow_burst(NonZeroU32::MIN));
            RateLimiter::keyed(quota)
        });
        Ok(Self {
            client,
            rewrite_https: options.source == Source::Warc,
            user_agent_token: token.map(str::to_lowercase),
            disallowed: options.disallowed_header_directives.iter().map(|d| d.trim().to_lowercase()).collect(),
            retries: options.retries,
            retry_backoff: Duration::from_secs_f64(options.retry_backoff),
            deadline: options.deadline(),
            max_body_bytes: options.max_body_bytes,
            min_bytes: options.min_bytes,
            per_host_concurrency: options.per_host_concurrency,
            hosts: Mutex::new(HashMap::new()),
            rate,
        })
    }

    /// The body at `url`, or the failure's message (img2dataset's where the cause is the same).
    /// Failed attempts are retried `retries` times with doubling backoff, except answers that
    /// would not change (client errors, robots opt-outs, oversized bodies).
    pub(crate) async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut backoff = self.retry_backoff;
        let mut attempt = 0;
        loop {
            match self.fetch_once(url).await {
                Ok(body) => return Ok(body),
                Err(failure) if failure.retryable && attempt < self.retries => {
                    attempt += 1;
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                }
                Err(failure) => return Err(failure.message),
            }
        }
    }

    async fn fetch_once(&self, url: &str) -> Result<Vec<u8>, Failure> {
        let mut parsed = reqwest::Url::parse(url.trim()).map_err(|e| Failure::fixed(format!("invalid URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Failure::fixed(format!("unsupported URL scheme {}", parsed.scheme())));
        }
        if self.rewrite_https && parsed.scheme() == "https" {
            // `http` and `https` are both special schemes: the switch cannot fail.
            let _ = parsed.set_scheme("http");
        }
        let host = parsed.host_str().unwrap_or_default().to_owned();
        let slot = self.host_slot(&host);
        let _permit = slot.acquire().await.map_err(|_| Failure::retry("host queue closed".to_owned()))?;
        if let Some(rate) = &self.rate {
            rate.until_key_ready(&host).await;
        }
        match tokio::time::timeout(self.deadline, self.get(parsed)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::retry("timed out".to_owned())),
        }
    }

    async fn get(&self, url: reqwest::Url) -> Result<Vec<u8>, Failure> {
        let mut response = self.client.get(url).send().await.map_err(|e| Failure::from_reqwest(&e))?;
        let status = response.status();
        if !status.is_success() {
            let message = format!("HTTP Error {}: {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
            let retryable = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
            return Err(Failure { message, retryable });
        }
        if is_disallowed(response.headers(), self.user_agent_token.as_deref(), &self.disallowed) {
            return Err(Failure::fixed(ROBOTS_DISALLOWED.to_owned()));
        }
        if response.content_length().is_some_and(|length| length > self.max_body_bytes) {
            return Err(Failure::fixed(self.too_large()));
        }
        let mut body = Vec::with_capacity(usize::try_from(response.content_length().unwrap_or(0).min(self.max_body_bytes)).unwrap_or(0));
        while let Some(chunk) = response.chunk().await.map_err(|e| Failure::from_reqwest(&e))? {
            if (body.len() + chunk.len()) as u64 > self.max_body_bytes {
                return Err(Failure::fixed(self.too_large()));
            }
            body.extend_from_slice(&chunk);
        }
        if (body.len() as u64) < self.min_bytes {
            return Err(Failure::fixed(format!("body of {} bytes is under the {}-byte minimum", body.len(), self.min_bytes)));
        }
        Ok(body)
    }

    fn too_large(&self) -> String {
        format!("body larger than the {}-byte limit", self.max_body_bytes)
    }

    /// The semaphore that limits requests in flight to `host`.
    fn host_slot(&self, host: &str) -> Arc<Semaphore> {
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        if hosts.len() >= MAX_TRACKED_HOSTS && !hosts.contains_key(host) {
            hosts.retain(|_, slot| Arc::strong_count(slot) > 1);
            if let Some(rate) = &self.rate {
                rate.retain_recent();
            }
        }
        Arc::clone(hosts.entry(host.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(self.per_host_concurrency))))
    }
}

/// A failed attempt: its message and whether another attempt may succeed.
struct Failure {
    message: String,
    retryable: bool,
}

impl Failure {
    fn fixed(message: String) -> Self {
        Self { message, retryable: false }
    }

    fn retry(message: String) -> Self {
        Self { message, retryable: true }
    }

    fn from_reqwest(error: &reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::retry("timed out".to_owned())
        } else if error.is_redirect() {
            Self::fixed(format!("redirect error: {}", error_chain(error)))
        } else {
            Self::retry(error_chain(error))
        }
    }
}

/// An error with its causes, `outer: inner: innermost`, without the URL reqwest prepends.
fn error_chain(error: &reqwest::Error) -> String {
    let message = with_causes(error);
    match error.url() {
        Some(url) => message.replace(&format!(" for url ({url})"), ""),
        None => message,
    }
}

/// img2dataset's `is_disallowed`: an `X-Robots-Tag` value `[TOKEN:] directive, …` forbids the
/// image when it names a disallowed directive and either no token or ours.
pub(crate) fn is_disallowed(headers: &HeaderMap, token: Option<&str>, disallowed: &HashSet<String>) -> bool {
    if disallowed.is_empty() {
        return false;
    }
    headers.get_all("x-robots-tag").iter().any(|value| {
        let value = String::from_utf8_lossy(value.as_bytes());
        let (addressee, directives) = match value.split_once(':') {
            Some((addressee, directives)) => (Some(addressee.to_lowercase()), directives),
            None => (None, value.as_ref()),
        };
        addressee.is_none_or(|a| Some(a.as_str()) == token)
            && directives.split(',').any(|d| disallowed.contains(&d.trim().to_lowercase()))
    })
}

/// rustls with ring and the Mozilla roots (webpki-roots): no C build, no system store needed.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append("x-robots-tag", value.parse().unwrap());
        }
        map
    }

    fn directives() -> HashSet<String> {
        DownloadOptions::default().disallowed_header_directives.into_iter().collect()
    }

    #[test]
    fn robots_directives_follow_img2dataset() {
        let d = directives();
        assert!(is_disallowed(&headers(&["noai"]), None, &d));
        assert!(is_disallowed(&headers(&["NoIndex, nofollow"]), None, &d));
        assert!(!is_disallowed(&headers(&["nofollow"]), None, &d));
        assert!(!is_disallowed(&headers(&[]), None, &d));
        // Addressed to another crawler: ignored; to ours: obeyed.
        assert!(!is_disallowed(&headers(&["googlebot: noimageai"]), Some("cascade"), &d));
        assert!(is_disallowed(&headers(&["Cascade: noimageai"]), Some("cascade"), &d));
        assert!(!is_disallowed(&headers(&["cascade: noimageai"]), None, &d));
        // Any of several headers.
        assert!(is_disallowed(&headers(&["nofollow", "noimageindex"]), None, &d));
        assert!(!is_disallowed(&headers(&["noai"]), None, &HashSet::new()));
    }
}
