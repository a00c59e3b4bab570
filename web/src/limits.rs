//! Abuse limits per client address: how many workers one address may register per minute
//! (`/api/new`), and how many requests with an unknown worker token or a wrong admin token it
//! may make before it is refused for a while. Both answer `429 Too Many Requests` with a
//! `Retry-After` header (whole seconds), which clients and proxies understand.
//!
//! The address is the TCP peer's: behind a reverse proxy every worker shares the proxy's
//! address, so set the limits with that in mind (or to 0, which turns a limit off).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Addresses remembered before the limiters drop those that have earned their full quota back.
const TRACKED_ADDRESSES: usize = 10_000;

/// The limits, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbuseLimits {
    /// Worker registrations per minute and address (in bursts of up to as many); 0: no limit.
    pub registrations_per_minute: u32,
    /// Requests with an unknown worker token or a wrong admin token per minute and address;
    /// past it, the address's token requests are refused until it earns one back. 0: no limit.
    pub bad_tokens_per_minute: u32,
}

impl Default for AbuseLimits {
    fn default() -> Self {
        Self { registrations_per_minute: 120, bad_tokens_per_minute: 60 }
    }
}

/// A rate per address, or none.
struct PerAddress(Option<DefaultKeyedRateLimiter<IpAddr>>);

impl PerAddress {
    fn per_minute(rate: u32) -> Self {
        Self(NonZeroU32::new(rate).map(|rate| RateLimiter::keyed(Quota::per_minute(rate))))
    }

    /// Takes one request from `address`'s allowance: `Err(wait)` when it has none left.
    fn take(&self, address: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.0 else { return Ok(()) };
        if limiter.len() > TRACKED_ADDRESSES {
            limiter.retain_recent();
        }
        limiter.check_key(&address).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// The limiters of one server (shared by its HTTP threads).
pub struct ClientLimiter {
    registrations: PerAddress,
    bad_tokens: PerAddress,
    /// Addresses that ran out of bad-token allowance, until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    /// Whether any address was ever blocked (until then, admitting takes no lock).
    any_blocked: AtomicBool,
}

impl std::fmt::Debug for ClientLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLimiter").finish_non_exhaustive()
    }
}

impl ClientLimiter {
    /// Limiters enforcing `limits`.
    pub fn new(limits: AbuseLimits) -> Self {
        Self {
            registrations: PerAddress::per_minute(limits.registrations_per_minute),
            bad_tokens: PerAddress::per_minute(limits.bad_tokens_per_minute),
            blocked: Mutex::new(HashMap::new()),
            any_blocked: AtomicBool::new(false),
        }
    }

    /// Counts a registration from `address`: `Err(wait)` when it is over its limit.
    ///
    /// # Errors
    /// How long until the address may register again.
    pub fn register(&self, address: IpAddr) -> Result<(), Duration> {
        self.registrations.take(address)
    }

    /// Whether `address` is refused token requests now: `Err(wait)` while it is.
    ///
    /// # Errors
    /// How long the refusal lasts.
    pub fn admit(&self, address: IpAddr) -> Result<(), Duration> {
        if !self.any_blocked.load(Ordering::Relaxed) {
            return Ok(());
        }
        let blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        match blocked.get(&address) {
            Some(until) => match until.checked_duration_since(Instant::now()) {
                Some(wait) if !wait.is_zero() => Err(wait),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Counts a request from `address` that presented an unknown or wrong token; once its
    /// allowance is used up, its token requests are refused until it earns one back.
    pub fn bad_token(&self, address: IpAddr) {
        if let Err(wait) = self.bad_tokens.take(address) {
            let now = Instant::now();
            let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
            if blocked.len() > TRACKED_ADDRESSES {
                blocked.retain(|_, until| *until > now);
            }
            blocked.insert(address, now + wait);
            self.any_blocked.store(true, Ordering::Relaxed);
            tracing::warn!(%address, wait_ms = wait.as_millis() as u64, "Too many bad tokens: address refused for a while.");
        }
    }
}

/// The `Retry-After` value for `wait`: whole seconds, at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const AWAY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn registrations_are_counted_per_address() {
        let limiter = ClientLimiter::new(AbuseLimits { registrations_per_minute: 3, bad_tokens_per_minute: 0 });
        for _ in 0..3 {
            limiter.register(HOME).unwrap();
        }
        let wait = limiter.register(HOME).unwrap_err();
        assert!(wait > Duration::from_secs(10) && wait <= Duration::from_secs(20), "{wait:?}");
        limiter.register(AWAY).unwrap();
    }

    #[test]
    fn bad_tokens_block_an_address_once_its_allowance_is_spent() {
        let limiter = ClientLimiter::new(AbuseLimits { registrations_per_minute: 0, bad_tokens_per_minute: 2 });
        limiter.bad_token(HOME);
        limiter.bad_token(HOME);
        limiter.admit(HOME).unwrap();
        limiter.bad_token(HOME);
        let wait = limiter.admit(HOME).unwrap_err();
        assert_eq!(retry_after_seconds(wait), 30);
        limiter.admit(AWAY).unwrap();
        for _ in 0..1000 {
            limiter.register(HOME).unwrap();
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_seconds(Duration::from_millis(2001)), 3);
    }
}
