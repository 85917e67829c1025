"""The console summary names the report, or says why there is none."""

from __future__ import annotations

import io

from pipelines.summary_text import print_summary


def _summary(**extra) -> dict:
    return {"run_id": "r", "run_folder": "out/r", "counts": {}, "timings": {"total_seconds": 1.0},
            **extra}


def test_the_report_path_is_the_last_line():
    out = io.StringIO()
    print_summary(_summary(report={"written": True, "path": "report.html"}), out)
    assert out.getvalue().splitlines()[-1] == "  report: out/r/report.html"


def test_a_report_not_written_says_why_and_how_to_write_it():
    out = io.StringIO()
    print_summary(_summary(report={"written": False, "error": "RuntimeError: boom"}), out)
    assert out.getvalue().splitlines()[-1] == (
        "  report NOT written (RuntimeError: boom); `clipdedup report out/r` writes it")


def test_no_report_line_for_a_run_without_one():
    out = io.StringIO()
    print_summary(_summary(), out)
    assert "report" not in out.getvalue()


def test_an_approximate_night_says_its_recall_is_on_the_new_records():
    out = io.StringIO()
    print_summary(_summary(mining={"mode": "approximate", "recall_sampled": 0.995,
                                   "recall_scope": "new records", "centroids_reused": True}), out)
    assert ("  mining: mode approximate, previous centroids, sampled recall on new records "
            "0.9950") in out.getvalue().splitlines()
    out = io.StringIO()
    print_summary(_summary(mining={"mode": "exact", "recall_sampled": 1.0}), out)
    assert "  mining: mode exact, sampled recall 1.0000" in out.getvalue().splitlines()
