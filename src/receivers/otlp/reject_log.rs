//! Rejected items, told where people look: a WARN line naming the service,
//! what was rejected (`spans`, or the points of a metric) and why, at most
//! once per (service, what, reason) per [`LOG_INTERVAL`]. The next line of
//! the same key says how many more were rejected in between, so nothing is
//! hidden and a client sending the same bad data a thousand times a second
//! costs one line a minute.
//!
//! The table of keys is bounded ([`MAX_KEYS`]): keys whose interval has
//! passed make room, and when every key is still fresh, further services
//! and metrics share one catch-all line, so hostile input cannot grow it.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::model::{Rejected, UnixNanos};

/// At most one line per key in this long (ns): a minute.
pub const LOG_INTERVAL: u64 = 60_000_000_000;

/// Most keys remembered.
pub const MAX_KEYS: usize = 1024;

/// One key: a service and a kind of rejection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    service: String,
    noun: &'static str,
    metric: String,
    reason: &'static str,
}

impl Key {
    /// The key every rejection shares when the table is full.
    fn catch_all() -> Key {
        Key {
            service: String::new(),
            noun: "items",
            metric: String::new(),
            reason: "",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    logged_at: UnixNanos,
    /// Items rejected and not logged since `logged_at`.
    items: u64,
    /// Requests they came in.
    requests: u64,
}

/// What to do with one rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Log a line; the counts are what was suppressed since the key's last
    /// line (zeros for a first line).
    Log {
        /// Items rejected the same way and not logged.
        items: u64,
        /// Requests they came in.
        requests: u64,
        /// The table was full: this is the catch-all line.
        catch_all: bool,
    },
    /// Within the interval of the key's last line: counted for the next.
    Suppress,
}

/// The rate limit of rejection lines: pure, the caller passes `now`.
#[derive(Debug)]
pub struct Limiter {
    interval: u64,
    max_keys: usize,
    keys: HashMap<Key, Entry>,
}

impl Limiter {
    /// At most one line per key per `interval` ns, `max_keys` keys.
    pub fn new(interval: u64, max_keys: usize) -> Limiter {
        Limiter {
            interval,
            max_keys: max_keys.max(1),
            keys: HashMap::new(),
        }
    }

