"""`memgs://`: an in-memory Beam filesystem with GCS's semantics, for tests.

Like GCS it has objects, not folders: a "folder" exists only as a prefix (so
`exists(folder)` is false), `mkdirs` does nothing, and `rename` copies then
deletes one object at a time. Importing this module registers the scheme
with Beam's `FileSystems` (in this process).
"""

from __future__ import annotations

import io
import posixpath
import time

from apache_beam.io.filesystem import BeamIOError, FileMetadata, FileSystem

OBJECTS: dict[str, tuple[bytes, float]] = {}


class _Upload(io.BytesIO):
    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def close(self):
        if not self.closed:
            OBJECTS[self.path] = (self.getvalue(), time.time())
        super().close()


class MemGcsFileSystem(FileSystem):
    @classmethod
    def scheme(cls):
        return "memgs"

    def join(self, basepath, *paths):
        return posixpath.join(basepath, *[p.lstrip("/") for p in paths])

    def split(self, path):
        return posixpath.split(path)

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        for path, (data, mtime) in sorted(OBJECTS.items()):
            if path.startswith(dir_or_prefix):
                yield FileMetadata(path, len(data), mtime)

    def create(self, path, mime_type="application/octet-stream", compression_type=None):
        return _Upload(path)

    def open(self, path, mime_type="application/octet-stream", compression_type=None):
        if path not in OBJECTS:
            raise BeamIOError("Open failed", {path: FileNotFoundError(path)})
        return io.BytesIO(OBJECTS[path][0])

    def copy(self, source_file_names, destination_file_names):
        for src, dst in zip(source_file_names, destination_file_names):
            OBJECTS[dst] = OBJECTS[src]

    def rename(self, source_file_names, destination_file_names):
        for src, dst in zip(source_file_names, destination_file_names):
            if src not in OBJECTS:
                raise BeamIOError("Rename failed", {src: FileNotFoundError(src)})
            OBJECTS[dst] = OBJECTS.pop(src)

    def exists(self, path):
        return path in OBJECTS

    def size(self, path):
        return len(OBJECTS[path][0])

    def last_updated(self, path):
        return OBJECTS[path][1]

    def checksum(self, path):
        return str(hash(OBJECTS[path][0]))

    def metadata(self, path):
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths):
        for path in paths:  # like GCSFileSystem: a trailing '/' deletes the prefix
            if path.endswith("/"):
                for name in [p for p in OBJECTS if p.startswith(path)]:
                    del OBJECTS[name]
            else:
                for m in self.match([path])[0].metadata_list:
                    del OBJECTS[m.path]
