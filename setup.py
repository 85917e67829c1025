"""Installs clipdedup: the `pipelines` and `transforms` packages, the YAML
configs and the `clipdedup` console script.

Also serves as Dataflow's `--setup_file`, so workers get the same code.
"""

import os

import setuptools

HERE = os.path.dirname(os.path.abspath(__file__))


def requirements():
    with open(os.path.join(HERE, "requirements.txt"), encoding="utf-8") as f:
        return [line.split("#")[0].strip() for line in f
                if line.split("#")[0].strip() and not line.startswith("-")]


setuptools.setup(
    name="clipdedup",
    version="0.1.0",
    description="Batch dataset cleaning: exact copies, duplicates and near-duplicates "
                "of images with CLIP embeddings on Apache Beam.",
    packages=setuptools.find_packages(include=["pipelines", "pipelines.*",
                                               "transforms", "transforms.*"]),
    data_files=[("configs", ["configs/local.yaml", "configs/dataflow.yaml"])],
    python_requires=">=3.10",
    install_requires=requirements(),
    entry_points={"console_scripts": ["clipdedup=pipelines.cli:main"]},
)
