//! `Queue`: `multiprocessing.Queue`'s surface on shmkit's MPMC bytes queue (`SPEC.md`, "MPMC
//! bytes queue"): objects are pickled (protocol 5; `pickle5`) into one message each; `put_bytes` /
//! `get_bytes` are the bytes-only fast path (no pickling, the same messages the Rust API and
//! `shmkit queue push/pop` exchange).
//!
//! Handles: a Python `Queue` object keeps two pools of shmkit handles, producers and
//! consumers, empty at first. A `put` takes a producer from its pool (attaching a new one,
//! one of the queue's 16 producer slots, if the pool is empty), uses it, and puts it back; a
//! `get` does the same with consumers. So a process that only puts never holds a consumer
//! slot, and each handle is used by one thread at a time. A handle whose attach left its
//! side no free slot (a second attach, made right after it, fails: [`Kept`]) is not put
//! back but dropped at the end of the call, freeing its slot: objects that have gone idle
//! (a `Pool` worker keeping the queue in a global) never hold all 16 slots of a side, so
//! another process's call waits only for calls in progress. The pools' mutexes are held only to
//! take or return a handle, or across the first, non-blocking attempt made in place on an
//! idle handle (`push_idle`/`pop_idle`: one lock, no handle moved; no Python code runs under
//! the lock), never across a wait, so two threads that put at once each wait with their own
//! handle (GIL released) and neither can block the other. When all 16 slots of a side are
//! held, a blocking call waits (polling) for one to come back.
//!
//! `put(obj)`, `get()`, `put_bytes(data)` and `get_bytes()` are also reached through C entry
//! points (module `fast`, the scheme of [`crate::fastcall`]) that call the same methods.
//!
//! Peers that are gone: multiprocessing's `get` waits for a producer even when none exists,
//! and `put` never fails for lack of a consumer. shmkit's handles report that case as
//! `Disconnected` (the other side closed it or every handle of it died): here it is treated as
//! empty (or full) and a blocking call polls every [`POLL`] until a peer attaches. A handle
//! that reports it is also dropped, with every idle handle of its side, and replaced once at
//! once by a newly attached one, which also covers handles inherited through `fork()` (they
//! belong to the parent and always report `Disconnected`; a child may inherit several).
//! A `Queue()` without a name is removed when its object goes, only in the process that made
//! it: the library's unlink on drop happens only in the process that asked for it, not in a
//! forked child dropping its copy. It is created `Lifetime::Owned`, so that `shmkit gc`
//! removes it once that process died without dropping it (killed, or `os._exit` as
//! multiprocessing's children end) and no process maps it.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use shmkit::queue::mpmc_bytes::{self, Consumer, Producer};
use shmkit::queue::AttachError;
use shmkit::queue::{BytesPushError, PopError, TryPopError};
use shmkit::segment::Lifetime;
use shmkit::ProcessMark;

use crate::blocking::{allow_threads, check_timeout, deadline, sliced, Truthy, BLOCK};
use crate::errors::{attach_error, queue_full_or_empty, to_py};
use crate::named::{self, named_methods};
use crate::pickle5;

/// `capacity_bytes` when not given: 1 MiB, so messages up to 512 KiB - 8 bytes.
const DEFAULT_CAPACITY: u64 = 1 << 20;

/// Messages at least this long are copied in and out with the GIL released, even on the first,
/// non-blocking attempt.
const BIG: usize = 64 * 1024;

/// How often a blocking call re-checks while no handle of the other side is alive (or no
/// slot of its own side is free).
const POLL: Duration = Duration::from_millis(5);

/// A consumer and the buffer its messages are popped into (kept: no allocation per `get`).
struct Reader {
    c: Consumer,
    buf: Vec<u8>,
}

/// A message popped by [`PyQueue::pop_idle`]: its length in the caller's short buffer, or the
/// reader holding it.
enum Popped {
    Short(usize),
    Long(Kept<Reader>),
}

/// A handle taken for one call, and whether it goes back to the pool after it: `keep` is
/// false for a handle whose attach left its side no free slot ([`Pool::attach`]); that
/// one is dropped at the end of the call (its slot freed), so that idle objects never hold
/// every slot of a side.
struct Kept<H> {
    h: H,
    keep: bool,
}

