//! What the client reads and writes: input lines as commands or messages, received
//! messages on the output (stdout, or the stdin of `--exec`'s program).

use crate::lines::{self, BinaryInput, Encoding};
use anyhow::Context as _;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use wsduplex::{CloseCode, Message};

/// What an input line asks for.
#[derive(Debug, PartialEq)]
pub(super) enum Command {
    Data(Message),
    Ping(String),
    Pong(String),
    Close(CloseCode, String),
}

/// Why a line was not understood.
#[derive(Debug)]
pub(super) enum LineError {
    /// A command with bad arguments: reported, the session goes on (a typo at a prompt).
    Command(anyhow::Error),
    /// A data line that does not decode (`--binary hex|base64`): the input is not what it
    /// says it is, so the session ends with an error rather than send a wrong message.
    Data(String),
}

/// Reads one line. `binary`: data lines are hex or base64 (`--binary`); `commands`: `/ping`,
/// `/pong` and `/close` are commands (not for a program's output under `--exec`).
pub(super) fn parse_line(
    line: &str,
    binary: Option<BinaryInput>,
    commands: bool,
) -> Result<Command, LineError> {
    let cmd = |name: &str| commands && (line == name || line.starts_with(&format!("{name} ")));
    if cmd("/ping") {
        return Ok(Command::Ping(
            line["/ping".len()..].trim_start().to_string(),
        ));
    }
    if cmd("/pong") {
        return Ok(Command::Pong(
            line["/pong".len()..].trim_start().to_string(),
        ));
    }
    if cmd("/close") {
        let rest = line["/close".len()..].trim_start();
        if rest.is_empty() {
            return Ok(Command::Close(CloseCode::NORMAL, String::new()));
        }
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code
            .parse()
            .with_context(|| format!("invalid close code {code:?}"))
            .map_err(LineError::Command)?;
        return Ok(Command::Close(CloseCode::new(code), reason.to_string()));
    }
    match binary {
        // No "//" escape here: a base64 line may start with "//".
        Some(encoding) => lines::decode(line, encoding)
            .map(|b| Command::Data(Message::binary(b)))
            .map_err(LineError::Data),
        // "//text" sends "/text".
        None if commands => Ok(Command::Data(Message::text(
            line.strip_prefix('/')
                .filter(|l| l.starts_with('/'))
                .unwrap_or(line)
                .to_string(),
        ))),
        None => Ok(Command::Data(Message::text(line.to_string()))),
    }
}

/// Writes a data message to `out` (text as a line, binary in `encoding`); a pong, and
/// with `verbose` a ping, as a status line on stderr unless `quiet`.
pub(super) async fn print_message(
    out: &mut (impl AsyncWrite + Unpin + ?Sized),
    msg: &Message,
    encoding: Encoding,
    verbose: bool,
    quiet: bool,
) -> std::io::Result<()> {
    match msg {
        Message::Pong(p) if !quiet => eprintln!("pong: {}", String::from_utf8_lossy(p)),
        Message::Ping(p) if verbose => eprintln!("ping: {}", String::from_utf8_lossy(p)),
        _ => {}
    }
    if let Some(bytes) = lines::encode(msg, encoding) {
        out.write_all(&bytes).await?;
        out.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Command {
        parse_line(line, None, true).unwrap()
    }

    #[test]
    fn lines_parse_into_commands() {
        let text = |s: &str| Command::Data(Message::text(s.to_string()));
        assert_eq!(parse("hello"), text("hello"));
        assert_eq!(parse("/ping"), Command::Ping("".into()));
        assert_eq!(parse("/ping a b"), Command::Ping("a b".into()));
        assert_eq!(parse("/pong x"), Command::Pong("x".into()));
        assert_eq!(
            parse("/close"),
            Command::Close(CloseCode::NORMAL, "".into())
        );
        assert_eq!(
            parse("/close 4000 bye now"),
            Command::Close(CloseCode::new(4000), "bye now".into())
        );
        assert!(matches!(
            parse_line("/close abc", None, true),
            Err(LineError::Command(_))
        ));
        assert_eq!(parse("//ping"), text("/ping"));
        assert_eq!(parse("/pingpong"), text("/pingpong"));
        // A program's output is data, whatever it looks like.
        assert_eq!(parse_line("/close", None, false).unwrap(), text("/close"));
        assert_eq!(parse_line("//x", None, false).unwrap(), text("//x"));
    }

    #[test]
    fn binary_lines_decode_or_fail() {
        let bin = |b: &[u8]| Command::Data(Message::binary(b.to_vec()));
        let hex = Some(BinaryInput::Hex);
        let b64 = Some(BinaryInput::Base64);
        assert_eq!(parse_line("00ff", hex, true).unwrap(), bin(&[0, 0xff]));
        assert_eq!(parse_line("//8=", b64, true).unwrap(), bin(&[0xff, 0xff]));
        assert_eq!(
            parse_line("/ping", hex, true).unwrap(),
            Command::Ping("".into())
        );
        assert!(matches!(
            parse_line("0g", hex, true),
            Err(LineError::Data(_))
        ));
    }
}
