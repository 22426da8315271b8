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
    let parked = super::echo::registry::PARKED.load(std::sync::atomic::Ordering::Relaxed);
    out.push_str(&format!(
        "# HELP wsduplex_parked_connections Idle /echo connections and chat members parked (held without a task).\n\
         # TYPE wsduplex_parked_connections gauge\n\
         wsduplex_parked_connections {parked}\n"
    ));
    out
}
