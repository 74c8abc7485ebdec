//! `shmkit queue`: create, push to, pop from and inspect queues.
//!
//! `--kind` takes a queue kind's one name ([`Kind::name`]: `spsc`, `mpmc`, `bytes-ring`, `mpmc-bytes`), the
//! name `ls`, `info` and `queue stat` print. Fixed-size queues (`spsc`, `mpmc`) carry elements
//! of `--elem-size` bytes; a MESSAGE is stored as its UTF-8 bytes, zero-padded, and `pop`
//! writes the element's bytes with trailing zero bytes removed. `bytes-ring` and `mpmc-bytes`
//! carry MESSAGE as one variable-length message, and `pop` writes its exact bytes (any bytes:
//! Python's `put_bytes` messages too). `pop` adds a newline after the bytes and converts
//! nothing.
//!
//! `create` makes fixed-size queues of `[u8; N]` elements (that is their recorded type); the
//! other verbs open any fixed-size queue by its element size (`open_by_size`), whatever type a
//! program created it with. The CLI handles the element sizes 1 to 64, the multiples of 8 up to
//! 1024 and the multiples of 64 up to 4096 ([`ELEM_SIZES`]); a typed queue's elements can be
//! anything from 1 byte to 1 MiB, and a queue of another size gets an error that names these.

use std::time::{Duration, Instant};

