//! `wsduplex`: a WebSocket client for testing and debugging, and an echo server.
//! Argument parsing and glue only; the protocol lives in the libraries.

mod args;
mod bench;
mod client;
mod serve;

use clap::{Parser, Subcommand};

/// jemalloc: glibc's malloc leaves about 300 bytes of free fragments around the 128-byte
/// aligned blocks tokio allocates for every connection (measured with 10,000 idle
/// connections: 1.25 KiB each with glibc, under 1 KiB with jemalloc; docs/performance.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "wsduplex",
    version,
    about = "WebSocket client, echo server and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve an echo endpoint at /echo and a test page at /.
    // Boxed: many more flags than the other commands.
    Serve(Box<serve::Args>),
    /// Connect to a WebSocket URL: stdin lines are sent, received messages printed.
    Client(client::Args),
    /// Load generator: echo throughput and latency, handshake rate, idle connections.
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WSDUPLEX_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colours for a terminal only: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Client(args) => client::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wsduplex: {e:#}");
            ExitCode::FAILURE
        }
    }
}