/// Idle handles of one side, for the threads of this process.
///
/// `fork()`: a child gets a copy of the pool as the fork left it, maybe with its mutex held
/// by a thread of the parent that does not exist in the child (a blocking or a large `put`
/// takes and returns handles with the GIL released, so a fork from another thread can land
/// there) and the list half-changed (a `Vec` push reallocating). A pool made in another
/// process is therefore never locked, read or dropped: the first use in the child installs
/// a fresh, empty list (the handles in the copy are the parent's anyway) and leaks the copy.
struct Pool<H> {
    /// The current process's list: only replaced (by a child, the old one leaked), freed by
    /// `Drop`. Never null.
    cur: AtomicPtr<Idle<H>>,
    /// Owns an `Idle<H>`: `Send`/`Sync` as the list is (an `AtomicPtr` alone would be both
    /// for any `H`).
    _owns: PhantomData<Box<Idle<H>>>,
}

/// The idle list of the process `made_by`.
struct Idle<H> {
    made_by: ProcessMark,
    list: Mutex<Vec<H>>,
}

impl<H> Idle<H> {
    fn boxed() -> *mut Idle<H> {
        Box::into_raw(Box::new(Idle {
            made_by: ProcessMark::here(),
            list: Mutex::new(Vec::new()),
        }))
    }
}

impl<H> Drop for Pool<H> {
    fn drop(&mut self) {
        let p = *self.cur.get_mut();
        // SAFETY: `cur` always points to a live `Idle` made by `Box::into_raw`, freed only
        // here; `&mut self`: no other reference to it remains.
        if unsafe { (*p).made_by.is_here() } {
            // SAFETY: as above; made in this process, so no thread of another process
            // could have left it half-changed.
            drop(unsafe { Box::from_raw(p) });
        }
        // Else a copy inherited across fork(): leaked (see the type's docs).
    }
}

impl<H> Pool<H> {
    fn new() -> Self {
        Pool {
            cur: AtomicPtr::new(Idle::boxed()),
            _owns: PhantomData,
        }
    }

    /// This process's idle list (a fresh one the first time in a `fork()`ed child).
    fn idle(&self) -> &Idle<H> {
        // Acquire pairs with the AcqRel exchange below: a list installed by another thread
        // is seen initialized.
        let p = self.cur.load(Ordering::Acquire);
        // SAFETY: `cur` always points to a live `Idle` (see `Drop`), and every `Idle` it ever
        // pointed to lives as long as the pool (replaced ones are leaked).
        let cur = unsafe { &*p };
        if cur.made_by.is_here() {
            return cur;
        }
        let fresh = Idle::boxed();
        match self
            .cur
            .compare_exchange(p, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            // SAFETY: `fresh` is live and now the pool's (freed only by `Drop`).
            Ok(_) => unsafe { &*fresh },
            Err(other) => {
                // SAFETY: `fresh` was never shared; `other`, installed by another thread of
                // this process, is live as long as the pool.
                unsafe {
                    drop(Box::from_raw(fresh));
                    &*other
                }
            }
        }
    }

    /// The idle list; a panic elsewhere while it was locked left it consistent (a `Vec` push
    /// or pop), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Vec<H>> {
        self.idle().list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle handle, or a new one from `attach`; `Ok(None)` if every slot of the side is
    /// held (by other threads here or by other processes).
    fn take(&self, attach: impl Fn() -> Result<H, AttachError>) -> PyResult<Option<Kept<H>>> {
        if let Some(h) = self.lock().pop() {
            return Ok(Some(Kept { h, keep: true }));
        }
        Self::attach(attach)
    }

    /// A new handle from `attach` (never an idle one); `Ok(None)` if every slot is held.
    ///
    /// It is kept between calls only if a second `attach` right after it succeeds (that
    /// handle is dropped at once): one that left the side no free slot is dropped at the end
    /// of each call. The probe is a claim (a compare-and-swap on the slot's owner word), not
    /// a load, so of two attaches racing for the last slots at least one sees the side full
    /// (both may: then neither is kept): idle objects never hold every slot. Only attaching
    /// pays for it (a pooled handle is reused without any).
    fn attach(attach: impl Fn() -> Result<H, AttachError>) -> PyResult<Option<Kept<H>>> {
        match attach() {
            Ok(h) => {
                let keep = !matches!(attach(), Err(AttachError::NoFreeSlot { .. }));
                Ok(Some(Kept { h, keep }))
            }
            Err(AttachError::NoFreeSlot { .. }) => Ok(None),
            Err(e) => Err(attach_error(e)),
        }
    }

