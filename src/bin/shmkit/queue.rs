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
//! `create` makes fixed-size queues of `[u8; N]` elements (that is their recorded type), of
//! any size the library accepts (1 byte to 1 MiB); the other verbs open any fixed-size queue
//! whatever type a program created it with, through the raw handles (`spsc::RawQueue`,
//! `mpmc::RawQueue`), which push and pop an element's bytes whatever its size.

use std::time::{Duration, Instant};

use crate::{
    create_error, holds_not, outln, print_json, refuse_other_kind, seconds, segment_name,
    shmkit_header, CmdResult, Stop,
};
use shmkit::queue::{self, bytes, mpmc, spsc, PopError, RawError};
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
        /// Element size in bytes for spsc and mpmc: 1 to 1048576 (1 MiB), 64 if not given.
        /// Not for bytes-ring and mpmc-bytes, whose messages have any length (their element
        /// size, as `queue stat` shows it, is 1).
        #[arg(long)]
        elem_size: Option<usize>,
        /// Permission bits, octal.
        #[arg(long, default_value = "600", value_parser = crate::mode)]
        mode: u32,
        /// Do not reserve the memory now (as `shmkit create --sparse`): a process that touches
        /// a page when /dev/shm is full dies of SIGBUS.
        #[arg(long)]
        sparse: bool,
        /// `persistent`: lives until removed; `owned`: `shmkit gc` removes it once this
        /// process (its creator) is dead.
        #[arg(long, default_value = "persistent", value_parser = crate::lifetime)]
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

/// Refuse a MESSAGE of `len` bytes that queue `name` (of state `st`) cannot carry, in one
/// message for every kind that says what to do. (The opens and pushes
/// after it check again: this look is a moment before them.)
fn too_long(st: &queue::QueueStat, len: usize) -> CmdResult {
    let (max, how) = match st.max_message {
        Some(max) => (
            max,
            format!(
                "for its capacity of {} bytes: create it with a larger --capacity",
                st.capacity
            ),
        ),
        None => (
            st.elem_size,
            "its element size: create it with a larger --elem-size".to_owned(),
        ),
    };
    if len as u64 <= max {
        return Ok(());
    }
    // The queue's name: `named`'s.
    Err(format!("the message is {len} bytes, more than its maximum of {max} ({how})").into())
}

/// MESSAGE as an element of `n` bytes: its UTF-8 bytes, zero-padded.
fn pad(msg: &str, n: usize) -> Result<Vec<u8>, String> {
    let b = msg.as_bytes();
    if b.len() > n {
        return Err(format!(
            "message is {} bytes, the queue's elements are {n}",
            b.len()
        ));
    }
    let mut e = vec![0u8; n];
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

/// The state of queue `name`, after a look at its header that changes nothing (a raw, corrupt
/// or non-queue object gets a message that says which).
fn stat_of(name: &str) -> Result<(Kind, queue::QueueStat), Stop> {
    refuse_other_kind(name, Kind::QUEUES, "a queue", true)?;
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
            if matches!(kind.0, Kind::BYTES_RING | Kind::MPMC_BYTES) && elem_size.unwrap_or(1) != 1
            {
                return Err(Stop::Usage(format!(
                    "{name:?}: --elem-size is for spsc and mpmc queues; a {} queue carries \
                     messages of any length up to its maximum (`shmkit queue stat` shows it)",
                    kind.0
                )));
            }
            match kind.0 {
                Kind::BYTES_RING => drop(
                    opts!(bytes::Ring)
                        .create(&name, capacity)
                        .map_err(create_error)?,
                ),
                k @ (Kind::SPSC_QUEUE | Kind::MPMC_QUEUE) => {
                    let elem_size = elem_size.unwrap_or(64);
                    create_fixed(k, &name, elem_size, capacity, (mode, sparse, lifetime))?
                }
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
        } => named(&name, push(&name, &message, timeout)),
        Cmd::Pop { name, timeout } => named(&name, pop(&name, timeout)),
        Cmd::Stat { name, json } => {
            let (_, st) = stat_of(&name)?;
            if json {
                return print_json(&st);
            }
            print_stat(&name, &st)
        }
    }
}

/// `queue push NAME MESSAGE`: attach as the producer for the call, wait up to `t` for room.
fn push(name: &str, message: &str, t: Duration) -> CmdResult {
    let (kind, st) = stat_of(name)?;
    too_long(&st, message.len())?;
    let e = |e: &dyn std::fmt::Display| Stop::from(e.to_string());
    match kind {
        Kind::BYTES_RING => {
            let r = bytes::Ring::open(name).map_err(|x| e(&x))?;
            let mut tx = r.producer().map_err(|x| e(&x))?;
            tx.push_timeout(message.as_bytes(), t).map_err(|x| e(&x))
        }
        Kind::MPMC_BYTES => super::queue_mpmc_bytes::push(name, message, t),
        k @ (Kind::SPSC_QUEUE | Kind::MPMC_QUEUE) => push_fixed(k, name, message, t),
        k => Err(holds_not(name, &k.with_article(), "a queue")),
    }
}

