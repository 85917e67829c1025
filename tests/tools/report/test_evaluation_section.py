"""`clipdedup report --evaluation DIR`: the labelled-pair figures and the PR curve in the page."""

from __future__ import annotations

import base64
import json
import re

from tools.pr_plot import draw_pr_curves
from tools.report.build import _evaluation_section, read_evaluation


def _evaluation_folder(tmp_path) -> str:
    folder = tmp_path / "eval"
    folder.mkdir()
    draw_pr_curves(str(folder / "pr_curve.png"), [("near", [(0.2, 1.0), (0.8, 0.75)])])
    (folder / "evaluation.json").write_text(json.dumps({
        "labels": "labels.csv", "model_is_stand_in": False, "target_precision": 0.95,
        "label_counts": {"evaluated": 12, "unresolved_pairs": 1},
        "at_run_thresholds": {"pair_tables": {"precision": 0.75, "recall": 0.5, "f1": 0.6},
                              "manifest": {"precision": 1.0, "recall": 0.25, "f1": 0.4}},
        "suggested": {"near_duplicate_threshold": {"threshold": 0.93}, "duplicate_threshold": None},
    }))
    return str(folder)


def test_section_shows_the_figures_and_the_curve(tmp_path):
    folder = _evaluation_folder(tmp_path)
    html = _evaluation_section(read_evaluation(folder))
    assert 'id="evaluation"' in html
    assert "12 labelled pairs" in html and "1 name images" in html
    for figure in ("0.750", "0.500", "0.600", "1.000", "0.250", "0.400", "0.930"):
        assert figure in html, figure
    src = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(src) == open(f"{folder}/pr_curve.png", "rb").read()
    assert "STAND-IN" not in html


def test_stand_in_evaluation_says_the_figures_mean_nothing(tmp_path):
    folder = _evaluation_folder(tmp_path)
    evaluation = read_evaluation(folder)
    evaluation["model_is_stand_in"] = True
    assert "mean nothing" in _evaluation_section(evaluation)
