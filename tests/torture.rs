#![cfg(not(loom))]
//! Crash torture: processes are SIGKILLed at random points while they hold a lock or push and
//! pop on a queue, and restarted; a hostile process rewrites the control words of objects
//! that others are using. What must hold, whatever the timing (`SPEC.md` §6, §7):
//!
//! - **Locks** (`Lock`, `RLock`; three workers and the test itself contend; one or two of them
//!   killed per round, sometimes while visibly in the middle of an update): every acquisition
//!   that follows a death inside the critical section reports `OwnerDied` naming the dead
//!   process (checked by its liveness token), and a half-done update (the protected pair
//!   `a`/`b` differs, or the "inside" mark is set) is never handed out silently by a plain
//!   `Ok`. The lock recovers every time (never `NotRecoverable`, no acquisition times out).
//! - **Queues** (SPSC; MPMC with three producers and two consumers; bytes ring): every message
//!   carries `(epoch, seq)` (an epoch is one producer incarnation) and a checksum of its
//!   whole body. Consumers log what they receive in shared memory; producers record the last
//!   sequence number they attempted and the last one that was accepted. Checked at the end,
//!   exactly against SPEC §7's death rules: no torn message, no message never sent, no
//!   duplicate (except the one the bytes ring documents: a consumer killed between reading a
//!   record and releasing it sees it again), per-producer order, and no gap except the
//!   documented losses: the message a producer was pushing when killed, and (SPSC, MPMC) the
//!   one a consumer had popped when killed (it logs after `pop` returns; a gap is allowed only
//!   at the log position of a consumer killed inside a receive; SPSC checks that position
//!   exactly, MPMC the count). The bytes ring consumer logs before it releases, so it loses
//!   nothing.
//! - **fork()**: every worker, producer and consumer forks once at a random point; the child
//!   drops its inherited guard or queue handle, which must change nothing (`tests/fork.rs`).
//! - **Hostile writer**: a process maps each kind of object raw and writes random and
//!   plausible values over its control words (and over the bytes ring's record headers and
//!   the MPMC stamps) while another process keeps calling push/pop/lock on it with short
//!   timeouts. Every call must return (an error is fine) within its timeout plus 60 s (a hang
//!   detector with a generous margin, not a performance bound), no call may panic, and the
//!   process must exit normally (a SIGSEGV or SIGBUS from an out-of-bounds access would kill
//!   it). The same for `Event`, `Semaphore`, `BoundedSemaphore`, `Condition` (with its lock),
//!   `Barrier` (its four parties in two processes) and the typed cells (`Value<u64>` and
//!   `Array<u64>` in each mode, the arrays also through slices and out-of-range ranges): the
//!   writer also writes single 32-bit fields (counts near 0 and near the checked limits, odd
//!   and even sequences), owner words of a live process, of a dead token and ones the victim
//!   wrote itself, and the cells' geometry and data words; and it ends with a storm: from the
//!   object's first state, one word (a count, a sequence, a barrier's word, an owner word)
//!   changes as fast as it can be written for a few seconds and then until every victim thread
//!   has seen calls return meanwhile (for longer than the hang margin if one never does), so
//!   that a retry loop that ignores its deadline while a word keeps changing shows as a hang.
//! - **Regression**: an MPMC consumer killed while skipping a dead producer's position (a
//!   window too narrow for random kills) must not wedge the queue a lap later; the state is
//!   built by hand.
//! - Nothing is left in `/dev/shm`: every object is unlinked by its owning handle's drop
//!   (checked), and [`common::Cleanup`] removes it anyway if the test fails.
//!
//! Every wait is bounded: blocking calls that must succeed get 10 s, children get minutes to
//! exit, and a child that hangs is killed and the test fails.
//!
//! **Scale.** `SHMKIT_TORTURE_ROUNDS` (default 40) is the number of kill rounds per test; the
//! hostile tests run for `100 + 40 × rounds` ms each. `SHMKIT_TORTURE_SEED` fixes the random
//! choices (each test prints the seed it used). CI runs the default; to run it big:
//!
//! ```text
//! SHMKIT_TORTURE_ROUNDS=500 cargo test --release --test torture -- --nocapture
//! ```
//!
//! (500 rounds take about a minute on 2 cores; each test prints what it did.) Liveness lives in
//! `/dev/shm/.shmkit`: anyone who removes files there while the test runs (an `rm` of
//! `/dev/shm/*`, systemd's `RemoveIPC`, the start-up sweep of a shmkit build that reads tokens
//! differently) makes live workers look dead, which the test reports.
//! On a machine shared with other `/dev/shm` users, run it in a private one (as root):
//!
//! ```text
//! unshare --mount --propagation private sh -c \
//!     'mount -t tmpfs tmpfs /dev/shm && SHMKIT_TORTURE_ROUNDS=500 cargo test --release --test torture'
//! ```

mod common;

use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::chaos::{mix, rounds, scribble, seed_for, Rng, Snapshot};
use common::{fork_and, inherited, spawn_child, unique_name, Cleanup};
use shmkit::cell::{Array, CellMode, Value};
use shmkit::queue::bytes;
use shmkit::queue::{
    mpmc, mpmc_bytes, spsc, AttachError, BytesPushError, PopError, PushError, QueueStat,
    TryPopError, TryPushError,
};
use shmkit::sync::{
    Barrier, BarrierError, BarrierState, BoundedSemaphore, Condition, ConditionState, Event, Lock,
    LockError, LockGuard, LockState, Owner, RLock, RLockGuard, RLockState, Semaphore,
    SemaphoreError, SemaphoreState, WaitTimeoutError, MAX_PARTIES, SEM_VALUE_MAX,
};
use shmkit::{Liveness, Segment};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Bound for a blocking call that must succeed.
const T: Duration = Duration::from_secs(10);
/// Bound for a child to exit once it has been told to.
const EXIT: Duration = Duration::from_secs(180);
/// How much longer than its timeout a call may take before it counts as a hang: a hang
/// detector, not a speed assertion, so generous enough that a victim descheduled on 2
/// oversubscribed cores (other tests, other users) never trips it.
const HANG_MARGIN: Duration = Duration::from_secs(60);
/// A producer that cannot send one message for this long (consumers are always restarted)
/// reports the queue as wedged.
const STUCK: Duration = Duration::from_secs(60);
/// The default open timeout (an open waits this long at most for a creator to publish).
const OPEN: Duration = Duration::from_secs(5);
/// Largest number of messages one producer incarnation sends.
const MAX_N: u64 = 300;
/// Largest body of a bytes-ring message (the ring holds 1024 bytes: at most 504 per message).
const BODY_MAX: u64 = 300;
const BYTES_CAP: u64 = 1024;

/// A short random pause: mostly none, sometimes a yield, now and then a sleep.
fn pace(rng: &mut Rng) {
    match rng.below(10) {
        0..=5 => {}
        6..=8 => std::thread::yield_now(),
        _ => std::thread::sleep(rng.micros(300)),
    }
}

// ---------------------------------------------------------------------------------------------
// The board: a plain segment shared by a test and its children, all words atomic.

const W_STOP: u64 = 0;
const W_VIOLATIONS: u64 = 1;
const W_FORKS: u64 = 2;
/// Lock: OwnerDied acquisitions that found the protected pair half updated.
const W_TORN: u64 = 3;
/// Lock: OwnerDied acquisitions (completed repairs).
const W_DIED: u64 = 4;
/// Lock: the liveness token of the last dead owner taken over.
const W_LAST_DIED: u64 = 5;
/// Lock: the protected pair (`a` is incremented first, then `b`) and the "inside" mark (the
/// holder's pid while it updates, else 0).
const W_A: u64 = 6;
const W_B: u64 = 7;
const W_MARK: u64 = 8;
const W_MAX_EPOCHS: u64 = 9;
const W_LOG_CAP: u64 = 10;
const W_SLOTS: u64 = 11;
/// Hostile tests: threads attached and running; calls made; calls that returned an error.
const W_READY: u64 = 12;
const W_CALLS: u64 = 13;
const W_ERRORS: u64 = 14;
/// Lock: how many pids are in the killed list.
const W_KILLED_N: u64 = 15;
/// Hostile tests: victim threads that have finished (all victim processes).
const W_DONE: u64 = 16;
/// Four words per worker, consumer or victim-thread slot.
const SLOT_BASE: u64 = 24;
const MAX_SLOTS: u64 = 16;
/// Lock worker slot words.
const S_HOLDING: u64 = 0; // 0 free, 1 held, 2 mid-update, 3 mid-update and sleeping
const S_TOKEN: u64 = 1;
/// Consumer slot words.
const S_COUNT: u64 = 0;
const S_PENDING: u64 = 1;
/// Victim-thread slot words: when its current call started and how long it may take
/// (`CLOCK_MONOTONIC` ns; 0: no call in progress).
const S_CALL_START: u64 = 2;
const S_CALL_LIMIT: u64 = 3;
/// Then per epoch `attempt`, `done`; then the killed-pid list (`max_epochs` words); then the
/// consumers' logs (`log_cap` words each).
const EPOCH_BASE: u64 = SLOT_BASE + 4 * MAX_SLOTS;

struct Board {
    seg: Segment,
    max_epochs: u64,
    log_cap: u64,
    slots: u64,
}

impl Board {
    fn create(name: &str, max_epochs: u64, slots: u64, log_cap: u64) -> Board {
        let words = EPOCH_BASE + 3 * max_epochs + slots * log_cap;
        let seg = Segment::options()
            .unlink_on_drop(true)
            .create(name, words * 8)
            .expect("create board");
        let b = Board {
            seg,
            max_epochs,
            log_cap,
            slots,
        };
        b.w(W_MAX_EPOCHS).store(max_epochs, SeqCst);
        b.w(W_LOG_CAP).store(log_cap, SeqCst);
        b.w(W_SLOTS).store(slots, SeqCst);
        b
    }

    fn open(name: &str) -> Board {
        let seg = Segment::open(name).expect("open board");
        let word = |i: u64| seg.atomic_u64(i * 8).unwrap().load(SeqCst);
        let (max_epochs, log_cap, slots) = (word(W_MAX_EPOCHS), word(W_LOG_CAP), word(W_SLOTS));
        Board {
            seg,
            max_epochs,
            log_cap,
            slots,
        }
    }

    fn w(&self, i: u64) -> &AtomicU64 {
        self.seg.atomic_u64(i * 8).expect("board word")
    }
    fn get(&self, i: u64) -> u64 {
        self.w(i).load(SeqCst)
    }
    fn slot(&self, k: u64, j: u64) -> &AtomicU64 {
        assert!(k < MAX_SLOTS && j < 4);
        self.w(SLOT_BASE + 4 * k + j)
    }
    fn attempt(&self, e: u64) -> &AtomicU64 {
        assert!(e < self.max_epochs, "epoch {e} beyond the board");
        self.w(EPOCH_BASE + 2 * e)
    }
    fn done(&self, e: u64) -> &AtomicU64 {
        assert!(e < self.max_epochs, "epoch {e} beyond the board");
        self.w(EPOCH_BASE + 2 * e + 1)
    }
    fn killed(&self, i: u64) -> &AtomicU64 {
        assert!(i < self.max_epochs, "killed list full");
        self.w(EPOCH_BASE + 2 * self.max_epochs + i)
    }
    fn log(&self, k: u64, i: u64) -> &AtomicU64 {
        assert!(k < self.slots && i < self.log_cap, "log {k} full");
        self.w(EPOCH_BASE + 3 * self.max_epochs + k * self.log_cap + i)
    }
    fn stopping(&self) -> bool {
        self.get(W_STOP) != 0
    }
    fn add_killed(&self, pid: u32) {
        let n = self.w(W_KILLED_N).fetch_add(1, SeqCst);
        self.killed(n).store(u64::from(pid), SeqCst);
    }
    fn was_killed(&self, pid: u64) -> bool {
        (0..self.get(W_KILLED_N)).any(|i| self.killed(i).load(SeqCst) == pid)
    }
}

/// What the liveness file of `token` looks like (for failure messages).
fn live_file(token: u64) -> String {
    let p = format!("/dev/shm/.shmkit/live-{token:016x}");
    match std::fs::read_to_string(&p) {
        Ok(s) => format!("{p}: {:?}", s.trim()),
        Err(e) => format!("{p}: {e}"),
    }
}

/// Report a broken guarantee: counted on the board (so the test sees it even if this process
/// is killed right after), printed, and a panic (so the process exits with a failure).
fn violation(board: &Board, what: String) -> ! {
    board.w(W_VIOLATIONS).fetch_add(1, SeqCst);
    eprintln!("TORTURE VIOLATION (pid {}): {what}", std::process::id());
    panic!("{what}");
}

/// This process's liveness token, through public API only: attach to a private queue and read
/// the token its stat shows.
fn my_token() -> u64 {
    let q = spsc::Queue::<u8>::with_capacity(2);
    let _p = q.producer().expect("private producer");
    q.stat().producers[0].token
}

// ---------------------------------------------------------------------------------------------
// Process helpers.

fn describe(st: ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(101), _) => "exit code 101 (a panic: see its stderr above)".into(),
        (Some(c), _) => format!("exit code {c}"),
        (_, Some(7)) => "SIGBUS".into(),
        (_, Some(11)) => "SIGSEGV".into(),
        (_, Some(6)) => "SIGABRT".into(),
        (_, Some(s)) => format!("signal {s}"),
        _ => format!("{st}"),
    }
}

