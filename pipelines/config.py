"""Domain settings of a clipdedup run, in one frozen dataclass.

Settings come from a YAML file in `configs/` and are overridden by CLI flags;
runner settings (`--runner`, `--direct_num_workers`, Dataflow flags) are not
here: they pass straight through to Beam's `PipelineOptions`.
Every key is documented in `configs/local.yaml` and in the README.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from typing import Any

import yaml

from transforms.records import DEFAULT_MAX_IMAGE_PIXELS

MODES = ("auto", "exact", "approximate", "distributed")
KEEPER_POLICIES = ("pure", "stable")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs besides the runner options."""

    # Inputs: globs or directories; the kind (tar/parquet/image) is per file.
    inputs: tuple[str, ...] = ()
    image_column: str = "image"  # Parquet: binary or struct<bytes, path>
    key_column: str | None = None  # Parquet: column used as `key` (else row number)
    max_file_bytes: int = 256 << 20  # larger image files / tar members: `file_too_large` errors

    # Model.
    model: str = "clip-ViT-B-32"
    device: str = "cpu"  # cpu or cuda[:N] (fp16 autocast)
    embedding_dim: int | None = None  # read from the model folder when None
    batch_size: int = 0  # images per forward pass; 0 = per-device default
    backend: str = "torch"  # torch | torch-int8 | onnx-int8 (docs/throughput.md)
    num_threads: int = 0  # torch threads per worker; 0 = torch's default

    # Decoding.
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
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
    # Connected components on one worker (a union-find, ~100 B per record)
    # up to this many records; above, in rounds spread over the workers.
    components_one_worker_max_records: int = 2_000_000
    # Mining, per mode (transforms/mine/). auto: exact below approximate_min_n rows.
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
    # pure: keepers by the keeper rule alone (a full run's result); stable: with a
    # previous run, its keepers are kept while present and within the threshold.
    keeper_policy: str = "pure"
    # The diff against --previous: up to this many rows in both runs' tables, computed
    # in the launcher (a job start costs more); above, as a Beam job.
    diff_in_process_max_rows: int = 1_000_000

    # Alerts on what changed since the previous run (summary.json `alerts`); null = off.
    alert_max_new_duplicate_share: float | None = 0.5  # new records that duplicate old ones
    alert_max_error_rate_increase: float | None = 0.01  # error rate, absolute increase
    alert_max_pair_count_change: float | None = 0.5  # |pairs after / before - 1|
    alert_on_low_recall: bool = True  # sampled recall below recall_target

    # Outputs.
    output: str | None = "out"  # None: must be given (configs/dataflow.yaml)
    run_id: str | None = None
    num_output_shards: int = 0  # 0 = let the runner decide
    max_error_fraction: float = 0.05

    # Review report: report.html in the run folder (tools/report/).
    report: bool = True  # false: none (`clipdedup report RUN` writes it later)
    report_bands: tuple[float, ...] = (0.999, 0.98, 0.95)  # lower edges of the sampled score bands
    report_pairs_per_band: int = 8  # pairs sampled per band
    report_seed: int = 0  # sampling seed: same run and seed, same pictures

    def __post_init__(self) -> None:
        problems = []
        for field in dataclasses.fields(self):
            try:
                # frozen: the checked value (a list as a tuple, an int as a float) is set in place
                object.__setattr__(self, field.name, _checked(field.name, getattr(self, field.name)))
            except ValueError as exc:
                problems.append(str(exc))
        if problems:  # every wrong field at once, on one line
            raise ValueError("; ".join(problems))
        if self.near_duplicate_threshold > self.duplicate_threshold:
            raise ValueError(
                "thresholds must satisfy 0 < near_duplicate_threshold <= "
                f"duplicate_threshold <= 1, got near={self.near_duplicate_threshold} "
                f"dup={self.duplicate_threshold}"
            )
        from transforms.embed.backends import validate as validate_backend

        validate_backend(self.backend, self.device)  # e.g. int8 on cuda is an error
        from transforms.manifest.keeper_rule import parse_keeper_rule

        parse_keeper_rule(self.keeper_rule)  # raises on unknown fields
        if self.run_id is not None:
            from pipelines.run_names import validate_run_id

            validate_run_id(self.run_id)  # before anything is created under the output

    @property
    def decode_overlaps(self) -> bool:
        """`decode_overlap` resolved: `auto` overlaps only when the model runs on a GPU."""
        if self.decode_overlap == "auto":
            return self.device != "cpu"
        return bool(self.decode_overlap)

    def replace(self, **changes: Any) -> Config:
        """A copy with `changes` applied; `None` values are ignored."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["inputs"] = list(self.inputs)
        return out


# What each field accepts beyond its type. Every int and float field has a
# range (tests/pipelines/test_config_types.py checks that none is missing).
@dataclasses.dataclass(frozen=True)
class _Range:
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: `low` itself is outside the range

    def __contains__(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        return above and (self.high is None or value <= self.high)  # NaN is in no range

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"within {'(' if self.low_open else '['}{self.low}, {self.high}]"


_RANGES = {
    "embedding_dim": _Range(1), "batch_size": _Range(0), "num_threads": _Range(0),
    "max_image_pixels": _Range(1), "max_file_bytes": _Range(1),
    "decode_timeout_s": _Range(0, low_open=True),
    "decode_ahead": _Range(0),
    "duplicate_threshold": _Range(0, 1, low_open=True),
    "near_duplicate_threshold": _Range(0, 1, low_open=True),
    "block_size": _Range(1), "approximate_min_n": _Range(0), "nlist": _Range(0),
    "components_one_worker_max_records": _Range(0),
    "nprobe": _Range(1), "partitions_per_vector": _Range(1), "partition_size": _Range(1),
    "recall_sample_size": _Range(0), "recall_target": _Range(0, 1), "mining_seed": _Range(0),
    "num_output_shards": _Range(0), "max_error_fraction": _Range(0, 1),
    "report_bands": _Range(0, 1, low_open=True), "report_pairs_per_band": _Range(0),
    "report_seed": _Range(0),
    "alert_max_new_duplicate_share": _Range(0, 1), "alert_max_error_rate_increase": _Range(0, 1),
    "alert_max_pair_count_change": _Range(0), "diff_in_process_max_rows": _Range(0),
}
_CHOICES = {"mode": MODES, "decode_isolation": ("none", "subprocess"),
            "decode_overlap": ("auto", True, False), "keeper_policy": KEEPER_POLICIES}
# Strings, or list items, that may not be empty.
_NON_EMPTY = {"inputs", "image_column", "key_column", "model", "id_column", "embedding_column"}
_TYPES = typing.get_type_hints(Config)


def _as_type(name: str, value: Any, hint: Any) -> Any:
    """`value` if it is of type `hint` (ints widen to float, lists become tuples).

    Strict on purpose: YAML's "16" is not an int and "no" is not a bool.
    """
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return None
        if option is bool and isinstance(value, bool):
            return value
        if option in (int, float) and isinstance(value, int) and not isinstance(value, bool):
            return option(value)
        if option is float and isinstance(value, float):
            return value
        if option is str and isinstance(value, str):
            if name.split("[")[0] in _NON_EMPTY and not value.strip():
                raise ValueError(f"{name} must not be empty")
            return value
        if typing.get_origin(option) is tuple and isinstance(value, (list, tuple)):
            item = typing.get_args(option)[0]
            return tuple(_as_type(f"{name}[{i}]", v, item) for i, v in enumerate(value))
    raise ValueError(f"{name} must be {_describe(hint)}, got {value!r}")


def _describe(hint: Any) -> str:
    if isinstance(hint, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0]).split(' ', 1)[1]}s"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            type(None): "null"}[hint]


def _checked(name: str, value: Any) -> Any:
    """The value of field `name`, type- and range-checked; raises ValueError naming it."""
    if name in _CHOICES:
        # type and value together: 1 == True, but 1 is not a choice of decode_overlap
        if not any(type(value) is type(c) and value == c for c in _CHOICES[name]):
            shown = (str(c).lower() if isinstance(c, bool) else c for c in _CHOICES[name])
            raise ValueError(f"{name} must be one of {', '.join(shown)}, got {value!r}")
        return value
    if name == "inputs" and value is None:
        value = ()  # `inputs:` left empty in YAML
    value = _as_type(name, value, _TYPES[name])
    if name in _RANGES and value is not None:
        items = value if isinstance(value, tuple) else (value,)  # a list: each item
        if any(v not in _RANGES[name] for v in items):
            raise ValueError(f"{name} must be {_RANGES[name]}, got {value!r}")
    return value


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
    """Reads a YAML config; unknown keys, wrong types and values out of range
    are an error naming the file, never a silent default.

    Args:
        path: a YAML file, or the name of a bundled config (`local`,
            `dataflow`, also as `configs/dataflow.yaml` from any folder).
    """
    if not path:
        return Config()
    path = resolve_config_path(path)
    with open(path, encoding="utf-8") as f:
        try:
            raw = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}{_yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    known = [f.name for f in dataclasses.fields(Config)]
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise ValueError(f"{path}: unknown config keys {unknown}"
                         + "".join(f" ({k!r}: did you mean {m[0]!r}?)" for k in unknown
                                   if (m := difflib.get_close_matches(k, known, 1)))
                         + f"; known keys: {sorted(known)}")
    try:
        return Config(**raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """`:LINE:COLUMN: not valid YAML: ...` on one line (PyYAML's own text spans several)."""
    mark = getattr(exc, "problem_mark", None)
    where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    context = getattr(exc, "context", None)
    if context and getattr(exc, "context_mark", None) and exc.context_mark.line != mark.line:
        context += f" that starts on line {exc.context_mark.line + 1}"
    return f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")
