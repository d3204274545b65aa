#!/usr/bin/env python3
"""Build the TensorFlow fixtures that graphrw's tests read.

Each fixture is a directory under tests/fixtures/<name>/ holding
  model.pb     a frozen GraphDef written by TensorFlow,
  meta.json    the graph's outputs, its training-mode placeholders and, per case,
               the input arrays fed and the outputs TensorFlow computed,
  case*/*.npy  those arrays (inputs and TensorFlow's inference outputs).

Inference means the training flag is false and keep_prob is 1; those mode
feeds are stored in meta.json under "mode" so a test can feed them to the
original graph and leave them out for a rewritten one.

Usage (TensorFlow 2.21, see README):
    TF_USE_LEGACY_KERAS=1 python scripts/make_fixtures.py [--out tests/fixtures] [NAME...]

The TF1-style graphs (tf.compat.v1 with v2 behaviour disabled) and the TF2
Keras graph are built in separate child processes, since disabling v2
behaviour is process-wide.
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

TF1_FIXTURES = ["seed", "small_cnn", "keep_prob_nonfused", "data_cond"]
TF2_FIXTURES = ["keras_tf2", "tf2_if", "keras_tf1_if"]


def save_case(out_dir, case_index, feeds, fetches, mode):
    """Write one case's arrays and return its meta.json entry."""
    import numpy as np

    case_dir = os.path.join(out_dir, f"case{case_index}")
    os.makedirs(case_dir, exist_ok=True)

    def file_for(tensor, prefix):
        return f"case{case_index}/{prefix}_" + tensor.replace("/", "__").replace(":", "_") + ".npy"

    entry = {"inputs": {}, "outputs": {}, "mode": mode}
    for tensor, value in feeds.items():
        rel = file_for(tensor, "in")
        np.save(os.path.join(out_dir, rel), np.asarray(value))
        entry["inputs"][tensor] = rel
    for tensor, value in fetches.items():
        rel = file_for(tensor, "out")
        np.save(os.path.join(out_dir, rel), np.asarray(value))
        entry["outputs"][tensor] = rel
    return entry


def write_fixture(out_root, name, graph_def, meta, cases):
    import tensorflow as tf

    out_dir = os.path.join(out_root, name)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "model.pb"), "wb") as f:
        f.write(graph_def.SerializeToString())
    meta = dict(meta)
    meta["name"] = name
    # What TensorFlow itself sees in the graph, for tests of graphrw's reading.
    ops = {}
    for node in graph_def.node:
        ops[node.op] = ops.get(node.op, 0) + 1
    placeholders = {}
    for node in graph_def.node:
        if node.op in ("Placeholder", "PlaceholderWithDefault"):
            shape = tf.TensorShape(node.attr["shape"].shape)
            placeholders[node.name] = {
                "op": node.op,
                "dtype": tf.dtypes.as_dtype(node.attr["dtype"].type).name,
                "shape": None if shape.rank is None else [-1 if d is None else d for d in shape.as_list()],
            }
    meta["graph"] = {"nodes": len(graph_def.node), "ops": ops, "placeholders": placeholders,
                     "functions": len(graph_def.library.function),
                     "producer": graph_def.versions.producer}
    meta["tensorflow"] = tf.__version__
    meta["cases"] = [save_case(out_dir, i, *case) for i, case in enumerate(cases)]
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"{name}: {len(graph_def.node)} nodes, "
          f"{os.path.getsize(os.path.join(out_dir, 'model.pb'))} bytes")


# ---------------------------------------------------------------- TF1 graphs


def run_inference(sess, graph_def, outputs, feeds):
    """Run the frozen graph in a fresh TF graph, as a user of the .pb would."""
    import tensorflow as tf

    v1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        v1.import_graph_def(graph_def, name="")
    with v1.Session(graph=g) as s:
        fetched = s.run([o if ":" in o else o + ":0" for o in outputs],
                        feed_dict={g.get_tensor_by_name(k): v for k, v in feeds.items()})
    return {(o if ":" in o else o + ":0"): v for o, v in zip(outputs, fetched)}


