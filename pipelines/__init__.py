"""The launcher: the CLI, the config, the two Beam graphs and the run folder they publish.

    cli.py -> config.py -> preflight.py -> jobs.py (embed_pipeline.py, mine_pipeline.py,
    checks.py) -> run_folder.py
"""

__version__ = "0.1.0"  # setup.py and summary.json read it here