/// SIGKILL `child` and reap it; it must have died of our SIGKILL (or, if `may_exit`, have
/// exited successfully before), not of a panic or another signal.
fn kill_and_reap(child: &mut Child, who: &str, may_exit: bool) {
    let _ = child.kill();
    let st = child.wait().expect("reap child");
    let ok = st.signal() == Some(libc::SIGKILL) || (may_exit && st.success());
    assert!(
        ok,
        "{who} (pid {}) failed before it was killed: {}",
        child.id(),
        describe(st)
    );
}

/// Wait (bounded) for `child` to exit and require a normal, successful exit.
fn wait_success(child: &mut Child, who: &str, timeout: Duration) {
    let st = common::wait_exit(child, timeout);
    assert!(st.success(), "{who} (pid {}): {}", child.id(), describe(st));
}

/// Poll `cond` every 100 µs for at most `T`; fail early if `child` exits meanwhile.
fn wait_for(what: &str, child: &mut Child, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !cond() {
        if let Some(st) = child.try_wait().expect("try_wait") {
            panic!("waiting for {what}: the child exited: {}", describe(st));
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Make this child die when the test thread that started it ends (a failing test must not
/// leave its children running; a forked grandchild does not inherit this, and is short-lived).
fn die_with_parent() {
    // SAFETY: plain prctl and getppid calls.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() == 1 {
            libc::_exit(1); // the test had already gone
        }
    }
}

/// Bounded retry of a role attach: the previous holder was just killed (its liveness lock is
/// released when its last descriptor closes, which a forked grandchild may delay a moment).
fn attach<H>(board: &Board, what: &str, mut f: impl FnMut() -> Result<H, AttachError>) -> H {
    let deadline = Instant::now() + T;
    loop {
        match f() {
            Ok(h) => return h,
            Err(AttachError::Busy { .. } | AttachError::NoFreeSlot { .. })
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => violation(board, format!("attach {what}: {e}")),
        }
    }
}

/// The object's name must be gone from `/dev/shm` (its owning handle was dropped).
fn assert_unlinked(names: &[&str]) {
    for n in names {
        assert!(
            !std::path::Path::new(&format!("/dev/shm/{n}")).exists(),
            "{n} was left in /dev/shm"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Locks.

trait TLock: Sized + Sync {
    type G<'a>: TGuard
    where
        Self: 'a;
    const KIND: &'static str;
    fn t_create(name: &str) -> Self;
    fn t_open(name: &str) -> shmkit::Result<Self>;
    fn t_lock(&self, t: Duration) -> Result<Self::G<'_>, LockError<Self::G<'_>>>;
    fn t_try(&self) -> Result<Self::G<'_>, LockError<Self::G<'_>>>;
    fn t_owner(&self) -> Option<Owner>;
    /// Recursion depth (`None` for a `Lock`).
    fn t_depth(&self) -> Option<u32>;
    /// Keep the level held without its guard, then release it by hand (`RLock`); drop it
    /// (`Lock`).
    fn t_leak_release(&self, g: Self::G<'_>) -> Result<(), LockError<()>>;
}

trait TGuard {
    fn t_repair(&mut self) -> Result<(), LockError<()>>;
    fn t_previous(&self) -> Option<Owner>;
}

impl TLock for Lock {
    type G<'a> = LockGuard<'a>;
    const KIND: &'static str = "lock";
    fn t_create(name: &str) -> Self {
        Lock::options().unlink_on_drop(true).create(name).unwrap()
    }
    fn t_open(name: &str) -> shmkit::Result<Self> {
        Lock::open(name)
    }
    fn t_lock(&self, t: Duration) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.lock_timeout(t)
    }
    fn t_try(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.try_lock()
    }
    fn t_owner(&self) -> Option<Owner> {
        let s: &LockState = self;
        s.owner()
    }
    fn t_depth(&self) -> Option<u32> {
        None
    }
    fn t_leak_release(&self, g: LockGuard<'_>) -> Result<(), LockError<()>> {
        drop(g);
        Ok(())
    }
}

impl TGuard for LockGuard<'_> {
    fn t_repair(&mut self) -> Result<(), LockError<()>> {
        self.make_consistent()
    }
    fn t_previous(&self) -> Option<Owner> {
        self.previous_owner()
    }
}

impl TLock for RLock {
    type G<'a> = RLockGuard<'a>;
    const KIND: &'static str = "rlock";
    fn t_create(name: &str) -> Self {
        RLock::options().unlink_on_drop(true).create(name).unwrap()
    }
    fn t_open(name: &str) -> shmkit::Result<Self> {
        RLock::open(name)
    }
    fn t_lock(&self, t: Duration) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        self.lock_timeout(t)
    }
    fn t_try(&self) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        self.try_lock()
    }
    fn t_owner(&self) -> Option<Owner> {
        let s: &RLockState = self;
        s.owner()
    }
    fn t_depth(&self) -> Option<u32> {
        Some(self.depth())
    }
    fn t_leak_release(&self, g: RLockGuard<'_>) -> Result<(), LockError<()>> {
        g.leak();
        self.release()
    }
}

impl TGuard for RLockGuard<'_> {
    fn t_repair(&mut self) -> Result<(), LockError<()>> {
        self.make_consistent()
    }
    fn t_previous(&self) -> Option<Owner> {
        self.previous_owner()
    }
}

/// Take what a lock call returned, check the protected state, and repair it after a death.
/// A plain `Ok` must find it consistent (`a == b`, nobody inside): a death in the middle of an
/// update must be reported by `OwnerDied`, never handed on silently.
fn enter<G: TGuard>(board: &Board, r: Result<G, LockError<G>>, who: &str) -> G {
    let (a, b, mark) = (board.get(W_A), board.get(W_B), board.get(W_MARK));
    match r {
        Ok(g) => {
            if a != b || mark != 0 {
                violation(
                    board,
                    format!(
                        "{who}: a plain Ok handed out a half-done update (a={a} b={b} inside={mark}): \
                         a holder's death was not reported"
                    ),
                );
            }
            g
        }
        Err(LockError::OwnerDied(mut g)) => {
            let Some(prev) = g.t_previous() else {
                violation(board, format!("{who}: OwnerDied without a previous owner"));
            };
            if prev.liveness() != Liveness::Dead {
                violation(board, format!("{who}: OwnerDied, but {prev:?} is not dead"));
            }
            if mark != 0 && !board.was_killed(mark) {
                violation(
                    board,
                    format!(
                        "{who}: OwnerDied from {prev:?} (its liveness file {}), but the inside mark \
                         names pid {mark}, never killed",
                        live_file(prev.token)
                    ),
                );
            }
            if a != b {
                if a != b.wrapping_add(1) {
                    violation(
                        board,
                        format!("{who}: a={a} b={b}: two updates in progress?"),
                    );
                }
                board.w(W_TORN).fetch_add(1, SeqCst);
                board.w(W_B).store(a, SeqCst);
            }
            board.w(W_MARK).store(0, SeqCst);
            board.w(W_DIED).fetch_add(1, SeqCst);
            board.w(W_LAST_DIED).store(prev.token, SeqCst);
            if let Err(e) = g.t_repair() {
                violation(board, format!("{who}: make_consistent failed: {e:?}"));
            }
            g
        }
        Err(e) => violation(board, format!("{who}: lock failed: {e:?}")),
    }
}

/// One update of the protected pair, with the holder's pid as the inside mark; `mid` runs
/// half-way (between `a` and `b`).
fn update(board: &Board, rng: &mut Rng, slot: u64, mid: impl FnOnce()) {
    board.w(W_MARK).store(u64::from(std::process::id()), SeqCst);
    let a = board.get(W_A);
    board.w(W_A).store(a + 1, SeqCst);
    let long = rng.percent(25);
    board
        .slot(slot, S_HOLDING)
        .store(if long { 3 } else { 2 }, SeqCst);
    if long {
        std::thread::sleep(Duration::from_micros(1000 + rng.below(2000)));
    } else {
        for _ in 0..rng.below(2000) {
            std::hint::spin_loop();
        }
    }
    mid();
    board.slot(slot, S_HOLDING).store(1, SeqCst);
    let b = board.get(W_B);
    board.w(W_B).store(b + 1, SeqCst);
    board.w(W_MARK).store(0, SeqCst);
}

fn lock_worker<L: TLock>(name: &str, board: &Board, slot: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    let lock = L::t_open(name).expect("open lock");
    let me = my_token();
    board.slot(slot, S_TOKEN).store(me, SeqCst);
    let fork_at = rng.below(4);
    let mut iter = 0u64;
    while !board.stopping() {
        let g = enter(board, lock.t_lock(T), "worker");
        board.slot(slot, S_HOLDING).store(1, SeqCst);
        // RLock: take more levels; the update happens at the innermost.
        let mut levels = Vec::new();
        if L::KIND == "rlock" {
            for _ in 0..rng.below(3) {
                match lock.t_lock(T) {
                    Ok(g) => levels.push(g),
                    Err(e) => violation(board, format!("recursive lock: {e:?}")),
                }
            }
            if lock.t_depth() != Some(1 + levels.len() as u32) {
                violation(
                    board,
                    format!(
                        "depth {:?} with {} levels",
                        lock.t_depth(),
                        1 + levels.len()
                    ),
                );
            }
        }
        update(board, &mut rng, slot, || {
            if iter == fork_at {
                fork_holding(&lock, &g, board, me);
            }
        });
        while let Some(l) = levels.pop() {
            drop(l);
        }
        board.slot(slot, S_HOLDING).store(0, SeqCst);
        drop(g);
        iter += 1;
        pace(&mut rng);
    }
}

/// Fork while holding the lock: the child drops its inherited guard, which must release
/// nothing, and cannot take the lock while we hold it. (If this worker is killed meanwhile,
/// the child may find the lock's holder dead: it then takes it over like anyone would.)
fn fork_holding<L: TLock>(lock: &L, guard: &L::G<'_>, board: &Board, me: u64) {
    let worker = std::process::id() as libc::pid_t;
    let code = fork_and(|| {
        let owner_is_parent = lock.t_owner().map(|o| o.token) == Some(me);
        drop(inherited(guard));
        let still = lock.t_owner().map(|o| o.token) == Some(me);
        match lock.t_try() {
            Err(LockError::WouldBlock) => i32::from(!owner_is_parent) | i32::from(!still) << 1,
            r => {
                // Only right if the worker died meanwhile: we are then one more process that
                // takes over from it. Repair and release as every taker does (never drop an
                // OwnerDied guard unrepaired), then make sure the worker is gone. It may be
                // between closing its files (which ends its liveness) and being reparented
                // away from us, so wait for that a little.
                drop(enter(board, r, "forked child"));
                let deadline = Instant::now() + T;
                // SAFETY: plain libc call.
                while unsafe { libc::getppid() } == worker {
                    if Instant::now() > deadline {
                        return 4; // it lives: we took the lock from a live holder
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                0
            }
        }
    });
    if code != 0 {
        violation(
            board,
            format!("forked child of a lock holder: code {code} (1: not the holder, 2: its drop released the lock, 4: it took the lock)"),
        );
    }
    if lock.t_owner().map(|o| o.token) != Some(me) {
        violation(
            board,
            "after the forked child dropped its guard, the lock is not ours".into(),
        );
    }
    board.w(W_FORKS).fetch_add(1, SeqCst);
}

fn lock_torture<L: TLock>() {
    const WORKERS: u64 = 3;
    let tag = format!("tort-{}", L::KIND);
    let rounds = rounds();
    let mut rng = Rng::new(seed_for(&tag));
    let (ln, bn) = (unique_name(&tag), unique_name(&format!("{tag}-b")));
    let _cleanup = Cleanup::new(&[&ln, &bn]);
    let lock = L::t_create(&ln);
    // The killed list holds at most two pids a round.
    let board = Board::create(&bn, 2 * rounds + 8, 0, 0);
    let spawn = |slot: u64, seed: u64| {
        spawn_child(
            "lock-worker",
            &[L::KIND, &ln, &bn, &slot.to_string(), &seed.to_string()],
        )
    };
    let mut kids: Vec<Child> = (0..WORKERS).map(|k| spawn(k, rng.next())).collect();
    let (mut held_kills, mut aimed_kills) = (0u64, 0u64);
    for round in 0..rounds {
        let first = rng.below(WORKERS);
        let mut victims = vec![first];
        if rng.percent(20) {
            victims.push((first + 1 + rng.below(WORKERS - 1)) % WORKERS);
        }
        // Aimed rounds kill a worker that is visibly in the middle of an update (and sleeping
        // there); the others kill wherever the worker happens to be.
        let aimed = round == 0 || rng.percent(40);
        if aimed {
            let s = board.slot(first, S_HOLDING);
            wait_for(
                "a worker in the middle of an update",
                &mut kids[first as usize],
                || s.load(SeqCst) == 3,
            );
            aimed_kills += 1;
        } else {
            std::thread::sleep(rng.micros(20_000));
        }
        // No holder is dead now (the last round's was taken over before we locked), so the
        // count of OwnerDied repairs changes only because of this round's kills.
        let died_before = board.get(W_DIED);
        let (mut tokens, mut held_any) = (Vec::new(), false);
        for (i, &v) in victims.iter().enumerate() {
            if i > 0 {
                std::thread::sleep(rng.micros(3000));
            }
            board.add_killed(kids[v as usize].id());
            kill_and_reap(&mut kids[v as usize], "lock worker", false);
            let held = board.slot(v, S_HOLDING).load(SeqCst) != 0;
            held_any |= held;
            held_kills += u64::from(held);
            tokens.push(board.slot(v, S_TOKEN).load(SeqCst));
        }
        // Every worker still running is alive to any other process.
        for k in 0..WORKERS {
            let token = board.slot(k, S_TOKEN).load(SeqCst);
            if token != 0 && !victims.contains(&k) {
                if let Some(st) = kids[k as usize].try_wait().expect("try_wait") {
                    panic!("round {round}: worker {k} exited: {}", describe(st));
                }
                let o = Owner {
                    token,
                    pid: kids[k as usize].id(),
                    thread: 0,
                };
                assert_eq!(
                    o.liveness(),
                    Liveness::Alive,
                    "round {round}: worker {o:?} is running (liveness file {})",
                    live_file(token)
                );
            }
        }
        // Compete for the lock like everyone else, and check what we find.
        let g = enter(&board, lock.t_lock(T), "test");
        let delta = board.get(W_DIED) - died_before;
        let last = board.get(W_LAST_DIED);
        assert!(
            delta <= victims.len() as u64,
            "round {round}: {delta} OwnerDied repairs for {} deaths",
            victims.len()
        );
        assert!(
            !held_any || delta >= 1,
            "round {round}: a worker died holding the lock, and nobody got OwnerDied"
        );
        assert!(
            delta == 0 || tokens.contains(&last),
            "round {round}: OwnerDied named token {last:#x}, not one of the killed {tokens:x?}"
        );
        if let Some(d) = lock.t_depth() {
            assert_eq!(d, 1, "round {round}: rlock depth after taking it");
        }
        drop(g);
        for &v in &victims {
            board.slot(v, S_HOLDING).store(0, SeqCst);
            board.slot(v, S_TOKEN).store(0, SeqCst);
            kids[v as usize] = spawn(v, rng.next());
        }
    }
    board.w(W_STOP).store(1, SeqCst);
    for k in &mut kids {
        wait_success(k, "lock worker", EXIT);
    }
    assert_eq!(board.get(W_VIOLATIONS), 0, "violations (see stderr)");
    // The lock recovered: a plain acquisition of a consistent state.
    let g = enter(&board, lock.t_lock(T), "final");
    assert!(lock.t_owner().is_some());
    drop(g);
    let (torn, died, forks) = (board.get(W_TORN), board.get(W_DIED), board.get(W_FORKS));
    eprintln!(
        "torture {tag}: {rounds} rounds, {aimed_kills} aimed kills, {held_kills} kills while holding, \
         {died} OwnerDied repairs, {torn} of them mid-update, {} updates, {forks} forks",
        board.get(W_A)
    );
    assert!(held_kills > 0, "no kill landed while the lock was held");
    assert!(torn > 0, "no kill landed in the middle of an update");
    assert!(forks > 0, "no worker forked");
    drop(lock);
    drop(board);
    assert_unlinked(&[&ln, &bn]);
}

#[test]
fn lock_holders_killed_at_random_points() {
    lock_torture::<Lock>();
}

#[test]
fn rlock_holders_killed_at_random_points() {
    lock_torture::<RLock>();
}

// ---------------------------------------------------------------------------------------------
// Queues.

/// A message: its tag (`epoch << 32 | seq`), a body derived from the tag, and a checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
#[repr(C)]
struct Msg {
    tag: u64,
    body: [u64; 5],
    sum: u64,
}

shmkit::shm_type!(Msg);

impl Msg {
    fn new(tag: u64) -> Msg {
        let body = std::array::from_fn(|i| mix(tag.wrapping_add(i as u64 + 1)));
        Msg {
            tag,
            body,
            sum: body.iter().fold(mix(tag), |a, b| a.rotate_left(5) ^ b),
        }
    }
    fn is_whole(&self) -> bool {
        *self == Msg::new(self.tag)
    }
}

fn tag(epoch: u64, seq: u64) -> u64 {
    (epoch << 32) | seq
}

fn split(tag: u64) -> (u64, u64) {
    (tag >> 32, tag & 0xffff_ffff)
}

/// A bytes-ring message: tag, checksum, and a body whose length and bytes derive from the tag.
fn frame(tag: u64) -> Vec<u8> {
    let len = (mix(tag ^ 0x5555) % (BODY_MAX + 1)) as usize;
    let mut body = Vec::with_capacity(len);
    let mut s = tag;
    while body.len() < len {
        s = mix(s);
        body.extend_from_slice(&s.to_le_bytes()[..(len - body.len()).min(8)]);
    }
    let sum = body.iter().fold(mix(tag), |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    });
    let mut v = tag.to_le_bytes().to_vec();
    v.extend_from_slice(&sum.to_le_bytes());
    v.extend_from_slice(&body);
    v
}

/// The tag of a whole frame, or the tag it claims (and `false`) if it is torn.
fn check_frame(b: &[u8]) -> (u64, bool) {
    if b.len() < 16 {
        return (u64::MAX, false);
    }
    let tag = u64::from_le_bytes(b[..8].try_into().unwrap());
    (tag, b == frame(tag))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QKind {
    Spsc,
    Mpmc,
    Bytes,
    MpmcBytes,
}

impl QKind {
    fn name(self) -> &'static str {
        match self {
            QKind::Spsc => "spsc",
            QKind::Mpmc => "mpmc",
            QKind::Bytes => "bytes",
            QKind::MpmcBytes => "mpmc-bytes",
        }
    }
    fn parse(s: &str) -> QKind {
        match s {
            "spsc" => QKind::Spsc,
            "mpmc" => QKind::Mpmc,
            "bytes" => QKind::Bytes,
            "mpmc-bytes" => QKind::MpmcBytes,
            _ => panic!("unknown queue kind {s}"),
        }
    }
}

enum Q {
    Spsc(spsc::Queue<Msg>),
    Mpmc(mpmc::Queue<Msg>),
    Bytes(bytes::Ring),
    MpmcBytes(mpmc_bytes::Queue),
}

enum Tx {
    Spsc(spsc::Producer<Msg>),
    Mpmc(mpmc::Producer<Msg>),
    Bytes(bytes::Producer),
    MpmcBytes(mpmc_bytes::Producer),
}

enum Rx {
    Spsc(spsc::Consumer<Msg>),
    Mpmc(mpmc::Consumer<Msg>),
    Bytes(bytes::Consumer),
    MpmcBytes(mpmc_bytes::Consumer),
}

/// Why a send or receive did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    /// Full (send) or empty (receive), from a polling call.
    Busy,
    Timeout,
    Disconnected,
    Corrupt,
    /// Bytes ring only: a message the ring cannot hold (never expected).
    TooLarge,
}

impl From<BytesPushError> for Fail {
    fn from(e: BytesPushError) -> Fail {
        match e {
            BytesPushError::Full => Fail::Busy,
            BytesPushError::Timeout => Fail::Timeout,
            BytesPushError::Disconnected => Fail::Disconnected,
            BytesPushError::Corrupt => Fail::Corrupt,
            BytesPushError::TooLarge { .. } => Fail::TooLarge,
        }
    }
}

impl<V> From<TryPushError<V>> for Fail {
    fn from(e: TryPushError<V>) -> Fail {
        match e {
            TryPushError::Full(_) => Fail::Busy,
            TryPushError::Disconnected(_) => Fail::Disconnected,
            TryPushError::Corrupt(_) => Fail::Corrupt,
        }
    }
}

impl<V> From<PushError<V>> for Fail {
    fn from(e: PushError<V>) -> Fail {
        match e {
            PushError::Timeout(_) => Fail::Timeout,
            PushError::Disconnected(_) => Fail::Disconnected,
            PushError::Corrupt(_) => Fail::Corrupt,
        }
    }
}

impl From<TryPopError> for Fail {
    fn from(e: TryPopError) -> Fail {
        match e {
            TryPopError::Empty => Fail::Busy,
            TryPopError::Disconnected => Fail::Disconnected,
            TryPopError::Corrupt => Fail::Corrupt,
        }
    }
}

impl From<PopError> for Fail {
    fn from(e: PopError) -> Fail {
        match e {
            PopError::Timeout => Fail::Timeout,
            PopError::Disconnected => Fail::Disconnected,
            PopError::Corrupt => Fail::Corrupt,
        }
    }
}

impl Q {
    fn create(kind: QKind, name: &str, capacity: u64) -> Q {
        let q = match kind {
            QKind::Spsc => Q::Spsc(spsc::Queue::create(name, capacity).unwrap()),
            QKind::Mpmc => Q::Mpmc(mpmc::Queue::create(name, capacity).unwrap()),
            QKind::Bytes => Q::Bytes(bytes::Ring::create(name, capacity).unwrap()),
            QKind::MpmcBytes => Q::MpmcBytes(mpmc_bytes::Queue::create(name, capacity).unwrap()),
        };
        match &q {
            Q::Spsc(q) => q.set_unlink_on_drop(true),
            Q::Mpmc(q) => q.set_unlink_on_drop(true),
            Q::Bytes(q) => q.set_unlink_on_drop(true),
            Q::MpmcBytes(q) => q.set_unlink_on_drop(true),
        }
        q
    }
    fn open(kind: QKind, name: &str) -> shmkit::Result<Q> {
        Ok(match kind {
            QKind::Spsc => Q::Spsc(spsc::Queue::open(name)?),
            QKind::Mpmc => Q::Mpmc(mpmc::Queue::open(name)?),
            QKind::Bytes => Q::Bytes(bytes::Ring::open(name)?),
            QKind::MpmcBytes => Q::MpmcBytes(mpmc_bytes::Queue::open(name)?),
        })
    }
    fn producer(&self) -> Result<Tx, AttachError> {
        Ok(match self {
            Q::Spsc(q) => Tx::Spsc(q.producer()?),
            Q::Mpmc(q) => Tx::Mpmc(q.producer()?),
            Q::Bytes(q) => Tx::Bytes(q.producer()?),
            Q::MpmcBytes(q) => Tx::MpmcBytes(q.producer()?),
        })
    }
    fn consumer(&self) -> Result<Rx, AttachError> {
        Ok(match self {
            Q::Spsc(q) => Rx::Spsc(q.consumer()?),
            Q::Mpmc(q) => Rx::Mpmc(q.consumer()?),
            Q::Bytes(q) => Rx::Bytes(q.consumer()?),
            Q::MpmcBytes(q) => Rx::MpmcBytes(q.consumer()?),
        })
    }
    fn stat(&self) -> QueueStat {
        match self {
            Q::Spsc(q) => q.stat(),
            Q::Mpmc(q) => q.stat(),
            Q::Bytes(q) => q.stat(),
            Q::MpmcBytes(q) => q.stat(),
        }
    }
}

impl Tx {
    /// The largest message this handle takes (byte queues; `None` for the typed ones).
    fn max_message(&self) -> Option<u64> {
        match self {
            Tx::Bytes(p) => Some(p.max_message()),
            Tx::MpmcBytes(p) => Some(p.max_message()),
            Tx::Spsc(_) | Tx::Mpmc(_) => None,
        }
    }

    /// Close this end (dropping it only detaches: SPEC §7.1.3). For MPMC the side closes when
    /// its last attached producer closes.
    fn close(&mut self) {
        match self {
            Tx::Spsc(p) => p.close(),
            Tx::Mpmc(p) => p.close(),
            Tx::Bytes(p) => p.close(),
            Tx::MpmcBytes(p) => p.close(),
        }
    }

    /// Send message `tag`: a polling call if `timeout` is `None`.
    fn send(&mut self, tag: u64, timeout: Option<Duration>) -> Result<(), Fail> {
        match (self, timeout) {
            (Tx::Spsc(p), None) => Ok(p.try_push(Msg::new(tag))?),
            (Tx::Spsc(p), Some(t)) => Ok(p.push_timeout(Msg::new(tag), t)?),
            (Tx::Mpmc(p), None) => Ok(p.try_push(Msg::new(tag))?),
            (Tx::Mpmc(p), Some(t)) => Ok(p.push_timeout(Msg::new(tag), t)?),
            (Tx::Bytes(p), None) => Ok(p.try_push(&frame(tag))?),
            (Tx::MpmcBytes(p), None) => Ok(p.try_push(&frame(tag))?),
            (Tx::MpmcBytes(p), Some(t)) => Ok(p.push_timeout(&frame(tag), t)?),
            (Tx::Bytes(p), Some(t)) => {
                // Write in place half of the time.
                let f = frame(tag);
                if tag % 2 == 0 {
                    Ok(p.push_timeout(&f, t)?)
                } else {
                    let mut w = p.reserve_timeout(f.len(), t)?;
                    w.copy_from_slice(&f);
                    w.commit();
                    Ok(())
                }
            }
        }
    }
}

impl Rx {
    /// Receive one message (polling if `timeout` is `None`) and hand its tag and whether it is
    /// whole to `seen`: after the pop (SPSC, MPMC), or before the record is released (bytes
    /// ring, so a consumer killed in between sees it again, as SPEC §7.3 says).
    fn recv(
        &mut self,
        timeout: Option<Duration>,
        seen: impl FnOnce(u64, bool),
    ) -> Result<(), Fail> {
        match self {
            Rx::Spsc(c) => {
                let m = match timeout {
                    None => c.try_pop()?,
                    Some(t) => c.pop_timeout(t)?,
                };
                seen(m.tag, m.is_whole());
            }
            Rx::Mpmc(c) => {
                let m = match timeout {
                    None => c.try_pop()?,
                    Some(t) => c.pop_timeout(t)?,
                };
                seen(m.tag, m.is_whole());
            }
            Rx::Bytes(c) => {
                let r = match timeout {
                    None => c.try_peek()?,
                    Some(t) => c.peek_timeout(t)?,
                };
                let (tag, whole) = check_frame(&r);
                seen(tag, whole);
                r.release();
            }
            Rx::MpmcBytes(c) => {
                let m = match timeout {
                    None => c.try_pop()?,
                    Some(t) => c.pop_timeout(t)?,
                };
                let (tag, whole) = check_frame(&m);
                seen(tag, whole);
            }
        }
        Ok(())
    }
}

/// The fork check of a queue end: the forked child's inherited handle is closed there (a call
/// fails with `Disconnected`) and dropping it changes nothing: afterwards this process still
/// holds its role, and (SPSC, bytes) the side is still open.
fn fork_queue_end<H>(
    board: &Board,
    q: &Q,
    h: &H,
    me: u64,
    producer: bool,
    call: impl Fn(&mut H) -> Result<(), Fail>,
) {
    let code = fork_and(|| {
        let mut mine = inherited(h);
        let r = call(&mut mine);
        drop(mine);
        i32::from(r != Err(Fail::Disconnected))
    });
    if code != 0 {
        violation(
            board,
            format!("forked child's inherited queue end: code {code}"),
        );
    }
    let st = q.stat();
    let (list, closed) = if producer {
        (&st.producers, st.producer_closed)
    } else {
        (&st.consumers, st.consumer_closed)
    };
    if !list.iter().any(|a| a.token == me)
        || (![
            shmkit::segment::Kind::MPMC_QUEUE,
            shmkit::segment::Kind::MPMC_BYTES,
        ]
        .contains(&st.kind)
            && closed)
    {
        violation(
            board,
            format!(
                "after the forked child dropped its inherited handle: {st:?} (our token {me:#x})"
            ),
        );
    }
    board.w(W_FORKS).fetch_add(1, SeqCst);
}

fn q_producer(kind: QKind, qname: &str, board: &Board, epoch: u64, n: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    let q = Q::open(kind, qname).expect("open queue");
    let mut tx = attach(board, "producer", || q.producer());
    let me = my_token();
    let fork_at = rng.below(n.min(16));
    for s in 0..n {
        let tag = tag(epoch, s);
        board.attempt(epoch).store(s + 1, SeqCst);
        let stuck = Instant::now() + STUCK;
        loop {
            if Instant::now() > stuck {
                violation(
                    board,
                    format!("producer {epoch}: could not send {s} for {STUCK:?}"),
                );
            }
            let timeout = (!rng.percent(20)).then(|| Duration::from_millis(1 + rng.below(30)));
            match tx.send(tag, timeout) {
                Ok(()) => break,
                Err(Fail::Busy) => std::thread::yield_now(),
                Err(Fail::Timeout) => {}
                // Every consumer is dead: the test restarts them.
                Err(Fail::Disconnected) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => violation(board, format!("producer {epoch}: send {s}: {e:?}")),
            }
        }
        board.done(epoch).store(s + 1, SeqCst);
        if s == fork_at {
            fork_queue_end(board, &q, &tx, me, true, |t| t.send(tag, None));
        }
        pace(&mut rng);
    }
    // Done: close (a drop would only detach, and the consumers would wait for more).
    tx.close();
}

fn q_consumer(kind: QKind, qname: &str, board: &Board, slot: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    let q = Q::open(kind, qname).expect("open queue");
    let mut rx = attach(board, "consumer", || q.consumer());
    let me = my_token();
    let fork_after = 1 + rng.below(8);
    let mut got = 0u64;
    loop {
        let timeout = (!rng.percent(20)).then(|| Duration::from_millis(1 + rng.below(30)));
        board.slot(slot, S_PENDING).store(1, SeqCst);
        let r = rx.recv(timeout, |tag, whole| {
            if !whole {
                violation(
                    board,
                    format!("consumer {slot}: torn message (claims tag {tag:#x})"),
                );
            }
            let c = board.slot(slot, S_COUNT).load(SeqCst);
            board.log(slot, c).store(tag, SeqCst);
            board.slot(slot, S_COUNT).store(c + 1, SeqCst);
        });
        board.slot(slot, S_PENDING).store(0, SeqCst);
        match r {
            Ok(()) => {
                got += 1;
                if got == fork_after {
                    fork_queue_end(board, &q, &rx, me, false, |r| r.recv(None, |_, _| ()));
                }
            }
            Err(Fail::Busy) => std::thread::yield_now(),
            Err(Fail::Timeout) => {}
            Err(Fail::Disconnected) => {
                // Drained, and every producer gone: the end, once the test says so.
                if board.stopping() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => violation(board, format!("consumer {slot}: {e:?}")),
        }
        pace(&mut rng);
    }
}

/// One consumer kill: the slot, how many messages its log held, and whether it was inside a
/// receive (between announcing it and logging it).
#[derive(Debug, Clone, Copy)]
struct ConsumerKill {
    slot: u64,
    count: u64,
    pending: bool,
}

/// SPSC and bytes ring: the one consumer's log, in order, against the producers' records
/// (`epochs[e] = (attempted, accepted)`).
///
/// The log must run through epochs and sequence numbers in increasing order. Between two
/// entries (and before the first, and after the last) nothing may be missing except, at the
/// log position where a consumer was killed while receiving, the one message it had taken
/// (SPSC: `pop` had returned it, the log did not hold it yet); and the end of an epoch may
/// lack the message its producer was sending when killed (`attempted = accepted + 1`). In
/// `redelivery` mode (bytes ring) a consumer death loses nothing, and the entry at its log
/// position may repeat the one before (read, logged, killed before the release).
fn verify_fifo(
    log: &[u64],
    epochs: &[(u64, u64)],
    kills: &[ConsumerKill],
    redelivery: bool,
) -> Result<(u64, u64), String> {
    let mut at_kill: HashMap<u64, u64> = HashMap::new();
    for k in kills.iter().filter(|k| k.pending) {
        *at_kill.entry(k.count).or_default() += 1;
    }
    let (mut ee, mut ss) = (0u64, 0u64);
    let (mut holes, mut repeats) = (0u64, 0u64);
    for i in 0..=log.len() {
        let (e, s) = match log.get(i) {
            Some(&t) => split(t),
            None => (epochs.len() as u64, 0),
        };
        if i < log.len() {
            let Some(&(attempted, _)) = epochs.get(e as usize) else {
                return Err(format!("log[{i}]: epoch {e} was never started"));
            };
            if s >= attempted {
                return Err(format!(
                    "log[{i}]: {e}:{s} was never sent ({attempted} attempted)"
                ));
            }
            if redelivery && i > 0 && log[i] == log[i - 1] {
                match at_kill.get_mut(&(i as u64)) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        repeats += 1;
                        continue;
                    }
                    _ => {
                        return Err(format!(
                            "log[{i}]: {e}:{s} delivered twice, no consumer death there"
                        ))
                    }
                }
            }
        }
        if (e, s) < (ee, ss) {
            return Err(format!(
                "log[{i}]: {e}:{s} after {ee}:{}: repeated or out of order",
                ss.wrapping_sub(1)
            ));
        }
        let skipped = if e == ee {
            s - ss
        } else {
            epochs[ee as usize].1.saturating_sub(ss)
                + (ee + 1..e).map(|k| epochs[k as usize].1).sum::<u64>()
                + s
        };
        let allowed = if redelivery {
            0
        } else {
            at_kill.get(&(i as u64)).copied().unwrap_or(0)
        };
        if skipped > allowed {
            return Err(format!(
                "before log[{i}] ({e}:{s}, after {ee}:{}): {skipped} message(s) missing, {allowed} allowed",
                ss.wrapping_sub(1)
            ));
        }
        holes += skipped;
        (ee, ss) = (e, s + 1);
    }
    Ok((holes, repeats))
}

