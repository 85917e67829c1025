"""Model-free image descriptors (and pretrained CNNs) as embedders, beside CLIP.

`--model NAME` with one of these reserved names embeds with a descriptor
instead of a sentence-transformers model; `DescriptorHandler` is a Beam
`ModelHandler` with the same contract as `SentenceTransformerImageHandler`
(uint8 [S, S, 3] decoded pixels in, L2-normalised float32 vectors out), so
the embed stage, the tables and the cosine miner are the same. Each vector
form is chosen so that the cosine the miner computes is a known similarity:

- `phash`: the 64 pHash bits of the model's input (the decoded centre crop)
  as +-1/8; cosine = 1 - 2 * hamming / 64 (Hamming <= 10 is cosine >= 0.6875).
- `color-histogram`: the 8x8x8 RGB histogram as probabilities p, stored as
  sqrt(p) (unit length since sum p = 1); cosine = sum sqrt(p q), the
  Bhattacharyya coefficient BC, and 1 - cosine is the squared Hellinger
  distance. The comparisons the seeds name are bounded by it (docs/quality.md):
  1 - intersection lies in [1 - BC, sqrt(1 - BC^2)], the symmetric chi-square
  sum (p-q)^2/(p+q) in [2 (1 - BC), 4 (1 - BC)]; correlation is exactly the
  cosine of the mean-centred histogram, another vector form.
- `hog`: scikit-image's HOG of the crop in greyscale at 64x64 (9
  orientations, 8x8 cells, 2x2 blocks, L2-Hys): 1764 values.
- `resnet50`, `vgg16`: torchvision's ImageNet CNNs, global-average-pooled
  last convolutional features (2048 / 512), only when torchvision and the
  weights are on this machine (torch hub's checkpoint folder, or the file
  named by `CLIPDEDUP_CNN_WEIGHTS`); clipdedup never downloads them.

The descriptors run on the CPU in numpy; `summary.json` names them as the
model with `model_kind: descriptor`, so their tables are never taken for CLIP's.
"""

from __future__ import annotations

import glob
import logging
import os
from typing import Any

import numpy as np

from transforms.embed.model_files import ModelNotFoundError
from transforms.embed.pixel_handler import PixelsHandler

log = logging.getLogger(__name__)

PHASH, COLOR_HISTOGRAM, HOG, RESNET50, VGG16 = "phash", "color-histogram", "hog", "resnet50", "vgg16"
CNNS = {RESNET50: 2048, VGG16: 512}
DIMS = {PHASH: 64, COLOR_HISTOGRAM: 512, HOG: 1764, **CNNS}
HOG_SIDE = 64
WEIGHTS_ENV = "CLIPDEDUP_CNN_WEIGHTS"


def is_descriptor(name: str | None) -> bool:
    """Whether `name` is one of the reserved descriptor names (not a model folder)."""
    return name in DIMS


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def phash_vectors(pixels: np.ndarray) -> np.ndarray:
    """[B, S, S, 3] uint8 -> [B, 64] +-1/8 vectors of each image's pHash bits."""
    from PIL import Image

    from transforms.phash import RESIZED, hash_bits

    out = np.empty((len(pixels), 64), np.float32)
    for k, p in enumerate(pixels):
        gray = Image.fromarray(np.ascontiguousarray(p)).convert("L").resize(
            (RESIZED, RESIZED), Image.Resampling.LANCZOS, reducing_gap=3.0)
        out[k] = np.where(hash_bits(np.asarray(gray, np.float64)).ravel(), 1.0, -1.0) / 8.0
    return out


def color_histograms(pixels: np.ndarray, bins: int = 8) -> np.ndarray:
    """[B, S, S, 3] uint8 -> [B, bins^3] histograms as probabilities (each sums to 1)."""
    shift = 8 - int(np.log2(bins))
    q = (np.asarray(pixels, np.uint8) >> shift).astype(np.int64)
    index = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    out = np.empty((len(pixels), bins ** 3), np.float32)
    for k, idx in enumerate(index.reshape(len(pixels), -1)):
        counts = np.bincount(idx, minlength=bins ** 3)
        out[k] = counts / max(1, counts.sum())
    return out


