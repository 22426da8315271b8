//! The JavaScript client (docs/js-client.md) in Node with `ws`, against the deployment of
//! docs/scale-out.md: three `wsduplex serve --redis` nodes behind nginx (`redis_site`). The
//! client follows three rooms through nginx and publishes `data`; the node holding its
//! connection is killed (`SIGKILL`, found from the nodes' `/metrics`) and messages are pushed
//! through a live node meanwhile; the client reconnects through nginx to another node,
//! resumes every room with `since`, and publishes again. The exact `[id, n]` sequence of
//! every room is checked: no loss, no duplicate, the ids Redis handed out.
//! (`tests/interop/node/js_client_scenario.mjs`, mode `failover`.)
//!
//! Without nginx, `redis-server`, node or `ws` the test prints a note and passes;
//! `WSDUPLEX_REQUIRE_INTEROP=1` (CI) makes that a failure.

mod common;
// The hub's tests' member helpers, which the deployment's `join` uses.
#[allow(dead_code)]
#[path = "../../wsduplex-hub/tests/common/mod.rs"]
mod hub_common;

#[allow(dead_code)] // its Chromium half is for the browser tests
mod browser_harness;
#[allow(dead_code)] // the deployment's other helpers are redis_nginx.rs's
mod redis_site;

use browser_harness::{node_with_ws, run_driven};
// `LIMIT` is where `hub_common` looks for its wait.
use redis_site::{tools, Deployment, Example, LIMIT};
use serde_json::json;

#[test]
fn js_client_fails_over_through_nginx_and_resumes_every_room() {
    let what = "the JS client failing over behind nginx";
    let Some(nginx) = tools() else { return };
    let Some(mut cmd) = node_with_ws("js_client.mjs", what) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let example = Example::from_doc();
    let mut site = Deployment::start(&example, &nginx);
    rt.block_on(async {
        for i in 0..site.nodes.len() {
            site.wait_for_redis(i).await;
        }
    });
    cmd.arg(format!("http://{}/", site.front))
        .args([&site.token, "failover"]);
    let mut killed = None;
    let (status, stdout, stderr) = run_driven(cmd, |line| {
        if line != "subscribed" {
            return;
        }
        // The client's one connection is the only socket open on any node.
        let mut spread = vec![0; site.nodes.len()];
        let home = rt.block_on(site.landed_on(&mut spread));
        site.nodes[home].kill();
        let live = site.nodes[(home + 1) % site.nodes.len()].addr;
        rt.block_on(async {
            for n in 4..=6 {
                for room in ["alpha", "beta", "gamma"] {
                    let path = format!("/api/rooms/{room}/messages");
                    let body = json!({"data": {"n": n}}).to_string();
                    let (status, answer) = site.http_json(live, "POST", &path, &body).await;
                    assert_eq!(status, 201, "push {n} to {room}: {answer}");
                }
            }
        });
        killed = Some(home);
    });
    assert!(
        status.is_some_and(|s| s.success()),
        "{what} failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        status.map_or("killed after the timeout".to_string(), |s| s.to_string()),
    );
    assert!(
        killed.is_some(),
        "the script never asked for the kill:\n{stdout}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("ok {"), "{stdout}");
    // The sequences, shown with --nocapture.
    eprintln!("--- {what} (node {} killed) ---\n{stdout}", killed.unwrap());
}
