//! Zero-copy frames (`shmkit::frames`): `FramePublisher` with its writable `FrameLoan`, and
//! `FrameSubscriber` with its read-only `Frame`.
//!
//! The user header type is not a Python type: a publisher creates a channel with a header
//! described at runtime (`header_name`, `header_size`, `header_align`), and every handle opened
//! from Python attaches to whatever header type the channel records (a Rust `ShmType` such as
//! the camera demo's `FrameInfo`, or a runtime one): `header_type` names it, `Frame.header` is
//! its bytes, `FrameLoan.publish(len, header)` writes them.
//!
//! Buffers: a `Frame` exports its payload read-only; each export holds a reference to the
//! `Frame`, which owns the Rust frame guard, so the slot stays pinned until the last view
//! goes. `Frame.release()` (and leaving its `with` block) with views alive makes no new view
//! but leaves the slot pinned until the last view is released. A `FrameLoan` exports the
//! whole slot writable; `publish` (and abandoning the loan) raise `BufferError` while views of
//! it are alive, so no view outlives the loan.
//!
//! Fork: a subscriber's record (cursor, pin bits) and a publisher's role and outstanding loan
//! belong to the process that attached. The library tells a handle inherited across `fork()`
//! (`SPEC.md` §2.3): in such a child, receiving (the library's `Inherited`), new views of
//! received frames and of the inherited loan (`Frame::is_inherited`, `Loan::is_inherited`:
//! the buffers are raw pointers the library cannot check), and publishing the inherited loan
//! raise `ShmkitError`; dropping the inherited loan there leaves the parent's claimed slot
//! alone (the library's `Loan` does nothing shared in a child).
//!
//! Threads: each handle's mutex is held only to take or return the library handle, or for a
//! call that never waits. A thread waiting in `recv`/`latest`/`loan` takes the handle out of
//! the state for each slice of its wait (GIL released) and puts it back after, so another
//! thread's call on the object never blocks on the mutex with the GIL held. Other receives
//! (loans) wait for the handle to come back (a `Condvar`); the non-waiting calls answer from
//! the state (`try_recv`: `None`); `close()` leaves the drop of a lent handle to the thread
//! that has it.
//!
//! A `fork()` can land while a thread of the parent holds a handle's mutex (taking or
//! returning the handle, GIL released): in the child that mutex stays locked for good and the
//! state it guards may be half-written. So the handle objects remember the process that made
//! them (`ProcessMark`) and, in any other process, never lock, read or drop their state:
//! every call raises `ShmkitError` (inherited) at once, `close()` and leaving a `with` block
//! do nothing, and the state is leaked when the object goes (the fixed facts `name`, `slots`,
//! `max_bytes`, `header_type`, `policy` still answer).

use std::mem::ManuallyDrop;
use std::os::raw::c_int;
use std::ptr::NonNull;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use pyo3::exceptions::{PyBufferError, PyEOFError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView, PyTuple};
use shmkit::frames::{
    Frame, FramesOptions, Loan, LoanError, Mapping, Policy, Publisher, RecvError, Subscriber,
    TryLoanError, TryRecvError,
};

use crate::blocking::{check_timeout, deadline, sliced};
use crate::errors::{frames_attach_error, to_py, ShmkitError};
use shmkit::ProcessMark;

/// Python handles are untyped: the header is bytes of the channel's recorded type.
type Raw = [u8; 0];

fn options() -> FramesOptions<Raw> {
    FramesOptions::<Raw>::new()
}

fn policy_of(p: &str) -> PyResult<Policy> {
    Policy::from_name(p).ok_or_else(|| {
        PyValueError::new_err(format!(
            "policy must be 'reuse-oldest' or 'block', not {p:?}"
        ))
    })
}

fn count(what: &str, v: i64) -> PyResult<u64> {
    u64::try_from(v).map_err(|_| PyValueError::new_err(format!("{what} must be >= 0, not {v}")))
}

fn disconnected(name: &str) -> PyErr {
    PyEOFError::new_err(format!(
        "frame channel {name:?}: the publisher is gone and every published frame was received"
    ))
}

fn inherited(name: &str, what: &str) -> PyErr {
    ShmkitError::new_err(format!(
        "frame channel {name:?}: this {what} was inherited across fork(); it belongs to the \
         parent process (attach a new one in this process)"
    ))
}

fn not_publisher(name: &str) -> PyErr {
    ShmkitError::new_err(format!(
        "frame channel {name:?}: this handle is no longer its publisher (another process took \
         over, or the handle was inherited across fork)"
    ))
}

/// `numpy.frombuffer(memoryview(obj), dtype)` (`dtype` default uint8), reshaped to `shape` when
/// given.
///
/// Over a memoryview, not `obj` itself: NumPy before 1.22.4 releases the buffer it gets from
/// its argument at once and keeps only a reference to the argument, so an array made over
/// `obj` would count as no export, and `release`/`publish`/`close` would let the slot go
/// (reused, or unmapped) under it. The memoryview holds its export until it is freed, which
/// the array (its base, with any NumPy) delays until the array is gone.
fn numpy_view<'py>(
    obj: &Bound<'py, PyAny>,
    dtype: Option<&Bound<'py, PyAny>>,
    shape: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let np = obj.py().import("numpy")?;
    let dtype = match dtype {
        Some(d) => d.clone(),
        None => np.getattr("uint8")?,
    };
    let a = np.call_method1("frombuffer", (PyMemoryView::from(obj)?, dtype))?;
    match shape {
        Some(s) => a.call_method1("reshape", (s,)),
        None => Ok(a),
    }
}

/// The recorded header type as `(name, size, align)`.
fn header_tuple(t: shmkit::frames::HeaderType) -> (String, u64, u64) {
    (t.name, t.size, t.align)
}