/// MPMC: several consumers' logs. No message twice (across all of them), each consumer sees
/// each producer's messages in order, nothing never sent, and the messages missing below what
/// each producer sent (its accepted count, or further if more arrived) number at most the
/// consumer deaths inside a receive (a popped message lost with its consumer; SPEC §7.4: the
/// element being read is lost).
fn verify_mpmc(
    logs: &[Vec<u64>],
    epochs: &[(u64, u64)],
    kills: &[ConsumerKill],
) -> Result<u64, String> {
    let mut seen = HashSet::new();
    let mut per_epoch: HashMap<u64, (u64, u64)> = HashMap::new(); // count, top
    for (k, log) in logs.iter().enumerate() {
        let mut last: HashMap<u64, u64> = HashMap::new();
        for (i, &t) in log.iter().enumerate() {
            let (e, s) = split(t);
            let Some(&(attempted, _)) = epochs.get(e as usize) else {
                return Err(format!(
                    "consumer {k} log[{i}]: epoch {e} was never started"
                ));
            };
            if s >= attempted {
                return Err(format!("consumer {k} log[{i}]: {e}:{s} was never sent"));
            }
            if !seen.insert(t) {
                return Err(format!("consumer {k} log[{i}]: {e}:{s} delivered twice"));
            }
            if let Some(&p) = last.get(&e) {
                if s <= p {
                    return Err(format!("consumer {k} log[{i}]: {e}:{s} after {e}:{p}"));
                }
            }
            last.insert(e, s);
            let c = per_epoch.entry(e).or_default();
            c.0 += 1;
            c.1 = c.1.max(s + 1);
        }
    }
    let mut holes = 0;
    for (e, &(_, accepted)) in epochs.iter().enumerate() {
        let (count, top) = per_epoch.get(&(e as u64)).copied().unwrap_or((0, 0));
        holes += top.max(accepted) - count;
    }
    let allowed = kills.iter().filter(|k| k.pending).count() as u64;
    if holes > allowed {
        return Err(format!(
            "{holes} message(s) missing, at most {allowed} allowed (consumers killed while receiving)"
        ));
    }
    Ok(holes)
}

