//! The `dedge` command line: one binary, seller agent and buyer CLI.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.

#[forbid(unsafe_code)]
mod agent;
#[forbid(unsafe_code)]
mod board;
#[forbid(unsafe_code)]
mod chain_args;
#[forbid(unsafe_code)]
mod edgex;
#[forbid(unsafe_code)]
mod fleet;
#[forbid(unsafe_code)]
mod gateway;
#[forbid(unsafe_code)]
mod image;
#[forbid(unsafe_code)]
mod ipfs;
#[forbid(unsafe_code)]
mod key;
#[forbid(unsafe_code)]
mod lease;
#[forbid(unsafe_code)]
mod lease_args;
#[forbid(unsafe_code)]
mod market;
#[forbid(unsafe_code)]
mod market_steps;
#[forbid(unsafe_code)]
mod progress;
mod sandbox;
#[forbid(unsafe_code)]
mod version;

use std::ffi::OsString;
use std::process::ExitCode;

const USAGE: &str = "\
dedge: decentralized edge-computing marketplace (seller agent and buyer CLI)

Usage: dedge <command> [options]

Commands:
  board check [--host] FILE...   check board files
  key new|address FILE           create or read an encrypted key file
  gateway register|advertise     bind a gateway to its operator; advertise it
  fleet post|ls                  the operator's commands to its gateways; the fleet
  agent [status]                 run the seller agent; what it is doing
  lease create|pay|ls|logs|terminate|invoice
                                 a buyer's lease: offer to invoice
  market ls                      list live adverts (filters, --json)
  market propose|accept|fee|report|show|invoice
                                 the market steps of a lease, one at a time
  image import|ls|rm|gc          the verified image store
  ipfs cid|car PATH              CIDs as Kubo computes them; CAR files
  edgex ls                       the EdgeX devices and commands on sale
  sandbox run IMAGE [CMD...]     run a command in a lease's sandbox (root)
  version                        print version, git commit and target triple
  help [command]                 print help

Environment:
  DEDGE_LOG   log level: error, warn, info, debug, trace

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error;
`sandbox run` exits with its command's status.
Run `dedge <command> --help` for a command's options.
";

/// Set by SIGINT/SIGTERM/SIGHUP once `catch_interrupts` ran: long-running
/// commands (a sandboxed command, the agent) stop cleanly instead of dying.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Why a command failed; decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is wrong.
    #[error("{0}\nRun `dedge --help` for usage.")]
    Usage(String),
    /// A configuration file is wrong; the message says where and how to fix it.
    #[error("{0}")]
    Config(String),
    /// Something failed while doing the work.
    #[error("{0}")]
    Runtime(String),
    /// Whoever read our output went away (`dedge ... | head`): not a failure.
    #[error("stdout closed")]
    StdoutClosed,
    /// A sandboxed command ended with this status; passed on silently.
    #[error("exited with status {0}")]
    Exited(u8),
}

impl Error {
    const fn exit_code(&self) -> u8 {
        match self {
            Error::StdoutClosed => 0,
            Error::Exited(code) => *code,
            Error::Runtime(_) => 1,
            Error::Usage(_) | Error::Config(_) => 2,
        }
    }
}

impl From<lexopt::Error> for Error {
    fn from(e: lexopt::Error) -> Self {
        Error::Usage(e.to_string())
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    crate::logger::init(log::LevelFilter::Info, Default::default());
    match run(std::env::args_os().skip(1).collect()) {
        Ok(()) | Err(Error::StdoutClosed) => ExitCode::SUCCESS,
        Err(Error::Exited(code)) => ExitCode::from(code),
        Err(e) => {
            err_line(format_args!("dedge: {e}"));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs one command line (without the program name).
pub fn run(args: Vec<OsString>) -> Result<(), Error> {
    let mut parser = lexopt::Parser::from_args(args);
    use lexopt::prelude::*;
    let command = match parser.next()? {
        Some(Value(cmd)) => cmd.string()?,
        Some(Short('h') | Long("help")) | None => {
            return say!("{USAGE}");
        }
        Some(Short('V') | Long("version")) => return version::run(parser),
        Some(other) => return Err(other.unexpected().into()),
    };
    match command.as_str() {
        "board" => board::run(parser),
        "key" => key::run(parser),
        "gateway" => gateway::run(parser),
        "fleet" => fleet::run(parser),
        "agent" => agent::run(parser),
        "market" => market::run(parser),
        "lease" => lease::run(parser),
        "image" => image::run(parser),
        "ipfs" => ipfs::run(parser),
        "edgex" => edgex::run(parser),
        "sandbox" => sandbox::run(parser),
        "version" => version::run(parser),
        "help" => help(parser),
        other => Err(Error::Usage(format!("unknown command `{other}`"))),
    }
}

fn help(mut parser: lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let topic = parser.next()?;
    let text = match topic {
        None => USAGE,
        Some(Value(v)) => match v.string()?.as_str() {
            "board" => board::USAGE,
            "key" => key::USAGE,
            "gateway" => gateway::USAGE,
            "fleet" => fleet::USAGE,
            "agent" => agent::USAGE,
            "market" => market::USAGE,
            "lease" => lease::USAGE,
            "image" => image::USAGE,
            "ipfs" => ipfs::USAGE,
            "edgex" => edgex::USAGE,
            "sandbox" => sandbox::USAGE,
            "version" => version::USAGE,
            other => {
                return Err(Error::Usage(format!(
                    "no help for unknown command `{other}`"
                )));
            }
        },
        Some(other) => return Err(other.unexpected().into()),
    };
    say!("{text}")
}

/// Writes to stdout; a closed pipe ends the command quietly instead of
/// panicking as `print!` would.
fn out(args: std::fmt::Arguments<'_>) -> Result<(), Error> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(args)
        .and_then(|()| stdout.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Error::StdoutClosed,
            _ => Error::Runtime(format!("cannot write to stdout: {e}")),
        })
}

/// Writes a line to stderr; if stderr is gone there is nobody left to tell.
fn err_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// `print!` through [`out`].
macro_rules! say {
    ($($arg:tt)*) => { $crate::cli::out(format_args!($($arg)*)) };
}
use say;

/// Fails on anything left on the command line.
fn no_more_args(parser: &mut lexopt::Parser) -> Result<(), Error> {
    match parser.next()? {
        None => Ok(()),
        Some(arg) => Err(arg.unexpected().into()),
    }
}