/// A handle's process-local state behind a mutex, which only the process that made it
/// touches (module docs): in a `fork()`ed child the mutex may be held for good by a thread of
/// the parent and the state half-written, so there it is never locked, and leaked on drop.
struct ForkLocal<T> {
    born: ProcessMark,
    /// Dropped only in the process that made it (`Drop`).
    state: ManuallyDrop<Mutex<T>>,
}

impl<T> ForkLocal<T> {
    fn new(v: T) -> Self {
        ForkLocal {
            born: ProcessMark::here(),
            state: ManuallyDrop::new(Mutex::new(v)),
        }
    }

    /// Whether this is the process that made it (one load).
    fn here(&self) -> bool {
        self.born.is_here()
    }

    /// The lock; only where [`here`](Self::here) holds (every caller checks it first). A
    /// panic elsewhere while it was locked left the state consistent (fields set one by one).
    fn lock(&self) -> MutexGuard<'_, T> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `_hold_state_lock` (tests): the lock for `d`, GIL released.
    fn hold_for_test(&self, py: Python<'_>, d: std::time::Duration)
    where
        T: Send,
    {
        crate::blocking::allow_threads(py, || {
            let _st = self.lock();
            std::thread::sleep(d);
        });
    }
}

impl<T> Drop for ForkLocal<T> {
    fn drop(&mut self) {
        if self.born.is_here() {
            // SAFETY: dropped once, here; the field is not used after.
            unsafe { ManuallyDrop::drop(&mut self.state) };
        }
        // Else inherited across fork(): leaked (module docs).
    }
}

// ---------------------------------------------------------------------------------------------
// Subscriber side

/// The receiving end of a frame channel (`shmkit::frames::Subscriber`): frames are received
/// in place, pinned and read-only. Attaches to the channel whatever its header type.
///
/// The mutex is held only to take or return the handle or for a call that never waits, never
/// across a wait (see [`SubState`]), so no call on the handle blocks on it with the GIL held
/// while another thread waits, and a `fork()` during such a wait leaves it unlocked.
#[pyclass(module = "shmkit", name = "FrameSubscriber", frozen)]
pub(crate) struct PyFrameSubscriber {
    name: String,
    /// The channel's fixed geometry and header type, read at attach.
    slots: u64,
    max_bytes: u64,
    header: (String, u64, u64),
    /// Touched only in the process that attached (module docs).
    state: ForkLocal<SubState>,
    /// Notified when the handle comes back from a wait (or the subscriber is closed).
    returned: Condvar,
}

/// A subscriber's handle and what the other calls read while a thread waits with it.
struct SubState {
    /// `None` while lent to a waiting thread (`lent`), or once closed. In a forked child that
    /// inherited it, the library refuses every receive (`Inherited`): the record (cursor, pin
    /// bits) is the parent's, so frames received through it would not be pinned for the child.
    sub: Option<Subscriber<Raw>>,
    /// A thread took the handle to wait for a frame with it (its own, not under this lock):
    /// other receives wait for it to come back, `close()` leaves the drop to that thread.
    lent: bool,
    closed: bool,
    /// The handle's `lost` and `last_seq` when it was last returned.
    lost: u64,
    last_seq: u64,
}

/// How a wait for a frame ended without one.
enum Ended {
    Disconnected,
    Inherited,
    Closed,
}

impl PyFrameSubscriber {
    /// The state's lock, in the process that made this object only (checked by
    /// [`open_state`](Self::open_state), which every call goes through first).
    fn lock(&self) -> MutexGuard<'_, SubState> {
        self.state.lock()
    }

    /// The state: `ShmkitError` in a `fork()`ed child (without touching it), `ValueError` once
    /// closed.
    fn open_state(&self) -> PyResult<MutexGuard<'_, SubState>> {
        if !self.state.here() {
            return Err(inherited(&self.name, "subscriber"));
        }
        let st = self.lock();
        if st.closed {
            return Err(self.closed());
        }
        Ok(st)
    }

    fn closed(&self) -> PyErr {
        PyValueError::new_err(format!("frame subscriber of {:?} is closed", self.name))
    }

    fn wrap(s: &Subscriber<Raw>, f: Frame<Raw>) -> PyFrame {
        PyFrame {
            seq: f.seq(),
            len: f.len(),
            slot: f.slot(),
            mono_ns: f.mono_ns(),
            real_ns: f.real_ns(),
            header: f.header_bytes(),
            lost: s.lost(),
            _mapping: f.mapping(),
            pin: Mutex::new(Pin {
                frame: Some(f),
                released: false,
                exports: 0,
            }),
        }
    }

    /// One non-blocking receive: `Ok(None)` when there is no frame, or another thread of
    /// this process is waiting for one with the handle.
    fn try_get(&self, latest: bool) -> PyResult<Option<PyFrame>> {
        let mut st = self.open_state()?;
        let Some(s) = st.sub.as_mut() else {
            return Ok(None); // lent to a thread of this process waiting for a frame
        };
        let r = if latest { s.try_latest() } else { s.try_recv() };
        match r {
            Ok(f) => Ok(Some(Self::wrap(s, f))),
            Err(TryRecvError::Disconnected) => Err(disconnected(&self.name)),
            Err(TryRecvError::Inherited) => Err(inherited(&self.name, "subscriber")),
            Err(TryRecvError::Empty) => Ok(None),
        }
    }

    /// One slice of a wait (GIL released): take the handle (waiting for a thread that has it
    /// to give it back), wait for a frame with it until `until` without the lock, and return
    /// it (dropping it if the subscriber was closed meanwhile). `None`: nothing yet. Only
    /// after [`try_get`](Self::try_get) found this the process that made the object.
    fn wait_slice(&self, latest: bool, until: Instant) -> Option<Result<PyFrame, Ended>> {
        let mut st = self.lock();
        let mut s = loop {
            if st.closed {
                return Some(Err(Ended::Closed));
            }
            if let Some(s) = st.sub.take() {
                st.lent = true;
                break s;
            }
            let left = until.checked_duration_since(Instant::now())?;
            st = match self.returned.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        };
        drop(st);
        let r = if latest {
            s.latest_deadline(until)
        } else {
            s.recv_deadline(until)
        };
        let got = match r {
            Ok(f) => Some(Ok(Self::wrap(&s, f))),
            Err(RecvError::Disconnected) => Some(Err(Ended::Disconnected)),
            Err(RecvError::Inherited) => Some(Err(Ended::Inherited)),
            Err(RecvError::Timeout) => None,
        };
        let mut st = self.lock();
        st.lent = false;
        st.lost = s.lost();
        st.last_seq = s.last_seq();
        let closed = st.closed;
        if !closed {
            st.sub = Some(s);
        }
        drop(st);
        self.returned.notify_all();
        // A frame received before the close is returned (it keeps the mapping); else the
        // close is what ended the wait.
        match got {
            None if closed => Some(Err(Ended::Closed)),
            got => got,
        }
    }

    /// One non-blocking attempt with the GIL held, then the sliced wait.
    fn get(&self, py: Python<'_>, latest: bool, timeout: Option<f64>) -> PyResult<PyFrame> {
        check_timeout(timeout)?;
        if let Some(f) = self.try_get(latest)? {
            return Ok(f);
        }
        // The clock is read only now that the first attempt failed.
        let got = sliced(py, deadline(timeout)?, |until| {
            self.wait_slice(latest, until)
        })?;
        match got {
            Some(Ok(f)) => Ok(f),
            Some(Err(Ended::Inherited)) => Err(inherited(&self.name, "subscriber")),
            Some(Err(Ended::Closed)) => Err(self.closed()),
            Some(Err(Ended::Disconnected)) => Err(disconnected(&self.name)),
            None => Err(PyTimeoutError::new_err(format!(
                "no frame on {:?} within the timeout",
                self.name
            ))),
        }
    }
}

