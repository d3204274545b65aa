#!/usr/bin/env python3
"""Cross-check graphrw against TensorFlow itself.

For every fixture under tests/fixtures, graphrw converts model.pb to binary
and to text and back; TensorFlow then
  - parses each result and compares it with the original as a message
    (protobuf equality: every field, the function library and versions),
  - imports graphrw's binary output and runs every stored case, comparing
    with the outputs TensorFlow computed when the fixture was made.
For the fixtures whose conds are all training conds, graphrw also applies the
seed's packs (lock-training, dropout, merge, switch, bn); TensorFlow runs the result fed
with the inputs alone (no training flag) and must give the stored outputs.
For every fixture, graphrw applies the `inference` pack; TensorFlow runs the
result fed with the inputs alone, then converts it with tf.lite.TFLiteConverter
and the TFLite interpreter runs the converted model on the same inputs: both
must give the stored outputs.

Usage: python scripts/tf_check.py [--graphrw PATH] [--fixtures DIR]
Prints one line per check and a closing 'N passed, M failed' line.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from google.protobuf import text_format  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def load_pb(path):
    graph_def = tf.compat.v1.GraphDef()
    with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    return graph_def


# Fixtures where every cond is driven by the training flag: the seed's
# packs (which keep every cond's false branch) are right for them.
# The value lists the ops that must be gone after.
BN = {"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3", "Rsqrt"}
TRAINING_CONDS_ONLY = {
    "seed": {"Switch", "Merge", "RandomUniform"} | BN,
    "small_cnn": {"Switch", "Merge", "RandomUniform"} | BN,
    "keep_prob_nonfused": {"Switch", "Merge", "RandomUniform"} | BN,
    "keras_tf2": BN,
}
PACKS = {"keras_tf2": ["bn"]}


def run_case(graph_def, fixture_dir, case, mode=True):
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    feeds = {}
    for tensor, rel in case["inputs"].items():
        feeds[graph.get_tensor_by_name(tensor)] = np.load(os.path.join(fixture_dir, rel))
    if mode:
        for tensor, value in case["mode"].items():
            feeds[graph.get_tensor_by_name(tensor)] = value
    fetches = list(case["outputs"])
    with tf.compat.v1.Session(graph=graph) as sess:
        values = sess.run(fetches, feed_dict=feeds)
    worst = 0.0
    for tensor, value in zip(fetches, values):
        expected = np.load(os.path.join(fixture_dir, case["outputs"][tensor]))
        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6, err_msg=tensor)
        worst = max(worst, float(np.max(np.abs(value - expected))))
    return worst


INFERENCE_GONE = {"RandomUniform", "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"}


def tflite_case(graph_def, fixture_dir, case):
    """Converts the graph with TFLiteConverter, runs the case in the TFLite
    interpreter; returns the model's size and the worst relative error."""
    inputs, outputs = list(case["inputs"]), list(case["outputs"])
    wrapped = tf.compat.v1.wrap_function(
        lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    fn = wrapped.prune([wrapped.graph.get_tensor_by_name(t) for t in inputs],
                       [wrapped.graph.get_tensor_by_name(t) for t in outputs])
    model = tf.lite.TFLiteConverter.from_concrete_functions([fn], wrapped).convert()
    interpreter = tf.lite.Interpreter(model_content=model)
    values = [np.load(os.path.join(fixture_dir, case["inputs"][t])) for t in inputs]
    for detail, value in zip(interpreter.get_input_details(), values):
        interpreter.resize_tensor_input(detail["index"], value.shape)
    interpreter.allocate_tensors()
    for detail, value in zip(interpreter.get_input_details(), values):
        interpreter.set_tensor(detail["index"], value)
    interpreter.invoke()
    worst = 0.0
    for detail, tensor in zip(interpreter.get_output_details(), outputs):
        expected = np.load(os.path.join(fixture_dir, case["outputs"][tensor]))
        got = interpreter.get_tensor(detail["index"])
        assert got.shape == expected.shape, f"{tensor}: shape {got.shape} vs {expected.shape}"
        rel = float(np.max(np.abs(got - expected)) / max(np.max(np.abs(expected)), 1e-30))
        assert rel < 1e-4, f"{tensor}: relative error {rel:.2g}"
        worst = max(worst, rel)
    return len(model), worst


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--graphrw", default=os.path.join(ROOT, "target", "debug", "graphrw"))
    parser.add_argument("--fixtures", default=os.path.join(ROOT, "tests", "fixtures"))
    args = parser.parse_args()

    passed = failed = 0

    def check(label, fn):
        nonlocal passed, failed
        try:
            detail = fn()
            passed += 1
            print(f"ok    {label}" + (f"  ({detail})" if detail else ""))
        except Exception as e:  # report every failure, then fail at the end
            failed += 1
            print(f"FAIL  {label}: {type(e).__name__}: {e}")

    names = sorted(n for n in os.listdir(args.fixtures)
                   if os.path.isfile(os.path.join(args.fixtures, n, "meta.json")))
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            fixture_dir = os.path.join(args.fixtures, name)
            with open(os.path.join(fixture_dir, "meta.json")) as f:
                meta = json.load(f)
            model = os.path.join(fixture_dir, "model.pb")
            original = load_pb(model)
            as_pb = os.path.join(tmp, f"{name}.pb")
            as_text = os.path.join(tmp, f"{name}.pbtxt")
            back = os.path.join(tmp, f"{name}.back.pb")
            for src, dst in ((model, as_pb), (model, as_text), (as_text, back)):
                subprocess.run([args.graphrw, "convert", src, dst], check=True,
                               stderr=subprocess.DEVNULL)

            def same(graph_def):
                assert graph_def == original, "differs from TensorFlow's original"
                return f"{len(graph_def.node)} nodes, {len(graph_def.library.function)} functions"

            check(f"{name}: graphrw .pb parses in TensorFlow as the original", lambda: same(load_pb(as_pb)))

            def text_same():
                parsed = tf.compat.v1.GraphDef()
                with open(as_text) as f:
                    text_format.Parse(f.read(), parsed)
                return same(parsed)

            check(f"{name}: graphrw .pbtxt parses in TensorFlow as the original", text_same)
            check(f"{name}: .pb -> .pbtxt -> .pb parses as the original", lambda: same(load_pb(back)))
            check(f"{name}: graphrw's .pbtxt equals TensorFlow's own text output",
                  lambda: _text_equal(as_text, original))
            for i, case in enumerate(meta["cases"]):
                check(f"{name}: case {i} runs in TensorFlow with the stored outputs",
                      lambda case=case: f"max abs diff {run_case(load_pb(as_pb), fixture_dir, case):.2g}")
            if name in TRAINING_CONDS_ONLY:
                rewritten = os.path.join(tmp, f"{name}.rewritten.pb")
                packs = PACKS.get(name, ["lock-training", "dropout", "merge", "switch", "bn"])
                subprocess.run([args.graphrw, "apply", *packs, model, "-o", rewritten], check=True,
                               stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

                def seed_packs(case, rewritten=rewritten, gone=TRAINING_CONDS_ONLY[name]):
                    graph_def = load_pb(rewritten)
                    left = sorted({n.op for n in graph_def.node} & gone)
                    assert not left, f"left behind: {left}"
                    diff = run_case(graph_def, fixture_dir, case, mode=False)
                    return f"{len(original.node)} -> {len(graph_def.node)} nodes, max abs diff {diff:.2g}"

                for i, case in enumerate(meta["cases"]):
                    check(f"{name}: {' '.join(packs)} applied, case {i} fed with the inputs alone",
                          lambda case=case: seed_packs(case))

            inference = os.path.join(tmp, f"{name}.inference.pb")
            subprocess.run([args.graphrw, "apply", "inference", model, "-o", inference], check=True,
                           stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

            def inference_case(case, path=inference, meta=meta):
                graph_def = load_pb(path)
                left = sorted({n.op for n in graph_def.node} & INFERENCE_GONE)
                assert not left, f"left behind: {left}"
                flags = {n.name for n in graph_def.node
                         if n.name in meta["training_placeholders"] and n.op != "Const"}
                assert not flags, f"training placeholders left: {sorted(flags)}"
                assert len(graph_def.node) < len(original.node), "no fewer nodes"
                diff = run_case(graph_def, fixture_dir, case, mode=False)
                return f"{len(original.node)} -> {len(graph_def.node)} nodes, max abs diff {diff:.2g}"

            for i, case in enumerate(meta["cases"]):
                check(f"{name}: inference applied, case {i} fed with the inputs alone",
                      lambda case=case: inference_case(case))
                check(f"{name}: inference applied, TFLiteConverter converts it, case {i} in TFLite",
                      lambda case=case: "{} bytes, relative error {:.2g}".format(
                          *tflite_case(load_pb(inference), fixture_dir, case)))

    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def _text_equal(path, original):
    """graphrw prints text the way TensorFlow does, byte for byte."""
    with open(path) as f:
        ours = f.read()
    theirs = text_format.MessageToString(original)
    if ours != theirs:
        for n, (a, b) in enumerate(zip(ours.splitlines(), theirs.splitlines())):
            if a != b:
                raise AssertionError(f"line {n + 1}: graphrw {a!r} vs TensorFlow {b!r}")
        raise AssertionError(f"lengths differ: {len(ours)} vs {len(theirs)}")
    return f"{len(ours)} bytes identical"


if __name__ == "__main__":
    main()
