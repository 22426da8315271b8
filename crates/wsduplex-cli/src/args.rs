//! What the subcommands' flags share: the parsers of sizes and durations, and the
//! permessage-deflate options (the same for `client` and `serve`).

use std::time::Duration;

/// `5s`, `500ms`, `1.5s`, `2m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 5s or 500ms"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{s:?}: {e}"))
}

/// `16MiB`, `64KiB`, `1MB`, `512`: a byte count with an optional binary (KiB, MiB, GiB) or
/// decimal (KB, MB, GB) unit.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 16MiB, 64KiB, 1000)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} (use KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    match n.checked_mul(scale) {
        Some(0) => Err("a size of 0 would refuse every message".into()),
        Some(v) => Ok(v),
        None => Err(format!("{s:?} is too large")),
    }
}

/// How permessage-deflate compresses, for `client` and `serve` alike: each option means
/// the same for both roles, so one [`wsduplex::DeflateConfig`] serves either.
#[derive(clap::Args)]
pub struct DeflateArgs {
    /// permessage-deflate: zlib level, 0 (no compression) to 9 (smallest, most CPU).
    #[arg(
        long,
        value_name = "0-9",
        default_value_t = wsduplex::DeflateConfig::default().level,
        value_parser = clap::value_parser!(u32).range(0..=9)
    )]
    deflate_level: u32,
    /// permessage-deflate: LZ77 window, 2^BITS bytes, that this side compresses with and
    /// asks the peer to compress with (RFC 7692 max_window_bits); smaller saves memory.
    /// 8 is not offered: zlib compresses with 9 at least.
    #[arg(
        long,
        value_name = "9-15",
        default_value_t = wsduplex::DeflateConfig::default().server_max_window_bits,
        value_parser = clap::value_parser!(u8).range(9..=15)
    )]
    deflate_window_bits: u8,
    /// permessage-deflate: messages shorter than this are sent uncompressed.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = wsduplex::DeflateConfig::default().threshold
    )]
    deflate_threshold: usize,
    /// permessage-deflate: reset the compression context after every message, in both
    /// directions (RFC 7692 no_context_takeover): no zlib state kept between messages.
    #[arg(long)]
    deflate_no_context_takeover: bool,
}

impl DeflateArgs {
    /// The policy these options describe. The same for a client and a server: the window
    /// bits and the context reset apply to what this side sends and to what it asks of
    /// the peer.
    pub fn config(&self) -> wsduplex::DeflateConfig {
        let mut c = wsduplex::DeflateConfig::default();
        c.level = self.deflate_level;
        c.threshold = self.deflate_threshold;
        c.server_max_window_bits = self.deflate_window_bits;
        c.client_max_window_bits = self.deflate_window_bits;
        c.server_no_context_takeover = self.deflate_no_context_takeover;
        c.client_no_context_takeover = self.deflate_no_context_takeover;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("5"), Duration::from_secs(5));
        assert_eq!(ok("5s"), Duration::from_secs(5));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("0"), Duration::ZERO);
        for bad in ["", "s", "5x", "-1s", "1..2s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("64kib"), Ok(64 << 10));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("512"), Ok(512));
        for bad in ["", "x", "10 parsecs", "0", "99999999999999GiB", "-1"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
