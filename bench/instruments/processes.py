"""Child processes that run in their own process group, bounded in time and stopped as a group (the DDP launcher,
the GPU kit's stages)."""

from __future__ import annotations

import os
import signal
import subprocess

KILL_GRACE_S = 5.0  # after SIGTERM, before SIGKILL


def stop_group(proc: subprocess.Popen, grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM to ``proc``'s process group (started with ``start_new_session=True``), then SIGKILL after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_bounded(cmd: list[str], sink, limit_s: float, env: dict, cwd=None, grace_s: float = KILL_GRACE_S) -> int | None:
    """Run ``cmd`` in its own process group, its output (stdout and stderr) to ``sink``; its exit code, or None
    when it was stopped at ``limit_s``. Ctrl-C (or SIGTERM turned into it) stops the group too, then propagates."""
    proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True)
    try:
        return proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        stop_group(proc, grace_s)
        return None
    except KeyboardInterrupt:
        stop_group(proc, grace_s)
        raise