    /// Return a handle after use; dropped (its slot freed) if it took its side's last free
    /// slot ([`Kept`]) or the queue was closed meanwhile.
    fn give_back(&self, k: Kept<H>, closed: &AtomicBool) {
        if !k.keep {
            return;
        }
        let mut idle = self.lock();
        // Acquire pairs with the Release in `close`: a close that ran before this sees its
        // own drain, and one that runs after drains this handle.
        if !closed.load(Ordering::Acquire) {
            idle.push(k.h);
        }
    }

    /// Drop every idle handle (their slots are freed; the sides stay open).
    fn clear(&self) {
        drop(std::mem::take(&mut *self.lock()));
    }
}

/// What one attempt did: `None` to try again (later), `Some` when finished.
type Step<T> = Option<PyResult<T>>;

/// Sleep for [`POLL`], but not past `until`.
fn poll_pause(until: Instant) {
    let left = until.saturating_duration_since(Instant::now());
    std::thread::sleep(left.min(POLL));
}

/// A unique name for `Queue()` without one: `shmkit-q-PID-N-NANOS`.
fn generated_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "shmkit-q-{}-{}-{nanos:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `capacity_bytes` as the ring's capacity: rounded up to a power of two, at least 256.
fn capacity(capacity_bytes: i64) -> PyResult<u64> {
    u64::try_from(capacity_bytes)
        .ok()
        .filter(|&c| c > 0 && c <= 1 << 40)
        .map(|c| c.next_power_of_two().max(mpmc_bytes::MIN_CAPACITY))
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "capacity_bytes must be in 1..=2**40, not {capacity_bytes}"
            ))
        })
}

/// A named queue of Python objects shared by processes: `multiprocessing.Queue`'s methods,
/// attachable by name, on shmkit's lock-free MPMC bytes queue.
///
/// Security: `get` unpickles what it reads from shared memory, and unpickling can run any
/// code: anyone who can write the queue's `/dev/shm` file can run code in every process that
/// calls `get`. With untrusted peers use `put_bytes`/`get_bytes` (never unpickled).
#[pyclass(module = "shmkit", name = "Queue", frozen)]
pub(crate) struct PyQueue {
    inner: mpmc_bytes::Queue,
    producers: Pool<Producer>,
    consumers: Pool<Reader>,
    closed: AtomicBool,
}

impl PyQueue {
    fn wrap(inner: mpmc_bytes::Queue) -> Self {
        PyQueue {
            inner,
            producers: Pool::new(),
            consumers: Pool::new(),
            closed: AtomicBool::new(false),
        }
    }

    fn build(
        name: &str,
        capacity_bytes: Option<i64>,
        mode: u32,
        lifetime: Lifetime,
        create: bool,
    ) -> PyResult<Self> {
        let opts = mpmc_bytes::Queue::options()
            .mode(mode)
            .lifetime(lifetime)
            .unlink_on_drop(false);
        let cap = capacity(capacity_bytes.unwrap_or(DEFAULT_CAPACITY as i64))?;
        let q = if create {
            opts.create(name, cap)
        } else {
            opts.open_or_create(name, cap)
        };
        q.map(Self::wrap).map_err(to_py)
    }

    /// `_hold_state_lock` (tests): both pools' locks for `d`, GIL released.
    pub(crate) fn hold_for_test(&self, py: Python<'_>, d: Duration) -> PyResult<()> {
        allow_threads(py, || {
            let _p = self.producers.lock();
            let _c = self.consumers.lock();
            std::thread::sleep(d);
        });
        Ok(())
    }

    fn check_open(&self) -> PyResult<()> {
        // Acquire: as in `Pool::give_back`.
        if self.closed.load(Ordering::Acquire) {
            Err(PyValueError::new_err(format!(
                "Queue {:?} is closed",
                self.inner.name()
            )))
        } else {
            Ok(())
        }
    }

    /// The first, non-blocking push attempt, on the most recently used idle producer in place
    /// (no handle leaves the pool: one lock and unlock, nothing moved). The pool's lock is held
    /// across `try_push`, which never waits and runs no Python code. `None` to go on with
    /// [`push_step`](Self::push_step) (no idle handle, or one that failed other than full).
    fn push_idle(&self, msg: &[u8]) -> Option<Step<()>> {
        let mut idle = self.producers.lock();
        match idle.last_mut()?.try_push(msg) {
            Ok(()) => Some(Some(Ok(()))),
            Err(BytesPushError::Full) => Some(None),
            Err(_) => None,
        }
    }