use crate::{
    create_error, holds_not, outln, print_json, seconds, segment_name, shmkit_header, CmdResult,
    Stop,
};
use shmkit::queue::{self, bytes, mpmc, spsc, PopError};
use shmkit::segment::{Kind, Lifetime};

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Create a queue.
    Create {
        /// Segment name.
        #[arg(value_parser = segment_name)]
        name: String,
        /// Queue kind (the name `ls`, `info` and `queue stat` print).
        #[arg(long, value_enum)]
        kind: QKind,
        /// Slots (spsc, mpmc) or bytes (bytes-ring, mpmc-bytes), a power of two.
        #[arg(long)]
        capacity: u64,
        /// Element size in bytes for spsc and mpmc: 1 to 64, a multiple of 8 up to 1024, or a
        /// multiple of 64 up to 4096 (the sizes push and pop handle).
        #[arg(long, default_value_t = 64, value_parser = elem_size)]
        elem_size: usize,
        /// Permission bits, octal.
        #[arg(long, default_value = "600", value_parser = super::bytes::parse_mode)]
        mode: u32,
        /// Do not reserve the memory now (as `shmkit create --sparse`): a process that touches
        /// a page when /dev/shm is full dies of SIGBUS.
        #[arg(long)]
        sparse: bool,
        /// `persistent`: lives until removed; `owned`: `shmkit gc` removes it once this
        /// process (its creator) is dead.
        #[arg(long, default_value = "persistent", value_parser = lifetime)]
        lifetime: Lifetime,
    },
    /// Push one message (attaches as the producer for the duration of the call).
    Push {
        /// Segment name.
        #[arg(value_parser = segment_name)]
        name: String,
        /// The message (text).
        message: String,
        /// Seconds to wait for room.
        #[arg(long, default_value = "10", value_parser = seconds)]
        timeout: Duration,
    },
    /// Pop one message and write its bytes to stdout, then a newline; exit 1 if none arrives
    /// within the timeout.
    ///
    /// Standard output is checked first: closed, read-only, or a pipe whose reader is gone is
    /// an error, and nothing is popped. A write that fails after the pop anyway exits 1, saying
    /// that the message was consumed and lost.
    ///
    /// bytes-ring and mpmc-bytes: the message's exact bytes (any bytes, not only text, such as
    /// Python's `put_bytes` messages). spsc and mpmc: the element's bytes without its trailing
    /// zero bytes (the padding `push` adds). Nothing is converted: a message that is not UTF-8
    /// is written as it is.
    Pop {
        /// Segment name.
        #[arg(value_parser = segment_name)]
        name: String,
        /// Seconds to wait (default: no limit).
        #[arg(long, value_parser = seconds)]
        timeout: Option<Duration>,
    },
    /// Capacity and length (in messages, or in bytes for bytes-ring and mpmc-bytes: `len_unit`), attached
    /// producer/consumer pids and their liveness.
    Stat {
        /// Segment name.
        #[arg(value_parser = segment_name)]
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Clap value parser for `--lifetime`.
pub(crate) fn lifetime(s: &str) -> Result<Lifetime, String> {
    match s {
        "persistent" => Ok(Lifetime::Persistent),
        "owned" => Ok(Lifetime::Owned),
        _ => Err("lifetime is `persistent` or `owned`".into()),
    }
}

/// A `--kind` value: a queue kind, spelled as the library names it ([`Kind::QUEUES`]), so the
/// CLI takes exactly the names it prints.
#[derive(Clone, Copy)]
struct QKind(Kind);

const QUEUE_KINDS: [QKind; 4] = [
    QKind(Kind::QUEUES[0]),
    QKind(Kind::QUEUES[1]),
    QKind(Kind::QUEUES[2]),
    QKind(Kind::QUEUES[3]),
];
// Every queue kind of the library is a `--kind` value.
const _: () = assert!(Kind::QUEUES.len() == QUEUE_KINDS.len());

impl clap::ValueEnum for QKind {
    fn value_variants<'a>() -> &'a [Self] {
        &QUEUE_KINDS
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        self.0.name().map(clap::builder::PossibleValue::new)
    }
}

/// Run `$body` with the constant `$n` bound to the element size `$size` if the CLI handles
/// it ([`supported`]), else fail with [`unsupported`]'s message. `$body` calls a function
/// generic in the size ([`create_fixed`], [`push_fixed`], [`pop_fixed`]), compiled for each
/// size (the typed queues' code with it), so the CLI handles a set of sizes, not every size a
/// queue can have (1 byte to 1 MiB). Each row below is, for each `HI`, the sizes `HI + LO` for
/// each `LO`; the test `elem_sizes_are_exactly_the_supported_ones` checks that they are the
/// sizes [`supported`] names.
macro_rules! with_elem {
    ($size:expr, $n:ident, $body:block) => {{
        let size: usize = $size;
        'found: {
            // 1..=64.
            with_elem!(@row 'found, size, $n, $body;
                0 8 16 24 32 40 48 56;
                [1 2 3 4 5 6 7 8]);
            // Multiples of 8, 72..=1024.
            with_elem!(@row 'found, size, $n, $body;
                64 128 192 256 320 384 448 512 576 640 704 768 832 896 960;
                [8 16 24 32 40 48 56 64]);
            // Multiples of 64, 1088..=4096.
            with_elem!(@row 'found, size, $n, $body;
                1024 1536 2048 2560 3072 3584;
                [64 128 192 256 320 384 448 512]);
            Err(unsupported(size).into())
        }
    }};
    (@row $l:lifetime, $s:ident, $n:ident, $body:block; $($hi:literal)*; $lo:tt) => {
        $( with_elem!(@cell $l, $s, $n, $body; $hi; $lo); )*
    };
    (@cell $l:lifetime, $s:ident, $n:ident, $body:block; $hi:literal; [$($lo:literal)*]) => {
        $(
            if $s == $hi + $lo {
                const $n: usize = $hi + $lo;
                break $l ($body);
            }
        )*
    };
}

/// The element sizes the CLI handles ([`with_elem!`] has a case for each), as `--help` and
/// the error for another size say them.
const ELEM_SIZES: &str = "1 to 64 bytes, multiples of 8 up to 1024 and multiples of 64 up to 4096";

/// Whether the CLI handles elements of `n` bytes (the sizes [`ELEM_SIZES`] names).
fn supported(n: usize) -> bool {
    match n {
        1..=64 => true,
        65..=1024 => n % 8 == 0,
        1025..=4096 => n % 64 == 0,
        _ => false,
    }
}

/// The error for an element size the CLI does not handle.
fn unsupported(n: usize) -> String {
    format!("element size {n} is not supported by the CLI, which handles {ELEM_SIZES}")
}

fn pad<const N: usize>(msg: &str) -> Result<[u8; N], String> {
    let b = msg.as_bytes();
    if b.len() > N {
        return Err(format!(
            "message is {} bytes, the queue's elements are {N}",
            b.len()
        ));
    }
    let mut e = [0u8; N];
    e[..b.len()].copy_from_slice(b);
    Ok(e)
}