def train_and_freeze(loss, outputs, train_feeds, steps=5, lr=0.01):
    """A few SGD steps (with the BN moving-average updates), then freeze."""
    import tensorflow as tf

    v1 = tf.compat.v1
    update_ops = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
    with tf.control_dependencies(update_ops):
        train_op = v1.train.GradientDescentOptimizer(lr).minimize(loss)
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        for step in range(steps):
            sess.run(train_op, feed_dict=train_feeds(step))
        frozen = v1.graph_util.convert_variables_to_constants(
            sess, sess.graph.as_graph_def(), outputs)
    return frozen


def seed_model(rng):
    """The seed series' model (days 22-28): three conv+bias / BN / relu6 / maxpool
    blocks in scope `backend`, BN driven by a bool PlaceholderWithDefault named
    `training`, tf.layers.dropout after relu_2, a dense layer without bias."""
    import numpy as np
    import tensorflow as tf

    v1 = tf.compat.v1
    layers = v1.layers
    x = v1.placeholder(tf.float32, [None, 128, 128, 3], name="input_node")
    training = v1.placeholder_with_default(True, shape=(), name="training")
    labels = v1.placeholder(tf.int64, [None], name="img_labels")
    with v1.variable_scope("backend"):
        net = x
        for i, filters, stride in [(1, 32, 1), (2, 64, 1), (3, 128, 2)]:
            net = layers.conv2d(net, filters, (3, 3), strides=(stride, stride),
                                padding="same", name=f"conv_{i}")
            net = layers.batch_normalization(net, training=training, name=f"bn_{i}")
            net = tf.nn.relu6(net, name=f"relu_{i}")
            if i == 2:
                net = layers.dropout(net, 0.1, training=training, name="dropout_2")
            net = layers.max_pooling2d(net, (2, 2), strides=(2, 2), name=f"max_pool_{i}")
        net = tf.reshape(net, [-1, 8 * 8 * 128], name="flatten")
        logit = layers.dense(net, 3, use_bias=False, name="final_dense")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        logits=logit, labels=labels))
    batch = lambda s: rng.standard_normal((4, 128, 128, 3)).astype(np.float32) * (1 + 0.1 * s)
    outputs = ["backend/final_dense/MatMul"]
    frozen = train_and_freeze(loss, outputs, lambda s: {
        x: batch(s), labels: rng.integers(0, 3, 4)})
    image = rng.standard_normal((2, 128, 128, 3)).astype(np.float32)
    mode = {"training:0": False}
    fetched = run_inference(None, frozen, outputs, {"input_node:0": image, **mode})
    meta = {"description": "The seed article's model (iThome series days 22-28).",
            "outputs": outputs, "training_placeholders": ["training"]}
    return frozen, meta, [({"input_node:0": image}, fetched, mode)]


def small_cnn(rng):
    """A small CNN with a bool Placeholder `is_training`, fused BN and
    tf.layers.dropout before a dense head with bias and softmax."""
    import numpy as np
    import tensorflow as tf

    v1 = tf.compat.v1
    layers = v1.layers
    x = v1.placeholder(tf.float32, [None, 16, 16, 3], name="images")
    is_training = v1.placeholder(tf.bool, (), name="is_training")
    labels = v1.placeholder(tf.int64, [None], name="labels")
    net = layers.conv2d(x, 8, 3, padding="same", use_bias=False, name="conv1")
    net = layers.batch_normalization(net, training=is_training, name="bn1")
    net = tf.nn.relu(net)
    net = layers.conv2d(net, 8, 3, strides=2, padding="valid", name="conv2")
    net = layers.batch_normalization(net, training=is_training, name="bn2")
    net = tf.nn.relu(net)
    net = layers.dropout(net, 0.3, training=is_training, name="drop")
    net = layers.flatten(net)
    logits = layers.dense(net, 4, name="logits")
    probs = tf.nn.softmax(logits, name="probs")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        logits=logits, labels=labels))
    outputs = ["probs"]
    frozen = train_and_freeze(loss, outputs, lambda s: {
        x: rng.standard_normal((8, 16, 16, 3)).astype(np.float32) + 0.5,
        labels: rng.integers(0, 4, 8), is_training: True})
    image = rng.standard_normal((3, 16, 16, 3)).astype(np.float32)
    mode = {"is_training:0": False}
    fetched = run_inference(None, frozen, outputs, {"images:0": image, **mode})
    meta = {"description": "Small CNN, bool Placeholder is_training, fused BN, tf.layers.dropout.",
            "outputs": outputs, "training_placeholders": ["is_training"]}
    return frozen, meta, [({"images:0": image}, fetched, mode)]


