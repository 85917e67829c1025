"""What every embedder's RunInference handler shares: uint8 pixel batches in, vectors out.

`SentenceTransformerImageHandler` (CLIP) and `DescriptorHandler` (pHash,
histograms, HOG, CNNs) differ in how they load a model; both models expose
`encode_pixels([B, S, S, 3] uint8) -> [B, D] float32`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from transforms.embed.model_files import INFERENCE_NAMESPACE


class PixelsHandler(ModelHandler[np.ndarray, np.ndarray, Any]):
    """A batch of decoded images through the loaded model's `encode_pixels`."""

    def run_inference(self, batch: Sequence[np.ndarray], model,
                      inference_args: dict[str, Any] | None = None
                      ) -> Iterable[PredictionResult]:
        # A method call, not isinstance: `model` may be a proxy to a model
        # shared across processes (share_across_processes).
        vectors = model.encode_pixels(np.stack(batch))
        return [PredictionResult(x, v) for x, v in zip(batch, vectors)]

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(x.nbytes for x in batch)

    def get_metrics_namespace(self) -> str:
        return INFERENCE_NAMESPACE
