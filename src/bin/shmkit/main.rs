//! `shmkit`: list, inspect, read, write and clean shared-memory objects.
//!
//! Exit status: 0 on success, 1 with a one-line message on stderr for an error, 2 for a usage
//! error (clap's own exit code).

mod bench;
mod bytes;
mod dump;
mod gc;
mod info;
mod ls;
mod queue;
mod rm;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Result of a verb: `Err` is printed as one line on stderr and exits 1.
pub(crate) type CmdResult = Result<(), String>;

#[derive(Parser)]
#[command(
    name = "shmkit",
    version,
    about = "Inspect and manage shmkit shared-memory objects in /dev/shm"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List every object in /dev/shm: name, size, kind (`raw` for foreign ones), lifetime,
    /// creator, alive. Read-only.
    Ls(ls::Args),
    /// Print a segment's header and the state of the object it holds. Read-only.
    Info(info::Args),
    /// Remove (unlink) segments by name. Processes that map them keep their mapping.
    Rm(rm::Args),
    /// Hex-dump an object's bytes (offsets count from the start of the object, header included).
    Dump(dump::Args),
    /// Remove owned objects whose creator is dead, unfinished builds of dead creators, and dead
    /// processes' liveness files; never anything mapped. Says what it kept, and why.
    Gc(gc::Args),
    /// Create, push to, pop from and inspect queues (spsc, mpmc, bytes).
    Queue(queue::Args),
    /// Two-process latency and throughput benchmarks, with floors measured in the same run.
    Bench(bench::Args),
    /// The peer process of `shmkit bench` (internal).
    #[command(hide = true)]
    BenchPeer(bench::PeerArgs),
    /// Create a plain segment (or, with --raw, one CPython's SharedMemory can open).
    Create(bytes::CreateArgs),
    /// Copy payload bytes to standard output.
    Read(bytes::ReadArgs),
    /// Write bytes into a segment's payload.
    Write(bytes::WriteArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Ls(a) => ls::run(a),
        Cmd::Info(a) => info::run(a),
        Cmd::Rm(a) => rm::run(a),
        Cmd::Dump(a) => dump::run(a),
        Cmd::Gc(a) => gc::run(a),
        Cmd::Queue(a) => queue::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::BenchPeer(a) => bench::peer(a),
        Cmd::Create(a) => bytes::create(a),
        Cmd::Read(a) => bytes::read(a),
        Cmd::Write(a) => bytes::write(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("shmkit: {msg}");
            ExitCode::from(1)
        }
    }
}

/// Print `value` as pretty JSON on stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) -> CmdResult {
    let s = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    println!("{s}");
    Ok(())
}
