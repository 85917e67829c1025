"""What a sentence-transformers model is, read from its small files.

`inspect_model(name)` is the launcher's check that the model can be loaded,
made before any pipeline starts: it finds the model's folder (a local folder,
a `gs://`/`s3://` folder, or a hub name in the local Hugging Face cache, else
on the hub if it answers within seconds), checks that it is a
sentence-transformers model, and reads the embedding width and the square
image size its processor takes. No weights are loaded and torch is not
imported. A model that cannot be found raises `ModelNotFoundError`, one line
saying why and how to pass a model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import urllib.parse

from apache_beam.io.filesystems import FileSystems

HUB_ORGANIZATION = "sentence-transformers"  # what SentenceTransformer prefixes to bare names
DEFAULT_IMAGE_SIZE = 224
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
HOW_TO_PASS = ("pass a local sentence-transformers model folder with --model PATH "
               "(for tests: `clipdedup make-stand-in --output models/clip-tiny`)")


# Beam's RunInference metrics (batch sizes and latencies) for our model land here.
INFERENCE_NAMESPACE = "clipdedup_inference"

# Vector sizes of well-known models, so a launcher need not download a model
# to learn the width of the embeddings table.
KNOWN_DIMS = {"clip-ViT-B-32": 512, "clip-ViT-B-16": 512, "clip-ViT-L-14": 768,
              "sentence-transformers/clip-ViT-B-32": 512,
              "sentence-transformers/clip-ViT-B-16": 512,
              "sentence-transformers/clip-ViT-L-14": 768}

# Written into a stand-in model's folder by `tools/stand_in.py`: random
# weights, never to be presented as the real model.
STAND_IN_MARKER = "clipdedup_stand_in.json"


def is_stand_in(model_path: str) -> bool:
    """True when `model_path` is a local folder written by `clipdedup make-stand-in`."""
    return os.path.isfile(os.path.join(model_path, STAND_IN_MARKER))


class ModelNotFoundError(FileNotFoundError):
    """The model named cannot be loaded from here."""


@dataclasses.dataclass(frozen=True)
class ModelFiles:
    """Args: folder: where the files are (the hub cache for hub names);
    dim: embedding width, or None when no config says; image_size: side of
    the square input the processor makes, or None when no config says."""

    folder: str
    dim: int | None
    image_size: int | None


def is_remote(path: str) -> bool:
    return FileSystems.get_scheme(path) not in (None, "file")


def _join(folder: str, *parts: str) -> str:
    parts = [p for p in parts if p]
    return FileSystems.join(folder, *parts) if is_remote(folder) else os.path.join(folder, *parts)


def _exists(path: str) -> bool:
    return FileSystems.exists(path) if is_remote(path) else os.path.isfile(path)


def _read_json(path: str):
    """The parsed file, or None when it is missing or not JSON."""
    try:
        if is_remote(path):
            with FileSystems.open(path) as f:
                return json.loads(f.read().decode("utf-8"))
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _square(crop) -> int | None:
    """The side of a square `crop_size` (an int or {"height", "width"}), else None."""
    if isinstance(crop, int):
        return crop
    if isinstance(crop, dict) and crop.get("height") and crop.get("height") == crop.get("width"):
        return int(crop["height"])
    return None


def image_size(module_folder: str) -> int | None:
    """The square input size of a CLIP module folder, from its processor's
    crop size (`processor_config.json` as sentence-transformers 5+ saves it,
    or `preprocessor_config.json`), else the vision config's `image_size`."""
    processor = _read_json(_join(module_folder, "processor_config.json")) or {}
    processor = processor.get("image_processor", processor) if isinstance(processor, dict) else {}
    for config in (processor, _read_json(_join(module_folder, "preprocessor_config.json"))):
        if isinstance(config, dict) and "crop_size" in config:
            return _square(config["crop_size"])
    config = _read_json(_join(module_folder, "config.json"))
    size = (config or {}).get("vision_config", {}).get("image_size") if isinstance(config, dict) \
        else None
    return int(size) if size else None


def embedding_dim(module_folder: str) -> int | None:
    config = _read_json(_join(module_folder, "config.json"))
    dim = config.get("projection_dim") if isinstance(config, dict) else None
    return int(dim) if dim else None


