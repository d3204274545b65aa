#!/usr/bin/env python3
"""graphrw's `inference` pack next to TensorFlow's own tools, same run.

For each fixture (and, with --resnet50, the Keras ResNet50 of
scripts/make_resnet50.py), it runs
  graphrw        `graphrw apply inference IN -o OUT` (a process: read, rewrite, write)
  ofi            TensorFlow's optimize_for_inference (optimize_for_inference_lib,
                 the library behind `python -m tensorflow.python.tools.optimize_for_inference`)
  ofi+grappler   that, then Grappler's default meta-optimizer (tf_optimizer.OptimizeGraph,
                 constant folding, arithmetic, dependency, remapping...), outputs as fetches
and reports for each result: nodes, what training machinery is left
(Switch/Merge, RandomUniform, FusedBatchNorm* including Grappler's
_FusedBatchNormEx, Rsqrt of constants, training placeholders still
placeholders; and ops only TensorFlow runs, named `_...`), whether TensorFlow running it fed with the
inputs alone gives the stored inference outputs, and time. TensorFlow's times
are in-process after `import tensorflow` (file read, parse, optimize,
serialize, write), which leaves out its ~3 s of start-up; graphrw's is the
whole process. Best of --runs.

Usage: python scripts/compare_tf.py [--graphrw target/release/graphrw] [--resnet50] [--runs 3]
Prints Markdown tables.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.protobuf import config_pb2  # noqa: E402
from tensorflow.python.grappler import tf_optimizer  # noqa: E402
from tensorflow.python.tools import optimize_for_inference_lib  # noqa: E402

from tf_check import load_pb as load  # noqa: E402  (scripts/ is on sys.path)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BN = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3", "_FusedBatchNormEx")


def save(graph_def, path):
    with open(path, "wb") as f:
        f.write(graph_def.SerializeToString())


def ofi(src, dst, inputs, outputs):
    graph_def = load(src)
    types = []
    for name in inputs:
        node = next(n for n in graph_def.node if n.name == name)
        types.append(node.attr["dtype"].type)
    out = optimize_for_inference_lib.optimize_for_inference(graph_def, inputs, outputs, types)
    save(out, dst)


def grappler(src, dst, outputs):
    graph_def = load(src)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
        fetch = graph.get_collection_ref("train_op")
        for name in outputs:
            fetch.append(graph.get_operation_by_name(name))
        meta = tf.compat.v1.train.export_meta_graph(graph=graph)
    config = config_pb2.ConfigProto()
    config.graph_options.rewrite_options.min_graph_nodes = -1
    save(tf_optimizer.OptimizeGraph(config, meta), dst)


def best(fn, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def leftovers(graph_def, training):
    ops = [n.op for n in graph_def.node]
    by_name = {n.name: n for n in graph_def.node}
    rsqrt_of_const = sum(
        1 for n in graph_def.node
        if n.op == "Rsqrt" and by_name.get(n.input[0].split(":")[0].lstrip("^"), n).op == "Const")
    flags = sum(1 for n in graph_def.node if n.name in training and n.op != "Const")
    parts = []
    for label, count in (("Switch", ops.count("Switch")), ("Merge", ops.count("Merge")),
                         ("RandomUniform", ops.count("RandomUniform")),
                         ("FusedBatchNorm*", sum(ops.count(b) for b in BN)),
                         ("Rsqrt of const", rsqrt_of_const), ("training flag", flags),
                         ("TensorFlow-internal op (_...)", sum(1 for o in ops if o.startswith("_")))):
        if count:
            parts.append(f"{count} {label}")
    return ", ".join(parts) or "nothing"


def run_graph(graph_def, feeds, fetches):
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        return sess.run(fetches, {graph.get_tensor_by_name(k): v for k, v in feeds.items()})


def outputs_verdict(graph_def, cases):
    """Fed with the inputs alone: the worst relative error against the stored
    inference outputs, over every case."""
    worst = 0.0
    try:
        for feeds, expected in cases:
            got = run_graph(graph_def, feeds, list(expected))
            for value, (name, want) in zip(got, expected.items()):
                scale = max(float(np.max(np.abs(want))), 1e-30)
                worst = max(worst, float(np.max(np.abs(value - want))) / scale)
    except Exception as e:  # a graph TensorFlow will not run
        return f"fails ({type(e).__name__})"
    return f"same ({worst:.0e})" if worst < 1e-4 else f"**differ** ({worst:.1g})"


def fixture_cases(fixture_dir, meta):
    cases = []
    for case in meta["cases"]:
        feeds = {k: np.load(os.path.join(fixture_dir, v)) for k, v in case["inputs"].items()}
        expected = {k: np.load(os.path.join(fixture_dir, v)) for k, v in case["outputs"].items()}
        cases.append((feeds, expected))
    return cases


def compare(name, model, inputs, outputs, training, cases, args, tmp):
    original = load(model)
    rows = [("original", len(original.node), leftovers(original, training),
             outputs_verdict(original, cases), None)]
    dst = os.path.join(tmp, f"{name}.graphrw.pb")
    cmd = [args.graphrw, "apply", "inference", model, "-o", dst]
    t = best(lambda: subprocess.run(cmd, check=True, capture_output=True), args.runs)
    rewritten = load(dst)
    rows.append(("graphrw inference", len(rewritten.node), leftovers(rewritten, training),
                 outputs_verdict(rewritten, cases), t))
    dst_ofi = os.path.join(tmp, f"{name}.ofi.pb")
    try:
        t = best(lambda: ofi(model, dst_ofi, inputs, outputs), args.runs)
        g = load(dst_ofi)
        rows.append(("optimize_for_inference", len(g.node), leftovers(g, training),
                     outputs_verdict(g, cases), t))
        dst_g = os.path.join(tmp, f"{name}.grappler.pb")
        t2 = best(lambda: grappler(dst_ofi, dst_g, outputs), args.runs)
        g = load(dst_g)
        rows.append(("optimize_for_inference + Grappler", len(g.node), leftovers(g, training),
                     outputs_verdict(g, cases), t + t2))
    except Exception as e:
        rows.append(("optimize_for_inference", "-", f"fails: {type(e).__name__}: {e}"[:80], "-", None))
    return rows


def print_table(name, rows):
    print(f"\n**{name}**\n")
    print("| | nodes | training machinery left | outputs, inputs alone | time |")
    print("|---|---:|---|---|---:|")
    for tool, nodes, left, verdict, t in rows:
        print(f"| {tool} | {nodes} | {left} | {verdict} | {'' if t is None else f'{t * 1e3:.0f} ms'} |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--graphrw", default=os.path.join(ROOT, "target", "release", "graphrw"))
    parser.add_argument("--fixtures", default=os.path.join(ROOT, "tests", "fixtures"))
    parser.add_argument("--resnet50", action="store_true",
                        help="also bench-data/resnet50.pb (scripts/make_resnet50.py)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(os.listdir(args.fixtures)):
            fixture_dir = os.path.join(args.fixtures, name)
            meta_path = os.path.join(fixture_dir, "meta.json")
            if not os.path.isfile(meta_path):
                continue
            with open(meta_path) as f:
                meta = json.load(f)
            inputs = sorted({k.split(":")[0] for c in meta["cases"] for k in c["inputs"]})
            rows = compare(name, os.path.join(fixture_dir, "model.pb"), inputs, meta["outputs"],
                           set(meta["training_placeholders"]), fixture_cases(fixture_dir, meta),
                           args, tmp)
            print_table(f"{name}: {meta['description']}", rows)
        if args.resnet50:
            model = os.path.join(ROOT, "bench-data", "resnet50.pb")
            if not os.path.exists(model):
                sys.exit(f"{model} is missing: run scripts/make_resnet50.py")
            x = np.random.default_rng(50).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)
            expected = run_graph(load(model), {"input:0": x}, ["Identity:0"])[0]
            rows = compare("resnet50", model, ["input"], ["Identity"], set(),
                           [({"input:0": x}, {"Identity:0": expected})], args, tmp)
            # End to end as a user runs each: TensorFlow's tool as a command.
            dst = os.path.join(tmp, "resnet50.ofi-cli.pb")
            cmd = [sys.executable, "-m", "tensorflow.python.tools.optimize_for_inference",
                   "--input", model, "--output", dst, "--frozen_graph=True",
                   "--input_names=input", "--output_names=Identity"]
            t = best(lambda: subprocess.run(cmd, check=True, capture_output=True), args.runs)
            g = load(dst)
            rows.append(("optimize_for_inference, as a command (with TensorFlow's start-up)",
                         len(g.node), leftovers(g, set()), "", t))
            print_table("Keras ResNet50, frozen (102.7 MB, 53 batch norms)", rows)


if __name__ == "__main__":
    main()
