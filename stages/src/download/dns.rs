//! [`CachingResolver`]: the system resolver with a cache, so thousands of images from one host
//! cost one lookup.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// How long an answer is reused.
const TTL: Duration = Duration::from_secs(300);

/// Answers at most kept; the cache is emptied when full.
const MAX_ENTRIES: usize = 100_000;

type Cache = Arc<Mutex<HashMap<String, (Instant, Arc<[SocketAddr]>)>>>;

/// `getaddrinfo` (on tokio's blocking pool) behind a cache of five minutes.
#[derive(Debug, Default, Clone)]
pub(crate) struct CachingResolver {
    cache: Cache,
}

impl Resolve for CachingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let cache = Arc::clone(&self.cache);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let cached = cache.lock().unwrap_or_else(PoisonError::into_inner).get(&host).cloned();
            if let Some((at, addrs)) = cached {
                if at.elapsed() < TTL {
                    return Ok(Box::new(addrs.iter().copied().collect::<Vec<_>>().into_iter()) as Addrs);
                }
            }
            let addrs: Arc<[SocketAddr]> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
            cache.insert(host, (Instant::now(), Arc::clone(&addrs)));
            Ok(Box::new(addrs.iter().copied().collect::<Vec<_>>().into_iter()) as Addrs)
        })
    }
}