/// Write a popped message's exact bytes to stdout, then a newline (nothing converted: a
/// message need not be text).
///
/// The message is already consumed: a failed write is an error that says it is lost (exit 1),
/// even when the reader went away (which other verbs treat as success). [`run`] checks
/// standard output before popping ([`crate::stdout_can_take_output`]); this covers a reader
/// that left in between, or a write error such as a full disk.
fn print_message(b: &[u8]) -> CmdResult {
    let mut out = Vec::with_capacity(b.len() + 1);
    out.extend_from_slice(b);
    out.push(b'\n');
    crate::write_stdout(&out).map_err(|e| {
        let why = match e {
            Stop::BrokenPipe => "its reader is gone".to_owned(),
            Stop::Failed(m) | Stop::Usage(m) => m,
        };
        Stop::Failed(format!(
            "the message was popped (removed from the queue) but not written to standard \
             output ({why}): it is lost"
        ))
    })
}

/// Write a fixed-size element as [`print_message`] does, without its trailing zero bytes
/// (the padding [`pad`] adds).
fn print_elem(b: &[u8]) -> CmdResult {
    let end = b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1);
    print_message(&b[..end])
}

/// Clap value parser for `--elem-size`.
fn elem_size(s: &str) -> Result<usize, String> {
    match s.parse() {
        Ok(n) if supported(n) => Ok(n),
        Ok(n) => Err(unsupported(n)),
        Err(_) => Err(format!("not a size in bytes ({ELEM_SIZES})")),
    }
}

/// The state of queue `name`, after a look at its header that changes nothing (a raw, corrupt
/// or non-queue object gets a message that says which).
fn stat_of(name: &str) -> Result<(Kind, queue::QueueStat), Stop> {
    let h = shmkit_header(name, "")?;
    if !Kind::QUEUES.contains(&h.kind) {
        return Err(holds_not(name, &h.kind.with_article(), "a queue"));
    }
    let st = queue::stat(name).map_err(|e| e.to_string())?;
    Ok((h.kind, st))
}

pub(crate) fn run(args: Args) -> CmdResult {
    match args.cmd {
        Cmd::Create {
            name,
            kind,
            capacity,
            elem_size,
            mode,
            sparse,
            lifetime,
        } => {
            macro_rules! opts {
                ($q:ty) => {
                    <$q>::options().mode(mode).sparse(sparse).lifetime(lifetime)
                };
            }
            match kind.0 {
                Kind::BYTES_RING => drop(
                    opts!(bytes::Ring)
                        .create(&name, capacity)
                        .map_err(create_error)?,
                ),
                k @ (Kind::SPSC_QUEUE | Kind::MPMC_QUEUE) => with_elem!(elem_size, N, {
                    create_fixed::<N>(k, &name, capacity, (mode, sparse, lifetime))
                })?,
                Kind::MPMC_BYTES => {
                    super::queue_mpmc_bytes::create(&name, capacity, mode, sparse, lifetime)?
                }
                k => unreachable!("--kind {k} is not a queue kind"),
            }
            Ok(())
        }
        Cmd::Push {
            name,
            message,
            timeout,
        } => {
            let t = timeout;
            let (kind, st) = stat_of(&name)?;
            let size = st.elem_size;
            let e = |e: &dyn std::fmt::Display| Stop::from(e.to_string());
            match kind {
                Kind::BYTES_RING => {
                    let r = bytes::Ring::open(&name).map_err(|x| e(&x))?;
                    let mut tx = r.producer().map_err(|x| e(&x))?;
                    tx.send_timeout(message.as_bytes(), t).map_err(|x| e(&x))
                }
                Kind::MPMC_BYTES => super::queue_mpmc_bytes::push(&name, &message, timeout),
                k @ (Kind::SPSC_QUEUE | Kind::MPMC_QUEUE) => {
                    with_elem!(size as usize, N, { push_fixed::<N>(k, &name, &message, t) })
                }
                k => Err(holds_not(&name, &k.with_article(), "a queue")),
            }
        }
        Cmd::Pop { name, timeout } => {
            // Before anything is consumed: a message popped for a closed stdout is lost.
            crate::stdout_can_take_output()?;
            let deadline = timeout.and_then(shmkit::Timeout::deadline_after);
            let (kind, st) = stat_of(&name)?;
            let size = st.elem_size;
            let e = |e: &dyn std::fmt::Display| Stop::from(e.to_string());
            match kind {
                Kind::BYTES_RING => {
                    let r = bytes::Ring::open(&name).map_err(|x| e(&x))?;
                    let mut rx = r.consumer().map_err(|x| e(&x))?;
                    let m = pop_until(deadline, |d| match d {
                        Some(d) => rx.recv_deadline(d),
                        None => rx.recv(),
                    })?;
                    print_message(&m)
                }
                Kind::MPMC_BYTES => print_message(&super::queue_mpmc_bytes::pop(&name, deadline)?),
                k @ (Kind::SPSC_QUEUE | Kind::MPMC_QUEUE) => {
                    with_elem!(size as usize, N, { pop_fixed::<N>(k, &name, deadline) })
                }
                k => Err(holds_not(&name, &k.with_article(), "a queue")),
            }
        }
        Cmd::Stat { name, json } => {
            let (_, st) = stat_of(&name)?;
            if json {
                return print_json(&st);
            }
            print_stat(&name, &st)
        }
    }
}