def keep_prob_nonfused(rng):
    """Non-fused batch norm (the Rsqrt/Mul/Add form, 4-D with fused=False and
    2-D after a dense layer) and dropout in its keep_prob form. TF 2.21 no
    longer writes the keep_prob form itself, so it is built here from the
    same ops TF <= 1.13's tf.nn.dropout used: x / keep_prob * floor(keep_prob + U)."""
    import numpy as np
    import tensorflow as tf

    v1 = tf.compat.v1
    layers = v1.layers
    x = v1.placeholder(tf.float32, [None, 8, 8, 2], name="x")
    phase_train = v1.placeholder_with_default(False, (), name="phase_train")
    keep_prob = v1.placeholder_with_default(1.0, (), name="keep_prob")
    target = v1.placeholder(tf.float32, [None, 5], name="target")
    net = layers.conv2d(x, 4, 3, padding="same", name="conv")
    net = layers.batch_normalization(net, training=phase_train, fused=False, name="bn_conv")
    net = tf.nn.relu(net)
    net = layers.flatten(net)
    with tf.name_scope("dropout"):
        random_tensor = keep_prob + v1.random_uniform(tf.shape(net), seed=7)
        binary = tf.floor(random_tensor)
        net = tf.math.divide(net, keep_prob) * binary
    net = layers.dense(net, 6, name="fc1")
    net = layers.batch_normalization(net, training=phase_train, name="bn_fc")
    net = tf.nn.relu(net)
    out = layers.dense(net, 5, name="fc2")
    out = tf.identity(out, name="output")
    loss = tf.reduce_mean(tf.square(out - target))
    outputs = ["output"]
    frozen = train_and_freeze(loss, outputs, lambda s: {
        x: rng.standard_normal((8, 8, 8, 2)).astype(np.float32) * 2 + 1,
        target: rng.standard_normal((8, 5)).astype(np.float32),
        phase_train: True, keep_prob: 0.8})
    data = rng.standard_normal((4, 8, 8, 2)).astype(np.float32)
    mode = {"phase_train:0": False, "keep_prob:0": np.float32(1.0)}
    fetched = run_inference(None, frozen, outputs, {"x:0": data, **mode})
    meta = {"description": "Non-fused BN (Rsqrt/Mul/Add, 4-D and 2-D) and keep_prob dropout.",
            "outputs": outputs, "training_placeholders": ["phase_train", "keep_prob"]}
    mode_json = {"phase_train:0": False, "keep_prob:0": 1.0}
    return frozen, meta, [({"x:0": data}, fetched, mode_json)]


def data_cond(rng):
    """A data-dependent tf.cond (on the input's mean) beside a training cond
    (a BN driven by `training`). Two cases take the two data branches."""
    import numpy as np
    import tensorflow as tf

    v1 = tf.compat.v1
    layers = v1.layers
    x = v1.placeholder(tf.float32, [None, 6, 6, 2], name="x")
    training = v1.placeholder_with_default(False, (), name="training")
    net = layers.conv2d(x, 3, 3, padding="same", name="conv")
    net = layers.batch_normalization(net, training=training, name="bn")
    positive = tf.reduce_mean(x) > 0.0
    net = tf.cond(positive, lambda: tf.nn.relu(net) * 2.0,
                  lambda: tf.nn.sigmoid(net) - 1.0, name="gate")
    out = tf.reduce_sum(net, axis=[1, 2], name="output")
    loss = tf.reduce_mean(tf.square(out))
    outputs = ["output"]
    frozen = train_and_freeze(loss, outputs, lambda s: {
        x: rng.standard_normal((4, 6, 6, 2)).astype(np.float32) + (1 if s % 2 else -1),
        training: True})
    cases = []
    mode = {"training:0": False}
    for shift in (1.5, -1.5):
        data = rng.standard_normal((2, 6, 6, 2)).astype(np.float32) + shift
        fetched = run_inference(None, frozen, outputs, {"x:0": data, **mode})
        cases.append(({"x:0": data}, fetched, mode))
    meta = {"description": "Data-dependent tf.cond beside a training cond.",
            "outputs": outputs, "training_placeholders": ["training"]}
    return frozen, meta, cases


