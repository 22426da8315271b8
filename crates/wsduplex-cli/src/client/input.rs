//! What the client reads and writes: stdin lines as commands or messages, received
//! messages on stdout.

use anyhow::Context as _;
use std::io::Write as _;
use wsduplex::{CloseCode, Message};

/// What a stdin line asks for.
#[derive(Debug, PartialEq)]
pub(super) enum Command {
    Text(String),
    Ping(String),
    Close(CloseCode, String),
}

pub(super) fn parse_line(line: &str) -> anyhow::Result<Command> {
    let cmd = |name: &str| line == name || line.starts_with(&format!("{name} "));
    if cmd("/ping") {
        return Ok(Command::Ping(
            line["/ping".len()..].trim_start().to_string(),
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
            .with_context(|| format!("invalid close code {code:?}"))?;
        return Ok(Command::Close(CloseCode::new(code), reason.to_string()));
    }
    // "//text" sends "/text".
    Ok(Command::Text(
        line.strip_prefix('/')
            .filter(|l| l.starts_with('/'))
            .unwrap_or(line)
            .to_string(),
    ))
}

pub(super) fn print_message(msg: &Message, binary_raw: bool, verbose: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match msg {
        Message::Text(t) => writeln!(out, "{t}")?,
        Message::Binary(b) if binary_raw => out.write_all(b)?,
        Message::Binary(b) => {
            let mut hex = String::with_capacity(b.len() * 2 + 1);
            for byte in b.iter() {
                hex.push(char::from_digit((byte >> 4) as u32, 16).unwrap_or('0'));
                hex.push(char::from_digit((byte & 15) as u32, 16).unwrap_or('0'));
            }
            hex.push('\n');
            out.write_all(hex.as_bytes())?;
        }
        Message::Pong(p) => eprintln!("pong: {}", String::from_utf8_lossy(p)),
        Message::Ping(p) if verbose => eprintln!("ping: {}", String::from_utf8_lossy(p)),
        _ => {}
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_into_commands() {
        assert_eq!(parse_line("hello").unwrap(), Command::Text("hello".into()));
        assert_eq!(parse_line("/ping").unwrap(), Command::Ping("".into()));
        assert_eq!(
            parse_line("/ping a b").unwrap(),
            Command::Ping("a b".into())
        );
        assert_eq!(
            parse_line("/close").unwrap(),
            Command::Close(CloseCode::NORMAL, "".into())
        );
        assert_eq!(
            parse_line("/close 4000 bye now").unwrap(),
            Command::Close(CloseCode::new(4000), "bye now".into())
        );
        assert!(parse_line("/close abc").is_err());
        assert_eq!(parse_line("//ping").unwrap(), Command::Text("/ping".into()));
        assert_eq!(
            parse_line("/pingpong").unwrap(),
            Command::Text("/pingpong".into())
        );
    }
}
