"""Stage 4, embed: decoded images -> vectors, with a sentence-transformers CLIP model.

`SentenceTransformerImageHandler` is a Beam `ModelHandler` around
`sentence_transformers.SentenceTransformer(model_name_or_path)`: a hub name
(`clip-ViT-B-32`), a local folder, or a `gs://`/`s3://` folder that is copied
to local disk in `load_model`. `EmbedImages` runs it through `RunInference`
wrapped in `KeyedModelHandler`, so each vector stays paired with its record;
a batch that fails inference becomes one error row per record
(`stage=embed`, `reason=inference_failed`) instead of failing the job.
Vectors are L2-normalised float32.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import (
    KeyedModelHandler,
    ModelHandler,
    PredictionResult,
    RunInference,
)

from transforms import records as R
from transforms.embed import allocator
from transforms.embed.model_files import is_remote
from transforms.embed.pixel_handler import PixelsHandler
from transforms.metrics import Progress, counter

log = logging.getLogger(__name__)



def copy_model_to_local(remote_dir: str, local_dir: str) -> str:
    """Copies every file below `remote_dir` (gs://, s3://...) into `local_dir`."""
    prefix = remote_dir.rstrip("/") + "/"
    matches = FileSystems.match([prefix + "**"])[0].metadata_list
    if not matches:
        raise FileNotFoundError(f"no model files under {remote_dir}")
    for meta in matches:
        target = os.path.join(local_dir, meta.path[len(prefix):])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with FileSystems.open(meta.path) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    return local_dir


class SentenceTransformerImageHandler(PixelsHandler):
    """RunInference handler: uint8 [S, S, 3] pixels -> unit float32 vectors.

    The model is always loaded with `SentenceTransformer(model_name_or_path)`
    (hub names, local folders and copied remote folders behave the same).
    For a plain CLIP model the batch then runs on the underlying transformers
    model through `transforms.embed.backends` (one stacked, normalised tensor per
    batch; the vectors equal `encode`'s within float tolerance, see
    tests/transforms/test_embed.py); any other model falls back to
    `SentenceTransformer.encode` on PIL images.

    On a GPU the model is shared across the SDK worker processes of a VM
    (Beam's `multi_process_shared`): one copy in GPU memory serves every
    process, instead of one copy each. On CPU each process keeps its own
    copy, so processes encode in parallel.

    Args:
        model_name_or_path: hub name, local folder, or gs:// / s3:// folder.
        device: `cpu` or `cuda[:N]` (fp16 autocast on CUDA).
        batch_size: images per forward pass; 0 picks the device's default.
        backend: `torch`, `torch-int8` or `onnx-int8` (`backends.BACKENDS`).
        num_threads: torch intra-op threads per worker; 0 keeps torch's default.
        share_across_processes: share one model per VM; default: on CUDA only.
        image_size: side S of the pixels the decode stage makes; a plain
            CLIP that takes another size fails in `load_model`, not record
            by record. None: not checked.
    """

    def __init__(self, model_name_or_path: str, device: str = "cpu", batch_size: int = 0,
                 backend: str = "torch", num_threads: int = 0,
                 share_across_processes: bool | None = None, image_size: int | None = None):
        from transforms.embed import backends

        super().__init__()
        backends.validate(backend, device)
        self._model = model_name_or_path
        self._device = device
        self._batch_size = batch_size or backends.default_batch_size(device)
        self._backend = backend
        self._num_threads = num_threads
        self._image_size = image_size
        self._share_across_processes = (device.startswith("cuda")
                                        if share_across_processes is None
                                        else share_across_processes)

    def load_model(self):
        from transforms.embed import backends
        from transforms.long_lived import long_lived

        if self._num_threads:
            import torch
            torch.set_num_threads(self._num_threads)
        if not self._device.startswith("cuda"):
            allocator.keep_freed_memory()  # activations reused, not re-faulted, per batch
        path = self._model
        if is_remote(path):
            path = copy_model_to_local(path, tempfile.mkdtemp(prefix="clipdedup-model-"))
        log.info("loading model %s on %s (backend %s)", self._model, self._device, self._backend)
        with long_lived():  # sentence-transformers' modules and the model itself
            from sentence_transformers import SentenceTransformer

            st_model = SentenceTransformer(path, device=self._device)
            encoder = backends.load_encoder(st_model, self._backend, self._device)
        if encoder is None:
            log.info("%s is not a plain CLIP model: embedding through encode()", self._model)
            return _EncodeFallback(st_model)
        if self._image_size and encoder.image_size != self._image_size:
            raise ValueError(f"model {self._model} takes {encoder.image_size}x"
                             f"{encoder.image_size} images, but the pipeline decodes "
                             f"{self._image_size}x{self._image_size}")
        return encoder

    def batch_elements_kwargs(self) -> dict[str, Any]:
        # Fixed-size batches: a full batch per forward pass; the last batch of
        # a bundle is flushed smaller.
        return {"min_batch_size": self._batch_size, "max_batch_size": self._batch_size}

    def share_model_across_processes(self) -> bool:
        return self._share_across_processes


def encode_pil(st_model, pixels: Sequence[np.ndarray]) -> np.ndarray:
    """The reference recipe: `SentenceTransformer.encode` on PIL images."""
    from PIL import Image

    images = [Image.fromarray(p) for p in pixels]
    vectors = st_model.encode(images, batch_size=len(images), convert_to_numpy=True,
                              normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


class _EncodeFallback:
    """`encode_pixels` for a SentenceTransformer that is not a plain CLIP."""

    def __init__(self, st_model):
        self.st_model = st_model

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return encode_pil(self.st_model, list(pixels))


def _meta(image: R.DecodedImage) -> tuple:
    r = image.record
    return (r.record_id, r.source_uri, r.key, r.sha256, image.width, image.height, r.file_size,
            image.phash)


class _ToEmbeddingRowFn(beam.DoFn):
    def __init__(self, model_name: str):
        self._model_name = model_name
        self._progress = None

    def setup(self):
        self._progress = Progress("embed")

    def process(self, keyed: tuple[tuple, PredictionResult]):
        (record_id, source_uri, key, sha256, width, height, file_size, phash), result = keyed
        counter("embedded").inc()
        self._progress.add()
        yield {"record_id": record_id, "source_uri": source_uri, "key": key, "sha256": sha256,
               "width": width, "height": height, "file_size": file_size,
               "model": self._model_name, "embedding": result.inference.tolist(),
               "phash": phash}


def _failed_batch_to_errors(failure):
    batch, (exc_type, exc_repr, _traceback) = failure
    for (record_id, source_uri, key, *_), _pixels in batch:
        counter("embed_failed").inc()
        yield R.error_row(R.EMBED, R.INFERENCE_FAILED, exc_repr, source_uri=source_uri,
                          record_id=record_id, key=key)


class EmbedImages(beam.PTransform):
    """`DecodedImage` -> embeddings rows (main) and error rows (`errors`).

    Rows follow `schemas.embeddings_schema(dim, phash=True)`; `model` is the
    name the user gave, so tables from different models never mix unnoticed;
    `phash` is the decode stage's perceptual hash of the image.
    """

    def __init__(self, handler: ModelHandler, model_name: str):
        super().__init__()
        self._handler = handler
        self._model_name = model_name

    def expand(self, images: beam.PCollection[R.DecodedImage]):
        results, dlq = (
            images
            | "KeyByRecord" >> beam.Map(lambda im: (_meta(im), im.pixels))
            | "RunInference" >> RunInference(KeyedModelHandler(self._handler))
            .with_exception_handling())
        rows = results | "ToRows" >> beam.ParDo(_ToEmbeddingRowFn(self._model_name))
        errors = dlq.failed_inferences | "FailedBatches" >> beam.FlatMap(_failed_batch_to_errors)
        return rows, errors
