//! `shmkit`: list, inspect, read, write and clean shared-memory objects.
//!
//! Exit status ([`Stop`]): 0 on success, and also when standard output's reader went away
//! before everything was written (`shmkit ls | head -1`; not for `queue pop`, whose message
//! would be lost); 2 for a usage error, that is a
//! command line that is wrong on its face (clap's own errors, and any value that breaks a
//! rule of its own, such as a segment name, a mode, a capacity or a timeout), with one line on
//! stderr; 1 with a one-line message on stderr when a well-formed command fails (no such
//! segment, wrong kind, corrupt, timed out, an I/O error).

mod bench;
mod bench_cells;
mod bench_frames;
mod bench_list;
mod bench_mpmc_bytes;
mod bench_python;
mod bytes;
mod cell;
mod dump;
mod frames;
mod gc;
mod info;
mod list;
mod ls;
mod queue;
mod queue_mpmc_bytes;
mod rm;

use clap::{Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a verb stopped before it finished.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The command line is wrong on its face (a value that breaks its rules): one line on
    /// stderr, exit 2, the code of clap's own usage errors.
    Usage(String),
    /// A well-formed command failed: one line on stderr, exit 1.
    Failed(String),
    /// Standard output's reader closed it (`shmkit ls | head -1`): exit 0, quietly. The
    /// reader asked for no more output, so this is not an error (as in `ripgrep`).
    BrokenPipe,
}

impl From<String> for Stop {
    fn from(msg: String) -> Stop {
        Stop::Failed(msg)
    }
}

impl From<&str> for Stop {
    fn from(msg: &str) -> Stop {
        Stop::Failed(msg.to_owned())
    }
}

/// Result of a verb.
pub(crate) type CmdResult = Result<(), Stop>;

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
    /// creator, whether it is alive (`alive`, `dead`, `unknown`). Read-only.
    Ls(ls::Args),
    /// Print a segment's header and the state of the object it holds (its summary, then its
    /// fields as `key.sub: value` lines; `--json` for the JSON). Read-only.
    Info(info::Args),
    /// Remove (unlink) segments by name. Processes that map them keep their mapping.
    Rm(rm::Args),
    /// Hex-dump an object's bytes (offsets count from the start of the object, header included).
    Dump(dump::Args),
    /// Remove owned objects whose creator is dead, unfinished builds of dead creators, and dead
    /// processes' liveness files; never anything mapped. Says what it kept, and why.
    Gc(gc::Args),
    /// Create, push to, pop from and inspect queues (spsc, mpmc, bytes-ring, mpmc-bytes).
    Queue(queue::Args),
    /// Create, read and write a named typed value (`shmkit::cell::Value`).
    Value(cell::ValueArgs),
    /// Create, read and write a named typed array (`shmkit::cell::Array`).
    Array(cell::ArrayArgs),
    /// Create, inspect (`stat`) and save from zero-copy frame channels.
    Frames(frames::Args),
    /// Create, read and write a ShareableList (CPython's layout; Python opens it by name).
    List(list::Args),
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
        Cmd::Value(a) => cell::value(a),
        Cmd::Array(a) => cell::array(a),
        Cmd::Frames(a) => frames::run(a),
        Cmd::List(a) => list::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::BenchPeer(a) => bench::peer(a),
        Cmd::Create(a) => bytes::create(a),
        Cmd::Read(a) => bytes::read(a),
        Cmd::Write(a) => bytes::write(a),
    };
    let (code, msg) = match r {
        Ok(()) | Err(Stop::BrokenPipe) => return ExitCode::SUCCESS,
        Err(Stop::Usage(msg)) => (2, msg),
        Err(Stop::Failed(msg)) => (1, msg),
    };
    // Not `eprintln!`, which panics if stderr is a closed pipe.
    let _ = writeln!(std::io::stderr(), "shmkit: {msg}");
    ExitCode::from(code)
}

/// Clap value parser for a segment name: the library's naming rules (`SPEC.md` §2), so a
/// bad name is a usage error like any other bad value.
pub(crate) fn segment_name(s: &str) -> Result<String, String> {
    shmkit::segment::validate_name(s).map_err(|e| e.to_string())?;
    Ok(s.to_owned())
}

