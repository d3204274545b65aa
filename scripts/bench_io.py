#!/usr/bin/env python3
"""Read + write benchmark: graphrw next to TensorFlow's own protobuf, same run.

For each model it measures, as separate processes:
  graphrw     `graphrw convert IN OUT` (read, index, write atomically);
  tensorflow  Python: read the file, GraphDef.ParseFromString, SerializeToString,
              write (protobuf's upb backend, as TensorFlow 2.21 ships it).
It reports wall time (best of --runs), the decode+encode part alone (graphrw's
measured by `cargo bench --bench io -- --json FILE`, in memory like
TensorFlow's), and the peak resident memory of each process (for TensorFlow
also its baseline after `import tensorflow`, which the parse adds to).
graphrw's file-to-file time includes an fsync of the output before the
atomic rename; TensorFlow's Python write does not sync.

Models (generated on demand into bench-data/, never committed):
  resnet50.pb   a Keras ResNet50 with random weights, frozen (scripts/make_resnet50.py)
  synth-1m.pb   a synthetic 1M-node training graph (cargo run --example synth)

Usage: python scripts/bench_io.py [--runs 3] [--graphrw target/release/graphrw]
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "bench-data")

TF_CHILD = r'''
import os, sys, time, json, resource
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
from google.protobuf.internal import api_implementation
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
with open(sys.argv[1], "rb") as f:
    data = f.read()
t1 = time.perf_counter()
g = tf.compat.v1.GraphDef()
g.ParseFromString(data)
out = g.SerializeToString()
t2 = time.perf_counter()
with open(sys.argv[2], "wb") as f:
    f.write(out)
t3 = time.perf_counter()
print(json.dumps({"backend": api_implementation.Type(), "codec": t2 - t1, "io": (t1 - t0) + (t3 - t2),
                  "baseline_kb": base, "nodes": len(g.node)}))
'''


def run(cmd):
    """Wall time and peak RSS (KB) of a child process, and its stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        sys.exit(f"failed: {' '.join(cmd)}")
    return wall, usage.ru_maxrss, out.decode()


def ensure(path, make):
    if not os.path.exists(path):
        print(f"generating {path} ...", file=sys.stderr)
        subprocess.run(make, check=True, cwd=ROOT)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--graphrw", default=os.path.join(ROOT, "target", "release", "graphrw"))
    parser.add_argument("--python", default=sys.executable, help="a Python with TensorFlow")
    args = parser.parse_args()
    os.makedirs(DATA, exist_ok=True)
    resnet = os.path.join(DATA, "resnet50.pb")
    synth = os.path.join(DATA, "synth-1m.pb")
    ensure(resnet, [args.python, "scripts/make_resnet50.py", resnet])
    ensure(synth, ["cargo", "run", "--release", "--example", "synth", "--", "1000000", synth])
    out = os.path.join(DATA, "out.pb")
    rows = []
    for model in (resnet, synth):
        size = os.path.getsize(model)
        ours = [run([args.graphrw, "convert", model, out]) for _ in range(args.runs)]
        with open(model, "rb") as a, open(out, "rb") as b:
            identical = a.read() == b.read()
        theirs = [run([args.python, "-c", TF_CHILD, model, out]) for _ in range(args.runs)]
        tf_stats = [json.loads(t[2]) for t in theirs]
        _, _, codec = run(["cargo", "bench", "-q", "--bench", "io", "--", "--json", model])
        codec = json.loads(codec.strip().splitlines()[-1])
        best_ours = min(w for w, _, _ in ours)
        best_tf = min(w for w, _, _ in theirs)
        codec_tf = min(s["codec"] for s in tf_stats)
        rows.append({
            "model": os.path.basename(model),
            "mb": size / 1e6,
            "nodes": tf_stats[0]["nodes"],
            "graphrw_s": best_ours,
            "graphrw_codec_s": codec["decode"] + codec["encode"],
            "graphrw_index_s": codec["index"],
            "tf_file_s": min(s["codec"] + s["io"] for s in tf_stats),
            "graphrw_peak_mb": max(m for _, m, _ in ours) / 1024,
            "tf_s": best_tf,
            "tf_codec_s": codec_tf,
            "tf_peak_mb": max(m for _, m, _ in theirs) / 1024,
            "tf_baseline_mb": tf_stats[0]["baseline_kb"] / 1024,
            "backend": tf_stats[0]["backend"],
            "identical": identical,
        })
    os.remove(out)
    print("| model | size | nodes | decode+encode in memory: graphrw | TensorFlow (upb) | speed-up "
          "| file to file: graphrw convert | TensorFlow read+parse+serialize+write | speed-up "
          "| peak RSS: graphrw | TensorFlow (over its import) | graphrw peak / file |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['mb']:.1f} MB | {r['nodes']} "
              f"| {r['graphrw_codec_s'] * 1e3:.0f} ms | {r['tf_codec_s'] * 1e3:.0f} ms "
              f"| {r['tf_codec_s'] / r['graphrw_codec_s']:.1f}x "
              f"| {r['graphrw_s'] * 1e3:.0f} ms | {r['tf_file_s'] * 1e3:.0f} ms | {r['tf_file_s'] / r['graphrw_s']:.1f}x "
              f"| {r['graphrw_peak_mb']:.0f} MB | {r['tf_peak_mb'] - r['tf_baseline_mb']:.0f} MB "
              f"| {r['graphrw_peak_mb'] / r['mb']:.2f}x |")
    for r in rows:
        print(f"{r['model']}: graphrw index build (name/op/edges/consumers) {r['graphrw_index_s'] * 1e3:.0f} ms "
              f"in memory, not needed by convert")
    for r in rows:
        print(f"{r['model']}: graphrw output byte-identical to input: {r['identical']}")


if __name__ == "__main__":
    main()
