//! `FrameHeader::decode` on arbitrary bytes: a header, "need more", or a documented error;
//! every shorter prefix of a header needs more; encoding what was decoded decodes to it, and
//! gives back the same bytes when the input used the shortest length form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::frame::{FrameHeader, MAX_HEADER_LEN};
use proto::ProtocolError;

fuzz_target!(|data: &[u8]| {
    match FrameHeader::decode(data) {
        Ok(Some((h, n))) => {
            assert!(
                (2..=MAX_HEADER_LEN).contains(&n) && n <= data.len(),
                "length {n}"
            );
            assert_eq!(h.payload_len >> 63, 0, "RFC 6455 §5.2: the top bit is 0");
            for k in 0..n {
                assert_eq!(
                    FrameHeader::decode(&data[..k]),
                    Ok(None),
                    "prefix {k} of {n}"
                );
            }
            let (buf, m) = h.encode();
            assert_eq!(FrameHeader::decode(&buf[..m]), Ok(Some((h, m))));
            let shortest = match data[1] & 0x7f {
                126 => h.payload_len >= 126,
                127 => h.payload_len > u64::from(u16::MAX),
                _ => true,
            };
            if shortest {
                assert_eq!(&buf[..m], &data[..n]);
            } else {
                assert!(m < n);
            }
        }
        Ok(None) => assert!(
            data.len() < MAX_HEADER_LEN,
            "{} bytes are enough",
            data.len()
        ),
        Err(ProtocolError::ReservedOpCode(op)) => {
            assert!(matches!(op, 3..=7 | 0xb..=0xf));
            assert_eq!(data[0] & 0x0f, op);
        }
        Err(ProtocolError::InvalidLength) => {
            assert_eq!(data[1] & 0x7f, 127);
            assert!(data[2] & 0x80 != 0);
        }
        Err(e) => panic!("undocumented error {e:?}"),
    }
});
