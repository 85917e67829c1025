"""How much faster int8 matrix products are than fp32 on this CPU (`make bench-int8`).

    .venv/bin/python bench/int8_gemm.py [--rounds 7]

The int8 backends quantise the vision tower's matrix products only; layer
norms, attention softmax, GELU and the patch embedding stay fp32. So the int8
speed-up of the whole forward pass is bounded by the speed-up of the matrix
products themselves, on this CPU's instruction set. This bench measures that
ceiling on ViT-B/32's own shapes at batch 16 (M = 16 images x 50 tokens = 800
rows; per encoder layer: q, k, v and out are K=768 N=768, fc1 is K=768
N=3072, fc2 is K=3072 N=768) for four contenders:

  torch fp32      `nn.Linear` (what the `torch` backend runs)
  torch int8      `quantize_dynamic` (fbgemm; the `torch-int8` backend)
  onnx fp32       ONNX Runtime MatMul + Add
  onnx int8       the same quantised with `quantize_dynamic` (the `onnx-int8` recipe)

Each contender runs in its own subprocess, round after round, and the
ratios are medians of same-round ratios: two runtimes' thread pools in one
process slow each other down (ONNX Runtime's spinning workers cut torch's
fp32 rate by up to 2x in a side test), and this VM's speed drifts by 10-20%
within minutes.

The torch fp32 child also times the whole fp32 forward of the ViT-B/32
stand-in at the same batch, which gives f, the share of the forward spent in
these matrix products. With r the best int8/fp32 ratio of the matrix
products, whole-model int8/fp32 is at most r / f (if everything else were
free in int8) and about 1 / ((1 - f) + f / r) if everything else costs what
it costs in fp32.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
BASE_MODEL = os.path.join(ROOT, "bench-output", "clip-base")
OUT = os.path.join(ROOT, "bench-output", "int8-gemm")

ROWS = 16 * 50
# (name, K, N, products per encoder layer)
SHAPES = (("qkv/out", 768, 768, 4), ("fc1", 768, 3072, 1), ("fc2", 3072, 768, 1))
LAYERS = 12
CONTENDERS = ("torch fp32", "torch int8", "onnx fp32", "onnx int8")


def _flop(k: int, n: int) -> float:
    return 2.0 * ROWS * k * n


def _timed(fn, seconds: float = 1.5) -> float:
    """Seconds per call: warm up, then repeat for about `seconds`."""
    fn()
    fn()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - started) / calls


def _onnx_session(k: int, n: int, weight: np.ndarray, int8: bool):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    os.makedirs(OUT, exist_ok=True)
    fp32 = os.path.join(OUT, f"matmul_{k}x{n}.onnx")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.zeros(n, np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, fp32)
    path = fp32
    if int8:
        path = fp32.replace(".onnx", "_int8.onnx")
        quantize_dynamic(fp32, path, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def child(contender: str) -> dict:
    """Seconds per product for each shape (and, for torch fp32, per forward)."""
    import logging
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    rng = np.random.default_rng(0)
    result = {}
    with torch.inference_mode():
        for name, k, n, _ in SHAPES:
            x = rng.standard_normal((ROWS, k), dtype=np.float32)
            weight = (rng.standard_normal((k, n)) * 0.02).astype(np.float32)
            if contender.startswith("torch"):
                linear = torch.nn.Linear(k, n)
                linear.weight.data = torch.from_numpy(weight.T.copy())
                if contender == "torch int8":
                    linear = torch.ao.quantization.quantize_dynamic(
                        torch.nn.Sequential(linear), {torch.nn.Linear}, dtype=torch.qint8)
                xt = torch.from_numpy(x)
                result[name] = _timed(lambda: linear(xt))
            else:
                session = _onnx_session(k, n, weight, int8=contender == "onnx int8")
                result[name] = _timed(lambda: session.run(None, {"x": x}))
        if contender == "torch fp32":
            from sentence_transformers import SentenceTransformer

            from transforms import backends, clip_tower

            clip = backends.clip_parts(SentenceTransformer(BASE_MODEL, device="cpu"))[0]
            tower = clip_tower.image_tower(clip, 224, rewrite=False)
            pixels = torch.from_numpy(rng.standard_normal((16, 3, 224, 224), dtype=np.float32))
            result["forward"] = _timed(lambda: tower(pixels), seconds=6.0)
    return result


def run_child(contender: str) -> dict:
    from bench import children

    return children.run(__file__, ["--child", contender])


def layer_seconds(r: dict) -> float:
    """Seconds of one encoder layer's matrix products."""
    return sum(r[name] * per_layer for name, _, _, per_layer in SHAPES)


def cpu_int8_features() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    return " ".join(f"{w}={'yes' if w in flags else 'no'}" for w in wanted)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--child", choices=CONTENDERS)
    args = p.parse_args()
    if args.child:
        from bench import children

        children.emit(child(args.child))
        return

    started = time.time()
    if not os.path.exists(BASE_MODEL):
        from tools.stand_in import write_stand_in
        write_stand_in(BASE_MODEL, "base")
    print(f"cpu: {os.cpu_count()} cores; {cpu_int8_features()}")
    print(f"matrix products of ViT-B/32 at batch 16 (M={ROWS}); each contender in its own "
          f"process, {args.rounds} interleaved rounds")
    rounds = []
    for i in range(args.rounds):
        rounds.append({c: run_child(c) for c in CONTENDERS})
        base = layer_seconds(rounds[-1]["torch fp32"])
        print(f"  round {i + 1}: layer matmuls " + ", ".join(
            f"{c} {base / layer_seconds(rounds[-1][c]):.2f}x" for c in CONTENDERS[1:]), flush=True)

    def median(fn) -> float:
        return statistics.median(fn(r) for r in rounds)

    print(f"{'':10}" + "".join(f"{c:>22}" for c in CONTENDERS))
    for name, k, n, _ in SHAPES:
        cells = []
        for c in CONTENDERS:
            gflops = median(lambda r, c=c, name=name: _flop(k, n) / r[c][name] / 1e9)
            ratio = median(lambda r, c=c, name=name: r["torch fp32"][name] / r[c][name])
            cells.append(f"{gflops:6.0f} GFLOP/s {ratio:4.2f}x")
        print(f"{name:10}" + "".join(f"{cell:>22}" for cell in cells))
    ratios = {c: median(lambda r, c=c: layer_seconds(r["torch fp32"]) / layer_seconds(r[c]))
              for c in CONTENDERS}
    print("one encoder layer's matrix products, x torch fp32 (median of rounds): "
          + ", ".join(f"{c} {ratios[c]:.2f}" for c in CONTENDERS[1:]))
    f = median(lambda r: LAYERS * layer_seconds(r["torch fp32"]) / r["torch fp32"]["forward"])
    best = max(("torch int8", "onnx int8"), key=ratios.get)
    r = ratios[best]
    print(f"share of the torch fp32 forward (ViT-B/32 stand-in, batch 16) in these products: "
          f"f = {f:.2f}")
    print(f"whole-model int8 / torch fp32 with the best int8 products ({best}, r = {r:.2f}):")
    print(f"  at most r / f               = {r / f:.2f}   (everything else free in int8)")
    print(f"  about 1 / ((1 - f) + f / r) = {1 / ((1 - f) + f / r):.2f}   "
          "(everything else as in fp32)")
    print(f"bench took {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
