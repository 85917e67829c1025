"""`keep.txt` and `drop.txt`: one line per manifest row, each locating one record.

Line k of `keep.txt` is row k of `keep.parquet` (likewise `drop`). A line is

- `SOURCE_URI` for an image file (its `key` is its uri);
- `SOURCE_URI#KEY` for a tar member or a Parquet row (the tar sample key; the
  Parquet `key_column` value, HF `path` or row number);
- `SOURCE_URI#KEY#RECORD_ID` where two records of the manifest would
  otherwise get the same line (a key repeated inside one file);
- `RECORD_ID` alone for a row without `source_uri` (a table mined elsewhere
  without that column).

Each part is percent-encoded for `%`, `#` and every character that could end
or hide a line (C0 controls, DEL, U+0085, U+2028, U+2029), as UTF-8 bytes:
`%` -> `%25`, `#` -> `%23`, LF -> `%0A`, CR -> `%0D`. A line never breaks,
splits on `#` into its parts, and `urllib.parse.unquote` decodes each part.
Keys (and uris) repeat across shards and Parquet files, so keys alone would
not do.
"""

from __future__ import annotations

import collections
import re
from urllib.parse import unquote

# Lone surrogates (undecodable bytes of a tar member name) go out as the bytes they stand for.
_ESCAPE = re.compile("[%#\x00-\x1f\x7f\x85\u2028\u2029\ud800-\udfff]")


def _percent(match: re.Match) -> str:
    return "".join(f"%{b:02X}" for b in match.group().encode("utf-8", "surrogateescape"))


def encode_part(text: str) -> str:
    """`text` with `%`, `#` and line-breaking characters percent-encoded."""
    return _ESCAPE.sub(_percent, text)


def split_line(line: str) -> list[str]:
    """The decoded parts of one line (`[uri]`, `[uri, key]`, `[uri, key, record_id]`)."""
    return [unquote(part) for part in line.split("#")]


def manifest_lines(record_ids: list[str], source_uris: list[str | None],
                   keys: list[str | None]) -> list[str]:
    """One line per record, unique over the records given (pass keep and drop together)."""
    base = []
    for rid, uri, key in zip(record_ids, source_uris, keys):
        if uri is None:
            base.append(encode_part(rid))
        elif key is None or key == uri:
            base.append(encode_part(uri))
        else:
            base.append(f"{encode_part(uri)}#{encode_part(key)}")
    repeated = {line for line, n in collections.Counter(base).items() if n > 1}
    return [
        line if line not in repeated else
        f"{encode_part(uri or rid)}#{encode_part(key or '')}#{encode_part(rid)}"
        for line, rid, uri, key in zip(base, record_ids, source_uris, keys)]


def text(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode("utf-8")
