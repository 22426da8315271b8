//! Whether this machine has the IPv6 loopback, for the tests that skip without it:
//! `crates/wsduplex/tests/tls.rs` and `crates/wsduplex-cli/tests/tls.rs` include this file
//! (`#[path]`).

use std::io::Write;

/// Whether this machine has the IPv6 loopback `::1` (in `/proc/net/if_inet6`); says
/// loudly when it does not, so a skip is seen.
pub fn has_ipv6_loopback() -> bool {
    let found = std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|table| {
        table
            .lines()
            .any(|l| l.starts_with("00000000000000000000000000000001 "))
    });
    if !found {
        // Straight to stderr, past the test harness's capture.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** tls: no IPv6 loopback (::1 is not in /proc/net/if_inet6), SKIPPING the \
             IPv6 test ***\n"
        );
    }
    found
}
