"""shmkit: named, crash-safe shared-memory IPC between processes on one Linux machine.

multiprocessing's objects, attachable by name from any process (no common parent needed),
with no resource tracker: nothing is removed when a process that attached exits. Objects
live in /dev/shm until ``unlink()`` (or ``shmkit rm NAME`` from the CLI).

Each class has ``Class(name, ...)`` (open the object, or create it), ``Class.create(name,
...)`` (``FileExistsError`` if it exists), ``Class.open(name)`` (``FileNotFoundError`` if
not), ``unlink()``, and the context-manager form of its Python counterpart.

Zero-copy frames (``FramePublisher``/``FrameSubscriber``): ``recv()`` returns a ``Frame``
whose payload is a read-only numpy view into the shared slot (``frame.array(dtype, shape)``),
pinned while any view lives; ``loan()`` gives a writable view to ``publish``.
"""

from threading import BrokenBarrierError

from ._shmkit import (
    Array,
    Barrier,
    BoundedSemaphore,
    CellLock,
    Condition,
    Event,
    Frame,
    FrameLoan,
    FramePublisher,
    FrameSubscriber,
    Lock,
    LockNotHeld,
    LockNotRecoverable,
    OwnerDied,
    Queue,
    RLock,
    RLockNotOwned,
    Semaphore,
    ShareableList,
    SharedMemory,
    ShmkitError,
    Value,
)

__all__ = [
    "Array",
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "CellLock",
    "Condition",
    "Event",
    "Frame",
    "FrameLoan",
    "FramePublisher",
    "FrameSubscriber",
    "Lock",
    "LockNotHeld",
    "LockNotRecoverable",
    "OwnerDied",
    "Queue",
    "RLock",
    "RLockNotOwned",
    "Semaphore",
    "ShareableList",
    "SharedMemory",
    "ShmkitError",
    "Value",
]
