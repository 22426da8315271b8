//! Header floods.

use super::*;

// ---------------------------------------------------------------------------------------
// Header floods
// ---------------------------------------------------------------------------------------

/// What a flood of request bytes got.
struct Flood {
    answer: Option<HttpResponse>,
    written: usize,
    /// How the writer stopped: `None` when it wrote everything.
    write_error: Option<ErrorKind>,
}

/// Sends `first`, then `chunk` `repeat` times (forever with `None`) from a thread until a
/// write fails, while this thread reads the answer.
fn flood(addr: SocketAddr, first: Vec<u8>, chunk: Vec<u8>, repeat: Option<usize>) -> Flood {
    let mut s = connect(addr);
    let mut w = s.try_clone().expect("clone");
    let writer = thread::spawn(move || {
        let mut written = 0;
        let mut write = |bytes: &[u8]| -> Result<(), ErrorKind> {
            w.write_all(bytes).map_err(|e| e.kind())?;
            written += bytes.len();
            Ok(())
        };
        let result = write(&first).and_then(|()| {
            let mut i = 0;
            while repeat.is_none_or(|n| i < n) {
                write(&chunk)?;
                i += 1;
            }
            Ok(())
        });
        (written, result.err())
    });
    let answer = read_answer(&mut s);
    drop(s);
    let (written, write_error) = writer.join().expect("writer");
    Flood {
        answer,
        written,
        write_error,
    }
}

fn assert_431(what: &str, answer: Option<&HttpResponse>) {
    let r = answer.unwrap_or_else(|| panic!("{what}: no answer"));
    assert_eq!(r.status, 431, "{what}: {r:?}");
    let body = r.body_str();
    assert!(
        body.ends_with('\n') && body.lines().count() == 1,
        "{what}: {body:?}"
    );
}

/// Heads far over the 8 KiB / 64-field limits get `431` and the connection is closed after
/// at most a few KiB were read: one header of 1 MiB, 10,000 header fields, a header line that
/// never ends (the writer is stopped by the close, not by a timeout), and 500 clients at once
/// each sending a 64 KiB head.
#[test]
fn header_floods_get_431_and_are_not_read_past_the_limit() {
    let _serial = serial();
    // 500 at once from one address: past the per-client default of 256.
    let server = Server::start_on_loopback(&["--max-connections-per-client", "0"]);
    let addr = server.addr;
    let chatter = Chatter::start(addr, true);
    let memory = Memory::before(&server);
    let start_of = |extra: &str| {
        format!("GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n{extra}").into_bytes()
    };
    let huge = flood(
        addr,
        start_of("X-Big: "),
        vec![b'a'; 64 << 10],
        Some(16), // 1 MiB
    );
    assert_431("one 1 MiB header", huge.answer.as_ref());
    let many = flood(addr, start_of(""), b"X-Field: 1\r\n".to_vec(), Some(10_000));
    assert_431("10,000 header fields", many.answer.as_ref());
    let endless = flood(addr, start_of("X-Endless: "), vec![b'a'; 64 << 10], None);
    assert_431("an endless header line", endless.answer.as_ref());
    assert!(
        matches!(
            endless.write_error,
            Some(ErrorKind::BrokenPipe | ErrorKind::ConnectionReset)
        ),
        "the endless writer stopped with {:?} after {} bytes",
        endless.write_error,
        endless.written
    );
    // 500 connections at once, each sending a 64 KiB head, then all the answers are read.
    let big_head = [start_of("X-Big: "), vec![b'a'; 64 << 10]].concat();
    let mut at_once: Vec<TcpStream> = (0..500).map(|_| connect(addr)).collect();
    for s in &mut at_once {
        // The server may answer and close before it has read everything: a failed write is
        // expected then, the answer is what counts.
        let _ = s.write_all(&big_head);
    }
    for (i, s) in at_once.iter_mut().enumerate() {
        assert_431(&format!("500 at once ({i})"), read_answer(s).as_ref());
    }
    eprintln!(
        "[header floods] an endless header line: the writer was stopped ({:?}) after {} KiB \
         (kernel buffers included)",
        endless.write_error,
        endless.written >> 10
    );
    chatter.wait_rounds(3);
    memory.check("header floods", 32);
    chatter.finish();
    server.stop();
}
