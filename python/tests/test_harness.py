"""The test harness itself: a child that stops printing fails the test instead of hanging it."""
import pytest


def test_a_silent_child_fails_the_read_instead_of_hanging_it(spawn):
    child = spawn(
        """
        import time
        print("calling", flush=True)
        time.sleep(600)
        """
    )
    assert child.line() == "calling"
    with pytest.raises(AssertionError, match="no line"):
        child.line(timeout=2)
