//! Where randomness comes from: the client's masking keys (RFC 6455 §5.3) and the key of its
//! opening handshake (§4.1).
//!
//! A plain function, so that a connection's configuration stays plain data (it can be
//! written down and the function supplied again), and so that a test can pass a fixed
//! source and check a client's bytes exactly.

/// Fills the buffer with random bytes. The default is [`os`]; a replacement must be
/// unpredictable to the peer outside of tests (RFC 6455 §10.3: masking keys must not be
/// predictable).
pub type Random = fn(&mut [u8]);

/// Random bytes from `rand`'s thread-local generator, seeded from the operating system.
pub fn os(buf: &mut [u8]) {
    rand::fill(buf);
}
