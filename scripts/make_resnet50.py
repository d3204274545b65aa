#!/usr/bin/env python3
"""Write a frozen Keras ResNet50 GraphDef (random weights, about 100 MB) for
benchmarks. Generated on demand, never committed.

Usage: TF_USE_LEGACY_KERAS=1 python scripts/make_resnet50.py [OUT] (default bench-data/resnet50.pb)
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
from tensorflow.python.framework.convert_to_constants import (  # noqa: E402
    convert_variables_to_constants_v2)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("bench-data", "resnet50.pb")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    tf.random.set_seed(50)
    model = tf.keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3))
    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec([1, 224, 224, 3], tf.float32, name="input"))
    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    with open(out + ".tmp", "wb") as f:
        f.write(graph_def.SerializeToString())
    os.replace(out + ".tmp", out)
    print(f"{out}: {len(graph_def.node)} nodes, {os.path.getsize(out)} bytes")


if __name__ == "__main__":
    main()
