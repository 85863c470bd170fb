"""Work for the pools in test_workers.py: a module their worker processes can import (it is on the
tests' sys.path, which a worker copies)."""

import os
import time

from conciser.rewards.workers import serve


def _nap(seconds: float, tag: str) -> tuple[str, int]:
    time.sleep(seconds)
    return tag, os.getpid()


def napper(conn) -> None:
    """A pool worker whose task (seconds, tag) sleeps, then answers (tag, its pid)."""
    serve(conn, _nap)


def echo(conn, *args) -> None:
    conn.send(args)