/// A name from /dev/shm (or a type name recorded in shared memory: `queue stat`, `frames
/// stat`, `info`) as a line of text shows it: quoted and escaped if it holds a control
/// character (a newline, an escape sequence) or an invisible formatting one (bidirectional
/// overrides and isolates, zero-width characters, line and paragraph separators, which can
/// make a line look other than it is), so each object stays one honest line and cannot drive
/// the terminal; as it is otherwise. `--json` output has names exactly.
pub(crate) fn shown_name(name: &str) -> String {
    if name.contains(|c: char| c.is_control() || invisible_format(c)) {
        format!("{name:?}")
    } else {
        name.to_owned()
    }
}

/// Whether `c` is an invisible formatting character that can change how a line reads
/// (Unicode's bidirectional marks, embeddings, overrides and isolates, the zero-width ones,
/// the line and paragraph separators, the byte-order mark), for [`shown_name`].
fn invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// [`shown_name`] for a file name's bytes, which may not be UTF-8 (`/dev/shm` holds any
/// bytes but `/` and NUL): such a name is quoted and escaped too, each byte that is not part
/// of valid UTF-8 shown as `\xNN`.
pub(crate) fn shown_file_name(name: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(name) {
        return shown_name(s);
    }
    let mut out = String::from("\"");
    let mut rest = name;
    while !rest.is_empty() {
        // The longest valid prefix, then the invalid bytes after it.
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(_) => (rest.len(), 0),
            Err(e) => (
                e.valid_up_to(),
                e.error_len().unwrap_or(rest.len() - e.valid_up_to()),
            ),
        };
        // Escaped as `shown_name` escapes (Debug), without the quotes.
        let d = format!(
            "{:?}",
            std::str::from_utf8(&rest[..valid]).unwrap_or_default()
        );
        out.push_str(&d[1..d.len() - 1]);
        for b in &rest[valid..valid + bad] {
            out.push_str(&format!("\\x{b:02x}"));
        }
        rest = &rest[valid + bad..];
    }
    out.push('"');
    out
}

/// A time in nanoseconds after the Unix epoch as a reader takes it in:
/// `2026-12-06 03:10:31.564968498 UTC` (the proleptic Gregorian calendar, any `u64`).
pub(crate) fn utc(ns: u64) -> String {
    let (secs, frac) = (ns / 1_000_000_000, ns % 1_000_000_000);
    let (days, sod) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's `civil_from_days`, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{frac:09} UTC",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Clap value parser for a timeout in seconds (non-negative, finite, not absurdly large).
pub(crate) fn seconds(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|e| format!("not a number of seconds: {e}"))?;
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| format!("bad timeout {s}: {e}"))
}

/// Clap value parser for `--mode`: permission bits in octal (`660`, `0o660`).
pub(crate) fn mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|e| format!("mode must be octal: {e}"))
}

/// Clap value parser for `--lifetime`: the library's names (`Lifetime::from_name`).
pub(crate) fn lifetime(s: &str) -> Result<shmkit::segment::Lifetime, String> {
    shmkit::segment::Lifetime::from_name(s)
        .ok_or_else(|| "lifetime is `persistent` or `owned`".into())
}

/// An error from a verb that creates an object: a value the library refuses (name, size,
/// mode, capacity) is a usage error; anything else (the name exists, no room) is a failure.
pub(crate) fn create_error(e: shmkit::Error) -> Stop {
    match e {
        shmkit::Error::InvalidName { .. }
        | shmkit::Error::InvalidArgument { .. }
        | shmkit::Error::TooLarge { .. } => Stop::Usage(e.to_string()),
        e => Stop::Failed(e.to_string()),
    }
}

/// The header of shmkit object `name`, or why it has none: "not a shmkit object (raw)" (and
/// `raw_hint`, what to do about it) for foreign bytes, or what is corrupt in an object that
/// starts with shmkit's magic (`SPEC.md` §3.3). Read without attaching, so it changes nothing.
pub(crate) fn shmkit_header(
    name: &str,
    raw_hint: &str,
) -> Result<shmkit::segment::HeaderInfo, Stop> {
    let p = shmkit::segment::probe(name).map_err(|e| e.to_string())?;
    if let shmkit::segment::Verdict::Invalid(what) = p.verdict {
        return Err(format!("segment {name:?} is corrupt: {what}").into());
    }
    p.header
        .ok_or_else(|| format!("segment {name:?} is not a shmkit object (raw){raw_hint}").into())
}