impl PyFrameSubscriber {
    /// A fixed fact of the channel: `ValueError` once closed (not checked in a `fork()`ed
    /// child, where the state is not touched).
    fn fact<T>(&self, v: T) -> PyResult<T> {
        if self.state.here() {
            drop(self.open_state()?);
        }
        Ok(v)
    }
}

impl PyFrameSubscriber {
    /// `_hold_state_lock` (tests).
    pub(crate) fn hold_for_test(&self, py: Python<'_>, d: std::time::Duration) -> PyResult<()> {
        drop(self.open_state()?);
        self.state.hold_for_test(py, d);
        Ok(())
    }
}

#[pymethods]
impl PyFrameSubscriber {
    /// Attach to the frame channel `name` as a subscriber; `history` also receives up to that
    /// many frames published before attaching (still in their slots).
    #[new]
    #[pyo3(signature = (name, *, history = 0))]
    fn new(name: &str, history: i64) -> PyResult<Self> {
        let s = options()
            .any_header()
            .history(count("history", history)?)
            .subscriber(name)
            .map_err(frames_attach_error)?;
        Ok(PyFrameSubscriber {
            name: name.to_owned(),
            slots: s.slots(),
            max_bytes: s.max_bytes(),
            header: header_tuple(s.header_type()),
            state: ForkLocal::new(SubState {
                lost: s.lost(),
                last_seq: s.last_seq(),
                sub: Some(s),
                lent: false,
                closed: false,
            }),
            returned: Condvar::new(),
        })
    }

    /// The same as the constructor.
    #[staticmethod]
    #[pyo3(signature = (name, *, history = 0))]
    fn open(name: &str, history: i64) -> PyResult<Self> {
        Self::new(name, history)
    }

    /// The channel's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The next frame in order, waiting at most `timeout` seconds (`None`: no limit):
    /// `TimeoutError` then; `EOFError` once the publisher is gone and every frame was
    /// received. The GIL is released while waiting; Ctrl-C interrupts. Two threads receiving
    /// at once take turns with the handle: each frame goes to one of them.
    #[pyo3(signature = (timeout = None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<PyFrame> {
        self.get(py, false, timeout)
    }

    /// The newest frame, skipping older ones (counted in `lost`), waiting as `recv` does.
    #[pyo3(signature = (timeout = None))]
    fn latest(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<PyFrame> {
        self.get(py, true, timeout)
    }

    /// The next frame if one is there, else `None` (never waits; also `None` while another
    /// thread waits in `recv`/`latest`); `EOFError` as `recv`.
    fn try_recv(&self) -> PyResult<Option<PyFrame>> {
        self.try_get(false)
    }

    /// The newest frame if there is a new one, else `None` (never waits).
    fn try_latest(&self) -> PyResult<Option<PyFrame>> {
        self.try_get(true)
    }

    /// Frames this subscriber missed (overwritten before it received them, or skipped by
    /// `latest`); while another thread waits in `recv`, as of its last receive.
    #[getter]
    fn lost(&self) -> PyResult<u64> {
        let st = self.open_state()?;
        Ok(st.sub.as_ref().map_or(st.lost, Subscriber::lost))
    }

    /// The sequence number of the last frame received (0: none yet).
    #[getter]
    fn last_seq(&self) -> PyResult<u64> {
        let st = self.open_state()?;
        Ok(st.sub.as_ref().map_or(st.last_seq, Subscriber::last_seq))
    }

    /// Slots in the channel.
    #[getter]
    fn slots(&self) -> PyResult<u64> {
        self.fact(self.slots)
    }

    /// The largest frame, in bytes.
    #[getter]
    fn max_bytes(&self) -> PyResult<u64> {
        self.fact(self.max_bytes)
    }

    /// The channel's user header type: `(name, size, align)`.
    #[getter]
    fn header_type(&self) -> PyResult<(String, u64, u64)> {
        self.fact(self.header.clone())
    }

    /// Detach. Frames already received stay valid (each keeps the mapping). A thread waiting
    /// in `recv` meanwhile gets `ValueError` within a slice of its wait (50 ms), and the
    /// handle detaches then. Closing twice is harmless; in a `fork()`ed child that inherited
    /// the object it does nothing (the handle is the parent's).
    fn close(&self) {
        if !self.state.here() {
            return;
        }
        let mut st = self.lock();
        st.closed = true;
        let s = st.sub.take();
        drop(st);
        drop(s);
        self.returned.notify_all();
    }

    /// Remove the channel's name from the system (handles keep working).
    fn unlink(&self) -> PyResult<()> {
        crate::named::unlink(&self.name)
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Closes (does not unlink).
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) {
        self.close()
    }

    fn __repr__(&self) -> String {
        format!("<shmkit.FrameSubscriber name={:?}>", self.name)
    }

    /// Pickled by name: unpickling is `FrameSubscriber.open(name)`, a new subscriber of the
    /// same channel in the unpickling process (its own record and cursor: it receives the
    /// frames published from then on, not this one's position or history).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        Ok((slf.get_type().getattr("open")?, (slf.get().name.clone(),)))
    }
}

