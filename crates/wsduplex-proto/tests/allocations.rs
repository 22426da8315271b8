//! The echo path allocates nothing per message once buffers are warm: decode, unmask,
//! validate, hand out the payload, queue the echo, write it out.

// A counting allocator needs unsafe; it is test code and only forwards to `System`.
#![allow(unsafe_code)]

use bytes::Buf;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use wsduplex_proto::{Config, Connection, Message, Role};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One round: 100 masked 32-byte text frames arrive in one read and are echoed.
fn round(server: &mut Connection, input: &[u8], sink: &mut Vec<u8>) {
    server.receive_buffer().extend_from_slice(input);
    server.receive_buffered().unwrap();
    while let Some(msg) = server.poll_event() {
        match msg {
            Message::Text(t) => server.send_text(t.as_str()).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
    sink.clear();
    while let Some(tx) = server.poll_transmit() {
        let chunk = tx.chunk();
        let n = chunk.len();
        sink.extend_from_slice(chunk);
        tx.advance(n);
    }
}

#[test]
fn echoing_small_messages_allocates_nothing_per_message() {
    let mut client = Connection::new(Role::Client, Config::default());
    for _ in 0..100 {
        client
            .send_text("0123456789abcdef0123456789abcdef")
            .unwrap();
    }
    let tx = client.poll_transmit().unwrap();
    let input = tx.copy_to_bytes(tx.remaining());
    let mut server = Connection::new(Role::Server, Config::default());
    let mut sink = Vec::with_capacity(1 << 16);
    for _ in 0..10 {
        round(&mut server, &input, &mut sink); // warm up the buffers
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(before > 0, "the counter counts (warm-up allocated buffers)");
    for _ in 0..100 {
        round(&mut server, &input, &mut sink);
    }
    let per_message = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / 10_000.0;
    assert!(
        per_message < 0.01,
        "{per_message} allocations per echoed message"
    );
    assert_eq!(sink.len(), 100 * (2 + 32));
}
