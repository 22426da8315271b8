//! Connection limits for servers: in total (checked when a connection is accepted), and per
//! client address (checked once the request is read, so that the address can be the one a
//! trusted reverse proxy reports: see [`crate::forwarded`]).
//!
//! ```
//! use wsduplex::limits::ConnectionLimiter;
//!
//! let limiter = ConnectionLimiter::new(2, 1);
//! let mut first = limiter.try_open().unwrap();
//! limiter.attribute(&mut first, "203.0.113.7".parse().unwrap()).unwrap();
//! let mut second = limiter.try_open().unwrap();
//! // The same client again: over its limit of one (answer 429).
//! assert!(limiter.attribute(&mut second, "203.0.113.7".parse().unwrap()).is_err());
//! // Two are open: over the total (answer 503).
//! assert!(limiter.try_open().is_err());
//! drop(first);
//! assert!(limiter.try_open().is_ok());
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Which limit a connection hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// The server holds its maximum number of connections (answer `503`).
    #[error("server at its connection limit of {0}")]
    Total(usize),
    /// This client address holds its maximum number of connections (answer `429`).
    #[error("too many connections from this address (limit {0})")]
    PerClient(usize),
}

impl LimitError {
    /// The HTTP status to refuse with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Total(_) => 503,
            Self::PerClient(_) => 429,
        }
    }
}

/// Counts open connections, shared by every worker (the per-client table is locked only
/// when a connection opens or closes).
#[derive(Debug)]
pub struct ConnectionLimiter {
    max_total: usize,
    max_per_client: usize,
    total: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<ConnectionLimiter>,
    client: Option<IpAddr>,
}

impl ConnectionLimiter {
    /// Limits of `max_total` connections and `max_per_client` per client address; 0 means
    /// no limit.
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total: if max_total == 0 {
                usize::MAX
            } else {
                max_total
            },
            max_per_client: if max_per_client == 0 {
                usize::MAX
            } else {
                max_per_client
            },
            total: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a new connection, unless the total limit is reached.
    pub fn try_open(self: &Arc<Self>) -> Result<Permit, LimitError> {
        let counted = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_total).then_some(n + 1)
            });
        match counted {
            Ok(_) => Ok(Permit {
                limiter: self.clone(),
                client: None,
            }),
            Err(_) => Err(LimitError::Total(self.max_total)),
        }
    }

    /// Attributes an open connection to `client`, unless that client is at its limit (the
    /// permit stays counted in the total either way; a permit already attributed keeps its
    /// first client).
    pub fn attribute(&self, permit: &mut Permit, client: IpAddr) -> Result<(), LimitError> {
        if permit.client.is_some() || self.max_per_client == usize::MAX {
            return Ok(());
        }
        let mut table = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
        let n = table.entry(client).or_insert(0);
        if *n >= self.max_per_client {
            if *n == 0 {
                table.remove(&client);
            }
            return Err(LimitError::PerClient(self.max_per_client));
        }
        *n += 1;
        permit.client = Some(client);
        Ok(())
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// The total limit (`usize::MAX` for none).
    pub fn max_total(&self) -> usize {
        self.max_total
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(client) = self.client {
            let mut table = self
                .limiter
                .per_client
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(n) = table.get_mut(&client) {
                *n -= 1;
                if *n == 0 {
                    table.remove(&client);
                }
            }
        }
        self.limiter.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_counts_and_releases() {
        let l = ConnectionLimiter::new(0, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut permits = Vec::new();
        for _ in 0..2 {
            let mut p = l.try_open().unwrap();
            l.attribute(&mut p, a).unwrap();
            permits.push(p);
        }
        let mut p = l.try_open().unwrap();
        assert_eq!(l.attribute(&mut p, a), Err(LimitError::PerClient(2)));
        assert_eq!(
            l.attribute(&mut p, b),
            Ok(()),
            "another client is not affected"
        );
        assert_eq!(l.open(), 3);
        permits.pop();
        let mut again = l.try_open().unwrap();
        assert_eq!(l.attribute(&mut again, a), Ok(()));
        drop((permits, p, again));
        assert_eq!(l.open(), 0);
        assert!(
            l.per_client.lock().unwrap().is_empty(),
            "no entry left behind"
        );
    }

    #[test]
    fn unlimited() {
        let l = ConnectionLimiter::new(0, 0);
        let mut ps: Vec<_> = (0..1000).map(|_| l.try_open().unwrap()).collect();
        for p in &mut ps {
            l.attribute(p, "10.0.0.1".parse().unwrap()).unwrap();
        }
        assert_eq!(l.open(), 1000);
    }
}