/// A received frame: its slot stays pinned (the publisher does not reuse it) while this
/// object, or any view of it (memoryview, numpy array), is alive. Its payload is exported
/// read-only through the buffer protocol: `memoryview(frame)`, `numpy.asarray(frame)`,
/// `frame.array(dtype, shape)`, all zero-copy.
#[pyclass(module = "shmkit", name = "Frame")]
pub(crate) struct PyFrame {
    pin: Mutex<Pin>,
    /// The channel stays mapped until this object goes, also once the frame is released (and
    /// its subscriber and publisher closed): NumPy before 1.22.4 keeps a reference to this
    /// object for an array of `numpy.frombuffer(frame)` but no buffer export, so the array
    /// can still point into the slot after `release()` (it then reads whatever the slot holds
    /// now, never unmapped memory).
    _mapping: Mapping,
    seq: u64,
    len: usize,
    slot: u64,
    mono_ns: u64,
    real_ns: u64,
    header: Vec<u8>,
    lost: u64,
}

/// A frame's pin (only touched with the GIL held: the mutex is never contended).
struct Pin {
    /// The library's frame guard: `None` once the slot is unpinned, which happens when the
    /// frame was released and no export is alive (by `release`, or by the last export's
    /// release), or when the object goes.
    frame: Option<Frame<Raw>>,
    /// `release()` was called (or its `with` block ended): no new export.
    released: bool,
    /// Live buffer exports.
    exports: usize,
}