def build_tf1(names, out_root):
    import numpy as np
    import tensorflow as tf

    v1 = tf.compat.v1
    v1.disable_v2_behavior()
    builders = {"seed": seed_model, "small_cnn": small_cnn,
                "keep_prob_nonfused": keep_prob_nonfused, "data_cond": data_cond}
    for i, name in enumerate(names):
        v1.reset_default_graph()
        v1.set_random_seed(1000 + i)
        rng = np.random.default_rng(1000 + i)
        frozen, meta, cases = builders[name](rng)
        write_fixture(out_root, name, frozen, meta, cases)


# ---------------------------------------------------------------- TF2 graph


def build_tf2(names, out_root):
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    if "tf2_if" in names:
        tf2_if(out_root)
    if "keras_tf2" in names:
        keras_tf2(out_root)
    if "keras_tf1_if" in names:
        keras_tf1_if(out_root)


def tf2_if(out_root):
    """Control flow v2: a tf.cond inside a tf.function, frozen without lowering,
    so the graph holds a StatelessIf whose branches live in the function library."""
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    rng = np.random.default_rng(2001)
    w = tf.Variable(rng.standard_normal((4, 3)).astype(np.float32), name="w")

    @tf.function
    def f(x):
        y = tf.matmul(x, w)
        return tf.cond(tf.reduce_sum(y) > 0.0, lambda: tf.nn.relu(y), lambda: y * -0.5)

    concrete = f.get_concrete_function(tf.TensorSpec([None, 4], tf.float32, name="x"))
    frozen_fn = convert_variables_to_constants_v2(concrete, lower_control_flow=False)
    graph_def = frozen_fn.graph.as_graph_def()
    assert len(graph_def.library.function) >= 2, "expected the cond branches in the library"
    outputs = [t.name.split(":")[0] for t in frozen_fn.outputs]
    inputs = [t.name for t in frozen_fn.inputs]
    cases = []
    for shift in (2.0, -2.0):
        data = rng.standard_normal((2, 4)).astype(np.float32) + shift
        result = frozen_fn(tf.constant(data))
        result = result[0] if isinstance(result, (list, tuple)) else result
        cases.append(({inputs[0]: data}, {outputs[0] + ":0": result.numpy()}, {}))
    meta = {"description": "TF2 tf.function with a data-dependent tf.cond kept as StatelessIf "
                           "(control flow v2, branch functions in the library).",
            "outputs": outputs, "training_placeholders": []}
    write_fixture(out_root, "tf2_if", graph_def, meta, cases)


def conv_trunk(keras, inp, depthwise_bias):
    """The Keras fixtures' layers up to the head: Conv2D with bias, batch
    norm, ReLU6, a depthwise conv (with or without bias), batch norm, ReLU,
    global average pooling."""
    net = keras.layers.Conv2D(6, 3, padding="same", use_bias=True, name="conv")(inp)
    net = keras.layers.BatchNormalization(name="bn_conv")(net)
    net = keras.layers.ReLU(6.0, name="relu")(net)
    net = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=depthwise_bias, name="dw")(net)
    net = keras.layers.BatchNormalization(name="bn_dw")(net)
    net = keras.layers.ReLU(name="relu_dw")(net)
    return keras.layers.GlobalAveragePooling2D(name="gap")(net)


