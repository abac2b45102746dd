"""Every benchmark is bounded in time, fails loudly past its bound, and says how loaded the
machine was when it started and ended (figures from a busy machine are not comparable)."""
from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time

EXIT_TIME_BOUND = 3


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} cores"


def add_argument(parser, default_s: float) -> None:
    parser.add_argument("--time-limit", type=float, default=default_s, metavar="S",
                        help=f"fail (exit {EXIT_TIME_BOUND}) if the benchmark runs longer than S "
                        f"seconds (default {default_s:.0f})")


class bounded:
    """``with bounded("bench/kpi.py", 1800): ...``: past the bound, the main thread is
    interrupted (its ``finally`` blocks stop the servers it started), every thread's stack is
    printed, and the process exits with status 3; if cleanup itself hangs for 60 s more, the
    process ends at once."""

    GRACE_S = 60.0

    def __init__(self, name: str, seconds: float):
        self.name, self.seconds = name, seconds
        self.fired = threading.Event()
        self._done = threading.Event()

    def _watch(self) -> None:
        if self._done.wait(self.seconds):
            return
        self.fired.set()
        print(f"\n{self.name}: FAILED: still running after its time bound of {self.seconds:.0f} s; "
              f"{load()}. Stacks of every thread:", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        # a real SIGINT to the main thread: it also wakes a blocking sleep or wait there
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        if not self._done.wait(self.GRACE_S):
            print(f"{self.name}: cleanup did not finish within {self.GRACE_S:.0f} s; exiting now",
                  file=sys.stderr, flush=True)
            os._exit(EXIT_TIME_BOUND)

    def __enter__(self) -> "bounded":
        self.started = time.monotonic()
        print(f"{self.name}: time bound {self.seconds:.0f} s; at start {load()}", file=sys.stderr, flush=True)
        threading.Thread(target=self._watch, name="bench-time-bound", daemon=True).start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self._done.set()
        took = time.monotonic() - self.started
        print(f"{self.name}: took {took:.0f} s; at end {load()}", file=sys.stderr, flush=True)
        if self.fired.is_set():
            raise SystemExit(EXIT_TIME_BOUND)
        return False


def run(main, name: str, default_s: float, argv: list[str] | None = None) -> int:
    """Run ``main(argv)`` inside :class:`bounded`; ``--time-limit S`` is taken off the
    arguments first (``-h`` lists it before the benchmark's own options)."""
    import argparse

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    add_argument(pre, default_s)
    known, rest = pre.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        print(f"  --time-limit S   fail (exit {EXIT_TIME_BOUND}) past S seconds (default {default_s:.0f})\n")
    with bounded(name, known.time_limit):
        return main(rest)