/// `$body` with `$q` the queue type of fixed-size kind `$kind` (`spsc::Queue` or
/// `mpmc::Queue`); [`not_fixed`] for another kind.
macro_rules! by_kind {
    ($kind:expr, $name:expr, $q:ident => $body:expr) => {
        match $kind {
            Kind::SPSC_QUEUE => {
                use spsc::Queue as $q;
                $body
            }
            Kind::MPMC_QUEUE => {
                use mpmc::Queue as $q;
                $body
            }
            k => Err(not_fixed($name, k)),
        }
    };
}

/// `queue create` of a fixed-size queue (`kind` spsc or mpmc) of `[u8; N]` elements, with the
/// settings `(mode, sparse, lifetime)`; one function per size, called through [`with_elem!`].
fn create_fixed<const N: usize>(
    kind: Kind,
    name: &str,
    capacity: u64,
    (mode, sparse, lifetime): (u32, bool, Lifetime),
) -> CmdResult {
    by_kind!(kind, name, Q => {
        Q::<[u8; N]>::options()
            .mode(mode)
            .sparse(sparse)
            .lifetime(lifetime)
            .create(name, capacity)
            .map(drop)
            .map_err(create_error)
    })
}

/// `queue push` to a fixed-size queue (`kind` spsc or mpmc) of `N`-byte elements, opened by
/// size: MESSAGE zero-padded to `N` bytes ([`pad`]).
fn push_fixed<const N: usize>(kind: Kind, name: &str, message: &str, t: Duration) -> CmdResult {
    let e = |e: &dyn std::fmt::Display| Stop::from(e.to_string());
    let elem = pad::<N>(message)?;
    by_kind!(kind, name, Q => {
        let q = Q::<[u8; N]>::options()
            .open_by_size(name)
            .map_err(|x| e(&x))?;
        let mut tx = q.producer().map_err(|x| e(&x))?;
        tx.push_timeout(elem, t).map_err(|x| e(&x))
    })
}

/// `queue pop` from a fixed-size queue (`kind` spsc or mpmc) of `N`-byte elements, opened by
/// size: prints the element ([`print_elem`]).
fn pop_fixed<const N: usize>(kind: Kind, name: &str, deadline: Option<Instant>) -> CmdResult {
    let e = |e: &dyn std::fmt::Display| Stop::from(e.to_string());
    let m = by_kind!(kind, name, Q => {
        let q = Q::<[u8; N]>::options()
            .open_by_size(name)
            .map_err(|x| e(&x))?;
        let mut rx = q.consumer().map_err(|x| e(&x))?;
        pop_until(deadline, |d| match d {
            Some(d) => rx.pop_deadline(d),
            None => rx.pop(),
        })
        .map_err(Stop::from)
    })?;
    print_elem(&m)
}

