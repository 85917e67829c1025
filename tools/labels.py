"""Labelled pairs of images: the CSV that `clipdedup evaluate` reads and
`clipdedup calibrate` writes.

One row per pair; columns (any order, header row required, comma-separated;
`;` or tab also accepted when the header uses it, as spreadsheets in some
locales save):

- `label`: `duplicate`, `near_duplicate` or `different` (case and `-`/space
  ignored); an empty label means "not labelled yet" and the row is counted,
  not used, so a half-filled sheet can be evaluated.
- each image of the pair, `a` and `b`, named by any of:
  `record_id_a` (exact), or `source_uri_a` and/or `key_a` (as the run's
  tables write them), or `a` alone: a record_id, a key, or a path (an image
  file's path is its source_uri; relative paths are taken from the current
  folder). The first of these a row fills in is used.
- optional: `pair` (a name echoed in reports), `weight` (how many of the run's
  pairs this one stands for: calibrate's stratified sample writes it),
  `score`, `band`, `found_by`, `notes` (read by people, ignored here).

A file that cannot be used (no label column, a side with no reference column,
an unknown label, a bad weight, one pair labelled two ways) raises
`LabelFileError` naming the line: the CLI prints it as one line and exits 2.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os

LABELS = ("duplicate", "near_duplicate", "different")
SIDES = ("a", "b")
MAX_LABEL_FILE_BYTES = 1 << 30

#: Columns of the sheet calibrate writes, in order; evaluate reads it back as is.
SHEET_COLUMNS = ["pair", "label", "score", "band", "weight", "found_by",
                 "record_id_a", "key_a", "source_uri_a", "record_id_b", "key_b", "source_uri_b"]


class LabelFileError(ValueError):
    """A labels file that cannot be used as it is (a user error: exit 2)."""


@dataclasses.dataclass(frozen=True)
class Ref:
    """What one side of a labelled pair names: a record_id, a location, or free text."""

    record_id: str | None = None
    source_uri: str | None = None
    key: str | None = None
    text: str | None = None

    def describe(self) -> str:
        if self.record_id:
            return f"record_id {self.record_id}"
        if self.source_uri or self.key:
            return " ".join(f"{n} {v}" for n, v in (("source_uri", self.source_uri),
                                                    ("key", self.key)) if v)
        return str(self.text)

    def strings(self) -> set[str]:
        """Every string a run's record_id, key or source_uri column may hold for this ref."""
        out = {v for v in (self.record_id, self.source_uri, self.key, self.text) if v}
        for v in (self.source_uri, self.text):
            if v and "://" not in v:
                out.add(os.path.abspath(v))
        return out


@dataclasses.dataclass(frozen=True)
class LabelledPair:
    line: int  # in the file, header = line 1
    a: Ref
    b: Ref
    label: str
    weight: float = 1.0
    name: str | None = None


def normalise_label(value: str) -> str:
    return value.strip().lower().replace("-", "_").replace(" ", "_")


def _delimiter(header: str) -> str:
    if "," in header:
        return ","
    return next((d for d in (";", "\t") if d in header), ",")


def _ref(row: dict, side: str) -> Ref:
    def cell(name: str) -> str | None:
        value = (row.get(name) or "").strip()
        return value or None

    return Ref(cell(f"record_id_{side}"), cell(f"source_uri_{side}"), cell(f"key_{side}"),
               cell(side))


def parse_labels(text: str, name: str = "labels") -> tuple[list[LabelledPair], int]:
    """The labelled pairs in CSV `text`, and how many rows have no label yet.

    Raises:
        LabelFileError: the file cannot be used; the message names the line.
    """
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise LabelFileError(f"{name}: empty (a header row with label, a and b columns "
                             "is needed)")
    try:
        reader = csv.DictReader(io.StringIO(text), delimiter=_delimiter(lines[0]))
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        if "label" not in header:
            raise LabelFileError(f"{name}: no 'label' column (columns: {', '.join(header)})")
        for side in SIDES:
            if not {side, f"record_id_{side}", f"source_uri_{side}", f"key_{side}"} & set(header):
                raise LabelFileError(
                    f"{name}: no column names image {side} (give {side}, record_id_{side}, "
                    f"or source_uri_{side}/key_{side}); columns: {', '.join(header)}")
        pairs, unlabelled = [], 0
        for row in reader:
            line = reader.line_num
            if None in row:
                raise LabelFileError(f"{name} line {line}: more cells than header columns")
            if not any((v or "").strip() for v in row.values()):
                continue
            label = normalise_label(row.get("label") or "")
            if not label:
                unlabelled += 1
                continue
            if label not in LABELS:
                raise LabelFileError(f"{name} line {line}: label {row['label']!r} is not one "
                                     f"of {', '.join(LABELS)} (or empty: not labelled yet)")
            a, b = _ref(row, "a"), _ref(row, "b")
            for side, ref in (("a", a), ("b", b)):
                if not ref.strings():
                    raise LabelFileError(f"{name} line {line}: image {side} is not named")
            weight = (row.get("weight") or "").strip()
            try:
                weight = float(weight) if weight else 1.0
            except ValueError:
                raise LabelFileError(f"{name} line {line}: weight {weight!r} is not a number") \
                    from None
            if not weight > 0 or weight == float("inf"):
                raise LabelFileError(f"{name} line {line}: weight must be a positive number, "
                                     f"got {weight}")
            pairs.append(LabelledPair(line, a, b, label, weight,
                                      (row.get("pair") or "").strip() or None))
    except csv.Error as exc:
        raise LabelFileError(f"{name}: not a readable CSV file ({exc})") from None
    return pairs, unlabelled


def read_labels(path: str) -> tuple[list[LabelledPair], int]:
    """`parse_labels` of the file at `path` (local path or gs:// / s3:// uri).

    Raises:
        FileNotFoundError: there is no such file.
        LabelFileError: not UTF-8 text, or not usable (see `parse_labels`).
    """
    from tools.pictures import read_file

    data = read_file(path, MAX_LABEL_FILE_BYTES)
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's byte-order mark is not a column name
    except UnicodeDecodeError as exc:
        raise LabelFileError(f"{path}: not UTF-8 text (byte {exc.start}); save the sheet as "
                             "CSV UTF-8") from None
    return parse_labels(text, path)


def write_sheet(path: str, rows: list[dict]) -> None:
    """A labelling sheet: `SHEET_COLUMNS`, one row per pair, the label left as given."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, SHEET_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