def read_folder(folder: str, check_weights: bool = True) -> ModelFiles:
    """Checks that `folder` holds a sentence-transformers model and reads it.

    Raises:
        ModelNotFoundError: no `modules.json`, or its first module has no
            config or (with `check_weights`) no weights.
    """
    modules = _read_json(_join(folder, "modules.json"))
    if not isinstance(modules, list) or not modules or not isinstance(modules[0], dict):
        raise ModelNotFoundError(f"model folder {folder} is not a sentence-transformers model "
                                 f"(no readable modules.json); {HOW_TO_PASS}")
    first = _join(folder, str(modules[0].get("path", "")))
    if not _exists(_join(first, "config.json")):
        raise ModelNotFoundError(f"model folder {folder} is incomplete: no config.json in "
                                 f"{first}; {HOW_TO_PASS}")
    if check_weights and not any(_exists(_join(first, w)) for w in WEIGHT_FILES):
        raise ModelNotFoundError(f"model folder {folder} has no weights ({' or '.join(WEIGHT_FILES[:2])}"
                                 f" in {first}); {HOW_TO_PASS}")
    return ModelFiles(folder, embedding_dim(first), image_size(first))


def hub_repo(name: str) -> str:
    return name if "/" in name else f"{HUB_ORGANIZATION}/{name}"


def _looks_like_a_path(name: str) -> bool:
    """Names SentenceTransformer would never look up on the hub."""
    return (name.startswith((".", "/", "~")) or name.count("/") > 1
            or (os.sep == "\\" and "\\" in name))


def _hub_answers(timeout: float) -> bool:
    """Whether the hub's host accepts a connection within `timeout` seconds.
    huggingface_hub itself retries an unreachable hub for about 20 s per file;
    behind a proxy the connection cannot be tested here, so it is assumed."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urllib.parse.urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def _from_hub(name: str, timeout: float) -> ModelFiles:
    from huggingface_hub import constants, hf_hub_download, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo = hub_repo(name)
    try:  # the cache first: no network at all
        folder = snapshot_download(repo, local_files_only=True)
        return read_folder(folder, check_weights=False)
    except (LocalEntryNotFoundError, ModelNotFoundError, OSError):
        pass
    if not _hub_answers(timeout):
        raise ModelNotFoundError(
            f"model {name!r} cannot be loaded: no folder of that name, not in the Hugging Face "
            f"cache ({constants.HF_HUB_CACHE}), and the hub ({constants.ENDPOINT}) is "
            f"{'disabled (HF_HUB_OFFLINE)' if constants.HF_HUB_OFFLINE else 'unreachable'}; "
            f"{HOW_TO_PASS}")
    try:  # only the small files; workers download the weights
        modules = hf_hub_download(repo, "modules.json")
        folder = os.path.dirname(modules)
        entry = (_read_json(modules) or [{}])[0]
        sub = str(entry.get("path", "")) if isinstance(entry, dict) else ""
        for file in ("config.json", "processor_config.json", "preprocessor_config.json"):
            try:
                hf_hub_download(repo, f"{sub}/{file}" if sub else file)
            except (LocalEntryNotFoundError, HfHubHTTPError):
                continue  # optional files
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise ModelNotFoundError(f"model {name!r} cannot be loaded from the hub ({repo}: "
                                 f"{type(exc).__name__}); {HOW_TO_PASS}") from None
    return read_folder(folder, check_weights=False)


def inspect_model(name: str, timeout: float = 3.0) -> ModelFiles:
    """Finds and checks the model `name` (see the module docstring).

    Args:
        name: a local folder, a gs:// / s3:// folder, or a hub name
            (`clip-ViT-B-32` is `sentence-transformers/clip-ViT-B-32`).
        timeout: seconds to wait for the hub to accept a connection.

    Raises:
        ModelNotFoundError: the model cannot be loaded; the message says why.
    """
    if not name:
        raise ModelNotFoundError(f"no model given; {HOW_TO_PASS}")
    if is_remote(name) or os.path.isdir(name):
        return read_folder(name)
    if os.path.exists(name):
        raise ModelNotFoundError(f"model {name} is a file, not a folder; {HOW_TO_PASS}")
    if _looks_like_a_path(name):
        raise ModelNotFoundError(f"model folder {name} does not exist; {HOW_TO_PASS}")
    return _from_hub(name, timeout)