/// `queue pop NAME`: attach as the consumer for the call, wait up to `timeout` (no limit:
/// `None`) for a message and print it.
fn pop(name: &str, timeout: Option<Duration>) -> CmdResult {
    // Before anything is consumed: a message popped for a closed stdout is lost.
    crate::stdout_can_take_output()?;
    let deadline = timeout.and_then(shmkit::Timeout::deadline_after);
    let (kind, _) = stat_of(name)?;
    let e = |e: &dyn std::fmt::Display| Stop::from(e.to_string());
    match kind {
        Kind::BYTES_RING => {
            let r = bytes::Ring::open(name).map_err(|x| e(&x))?;
            let mut rx = r.consumer().map_err(|x| e(&x))?;
            let m = pop_until(deadline, |d| match d {
                Some(d) => rx.pop_deadline(d),
                None => rx.pop(),
            })?;
            print_message(&m)
        }
        Kind::MPMC_BYTES => print_message(&super::queue_mpmc_bytes::pop(name, deadline)?),
        k @ (Kind::SPSC_QUEUE | Kind::MPMC_QUEUE) => pop_fixed(k, name, deadline),
        k => Err(holds_not(name, &k.with_article(), "a queue")),
    }
}

/// A push's or pop's failure `e` naming queue `name`, in one place for every kind, unless its
/// message names the object already (an open's error: `segment "q" …`).
fn named(name: &str, r: CmdResult) -> CmdResult {
    r.map_err(|e| match e {
        Stop::Failed(m)
            if !m.starts_with(&format!("segment {name:?}"))
                && !m.starts_with(&format!("queue {name:?}")) =>
        {
            Stop::Failed(format!("queue {name:?}: {m}"))
        }
        e => e,
    })
}

/// `$body` with `$q` the raw queue type of fixed-size kind `$kind` (`spsc::RawQueue` or
/// `mpmc::RawQueue`); [`not_fixed`] for another kind.
macro_rules! by_kind {
    ($kind:expr, $name:expr, $q:ident => $body:expr) => {
        match $kind {
            Kind::SPSC_QUEUE => {
                use spsc::RawQueue as $q;
                $body
            }
            Kind::MPMC_QUEUE => {
                use mpmc::RawQueue as $q;
                $body
            }
            k => Err(not_fixed($name, k)),
        }
    };
}

/// `queue create` of a fixed-size queue (`kind` spsc or mpmc) of `elem_size`-byte elements
/// (recorded as `[u8; elem_size]`), with the settings `(mode, sparse, lifetime)`.
fn create_fixed(
    kind: Kind,
    name: &str,
    elem_size: usize,
    capacity: u64,
    (mode, sparse, lifetime): (u32, bool, Lifetime),
) -> CmdResult {
    by_kind!(kind, name, Q => {
        Q::options()
            .mode(mode)
            .sparse(sparse)
            .lifetime(lifetime)
            .create(name, elem_size, capacity)
            .map(drop)
            .map_err(create_error)
    })
}

/// `queue push` to a fixed-size queue (`kind` spsc or mpmc) of any element type, opened raw:
/// MESSAGE zero-padded to the element size ([`pad`]).
fn push_fixed(kind: Kind, name: &str, message: &str, t: Duration) -> CmdResult {
    let e = |e: &dyn std::fmt::Display| Stop::from(e.to_string());
    by_kind!(kind, name, Q => {
        let q = Q::open(name).map_err(|x| e(&x))?;
        let elem = pad(message, q.elem_size())?;
        let mut tx = q.producer().map_err(|x| e(&x))?;
        tx.push_timeout(&elem, t).map_err(|x| e(&x))
    })
}

/// `queue pop` from a fixed-size queue (`kind` spsc or mpmc) of any element type, opened raw:
/// prints the element ([`print_elem`]).
fn pop_fixed(kind: Kind, name: &str, deadline: Option<Instant>) -> CmdResult {
    let e = |e: &dyn std::fmt::Display| Stop::from(e.to_string());
    let m = by_kind!(kind, name, Q => {
        let q = Q::open(name).map_err(|x| e(&x))?;
        let mut rx = q.consumer().map_err(|x| e(&x))?;
        let mut m = vec![0; q.elem_size()];
        pop_until(deadline, |d| match d {
            Some(d) => rx.pop_into_deadline(&mut m, d),
            None => rx.pop_into(&mut m),
        })
        .map_err(Stop::from)?;
        Ok::<_, Stop>(m)
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
/// to attach reopens it. `pop` returns a [`PopError`], or a raw handle's [`RawError`] of one.
pub(crate) fn pop_until<V, E: Into<RawError<PopError>>>(
    deadline: Option<Instant>,
    mut pop: impl FnMut(Option<Instant>) -> Result<V, E>,
) -> Result<V, String> {
    let mut pop = |d| pop(d).map_err(Into::into);
    match pop(deadline) {
        Ok(v) => Ok(v),
        Err(RawError::Queue(PopError::Timeout)) => Err("timed out: the queue stayed empty".into()),
        Err(RawError::Queue(PopError::Disconnected)) => loop {
            match pop(Some(Instant::now())) {
                Ok(v) => return Ok(v),
                Err(e @ (RawError::Queue(PopError::Corrupt) | RawError::WrongLength { .. })) => {
                    return Err(e.to_string())
                }
                Err(_) if shmkit::Timeout::passed(deadline) => {
                    return Err(
                        "timed out: the queue stayed empty (its producer closed it or died)".into(),
                    )
                }
                Err(_) => std::thread::sleep(POLL),
            }
        },
        Err(e @ (RawError::Queue(PopError::Corrupt) | RawError::WrongLength { .. })) => {
            Err(e.to_string())
        }
    }
}

/// How often [`pop_until`] polls a queue whose producer closed it or died.
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
                .map(|a| format!("pid {} ({})", a.pid, a.liveness))
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
