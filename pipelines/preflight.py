"""Checks made before any pipeline starts, so a wrong path fails in a second, in one line.

Without them a glob matching nothing fails inside the running graph with a
`BeamIOError` traceback, a read-only output fails after the whole embed pass,
and a `gs://` path without Google credentials retries for minutes before its
traceback. In order:

1. there are inputs (when embedding);
2. `gs://` paths have Google credentials (`google.auth.default()`), unless
   Beam's `--no_auth` says to go without;
3. every `--input` pattern matches at least one file;
4. the output folder can be created and written (a probe file is written
   and deleted there; names starting with `_` are skipped by readers).

Each failure is a `PreflightError` (a `ValueError`): exit 2, one line.
"""

from __future__ import annotations

import logging
import os
import uuid

from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from pipelines.config import Config
from transforms.read.files import expand_input


class PreflightError(ValueError):
    """An input, output or credential that cannot work; found before the run starts."""


def check(config: Config, beam_args: list[str], *, embed: bool,
          embeddings: str | list[str] | None = None) -> None:
    """Raises PreflightError for the first of the checks above that fails.

    Args:
        config: the run's settings (inputs, output, model).
        beam_args: the flags for Beam (for `--no_auth`).
        embed: whether the embed stage runs (only then are inputs read).
        embeddings: the table(s) `mine` reads when it runs alone.
    """
    if embed and not config.inputs:
        raise PreflightError("no inputs given: pass --input (a glob or a directory)")
    tables = [embeddings] if isinstance(embeddings, str) else list(embeddings or ())
    paths = [*(config.inputs if embed else ()), config.output, *tables,
             config.model if embed else None]
    cloud = [p for p in paths if p and p.startswith("gs://")]
    if cloud and not PipelineOptions(list(beam_args)).view_as(GoogleCloudOptions).no_auth:
        check_google_credentials(cloud[0])
    if embed:
        for pattern in config.inputs:
            check_matches(pattern)
    if config.output:
        check_writable(config.output)


def check_google_credentials(path: str) -> None:
    """Application Default Credentials exist (reading `path` would otherwise retry for minutes)."""
    try:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError
    except ImportError:
        raise PreflightError(f"{path}: gs:// paths need `pip install 'apache-beam[gcp]'`") from None
    auth_log = logging.getLogger("google.auth")
    level = auth_log.level
    auth_log.setLevel(logging.ERROR)  # its warnings would repeat, over lines, the one below
    try:
        google.auth.default()
    except DefaultCredentialsError as exc:
        reason = str(exc).split(". ")[0]
        raise PreflightError(
            f"{path} needs Google Cloud credentials: {reason}; run `gcloud auth "
            "application-default login` or set GOOGLE_APPLICATION_CREDENTIALS") from None
    finally:
        auth_log.setLevel(level)


def check_matches(pattern: str) -> None:
    """`pattern` (a glob, a file or a folder) names at least one file."""
    try:
        found = FileSystems.match([expand_input(pattern)], limits=[1])[0].metadata_list
    except BeamIOError as exc:
        raise PreflightError(f"--input {pattern!r} cannot be listed: "
                             f"{' '.join(str(exc).split())}") from None
    if found:
        return
    if FileSystems.get_scheme(pattern) is None and os.path.isdir(pattern):
        raise PreflightError(f"--input {pattern!r} is a folder with no files in it")
    raise PreflightError(f"--input {pattern!r} matches no files")


def check_writable(output: str) -> None:
    """The output folder exists or can be made, and a file can be written in it."""
    probe = FileSystems.join(output, f"_write-probe-{uuid.uuid4().hex}")
    try:
        if FileSystems.get_scheme(output) is None:
            os.makedirs(output, exist_ok=True)
        with FileSystems.create(probe) as f:
            f.write(b"clipdedup write probe\n")
        FileSystems.delete([probe])
    # Any failure here means "cannot write there"; object stores raise their own
    # (non-OSError) classes for a missing bucket or a refused write.
    except Exception as exc:  # noqa: BLE001
        reason = (exc.strerror if isinstance(exc, OSError) and exc.strerror
                  else " ".join(str(exc).split()) or type(exc).__name__)
        raise PreflightError(f"output {output} is not writable: {reason}") from None