impl PyFrame {
    fn pin(&self) -> MutexGuard<'_, Pin> {
        // A panic while the mutex was held (none is possible: only field updates) would leave
        // the state as it was; use it as it is.
        self.pin.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl PyFrame {
    /// The frame's sequence number (from 1).
    #[getter]
    fn seq(&self) -> u64 {
        self.seq
    }

    /// Payload length in bytes.
    #[getter]
    fn len(&self) -> usize {
        self.len
    }

    /// The slot it occupies.
    #[getter]
    fn slot(&self) -> u64 {
        self.slot
    }

    /// `CLOCK_MONOTONIC` at publish, ns (compare with `time.monotonic_ns()`).
    #[getter]
    fn mono_ns(&self) -> u64 {
        self.mono_ns
    }

    /// `CLOCK_REALTIME` at publish, ns (compare with `time.time_ns()`).
    #[getter]
    fn real_ns(&self) -> u64 {
        self.real_ns
    }

    /// The user header's bytes (the channel's header size; see `header_type`).
    #[getter]
    fn header<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.header)
    }

    /// The subscriber's `lost` count when this frame was received.
    #[getter]
    fn lost(&self) -> u64 {
        self.lost
    }

    /// Whether it was released (`release()`, or its `with` block ended): no new view can be
    /// made. The slot stays pinned while views made before are alive.
    #[getter]
    fn released(&self) -> bool {
        self.pin().released
    }

    /// A read-only numpy array over the payload, zero-copy: `numpy.frombuffer(memoryview(frame),
    /// dtype)`, reshaped to `shape` if given. The array keeps the slot pinned (it counts as an
    /// export) until it is gone, even after `release`.
    #[pyo3(signature = (dtype = None, shape = None))]
    fn array<'py>(
        slf: &Bound<'py, Self>,
        dtype: Option<&Bound<'py, PyAny>>,
        shape: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        numpy_view(slf.as_any(), dtype, shape)
    }

    /// Release the frame: no new view of it can be made, and its slot is unpinned now, or,
    /// if views made before (memoryviews, numpy arrays) are alive, when the last of them is
    /// released. Releasing twice is harmless. Without it, the slot is unpinned when the frame
    /// and its last view are gone.
    fn release(&self) {
        let mut p = self.pin();
        p.released = true;
        if p.exports == 0 {
            p.frame = None;
        }
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Releases (as `release`: never raises, so an exception of the block goes on).
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) {
        self.release()
    }

    fn __len__(&self) -> usize {
        self.len
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmkit.Frame seq={} len={}{}>",
            self.seq,
            self.len,
            if self.pin().released { " released" } else { "" }
        )
    }

    /// Export the payload, read-only.
    ///
    /// # Safety
    ///
    /// Called by Python with a valid `view` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.borrow();
        let mut p = this.pin();
        let f = match &p.frame {
            Some(f) if !p.released => f,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "frame {} was released",
                    this.seq
                )))
            }
        };
        // The pin is the receiving process's: a forked child exports no new view (the
        // parent's release would let the slot be overwritten under it). The library empties
        // `bytes()` there; the export below takes the raw pointer, so it asks.
        if f.is_inherited() {
            return Err(ShmkitError::new_err(format!(
                "frame {} was received before fork(): its pin is the parent's, which may \
                 release it while this process reads; copy it (bytes(frame)) before forking",
                this.seq
            )));
        }
        // SAFETY: the pinned slot's payload, in the mapping the guard keeps alive; the guard
        // lives while the export does (`view.obj` holds this object, and neither `release`
        // nor anything else drops the guard while `exports` is non-zero); exported read-only
        // (the mapping is PROT_READ).
        unsafe {
            crate::buffer::fill(
                view,
                slf.as_any(),
                f.as_ptr().cast_mut(),
                f.len(),
                true,
                flags,
            )
        }?;
        p.exports += 1;
        Ok(())
    }

    /// One export fewer; the last one of a released frame unpins its slot.
    ///
    /// # Safety
    ///
    /// Called by Python for a `view` this object filled.
    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {
        let mut p = self.pin();
        p.exports = p.exports.saturating_sub(1);
        if p.exports == 0 && p.released {
            p.frame = None;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Publisher side

/// A publisher and its one outstanding loan, which borrows it.
struct PubState {
    /// Declared first: dropped before the publisher it borrows (also done in `Drop`).
    loan: Option<Loan<'static, Raw>>,
    /// Which loan `loan` is (a `FrameLoan` object ends only its own).
    generation: u64,
    /// Buffer exports of the outstanding loan.
    exports: usize,
    /// The publisher's `next_seq` (kept here: read while a loan borrows the publisher).
    next_seq: u64,
    /// The publisher, from `Box::leak`; `None` once closed, or while lent to a thread
    /// waiting in `loan()` (`lent`). Never touched while a loan (which borrows it) is
    /// outstanding. In a child that inherited this state, the publisher role and the
    /// outstanding loan's claimed slot are the parent's: the library's handles refuse to loan
    /// or publish there, and change nothing shared when dropped.
    publisher: Option<NonNull<Publisher<Raw>>>,
    /// A thread took the publisher to wait for a free slot with it, without this state's
    /// lock: other loans wait for it (or give `None` without waiting), and `close()` leaves
    /// freeing it to that thread.
    lent: bool,
    closed: bool,
}

// SAFETY: `Publisher<Raw>` is `Send`, and `Loan` is a `&mut` of it; the raw pointer is that
// box, owned by this state (moved with it).
unsafe impl Send for PubState {}

impl PubState {
    /// Whether the outstanding loan was inherited across `fork()` (then its slot is the
    /// parent's claim, which the parent may still fill and publish).
    fn loan_inherited(&self) -> bool {
        self.loan.as_ref().is_some_and(Loan::is_inherited)
    }

    /// Drop the outstanding loan: its slot is emptied (in a child that inherited it, the
    /// library's `Loan` leaves the parent's claim alone).
    fn drop_loan(&mut self) {
        drop(self.loan.take());
    }

    /// End the outstanding loan without publishing (its slot is emptied).
    fn abandon(&mut self) -> PyResult<()> {
        if self.exports > 0 {
            return Err(PyBufferError::new_err(format!(
                "the outstanding loan has {} exported buffer(s) (memoryview, numpy array, ...): \
                 release them first",
                self.exports
            )));
        }
        self.drop_loan();
        Ok(())
    }

    fn close(&mut self) -> PyResult<()> {
        self.abandon()?;
        // If lent, the waiting thread frees it when it comes back.
        self.closed = true;
        if let Some(p) = self.publisher.take() {
            // SAFETY: from `Box::leak`, freed once (the field is cleared); no loan.
            drop(unsafe { Box::from_raw(p.as_ptr()) });
        }
        Ok(())
    }
}

impl Drop for PubState {
    fn drop(&mut self) {
        // No export can be alive: each holds a reference to a `FrameLoan`, which holds the
        // publisher object that owns this state.
        self.drop_loan();
        if let Some(p) = self.publisher.take() {
            // SAFETY: as in `close`.
            drop(unsafe { Box::from_raw(p.as_ptr()) });
        }
    }
}

/// The publishing end of a frame channel (`shmkit::frames::Publisher`): `loan()` a slot,
/// write the frame into it (`FrameLoan`), `publish` it. One publisher per channel.
#[pyclass(module = "shmkit", name = "FramePublisher", frozen)]
pub(crate) struct PyFramePublisher {
    name: String,
    /// The channel's fixed geometry, read at attach (so that properties never touch the
    /// publisher while a loan borrows it).
    slots: u64,
    max_bytes: u64,
    policy: Policy,
    header: (String, u64, u64),
    /// The channel stays mapped until this object goes, also once closed: an array of
    /// `numpy.frombuffer(loan)` (NumPy before 1.22.4: no buffer export, a reference to the
    /// loan, which holds this object) can outlive the loan and the publisher role (see
    /// [`PyFrame`]'s).
    _mapping: Mapping,
    /// Held only to take or return the publisher or for a call that never waits, never
    /// across a wait (see [`PubState::lent`]); touched only in the process that attached.
    state: ForkLocal<PubState>,
    /// Notified when the publisher comes back from a wait (or is closed).
    returned: Condvar,
}

impl PyFramePublisher {
    fn wrap(p: Publisher<Raw>) -> Self {
        PyFramePublisher {
            name: p.name().to_owned(),
            slots: p.slots(),
            max_bytes: p.max_bytes(),
            policy: p.policy(),
            header: header_tuple(p.header_type()),
            _mapping: p.mapping(),
            state: ForkLocal::new(PubState {
                next_seq: p.next_seq(),
                loan: None,
                generation: 0,
                exports: 0,
                publisher: Some(NonNull::from(Box::leak(Box::new(p)))),
                lent: false,
                closed: false,
            }),
            returned: Condvar::new(),
        }
    }

    /// One slice of a wait in `loan()` (GIL released): take the publisher (waiting for a
    /// thread that has it to give it back), wait for a free slot with it until `until`
    /// without the lock, and put it back with the loan (freeing it instead if the publisher
    /// was closed meanwhile). `None`: no slot yet. Only after `try_loan` found this the
    /// process that made the object.
    fn loan_slice(&self, until: Instant) -> Option<Result<Stored, LoanEnd>> {
        let mut st = self.lock();
        let ptr = loop {
            if st.closed {
                return Some(Err(LoanEnd::Closed));
            }
            // Loaned by another thread meanwhile: that thread's loan stands.
            if st.loan.is_some() {
                return Some(Err(LoanEnd::LoanedElsewhere));
            }
            if let Some(p) = st.publisher.take() {
                st.lent = true;
                break SendPtr(p);
            }
            let left = until.checked_duration_since(Instant::now())?;
            st = match self.returned.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        };
        drop(st);
        // SAFETY: the box is live and this thread has it to itself: taken out of the state
        // (`lent`), nobody else uses or frees it until it is put back; no loan borrows it
        // (`loan` was `None`, and none can be made without the publisher).
        let p = unsafe { &mut *ptr.get().as_ptr() };
        let r = p.loan_deadline(until);
        let mut st = self.lock();
        st.lent = false;
        let got = if st.closed {
            drop(r);
            // SAFETY: from `Box::leak`; `close()` left it to this thread (it was lent), and
            // the loan borrowing it was just dropped.
            drop(unsafe { Box::from_raw(ptr.get().as_ptr()) });
            Some(Err(LoanEnd::Closed))
        } else {
            st.publisher = Some(ptr.get());
            match r {
                Ok(l) => Some(Ok(store(&mut st, l))),
                Err(LoanError::Disconnected) => Some(Err(LoanEnd::NotPublisher)),
                Err(_) => None,
            }
        };
        drop(st);
        self.returned.notify_all();
        got
    }

    /// The state's lock, in the process that made this object only (see [`state`](Self::state)).
    fn lock(&self) -> MutexGuard<'_, PubState> {
        self.state.lock()
    }

    /// The state: `ShmkitError` in a `fork()`ed child, without touching it (module docs).
    fn state(&self) -> PyResult<MutexGuard<'_, PubState>> {
        if !self.state.here() {
            return Err(inherited(&self.name, "publisher"));
        }
        Ok(self.lock())
    }

    fn closed(&self) -> PyErr {
        PyValueError::new_err(format!("frame publisher of {:?} is closed", self.name))
    }

    /// Make the Python object of the loan `store` returned.
    fn loaned(slf: &Bound<'_, Self>, (generation, slot, ptr, len): Stored) -> PyFrameLoan {
        PyFrameLoan {
            publisher: slf.clone().unbind(),
            generation,
            slot,
            ptr,
            len,
        }
    }
}

