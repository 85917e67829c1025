"""`clipdedup query`: the images of a run most similar to a given one.

    clipdedup query --run out/<run_id> --image photo.jpg [--image ...] [-k 10] \
        [--json] [--html hits.html] [--device cpu]

Each query image is read, decoded and embedded exactly as the run embedded its
records: the run's model, image size, pixel cap and backend come from its
`summary.json`, decoding is `transforms.decode.decode_image`, and the vector
comes from the same `SentenceTransformerImageHandler` the workers run. The
run's embeddings are loaded file by file into one float32 matrix of unit
vectors (N x d x 4 bytes) and searched exactly with faiss's flat
inner-product search (`IndexFlatIP`'s kernel, `faiss.knn`, without the
index's second copy of the vectors): the score is the cosine similarity the
run's pair tables use. What loading
and a search cost at 100k and 1M vectors is measured in docs/query.md
(`bench/query.py`).

Output: per query a table (rank, score, record_id, key, source_uri), or with
`--json` one JSON object per hit. `--html` writes a self-contained page with
thumbnails of the query and its hits, read back from the run's inputs with the
pipeline's own readers (image files, tar members, Parquet rows).
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import os
import sys
from collections.abc import Iterator

import numpy as np

log = logging.getLogger("clipdedup")

DEFAULT_K = 10
HIT_COLUMNS = ["record_id", "source_uri", "key", "width", "height", "file_size"]


class QueryImageError(ValueError):
    """A query image that cannot be read or decoded (a user error: exit 2)."""


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What a published run says about how it read and embedded its images."""

    folder: str
    model: str
    image_size: int
    backend: str
    max_pixels: int
    max_file_bytes: int
    image_column: str
    key_column: str | None
    is_stand_in: bool

    @property
    def embeddings(self) -> str:
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.join(self.folder, "embeddings")


def read_run(folder: str) -> RunInfo:
    """The run published at `folder`.

    Raises:
        FileNotFoundError: `folder` is not a published run (no `_SUCCESS`).
        ValueError: the run embedded nothing itself (a `mine`-only run).
    """
    from apache_beam.io.filesystems import FileSystems

    from pipelines.config import Config
    from transforms.embed.model_files import DEFAULT_IMAGE_SIZE

    folder = folder.rstrip("/")
    if not FileSystems.exists(FileSystems.join(folder, "_SUCCESS")):
        raise FileNotFoundError(f"{folder}: not a published run folder (no _SUCCESS)")
    with FileSystems.open(FileSystems.join(folder, "summary.json")) as f:
        summary = json.loads(f.read())
    config = summary.get("config", {})
    if "embed" not in summary.get("stages", []) or "model" not in summary:
        raise ValueError(f"{folder}: this run did not embed images (stages "
                         f"{summary.get('stages')}); query the run that embedded them")
    defaults = Config()  # for keys a run of an older version did not write
    return RunInfo(folder, summary["model"],
                   int(summary.get("image_size", DEFAULT_IMAGE_SIZE)),
                   config.get("backend", defaults.backend),
                   int(config.get("max_image_pixels", defaults.max_image_pixels)),
                   int(config.get("max_file_bytes", defaults.max_file_bytes)),
                   config.get("image_column", defaults.image_column),
                   config.get("key_column", defaults.key_column),
                   bool(summary.get("model_is_stand_in")))


def warn_if_stand_in(model: str, is_stand_in: bool) -> None:
    """The loud line runs print for a random-weight model."""
    if is_stand_in:
        log.warning("MODEL IS A STAND-IN: %s has random weights, not the real "
                    "clip-ViT-B-32; its scores are not meaningful for real data", model)


def decode_query(data: bytes, name: str, image_size: int, max_pixels: int) -> np.ndarray:
    """uint8 [S, S, 3] pixels of a query image, as the run's decode stage made them.

    Raises:
        QueryImageError: the image cannot be decoded (one line, with the reason code).
    """
    from transforms.decode import DecodeError, decode_image

    try:
        return decode_image(data, image_size, max_pixels)[0]
    except DecodeError as exc:
        raise QueryImageError(f"{name}: cannot be decoded ({exc})") from None


