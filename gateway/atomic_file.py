"""Writing a file so that a crash leaves either the old or the new content, never a torn one.

One function, shared by the gateway (its key, certificate, managed settings) and HQ (its CA files): a
temporary file in the same directory, fsynced, renamed over the target, the directory fsynced.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644, like_existing: bool = False) -> None:
    """Replace `path` with `data`; the file has `mode` from its first byte (a key is never readable by others,
    not even for a moment). `like_existing`: a file replaced keeps its owner and group and their permission bits
    (a provisioning tool gave the service's group read access to it), while the bits for others come from
    `mode` alone. Raises OSError (e.g. PermissionError) naming the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    owner: tuple[int, int] | None = None
    if like_existing:
        try:
            st = path.stat()
        except FileNotFoundError:
            pass
        else:
            owner = (st.st_uid, st.st_gid)
            mode = (st.st_mode & 0o770) | (mode & 0o007)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode & 0o700)
    try:
        try:
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                os.fchown(fd, *owner)
            os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask; the caller's mode is what it asked for
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
