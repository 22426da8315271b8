//! The hub's own figures for a `/metrics` page, beside the library's
//! ([`wsduplex::metrics`]): the long-polling sessions open, and the members removed because
//! their queue was full (closed with [`crate::CLOSE_TOO_SLOW`]).

use crate::Hub;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use wsduplex::metrics::{write_family, Kind};

/// Members removed for a full queue, in this process (a rare event: one shared counter).
static OVERFLOWS: AtomicU64 = AtomicU64::new(0);

/// A member's queue overflowed: it is removed (a WebSocket closed with 4008, a session
/// ended).
pub(crate) fn overflow() {
    OVERFLOWS.fetch_add(1, Relaxed);
}

/// The close codes the hub sends besides RFC 6455's, to count one by one
/// ([`wsduplex::metrics::Metrics::with_close_codes`]).
pub const CLOSE_CODES: [u16; 2] = [crate::CLOSE_TOO_SLOW, crate::CLOSE_TOKEN_EXPIRED];

impl Hub {
    /// Members removed because their queue was full, by every hub of this process, so far.
    /// A `/metrics` page adds them to the sockets' own overflows
    /// ([`wsduplex::metrics::Snapshot::overflows_closed`]).
    pub fn overflows(&self) -> u64 {
        OVERFLOWS.load(Relaxed)
    }

    /// Appends the hub's gauges in the Prometheus text format:
    /// `wsduplex_hub_sessions`, the long-polling sessions open now.
    pub fn render_metrics(&self, out: &mut String) {
        write_family(
            out,
            "wsduplex_hub_sessions",
            Kind::Gauge,
            "Long-polling sessions open now.",
            &[("", self.session_count() as u64)],
        );
    }
}
