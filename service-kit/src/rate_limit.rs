//! Per-client request limits (the contract's "429 limited"): a bucket of request credit per
//! client address, refilled at a steady rate, in front of the API routes only, so that health
//! checks, metrics and the JWKS stay reachable while a client is being throttled.
//!
//! Not `tower_governor` (0.8): it would replace the bucket arithmetic but not what this file
//! is for. Its peer-IP key treats each IPv6 address as its own client (keying by the /64
//! takes a custom `KeyExtractor`), its refusal is its own body, not our `rate_limited` error
//! with a whole-second `Retry-After` (that takes an `error_handler`), and it brings about 25
//! crates the workspace does not build yet with default features (`governor`, `dashmap`, `quanta`,
//! `raw-cpuid`, `rand` 0.9, `tonic`, a second `thiserror` and `hashbrown`, …); measured on
//! this 2-core machine, a scratch crate with axum and it builds cold in 1 min 45 s. Worth
//! it if we need GCRA's exact spacing or keyed limits per route.
//!
//! The client is the TCP peer. IPv6 clients are keyed by their /64, since one host
//! usually owns a whole /64 and could otherwise rotate addresses. Behind a proxy every
//! client shares the proxy's address: limit at the proxy instead and leave this off.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use contract::error_code::ErrorCode;

use crate::json::error_response;

/// Above this many tracked clients, buckets that have refilled completely are forgotten
/// (they hold nothing a new bucket would not), which bounds memory by the clients active
/// within the last `burst / per_second` seconds.
const PRUNE_ABOVE: usize = 10_000;

/// Request buckets keyed by client address.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    by_client: HashMap<IpAddr, Bucket>,
    /// The size at which the next prune runs: twice what the last one kept (at least
    /// [`PRUNE_ABOVE`]), so that many clients that are all still active cost one scan per
    /// doubling rather than one per request.
    prune_above: usize,
}

/// A client's bucket: requests it may make now (`credit`, up to the burst), as of `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    credit: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_second` requests a second per client, in bursts of up to `burst` (at least 1);
    /// `None` when `per_second` is 0, which turns limiting off.
    pub fn new(per_second: u32, burst: u32) -> Option<Arc<Self>> {
        (per_second > 0).then(|| {
            Arc::new(Self {
                per_second: f64::from(per_second),
                burst: f64::from(burst.max(1)),
                buckets: Mutex::new(Buckets {
                    by_client: HashMap::new(),
                    prune_above: PRUNE_ABOVE,
                }),
            })
        })
    }

    /// Takes one request's credit from `client`'s bucket at `now`, or says how long until
    /// the bucket holds one again.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.by_client.len() > buckets.prune_above {
            buckets
                .by_client
                .retain(|_, bucket| self.refilled(*bucket, now) < self.burst);
            buckets.prune_above = PRUNE_ABOVE.max(2 * buckets.by_client.len());
        }
        let bucket = buckets.by_client.entry(client_key(client)).or_insert(Bucket {
            credit: self.burst,
            at: now,
        });
        let credit = self.refilled(*bucket, now);
        if credit >= 1.0 {
            *bucket = Bucket {
                credit: credit - 1.0,
                at: now,
            };
            Ok(())
        } else {
            *bucket = Bucket { credit, at: now };
            Err(Duration::from_secs_f64((1.0 - credit) / self.per_second))
        }
    }

    /// Clients currently tracked.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_client
            .len()
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.credit + elapsed * self.per_second).min(self.burst)
    }
}

/// IPv4 addresses as they are; IPv6 addresses by their /64 prefix.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

/// Middleware: `429 rate_limited` with `Retry-After` (whole seconds, at least 1) when
/// the client's bucket is empty; otherwise the request goes on.
async fn limit(
    State(limiter): State<Arc<RateLimiter>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    match limiter.check(peer.ip(), Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let seconds = wait.as_secs().saturating_add(u64::from(wait.subsec_nanos() > 0)).max(1);
            let mut response = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                format!("too many requests from this address; retry in {seconds} s"),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
    }
}

/// Puts `limiter`, if any, in front of every route of `router` (not its fallbacks).
pub fn apply<S: Clone + Send + Sync + 'static>(router: Router<S>, limiter: Option<Arc<RateLimiter>>) -> Router<S> {
    match limiter {
        Some(limiter) => router.route_layer(axum::middleware::from_fn_with_state(limiter, limit)),
        None => router,
    }
}