/// A stored loan: generation, slot, buffer address and length.
type Stored = (u64, u64, usize, usize);

/// How a wait in `loan()` ended without a loan.
enum LoanEnd {
    /// The handle is no longer the channel's publisher (or was inherited across `fork()`).
    NotPublisher,
    Closed,
    LoanedElsewhere,
}

/// Keep `loan` as the outstanding loan.
fn store(st: &mut PubState, mut loan: Loan<'_, Raw>) -> Stored {
    let buf = loan.as_mut_slice();
    let (ptr, len) = (buf.as_mut_ptr() as usize, buf.len());
    let slot = loan.slot();
    // SAFETY: the loan borrows the boxed publisher, which outlives it: the loan is stored in
    // the same state, dropped before the box is freed (`PubState::close`/`drop`), and the
    // publisher is not used mutably otherwise while it is outstanding.
    let loan: Loan<'static, Raw> = unsafe { std::mem::transmute(loan) };
    st.generation += 1;
    st.loan = Some(loan);
    (st.generation, slot, ptr, len)
}

/// Only the `&'static mut` the loan borrows: `Send` because the publisher is.
struct SendPtr(NonNull<Publisher<Raw>>);
// SAFETY: see `PubState`.
unsafe impl Send for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so that closures capture the whole `Send` wrapper).
    fn get(&self) -> NonNull<Publisher<Raw>> {
        self.0
    }
}

impl PyFramePublisher {
    /// `_hold_state_lock` (tests).
    pub(crate) fn hold_for_test(&self, py: Python<'_>, d: std::time::Duration) -> PyResult<()> {
        drop(self.state()?);
        self.state.hold_for_test(py, d);
        Ok(())
    }
}