/// A blocking call's error as a verb says it: a timeout names the object and what it waited
/// for (`on`), the bare "timed out" telling neither; any other error as it is.
pub(crate) fn waited(name: &str, e: shmkit::Error, on: &str) -> String {
    match e {
        shmkit::Error::Timeout => format!("segment {name:?}: timed out waiting for {on}"),
        e => e.to_string(),
    }
}

/// The error for segment `name` holding `found` (a kind with its article, or what a raw
/// object is) where a verb wants `what`: "segment "x" holds a shareable-list, not a queue".
pub(crate) fn holds_not(name: &str, found: &str, what: &str) -> Stop {
    format!("segment {name:?} holds {found}, not {what}").into()
}

/// Refuse a valid shmkit object of another kind before a verb opens it as one of `kinds`
/// (`what` names them): "holds a shareable-list, not a value cell", as the queue and frames
/// verbs say, instead of the open's complaint about a layout it did not expect. `raw_too`:
/// also refuse an object without a shmkit header (which such a verb never opens). What the
/// look cannot decide (a missing, unreadable or corrupt object) is left to the open, whose
/// error says it. The look changes nothing (`probe`).
pub(crate) fn refuse_other_kind(
    name: &str,
    kinds: &[shmkit::segment::Kind],
    what: &str,
    raw_too: bool,
) -> CmdResult {
    use shmkit::segment::Verdict;
    let Ok(p) = shmkit::segment::probe(name) else {
        return Ok(());
    };
    match (&p.header, &p.verdict) {
        (Some(h), Verdict::Valid) if !kinds.contains(&h.kind) => {
            Err(holds_not(name, &p.holds(), what))
        }
        // As the library's open says it (Error::KindMismatch).
        (None, Verdict::Raw) if raw_too => Err(holds_not(name, &p.holds(), what)),
        _ => Ok(()),
    }
}

/// Write `bytes` to standard output and flush them: every verb's output goes through here
/// (or [`outln!`]), never through `print!`, which panics when the write fails.
///
/// A reader that went away (`EPIPE`: `shmkit ls | head -1`) gives [`Stop::BrokenPipe`], which
/// the verb returns with `?` like any error, so it unwinds normally (bench segments are
/// unlinked and queue roles released by their `Drop`) and `main` exits 0 without a message.
/// Restoring `SIGPIPE`'s default action instead would kill the process at the write, skipping
/// those destructors; and any other write error (`> /dev/full`) becomes a one-line error
/// here instead of a panic.
pub(crate) fn write_stdout(bytes: &[u8]) -> CmdResult {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Stop::BrokenPipe,
            _ => Stop::Failed(format!("cannot write to standard output: {e}")),
        })
}

/// Whether standard output (descriptor 1) was open when the process started. Rust's runtime,
/// before `main`, puts `/dev/null` on a closed descriptor 0, 1 or 2 (so that no file opened
/// later lands there), after which a closed standard output (`>&-`) looks like `> /dev/null`:
/// [`record_stdout_at_start`] looks first.
static STDOUT_OPEN_AT_START: AtomicBool = AtomicBool::new(true);

/// Record [`STDOUT_OPEN_AT_START`]. Run by the C runtime from `.init_array`, before `main` and
/// so before Rust's runtime touches the standard descriptors; single-threaded, and `main`'s
/// thread reads the flag after it (`Relaxed` suffices).
extern "C" fn record_stdout_at_start() {
    // SAFETY: F_GETFD only reads the descriptor's flags; any descriptor number is valid.
    let open = unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_GETFD) } >= 0;
    STDOUT_OPEN_AT_START.store(open, Ordering::Relaxed);
}

#[used]
#[link_section = ".init_array"]
static RECORD_STDOUT_AT_START: extern "C" fn() = record_stdout_at_start;

