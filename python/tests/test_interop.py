"""Interop with the Rust side: the `shmkit` CLI sees Python's objects, and a lock created
(and held, then killed) by a Rust process is recovered from Python."""

import os
import signal
import struct
import subprocess

import pytest

import shmkit


def test_cli_info_sees_a_python_lock_and_its_holder(name, rust_bins):
    lock = shmkit.Lock.create(name)
    lock.acquire()
    out = subprocess.run(
        [rust_bins["shmkit"], "info", name], capture_output=True, text=True, check=True
    ).stdout
    assert "kind:            lock" in out
    assert f"locked by pid {os.getpid()}" in out
    lock.release()
    out = subprocess.run(
        [rust_bins["shmkit"], "info", name], capture_output=True, text=True, check=True
    ).stdout
    assert "locked:          false" in out
    lock.unlink()


def test_cli_creates_a_segment_python_opens(name, rust_bins):
    subprocess.run([rust_bins["shmkit"], "create", "--size", "64", name], check=True, capture_output=True)
    seg = shmkit.SharedMemory.open(name)
    assert seg.size == 64
    seg.close()
    subprocess.run([rust_bins["shmkit"], "rm", name], check=True, capture_output=True)
    with pytest.raises(FileNotFoundError):
        shmkit.SharedMemory.open(name)


def test_rust_lock_killed_holder_recovered_in_python(names, rust_bins):
    # The robust_lock example (Rust) creates the lock and a "bank" segment, takes the lock
    # and stops half-way through a transfer; we SIGKILL it.
    name = names("lock")
    bank_name = name + "-bank"
    victim = subprocess.Popen(
        [rust_bins["robust_lock"], "victim", name], stdout=subprocess.PIPE, text=True
    )
    try:
        assert "half-way through a transfer" in victim.stdout.readline()
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    try:
        lock = shmkit.Lock.open(name)
        bank = shmkit.SharedMemory.open(bank_name)
        with pytest.raises(shmkit.OwnerDied) as info:
            lock.acquire(timeout=30)
        assert info.value.previous_pid == victim.pid
        # Repair as the example does: roll the journaled transfer back.
        view = bank.buf.cast("Q")
        a, b, journal = view[0], view[1], view[2]
        assert (a + b, journal) == (700, 300)
        view[0], view[2] = a + journal, 0
        view.release()
        lock.make_consistent()
        lock.release()
        # The Rust side finds the lock free and the bank consistent.
        out = subprocess.run(
            [rust_bins["robust_lock"], "recover", name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "nothing to repair (A + B = 1000)" in out
        bank.close()
    finally:
        for n in (name, bank_name):
            try:
                os.unlink("/dev/shm/" + n)
            except FileNotFoundError:
                pass
