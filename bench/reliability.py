"""Figures for the reliability note: a hostile corpus run end to end.

Builds `tools/hostile_corpus.py`'s corpus, runs the embed and mine stages on
it with a tiny stand-in model (the figures are about accounting, not
similarity), checks the published tables against the corpus manifest and
prints: kinds of bad input tried, records injected, records lost.

    PYTHONPATH=$PWD .venv/bin/python bench/reliability.py [--copies 3] [--workdir bench-output/reliability]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

from pipelines.config import Config
from pipelines.jobs import execute
from tools import hostile_corpus as hc
from tools.stand_in import write_stand_in


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--workdir", default="bench-output/reliability")
    parser.add_argument("--decode-isolation", default="none", choices=("none", "subprocess"))
    args, beam_args = parser.parse_known_args()
    shutil.rmtree(os.path.join(args.workdir, "data"), ignore_errors=True)
    corpus = hc.build_corpus(os.path.join(args.workdir, "data"), copies=args.copies)
    model = os.path.join(args.workdir, "clip-tiny")
    if not os.path.isdir(model):
        write_stand_in(model, "tiny")
    config = Config().replace(inputs=corpus.inputs, model=model,
                              output=os.path.join(args.workdir, "runs"),
                              max_image_pixels=hc.MAX_IMAGE_PIXELS, max_file_bytes=hc.MAX_FILE_BYTES,
                              max_error_fraction=1.0,
                              decode_isolation=args.decode_isolation)
    started = time.monotonic()
    summary = execute(config, beam_args)
    figures = hc.compare_run(corpus, summary["run_folder"])
    print(f"run {summary['run_folder']} in {time.monotonic() - started:.1f} s "
          f"(stand-in model, decode_isolation={args.decode_isolation})")
    print("kinds planted:", json.dumps(corpus.kinds, sort_keys=True))
    print("errors by reason:", json.dumps(summary["counts"]["errors_by_reason"], sort_keys=True))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
