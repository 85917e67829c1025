"""Domain settings of a clipdedup run, in one frozen dataclass.

Settings come from a YAML file in `configs/` and are overridden by CLI flags;
runner settings (`--runner`, `--direct_num_workers`, Dataflow flags) are not
here: they pass straight through to Beam's `PipelineOptions`.
Every key is documented in `configs/local.yaml` and in the README.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import yaml

MODES = ("auto", "exact", "approximate", "distributed")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs besides the runner options."""

    # Inputs: globs or directories; the kind (tar/parquet/image) is per file.
    inputs: tuple[str, ...] = ()
    image_column: str = "image"  # Parquet: binary or struct<bytes, path>
    key_column: str | None = None  # Parquet: column used as `key` (else row number)

    # Model.
    model: str = "clip-ViT-B-32"
    device: str = "cpu"  # cpu or cuda[:N] (fp16 autocast)
    embedding_dim: int | None = None  # read from the model folder when None
    batch_size: int = 0  # images per forward pass; 0 = per-device default
    backend: str = "torch"  # torch | torch-int8 | onnx-int8 (docs/throughput.md)
    num_threads: int = 0  # torch threads per worker; 0 = torch's default

    # Decoding.
    max_image_pixels: int = 89_478_485  # Pillow's default cap, made explicit
    decode_isolation: str = "none"  # none | subprocess (contains decoder hangs and crashes)
    decode_timeout_s: float = 30.0  # per image, in subprocess isolation
    decode_ahead: int = 32  # isolation none: records decoded ahead of the model in threads; 0 = inline
    # true: one thread decodes while the model runs (GPU); false: decoding and the
    # model take turns, each with all cores (CPU); auto: true on cuda, false on cpu.
    decode_overlap: bool | str = "auto"

    # Mining.
    duplicate_threshold: float = 0.999
    near_duplicate_threshold: float = 0.90
    mode: str = "auto"
    block_size: int = 4096
    # Mining, per mode (transforms/mining/). auto: exact below approximate_min_n rows.
    approximate_min_n: int = 200_000
    nlist: int = 0  # approximate/distributed partitions; 0 = auto (sqrt(nprobe*N) / N/partition_size)
    nprobe: int = 8  # approximate: partitions each vector is compared against
    partitions_per_vector: int = 2  # distributed: nearest centroids each vector is sent to
    partition_size: int = 20_000  # distributed, nlist 0: target vectors per partition
    recall_sample_size: int = 1000  # rows searched exactly to measure recall (0 = skip)
    recall_target: float = 0.99  # lower sampled recall is flagged in summary.json
    mining_seed: int = 0  # k-means and sampling seed (same seed, same pairs)
    # `mine` on a table made elsewhere: its id and vector columns.
    id_column: str = "record_id"
    embedding_column: str = "embedding"
    # Groups and the keep/drop manifest.
    keeper_rule: str = "-area,-file_size,record_id"  # fields: area,width,height,file_size,record_id
    drop_near_duplicates: bool = True  # False: only exact copies and duplicates are dropped

    # Outputs.
    output: str = "out"
    run_id: str | None = None
    num_output_shards: int = 0  # 0 = let the runner decide
    max_error_fraction: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 < self.near_duplicate_threshold <= self.duplicate_threshold <= 1.0:
            raise ValueError(
                "thresholds must satisfy 0 < near_duplicate_threshold <= "
                f"duplicate_threshold <= 1, got near={self.near_duplicate_threshold} "
                f"dup={self.duplicate_threshold}"
            )
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.decode_isolation not in ("none", "subprocess"):
            raise ValueError("decode_isolation must be 'none' or 'subprocess', "
                             f"got {self.decode_isolation!r}")
        if self.decode_timeout_s <= 0:
            raise ValueError("decode_timeout_s must be positive")
        if self.decode_ahead < 0:
            raise ValueError("decode_ahead must be >= 0")
        if self.decode_overlap not in ("auto", True, False):
            raise ValueError("decode_overlap must be auto, true or false, "
                             f"got {self.decode_overlap!r}")
        if self.batch_size < 0 or self.block_size < 1 or self.num_threads < 0:
            raise ValueError("batch_size and num_threads must be >= 0, block_size positive")
        from transforms.backends import validate as validate_backend

        validate_backend(self.backend, self.device)  # e.g. int8 on cuda is an error
        if min(self.nprobe, self.partitions_per_vector, self.partition_size) < 1 or self.nlist < 0:
            raise ValueError("nprobe, partitions_per_vector, partition_size must be positive, nlist >= 0")
        if self.recall_sample_size < 0 or not 0.0 <= self.recall_target <= 1.0:
            raise ValueError("recall_sample_size must be >= 0 and recall_target within [0, 1]")
        from transforms.mining.groups import parse_keeper_rule

        parse_keeper_rule(self.keeper_rule)  # raises on unknown fields
        if not 0.0 <= self.max_error_fraction <= 1.0:
            raise ValueError("max_error_fraction must be within [0, 1]")

    @property
    def decode_overlaps(self) -> bool:
        """`decode_overlap` resolved: `auto` overlaps only when the model runs on a GPU."""
        if self.decode_overlap == "auto":
            return self.device != "cpu"
        return bool(self.decode_overlap)

    def replace(self, **changes: Any) -> Config:
        """A copy with `changes` applied; `None` values are ignored."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if "inputs" in changes:
            changes["inputs"] = tuple(changes["inputs"])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["inputs"] = list(self.inputs)
        return out


# Where the bundled configs live: `configs/` in a source checkout, and
# `pipelines/configs/` inside an installed wheel (setup.py copies them there),
# so `--config dataflow` works on a Dataflow worker and after `pip install`.
_CONFIG_DIRS = (os.path.join(os.path.dirname(__file__), "configs"),
                os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "configs"))


def resolve_config_path(path: str) -> str:
    """A YAML path as given, or a bundled config by name (`local`, `dataflow`)."""
    if os.path.isfile(path):
        return path
    name = os.path.basename(path)
    name = name if name.endswith((".yaml", ".yml")) else name + ".yaml"
    if os.sep in path.rstrip(os.sep) and os.path.dirname(path) != "configs":
        raise FileNotFoundError(f"config file not found: {path}")
    for folder in _CONFIG_DIRS:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"config not found: {path} (bundled configs: local, dataflow)")


def load_config(path: str | None) -> Config:
    """Reads a YAML config; unknown keys are an error, not a silent no-op.

    Args:
        path: a YAML file, or the name of a bundled config (`local`,
            `dataflow`, also as `configs/dataflow.yaml` from any folder).
    """
    if not path:
        return Config()
    path = resolve_config_path(path)
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of settings")
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown config keys {unknown}; known keys: {sorted(known)}")
    if "inputs" in raw:
        raw["inputs"] = tuple(raw["inputs"] or ())
    return Config(**raw)
