"""Files written whole or not at all, and one line for a write that failed (results, summaries, checkpoints)."""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A file to write `path` through, whole or not at all: a temporary file of this writer's own in the same folder,
    renamed to `path` when the block ends, so a full disk or a crash never leaves half a file (the old one stays)
    and two writers never mix their bytes. A failure is an OSError naming the file (see `disk_message`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private; others sharing the folder should read it as usual
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not e.filename:  # a failed write names no file: name the one being written
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def disk_message(e: OSError) -> str:
    """One line for a write that failed: where, why, and what to do (a full disk, or a folder this user cannot
    write, such as a class's shared cache)."""
    where = Path(e.filename).parent if e.filename else "the build folder"
    full = e.errno in (errno.ENOSPC, errno.EDQUOT)
    todo = "free some space there" if full else "make it writable"
    return f"cannot write into {where}: {e.strerror or e}; {todo}, or give another --out (or GRLIB_BUILD)"
