//! `/metrics`: the library's counters and the hub's, in the Prometheus text format.

use super::Server;

/// The page: what the sockets and the front door counted on every worker
/// ([`wsduplex::metrics`]), the connections open now, and the hub's figures.
pub(super) fn page(server: &Server) -> String {
    let mut now = server.metrics.snapshot();
    // One figure for every queue that overflowed: the sockets' (`--slow-reader close`) and
    // the hub's members.
    now.overflows_closed += server.hub.overflows();
    let mut out = now.render(server.config.connections.open() as u64);
    server.hub.render_metrics(&mut out);
    out
}
