//! One room on several worker threads, many concurrent senders: every member gets one
//! identical order, with no loss and no duplicate (the Redis backplane's version, across two
//! nodes, is in `redis/delivery.rs`).

#[path = "common/load.rs"]
mod load;
#[path = "common/serve.rs"]
mod serve;

use load::Load;
use std::time::Duration;
use wsduplex::server::ServerConfig;
use wsduplex_hub::{Hub, HubConfig};

/// The longest wait for one message; a hang fails instead of blocking CI.
const LIMIT: Duration = Duration::from_secs(15);

/// The hub on a runtime of two worker threads (its members' connections and the room's
/// fan-out run on both); eight members send 500 messages each at once, four more only read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_on_several_threads_give_every_member_one_order() {
    let mut config = HubConfig::default();
    // Every member reads all the time; the queue only has to absorb scheduling hiccups,
    // and a member dropped as too slow (4008) would fail the test, not hide a bug.
    config.queue = 4096;
    let hub = Hub::new(config);
    let (rt, addr) = serve::start(&hub, ServerConfig::default());
    let load = Load {
        senders: 8,
        listeners: 4,
        per_sender: 500,
    };
    let seen = load::run(&[addr], "order", load, LIMIT).await;
    load::check(&seen, load);
    hub.shutdown();
    rt.shutdown_background();
}
