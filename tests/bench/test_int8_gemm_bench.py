"""bench/int8_gemm.py helpers: the products it times are the right ones."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_int8", ROOT / "bench" / "int8_gemm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.OUT = str(tmp_path)
    return module


@pytest.mark.parametrize("int8", [False, True])
def test_onnx_product_computes_x_times_w(tmp_path, int8):
    pytest.importorskip("onnxruntime")
    bench = _bench(tmp_path)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 64), dtype=np.float32)
    w = (rng.standard_normal((64, 32)) * 0.1).astype(np.float32)
    got = bench._onnx_session(64, 32, w, int8=int8).run(None, {"x": x})[0]
    error = np.linalg.norm(got - x @ w) / np.linalg.norm(x @ w)
    assert error < (0.05 if int8 else 1e-5)
    if int8:
        import onnx

        ops = {n.op_type for n in onnx.load(str(tmp_path / "matmul_64x32_int8.onnx")).graph.node}
        assert "MatMulInteger" in ops


def test_layer_seconds_weights_each_shape_by_its_count_per_layer(tmp_path):
    bench = _bench(tmp_path)
    timings = {"qkv/out": 1.0, "fc1": 10.0, "fc2": 100.0}
    assert bench.layer_seconds(timings) == 4 * 1.0 + 10.0 + 100.0
    flops = sum(bench._flop(k, n) * count for _, k, n, count in bench.SHAPES)
    assert flops == 2 * 800 * 12 * 768 * 768  # 12 d^2 multiply-adds per token and layer
