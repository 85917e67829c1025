"""Domain settings of a clipdedup run, in one frozen dataclass.

Settings come from a YAML file in `configs/` and are overridden by CLI flags;
runner settings (`--runner`, `--direct_num_workers`, Dataflow flags) are not
here: they pass straight through to Beam's `PipelineOptions`.
Every key is documented in `configs/local.yaml` and in the README.
"""

from __future__ import annotations

import dataclasses
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

    # Mining.
    duplicate_threshold: float = 0.999
    near_duplicate_threshold: float = 0.90
    mode: str = "auto"
    block_size: int = 4096

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
        if self.batch_size < 0 or self.block_size < 1 or self.num_threads < 0:
            raise ValueError("batch_size and num_threads must be >= 0, block_size positive")
        if not 0.0 <= self.max_error_fraction <= 1.0:
            raise ValueError("max_error_fraction must be within [0, 1]")

    def replace(self, **changes: Any) -> "Config":
        """A copy with `changes` applied; `None` values are ignored."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if "inputs" in changes:
            changes["inputs"] = tuple(changes["inputs"])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["inputs"] = list(self.inputs)
        return out


def load_config(path: str | None) -> Config:
    """Reads a YAML config; unknown keys are an error, not a silent no-op."""
    if not path:
        return Config()
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