/// Per-client request limits on a service's API routes (file keys and environment
/// variables as for every option, see [`crate::config::Service`]).
#[derive(Debug, Clone, clap::Args)]
pub struct RateLimitOptions {
    /// Requests a second each client address (IPv6: each /64) may make to the API
    /// routes; more get 429 with Retry-After. 0 turns limiting off (e.g. behind a
    /// proxy, where every client has the proxy's address).
    #[arg(long, default_value_t = 0)]
    pub rate_limit_per_second: u32,
    /// Requests a client may make at once before the per-second rate applies.
    #[arg(long, default_value_t = 20)]
    pub rate_limit_burst: u32,
}

impl RateLimitOptions {
    /// The limiter these options describe, if limiting is on.
    pub fn limiter(&self) -> Option<Arc<RateLimiter>> {
        RateLimiter::new(self.rate_limit_per_second, self.rate_limit_burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn zero_per_second_turns_limiting_off() {
        assert!(RateLimiter::new(0, 10).is_none());
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_for_the_refill() {
        let limiter = RateLimiter::new(2, 3).expect("on");
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(ip("192.0.2.1"), start), Ok(()));
        }
        let wait = limiter.check(ip("192.0.2.1"), start).expect_err("burst spent");
        assert_eq!(wait, Duration::from_millis(500));
        // Half a second later one request's worth has come back, and only one.
        let later = start + Duration::from_millis(500);
        assert_eq!(limiter.check(ip("192.0.2.1"), later), Ok(()));
        assert!(limiter.check(ip("192.0.2.1"), later).is_err());
        // A long pause refills no more than the burst.
        let much_later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.check(ip("192.0.2.1"), much_later), Ok(()));
        }
        assert!(limiter.check(ip("192.0.2.1"), much_later).is_err());
    }

    #[test]
    fn clients_have_separate_buckets_but_one_ipv6_64_shares_one() {
        let limiter = RateLimiter::new(1, 1).expect("on");
        let now = Instant::now();
        assert_eq!(limiter.check(ip("192.0.2.1"), now), Ok(()));
        assert_eq!(limiter.check(ip("192.0.2.2"), now), Ok(()));
        assert!(limiter.check(ip("192.0.2.1"), now).is_err());
        assert_eq!(limiter.check(ip("2001:db8:0:1::1"), now), Ok(()));
        assert!(limiter.check(ip("2001:db8:0:1:ffff::2"), now).is_err(), "same /64");
        assert_eq!(limiter.check(ip("2001:db8:0:2::1"), now), Ok(()), "another /64");
        // An IPv4-mapped IPv6 peer is the IPv4 client it stands for.
        assert!(limiter.check(ip("::ffff:192.0.2.2"), now).is_err());
    }

    #[test]
    fn idle_clients_are_forgotten_once_many_are_tracked() {
        let limiter = RateLimiter::new(1, 1).expect("on");
        let start = Instant::now();
        for n in 0..=PRUNE_ABOVE as u32 {
            let _ = limiter.check(IpAddr::V4(n.into()), start);
        }
        assert_eq!(limiter.tracked(), PRUNE_ABOVE + 1);
        // A second later every bucket is full again: the next check forgets them all.
        let _ = limiter.check(ip("198.51.100.7"), start + Duration::from_secs(1));
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn clients_that_are_all_still_active_are_kept_and_the_next_prune_waits_for_twice_as_many() {
        let limiter = RateLimiter::new(1, 1).expect("on");
        let start = Instant::now();
        for n in 0..=PRUNE_ABOVE as u32 {
            let _ = limiter.check(IpAddr::V4(n.into()), start);
        }
        // Every bucket is empty: the prune keeps them all and moves its threshold up.
        let _ = limiter.check(ip("198.51.100.7"), start);
        assert_eq!(limiter.tracked(), PRUNE_ABOVE + 2);
        let next = limiter.buckets.lock().expect("lock").prune_above;
        assert_eq!(next, 2 * (PRUNE_ABOVE + 1));
        // No client is refused a bucket of its own: the limit still applies to each.
        assert!(limiter.check(IpAddr::V4(0u32.into()), start).is_err());
    }
}
