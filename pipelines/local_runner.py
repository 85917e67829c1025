"""The engine a run uses when no `--runner` is named: Beam's FnApiRunner, directly.

Beam's `DirectRunner` (2.77) first offers any pipeline Prism accepts (here
the mine, diff and thumbnail jobs) to Prism, a Go engine it downloads from
GitHub on first use, and falls back to the FnApiRunner when Prism cannot
start. On a machine without internet every such job pays for the failed
attempt (and keeps the loopback worker-pool server it started); on a machine
with internet the job downloads a binary and runs on an engine these tests
never run. `LocalRunner` does what `DirectRunner` does once Prism is out of
the way: the FnApiRunner, given the pipeline's options as the DirectRunner
gives them (`--direct_num_workers` and `--direct_running_mode` work as
before). A `--runner DirectRunner` named on the command line keeps Beam's
own behaviour.

The DirectRunner picks its bundle-based runner instead of the FnApiRunner
for what the FnApiRunner cannot run (streaming, some combines with side
inputs); for each of clipdedup's jobs it picks the FnApiRunner
(tests/pipelines/test_local_runner.py asks it), so they run on the same
engine as before.
"""

from __future__ import annotations

from apache_beam.runners.runner import PipelineRunner

NAME = f"{__name__}.LocalRunner"  # a `--runner` value: Beam imports the class by its path


class LocalRunner(PipelineRunner):
    """Runs a batch pipeline on Beam's FnApiRunner in this process (or in the
    workers `--direct_running_mode` asks for)."""

    def run_pipeline(self, pipeline, options):
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle

        # As the DirectRunner does: workers in other processes read the options here.
        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        provision_info = fn_runner.ExtendedProvisionInfo(
            beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
        return fn_runner.FnApiRunner(provision_info=provision_info).run_pipeline(
            pipeline, options)