#[pymethods]
impl PyFramePublisher {
    /// Create the frame channel `name` and attach as its publisher: `slots` slots of
    /// `max_bytes` each, up to `subscribers` subscribers, `policy` `'reuse-oldest'` (a slow
    /// subscriber loses frames) or `'block'` (lossless; the slowest subscriber sets the pace),
    /// and a user header of `header_size` bytes recorded as `header_name`, aligned to
    /// `header_align` (1, 2, 4 or 8, dividing the size; `None`: the largest of those that
    /// divides it, so a header of any size takes the default). `lifetime`: `'persistent'`
    /// (`shmkit gc` never removes it) or `'owned'` (`gc` removes it once this process is dead
    /// and no process maps it). `FileExistsError` if the name is taken.
    #[staticmethod]
    #[pyo3(signature = (name, *, slots = 4, max_bytes = 1048576, subscribers = 16,
        policy = "reuse-oldest", header_name = "bytes", header_size = 0, header_align = None,
        mode = 0o600, lifetime = "persistent"))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        name: &str,
        slots: i64,
        max_bytes: i64,
        subscribers: i64,
        policy: &str,
        header_name: &str,
        header_size: i64,
        header_align: Option<i64>,
        mode: u32,
        lifetime: &str,
    ) -> PyResult<Self> {
        let size = count("header_size", header_size)?;
        // An explicit alignment goes to the library as given (which checks that it divides
        // the size); none is the largest power of two up to 8 that divides the size (1 for
        // no header, as `[u8; 0]`, the Rust handles' untyped header, has).
        let align = match header_align {
            Some(a @ (1 | 2 | 4 | 8)) => a as u64,
            Some(a) => {
                return Err(PyValueError::new_err(format!(
                    "header_align must be 1, 2, 4 or 8, not {a}"
                )))
            }
            None if size == 0 => 1,
            None => 1 << size.trailing_zeros().min(3),
        };
        let p = options()
            .header_type(header_name, size, align)
            .map_err(to_py)?
            .slots(count("slots", slots)?)
            .max_bytes(count("max_bytes", max_bytes)?)
            .subscribers(count("subscribers", subscribers)?)
            .policy(policy_of(policy)?)
            .mode(mode)
            .lifetime(crate::named::lifetime(lifetime)?)
            .create(name)
            .map_err(frames_attach_error)?;
        Ok(Self::wrap(p))
    }

    /// Attach to the existing channel `name` as its publisher (taking over from a dead one),
    /// whatever its header type.
    #[staticmethod]
    fn open(name: &str) -> PyResult<Self> {
        let p = options()
            .any_header()
            .publisher(name)
            .map_err(frames_attach_error)?;
        Ok(Self::wrap(p))
    }

    /// The channel's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Slots in the channel.
    #[getter]
    fn slots(&self) -> u64 {
        self.slots
    }

    /// The largest frame, in bytes (every loan's buffer is this long).
    #[getter]
    fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// `'reuse-oldest'` or `'block'`.
    #[getter]
    fn policy(&self) -> String {
        self.policy.to_string()
    }

    /// The sequence number the next published frame gets.
    #[getter]
    fn next_seq(&self) -> PyResult<u64> {
        Ok(self.state()?.next_seq)
    }

    /// The channel's user header type: `(name, size, align)`.
    #[getter]
    fn header_type(&self) -> (String, u64, u64) {
        self.header.clone()
    }

    /// Loan a slot no subscriber holds, waiting at most `timeout` seconds while every slot is
    /// held (`None`: no limit; `TimeoutError` then). A previous loan not yet published is
    /// abandoned (its slot emptied; `BufferError` if views of it are alive). The GIL is
    /// released while waiting; Ctrl-C interrupts.
    #[pyo3(signature = (timeout = None))]
    fn loan(slf: &Bound<'_, Self>, py: Python<'_>, timeout: Option<f64>) -> PyResult<PyFrameLoan> {
        let this = slf.get();
        check_timeout(timeout)?;
        if let Some(l) = Self::try_loan(slf)? {
            return Ok(l);
        }
        // The clock is read only now that the first attempt failed.
        let got = sliced(py, deadline(timeout)?, |until| this.loan_slice(until))?;
        match got {
            Some(Ok(stored)) => Ok(Self::loaned(slf, stored)),
            Some(Err(LoanEnd::NotPublisher)) => Err(not_publisher(&this.name)),
            Some(Err(LoanEnd::Closed)) => Err(this.closed()),
            Some(Err(LoanEnd::LoanedElsewhere)) => Err(PyValueError::new_err(format!(
                "frame publisher of {:?} was loaned by another thread while waiting",
                this.name
            ))),
            None => Err(PyTimeoutError::new_err(format!(
                "no free slot in {:?} within the timeout",
                this.name
            ))),
        }
    }

    /// Loan a slot without waiting: `None` if every slot is held (or another thread is
    /// waiting in `loan()`). A previous loan not yet published is abandoned, as in `loan`.
    fn try_loan(slf: &Bound<'_, Self>) -> PyResult<Option<PyFrameLoan>> {
        let this = slf.get();
        let mut st = this.state()?;
        st.abandon()?;
        if st.closed {
            return Err(this.closed());
        }
        let Some(ptr) = st.publisher else {
            return Ok(None); // lent to a thread of this process waiting in `loan()`
        };
        // SAFETY: the box is live and not lent (the state's lock is held; it is freed or lent
        // only under it), no loan borrows it (abandoned above).
        let p = unsafe { &mut *ptr.as_ptr() };
        match p.try_loan() {
            Ok(l) => {
                let stored = store(&mut st, l);
                Ok(Some(Self::loaned(slf, stored)))
            }
            Err(TryLoanError::Disconnected) => Err(not_publisher(&this.name)),
            Err(_) => Ok(None),
        }
    }

    /// Detach (subscribers see `EOFError` once they have received every frame). An
    /// outstanding loan is abandoned (`BufferError` if views of it are alive). Closing twice
    /// is harmless; in a `fork()`ed child that inherited the object it does nothing (the
    /// publisher role is the parent's).
    fn close(&self) -> PyResult<()> {
        if !self.state.here() {
            return Ok(());
        }
        self.lock().close()
    }

    /// Remove the channel's name from the system (handles keep working).
    fn unlink(&self) -> PyResult<()> {
        crate::named::unlink(&self.name)
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Closes (does not unlink).
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.close()
    }

    fn __repr__(&self) -> String {
        format!("<shmkit.FramePublisher name={:?}>", self.name)
    }

    /// Pickled by name: unpickling is `FramePublisher.open(name)`, which takes over as the
    /// channel's one publisher, so it works once this publisher is closed (or its process is
    /// dead): `ShmkitError` (publisher busy) while it is attached.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        Ok((slf.get_type().getattr("open")?, (slf.get().name.clone(),)))
    }
}

