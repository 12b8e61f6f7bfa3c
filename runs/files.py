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
import itertools
import os
import pickle
import pickletools
import stat
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

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


def _a(what: str) -> str:
    return f"an {what}" if what[:1] in tuple("aeiou") else f"a {what}"


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
        raise UntrustedFile(f"{path} is {kind(status.st_mode)}, not {_a(what)}")
    with os.fdopen(fd, "rb") as f:
        if status.st_size > limit:
            raise UntrustedFile(f"{path} holds {_size(status.st_size)}; {_a(what)} is at most {_size(limit)}")
        try:
            data = f.read(limit + 1)
        except OSError as err:
            raise UntrustedFile(f"{path}: cannot be read ({err.strerror or err})") from None
    if len(data) > limit:  # grew since fstat
        raise UntrustedFile(f"{path} holds more than {_size(limit)}; {_a(what)} is at most {_size(limit)}")
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
        raise UntrustedFile(f"{path} decompresses to more than {_size(limit)}; {_a(what)} is at most {_size(limit)}")
    return out


class _Restricted(pickle.Unpickler):
    """An unpickler that builds only plain data and the globals it is given: a pickle
    naming anything else (``os.system``, ``builtins.eval``) is refused, never called."""

    def __init__(self, data: bytes, allowed: Mapping[tuple[str, str], Callable]) -> None:
        super().__init__(io.BytesIO(data), encoding="bytes")  # Python 2's str read as bytes
        self.allowed = allowed

    def find_class(self, module: str, name: str) -> Callable:
        if (module, name) not in self.allowed:
            raise UntrustedFile(f"names the global {module}.{name}, which is not allowed here")
        return self.allowed[module, name]

    def persistent_load(self, pid: Any) -> Any:
        raise UntrustedFile("holds a persistent id, which is not allowed here")


def unpickle(
    data: bytes, allowed: Mapping[tuple[str, str], Callable], path: str | Path, what: str, *, most_ops: int
) -> Any:
    """``data`` unpickled with no global but those ``allowed`` ((module, name) -> what to
    call instead), in at most ``most_ops`` operations; a refused global, too many operations
    or a malformed stream is ``UntrustedFile``. The operations are counted first: each
    may build a container (an empty dict is one byte, 64 in memory)."""
    try:
        ops = sum(1 for _ in itertools.islice(pickletools.genops(data), most_ops + 1))
        if ops > most_ops:
            raise UntrustedFile(f"holds more than {most_ops:,} pickle operations")
        return _Restricted(data, allowed).load()
    except UntrustedFile as err:
        raise UntrustedFile(f"{path}: {err}; not {_a(what)}") from None
    except Exception as err:  # a malformed stream fails in many ways: EOFError, UnpicklingError, ...
        first = (str(err).splitlines() or [""])[0][:120]
        raise UntrustedFile(f"{path}: not {_a(what)} ({type(err).__name__}: {first})") from None
