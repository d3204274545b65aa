#!/usr/bin/env python3
"""The `inference` pack on Keras' own applications, checked by TensorFlow.

The fixtures under tests/fixtures are small graphs made for one point each;
this checks the pack on the large graphs people ship. For each model named
(Keras applications, random weights, generated here and never committed):

  tf2   the model traced with `training=False` and frozen with
        convert_variables_to_constants_v2 (a TF2 SavedModel's form: batch
        norms in inference mode, no conds);
  tf1   the same model built in a TF1 graph, whose every batch norm is a
        `tf.cond` on the `keras_learning_phase` flag, frozen with
        convert_variables_to_constants: with control flow v1 (Switch/Merge,
        as TF1 wrote them);
  tf1-if  the same with control flow v2 (TF2's default, also in a TF1
        graph): each cond an If whose branches are library functions.

Every batch norm gets random statistics, gamma and beta (Keras starts them
at 0, 1, 1, 0, which would hide a mistake in using them). TensorFlow runs
the frozen graph on a random batch (flag false), graphrw applies
`inference`, TensorFlow runs the result fed with the input alone, and the
outputs must agree to 1e-5 of their largest magnitude. The result must
hold no training machinery: no Switch, Merge, If, batch norm op, or
training flag placeholder.

Usage: TF_USE_LEGACY_KERAS=1 python scripts/check_apps.py [--graphrw PATH]
           [--tf2 NAME,...] [--tf1 NAME,...] [--tf1-if NAME,...] [--keep DIR]
Prints one line per model and a closing 'N passed, M failed' line; exits 1
when any failed.
"""

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework.convert_to_constants import (  # noqa: E402
    convert_variables_to_constants_v2)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Each model with the smallest square input it takes (small inputs keep
# TensorFlow's runs short; the weights, which are what is rewritten, are the
# full model's). Between them: Conv2D with and without bias, depthwise and
# separable and grouped convs, batch norm after the conv and before it
# (pre-activation), squeeze-and-excite, hard-swish, layer norm.
SIZES = {
    "MobileNetV2": 96,
    "MobileNetV3Small": 96,
    "DenseNet121": 64,
    "EfficientNetB0": 64,
    "EfficientNetV2B0": 64,
    "InceptionV3": 80,
    "Xception": 72,
    "ResNet50": 64,
    "ResNet50V2": 64,
    "NASNetMobile": 64,
    "ConvNeXtTiny": 64,
    "RegNetX002": 64,
}
TF2 = list(SIZES)
TF1 = ["MobileNetV2", "ResNet50", "DenseNet121"]
TRAINING = {"Switch", "Merge", "If", "StatelessIf",
            "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"}
BATCH = 2


def randomize_batch_norms(variables, rng):
    """Statistics, gamma and beta a fold could get wrong without showing."""
    for v in variables:
        name = v.name
        if "moving_variance" in name:
            yield v, rng.uniform(0.5, 2.0, v.shape)
        elif "moving_mean" in name or "beta" in name:
            yield v, rng.normal(0.0, 0.3, v.shape)
        elif "gamma" in name:
            yield v, rng.uniform(0.5, 1.5, v.shape)


def frozen_tf2(name, size, rng):
    """The model traced in inference mode and frozen; its output names."""
    tf.keras.backend.clear_session()
    tf.random.set_seed(1)
    model = getattr(tf.keras.applications, name)(weights=None, input_shape=(size, size, 3))
    bn = [w for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)
          for w in layer.weights]
    for v, value in randomize_batch_norms(bn, rng):
        v.assign(value.astype(np.float32))
    fn = tf.function(lambda x: model(x, training=False))
    spec = tf.TensorSpec([BATCH, size, size, 3], tf.float32, name="input")
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function(spec))
    graph_def = frozen.graph.as_graph_def()
    return graph_def, [t.name for t in frozen.outputs], {}


def frozen_tf1(name, size, rng, control_flow_v2=False):
    """The model built in a TF1 graph (batch norms in learning-phase conds)
    and frozen; its output names, and the flag's feed for TensorFlow."""
    if control_flow_v2:
        tf.compat.v1.enable_control_flow_v2()
    else:
        tf.compat.v1.disable_control_flow_v2()
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
        tf.compat.v1.keras.backend.set_session(sess)
        tf.compat.v1.set_random_seed(1)
        image = tf.compat.v1.placeholder(tf.float32, [BATCH, size, size, 3], name="input")
        model = getattr(tf.keras.applications, name)(weights=None, input_tensor=image)
        sess.run(tf.compat.v1.global_variables_initializer())
        for v, value in randomize_batch_norms(tf.compat.v1.global_variables(), rng):
            v.load(value.astype(np.float32), sess)
        output = model.output.op.name
        graph_def = tf.compat.v1.graph_util.convert_variables_to_constants(
            sess, graph.as_graph_def(), [output])
    flags = {n.name + ":0": False for n in graph_def.node
             if n.op.startswith("Placeholder") and "learning_phase" in n.name}
    if not flags:
        raise RuntimeError("no learning-phase flag in the TF1 graph")
    return graph_def, [output + ":0"], flags


