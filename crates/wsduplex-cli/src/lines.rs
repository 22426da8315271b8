//! Messages as lines, for the commands that bridge a WebSocket to a byte stream (`client`,
//! `listen`, and the programs of `--exec`): how a line becomes a message (`--binary hex` or
//! `base64`), and how a received message is written out (`--print-binary`).

use base64::Engine as _;
use wsduplex::Message;

/// `--binary`: what the input is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BinaryInput {
    /// Each line is hex (whitespace ignored) and becomes one binary message.
    Hex,
    /// Each line is base64 (standard alphabet, padded) and becomes one binary message.
    Base64,
    /// All of the input, to its end, is one binary message.
    Raw,
}

/// `--print-binary`: how a received binary message is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// Lowercase hex, one line per message.
    #[default]
    Hex,
    /// Base64, one line per message.
    Base64,
    /// The bytes themselves, no newline added.
    Raw,
}

impl Encoding {
    /// What `--print-binary` defaults to: the `--binary` encoding when it is a line
    /// encoding (a reply comes back the way its request went out), else hex.
    pub fn for_input(input: Option<BinaryInput>) -> Self {
        match input {
            Some(BinaryInput::Base64) => Self::Base64,
            _ => Self::Hex,
        }
    }
}

/// A line (without its newline) as the payload of a binary message.
pub fn decode(line: &str, input: BinaryInput) -> Result<Vec<u8>, String> {
    match input {
        BinaryInput::Hex => decode_hex(line),
        BinaryInput::Base64 => base64::engine::general_purpose::STANDARD
            .decode(line.trim())
            .map_err(|e| format!("invalid base64: {e}")),
        BinaryInput::Raw => Ok(line.as_bytes().to_vec()),
    }
}

fn decode_hex(line: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = line.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.len() % 2 == 1 {
        return Err(format!(
            "invalid hex: odd number of digits ({})",
            digits.len()
        ));
    }
    let value = |d: u8| {
        char::from(d)
            .to_digit(16)
            .ok_or_else(|| format!("invalid hex: {:?} is not a hex digit", char::from(d)))
    };
    digits
        .chunks(2)
        .map(|pair| Ok((value(pair[0])? << 4 | value(pair[1])?) as u8))
        .collect()
}

/// The bytes that show a data message: a text message and its newline, a binary one in
/// `encoding`. `None` for control messages.
pub fn encode(msg: &Message, encoding: Encoding) -> Option<Vec<u8>> {
    let mut out = match msg {
        Message::Text(t) => t.as_bytes().to_vec(),
        Message::Binary(b) => match encoding {
            Encoding::Raw => return Some(b.to_vec()),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .encode(b)
                .into_bytes(),
            Encoding::Hex => {
                let mut hex = Vec::with_capacity(b.len() * 2 + 1);
                for byte in b.iter() {
                    hex.extend_from_slice(format!("{byte:02x}").as_bytes());
                }
                hex
            }
        },
        _ => return None,
    };
    out.push(b'\n');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_lines_decode() {
        assert_eq!(decode("00ff80", BinaryInput::Hex), Ok(vec![0, 0xff, 0x80]));
        assert_eq!(
            decode("DE ad be EF", BinaryInput::Hex),
            Ok(vec![0xde, 0xad, 0xbe, 0xef])
        );
        assert_eq!(decode("", BinaryInput::Hex), Ok(vec![]));
        assert!(decode("abc", BinaryInput::Hex).unwrap_err().contains("odd"));
        assert!(decode("zz", BinaryInput::Hex).unwrap_err().contains("'z'"));
    }

    #[test]
    fn base64_lines_decode() {
        assert_eq!(decode("AP+A", BinaryInput::Base64), Ok(vec![0, 0xff, 0x80]));
        assert_eq!(decode("//8=", BinaryInput::Base64), Ok(vec![0xff, 0xff]));
        assert!(decode("not base64!", BinaryInput::Base64).is_err());
    }

    #[test]
    fn messages_encode() {
        let bin = Message::binary(vec![0u8, 0xff]);
        assert_eq!(encode(&bin, Encoding::Hex), Some(b"00ff\n".to_vec()));
        assert_eq!(encode(&bin, Encoding::Base64), Some(b"AP8=\n".to_vec()));
        assert_eq!(encode(&bin, Encoding::Raw), Some(vec![0, 0xff]));
        assert_eq!(
            encode(&Message::text("hi"), Encoding::Raw),
            Some(b"hi\n".to_vec())
        );
        assert_eq!(encode(&Message::Ping(vec![].into()), Encoding::Hex), None);
    }
}