    /// One push of `msg`: `until` `None` tries once; `Some` waits until then at most.
    fn push_step(&self, msg: &[u8], until: Option<Instant>) -> Step<()> {
        // A handle reporting `Disconnected` is replaced once by a new one (it may be a
        // fork()ed copy, and then so are the other idle ones: they are dropped).
        for fresh in [false, true] {
            let attach = || self.inner.producer();
            let taken = if fresh {
                Pool::attach(attach)
            } else {
                self.producers.take(attach)
            };
            let mut p = match taken {
                Ok(Some(p)) => p,
                Ok(None) => break, // every producer slot is held: wait for one
                Err(e) => return Some(Err(e)),
            };
            let r = match until {
                None => p.h.try_push(msg),
                Some(t) => p.h.push_deadline(msg, t),
            };
            match r {
                Ok(()) => {
                    self.producers.give_back(p, &self.closed);
                    return Some(Ok(()));
                }
                Err(BytesPushError::Full | BytesPushError::Timeout) => {
                    self.producers.give_back(p, &self.closed);
                    return None;
                }
                Err(BytesPushError::Disconnected) if !fresh => {
                    drop(p);
                    self.producers.clear();
                }
                Err(BytesPushError::Disconnected) => break,
                Err(e @ (BytesPushError::TooLarge { .. } | BytesPushError::Corrupt)) => {
                    return Some(Err(to_py(e.into())))
                }
            }
        }
        // No consumer alive (or no free producer slot): as full; poll if waiting.
        if let Some(t) = until {
            poll_pause(t);
        }
        None
    }

    /// The first, non-blocking pop attempt, on the most recently used idle consumer in place,
    /// as [`push_idle`](Self::push_idle). The pool's lock is held only across `try_pop_into`
    /// (no Python code runs under it: turning the message into an object may allocate, and a
    /// garbage collection then may run any finalizer, even one that calls `get`): a message of
    /// at most [`pickle5::SHORT`] bytes is copied to `short` and `Short(len)` returned with the
    /// handle left in the pool; a longer one leaves the pool with its handle (`Long`), which
    /// the caller gives back.
    fn pop_idle(&self, short: &mut [u8; pickle5::SHORT]) -> Option<Step<Popped>> {
        let mut idle = self.consumers.lock();
        let r = idle.last_mut()?;
        match r.c.try_pop_into(&mut r.buf) {
            Ok(n) if n <= short.len() => {
                short[..n].copy_from_slice(&r.buf[..n]);
                Some(Some(Ok(Popped::Short(n))))
            }
            Ok(_) => Some(Some(Ok(Popped::Long(Kept {
                h: idle.pop()?,
                keep: true,
            })))),
            Err(TryPopError::Empty) => Some(None),
            Err(_) => None,
        }
    }

    /// One pop: as [`push_step`](Self::push_step). On success the reader holds the message
    /// in its buffer; the caller gives it back.
    fn pop_step(&self, until: Option<Instant>) -> Step<Kept<Reader>> {
        for fresh in [false, true] {
            let attach = || self.inner.consumer().map(|c| Reader { c, buf: Vec::new() });
            let taken = if fresh {
                Pool::attach(attach)
            } else {
                self.consumers.take(attach)
            };
            let mut r = match taken {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => return Some(Err(e)),
            };
            let Reader { c, buf } = &mut r.h;
            // `try_pop_into`'s `Empty` is the blocking form's `Timeout`: both leave the caller
            // to wait (or to report an empty queue).
            let res = match until {
                None => c.try_pop_into(buf).map_err(|e| match e {
                    TryPopError::Empty => PopError::Timeout,
                    TryPopError::Disconnected => PopError::Disconnected,
                    TryPopError::Corrupt => PopError::Corrupt,
                }),
                Some(t) => c.pop_into_deadline(buf, t),
            };
            match res {
                Ok(_) => return Some(Ok(r)),
                Err(PopError::Timeout) => {
                    self.consumers.give_back(r, &self.closed);
                    return None;
                }
                Err(PopError::Disconnected) if !fresh => {
                    drop(r);
                    self.consumers.clear();
                }
                Err(PopError::Disconnected) => break,
                Err(e @ PopError::Corrupt) => return Some(Err(to_py(e.into()))),
            }
        }
        // No producer alive (or no free consumer slot): as empty; poll if waiting.
        if let Some(t) = until {
            poll_pause(t);
        }
        None
    }