fn queue_torture(kind: QKind) {
    let tag = format!("tort-{}", kind.name());
    let rounds = rounds();
    let mut rng = Rng::new(seed_for(&tag));
    let (nprod, ncons) = match kind {
        QKind::Mpmc | QKind::MpmcBytes => (3u64, 2u64),
        _ => (1, 1),
    };
    let (qn, bn) = (unique_name(&tag), unique_name(&format!("{tag}-b")));
    let _cleanup = Cleanup::new(&[&qn, &bn]);
    let capacity = match kind {
        QKind::Bytes => BYTES_CAP,
        QKind::MpmcBytes => [1024u64, 2048, 4096][rng.below(3) as usize],
        _ => [2u64, 4, 8, 16, 64][rng.below(5) as usize],
    };
    let q = Q::create(kind, &qn, capacity);
    // At most two producers are restarted a round.
    let max_epochs = nprod + 2 * rounds + 2;
    let log_cap = max_epochs * MAX_N + 2 * rounds + 16;
    let board = Board::create(&bn, max_epochs, ncons, log_cap);
    let mut next_epoch = 0u64;
    let mut spawn_producer = |rng: &mut Rng| {
        let (e, n) = (next_epoch, 1 + rng.below(MAX_N));
        next_epoch += 1;
        let child = spawn_child(
            "q-producer",
            &[
                kind.name(),
                &qn,
                &bn,
                &e.to_string(),
                &n.to_string(),
                &rng.next().to_string(),
            ],
        );
        (child, e, n)
    };
    let spawn_consumer = |slot: u64, rng: &mut Rng| {
        spawn_child(
            "q-consumer",
            &[
                kind.name(),
                &qn,
                &bn,
                &slot.to_string(),
                &rng.next().to_string(),
            ],
        )
    };
    let mut producers: Vec<(Child, u64, u64)> =
        (0..nprod).map(|_| spawn_producer(&mut rng)).collect();
    let mut consumers: Vec<Child> = (0..ncons).map(|k| spawn_consumer(k, &mut rng)).collect();
    let mut kills = Vec::new();
    // Producer kills that landed before it had sent everything, and inside a send.
    let (mut mid_stream, mut in_send) = (0u64, 0u64);
    for _ in 0..rounds {
        let (kill_p, kill_c) = match rng.below(10) {
            0..=3 => (true, false),
            4..=7 => (false, true),
            _ => (true, true),
        };
        let p = rng.below(nprod) as usize;
        let k = rng.below(ncons);
        // Aimed rounds wait until the victim is busy: the producer has sent a few more
        // messages, or the consumer has received a few more (if any are coming).
        if rng.percent(60) {
            let (child, e, _) = &mut producers[p];
            let (attempt, count) = (board.attempt(*e), board.slot(k, S_COUNT));
            let (a0, c0) = (attempt.load(SeqCst), count.load(SeqCst));
            let (da, dc) = (1 + rng.below(20), rng.below(5));
            let until = Instant::now() + Duration::from_millis(500);
            while Instant::now() < until
                && child.try_wait().expect("try_wait").is_none()
                && (!kill_p || attempt.load(SeqCst) < a0 + da)
                && (!kill_c || count.load(SeqCst) < c0 + dc)
            {
                std::thread::sleep(Duration::from_micros(50));
            }
            std::thread::sleep(rng.micros(200));
        } else {
            std::thread::sleep(rng.micros(25_000));
        }
        if kill_p {
            let (child, e, n) = &mut producers[p];
            // A producer may have sent all its messages and exited already.
            kill_and_reap(child, "producer", true);
            let (attempted, accepted) =
                (board.attempt(*e).load(SeqCst), board.done(*e).load(SeqCst));
            mid_stream += u64::from(accepted < *n);
            in_send += u64::from(attempted == accepted + 1);
            producers[p] = spawn_producer(&mut rng);
        }
        if kill_c {
            kill_and_reap(&mut consumers[k as usize], "consumer", false);
            let pending = board.slot(k, S_PENDING).load(SeqCst) != 0;
            kills.push(ConsumerKill {
                slot: k,
                count: board.slot(k, S_COUNT).load(SeqCst),
                pending,
            });
            board.slot(k, S_PENDING).store(0, SeqCst);
            consumers[k as usize] = spawn_consumer(k, &mut rng);
        }
    }
    // The last producers send all their messages and close; then the consumers drain the
    // queue and stop at Disconnected.
    for (p, _, _) in &mut producers {
        wait_success(p, "producer", EXIT);
    }
    board.w(W_STOP).store(1, SeqCst);
    for c in &mut consumers {
        wait_success(c, "consumer", EXIT);
    }
    assert_eq!(board.get(W_VIOLATIONS), 0, "violations (see stderr)");
    let epochs: Vec<(u64, u64)> = (0..next_epoch)
        .map(|e| (board.attempt(e).load(SeqCst), board.done(e).load(SeqCst)))
        .collect();
    let logs: Vec<Vec<u64>> = (0..ncons)
        .map(|k| {
            let n = board.slot(k, S_COUNT).load(SeqCst);
            (0..n).map(|i| board.log(k, i).load(SeqCst)).collect()
        })
        .collect();
    let outcome = match kind {
        QKind::Mpmc | QKind::MpmcBytes => verify_mpmc(&logs, &epochs, &kills).map(|h| (h, 0)),
        _ => {
            let only: Vec<ConsumerKill> = kills.iter().copied().filter(|k| k.slot == 0).collect();
            verify_fifo(&logs[0], &epochs, &only, kind == QKind::Bytes)
        }
    };
    let sent: u64 = epochs.iter().map(|e| e.1).sum();
    let received: usize = logs.iter().map(Vec::len).sum();
    let (holes, repeats) = outcome.unwrap_or_else(|e| {
        panic!("{tag}: {e}\nepochs (attempted, accepted): {epochs:?}\nconsumer kills: {kills:?}")
    });
    let forks = board.get(W_FORKS);
    eprintln!(
        "torture {tag}: capacity {capacity}, {rounds} rounds, {next_epoch} producer incarnations ({mid_stream} killed mid-stream, \
         {in_send} inside a send), {} consumer kills ({} while receiving), {sent} accepted, {received} received, \
         {holes} lost with a killed consumer, {repeats} redelivered, {forks} forks",
        kills.len(),
        kills.iter().filter(|k| k.pending).count()
    );
    assert!(forks > 0, "nobody forked");
    drop(q);
    drop(board);
    assert_unlinked(&[&qn, &bn]);
}

