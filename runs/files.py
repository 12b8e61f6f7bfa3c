"""Files a user names, read as untrusted input.

A spec points at files (``extends``, ``data.path``, ``search.replay``, a warm start's
spec, ``import-timm``'s checkpoint) that may be anything: a FIFO that never ends, a device
that never ends (``/dev/zero``), a folder, a compression bomb. Every such file is read
here: only a regular file (a link is followed and what it leads to judged), opened without
waiting on a writer, read within a size bound, decompressed within a bound.
``UntrustedFile`` says in one line what the file is and what was expected.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import zlib
from pathlib import Path

MB = 1 << 20


class UntrustedFile(ValueError):
    """A named file that cannot be read as what it should be; the message is one line."""


def kind(mode: int) -> str:
    """What a file of ``st_mode`` is, in words."""
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _size(n: int) -> str:
    return f"{n / MB:,.1f} MB" if n >= MB else f"{n:,} bytes"


def regular(path: str | Path) -> os.stat_result:
    """``path``'s status when it is a regular file (after links); else ``UntrustedFile``."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise UntrustedFile(f"{path}: no such file") from None
    except (OSError, ValueError) as err:  # a loop of links, a name too long, a NUL
        raise UntrustedFile(f"{path}: cannot be read ({getattr(err, 'strerror', None) or err})") from None
    if not stat.S_ISREG(status.st_mode):
        raise UntrustedFile(f"{path} is {kind(status.st_mode)}, not a file")
    return status


def read_bytes(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (else refused).

    Opened non-blocking, then checked on the open descriptor: a FIFO put in the file's
    place between a check and the open is refused too, and never waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UntrustedFile(f"{path}: no such file") from None
    except (OSError, ValueError) as err:
        raise UntrustedFile(f"{path}: cannot be read ({getattr(err, 'strerror', None) or err})") from None
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        os.close(fd)
        raise UntrustedFile(f"{path} is {kind(status.st_mode)}, not a {what}")
    with os.fdopen(fd, "rb") as f:
        if status.st_size > limit:
            raise UntrustedFile(f"{path} holds {_size(status.st_size)}; a {what} is at most {_size(limit)}")
        try:
            data = f.read(limit + 1)
        except OSError as err:
            raise UntrustedFile(f"{path}: cannot be read ({err.strerror or err})") from None
    if len(data) > limit:  # grew since fstat
        raise UntrustedFile(f"{path} holds more than {_size(limit)}; a {what} is at most {_size(limit)}")
    return data


def gunzip(data: bytes, limit: int, path: str | Path, what: str = "file") -> bytes:
    """``data`` (gzip) decompressed, at most ``limit`` bytes of it: a bomb is refused after
    ``limit`` bytes, never held whole."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as stream:
            out = stream.read(limit + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise UntrustedFile(f"{path}: not a readable gzip file ({err})") from None
    if len(out) > limit:
        raise UntrustedFile(f"{path} decompresses to more than {_size(limit)}; a {what} is at most {_size(limit)}")
    return out

