"""Reader for WebDataset / img2dataset tar shards.

Members are grouped into samples by key (the member name up to the first dot
of its basename, as WebDataset does); a sample's image is its member with an
image extension, other members (`.json`, `.txt`) are metadata and skipped.

`tarfile` stops iterating *silently* at a corrupt or truncated header after
the first member, so after iteration the reader checks that the rest of the
file is end-of-archive zero padding and reports the shard otherwise. Members
are never extracted to disk; names with `..`, absolute names and links are
rejected. Each record's id includes a member's header offset (the image
member's, or the first member's for a sample without an image), so keys that
repeat in one shard keep unique ids. A member larger than `max_member_bytes`
is an error row, never read into memory.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator
from typing import IO, Any

from transforms import records as R
from transforms.read.formats.image_files import IMAGE_EXTENSIONS

BLOCK = 512
_MIN_END_PADDING = 2 * BLOCK  # a tar ends with two zero blocks
_GZIP_MAGIC = b"\x1f\x8b"


def sample_key(member_name: str) -> tuple[str, str]:
    """Splits `dir/abc.001.jpg` into WebDataset key `dir/abc` and suffix `001.jpg`."""
    directory, base = posixpath.split(member_name)
    stem, _, suffix = base.partition(".")
    return posixpath.join(directory, stem), suffix.lower()


def _bad_name(name: str) -> bool:
    parts = name.split("/")
    return name.startswith("/") or ".." in parts or "\\" in name or "\0" in name


def _padding_problem(fileobj: IO[bytes], end: int) -> str | None:
    """None if everything after offset `end` is zero padding of >= 1024 bytes."""
    fileobj.seek(end)
    seen = 0
    while chunk := fileobj.read(1 << 16):
        if chunk.count(0) != len(chunk):
            return f"non-zero data after the last readable member (offset {end})"
        seen += len(chunk)
    if seen < _MIN_END_PADDING:
        return f"archive ends after {seen} bytes of padding at offset {end} (want >= 1024)"
    return None


def read_tar_shard(uri: str, fileobj: IO[bytes], max_member_bytes: int | None = None
                   ) -> Iterator[R.ImageRecord | dict[str, Any]]:
    """Yields one record per sample with an image, and error rows.

    Args:
        uri: the shard's uri, used in ids and error rows.
        fileobj: the shard, open for binary reading and seekable.
        max_member_bytes: larger image members are `file_too_large` errors.
    """
    def shard_error(reason: str, message: str) -> dict[str, Any]:
        return R.error_row(R.READ, reason, message, source_uri=uri)

    head = fileobj.read(2)
    if not head:
        yield shard_error(R.EMPTY_FILE, "zero bytes")
        return
    fileobj.seek(0)
    try:
        archive = tarfile.open(fileobj=fileobj, mode="r:")
    except tarfile.TarError as exc:  # the first header is unreadable: not a tar at all
        gzip = " (the file is gzip-compressed: decompress it)" if head == _GZIP_MAGIC else ""
        yield shard_error(R.CORRUPT, f"not a readable tar archive{gzip}: {exc}")
        return

    current_key: str | None = None
    first_offset = 0  # header offset of the current sample's first member
    image: tuple[tarfile.TarInfo, str] | None = None  # the sample's image member
    end = 0  # offset just past the last member read

    def finish_sample() -> Iterator[R.ImageRecord | dict[str, Any]]:
        if current_key is None:
            return
        if image is None:
            yield R.error_row(R.READ, R.NO_IMAGE_MEMBER, "sample has no image member",
                              source_uri=uri, key=current_key,
                              record_id=R.make_record_id(uri, f"tar:{first_offset}"))
            return
        member, key = image
        if max_member_bytes is not None and member.size > max_member_bytes:
            yield R.error_row(R.READ, R.FILE_TOO_LARGE,
                              f"{member.name}: {member.size} bytes > max_file_bytes "
                              f"{max_member_bytes}", source_uri=uri, key=key,
                              record_id=R.make_record_id(uri, f"tar:{member.offset}"))
            return
        try:
            data = archive.extractfile(member).read()
        except tarfile.TarError as exc:  # member data cut short
            yield R.error_row(R.READ, R.TRUNCATED, f"{member.name}: {exc}", source_uri=uri,
                              key=key, record_id=R.make_record_id(uri, f"tar:{member.offset}"))
            return
        yield R.new_record(uri, f"tar:{member.offset}", key, data)

    try:
        for member in archive:
            end = member.offset_data + -(-member.size // BLOCK) * BLOCK
            if member.isdir():
                continue
            key, suffix = sample_key(member.name)
            member_id = R.make_record_id(uri, f"tar:{member.offset}")
            if _bad_name(member.name):
                yield R.error_row(R.READ, R.BAD_MEMBER_NAME, f"unsafe member name {member.name!r}",
                                  source_uri=uri, key=key, record_id=member_id)
                continue
            if not member.isfile():
                yield R.error_row(R.READ, R.BAD_MEMBER_TYPE,
                                  f"{member.name!r} is a link or special file", source_uri=uri,
                                  key=key, record_id=member_id)
                continue
            if key != current_key:
                yield from finish_sample()
                current_key, first_offset, image = key, member.offset, None
            if suffix.rsplit(".", 1)[-1] not in IMAGE_EXTENSIONS:
                continue
            if image is None:
                image = (member, key)
            else:
                yield R.error_row(R.READ, R.EXTRA_IMAGE_MEMBER,
                                  f"sample {key!r} already has image {image[0].name!r}; "
                                  f"{member.name!r} not used", source_uri=uri, key=key,
                                  record_id=member_id)
        yield from finish_sample()
    except tarfile.TarError as exc:
        # The sample being collected was seen: report it (its data may be
        # complete, or cut short) before reporting the shard.
        yield from finish_sample()
        yield shard_error(R.SHARD_TRUNCATED, f"archive unreadable after offset {end}: {exc}")
        return
    problem = _padding_problem(fileobj, end)
    if problem:
        yield shard_error(R.SHARD_TRUNCATED, problem)
