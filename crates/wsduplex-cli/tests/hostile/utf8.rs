//! Invalid UTF-8.

use super::*;

// ---------------------------------------------------------------------------------------
// Invalid UTF-8
// ---------------------------------------------------------------------------------------

/// A byte that is never valid in UTF-8, put at every position of a text of 1- to 4-byte
/// characters, gets 1007: in a single frame (on `/echo` and in a chat room), and in a
/// fragment that ends right after it with the rest of the message never sent (so the server
/// checks as the bytes arrive), both as one fragment and as 1-byte fragments.
#[test]
fn invalid_utf8_at_every_position_gets_1007() {
    let _serial = serial();
    let server = Server::start_on_loopback(&[]);
    let addr = server.addr;
    let chatter = Chatter::start(addr, true);
    let memory = Memory::before(&server);
    let text = "héllo wörld, ünïcödé: 漢字 and 🎉🎉 done".as_bytes();
    let mut checked = 0;
    for i in 0..text.len() {
        let mut bad = text.to_vec();
        bad[i] = 0xFF;
        let cases: [(&str, &str, Vec<u8>); 4] = [
            ("/echo", "one frame", frame(true, 0, TEXT, &bad, MASK)),
            (
                "/chat/utf8?name=mallory",
                "one frame",
                frame(true, 0, TEXT, &bad, MASK),
            ),
            (
                "/echo",
                "a fragment ending after it",
                frame(false, 0, TEXT, &bad[..=i], MASK),
            ),
            (
                "/echo",
                "1-byte fragments up to it",
                (0..=i)
                    .flat_map(|j| {
                        frame(
                            false,
                            0,
                            if j == 0 { TEXT } else { CONT },
                            &bad[j..=j],
                            MASK,
                        )
                    })
                    .collect(),
            ),
        ];
        for (path, how, bytes) in cases {
            let mut ws = attacker(addr, path);
            ws.send_raw(&bytes);
            assert_eq!(close_code(&mut ws), Some(1007), "{path}, {how}, byte {i}");
            ws.expect_eof();
            checked += 1;
        }
    }
    eprintln!(
        "[invalid utf-8] {} positions, {checked} connections: all 1007",
        text.len()
    );
    chatter.wait_rounds(3);
    memory.check("invalid utf-8", 16);
    chatter.finish();
    server.stop();
}
