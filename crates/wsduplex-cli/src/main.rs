//! `wsduplex`: a WebSocket client for testing and debugging, and an echo server.
//! Argument parsing and glue only; the protocol lives in the libraries.

mod args;
mod bench;
mod client;
mod exec;
mod frames;
mod generate;
mod http2_flag;
mod lines;
mod listen;
mod relay;
mod serve;

use clap::{CommandFactory as _, Parser, Subcommand};

/// jemalloc: glibc's malloc leaves about 300 bytes of free fragments around the 128-byte
/// aligned blocks tokio allocates for every connection (measured with 10,000 idle
/// connections: 1.25 KiB each with glibc, under 1 KiB with jemalloc; docs/performance.md).
#[cfg(unix)]
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
    /// Accept a WebSocket (or, with --broadcast, every one): stdin lines are sent, received
    /// messages printed; for testing a client.
    Listen(listen::Args),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(generate::CompletionsArgs),
    /// Print the man page (roff) on stdout, or write one per command with --out DIR.
    Man(generate::ManArgs),
    /// Relay WebSockets to an upstream server; --trace prints every frame both ways.
    Relay(relay::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return misuse(e),
    };
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
        Command::Listen(args) => listen::run(args),
        Command::Completions(args) => generate::completions(args, Cli::command()),
        Command::Man(args) => generate::man(args, Cli::command()),
        Command::Relay(args) => relay::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wsduplex: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// clap's answer to a misuse in one line on stderr, exit 2 (as clap exits); help and version
/// are printed as clap prints them.
fn misuse(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return match e.use_stderr() {
            true => ExitCode::from(2),
            false => ExitCode::SUCCESS,
        };
    }
    // The first paragraph is the error (a list of missing arguments goes on indented
    // lines); usage and tips follow a blank line.
    let text = e.render().to_string();
    let first = text.split("\n\n").next().unwrap_or_default();
    let line = first
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_string();
    eprintln!("wsduplex: {line} (see --help)");
    ExitCode::from(2)
}