/// A loaned slot of a `FramePublisher`: write the frame into it through the buffer protocol
/// (`memoryview(loan)`, `numpy.asarray(loan)`, `loan.array(dtype, shape)`: writable,
/// zero-copy, `max_bytes` long), then `publish(len, header)`. Views must be gone before
/// `publish` (it raises `BufferError` otherwise), so none outlives the loan. Dropped (or
/// superseded by the next `loan()`) without publishing, its slot is emptied.
#[pyclass(module = "shmkit", name = "FrameLoan", frozen)]
pub(crate) struct PyFrameLoan {
    publisher: Py<PyFramePublisher>,
    generation: u64,
    slot: u64,
    /// The slot's first byte and `max_bytes`.
    ptr: usize,
    len: usize,
}

impl PyFrameLoan {
    /// The publisher's state, if this is still its outstanding loan.
    fn current<'a>(&self, p: &'a PyFramePublisher) -> PyResult<MutexGuard<'a, PubState>> {
        let st = p.state().map_err(|_| inherited(&p.name, "loan"))?;
        if st.loan_inherited() {
            return Err(inherited(&p.name, "loan"));
        }
        if st.loan.is_none() || st.generation != self.generation {
            return Err(PyValueError::new_err(format!(
                "this loan of {:?} was published or abandoned",
                p.name
            )));
        }
        Ok(st)
    }
}

#[pymethods]
impl PyFrameLoan {
    /// The loaned slot.
    #[getter]
    fn slot(&self) -> u64 {
        self.slot
    }

    /// The buffer's length: the channel's `max_bytes`.
    fn __len__(&self) -> usize {
        self.len
    }

    /// Whether it can still be written and published.
    #[getter]
    fn active(&self, py: Python<'_>) -> bool {
        self.current(self.publisher.bind(py).get()).is_ok()
    }

    /// A writable numpy array over the slot, zero-copy: `numpy.frombuffer(memoryview(loan),
    /// dtype)`, reshaped to `shape` if given. Delete it before `publish` (it counts as an
    /// export: `publish` raises `BufferError` while it lives).
    #[pyo3(signature = (dtype = None, shape = None))]
    fn array<'py>(
        slf: &Bound<'py, Self>,
        dtype: Option<&Bound<'py, PyAny>>,
        shape: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        numpy_view(slf.as_any(), dtype, shape)
    }

    /// Publish the slot's first `len` bytes as the next frame with the user header `header`
    /// (at most the channel's header size; the rest is zeros); returns its sequence number.
    /// `BufferError` while views of the loan are alive; `ValueError` if `len` exceeds
    /// `max_bytes` or the header is too long (then the loan is abandoned, nothing published),
    /// or if the loan was already published or abandoned.
    #[pyo3(signature = (len, header = b"".as_slice()), text_signature = "(self, /, len, header=b'')")]
    fn publish(&self, py: Python<'_>, len: i64, header: &[u8]) -> PyResult<u64> {
        let p = self.publisher.bind(py).get();
        let mut st = self.current(p)?;
        if st.exports > 0 {
            return Err(PyBufferError::new_err(format!(
                "cannot publish: {} exported buffer(s) (memoryview, numpy array, ...) of the loan are alive; delete them first (no view may outlive the loan)",
                st.exports
            )));
        }
        let len = usize::try_from(len)
            .map_err(|_| PyValueError::new_err(format!("len must be >= 0, not {len}")))?;
        let loan = st.loan.take().expect("checked current");
        let seq = loan.publish_header_bytes(len, header).map_err(to_py)?;
        st.next_seq = seq + 1;
        Ok(seq)
    }

    /// Abandon the loan without publishing (its slot is emptied). `BufferError` while views
    /// are alive; harmless if already published or abandoned.
    fn abandon(&self, py: Python<'_>) -> PyResult<()> {
        let p = self.publisher.bind(py).get();
        match self.current(p) {
            Ok(mut st) => st.abandon(),
            Err(_) => Ok(()),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<shmkit.FrameLoan slot={} len={}{}>",
            self.slot,
            self.len,
            if self.active(py) { "" } else { " done" }
        )
    }

    /// Export the slot, writable.
    ///
    /// # Safety
    ///
    /// Called by Python with a valid `view` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        let p = this.publisher.bind(slf.py()).get();
        let mut st = this.current(p)?;
        // SAFETY: the outstanding loan's slot in the publisher's writable mapping; the loan
        // (and so the claim and the mapping) lives while `exports` is non-zero: `publish`,
        // `abandon`, the next `loan` and `close` refuse then, and `view.obj` keeps this object
        // and through it the publisher alive.
        unsafe {
            crate::buffer::fill(
                view,
                slf.as_any(),
                this.ptr as *mut u8,
                this.len,
                false,
                flags,
            )
        }?;
        st.exports += 1;
        Ok(())
    }

    /// One export fewer.
    ///
    /// # Safety
    ///
    /// Called by Python for a `view` this object filled.
    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {
        Python::with_gil(|py| {
            // In a fork()ed child (a view inherited from the parent) the count is the
            // parent's: left alone.
            if let Ok(mut st) = self.publisher.bind(py).get().state() {
                st.exports = st.exports.saturating_sub(1);
            }
        });
    }
}

impl Drop for PyFrameLoan {
    fn drop(&mut self) {
        Python::with_gil(|py| {
            // In a fork()ed child the loan is the parent's: left alone.
            let Ok(mut st) = self.publisher.bind(py).get().state() else {
                return;
            };
            if st.loan.is_some() && st.generation == self.generation && st.exports == 0 {
                st.drop_loan();
            }
        });
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFramePublisher>()?;
    m.add_class::<PyFrameLoan>()?;
    m.add_class::<PyFrameSubscriber>()?;
    m.add_class::<PyFrame>()
}
