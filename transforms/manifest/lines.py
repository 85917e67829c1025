"""keep.txt / drop.txt lines on the engine, unique over keep and drop together.

`ManifestLines`: `(table, row)` for keep and drop rows -> the same with
`row["line"]` set, per `transforms.manifest.manifest_text`: rows are grouped by
their base line (`uri`, `uri#key` or `record_id`), and a base line shared by
two or more rows becomes `uri#key#record_id` for each of them, as
`manifest_lines` does over the whole manifest at once.
"""

from __future__ import annotations

import apache_beam as beam

from transforms.manifest.manifest_text import encode_part


def base_line(row: dict) -> str:
    uri, key, rid = row["source_uri"], row["key"], row["record_id"]
    if uri is None:
        return encode_part(rid)
    if key is None or key == uri:
        return encode_part(uri)
    return f"{encode_part(uri)}#{encode_part(key)}"


def _full_line(row: dict) -> str:
    return (f"{encode_part(row['source_uri'] or row['record_id'])}#"
            f"{encode_part(row['key'] or '')}#{encode_part(row['record_id'])}")


def _set_lines(element):
    line, rows = element
    rows = list(rows)
    for table, row in rows:
        yield table, dict(row, line=line if len(rows) == 1 else _full_line(row))


class ManifestLines(beam.PTransform):
    """`(table, row)` -> `(table, row with its keep.txt/drop.txt "line")`."""

    def expand(self, rows):
        return (rows
                | "ByBaseLine" >> beam.Map(lambda tr: (base_line(tr[1]), tr))
                | "GroupByBaseLine" >> beam.GroupByKey()
                | "SetLines" >> beam.FlatMap(_set_lines))