def run(graph_def, fetches, feeds):
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        return sess.run(fetches, feeds)


def load_pb(path):
    graph_def = tf.compat.v1.GraphDef()
    with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    return graph_def


def check(graphrw, form, name, workdir, keep):
    """One model in one form: a line of figures, or an exception."""
    size = SIZES[name]
    rng = np.random.default_rng(sorted(SIZES).index(name))
    if form == "tf2":
        graph_def, fetches, flags = frozen_tf2(name, size, rng)
    else:
        graph_def, fetches, flags = frozen_tf1(name, size, rng, form == "tf1-if")
    image = rng.normal(0.0, 1.0, (BATCH, size, size, 3)).astype(np.float32)
    expected = run(graph_def, fetches, {"input:0": image, **flags})
    src = os.path.join(workdir, f"{form}_{name}.pb")
    out = os.path.join(workdir, f"{form}_{name}.inference.pb")
    with open(src, "wb") as f:
        f.write(graph_def.SerializeToString())
    outputs = ",".join(t[:-2] if t.endswith(":0") else t for t in fetches)
    start = time.monotonic()
    done = subprocess.run([graphrw, "apply", "inference", src, "-o", out, "--outputs", outputs],
                          capture_output=True, text=True)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"graphrw exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    rewritten = load_pb(out)
    if not keep:  # a model is up to 100 MB, twice: disk may be short
        os.remove(src)
        os.remove(out)
    got = run(rewritten, fetches, {"input:0": image})
    worst = 0.0
    for tensor, want, have in zip(fetches, expected, got):
        scale = float(np.max(np.abs(want))) or 1.0
        error = float(np.max(np.abs(want - have))) / scale
        if not error <= 1e-5:
            raise RuntimeError(f"{tensor} differs by {error:.2e} of its largest magnitude")
        worst = max(worst, error)
    before = collections.Counter(n.op for n in graph_def.node)
    after = collections.Counter(n.op for n in rewritten.node)
    left = {op: n for op, n in after.items() if op in TRAINING}
    left.update({n.name: n.op for n in rewritten.node
                 if n.name + ":0" in flags and n.op.startswith("Placeholder")})
    if left:
        raise RuntimeError(f"training machinery left: {left}")
    gone = [(sum(n for op, n in before.items() if op.startswith("FusedBatchNorm")), "batch norms"),
            (before["Switch"] + before["Merge"], "Switch/Merge"),
            (before["If"] + before["StatelessIf"], "If")]
    gone = ", ".join(f"{n} {what}" for n, what in gone if n) or "nothing"
    return (f"{len(graph_def.node)} -> {len(rewritten.node)} nodes, {gone} gone;"
            f" worst error {worst:.1e}; graphrw {seconds:.2f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--graphrw", default=os.path.join(ROOT, "target", "release", "graphrw"))
    parser.add_argument("--tf2", default=",".join(TF2), help="models frozen from TF2 (or '')")
    parser.add_argument("--tf1", default=",".join(TF1), help="models built in TF1 graphs (or '')")
    parser.add_argument("--tf1-if", default=",".join(TF1),
                        help="models built in TF1 graphs with control flow v2 (or '')")
    parser.add_argument("--keep", help="write the models and results here (default: a temporary directory)")
    args = parser.parse_args()
    jobs = [(form, m) for form, names in [("tf2", args.tf2), ("tf1", args.tf1), ("tf1-if", args.tf1_if)]
            for m in names.split(",") if m]
    unknown = [m for _, m in jobs if m not in SIZES]
    if unknown:
        parser.error(f"unknown model {unknown[0]} (known: {', '.join(SIZES)})")
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or tmp
        os.makedirs(workdir, exist_ok=True)
        for form, name in jobs:
            try:
                line = check(args.graphrw, form, name, workdir, bool(args.keep))
                print(f"ok    {form} {name}: {line}", flush=True)
                passed += 1
            except Exception as e:  # report every model, then fail at the end
                print(f"FAIL  {form} {name}: {e}", flush=True)
                failed += 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
