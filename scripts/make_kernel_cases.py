#!/usr/bin/env python3
"""Kernel cases for graphrw's evaluator, computed by TensorFlow.

Each case is a tiny graph (placeholders -> one op) saved in the fixture
format of make_fixtures.py under tests/kernels/<case>/: model.pb, meta.json,
and the input and output arrays TensorFlow computed.

Usage: python scripts/make_kernel_cases.py [--out tests/kernels]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from make_fixtures import write_fixture  # noqa: E402


def cases(tf, rng):
    """(name, inputs {name: array}, build(placeholders) -> tensor)."""
    v1 = tf.compat.v1
    f = lambda *shape: rng.standard_normal(shape).astype("float32")
    x = f(1, 9, 8, 3)
    w = f(3, 3, 3, 4)
    yield "conv_same_stride2", {"x": x, "w": w}, lambda p: tf.nn.conv2d(p["x"], p["w"], [1, 2, 2, 1], "SAME")
    yield "conv_valid_dilated", {"x": x, "w": w}, lambda p: tf.nn.conv2d(p["x"], p["w"], 1, "VALID", dilations=2)
    yield "conv_explicit", {"x": x, "w": w}, lambda p: tf.nn.conv2d(p["x"], p["w"], [1, 1, 2, 1], [[0, 0], [2, 1], [0, 3], [0, 0]])
    yield "depthwise_same_stride2", {"x": x, "w": f(3, 3, 3, 2)}, lambda p: tf.nn.depthwise_conv2d(p["x"], p["w"], [1, 2, 2, 1], "SAME")
    yield "maxpool_same", {"x": x}, lambda p: tf.nn.max_pool2d(p["x"], 3, 2, "SAME")
    yield "avgpool_same", {"x": x}, lambda p: tf.nn.avg_pool2d(p["x"], 3, 2, "SAME")
    yield "avgpool_valid", {"x": x}, lambda p: tf.nn.avg_pool2d(p["x"], 2, 2, "VALID")
    a, b = f(3, 5), f(4, 5)
    yield "matmul_transpose_b", {"a": a, "b": b}, lambda p: tf.matmul(p["a"], p["b"], transpose_b=True)
    yield "matmul_transpose_a", {"a": f(5, 3), "b": f(5, 4)}, lambda p: tf.matmul(p["a"], p["b"], transpose_a=True)
    yield "mean_keep_dims", {"x": x}, lambda p: tf.reduce_mean(p["x"], [1, 2], keepdims=True)
    yield "sum_negative_axis", {"x": x}, lambda p: tf.reduce_sum(p["x"], -1)
    yield "strided_slice_masks", {"x": x}, lambda p: p["x"][:, 1:-1:2, ::-2, 1]
    yield "concat_axis1", {"a": f(2, 3, 2), "b": f(2, 1, 2)}, lambda p: tf.concat([p["a"], p["b"]], 1)
    yield "pack_axis1", {"a": f(2, 3), "b": f(2, 3)}, lambda p: tf.stack([p["a"], p["b"]], 1)
    yield "pad", {"x": f(2, 3)}, lambda p: tf.pad(p["x"], [[1, 0], [2, 3]])
    yield "squeeze_expand", {"x": f(2, 1, 3)}, lambda p: tf.expand_dims(tf.squeeze(p["x"], [1]), -1)
    yield "select_rows", {"c": rng.random(4) > 0.5, "a": f(4, 3), "b": f(4, 3)}, lambda p: v1.where(p["c"], p["a"], p["b"])
    yield "selectv2_broadcast", {"c": rng.random((4, 1)) > 0.5, "a": f(4, 3), "b": f(3)}, lambda p: tf.where(p["c"], p["a"], p["b"])
    yield "softmax", {"x": f(3, 7)}, lambda p: tf.nn.softmax(p["x"])
    yield "activations", {"x": f(4, 5) * 4}, lambda p: tf.nn.relu6(p["x"]) + tf.sigmoid(p["x"]) * tf.tanh(p["x"])
    yield "rsqrt_sqdiff", {"a": f(3, 4) ** 2 + 0.1, "b": f(4)}, lambda p: tf.math.rsqrt(p["a"]) + tf.math.squared_difference(p["a"], p["b"])
    yield "bias_add", {"x": f(2, 3, 3, 4), "b": f(4)}, lambda p: tf.nn.bias_add(p["x"], p["b"])
    yield "fused_batch_norm", {"x": x, "s": f(3), "o": f(3), "m": f(3), "v": f(3) ** 2 + 0.5}, lambda p: v1.nn.fused_batch_norm(p["x"], p["s"], p["o"], p["m"], p["v"], epsilon=1e-3, is_training=False)[0]
    yield "cast_floor_compare", {"x": f(3, 4) * 3}, lambda p: tf.cast(tf.floor(p["x"]) > 0.0, tf.float32) * tf.maximum(p["x"], -1.0)
    yield "reshape_shape", {"x": f(2, 3, 4)}, lambda p: tf.reshape(p["x"], tf.concat([tf.shape(p["x"])[:1], [-1]], 0))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "kernels"))
    args = parser.parse_args()
    import numpy as np
    import tensorflow as tf

    tf.compat.v1.disable_v2_behavior()
    rng = np.random.default_rng(4)
    for name, inputs, build in cases(tf, rng):
        graph = tf.Graph()
        with graph.as_default():
            placeholders = {k: tf.compat.v1.placeholder(tf.as_dtype(v.dtype), v.shape, name=k) for k, v in inputs.items()}
            out = tf.identity(build(placeholders), name="output")
            with tf.compat.v1.Session() as sess:
                value = sess.run(out, {placeholders[k]: v for k, v in inputs.items()})
        meta = {"description": f"TensorFlow's result of the {name} kernel case.", "outputs": ["output"],
                "training_placeholders": []}
        feeds = {f"{k}:0": v for k, v in inputs.items()}
        write_fixture(os.path.abspath(args.out), name, graph.as_graph_def(), meta, [(feeds, {"output:0": value}, {})])


if __name__ == "__main__":
    main()
