"""Every user error the real command can hit ends in one line on stderr and exit 2.

Each case runs `python -m pipelines.cli` in a fresh process, as a user would,
and checks: exit status 2, exactly one stderr line (`-q` keeps logging to
warnings) starting with `clipdedup: error:` and naming the problem, no
traceback, and nothing created in the output folder. A bug, by contrast,
keeps its traceback and exits 1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from pipelines import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BAD_TYPES = ('batch_size: "16"\ndrop_near_duplicates: "no"\ninputs: data/*.tar\n'
             "max_image_pixels: 0\nblock_size: 2.5\n")
INPUT = ["--input", "data/a.tar", "--output", "out"]

CASES = {
    "misspelt flag": (["run", *INPUT, "--duplicate-treshold", "0.95"],
                      "unknown flag --duplicate-treshold (did you mean --duplicate-threshold?)"),
    "misspelt Beam flag": (["run", *INPUT, "--direct_num_worker=2"],
                           "unknown flag --direct_num_worker (did you mean --direct_num_workers?)"),
    "wrong types in YAML": (["run", *INPUT, "--config", "types.yaml"],
                            ("types.yaml: ", "batch_size must be an integer, got '16'",
                             "drop_near_duplicates must be true or false, got 'no'",
                             "inputs must be a list of strings, got 'data/*.tar'",
                             "max_image_pixels must be >= 1, got 0",
                             "block_size must be an integer, got 2.5")),
    "malformed YAML": (["run", *INPUT, "--config", "broken.yaml"],
                       "broken.yaml:3:1: not valid YAML"),
    "negative flag value": (["run", *INPUT, "--batch-size", "-1"],
                            "batch_size must be >= 0, got -1"),
    "glob matching nothing": (["run", "--input", "data/*.tar", "missing/*.tar",
                               "--output", "out"],
                              "--input 'missing/*.tar' matches no files"),
    "read-only output": (["embed", "--input", "data/a.tar", "--output", "read-only/out"],
                         "output read-only/out is not writable: Permission denied"),
    "gs:// input without credentials": (["embed", "--input", "gs://clipdedup-none/*.tar",
                                         "--output", "out"],
                                        "gs://clipdedup-none/*.tar needs Google Cloud "
                                        "credentials"),
    "gs:// output without credentials": (["mine", "--embeddings", "data/", "--output",
                                          "gs://clipdedup-none/out"],
                                         "gs://clipdedup-none/out needs Google Cloud credentials"),
}


def _drop_write_permission() -> list[str]:
    """A prefix that makes a read-only folder read-only for this process too.

    root ignores permission bits; without CAP_DAC_OVERRIDE it obeys them.
    """
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only folder is writable")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


@pytest.mark.parametrize("case", list(CASES))
def test_user_errors_are_one_line_and_exit_2(tmp_path, case):
    argv, message = CASES[case]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.tar").write_bytes(b"\0" * 1024)
    (tmp_path / "types.yaml").write_text(BAD_TYPES)
    (tmp_path / "broken.yaml").write_text("batch_size: 8\nmode: exact\n\tblock_size: 64\n")
    (tmp_path / "read-only").mkdir()
    os.chmod(tmp_path / "read-only", 0o555)
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    env.update(PYTHONPATH=ROOT, CLOUDSDK_CONFIG=str(tmp_path / "no-gcloud"),
               NO_GCE_CHECK="true", HF_HUB_OFFLINE="1")
    prefix = _drop_write_permission() if case == "read-only output" else []
    proc = subprocess.run(prefix + [sys.executable, "-m", "pipelines.cli", argv[0], "-q",
                                    *argv[1:]],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert [line for line in lines if line.startswith("clipdedup: error:")] == lines, lines
    (line,) = lines
    assert all(part in line for part in ((message,) if isinstance(message, str) else message))
    assert "Traceback" not in proc.stderr
    for folder in ("out", "read-only"):
        assert not (tmp_path / folder).exists() or not any((tmp_path / folder).rglob("*"))


@pytest.mark.parametrize("exc, code", [(ValueError("bad\nvalue"), 2),
                                       (PermissionError(13, "Permission denied"), 2),
                                       (RuntimeError("a bug"), None), (KeyError("a bug"), None)])
def test_main_turns_user_errors_into_one_line_and_keeps_bugs(monkeypatch, capsys, exc, code):
    def run(argv=None):
        raise exc

    monkeypatch.setattr(cli, "run", run)
    if code is None:  # a bug: its traceback, exit 1
        assert cli.exit_code() == 1
        err = capsys.readouterr().err
        assert err.startswith("Traceback") and "a bug" in err
        return
    assert cli.exit_code() == code
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("clipdedup: error: ") and "\n" not in line


def test_beams_log_of_our_own_data_errors_is_dropped_and_of_others_kept():
    import logging

    from pipelines.cli import _without_beams_user_error_tracebacks as keep
    from transforms.diff import PairTableError
    from transforms.mine.transform import EmbeddingsTableError

    def record(logger, exc):
        try:
            raise exc
        except Exception:
            info = sys.exc_info()
        return logging.LogRecord(logger, logging.ERROR, __file__, 1, "failed", None, info)

    beam_log = "apache_beam.runners.common"
    assert not keep(record(beam_log, EmbeddingsTableError("2 vectors hold NaN")))
    assert not keep(record(beam_log, PairTableError("a pair without an id")))
    assert keep(record(beam_log, ValueError("from numpy, say: a bug keeps its traceback")))
    assert keep(record(beam_log, RuntimeError("a bug")))
    assert keep(record("clipdedup", EmbeddingsTableError("logged by us, kept")))
    assert keep(logging.LogRecord(beam_log, logging.ERROR, __file__, 1, "no exception", None,
                                  None))
