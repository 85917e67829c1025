"""The stages of clipdedup as Beam PTransforms, in the order a record meets them.

    read/            1. input patterns -> image records (image files, tar shards, Parquet)
    byte_copies.py   2. byte-identical records found by sha256; each image embedded once
    decode.py        3. bytes -> the model's input pixels, with every failure a row
    embed/           4. pixels -> CLIP vectors (the model runtime is inside)
    mine/            5. vectors -> duplicate and near-duplicate pairs
    manifest/        6. pairs -> groups, keepers, keep/drop manifest
    run_checks.py    7. conservation and error budget, computed in the job

Shared by all stages: `records.py` (the elements and error rows),
`schemas.py` (every table's Arrow schema), `write.py` (Parquet part files),
`parquet_open.py`, `metrics.py`, `long_lived.py` (imports and the model kept
out of garbage collections in the `clipdedup` process). Publishing a run folder (8) is the
launcher's, in `pipelines/run_folder.py`.
"""