/// The error for a queue kind that is not a fixed-size one (unreachable from [`run`], which
/// calls [`create_fixed`], [`push_fixed`] and [`pop_fixed`] for spsc and mpmc only).
fn not_fixed(name: &str, k: Kind) -> Stop {
    holds_not(name, &k.with_article(), "a fixed-size queue")
}

/// Pop until the deadline (`None`: no limit), with `pop(None)` (the blocking form) or
/// `pop(Some(deadline))` (its `_deadline` form). A queue with no producer attached (none came
/// yet, or the last one detached, as every `shmkit queue push` does when it exits) is an empty
/// queue: the blocking pop waits. One whose producer closed it or died (`Disconnected`) is
/// waited on the same way, by polling (a deadline of now polls once), since the next producer
/// to attach reopens it.
fn pop_until<V>(
    deadline: Option<Instant>,
    mut pop: impl FnMut(Option<Instant>) -> Result<V, PopError>,
) -> Result<V, String> {
    match pop(deadline) {
        Ok(v) => Ok(v),
        Err(PopError::Timeout) => Err("timed out: the queue stayed empty".into()),
        Err(PopError::Corrupt) => Err(PopError::Corrupt.to_string()),
        Err(PopError::Disconnected) => loop {
            match pop(Some(Instant::now())) {
                Ok(v) => return Ok(v),
                Err(PopError::Corrupt) => return Err(PopError::Corrupt.to_string()),
                Err(_) if shmkit::Timeout::passed(deadline) => {
                    return Err(
                        "timed out: the queue stayed empty (its producer closed it or died)".into(),
                    )
                }
                Err(_) => std::thread::sleep(POLL),
            }
        },
    }
}

/// How often `pop_until` polls a queue whose producer closed it or died.
const POLL: Duration = Duration::from_millis(10);

fn print_stat(name: &str, st: &queue::QueueStat) -> CmdResult {
    outln!("name:            {name}")?;
    outln!("kind:            {}", st.kind)?;
    // "1 message", "2 messages" (`len_unit` is the plural).
    let count = |n: u64| {
        let u = st.len_unit.to_string();
        match (n, u.strip_suffix('s')) {
            (1, Some(one)) => format!("1 {one}"),
            _ => format!("{n} {u}"),
        }
    };
    outln!("capacity:        {}", count(st.capacity))?;
    outln!("length:          {}", count(st.len))?;
    outln!("len unit:        {}", st.len_unit)?;
    outln!("element size:    {}", st.elem_size)?;
    if let Some(t) = &st.elem_type {
        // Recorded in shared memory by the creator: any text, quoted if it is not plain.
        outln!("element type:    {}", crate::shown_name(t))?;
    }
    if let Some(m) = st.max_message {
        outln!("max message:     {m}")?;
    }
    let who = |v: &[queue::Attached]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter()
                .map(|a| format!("pid {} ({:?})", a.pid, a.liveness))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    outln!("producers:       {}", who(&st.producers))?;
    outln!("consumers:       {}", who(&st.consumers))?;
    outln!(
        "closed:          producer {} / consumer {}",
        st.producer_closed,
        st.consumer_closed
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `with_elem!` has a type of exactly `n` bytes for every size [`supported`] names
    /// ([`ELEM_SIZES`]), and none, with [`unsupported`]'s message, for any other size, up to
    /// past the library's largest element (1 MiB).
    #[test]
    fn elem_sizes_are_exactly_the_supported_ones() {
        let mut handled = 0;
        for n in 0..=(1 << 20) + 1 {
            let r: Result<usize, Stop> = with_elem!(n, N, { Ok(std::mem::size_of::<[u8; N]>()) });
            match r {
                Ok(size) => {
                    assert!(supported(n), "{n} is handled but not named");
                    assert_eq!(size, n);
                    handled += 1;
                }
                Err(Stop::Failed(msg)) => {
                    assert!(!supported(n), "{n} is named but not handled");
                    assert_eq!(msg, unsupported(n));
                }
                Err(_) => panic!("{n}: not a Failed"),
            }
        }
        // 1..=64, then 120 multiples of 8 and 48 multiples of 64.
        assert_eq!(handled, 64 + 120 + 48);
        assert!(!supported(0) && supported(24) && supported(2048) && !supported(4097));
    }
}