#[test]
fn spsc_producers_and_consumers_killed_at_random_points() {
    queue_torture(QKind::Spsc);
}

#[test]
fn mpmc_producers_and_consumers_killed_at_random_points() {
    queue_torture(QKind::Mpmc);
}

#[test]
fn bytes_ring_producers_and_consumers_killed_at_random_points() {
    queue_torture(QKind::Bytes);
}

/// SPEC §7.5: a producer killed mid-push loses at most its own message (never accepted), a
/// consumer killed mid-pop at most the one it was taking; nothing is delivered twice, and
/// each producer's messages arrive at each consumer in order.
#[test]
fn mpmc_bytes_producers_and_consumers_killed_at_random_points() {
    queue_torture(QKind::MpmcBytes);
}

/// A dead process's owner word: a liveness token whose file does not exist.
const GHOST: u64 = 0x2bad_dead_0000_0001;

/// Regression: an MPMC consumer killed while it skips a dead producer's position, after its
/// `head` CAS and before it frees the slot for the next lap (`recover`: stamp `pos` →
/// `pos + capacity`), left the slot saying "position `pos`, not yet published" with `head`
/// already past `pos`. Producers a lap later took that for a previous-lap producer still at
/// work and waited for consumers to resolve it, but no consumer ever looks at `pos` again:
/// every push timed out, for good, and consumers that caught up reported `Corrupt`. The
/// state is built by hand (SPEC §7.4 layout): the two deaths fall in windows of a few
/// instructions, which random kills almost never hit.
#[test]
fn mpmc_consumer_killed_while_skipping_a_dead_producers_position() {
    let name = unique_name("tort-mpmc-skip");
    let _cleanup = Cleanup::new(&[&name]);
    let q = mpmc::Queue::<u64>::create(&name, 4).unwrap();
    q.set_unlink_on_drop(true);
    let mut tx = q.producer().unwrap();
    let mut rx = q.consumer().unwrap();
    tx.push_timeout(10, T).unwrap();
    assert_eq!(rx.pop_timeout(T), Ok(10));
    // Payload offsets (SPEC §7.4); the payload starts at offset 128 of the object. Our own
    // handles hold claim slot 0 of each side; the dead ones hold slot 5.
    let raw = Segment::options().raw(true).open(&name).unwrap();
    let at = |payload: u64| raw.atomic_u64(128 + payload).unwrap();
    let (tail, head, pclaim, cclaim) = (128, 256, 384 + 128 * 5, 2432 + 128 * 5);
    let stamp1 = 4480 + 16; // slot 1: stamp, then the u64 (slot size 16)
                            // A producer claimed position 1 (inflight, then the tail CAS) and was killed before it
                            // published.
    at(pclaim).store(GHOST, SeqCst);
    at(pclaim + 8).store(1, SeqCst);
    at(tail).store(2, SeqCst);
    // A consumer found position 1 in flight with a dead claimer and skipped it: it recorded 1
    // as its in-flight position, moved head past it, and was killed before its stamp store.
    at(cclaim).store(GHOST + 1, SeqCst);
    at(cclaim + 8).store(1, SeqCst);
    at(head).store(2, SeqCst);
    assert_eq!(at(stamp1).load(SeqCst), 1);
    // The queue goes on: the dead producer's element is lost (it never existed), nothing else,
    // and nothing blocks past the lap.
    for i in 0..12u64 {
        if i == 3 {
            // At position 5 = 1 + capacity, before any producer got there: the slot still
            // says "position 1, unpublished". A consumer finds the queue empty.
            assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
            assert_eq!(
                rx.pop_timeout(Duration::from_millis(50)),
                Err(PopError::Timeout)
            );
        }
        assert_eq!(
            tx.push_timeout(100 + i, Duration::from_secs(2)),
            Ok(()),
            "push {i}"
        );
        assert_eq!(
            rx.pop_timeout(Duration::from_secs(2)),
            Ok(100 + i),
            "pop {i}"
        );
    }
    drop((tx, rx, q));
    assert_unlinked(&[&name]);
}

// ---------------------------------------------------------------------------------------------
// Hostile writer.

/// Run `f`, a call bounded by `timeout` (`None`: a polling call), and require it to return
/// within its timeout plus [`HANG_MARGIN`]: a hang detector, not a performance bound.
fn timed<R>(board: &Board, what: &str, timeout: Option<Duration>, f: impl FnOnce() -> R) -> R {
    let limit = timeout.unwrap_or_default() + HANG_MARGIN;
    let slot = VICTIM_SLOT.get();
    board.slot(slot, S_CALL_START).store(mono_ns(), SeqCst);
    board
        .slot(slot, S_CALL_LIMIT)
        .store(limit.as_nanos() as u64, SeqCst);
    let t0 = Instant::now();
    let r = f();
    let took = t0.elapsed();
    board.slot(slot, S_CALL_LIMIT).store(0, SeqCst);
    if took > timeout.unwrap_or_default() + HANG_MARGIN {
        violation(
            board,
            format!("{what} took {took:?} with a timeout of {timeout:?}: a hang"),
        );
    }
    board.w(W_CALLS).fetch_add(1, SeqCst);
    r
}

/// Victim threads per victim process.
const VICTIMS_PER_PROCESS: u64 = 2;

thread_local! {
    /// The board slot of this victim thread (see [`run_victims`]).
    static VICTIM_SLOT: std::cell::Cell<u64> = const { std::cell::Cell::new(MAX_SLOTS - 1) };
}

fn mono_ns() -> u64 {
    // SAFETY: `timespec` is plain data; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock and a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Run `body(0)` and `body(1)` on two threads, with a watchdog that aborts the process (so
/// the test sees it die of SIGABRT, after a VIOLATION line) when a call made through
/// [`timed`] is still running past its timeout plus [`HANG_MARGIN`]: a hang inside the library
/// shows within seconds, not at the test's final timeout.
///
/// `base` is this process's first board slot (victim processes of one test use distinct
/// slots, [`VICTIMS_PER_PROCESS`] each).
fn run_victims(board: &Board, base: u64, body: impl Fn(u64) + Sync) {
    /// Counts a victim thread as finished, also when it panics (a violation), so that the
    /// watchdog stops and the panic reaches the test as the process's exit status.
    struct Finished<'a>(&'a AtomicU64, &'a Board);
    impl Drop for Finished<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
            self.1.w(W_DONE).fetch_add(1, SeqCst);
        }
    }
    let done = AtomicU64::new(0);
    std::thread::scope(|s| {
        for k in 0..VICTIMS_PER_PROCESS {
            let (body, done) = (&body, &done);
            s.spawn(move || {
                let _finished = Finished(done, board);
                VICTIM_SLOT.set(base + k);
                body(k);
            });
        }
        s.spawn(|| {
            while done.load(SeqCst) < VICTIMS_PER_PROCESS {
                std::thread::sleep(Duration::from_millis(20));
                for k in base..base + VICTIMS_PER_PROCESS {
                    let limit = board.slot(k, S_CALL_LIMIT).load(SeqCst);
                    let started = board.slot(k, S_CALL_START).load(SeqCst);
                    if limit != 0 && mono_ns().saturating_sub(started) > limit {
                        board.w(W_VIOLATIONS).fetch_add(1, SeqCst);
                        eprintln!(
                            "TORTURE VIOLATION (pid {}): victim thread {k} is stuck in a call \
                             past its timeout + {HANG_MARGIN:?}: a hang",
                            std::process::id()
                        );
                        std::process::abort();
                    }
                }
            }
        });
    });
}

fn error(board: &Board) {
    board.w(W_ERRORS).fetch_add(1, SeqCst);
}

/// The victim's hard deadline, in case the test dies and never says stop.
fn victim_deadline(dur: Duration) -> Instant {
    Instant::now() + dur + Duration::from_secs(120)
}

fn lock_victim<L: TLock>(name: &str, board: &Board, dur: Duration, seed: u64) {
    let hard = victim_deadline(dur);
    run_victims(board, 0, |t| {
        let mut rng = Rng::new(seed ^ t);
        let mut lock = Some(L::t_open(name).expect("open lock"));
        board.w(W_READY).fetch_add(1, SeqCst);
        while !board.stopping() && Instant::now() < hard {
            if rng.percent(2) {
                // Re-open: the magic may be gone by now (an error, not a panic).
                lock = timed(board, "open", Some(OPEN), || L::t_open(name)).ok();
                if lock.is_none() {
                    error(board);
                }
            }
            let Some(l) = &lock else { continue };
            let _ = (l.t_owner(), l.t_depth());
            let timeout = Duration::from_millis(rng.below(20));
            let r = if rng.percent(30) {
                timed(board, "try_lock", None, || l.t_try())
            } else {
                timed(board, "lock_timeout", Some(timeout), || l.t_lock(timeout))
            };
            match r {
                Ok(g) => {
                    let mut levels = Vec::new();
                    if L::KIND == "rlock" {
                        for _ in 0..rng.below(3) {
                            match timed(board, "relock", Some(timeout), || l.t_lock(timeout)) {
                                Ok(g) => levels.push(g),
                                Err(_) => error(board),
                            }
                        }
                    }
                    // Now and then hold it for longer than the other thread's timeouts.
                    if rng.percent(10) {
                        std::thread::sleep(rng.micros(30_000));
                    } else {
                        for _ in 0..rng.below(500) {
                            std::hint::spin_loop();
                        }
                    }
                    drop(levels);
                    if rng.percent(20) {
                        if timed(board, "release", None, || l.t_leak_release(g)).is_err() {
                            error(board);
                        }
                    } else {
                        drop(g);
                    }
                }
                Err(LockError::OwnerDied(mut g)) => {
                    error(board);
                    if rng.percent(50) && g.t_repair().is_err() {
                        error(board);
                    }
                    drop(g);
                }
                Err(_) => error(board),
            }
            if rng.percent(10) {
                std::thread::sleep(rng.micros(200));
            }
        }
    });
}

