"""Tools around the pipeline, not stages of it.

- `demo.py`: builds the sample dataset and runs the job on it (`make demo`);
- `stand_in.py`: writes stand-in CLIP models with random weights for tests
  and benchmarks (`clipdedup make-stand-in`);
- `hostile_corpus.py`: builds the corpus of hostile inputs the reliability tests
  and `bench/reliability.py` run (every kind of bad file a field sends);
- `check_backend.py`: compares an int8 backend's vectors with fp32 on a
  sample of a user's images (`clipdedup check-backend`);
- `report/`: `report.html` of a run folder, written by every run that mines
  and by `clipdedup report` (docs/report.md).
- `calibrate.py`, `evaluate.py`: a seeded stratified sheet of a run's pairs to
  label, and the run measured against labelled pairs (`clipdedup calibrate`,
  `clipdedup evaluate`), with `labels.py` (the labels CSV), `run_records.py`
  (a run's records, vectors and decisions for a few pairs) and `pr_plot.py`
  (the precision-recall PNG).
"""