    /// `put` of bytes: one attempt (GIL held unless the message is big), then the wait.
    fn push(&self, py: Python<'_>, msg: &[u8], block: bool, timeout: Option<f64>) -> PyResult<()> {
        self.check_open()?;
        let max = self.inner.max_message();
        if msg.len() as u64 > max {
            return Err(PyValueError::new_err(format!(
                "a message of {} bytes is larger than queue {:?}'s maximum of {max} bytes (half \
                 its capacity_bytes): create the queue with a larger capacity_bytes",
                msg.len(),
                self.inner.name()
            )));
        }
        if block {
            check_timeout(timeout)?;
        }
        let first = if msg.len() >= BIG {
            allow_threads(py, || self.push_step(msg, None))
        } else {
            match self.push_idle(msg) {
                Some(step) => step,
                None => self.push_step(msg, None),
            }
        };
        let done = match first {
            Some(r) => Some(r),
            None if !block => None,
            // The clock is read only now that the first attempt failed.
            // A `close()` by another thread meanwhile ends the wait (checked every slice).
            None => sliced(py, deadline(timeout)?, |until| match self.check_open() {
                Ok(()) => self.push_step(msg, Some(until)),
                Err(e) => Some(Err(e)),
            })?,
        };
        match done {
            Some(r) => r,
            None => Err(queue_full_or_empty(
                py,
                true,
                format!("queue {:?} is full", self.inner.name()),
            )),
        }
    }

    /// `get`: as [`push`](Self::push); `read` turns the message into the result (with the
    /// GIL held) before the reader goes back to the pool.
    fn pop<T>(
        &self,
        py: Python<'_>,
        block: bool,
        timeout: Option<f64>,
        read: impl FnOnce(&[u8]) -> PyResult<T>,
    ) -> PyResult<T> {
        self.check_open()?;
        if block {
            check_timeout(timeout)?;
        }
        let mut short = [0u8; pickle5::SHORT];
        let first = match self.pop_idle(&mut short) {
            Some(step) => step,
            None => self.pop_step(None).map(|r| r.map(Popped::Long)),
        };
        let done = match first {
            Some(r) => Some(r),
            None if !block => None,
            // The clock is read only now that the first attempt failed.
            // As in `push`: a `close()` meanwhile ends the wait.
            None => sliced(py, deadline(timeout)?, |until| match self.check_open() {
                Ok(()) => self.pop_step(Some(until)).map(|r| r.map(Popped::Long)),
                Err(e) => Some(Err(e)),
            })?,
        };
        match done {
            Some(Ok(Popped::Short(n))) => read(&short[..n]),
            Some(Ok(Popped::Long(r))) => {
                let out = read(&r.h.buf);
                self.consumers.give_back(r, &self.closed);
                out
            }
            Some(Err(e)) => Err(e),
            None => Err(queue_full_or_empty(
                py,
                false,
                format!("queue {:?} is empty", self.inner.name()),
            )),
        }
    }
}

/// A message as a new `bytes` (a big one copied without the GIL).
fn new_bytes<'py>(py: Python<'py>, m: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    if m.len() >= BIG {
        PyBytes::new_with(py, m.len(), |buf| {
            allow_threads(py, || buf.copy_from_slice(m));
            Ok(())
        })
    } else {
        Ok(PyBytes::new(py, m))
    }
}