/// One side of a queue under attack: keep calling its operations with short timeouts; on an
/// error, sometimes drop the handle and attach again (or reopen the queue by name).
fn queue_victim_side(kind: QKind, name: &str, board: &Board, producer: bool, seed: u64) {
    let hard = victim_deadline(Duration::ZERO);
    let mut rng = Rng::new(seed);
    let mut q = Some(Q::open(kind, name).expect("open queue"));
    let mut tx: Option<Tx> = None;
    let mut rx: Option<Rx> = None;
    let mut seq = 0u64;
    let mut ready = false;
    // The largest message of the queue as created (the first attach, before the attack):
    // a handle of a reopen may have read a capacity the hostile writer forged (a smaller
    // power of two passes every check), whose smaller limit makes `TooLarge` a right answer.
    let mut created_max: Option<u64> = None;
    while !board.stopping() && Instant::now() < hard {
        if rng.percent(1) {
            q = timed(board, "open", Some(OPEN), || Q::open(kind, name)).ok();
            if q.is_none() {
                error(board);
            }
        }
        if let Some(q) = &q {
            if rng.percent(2) {
                let _ = timed(board, "stat", None, || q.stat());
            }
        }
        let attached = if producer { tx.is_some() } else { rx.is_some() };
        if !attached {
            let Some(q) = &q else { continue };
            let r = if producer {
                timed(board, "attach producer", None, || q.producer()).map(|t| {
                    created_max = created_max.or(t.max_message());
                    tx = Some(t)
                })
            } else {
                timed(board, "attach consumer", None, || q.consumer()).map(|r| rx = Some(r))
            };
            if r.is_err() {
                error(board);
                std::thread::sleep(rng.micros(500));
            } else if !ready {
                ready = true;
                board.w(W_READY).fetch_add(1, SeqCst);
            }
            continue;
        }
        let timeout = (!rng.percent(30)).then(|| Duration::from_millis(rng.below(20)));
        let r = if producer {
            let t = tx.as_mut().unwrap();
            seq += 1;
            timed(board, "send", timeout, || {
                hostile_send(t, &mut rng, seq, timeout)
            })
        } else {
            let r = rx.as_mut().unwrap();
            timed(board, "receive", timeout, || {
                hostile_recv(r, &mut rng, timeout)
            })
        };
        if let Err(e) = r {
            let genuine = tx.as_ref().and_then(Tx::max_message) == created_max;
            if e == Fail::TooLarge && genuine {
                violation(
                    board,
                    "a message within max_message was refused as too large".into(),
                );
            }
            if e != Fail::Busy && e != Fail::Timeout {
                error(board);
            }
            if matches!(e, Fail::Disconnected | Fail::Corrupt) && rng.percent(30) {
                tx = None;
                rx = None;
            }
        }
        if rng.percent(10) {
            std::thread::sleep(rng.micros(200));
        }
    }
}

/// Any send operation of the queue's kind (messages are not checked: the writer may change
/// them).
fn hostile_send(
    t: &mut Tx,
    rng: &mut Rng,
    seq: u64,
    timeout: Option<Duration>,
) -> Result<(), Fail> {
    match t {
        Tx::Spsc(p) if rng.percent(25) => {
            let batch: Vec<Msg> = (0..1 + rng.below(8)).map(|i| Msg::new(seq + i)).collect();
            match timeout {
                None => p.try_push_slice(&batch).map(drop).map_err(Fail::from),
                Some(t) => p.push_slice_timeout(&batch, t).map_err(Fail::from),
            }
        }
        Tx::Mpmc(p) if rng.percent(25) => {
            let batch: Vec<Msg> = (0..1 + rng.below(8)).map(|i| Msg::new(seq + i)).collect();
            p.try_push_slice(&batch).map(drop).map_err(Fail::from)
        }
        Tx::Bytes(p) if rng.percent(30) => {
            // Reserve the most, commit a part or abandon it.
            let max = p.max_message() as usize;
            let n = rng.below(max as u64 + 1) as usize;
            let mut w = match timeout {
                None => p.try_reserve(n)?,
                Some(t) => p.reserve_timeout(n, t)?,
            };
            w.fill(0xa5);
            if rng.percent(80) {
                let m = rng.below(n as u64 + 1) as usize;
                w.commit_len(m);
            }
            Ok(())
        }
        t => t.send(seq, timeout),
    }
}

