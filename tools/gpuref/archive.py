"""One tar.gz of the kit's output folder, under the size that comes back from the device machine.

Rewritten after every stage (to a temporary name, then renamed), so a command killed at its limit
leaves the archive of every stage before it. When the whole folder compresses past ``MAX_BYTES``,
the largest files are left out one by one (a profiler trace first, typically) and the archive's
``ARCHIVE_NOTE`` member lists them.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

MAX_BYTES = 16 * 2**20 - 2**16  # the device tool brings back files of at most 16 MiB; a little margin
ARCHIVE_NOTE = "ARCHIVE-LEFT-OUT.txt"
MAX_DROPS = 8


def _files(root: Path, skip: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.resolve() != skip.resolve()
                  and not p.name.startswith("."))


def _write(root: Path, files: list[Path], left_out: list[Path], path: Path) -> int:
    tmp = path.with_name(f".{path.name}.tmp")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        for f in files:
            tar.add(f, arcname=f"{root.name}/{f.relative_to(root)}")
        if left_out:
            text = "".join(f"{f.relative_to(root)}\t{f.stat().st_size} bytes\n" for f in left_out).encode()
            info = tarfile.TarInfo(f"{root.name}/{ARCHIVE_NOTE}")
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    os.replace(tmp, path)
    return path.stat().st_size


def write_archive(root: Path, path: Path, max_bytes: int = MAX_BYTES) -> tuple[int, list[str]]:
    """Archive ``root`` into ``path`` under ``max_bytes``; returns its size and the files left out."""
    root, path = Path(root), Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files = _files(root, path)
    left_out: list[Path] = []
    size = _write(root, files, left_out, path)
    while size > max_bytes and files and len(left_out) < MAX_DROPS:
        largest = max(files, key=lambda f: f.stat().st_size)
        files.remove(largest)
        left_out.append(largest)
        size = _write(root, files, left_out, path)
    return size, [str(f.relative_to(root)) for f in left_out]