named_methods!(
    PyQueue,
    "Queue",
    #[pymethods]
    {
        /// Open the queue `name`, or create it with `capacity_bytes` and `lifetime`
        /// (`"persistent"` by default). Without a name: a new queue under a unique generated
        /// name, removed when this object is garbage-collected (in the process that made it: a
        /// forked child's copy going away leaves it), and `"owned"` by default, so that `shmkit
        /// gc` removes it once the process that made it died without collecting it.
        #[new]
        #[pyo3(signature = (name = None, capacity_bytes = None, *, mode = 0o600, lifetime = None))]
        fn new(
            name: Option<&str>,
            capacity_bytes: Option<i64>,
            mode: u32,
            lifetime: Option<&str>,
        ) -> PyResult<Self> {
            let lifetime = |default| lifetime.map_or(Ok(default), named::lifetime);
            match name {
                Some(n) => Self::build(
                    n,
                    capacity_bytes,
                    mode,
                    lifetime(Lifetime::Persistent)?,
                    false,
                ),
                None => {
                    let q = Self::build(
                        &generated_name(),
                        capacity_bytes,
                        mode,
                        lifetime(Lifetime::Owned)?,
                        true,
                    )?;
                    q.inner.set_unlink_on_drop(true);
                    Ok(q)
                }
            }
        }

        /// Create a new queue of `capacity_bytes` (rounded up to a power of two, at least 256);
        /// `FileExistsError` if the name is taken. `lifetime`: `"persistent"` or `"owned"`.
        #[staticmethod]
        #[pyo3(signature = (name, capacity_bytes = None, *, mode = 0o600, lifetime = "persistent"))]
        fn create(
            name: &str,
            capacity_bytes: Option<i64>,
            mode: u32,
            lifetime: &str,
        ) -> PyResult<Self> {
            Self::build(name, capacity_bytes, mode, named::lifetime(lifetime)?, true)
        }

        /// Open an existing queue; `FileNotFoundError` if there is none.
        #[staticmethod]
        fn open(name: &str) -> PyResult<Self> {
            mpmc_bytes::Queue::options()
                .unlink_on_drop(false)
                .open(name)
                .map(Self::wrap)
                .map_err(to_py)
        }

        /// Data bytes in the ring.
        #[getter]
        fn capacity_bytes(&self) -> u64 {
            self.inner.capacity()
        }

        /// The longest message (pickled object, or `put_bytes` payload) accepted, in bytes.
        #[getter]
        fn max_message(&self) -> u64 {
            self.inner.max_message()
        }

        /// Put `obj` (pickled with protocol 5). `block=False` (or a `timeout` that
        /// passes) raises `queue.Full` if there is no room; `ValueError` if the pickle is longer
        /// than `max_message`.
        #[pyo3(signature = (obj, block = BLOCK, timeout = None), text_signature = "($self, obj, block=True, timeout=None)")]
        fn put(
            &self,
            py: Python<'_>,
            obj: &Bound<'_, PyAny>,
            block: Truthy,
            timeout: Option<f64>,
        ) -> PyResult<()> {
            self.check_open()?;
            let mut buf = [0u8; pickle5::SHORT];
            let data = pickle5::dumps(obj, &mut buf)?;
            self.push(py, data.as_bytes(), block.0, timeout)
        }

        /// Remove and return the oldest object. `block=False` (or a `timeout` that passes) raises
        /// `queue.Empty` if there is none.
        #[pyo3(signature = (block = BLOCK, timeout = None), text_signature = "($self, block=True, timeout=None)")]
        fn get<'py>(
            &self,
            py: Python<'py>,
            block: Truthy,
            timeout: Option<f64>,
        ) -> PyResult<Bound<'py, PyAny>> {
            self.pop(py, block.0, timeout, |m| pickle5::loads(py, m))
        }

        /// `put(obj, False)`.
        fn put_nowait(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
            self.put(py, obj, Truthy(false), None)
        }

        /// `get(False)`.
        fn get_nowait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            self.get(py, Truthy(false), None)
        }

        /// The bytes-only fast path: put `data` (any bytes-like object) as one message, without
        /// pickling. Readable by `get_bytes`, the Rust API and `shmkit queue pop`.
        #[pyo3(signature = (data, block = BLOCK, timeout = None), text_signature = "($self, data, block=True, timeout=None)")]
        fn put_bytes(
            &self,
            py: Python<'_>,
            data: &Bound<'_, PyAny>,
            block: Truthy,
            timeout: Option<f64>,
        ) -> PyResult<()> {
            if let Ok(b) = data.downcast::<PyBytes>() {
                return self.push(py, b.as_bytes(), block.0, timeout);
            }
            // bytearray, memoryview, array, numpy: copied once (they may change under us).
            let b = py.get_type::<PyBytes>().call1((data,))?;
            self.push(py, b.downcast::<PyBytes>()?.as_bytes(), block.0, timeout)
        }

        /// The bytes-only fast path: remove and return the oldest message as `bytes`, unpickled.
        #[pyo3(signature = (block = BLOCK, timeout = None), text_signature = "($self, block=True, timeout=None)")]
        fn get_bytes<'py>(
            &self,
            py: Python<'py>,
            block: Truthy,
            timeout: Option<f64>,
        ) -> PyResult<Bound<'py, PyBytes>> {
            self.pop(py, block.0, timeout, |m| new_bytes(py, m))
        }

        /// Approximate size: the 64-byte cells in use. A message takes `max(1, ceil(len / 64))`
        /// cells, so this is the number of messages when each pickles to at most 64 bytes, and an
        /// upper bound on it otherwise; 0 exactly when the queue is empty (a snapshot).
        fn qsize(&self) -> u64 {
            self.inner.len() / mpmc_bytes::CELL
        }

        /// Whether the queue is empty now (a snapshot).
        fn empty(&self) -> bool {
            self.inner.is_empty()
        }

        /// Whether no cell is free now, so not even the smallest message fits (a snapshot). A
        /// queue that is not full may still lack room for a large message.
        fn full(&self) -> bool {
            self.inner.len() >= self.inner.capacity()
        }

        /// Detach this object's producer and consumer handles (freeing their slots); later
        /// `put`/`get` on it raise `ValueError`, and so does one blocked in another thread
        /// (within one wait slice). The queue and its messages stay, for other handles and
        /// processes. Closing twice is harmless.
        fn close(&self) {
            // Release pairs with the Acquire in `Pool::give_back` and `check_open`.
            self.closed.store(true, Ordering::Release);
            self.producers.clear();
            self.consumers.clear();
        }

        /// Does nothing: there is no feeder thread (a `put` has copied the message into shared
        /// memory when it returns).
        fn join_thread(&self) {}

        /// Does nothing: there is no feeder thread to join.
        fn cancel_join_thread(&self) {}

        fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
            slf
        }

        /// Closes (does not unlink).
        #[pyo3(signature = (*_args))]
        fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) {
            self.close()
        }
    }
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyQueue>()?;
    fast::install(m.py())
}