/// Refuse a standard output that could not take what a verb is about to consume (`queue pop`
/// prints a message it removed from the queue): closed (`>&-`, [`STDOUT_OPEN_AT_START`]),
/// opened read-only, or a pipe or socket whose reader is gone or hung up (`| true`, seen as
/// `POLLERR`/`POLLHUP` by a `poll` that does not wait). Checked before consuming, so nothing
/// is lost; a reader that leaves between the check and the write is the caller's to report.
pub(crate) fn stdout_can_take_output() -> CmdResult {
    use std::os::fd::AsFd;
    let closed = || "standard output is closed: nothing was consumed".to_owned();
    if !STDOUT_OPEN_AT_START.load(Ordering::Relaxed) {
        return Err(closed().into());
    }
    let out = std::io::stdout();
    let fd = out.as_fd();
    let flags = rustix::fs::fcntl_getfl(fd).map_err(|_| closed())?;
    if flags & rustix::fs::OFlags::ACCMODE == rustix::fs::OFlags::RDONLY {
        return Err("standard output is open read-only: nothing was consumed".into());
    }
    let mut p = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0, // POLLERR, POLLHUP and POLLNVAL are reported whatever is asked
        revents: 0,
    };
    // SAFETY: `p` is one valid, writable `pollfd` and we pass a count of 1; a timeout of 0
    // returns at once.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    if n > 0 && p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
        return Err(
            "standard output's reader is gone (a closed pipe or socket): nothing was consumed"
                .into(),
        );
    }
    Ok(())
}

/// `println!` through [`write_stdout`]: a `CmdResult` to `?`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_stdout(format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}
pub(crate) use outln;

/// Print `value` as pretty JSON on stdout, with [`exact_integers`] added.
pub(crate) fn print_json(value: &impl serde::Serialize) -> CmdResult {
    let mut v = serde_json::to_value(value).map_err(|e| e.to_string())?;
    exact_integers(&mut v);
    let s = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
    outln!("{s}")
}

/// Integer fields that can exceed 2^53 (they come from `fstat` or from shared memory, where
/// any `u64` can stand): beside the number, JSON output gives each as a string too.
const WIDE_FIELDS: [&str; 6] = [
    "fingerprint",
    "size",
    "header_size",
    "payload_size",
    "created_unix_ns",
    "creator_pid_namespace",
];

/// Beside every integer field of [`WIDE_FIELDS`], and any other integer above 2^53 (the
/// largest that a double, as in JavaScript or `jq`, holds exactly), add its exact value as a
/// string: `fingerprint_hex` (`0x` and 16 hex digits, as `info` prints it) for the
/// fingerprint, a decimal `NAME_str` for the others. The numeric fields stay as they were.
fn exact_integers(v: &mut serde_json::Value) {
    const EXACT: u64 = 1 << 53;
    match v {
        serde_json::Value::Array(items) => items.iter_mut().for_each(exact_integers),
        serde_json::Value::Object(fields) => {
            let mut twins = Vec::new();
            for (k, x) in fields.iter_mut() {
                exact_integers(x);
                let Some(n) = x.as_u64() else { continue };
                if k == "fingerprint" {
                    twins.push((format!("{k}_hex"), format!("{n:#018x}")));
                } else if WIDE_FIELDS.contains(&k.as_str()) || n > EXACT {
                    twins.push((format!("{k}_str"), n.to_string()));
                }
            }
            for (k, s) in twins {
                fields.entry(k).or_insert(serde_json::Value::String(s));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    /// Review: a recorded name with a right-to-left override or a zero-width character
    /// printed as it was, and could make an `info`/`ls` line read other than it is.
    #[test]
    fn names_with_invisible_formatting_are_quoted_and_escaped() {
        assert_eq!(super::shown_name("plain-name"), "plain-name");
        for name in [
            "a\nb",
            "evil\u{202E}txt",
            "zero\u{200B}width",
            "sep\u{2028}x",
        ] {
            let shown = super::shown_name(name);
            assert!(shown.starts_with('"') && shown.is_ascii(), "{shown}");
        }
    }

    #[test]
    fn utc_dates_as_date_u_gives_them() {
        for (ns, want) in [
            (0, "1970-01-01 00:00:00.000000000 UTC"),
            (951_782_400_000_000_000, "2000-02-29 00:00:00.000000000 UTC"),
            (951_868_799_000_000_001, "2000-02-29 23:59:59.000000001 UTC"),
            (
                4_107_542_400_000_000_000,
                "2100-03-01 00:00:00.000000000 UTC",
            ),
            (u64::MAX, "2554-07-21 23:34:33.709551615 UTC"),
        ] {
            assert_eq!(super::utc(ns), want);
        }
    }
}
