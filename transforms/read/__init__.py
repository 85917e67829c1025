"""Stage 1, read: input patterns -> image records, per-file status, skipped paths.

- `files.py`: `ListInputs` (what the patterns name, and what is not read and
  why), `ReadRecords` (each file through its format's reader, with a per-file
  fingerprint), `FindChangedFiles` (a file whose bytes changed between reads);
- `formats/`: one reader per input kind (image files, tar shards, Parquet
  tables), over `formats/storage.py`'s wrapper that tells storage failures
  from bad data.
"""
