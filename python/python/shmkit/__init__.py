"""shmkit: named, crash-safe shared-memory IPC between processes on one Linux machine.

multiprocessing's objects, attachable by name from any process (no common parent needed),
with no resource tracker: nothing is removed when a process that attached exits. Objects
live in /dev/shm until ``unlink()`` (or ``shmkit rm NAME`` from the CLI).

Each class has ``Class(name, ...)`` (open the object, or create it), ``Class.create(name,
...)`` (``FileExistsError`` if it exists), ``Class.open(name)`` (``FileNotFoundError`` if
not), ``unlink()``, and the context-manager form of its Python counterpart.
"""

from threading import BrokenBarrierError

from ._shmkit import (
    Barrier,
    BoundedSemaphore,
    Condition,
    Event,
    Lock,
    LockNotRecoverable,
    OwnerDied,
    RLock,
    Semaphore,
    ShareableList,
    SharedMemory,
    ShmkitError,
)

__all__ = [
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "Condition",
    "Event",
    "Lock",
    "LockNotRecoverable",
    "OwnerDied",
    "RLock",
    "Semaphore",
    "ShareableList",
    "SharedMemory",
    "ShmkitError",
]
