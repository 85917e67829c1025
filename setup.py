"""Installs clipdedup: the `pipelines`, `transforms` and `tools` packages, the YAML
configs and the `clipdedup` console script.

Also serves as Dataflow's `--setup_file`, so workers get the same code.
"""

import glob
import os
import re
import shutil

import setuptools
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, "configs", "*.yaml")))


class BuildPyWithConfigs(build_py):
    """Also copies `configs/*.yaml` into the package as `pipelines/configs/`.

    The source keeps one copy of each config at the top level; an installed
    wheel (and a Dataflow worker) finds them by name through
    `pipelines.config.resolve_config_path`.
    """

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "pipelines", "configs")
        os.makedirs(target, exist_ok=True)
        for path in CONFIGS:
            shutil.copy(os.path.join(HERE, path), target)


def version():
    with open(os.path.join(HERE, "pipelines", "__init__.py"), encoding="utf-8") as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


def requirements():
    with open(os.path.join(HERE, "requirements.txt"), encoding="utf-8") as f:
        return [line.split("#")[0].strip() for line in f
                if line.split("#")[0].strip() and not line.startswith("-")]


setuptools.setup(
    name="clipdedup",
    version=version(),
    description="Batch dataset cleaning: exact copies, duplicates and near-duplicates "
                "of images with CLIP embeddings on Apache Beam.",
    packages=setuptools.find_packages(include=["pipelines", "pipelines.*", "tools", "tools.*",
                                               "transforms", "transforms.*"]),
    data_files=[("configs", CONFIGS)],
    cmdclass={"build_py": BuildPyWithConfigs},
    python_requires=">=3.10",
    install_requires=requirements(),
    entry_points={"console_scripts": ["clipdedup=pipelines.cli:main"]},
)
