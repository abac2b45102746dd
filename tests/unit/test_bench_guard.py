"""bench/guard.py: a benchmark past its time bound fails loudly instead of hanging."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(body: str, timeout: float = 60) -> subprocess.CompletedProcess:
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from bench import guard
        {body}
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)


def test_past_the_bound_the_run_fails_with_status_3_and_cleans_up():
    done = _run("""
        def main(argv):
            try:
                time.sleep(30)
            finally:
                print("cleanup ran")
            return 0
        sys.exit(guard.run(main, "bench/x.py", 1, []))
    """)
    assert done.returncode == guard_exit()
    assert "FAILED: still running after its time bound of 1 s" in done.stderr
    assert "load average" in done.stderr
    assert "cleanup ran" in done.stdout


def test_within_the_bound_the_result_and_load_are_reported():
    done = _run("""
        sys.exit(guard.run(lambda argv: len(argv), "bench/y.py", 30, ["--time-limit", "20", "a", "b"]))
    """)
    assert done.returncode == 2  # main saw only its own two arguments
    assert "bench/y.py: time bound 20 s; at start load average" in done.stderr
    assert "at end load average" in done.stderr


def test_cleanup_that_hangs_ends_the_process_after_the_grace():
    done = _run("""
        guard.bounded.GRACE_S = 1
        def main(argv):
            try:
                time.sleep(30)
            finally:
                time.sleep(30)
        sys.exit(guard.run(main, "bench/z.py", 1, []))
    """)
    assert done.returncode == guard_exit()
    assert "cleanup did not finish" in done.stderr


def guard_exit() -> int:
    sys.path.insert(0, str(ROOT))
    from bench import guard

    return guard.EXIT_TIME_BOUND
