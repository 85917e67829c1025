"""Telling a storage failure apart from a decoder's complaint about bytes.

pyarrow raises `OSError` both when the file object under it fails (a storage
error: transient, the runner must retry) and when bytes it already holds do
not decode (`Couldn't deserialize thrift`, a corrupt page: bad data, an error
row). `StorageFile` wraps the file object a reader gets and remembers any
exception its own `read`/`seek` raised; a reader that catches a decoder's
`OSError` calls `reraise_storage_failure` first, so a storage failure always
reaches the runner with its original type.
"""

from __future__ import annotations

from typing import IO


class StorageFile:
    """A file object that records the exception its storage raised, if any."""

    def __init__(self, fileobj: IO[bytes]):
        self._f = fileobj
        self.failure: BaseException | None = None

    def _call(self, method, *args):
        try:
            return method(*args)
        except BaseException as exc:  # recorded, then re-raised unchanged
            self.failure = exc
            raise

    def read(self, n: int = -1) -> bytes:
        return self._call(self._f.read, n)

    def readinto(self, buffer) -> int:
        return self._call(self._f.readinto, buffer)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._call(self._f.seek, offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def seekable(self) -> bool:
        return self._f.seekable()

    def readable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._f.closed

    def close(self) -> None:
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


def storage_file(fileobj: IO[bytes]) -> StorageFile:
    """`fileobj` wrapped once (a `StorageFile` is returned as it is)."""
    return fileobj if isinstance(fileobj, StorageFile) else StorageFile(fileobj)


def reraise_storage_failure(fileobj: StorageFile) -> None:
    """Raises the storage exception seen by `fileobj`, if there was one."""
    if fileobj.failure is not None:
        raise fileobj.failure