def keras_tf2(out_root):
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    tf.random.set_seed(2000)
    rng = np.random.default_rng(2000)
    keras = tf.keras
    inp = keras.Input((12, 12, 3), name="image")
    net = conv_trunk(keras, inp, depthwise_bias=True)
    net = keras.layers.Dense(5, name="fc")(net)
    net = keras.layers.BatchNormalization(name="bn_fc")(net)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(net)
    model = keras.Model(inp, out)
    # Make the BN statistics non-trivial: a few training steps.
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(rng.standard_normal((16, 12, 12, 3)).astype(np.float32) + 0.3,
              rng.integers(0, 3, 16), epochs=2, batch_size=8, verbose=0)
    fn = tf.function(lambda t: model(t, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec([None, 12, 12, 3], tf.float32, name="image"))
    frozen_fn = convert_variables_to_constants_v2(concrete)
    graph_def = frozen_fn.graph.as_graph_def()
    outputs = [t.name.split(":")[0] for t in frozen_fn.outputs]
    inputs = [t.name for t in frozen_fn.inputs]
    data = rng.standard_normal((2, 12, 12, 3)).astype(np.float32)
    result = frozen_fn(tf.constant(data))
    result = result[0] if isinstance(result, (list, tuple)) else result
    fetched = {outputs[0] + ":0": result.numpy()}
    # Cross-check with the TF1 session path on the serialized graph.
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=g) as s:
        again = s.run(outputs[0] + ":0", {inputs[0]: data})
    np.testing.assert_allclose(again, fetched[outputs[0] + ":0"], rtol=1e-5, atol=1e-6)
    meta = {"description": "TF2 Keras model frozen by convert_variables_to_constants_v2: "
                           "Conv2D+BiasAdd+BN, DepthwiseConv2dNative+BiasAdd+BN, MatMul+BN.",
            "outputs": outputs, "training_placeholders": []}
    write_fixture(out_root, "keras_tf2", graph_def, meta, [({inputs[0]: data}, fetched, {})])


def keras_tf1_if(out_root):
    """Keras in a TF1 graph with TF2's control flow (v2): every batch norm and
    the dropout is an If on `keras_learning_phase` whose branches are
    functions of the library (what Keras models saved from TF1-style code
    under TensorFlow 2 hold)."""
    import numpy as np
    import tensorflow as tf

    v1 = tf.compat.v1
    rng = np.random.default_rng(2002)
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        v1.keras.backend.set_session(sess)
        v1.set_random_seed(2002)
        keras = tf.keras
        inp = v1.placeholder(tf.float32, [None, 10, 10, 3], name="image")
        net = conv_trunk(keras, inp, depthwise_bias=False)
        net = keras.layers.Dropout(0.4, name="drop")(net)
        out = keras.layers.Dense(3, activation="softmax", name="probs")(net)
        sess.run(v1.global_variables_initializer())
        # Statistics a fold could get wrong without showing.
        for v in v1.global_variables():
            if "moving_variance" in v.name:
                v.load(rng.uniform(0.5, 2.0, v.shape).astype(np.float32), sess)
            elif any(k in v.name for k in ("moving_mean", "beta", "gamma")):
                v.load(rng.normal(0.5, 0.3, v.shape).astype(np.float32), sess)
        outputs = [out.op.name]
        frozen = v1.graph_util.convert_variables_to_constants(
            sess, graph.as_graph_def(), outputs)
    ops = {n.op for n in frozen.node}
    assert "If" in ops or "StatelessIf" in ops, f"expected If ops, got {sorted(ops)}"
    image = rng.standard_normal((3, 10, 10, 3)).astype(np.float32)
    mode = {"keras_learning_phase:0": False}
    fetched = run_inference(None, frozen, outputs, {"image:0": image, **mode})
    meta = {"description": "Keras in a TF1 graph with control flow v2: batch norms and dropout "
                           "as If on keras_learning_phase, branches in the function library.",
            "outputs": outputs, "training_placeholders": ["keras_learning_phase"]}
    write_fixture(out_root, "keras_tf1_if", frozen, meta, [({"image:0": image}, fetched, mode)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    parser.add_argument("--mode", choices=["tf1", "tf2"], help=argparse.SUPPRESS)
    parser.add_argument("names", nargs="*")
    args = parser.parse_args()
    out_root = os.path.abspath(args.out)
    names = args.names or TF1_FIXTURES + TF2_FIXTURES
    if args.mode == "tf1":
        build_tf1(names, out_root)
        return
    if args.mode == "tf2":
        build_tf2(names, out_root)
        return
    for mode, group in (("tf1", TF1_FIXTURES), ("tf2", TF2_FIXTURES)):
        chosen = [n for n in names if n in group]
        if chosen:
            subprocess.run([sys.executable, __file__, "--mode", mode, "--out", out_root, *chosen],
                           check=True)
    unknown = set(names) - set(TF1_FIXTURES + TF2_FIXTURES)
    if unknown:
        sys.exit(f"unknown fixtures: {sorted(unknown)}")


if __name__ == "__main__":
    main()