    /// Keys held now (at most `max_keys` plus the catch-all).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Decides about `items` items of `service` rejected as `r` at `now`.
    pub fn check(&mut self, service: &str, r: &Rejected, items: u64, now: UnixNanos) -> Decision {
        let key = Key {
            service: service.to_string(),
            noun: r.noun,
            metric: r.metric.clone(),
            reason: r.reason,
        };
        let (key, catch_all) = if self.keys.contains_key(&key) {
            (key, false)
        } else {
            if self.keys.len() >= self.max_keys {
                // Keys whose interval has passed would log afresh anyway;
                // what they suppressed since their line is dropped.
                let interval = self.interval;
                self.keys
                    .retain(|_, e| now < e.logged_at.saturating_add(interval));
            }
            if self.keys.len() >= self.max_keys {
                (Key::catch_all(), true)
            } else {
                (key, false)
            }
        };
        match self.keys.get_mut(&key) {
            Some(e) if now < e.logged_at.saturating_add(self.interval) => {
                e.items = e.items.saturating_add(items);
                e.requests = e.requests.saturating_add(1);
                Decision::Suppress
            }
            Some(e) => {
                let d = Decision::Log {
                    items: e.items,
                    requests: e.requests,
                    catch_all,
                };
                *e = Entry {
                    logged_at: now,
                    items: 0,
                    requests: 0,
                };
                d
            }
            None => {
                self.keys.insert(
                    key,
                    Entry {
                        logged_at: now,
                        items: 0,
                        requests: 0,
                    },
                );
                Decision::Log {
                    items: 0,
                    requests: 0,
                    catch_all,
                }
            }
        }
    }
}

/// The rejection log of one receiver.
#[derive(Debug)]
pub struct RejectLog {
    limiter: Mutex<Limiter>,
}

impl Default for RejectLog {
    fn default() -> Self {
        RejectLog {
            limiter: Mutex::new(Limiter::new(LOG_INTERVAL, MAX_KEYS)),
        }
    }
}

impl RejectLog {
    /// Logs the rejections of one request (`(service, what)` pairs), as the
    /// limiter allows.
    pub fn log(
        &self,
        protocol: &'static str,
        signal: &'static str,
        culprits: &[(String, Rejected)],
        now: UnixNanos,
    ) {
        if culprits.is_empty() {
            return;
        }
        let Ok(mut limiter) = self.limiter.lock() else {
            return;
        };
        for (service, r) in culprits {
            let Decision::Log {
                items,
                requests,
                catch_all,
            } = limiter.check(service, r, r.count, now)
            else {
                continue;
            };
            let what = r.what(r.count);
            let since = if items > 0 {
                format!(
                    " Since the last such line, {items} more were rejected the same way in {requests} requests."
                )
            } else {
                String::new()
            };
            let shown = if service.is_empty() {
                "(no service.name)"
            } else {
                service.as_str()
            };
            if catch_all {
                tracing::warn!(
                    service = %shown,
                    metric = %r.metric,
                    reason = r.reason,
                    items = r.count,
                    suppressed = items,
                    protocol,
                    signal,
                    "Rejected {} {what} from service {shown:?}: {}.{since} Too many services and metrics are being rejected to log each: this line stands for all of them, once a minute; see verdict_receiver_rejected_items_total.",
                    r.count,
                    r.why,
                );
            } else {
                tracing::warn!(
                    service = %shown,
                    metric = %r.metric,
                    reason = r.reason,
                    items = r.count,
                    suppressed = items,
                    protocol,
                    signal,
                    "Rejected {} {what} from service {shown:?}: {}. They count for no run.{since} (At most one such line a minute per service, metric and reason.)",
                    r.count,
                    r.why,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn unit(metric: &str) -> Rejected {
        Rejected {
            noun: "points",
            metric: metric.into(),
            reason: "unit",
            why: "unit \"1\" is not s, ms or us".into(),
            count: 5,
        }
    }

    #[test]
    fn one_line_per_key_per_interval_then_the_suppressed_count() {
        let mut l = Limiter::new(60 * S, 16);
        let first = Decision::Log {
            items: 0,
            requests: 0,
            catch_all: false,
        };
        assert_eq!(l.check("checkout", &unit("m"), 5, 100 * S), first);
        for i in 1..=99 {
            assert_eq!(
                l.check("checkout", &unit("m"), 5, 100 * S + i * S / 2),
                Decision::Suppress
            );
        }
        // Another service, metric or reason is another key.
        assert_eq!(l.check("search", &unit("m"), 5, 101 * S), first);
        assert_eq!(l.check("checkout", &unit("n"), 5, 101 * S), first);
        let late = Rejected {
            reason: "late",
            ..unit("m")
        };
        assert_eq!(l.check("checkout", &late, 5, 101 * S), first);
        // A minute after the first line, the next says what it held back.
        assert_eq!(
            l.check("checkout", &unit("m"), 5, 160 * S),
            Decision::Log {
                items: 495,
                requests: 99,
                catch_all: false
            }
        );
        assert_eq!(
            l.check("checkout", &unit("m"), 5, 161 * S),
            Decision::Suppress
        );
    }

    /// Hostile input cannot grow the table: fresh keys beyond the bound
    /// share the catch-all line (once per interval too), and keys whose
    /// interval has passed make room.
    #[test]
    fn the_key_table_is_bounded() {
        let mut l = Limiter::new(60 * S, 8);
        let mut lines = 0;
        for i in 0..10_000u64 {
            if let Decision::Log { .. } = l.check(&format!("svc-{i}"), &unit("m"), 1, S + i) {
                lines += 1;
            }
            assert!(l.len() <= 9, "{}", l.len());
        }
        // 8 keys, then one catch-all line for the other 9,992.
        assert_eq!(lines, 9);
        assert_eq!(l.check("another", &unit("m"), 1, 2 * S), Decision::Suppress);
        // After the interval the old keys make room for new ones.
        assert_eq!(
            l.check("another", &unit("m"), 1, 70 * S),
            Decision::Log {
                items: 0,
                requests: 0,
                catch_all: false
            }
        );
        assert!(l.len() <= 9);
    }
}
