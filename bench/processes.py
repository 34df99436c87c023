"""Child processes that run in their own process group, stopped as a group (the DDP launcher, the GPU kit's stages)."""

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