def color_histogram_vectors(pixels: np.ndarray) -> np.ndarray:
    """sqrt of the 8x8x8 histogram: unit vectors whose cosine is the Bhattacharyya coefficient."""
    return np.sqrt(color_histograms(pixels))


def hog_vectors(pixels: np.ndarray) -> np.ndarray:
    """[B, S, S, 3] uint8 -> [B, 1764] unit HOG vectors (greyscale, 64x64)."""
    from PIL import Image
    from skimage.feature import hog

    out = np.empty((len(pixels), DIMS[HOG]), np.float32)
    for k, p in enumerate(pixels):
        gray = Image.fromarray(np.ascontiguousarray(p)).convert("L").resize(
            (HOG_SIDE, HOG_SIDE), Image.Resampling.BILINEAR)
        out[k] = hog(np.asarray(gray, np.float64) / 255.0, orientations=9,
                     pixels_per_cell=(8, 8), cells_per_block=(2, 2), block_norm="L2-Hys")
    return _unit(out)


class _NumpyEncoder:
    """`encode_pixels` for a descriptor function (what the handler's model is)."""

    def __init__(self, fn):
        self._fn = fn

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return _unit(self._fn(pixels))


def cnn_weights(name: str) -> str:
    """The weights file of CNN `name` on this machine.

    Raises:
        ModelNotFoundError: torchvision is not installed or no weights file is here.
    """
    try:
        import torchvision  # noqa: F401 - only whether it is installed
    except ImportError:
        raise ModelNotFoundError(
            f"model {name} needs torchvision, which is not installed (pip install "
            "torchvision), and its ImageNet weights on disk; or use --model phash, "
            "color-histogram or hog") from None
    explicit = os.environ.get(WEIGHTS_ENV)
    if explicit:
        if not os.path.isfile(explicit):
            raise ModelNotFoundError(f"{WEIGHTS_ENV}={explicit} is not a file")
        return explicit
    import torch.hub

    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    found = sorted(glob.glob(os.path.join(folder, f"{name}-*.pth")))
    if not found:
        raise ModelNotFoundError(
            f"model {name}: no weights in {folder} ({name}-*.pth) and {WEIGHTS_ENV} is not "
            "set; clipdedup does not download them")
    return found[-1]


class _CnnEncoder:
    """A torchvision ImageNet CNN's pooled features of ImageNet-normalised pixels."""

    def __init__(self, name: str, weights: str, device: str):
        import torch
        import torchvision

        model = getattr(torchvision.models, name)(weights=None)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        body = (torch.nn.Sequential(*list(model.children())[:-1]) if name == RESNET50
                else model.features)
        self._body = body.eval().to(device)
        self._device = device
        self._mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1).to(device)
        self._std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1).to(device)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self._device)
            x = (x.permute(0, 3, 1, 2).float() / 255.0 - self._mean) / self._std
            features = self._body(x).mean(dim=(2, 3))  # global average pooling
        return _unit(features.cpu().numpy())


_FUNCTIONS = {PHASH: phash_vectors, COLOR_HISTOGRAM: color_histogram_vectors, HOG: hog_vectors}


def check_available(name: str) -> None:
    """Raises ModelNotFoundError (one line) when descriptor `name` cannot run here."""
    if name in CNNS:
        cnn_weights(name)


class DescriptorHandler(PixelsHandler):
    """RunInference handler: uint8 [S, S, 3] pixels -> a descriptor's unit vectors.

    Args:
        name: one of `DIMS` (`phash`, `color-histogram`, `hog`, `resnet50`, `vgg16`).
        device: where a CNN runs (`cpu`, `cuda`); descriptors run in numpy.
        batch_size: images per call; 0 = 64.
    """

    def __init__(self, name: str, device: str = "cpu", batch_size: int = 0):
        super().__init__()
        if not is_descriptor(name):
            raise ValueError(f"{name!r} is not a descriptor; known: {', '.join(DIMS)}")
        self._name = name
        self._device = device
        self._batch_size = batch_size or 64

    def load_model(self):
        if self._name in CNNS:
            return _CnnEncoder(self._name, cnn_weights(self._name), self._device)
        return _NumpyEncoder(_FUNCTIONS[self._name])

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self._batch_size}