/// Any receive operation of the queue's kind.
fn hostile_recv(r: &mut Rx, rng: &mut Rng, timeout: Option<Duration>) -> Result<(), Fail> {
    match r {
        Rx::Spsc(c) if rng.percent(25) => {
            let mut out = [Msg::new(0); 8];
            match timeout {
                None => c.try_pop_slice(&mut out).map(drop).map_err(Fail::from),
                Some(t) => c
                    .pop_slice_timeout(&mut out, t)
                    .map(drop)
                    .map_err(Fail::from),
            }
        }
        Rx::Mpmc(c) if rng.percent(25) => {
            let mut out = [Msg::new(0); 8];
            c.try_pop_slice(&mut out).map(drop).map_err(Fail::from)
        }
        Rx::Bytes(c) if rng.percent(30) => {
            // Peek, read every byte, and release or keep it.
            let g = match timeout {
                None => c.try_peek()?,
                Some(t) => c.peek_timeout(t)?,
            };
            let sum = g.iter().fold(0u64, |a, &b| a.wrapping_add(u64::from(b)));
            std::hint::black_box(sum);
            if rng.percent(70) {
                g.release();
            }
            Ok(())
        }
        r => r.recv(timeout, |_, _| ()),
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile writer vs the other sync objects and the typed cells.

/// An object of a hostile test other than the queues and locks.
enum Obj {
    Event(Event),
    Semaphore(Semaphore),
    Bounded(BoundedSemaphore),
    Condition(Condition),
    Barrier(Barrier),
    Value(Value<u64>),
    Array(Array<u64>),
}

/// Permits of the hostile tests' semaphores (the bounded one's maximum).
const HOSTILE_PERMITS: u32 = 3;

fn cell_mode(kind: &str) -> CellMode {
    let mode = kind.split_once('-').map_or("", |(_, m)| m);
    CellMode::from_name(mode).unwrap_or_else(|| panic!("unknown cell kind {kind}"))
}

impl Obj {
    fn create(kind: &str, name: &str) -> Obj {
        match kind {
            "event" => Obj::Event(Event::options().unlink_on_drop(true).create(name).unwrap()),
            "semaphore" => Obj::Semaphore(
                Semaphore::options()
                    .unlink_on_drop(true)
                    .create(name, HOSTILE_PERMITS)
                    .unwrap(),
            ),
            "bounded-semaphore" => Obj::Bounded(
                BoundedSemaphore::options()
                    .unlink_on_drop(true)
                    .create(name, HOSTILE_PERMITS)
                    .unwrap(),
            ),
            "condition" => Obj::Condition(
                Condition::options()
                    .unlink_on_drop(true)
                    .create(name)
                    .unwrap(),
            ),
            "barrier" => Obj::Barrier(
                Barrier::options()
                    .unlink_on_drop(true)
                    .create(name, HOSTILE_PARTIES)
                    .unwrap(),
            ),
            k if k.starts_with("value-") => Obj::Value(
                Value::<u64>::options()
                    .cell_mode(cell_mode(k))
                    .unlink_on_drop(true)
                    .create(name, 0)
                    .unwrap(),
            ),
            k => Obj::Array(
                Array::<u64>::options()
                    .cell_mode(cell_mode(k))
                    .unlink_on_drop(true)
                    .create(name, HOSTILE_ARRAY_LEN as usize)
                    .unwrap(),
            ),
        }
    }

    fn open(kind: &str, name: &str) -> shmkit::Result<Obj> {
        Ok(match kind {
            "event" => Obj::Event(Event::open(name)?),
            "semaphore" => Obj::Semaphore(Semaphore::open(name)?),
            "bounded-semaphore" => Obj::Bounded(BoundedSemaphore::open(name)?),
            "condition" => Obj::Condition(Condition::open(name)?),
            "barrier" => Obj::Barrier(Barrier::open(name)?),
            k if k.starts_with("value-") => Obj::Value(Value::open(name)?),
            _ => Obj::Array(Array::open(name)?),
        })
    }

    /// One random call (or a few), each through [`timed`]; errors other than the expected
    /// `Timeout`/`WouldBlock` (and their kin) are counted with [`error`].
    fn exercise(&self, board: &Board, rng: &mut Rng) {
        let t = Duration::from_millis(rng.below(20));
        match self {
            Obj::Event(e) => event_call(e, board, rng, t),
            Obj::Semaphore(s) => semaphore_call(s, board, rng, t),
            Obj::Bounded(s) => semaphore_call(s, board, rng, t),
            Obj::Condition(c) => condition_call(c, board, rng, t),
            Obj::Barrier(b) => barrier_call(b, board, rng),
            Obj::Value(v) => value_call(v, board, rng, t),
            Obj::Array(a) => array_call(a, board, rng, t),
        }
    }
}

/// Board word: sets made by the event's victims (a generation above it was written by the
/// hostile writer).
const W_SETS: u64 = W_A;

fn event_call(e: &Event, board: &Board, rng: &mut Rng, t: Duration) {
    match rng.below(6) {
        0 => {
            board.w(W_SETS).fetch_add(1, SeqCst);
            timed(board, "set", None, || e.set());
        }
        1 => timed(board, "clear", None, || e.clear()),
        2 => {
            let _ = timed(board, "try_wait", None, || e.try_wait());
        }
        _ => {
            let _ = timed(board, "wait_timeout", Some(t), || e.wait_timeout(t));
        }
    }
    // Every bit pattern is a valid event; what the writer did shows as a generation beyond
    // anything the victims' sets made.
    let _ = e.is_set();
    if u64::from(e.generation()) > board.get(W_SETS) {
        error(board);
    }
}

fn semaphore_call(s: &SemaphoreState, board: &Board, rng: &mut Rng, t: Duration) {
    let r = match rng.below(5) {
        0 => timed(board, "try_acquire", None, || s.try_acquire()),
        1 | 2 => timed(board, "acquire_timeout", Some(t), || s.acquire_timeout(t)),
        // Releases that were never acquired too: a bounded semaphore at its maximum refuses.
        _ => timed(board, "release", None, || s.release()),
    };
    match r {
        Ok(()) | Err(SemaphoreError::WouldBlock | SemaphoreError::Timeout) => {}
        Err(SemaphoreError::TooManyReleases { max }) if max <= SEM_VALUE_MAX => {}
        Err(_) => error(board),
    }
    let _ = (s.value(), s.max_value(), s.initial_value(), s.sleepers());
}

fn condition_call(c: &ConditionState, board: &Board, rng: &mut Rng, t: Duration) {
    let g = match timed(board, "lock_timeout", Some(t), || c.lock_timeout(t)) {
        Ok(g) => g,
        Err(LockError::OwnerDied(mut g)) => {
            error(board);
            let _ = g.make_consistent();
            g
        }
        Err(LockError::Timeout) => return,
        Err(_) => return error(board),
    };
    let t2 = Duration::from_millis(rng.below(20));
    let r = match rng.below(5) {
        0 => timed(board, "wait_timeout", Some(t2), || c.wait_timeout(g, t2)),
        1 => {
            let mut looks = 0;
            let enough = rng.below(4);
            timed(board, "wait_for_timeout", Some(t2), || {
                c.wait_for_timeout(
                    g,
                    || {
                        looks += 1;
                        looks > enough
                    },
                    t2,
                )
            })
        }
        2 => {
            let n = match rng.below(3) {
                0 => 1,
                1 => u32::MAX,
                _ => rng.next() as u32,
            };
            timed(board, "notify", None, || c.notify(&g, n));
            Ok(g)
        }
        _ => {
            timed(board, "notify_all", None, || c.notify_all(&g));
            Ok(g)
        }
    };
    match r {
        Ok(_) | Err(WaitTimeoutError::Timeout(_)) => {}
        Err(WaitTimeoutError::Lock(LockError::OwnerDied(mut g))) => {
            error(board);
            let _ = g.make_consistent();
        }
        Err(WaitTimeoutError::Lock(_)) => error(board),
    }
    let _ = (c.sequence(), c.sleepers());
}

fn barrier_call(b: &BarrierState, board: &Board, rng: &mut Rng) {
    // Long enough for the four parties to meet now and then.
    let t = Duration::from_millis(rng.below(50));
    let r = match rng.below(20) {
        0 => {
            timed(board, "abort", None, || b.abort());
            Ok(0)
        }
        1 | 2 => {
            timed(board, "reset", None, || b.reset());
            Ok(0)
        }
        3..=5 => timed(board, "wait_with_timeout", Some(t), || {
            b.wait_with_timeout(|| Ok::<(), BarrierError>(()), t)
        }),
        _ => timed(board, "wait_timeout", Some(t), || b.wait_timeout(t)),
    };
    match r {
        // The writer may change `parties` (up to its maximum): an index is below that.
        Ok(i) if i >= MAX_PARTIES => violation(board, format!("arrival index {i}")),
        Ok(_) | Err(BarrierError::Broken | BarrierError::Timeout) => {}
        Err(BarrierError::Corrupt(_) | BarrierError::Parties(_)) => error(board),
    }
    if b.is_broken() && rng.percent(30) {
        b.reset();
    }
    let _ = (b.n_waiting(), b.parties(), b.generation());
}

/// Count a cell call's error (other than `Timeout`/`WouldBlock`); repair a lock it left
/// owner-died is not needed: cell calls report `OwnerDied` without a guard.
fn cell_result<R>(board: &Board, r: &shmkit::Result<R>) {
    if let Err(e) = r {
        if !matches!(e, shmkit::Error::Timeout | shmkit::Error::WouldBlock) {
            error(board);
        }
    }
}

/// A cell call through [`timed`], its error counted by [`cell_result`]; whether it succeeded.
fn cell_call<R>(
    board: &Board,
    what: &str,
    timeout: Option<Duration>,
    f: impl FnOnce() -> shmkit::Result<R>,
) -> bool {
    let r = timed(board, what, timeout, f);
    cell_result(board, &r);
    r.is_ok()
}

/// Values the victims store in atomic cells (anything above was written by the hostile
/// writer).
const VICTIM_MAX: u64 = 1 << 40;

fn value_call(v: &Value<u64>, board: &Board, rng: &mut Rng, t: Duration) {
    let x = rng.below(1000);
    if v.cell_mode() == CellMode::Atomic {
        let r = match rng.below(6) {
            0 => timed(board, "load", None, || v.load()),
            1 => timed(board, "store", None, || v.store(x).map(|()| x)),
            2 => timed(board, "fetch_add", None, || v.fetch_add(x)),
            3 => timed(board, "fetch_sub", None, || v.fetch_sub(x)),
            4 => timed(board, "swap", None, || v.swap(x)),
            _ => timed(board, "compare_exchange", None, || {
                v.compare_exchange(x, x + 1)
                    .map(|r| r.unwrap_or_else(|c| c))
            }),
        };
        cell_result(board, &r);
        // fetch_sub may wrap below zero; the victims never make a value in the middle.
        if let Ok(seen) = r {
            if (VICTIM_MAX..u64::MAX - VICTIM_MAX).contains(&seen) {
                error(board);
            }
        }
        return;
    }
    let seqlock = v.cell_mode() == CellMode::Seqlock;
    let op = rng.below(if seqlock { 8 } else { 6 });
    if op == 5 {
        match timed(board, "lock_timeout", Some(t), || v.lock_timeout(t)) {
            Ok(g) => match g.get() {
                Ok(y) => g.set(y.wrapping_add(1)),
                // A seqlock writer died mid-write: a whole-value set recovers the cell.
                Err(_) => {
                    error(board);
                    g.set(0);
                }
            },
            Err(LockError::OwnerDied(mut g)) => {
                error(board);
                g.set(0);
                let _ = g.make_consistent();
            }
            Err(LockError::Timeout) => {}
            Err(_) => error(board),
        }
        return;
    }
    match op {
        0 => cell_call(board, "try_get", None, || v.try_get()),
        1 => cell_call(board, "get_timeout", Some(t), || v.get_timeout(t)),
        2 => cell_call(board, "set_timeout", Some(t), || v.set_timeout(x, t)),
        3 => cell_call(board, "try_set", None, || v.try_set(x)),
        4 => cell_call(board, "update_timeout", Some(t), || {
            v.update_timeout(|y| y.wrapping_add(1), t)
        }),
        6 => cell_call(board, "try_wait_changed", None, || {
            v.try_wait_changed(rng.below(8))
        }),
        _ => {
            let last = v.sequence();
            cell_call(board, "wait_changed_timeout", Some(t), || {
                v.wait_changed_timeout(last, t)
            })
        }
    };
}

fn array_call(a: &Array<u64>, board: &Board, rng: &mut Rng, t: Duration) {
    let len = HOSTILE_ARRAY_LEN;
    let i = rng.below(len) as usize;
    let x = rng.below(1000);
    let start = rng.below(len + 1) as usize;
    let end = start + rng.below(len + 1 - start as u64) as usize;
    // Now and then a range past the end: always an error, never an access outside.
    let (start, end) = if rng.percent(5) {
        (start, len as usize + 1 + rng.below(3) as usize)
    } else {
        (start, end)
    };
    let out_of_range = end > len as usize;
    let atomic = a.cell_mode() == CellMode::Atomic;
    let seqlock = a.cell_mode() == CellMode::Seqlock;
    if atomic && rng.percent(50) {
        let r = match rng.below(4) {
            0 => timed(board, "load", None, || a.load(i)),
            1 => timed(board, "store", None, || a.store(i, x).map(|()| x)),
            2 => timed(board, "fetch_add", None, || a.fetch_add(i, x)),
            _ => timed(board, "compare_exchange", None, || {
                a.compare_exchange(i, x, x + 1)
                    .map(|r| r.unwrap_or_else(|c| c))
            }),
        };
        cell_result(board, &r);
        if let Ok(seen) = r {
            if seen >= VICTIM_MAX {
                error(board);
            }
        }
        return;
    }
    let data: Vec<u64> = (start..end).map(|k| k as u64 + x).collect();
    // Whether a call over `start..end` succeeded (then the range was inside the array).
    let ranged = match rng.below(if seqlock { 9 } else { 7 }) {
        0 => cell_call(board, "try_read", None, || a.try_read(start..end)),
        1 => cell_call(board, "read_timeout", Some(t), || {
            a.read_timeout(start..end, t)
        }),
        2 => cell_call(board, "write_timeout", Some(t), || {
            a.write_timeout(start, &data, t)
        }),
        3 => {
            cell_call(board, "get_timeout", Some(t), || a.get_timeout(i, t));
            false
        }
        4 => {
            cell_call(board, "set_timeout", Some(t), || a.set_timeout(i, x, t));
            false
        }
        5 if !atomic => {
            cell_call(board, "with_lock_timeout", Some(t), || {
                a.with_lock_timeout(|s| s.iter_mut().for_each(|e| *e = e.wrapping_add(1)), t)
            });
            false
        }
        5 | 6 => {
            let mut out = vec![0u64; end.saturating_sub(start)];
            cell_call(board, "read_into_timeout", Some(t), || {
                a.read_into_timeout(start, &mut out, t)
            })
        }
        7 => {
            cell_call(board, "try_wait_changed", None, || {
                a.try_wait_changed(rng.below(8))
            });
            false
        }
        _ => {
            let last = a.sequence();
            cell_call(board, "wait_changed_timeout", Some(t), || {
                a.wait_changed_timeout(last, t)
            });
            false
        }
    };
    if ranged && out_of_range {
        violation(
            board,
            format!("range {start}..{end} of {len} elements was accepted"),
        );
    }
}

/// A victim of a hostile writer aimed at a sync object or a cell: keep calling its operations
/// with short timeouts; now and then reopen it (the checks at open may refuse it by then).
fn obj_victim(kind: &str, name: &str, board: &Board, seed: u64, base: u64) {
    let hard = victim_deadline(Duration::ZERO);
    run_victims(board, base, |k| {
        let mut rng = Rng::new(seed ^ k);
        let mut obj = Some(Obj::open(kind, name).expect("open the object"));
        board.w(W_READY).fetch_add(1, SeqCst);
        while !board.stopping() && Instant::now() < hard {
            if rng.percent(1) {
                obj = timed(board, "open", Some(OPEN), || Obj::open(kind, name)).ok();
                if obj.is_none() {
                    error(board);
                }
            }
            match &obj {
                Some(o) => o.exercise(board, &mut rng),
                None => obj = Obj::open(kind, name).ok(),
            }
            if rng.percent(10) {
                std::thread::sleep(rng.micros(200));
            }
        }
    });
}

/// What a hostile writer aims at (offsets from the start of the object, 8-aligned): the hot
/// words, the range it sprays otherwise (the control block and, where the protocol keeps
/// words there, the data area; never the segment header, offsets < 128), the words that
/// hold a lock's owner (token << 3 | flags), and the word it storms at the end.
struct Targets {
    hot: Vec<u64>,
    lo: u64,
    hi: u64,
    owners: Vec<u64>,
    storm: Option<u64>,
}

/// A cell's control block (SPEC §10.1, payload offsets): geometry 0..32, `seq` 32, `changed`
/// 40, the lock 128..160 (owner at 136); the data at 192.
const CELL_SEQ: u64 = 32;
const CELL_CHANGED: u64 = 40;
const CELL_LOCK: u64 = 128;
const CELL_DATA: u64 = 192;
/// Elements of the arrays the hostile tests use (`u64`): 8 KiB, so that a seqlock copy of
/// a long range takes long enough for a storm of sequence writes to fail every one.
const HOSTILE_ARRAY_LEN: u64 = 1024;
/// Parties of the barrier the hostile test uses: two victim processes of two threads.
const HOSTILE_PARTIES: u32 = 4;

fn targets(kind: &str, capacity: u64) -> Targets {
    const P: u64 = 128; // payload offset
    let ring_ctrl = [0u64, 8, 16, 24, 32, 40, 48, 128, 136, 256, 264];
    let words = |n: u64| (0..n).map(|i| 8 * i).collect::<Vec<u64>>();
    let (mut owners, mut storm) = (Vec::new(), None);
    let (mut hot, end): (Vec<u64>, u64) = match kind {
        "lock" | "rlock" => {
            owners.push(8);
            (words(4), 32)
        }
        "event" => {
            storm = Some(0);
            (words(1), 8)
        }
        "semaphore" | "bounded-semaphore" => {
            storm = Some(0);
            (words(2), 16)
        }
        "condition" => {
            owners.push(8);
            storm = Some(32); // the wait queue's `seq`
            (words(5), 40)
        }
        "barrier" => {
            storm = Some(0);
            (words(3), 24)
        }
        cell if cell.starts_with("value-") || cell.starts_with("array-") => {
            let len = if cell.starts_with("value-") {
                1
            } else {
                HOSTILE_ARRAY_LEN
            };
            // The data words written at random: the first few (and the sprayed range ends
            // there).
            let len = len.min(8);
            let mut v = words(4); // geometry (the handle never re-reads it)
            v.extend([CELL_SEQ, CELL_CHANGED]);
            v.extend((0..4).map(|i| CELL_LOCK + 8 * i));
            v.extend((0..len).map(|i| CELL_DATA + 8 * i));
            owners.push(CELL_LOCK + 8);
            storm = Some(match cell {
                "value-seqlock" | "array-seqlock" => CELL_SEQ,
                "value-atomic" | "array-atomic" => CELL_DATA,
                _ => CELL_LOCK + 8,
            });
            (v, CELL_DATA + 8 * len)
        }
        "spsc" => (ring_ctrl.to_vec(), 384 + capacity * 56),
        "bytes" => {
            let mut v = ring_ctrl.to_vec();
            v.extend((0..capacity / 8).map(|i| 384 + 8 * i));
            (v, 384 + capacity)
        }
        "mpmc" => {
            let mut v: Vec<u64> = (0..7).map(|i| 8 * i).collect();
            v.extend([128, 136, 256, 264]);
            for i in 0..16 {
                v.extend([384 + 128 * i, 392 + 128 * i, 2432 + 128 * i, 2440 + 128 * i]);
            }
            v.extend((0..capacity).map(|i| 4480 + 64 * i));
            (v, 4480 + capacity * 64)
        }
        "mpmc-bytes" => {
            // SPEC §7.5.1 (layout v3): `capacity` data bytes in 64-byte cells, N stamps and
            // then N record lengths, the data after them rounded up to 128 bytes.
            let cells = capacity / 64;
            let data = 4480 + (16 * cells).div_ceil(128) * 128;
            let mut v: Vec<u64> = (0..8).map(|i| 8 * i).collect();
            v.extend([128, 136, 256, 264]);
            for i in 0..16 {
                for base in [384, 2432] {
                    v.extend([base + 128 * i, base + 8 + 128 * i, base + 16 + 128 * i]);
                }
            }
            v.extend((0..cells).map(|j| 4480 + 8 * j)); // stamps
            v.extend((0..cells).map(|j| 4480 + 8 * cells + 8 * j)); // record lengths
            v.extend((0..cells).map(|j| data + 64 * j)); // each cell's first data word
            (v, data + capacity)
        }
        _ => panic!("unknown kind {kind}"),
    };
    for h in hot.iter_mut().chain(&mut owners).chain(&mut storm) {
        *h += P;
    }
    Targets {
        hot,
        lo: P,
        hi: P + end,
        owners,
        storm,
    }
}

/// A plausible value for one 32-bit half of a word: counts near 0 and near the limits the
/// objects check (`SEM_VALUE_MAX`, a barrier's 2^24 − 1 parties), the word moved by a step,
/// made odd or even (sequences, the event's flag).
fn plausible_u32(rng: &mut Rng, cur: u32) -> u32 {
    const SEM_MAX: u32 = i32::MAX as u32;
    match rng.below(12) {
        0 => 0,
        1 => 1 + rng.below(4) as u32,
        2 => u32::MAX,
        3 => SEM_MAX,
        4 => SEM_MAX + 1,
        5 => (1 << 24) - 1 + rng.below(3) as u32,
        6 => cur.wrapping_add(1),
        7 => cur.wrapping_sub(1),
        8 => cur | 1,
        9 => (cur | 1).wrapping_add(1),
        10 => rng.below(u64::from(HOSTILE_PARTIES) + 2) as u32,
        _ => rng.next() as u32,
    }
}

/// Owner words (SPEC §6.2.1: token << 3 | flags) the writer has seen, to replay them later:
/// the victim's own tokens, so the lock looks held by a live process (or by the caller).
const SEEN_OWNERS: usize = 16;

/// How long the closing storm lasts at least.
const STORM: Duration = Duration::from_secs(5);
/// How long it lasts at most: longer than [`HANG_MARGIN`], so that a call that loops while a
/// word keeps changing (a retry loop that ignores its deadline) is caught by the watchdog.
/// A storm ends before this once every victim thread has started [`STORM_CALLS`] calls during
/// it (so all but the last of them returned while the word kept changing).
const STORM_MAX: Duration = Duration::from_secs(HANG_MARGIN.as_secs() + 1);
/// See [`STORM_MAX`].
const STORM_CALLS: u64 = 8;

/// The storm's `i`th value for the word at `off` of a `kind`: a word that keeps changing
/// within what the object accepts.
fn storm_value(kind: &str, i: u64, cur: u64, writer_token: u64) -> u64 {
    match kind {
        // Even and changing: every reader's copy fails its check, and every wait for an
        // even sequence ends at once.
        "value-seqlock" | "array-seqlock" => 2 * i,
        // Full (an action running) and the generation moving; now and then broken.
        "barrier" => {
            let broken = if i % 64 == 63 { 1 << 24 } else { 0 };
            u64::from(HOSTILE_PARTIES) | broken | (i & 0xffff) << 32
        }
        // A clear word whose generation keeps moving (`set` must still get its CAS in).
        "event" => (cur & !0xffff_ffff) | ((2 * i) & 0xffff_fffe),
        // Permits 1 and 2 in turn (takers and releasers keep losing their CAS).
        "semaphore" | "bounded-semaphore" => (cur & !0xffff_ffff) | (1 + i % 2),
        // The wait queue's sequence moving (waiters see a notify each time), the lock held.
        "condition" => (cur & !0xffff_ffff) | (i & 0xffff_ffff),
        // The lock free and held by the writer in turn.
        "value-locked" | "array-locked" => {
            if i % 2 == 0 {
                0
            } else {
                writer_token << 3
            }
        }
        _ => i,
    }
}

/// `board`: the test's, whose victim slots `0..victims` the closing storm watches.
fn hostile_writer(
    kind: &str,
    name: &str,
    capacity: u64,
    dur: Duration,
    seed: u64,
    board: &Board,
    victims: u64,
) {
    let mut rng = Rng::new(seed);
    let seg = Segment::options()
        .raw(true)
        .open(name)
        .expect("open the object raw");
    let Targets {
        hot,
        lo,
        hi,
        owners,
        storm,
    } = targets(kind, capacity);
    assert!(hi as usize <= seg.len());
    // A live token (this process's) for owner words; a dead one is a random token.
    let me = my_token();
    let mut seen_owners: Vec<u64> = Vec::new();
    let word = |off: u64| seg.atomic_u64(off).expect("word");
    // SAFETY: this thread is the only one of this process that uses `seg`, so its accesses
    // of a word with different sizes are ordered by program order: none races another.
    let half = |off: u64| unsafe { seg.atomic_u32(off) }.expect("half word");
    let snapshot = Snapshot::take(&seg, lo, hi);
    let deadline = Instant::now() + dur;
    let mut writes = 0u64;
    while Instant::now() < deadline {
        if snapshot.restore_now_and_then(&seg, &mut rng) {
            continue; // everything as it was at the start
        }
        let off = if rng.percent(70) {
            hot[rng.below(hot.len() as u64) as usize]
        } else {
            lo + 8 * rng.below((hi - lo) / 8)
        };
        let w = word(off);
        let cur = w.load(SeqCst);
        if owners.contains(&off) && cur >> 3 != 0 && cur >> 3 != me {
            if seen_owners.len() < SEEN_OWNERS {
                seen_owners.push(cur);
            } else {
                seen_owners[rng.below(SEEN_OWNERS as u64) as usize] = cur;
            }
        }
        if owners.contains(&off) && rng.percent(40) {
            // An owner word: of this (live) process, of a dead or never-seen token, or one
            // the victim wrote itself earlier (held by a live process, maybe the caller).
            let flags = rng.below(8);
            let v = match rng.below(3) {
                0 => me << 3 | flags,
                1 => (rng.next() >> 3) << 3 | flags,
                _ => match seen_owners.len() as u64 {
                    0 => me << 3,
                    n => seen_owners[rng.below(n) as usize],
                },
            };
            w.store(v, SeqCst);
        } else if rng.percent(30) {
            // One 32-bit field (most sync words are u32 pairs).
            let h = half(off + 4 * rng.below(2));
            let v = plausible_u32(&mut rng, h.load(SeqCst));
            h.store(v, SeqCst);
        } else {
            let v = match rng.below(11) {
                0 => word(hot[rng.below(hot.len() as u64) as usize]).load(SeqCst),
                1 => cur.wrapping_add(1 << rng.below(16)),
                _ => scribble(&mut rng, cur, snapshot.at(off)),
            };
            w.store(v, SeqCst);
        }
        writes += 1;
        if rng.percent(20) {
            std::thread::sleep(rng.micros(300));
        }
    }
    if let Some(off) = storm {
        // The closing storm: from the state the object started in, one word changes as fast
        // as this process can write it, for STORM and then until each victim thread has made
        // calls that returned meanwhile (STORM_MAX at most: a victim stuck in a call past its
        // timeout plus the hang margin meanwhile is aborted by its watchdog).
        snapshot.restore(&seg);
        if kind == "condition" {
            // The lock held by this (live) process throughout: a waiter must not wait for it
            // past its deadline when it takes it back.
            word(owners[0]).store(me << 3, SeqCst);
        }
        let w = word(off);
        let (start, start_ns) = (Instant::now(), mono_ns());
        // Per victim slot: the last call start seen, and how many distinct ones since `start`.
        let mut seen = vec![(0u64, 0u64); victims as usize];
        let mut i = 0u64;
        loop {
            for _ in 0..256 {
                w.store(storm_value(kind, i, w.load(SeqCst), me), SeqCst);
                i += 1;
            }
            for (k, (last, n)) in seen.iter_mut().enumerate() {
                let at = board.slot(k as u64, S_CALL_START).load(SeqCst);
                if at > start_ns && at != *last {
                    *last = at;
                    *n += 1;
                }
            }
            let called = seen.iter().all(|&(_, n)| n >= STORM_CALLS);
            let took = start.elapsed();
            if (took >= STORM && called) || took >= STORM_MAX {
                break;
            }
        }
        writes += i;
    }
    eprintln!("hostile writer ({kind}): {writes} writes");
}

/// Victim processes of a hostile test (a barrier's parties live in two).
fn victim_processes(kind: &str) -> u64 {
    if kind == "barrier" {
        2
    } else {
        1
    }
}

fn hostile(kind: &str) {
    let tag = format!("tort-hostile-{kind}");
    let rounds = rounds();
    let mut rng = Rng::new(seed_for(&tag));
    let dur = Duration::from_millis(100 + 40 * rounds);
    let (name, bn) = (unique_name(&tag), unique_name(&format!("{tag}-b")));
    let _cleanup = Cleanup::new(&[&name, &bn]);
    let board = Board::create(&bn, 1, 0, 0);
    let capacity = match kind {
        "bytes" | "mpmc-bytes" => BYTES_CAP,
        _ => 8,
    };
    // The object, owned (and finally unlinked) by the test.
    let object: Box<dyn std::any::Any> = match kind {
        "lock" => Box::new(Lock::t_create(&name)),
        "rlock" => Box::new(RLock::t_create(&name)),
        "spsc" | "mpmc" | "bytes" | "mpmc-bytes" => {
            Box::new(Q::create(QKind::parse(kind), &name, capacity))
        }
        other => Box::new(Obj::create(other, &name)),
    };
    let processes = victim_processes(kind);
    let mut victims: Vec<Child> = (0..processes)
        .map(|p| {
            spawn_child(
                "hostile-victim",
                &[
                    kind,
                    &name,
                    &bn,
                    &dur.as_millis().to_string(),
                    &rng.next().to_string(),
                    &(p * VICTIMS_PER_PROCESS).to_string(),
                ],
            )
        })
        .collect();
    for v in &mut victims {
        wait_for("the victims to attach", v, || {
            board.get(W_READY) >= processes * VICTIMS_PER_PROCESS
        });
    }
    let mut writer = spawn_child(
        "hostile-writer",
        &[
            kind,
            &name,
            &capacity.to_string(),
            &dur.as_millis().to_string(),
            &rng.next().to_string(),
            &bn,
            &(processes * VICTIMS_PER_PROCESS).to_string(),
        ],
    );
    wait_success(&mut writer, "hostile writer", EXIT);
    // Let the victim run on the wreckage a little longer.
    std::thread::sleep(Duration::from_millis(50));
    board.w(W_STOP).store(1, SeqCst);
    for v in &mut victims {
        wait_success(v, "victim of the hostile writer", EXIT);
    }
    let (calls, errors) = (board.get(W_CALLS), board.get(W_ERRORS));
    eprintln!("torture {tag}: {calls} calls, {errors} errors, none hung, panicked or crashed");
    assert_eq!(board.get(W_VIOLATIONS), 0, "violations (see stderr)");
    assert!(calls > 0, "the victim made no calls");
    assert!(
        errors > 0,
        "the hostile writer changed nothing the victim noticed"
    );
    drop(object);
    drop(board);
    assert_unlinked(&[&name, &bn]);
}

#[test]
fn hostile_writer_vs_spsc() {
    hostile("spsc");
}

#[test]
fn hostile_writer_vs_mpmc() {
    hostile("mpmc");
}

#[test]
fn hostile_writer_vs_bytes_ring() {
    hostile("bytes");
}

#[test]
fn hostile_writer_vs_mpmc_bytes() {
    hostile("mpmc-bytes");
}

#[test]
fn hostile_writer_vs_lock() {
    hostile("lock");
}

#[test]
fn hostile_writer_vs_rlock() {
    hostile("rlock");
}

#[test]
fn hostile_writer_vs_event() {
    hostile("event");
}

#[test]
fn hostile_writer_vs_semaphore() {
    hostile("semaphore");
}

#[test]
fn hostile_writer_vs_bounded_semaphore() {
    hostile("bounded-semaphore");
}

#[test]
fn hostile_writer_vs_condition() {
    hostile("condition");
}

#[test]
fn hostile_writer_vs_barrier() {
    hostile("barrier");
}

#[test]
fn hostile_writer_vs_value_locked() {
    hostile("value-locked");
}

#[test]
fn hostile_writer_vs_value_atomic() {
    hostile("value-atomic");
}

#[test]
fn hostile_writer_vs_value_seqlock() {
    hostile("value-seqlock");
}

#[test]
fn hostile_writer_vs_array_locked() {
    hostile("array-locked");
}

#[test]
fn hostile_writer_vs_array_atomic() {
    hostile("array-atomic");
}

#[test]
fn hostile_writer_vs_array_seqlock() {
    hostile("array-seqlock");
}

// ---------------------------------------------------------------------------------------------
// Children.

#[test]
fn child_main() {
    common::child_entry(|role, args| {
        die_with_parent();
        let arg = |i: usize| args[i].as_str();
        let num = |i: usize| args[i].parse::<u64>().expect("numeric argument");
        match role {
            "lock-worker" => {
                let board = Board::open(arg(2));
                match arg(0) {
                    "lock" => lock_worker::<Lock>(arg(1), &board, num(3), num(4)),
                    _ => lock_worker::<RLock>(arg(1), &board, num(3), num(4)),
                }
            }
            "q-producer" => {
                let board = Board::open(arg(2));
                q_producer(QKind::parse(arg(0)), arg(1), &board, num(3), num(4), num(5));
            }
            "q-consumer" => {
                let board = Board::open(arg(2));
                q_consumer(QKind::parse(arg(0)), arg(1), &board, num(3), num(4));
            }
            "hostile-victim" => {
                let board = Board::open(arg(2));
                let dur = Duration::from_millis(num(3));
                let seed = num(4);
                match arg(0) {
                    "lock" => lock_victim::<Lock>(arg(1), &board, dur, seed),
                    "rlock" => lock_victim::<RLock>(arg(1), &board, dur, seed),
                    q @ ("spsc" | "mpmc" | "bytes" | "mpmc-bytes") => {
                        let kind = QKind::parse(q);
                        let (name, b) = (arg(1), &board);
                        run_victims(b, 0, |k| {
                            queue_victim_side(kind, name, b, k == 0, seed ^ k);
                        });
                    }
                    other => obj_victim(other, arg(1), &board, seed, num(5)),
                }
            }
            "hostile-writer" => {
                hostile_writer(
                    arg(0),
                    arg(1),
                    num(2),
                    Duration::from_millis(num(3)),
                    num(4),
                    &Board::open(arg(5)),
                    num(6),
                );
            }
            other => panic!("unknown role {other}"),
        }
    });
}
