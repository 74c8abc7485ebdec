//! A process dies holding a named lock; the next one gets the lock with `OwnerDied`, repairs
//! the state the lock protects, marks the lock consistent, and carries on. This is the
//! recovery pattern for every shmkit `Lock` / `RLock`.
//!
//! The protected state is a tiny bank in a second segment: two accounts that always sum to
//! 1000, and a journal word holding the amount of a transfer in progress (0 when none). A
//! transfer writes the journal first, then debits, then credits, then clears the journal, so
//! a survivor can always roll an interrupted transfer back.
//!
//! Terminal 1 (takes the lock, starts a transfer, and stops half-way):
//!
//! ```text
//! cargo run --example robust_lock -- victim demo-lock
//! ```
//!
//! then kill it hard, from any terminal: `pkill -KILL -f 'robust_lock victim'` (`cargo run`
//! execs the example, so its command line has no `--`), or `kill -9 PID` with the pid it
//! prints.
//!
//! Terminal 2 (acquires, sees the owner died, repairs, exits 0):
//!
//! ```text
//! cargo run --example robust_lock -- recover demo-lock
//! cargo run -- rm demo-lock demo-lock-bank    # when done
//! ```
//!
//! With no arguments it does all of it itself: it starts the victim as a separate process
//! (this executable, re-run), SIGKILLs it mid-transfer, runs the recovery in a second
//! process, and removes both segments.

use shmkit::sync::{Lock, LockError};
use shmkit::Segment;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TOTAL: u64 = 1000;
const TIMEOUT: Duration = Duration::from_secs(10);

/// The bank's words (the lock makes plain Relaxed accesses safe: only the holder touches them).
struct Bank {
    seg: Segment,
}

impl Bank {
    fn open_or_create(name: &str) -> shmkit::Result<Bank> {
        let seg = Segment::options().open_or_create_with(name, 64, |s| {
            s.atomic_u64(0)?.store(TOTAL, Ordering::Relaxed); // account A
            Ok(())
        })?;
        Ok(Bank { seg })
    }
    fn a(&self) -> &AtomicU64 {
        self.seg.atomic_u64(0).unwrap()
    }
    fn b(&self) -> &AtomicU64 {
        self.seg.atomic_u64(8).unwrap()
    }
    fn journal(&self) -> &AtomicU64 {
        self.seg.atomic_u64(16).unwrap()
    }
    /// Set by the victim once it is half-way through a transfer (for the self-run mode).
    fn stuck(&self) -> &AtomicU64 {
        self.seg.atomic_u64(24).unwrap()
    }
    fn sum(&self) -> u64 {
        self.a().load(Ordering::Relaxed) + self.b().load(Ordering::Relaxed)
    }
}

fn victim(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let lock = Lock::open_or_create(name)?;
    let bank = Bank::open_or_create(&format!("{name}-bank"))?;
    let _guard = lock
        .lock_timeout(TIMEOUT)
        .map_err(LockError::without_guard)?;
    let amount = 300;
    bank.journal().store(amount, Ordering::Relaxed);
    bank.a().fetch_sub(amount, Ordering::Relaxed);
    // ... and here, before crediting B, the process is killed.
    bank.stuck().store(1, Ordering::Release);
    println!(
        "victim pid {}: holding {name:?} half-way through a transfer (A + B = {}); kill -9 me",
        std::process::id(),
        bank.sum()
    );
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Every shmkit error (open, lock, repair) goes into `shmkit::Error` with `?`; only
/// `OwnerDied`, whose guard we need, is matched first.
fn recover(name: &str) -> shmkit::Result<()> {
    let lock = Lock::open(name)?;
    let bank = Bank::open_or_create(&format!("{name}-bank"))?;
    match lock.lock_timeout(TIMEOUT) {
        Ok(_guard) => println!(
            "the lock was free: nothing to repair (A + B = {})",
            bank.sum()
        ),
        Err(LockError::OwnerDied(mut guard)) => {
            let dead = guard
                .previous_owner()
                .expect("an OwnerDied guard names the dead owner");
            println!(
                "the previous owner ({dead}) died holding the lock; A + B = {}",
                bank.sum()
            );
            // Repair: roll the journalled transfer back.
            let pending = bank.journal().load(Ordering::Relaxed);
            if bank.sum() != TOTAL {
                bank.a().fetch_add(pending, Ordering::Relaxed);
            }
            bank.journal().store(0, Ordering::Relaxed);
            assert_eq!(bank.sum(), TOTAL);
            // Without this, dropping the guard would leave the lock not recoverable.
            guard.make_consistent()?;
            println!(
                "repaired: rolled back a transfer of {pending}; A + B = {}",
                bank.sum()
            );
        }
        Err(e) => return Err(e.into()), // Timeout, NotRecoverable, …
    }
    // The lock works normally again.
    drop(lock.lock_timeout(TIMEOUT)?);
    Ok(())
}

fn self_run() -> Result<(), Box<dyn std::error::Error>> {
    let name = format!("robust-lock-demo-{}", std::process::id());
    let bank_name = format!("{name}-bank");
    let exe = std::env::current_exe()?;
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        let mut child = Command::new(&exe).args(["victim", &name]).spawn()?;
        // Wait (bounded) until the victim is stuck mid-transfer, then SIGKILL it.
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(bank) = Segment::open(&bank_name) {
                if bank.atomic_u64(24)?.load(Ordering::Acquire) == 1 {
                    break;
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("the victim never took the lock".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill()?; // SIGKILL
        child.wait()?;
        println!("killed the victim (pid {}) with SIGKILL", child.id());
        let status = Command::new(&exe).args(["recover", &name]).status()?;
        if !status.success() {
            return Err(format!("recovery failed: {status}").into());
        }
        Ok(())
    })();
    let _ = Segment::unlink(&name);
    let _ = Segment::unlink(&bank_name);
    result
}

/// Errors print their message (not the `Debug` form `main` returning `Err` would) and exit 1.
fn main() {
    if let Err(e) = run() {
        eprintln!("robust_lock: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => self_run(),
        ["victim", name] => victim(name),
        ["recover", name] => Ok(recover(name)?),
        _ => Err("usage: robust_lock [victim NAME | recover NAME]".into()),
    }
}
