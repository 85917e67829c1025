"""Config: backend and device are checked when the config is built."""

from __future__ import annotations

import pytest

from pipelines.config import Config


def test_config_rejects_int8_on_cuda_and_unknown_backends():
    assert Config(backend="onnx-int8").backend == "onnx-int8"
    with pytest.raises(ValueError):
        Config(backend="torch-int8", device="cuda")
    with pytest.raises(ValueError):
        Config(backend="tensorrt")
