//! What the core's integration tests share: frames as a client puts them on the wire.

use wsduplex_proto::frame::{FrameHeader, OpCode};
use wsduplex_proto::mask::apply_mask;

/// The masking key of every frame built here: fixed, so a test's bytes are the same on
/// every run.
pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame as a client sends it: masked with [`KEY`], `rsv2` and `rsv3` clear.
pub fn masked_frame(fin: bool, rsv1: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let h = FrameHeader {
        fin,
        rsv1,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: Some(KEY),
        payload_len: payload.len() as u64,
    };
    let (head, n) = h.encode();
    let mut out = head[..n].to_vec();
    out.extend_from_slice(payload);
    apply_mask(&mut out[n..], KEY, 0);
    out
}
