//! Two processes share one named segment: a writer publishes numbered messages, a reader
//! attaches by name and prints them.
//!
//! Terminal 1:
//!
//! ```text
//! cargo run --example share_segment -- writer demo-seg
//! ```
//!
//! Terminal 2:
//!
//! ```text
//! cargo run --example share_segment -- reader demo-seg
//! cargo run -- rm demo-seg    # when done: in this mode nobody removes it
//! ```
//!
//! With no arguments it runs both: it starts the reader as a second, unrelated process (the
//! same executable, re-run), then writes. Layout of the 4 KiB payload: bytes 0..8 hold a
//! sequence number (an `AtomicU64`), bytes 64..1088 the current message, NUL-padded.
//!
//! The two sides form a *seqlock* (one writer, any number of readers that never write), with
//! the orderings of Boehm, "Can seqlocks get along with programming language memory models?"
//! (MSPC 2012), which are correct under Rust's (C++'s) memory model, not only on x86:
//!
//! - writer: `seq = odd` (Relaxed); `fence(Release)`; the message bytes as Relaxed atomic
//!   stores (`write_at`); `seq = even` (Release).
//! - reader: `s1 = seq` (Acquire); the message bytes as Relaxed atomic loads (`read_at`);
//!   `fence(Acquire)`; `s2 = seq` (Relaxed); the copy is good if `s1 == s2` and `s1` is even.
//!
//! The message bytes are copied with atomics (`read_at`/`write_at` never `memcpy` shared
//! memory), so a reader that overlaps a write reads torn bytes but is not a data race; the
//! sequence check then throws that copy away. The reader attaches read-only: its loads of
//! `seq` are `Relaxed` loads plus fences, the only kind std permits on a `PROT_READ` mapping.
//!
//! This is the protocol of `shmkit::cell`'s seqlock mode (`src/cell/seqlock.rs`, `SPEC.md`
//! §10.4), spelled out on a raw segment; a `Value` in seqlock mode adds the writer lock, the
//! recovery of a writer killed mid-write, and `wait_changed`.

use shmkit::Segment;
use std::process::Command;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

const MESSAGES: u64 = 5;
const MSG_AT: u64 = 64;
const MSG_LEN: usize = 1024;

fn writer(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let seg = Segment::open_or_create(name, 4096)?;
    let seq = seg.atomic_u64(0)?;
    for i in 1..=MESSAGES {
        let mut msg = format!("message {i} from pid {}", std::process::id()).into_bytes();
        msg.resize(MSG_LEN, 0);
        // An odd sequence number marks "being written", so the reader never prints a
        // half-written message. Relaxed: the fence below orders it before the message stores.
        seq.store(2 * i - 1, Ordering::Relaxed);
        // Release fence: pairs with the reader's fence(Acquire) after its copy. If the reader's
        // copy saw any byte stored below, its re-load of seq sees this odd value (or later) and
        // it discards the copy.
        fence(Ordering::Release);
        // The message, as Relaxed atomic stores.
        seg.write_at(MSG_AT, &msg)?;
        // Release: pairs with the reader's Acquire load of seq before its copy. A reader that
        // sees this even value sees every byte of this message.
        seq.store(2 * i, Ordering::Release);
        println!("writer: wrote message {i}");
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn reader(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    // The writer may not have created it yet: retry for a while.
    let deadline = Instant::now() + Duration::from_secs(10);
    let seg = loop {
        match Segment::open_read_only(name) {
            Ok(s) => break s,
            Err(shmkit::Error::NotFound { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut seen = 0;
    while seen < MESSAGES {
        if Instant::now() > deadline + Duration::from_secs(10) {
            return Err("writer stopped publishing".into());
        }
        // Acquire (on this read-only mapping: a Relaxed load and a fence): pairs with the
        // writer's Release store of the even value, so the message it closed is visible.
        let before = seg.load_u64(0, Ordering::Acquire)?;
        if before % 2 == 1 || before / 2 <= seen {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let mut buf = vec![0u8; MSG_LEN];
        // The message, as Relaxed atomic loads.
        seg.read_at(MSG_AT, &mut buf)?;
        // Acquire fence: pairs with the writer's fence(Release) after its odd store. If the
        // copy read any byte of a later write, the re-load below sees that write's odd value.
        fence(Ordering::Acquire);
        // Relaxed: ordered after the copy by the fence above.
        if seg.load_u64(0, Ordering::Relaxed)? != before {
            continue; // overwritten while we copied: read again
        }
        seen = before / 2;
        let text = String::from_utf8_lossy(&buf);
        println!(
            "reader (pid {}): {}",
            std::process::id(),
            text.trim_end_matches('\0')
        );
    }
    Ok(())
}

/// Errors print their message (not the `Debug` form `main` returning `Err` would) and exit 1.
fn main() {
    if let Err(e) = run() {
        eprintln!("share_segment: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("writer") => writer(args.get(1).map_or("demo-seg", String::as_str)),
        Some("reader") => reader(args.get(1).map_or("demo-seg", String::as_str)),
        Some(other) => Err(format!("unknown role {other:?}: use writer or reader").into()),
        None => {
            let name = format!("demo-seg-{}", std::process::id());
            let mut child = Command::new(std::env::current_exe()?)
                .args(["reader", &name])
                .spawn()?;
            let result = writer(&name);
            let status = child.wait()?;
            Segment::unlink(&name)?;
            result?;
            if !status.success() {
                return Err(format!("reader failed: {status}").into());
            }
            println!("done: two processes shared segment {name:?}, now removed");
            Ok(())
        }
    }
}