class QueryEncoder:
    """Decoded pixels -> unit vectors, with the handler a run's workers use.

    Args:
        model: the run's model (hub name, local folder, gs:// folder).
        image_size: the side of the square pixels the run decoded.
        backend: the run's backend (`torch`, `torch-int8`, `onnx-int8`).
        device: where to run the model here (`cpu` or `cuda`).
    """

    def __init__(self, model: str, image_size: int, backend: str = "torch",
                 device: str = "cpu"):
        from transforms.embed.images import SentenceTransformerImageHandler
        from transforms.embed.model_files import inspect_model

        inspect_model(model)  # a model that cannot be loaded here: one line, before torch
        self._handler = SentenceTransformerImageHandler(
            model, device, backend=backend, image_size=image_size,
            share_across_processes=False)
        self._model = self._handler.load_model()

    def embed(self, pixels: list[np.ndarray]) -> np.ndarray:
        results = self._handler.run_inference(pixels, self._model)
        return np.stack([r.inference for r in results]).astype(np.float32)


class RunIndex:
    """A run's embeddings as one float32 matrix, searched exactly by inner product.

    The search is faiss's exact k-NN (`faiss.knn` with METRIC_INNER_PRODUCT:
    what `IndexFlatIP.search` runs) on the matrix itself, so the vectors are
    held once: an `IndexFlatIP` would keep its own copy (and grow it by
    doubling while vectors are added), twice the memory at 1M x 512. Vectors
    are copied file by file and batch by batch into rows allocated up front
    from the files' row counts, and normalised in place, as mining does.
    `ids[i]` is the record_id of row i. `files` (default: the Parquet files
    in the folder `embeddings`) names the files when they are not one folder's
    (a `mine`-only run's source table, given as a glob or a list).
    """

    def __init__(self, embeddings: str, files: list[str] | None = None):
        import pyarrow as pa

        from transforms.mine.transform import (
            EmbeddingsTableError,
            check_schema,
            ids_as_strings,
            match_files,
        )
        from transforms.parquet_open import open_parquet

        self.embeddings = embeddings
        files = files or match_files(_parquet_pattern(embeddings))
        n = 0
        for path in files:
            parquet = open_parquet(path)
            check_schema(path, parquet.schema_arrow)
            n += parquet.metadata.num_rows
        self.vectors = None
        ids, row = [], 0
        for path in files:
            parquet = open_parquet(path)
            for batch in parquet.iter_batches(batch_size=65536,
                                              columns=["record_id", "embedding"]):
                column = batch.column("embedding")
                if not len(column):
                    continue
                if column.null_count:
                    raise EmbeddingsTableError(f"{path}: {column.null_count} rows have no vector")
                values = column.flatten().to_numpy(zero_copy_only=False)
                if self.vectors is None:
                    self.vectors = np.empty((n, len(values) // len(column)), np.float32)
                if len(values) != len(column) * self.vectors.shape[1]:
                    raise EmbeddingsTableError(f"{path}: embeddings are not all of width "
                                               f"{self.vectors.shape[1]}")
                block = self.vectors[row:row + len(column)]
                block[:] = values.reshape(len(column), -1)
                norms = np.linalg.norm(block, axis=1, keepdims=True)
                block /= np.where(norms > 0, norms, 1.0)
                row += len(column)
                ids.append(ids_as_strings(batch.column("record_id")).to_numpy(
                    zero_copy_only=False))
            del parquet, batch, column, values
            pa.default_memory_pool().release_unused()  # a file's buffers, before the next
        if row != n:
            raise EmbeddingsTableError(f"{embeddings}: read {row} rows, the files say {n}")
        self.ids = np.concatenate(ids) if ids else np.array([], object)

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [q, k'], row numbers [q, k']) best first, k' = min(k, rows)."""
        import faiss

        k = min(k, len(self))
        if k == 0:
            return np.zeros((len(vectors), 0), np.float32), np.zeros((len(vectors), 0), np.int64)
        return faiss.knn(np.ascontiguousarray(vectors, np.float32), self.vectors, k,
                         metric=faiss.METRIC_INNER_PRODUCT)


def _parquet_pattern(embeddings: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.join(embeddings, "*.parquet")


def hit_rows(embeddings: str, record_ids: set[str]) -> dict[str, dict]:
    """The metadata rows (`HIT_COLUMNS`) of `record_ids`, read file by file."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from transforms.mine.transform import match_files
    from transforms.parquet_open import open_parquet

    wanted = pa.array(sorted(record_ids), pa.string())
    rows = {}
    for path in match_files(_parquet_pattern(embeddings)):
        table = open_parquet(path).read(columns=HIT_COLUMNS)
        for row in table.filter(pc.is_in(table.column("record_id"), wanted)).to_pylist():
            rows[row["record_id"]] = row
    return rows


@dataclasses.dataclass
class QueryResult:
    query: str  # the path the user gave
    data: bytes
    hits: list[dict]  # rank, score and HIT_COLUMNS, best first


def query(run: str, images: list[str], k: int = DEFAULT_K, device: str = "cpu"
          ) -> tuple[RunInfo, list[QueryResult]]:
    """The `k` most similar records of the run at `run` to each image of `images`."""
    from tools.pictures import read_file

    if k < 1:
        raise ValueError(f"-k must be at least 1, got {k}")
    info = read_run(run)
    datas = [read_file(path, info.max_file_bytes) for path in images]
    pixels = [decode_query(d, path, info.image_size, info.max_pixels)
              for d, path in zip(datas, images)]
    warn_if_stand_in(info.model, info.is_stand_in)
    vectors = QueryEncoder(info.model, info.image_size, info.backend, device).embed(pixels)
    index = RunIndex(info.embeddings)
    scores, rows = index.search(vectors, k)
    rows_by_id = hit_rows(info.embeddings, {index.ids[r] for r in rows.ravel()})
    results = []
    for path, data, q_scores, q_rows in zip(images, datas, scores, rows):
        hits = [{"rank": rank, "score": float(s), **rows_by_id[index.ids[r]]}
                for rank, (s, r) in enumerate(zip(q_scores, q_rows), start=1)]
        results.append(QueryResult(path, data, hits))
    return info, results


def table(info: RunInfo, results: list[QueryResult]) -> str:
    lines = []
    for result in results:
        lines.append(f"query {result.query}: {len(result.hits)} nearest of run "
                     f"{info.folder} (model {info.model}"
                     + (", A STAND-IN WITH RANDOM WEIGHTS" if info.is_stand_in else "") + ")")
        lines.append(f"  {'rank':>4}  {'score':>8}  {'record_id':<20}  {'key':<30}  source_uri")
        for h in result.hits:
            lines.append(f"  {h['rank']:>4}  {h['score']:8.5f}  {h['record_id']:<20}  "
                         f"{h['key']:<30}  {h['source_uri']}")
    return "\n".join(lines)


def json_lines(results: list[QueryResult]) -> Iterator[str]:
    for result in results:
        for h in result.hits:
            yield json.dumps({"query": result.query, **h}, sort_keys=True)


def read_back(info: RunInfo, hits: list[dict]) -> dict[str, bytes | str]:
    """The image bytes of each hit (by record_id), read from its source file with
    the pipeline's readers; a string instead says why it could not be read.

    Each source file is read once, and only until its last wanted record.
    """
    from apache_beam.io.filesystems import FileSystems

    from transforms.read import formats

    by_file: dict[str, set[str]] = {}
    for h in hits:
        by_file.setdefault(h["source_uri"], set()).add(h["record_id"])
    found: dict[str, bytes | str] = {}
    for uri, wanted in by_file.items():
        kind = formats.input_kind(uri)
        try:
            with FileSystems.open(uri) as f:
                reader = (formats.read_tar_shard(uri, f) if kind == formats.TAR else
                          formats.read_parquet_file(uri, f, info.image_column, info.key_column)
                          if kind == formats.PARQUET else formats.read_image_file(uri, f))
                for record in reader:
                    if not isinstance(record, dict) and record.record_id in wanted:
                        found[record.record_id] = record.data
                        if wanted <= found.keys():
                            break
        # A page of thumbnails is still useful when an input moved or changed
        # since the run: that hit shows why instead of failing the page.
        except Exception as exc:  # noqa: BLE001
            for record_id in wanted - found.keys():
                found[record_id] = f"{uri} cannot be read: {type(exc).__name__}: {exc}"
        for record_id in wanted - found.keys():
            found[record_id] = f"not found in {uri} (the file changed since the run?)"
    return found


def _figure(data: bytes | str, caption: str, max_pixels: int) -> str:
    from tools import pictures
    from transforms.decode import DecodeError

    if isinstance(data, bytes):
        try:
            uri = pictures.data_uri(pictures.thumbnail(pictures.open_rgb(data, max_pixels)))
            body = f'<img src="{uri}" alt="">'
        except DecodeError as exc:
            body = f'<div class="missing">{html.escape(str(exc))}</div>'
    else:
        body = f'<div class="missing">{html.escape(data)}</div>'
    return f"<figure>{body}<figcaption>{caption}</figcaption></figure>"


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
.warn { background: #b00; color: #fff; padding: .5em; font-weight: bold; }
.row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
figure { margin: 0; width: 260px; }
figure img { max-width: 256px; max-height: 256px; display: block; border: 1px solid #ccc; }
figcaption { font-size: 12px; word-break: break-all; }
.query figure img { border: 3px solid #36c; }
.missing { width: 256px; height: 96px; background: #eee; font-size: 12px; padding: 4px;
           overflow: hidden; }
"""


def html_page(info: RunInfo, results: list[QueryResult]) -> str:
    """A self-contained page (thumbnails inline) of each query and its hits."""
    stored = read_back(info, [h for r in results for h in r.hits])
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>clipdedup query"
             f"</title><style>{_STYLE}</style></head><body>",
             f"<h1>Nearest images in {esc(info.folder)}</h1>",
             f"<p>model {esc(info.model)}, images decoded at {info.image_size}x"
             f"{info.image_size}, backend {esc(info.backend)}; score = cosine similarity "
             "(exact search)</p>"]
    if info.is_stand_in:
        parts.append("<p class='warn'>MODEL IS A STAND-IN (random weights): these scores say "
                     "nothing about the real model</p>")
    for result in results:
        parts.append(f"<h2>{esc(result.query)}</h2><div class='row query'>")
        parts.append(_figure(result.data, "query", info.max_pixels))
        parts.append("</div><div class='row'>")
        for h in result.hits:
            caption = (f"#{h['rank']} score {h['score']:.5f}<br>{esc(h['key'])}<br>"
                       f"{esc(h['source_uri'])}<br>{h['width']}x{h['height']}, "
                       f"{h['file_size']} bytes<br>{esc(h['record_id'])}")
            parts.append(_figure(stored[h["record_id"]], caption, info.max_pixels))
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def run(args) -> int:
    """The `query` subcommand; returns the exit status."""
    info, results = query(args.run, args.images, args.k, args.device)
    if args.json:
        for line in json_lines(results):
            print(line)
    else:
        print(table(info, results))
    if args.html:
        page = html_page(info, results)
        os.makedirs(os.path.dirname(os.path.abspath(args.html)), exist_ok=True)
        with open(args.html, "w", encoding="utf-8") as f:
            f.write(page)
        print(f"wrote {args.html}", file=sys.stderr if args.json else sys.stdout)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("query", help="the images of a run most similar to given images")
    p.add_argument("--run", required=True, help="a published run folder (<output>/<run_id>)")
    p.add_argument("--image", required=True, action="append", dest="images",
                   help="query image file; repeatable")
    p.add_argument("-k", type=int, default=DEFAULT_K, help=f"hits per query (default {DEFAULT_K})")
    p.add_argument("--json", action="store_true", help="one JSON object per hit instead of a table")
    p.add_argument("--html", help="also write a self-contained page with thumbnails here")
    p.add_argument("--device", default="cpu", help="where to run the model: cpu or cuda")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