/// C-API entry points for `put(obj)`, `get()`, `put_bytes(data)` and `get_bytes()` (see
/// [`crate::fastcall`]): the same Rust methods as pyo3's wrappers call, blocking with no
/// timeout, without pyo3's trampoline, argument parsing and downcast. Any other shape
/// (`block`/`timeout` given, keywords, a wrong `self`) goes to pyo3's wrapper.
mod fast {
    use pyo3::ffi;
    use pyo3::prelude::*;

    use super::PyQueue;
    use crate::fastcall::{fastcall_kw, install_method, none, Saved, FASTCALL_KW};

    static PUT: Saved<ffi::PyMethodDef> = Saved::new();
    static GET: Saved<ffi::PyMethodDef> = Saved::new();
    static PUT_BYTES: Saved<ffi::PyMethodDef> = Saved::new();
    static GET_BYTES: Saved<ffi::PyMethodDef> = Saved::new();

    pub(super) fn install(py: Python<'_>) -> PyResult<()> {
        let fast = |f| ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: f,
        };
        install_method::<PyQueue>(py, c"put", FASTCALL_KW, fast(put), &PUT)?;
        install_method::<PyQueue>(py, c"get", FASTCALL_KW, fast(get), &GET)?;
        install_method::<PyQueue>(py, c"put_bytes", FASTCALL_KW, fast(put_bytes), &PUT_BYTES)?;
        install_method::<PyQueue>(py, c"get_bytes", FASTCALL_KW, fast(get_bytes), &GET_BYTES)
    }

    fastcall_kw! {
        /// `put(obj)`: one positional argument, no keywords; else pyo3's.
        fn put = PUT: PyQueue, nargs 1, |py, q, args| {
            let obj = Bound::from_borrowed_ptr(py, *args);
            q.get().put(py, &obj, crate::blocking::BLOCK, None).map(|()| none(py))
        }
    }

    fastcall_kw! {
        /// `put_bytes(data)`: as `put`.
        fn put_bytes = PUT_BYTES: PyQueue, nargs 1, |py, q, args| {
            let data = Bound::from_borrowed_ptr(py, *args);
            q.get().put_bytes(py, &data, crate::blocking::BLOCK, None).map(|()| none(py))
        }
    }

    fastcall_kw! {
        /// `get()`: no arguments; else pyo3's.
        fn get = GET: PyQueue, nargs 0, |py, q, args| {
            q.get().get(py, crate::blocking::BLOCK, None).map(Bound::into_ptr)
        }
    }

    fastcall_kw! {
        /// `get_bytes()`: as `get`.
        fn get_bytes = GET_BYTES: PyQueue, nargs 0, |py, q, args| {
            q.get().get_bytes(py, crate::blocking::BLOCK, None).map(Bound::into_ptr)
        }
    }
}
