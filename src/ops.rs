//! A table of well-known TensorFlow ops: how many inputs they take and how
//! many outputs they produce. Validation uses it to check output ports; the
//! rule checker uses it to check pattern arities.
//!
//! Counts are taken from TensorFlow's op registrations (`REGISTER_OP`); an op
//! not in the table is not an error anywhere, only unchecked.

use crate::proto::{AttrValue, attr_value};

/// How many data inputs an op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inputs {
    /// The fewest data inputs.
    pub min: u32,
    /// The most data inputs; `None` when variadic.
    pub max: Option<u32>,
}

/// How many outputs an op produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outputs {
    /// Always this many.
    Fixed(u32),
    /// The value of an int attribute (`num_split` of Split).
    IntAttr(&'static str),
    /// The length of a list attribute (`T` of IdentityN, `Tout` of If).
    ListAttr(&'static str),
}

/// One entry of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpInfo {
    /// The op's name, as in `NodeDef.op`.
    pub name: &'static str,
    /// Data inputs.
    pub inputs: Inputs,
    /// Outputs.
    pub outputs: Outputs,
}

const fn fixed(name: &'static str, inputs: u32, outputs: u32) -> OpInfo {
    OpInfo {
        name,
        inputs: Inputs { min: inputs, max: Some(inputs) },
        outputs: Outputs::Fixed(outputs),
    }
}

const fn variadic(name: &'static str, min: u32, outputs: Outputs) -> OpInfo {
    OpInfo { name, inputs: Inputs { min, max: None }, outputs }
}

/// The table, sorted by name (checked by a test) for binary search.
pub static OPS: &[OpInfo] = &[
    fixed("Abs", 1, 1),
    fixed("Add", 2, 1),
    variadic("AddN", 1, Outputs::Fixed(1)),
    fixed("AddV2", 2, 1),
    fixed("All", 2, 1),
    fixed("Any", 2, 1),
    fixed("ArgMax", 2, 1),
    fixed("ArgMin", 2, 1),
    variadic("Assert", 1, Outputs::Fixed(0)),
    fixed("Assign", 2, 1),
    fixed("AssignVariableOp", 2, 0),
    fixed("AvgPool", 1, 1),
    fixed("AvgPool3D", 1, 1),
    fixed("BatchMatMul", 2, 1),
    fixed("BatchMatMulV2", 2, 1),
    fixed("BatchMatMulV3", 2, 1),
    fixed("BatchToSpaceND", 3, 1),
    fixed("BiasAdd", 2, 1),
    fixed("BiasAddV1", 2, 1),
    fixed("BroadcastGradientArgs", 2, 2),
    fixed("BroadcastTo", 2, 1),
    fixed("Cast", 1, 1),
    fixed("Ceil", 1, 1),
    fixed("CheckNumerics", 1, 1),
    fixed("ClipByValue", 3, 1),
    variadic("Concat", 2, Outputs::Fixed(1)),
    variadic("ConcatV2", 2, Outputs::Fixed(1)),
    fixed("Const", 0, 1),
    fixed("Conv2D", 2, 1),
    fixed("Conv2DBackpropInput", 3, 1),
    fixed("Conv3D", 2, 1),
    fixed("Cos", 1, 1),
    fixed("Cumsum", 2, 1),
    fixed("DepthToSpace", 1, 1),
    fixed("DepthwiseConv2dNative", 2, 1),
    fixed("Dequantize", 3, 1),
    fixed("Div", 2, 1),
    fixed("DivNoNan", 2, 1),
    fixed("Einsum", 2, 1),
    fixed("Elu", 1, 1),
    fixed("Enter", 1, 1),
    fixed("Equal", 2, 1),
    fixed("Erf", 1, 1),
    fixed("Exit", 1, 1),
    fixed("Exp", 1, 1),
    fixed("ExpandDims", 2, 1),
    fixed("FakeQuantWithMinMaxArgs", 1, 1),
    fixed("FakeQuantWithMinMaxVars", 3, 1),
    fixed("Fill", 2, 1),
    fixed("Floor", 1, 1),
    fixed("FloorDiv", 2, 1),
    fixed("FloorMod", 2, 1),
    fixed("FusedBatchNorm", 5, 5),
    fixed("FusedBatchNormV2", 5, 5),
    fixed("FusedBatchNormV3", 5, 6),
    fixed("Gather", 2, 1),
    fixed("GatherNd", 2, 1),
    fixed("GatherV2", 3, 1),
    fixed("Greater", 2, 1),
    fixed("GreaterEqual", 2, 1),
    fixed("Identity", 1, 1),
    variadic("IdentityN", 0, Outputs::ListAttr("T")),
    variadic("If", 1, Outputs::ListAttr("Tout")),
    fixed("L2Loss", 1, 1),
    fixed("LRN", 1, 1),
    fixed("LeakyRelu", 1, 1),
    fixed("Less", 2, 1),
    fixed("LessEqual", 2, 1),
    fixed("Log", 1, 1),
    fixed("Log1p", 1, 1),
    fixed("LogSoftmax", 1, 1),
    fixed("LogicalAnd", 2, 1),
    fixed("LogicalNot", 1, 1),
    fixed("LogicalOr", 2, 1),
    fixed("LoopCond", 1, 1),
    fixed("MatMul", 2, 1),
    fixed("Max", 2, 1),
    fixed("MaxPool", 1, 1),
    fixed("MaxPool3D", 1, 1),
    fixed("MaxPoolV2", 3, 1),
    fixed("MaxPoolWithArgmax", 1, 2),
    fixed("Maximum", 2, 1),
    fixed("Mean", 2, 1),
    variadic("Merge", 1, Outputs::Fixed(2)),
    fixed("Min", 2, 1),
    fixed("Minimum", 2, 1),
    fixed("MirrorPad", 2, 1),
    fixed("Mul", 2, 1),
    fixed("Neg", 1, 1),
    fixed("NextIteration", 1, 1),
    fixed("NoOp", 0, 0),
    fixed("NonMaxSuppressionV3", 5, 1),
    fixed("NonMaxSuppressionV4", 5, 2),
    fixed("NonMaxSuppressionV5", 6, 3),
    fixed("NotEqual", 2, 1),
    fixed("OneHot", 4, 1),
    variadic("Pack", 1, Outputs::Fixed(1)),
    fixed("Pad", 2, 1),
    fixed("PadV2", 3, 1),
    variadic("PartitionedCall", 0, Outputs::ListAttr("Tout")),
    fixed("Placeholder", 0, 1),
    fixed("PlaceholderWithDefault", 1, 1),
    fixed("Pow", 2, 1),
    fixed("PreventGradient", 1, 1),
    fixed("Prod", 2, 1),
    fixed("QuantizeV2", 3, 3),
    fixed("RandomStandardNormal", 1, 1),
    fixed("RandomUniform", 1, 1),
    fixed("RandomUniformInt", 3, 1),
    fixed("Range", 3, 1),
    fixed("Rank", 1, 1),
    fixed("ReadVariableOp", 1, 1),
    fixed("RealDiv", 2, 1),
    fixed("Reciprocal", 1, 1),
    fixed("RefIdentity", 1, 1),
    variadic("RefMerge", 1, Outputs::Fixed(2)),
    fixed("RefSwitch", 2, 2),
    fixed("Relu", 1, 1),
    fixed("Relu6", 1, 1),
    fixed("Reshape", 2, 1),
    fixed("ResizeBilinear", 2, 1),
    fixed("ResizeNearestNeighbor", 2, 1),
    fixed("ReverseV2", 2, 1),
    fixed("Round", 1, 1),
    fixed("Rsqrt", 1, 1),
    fixed("Select", 3, 1),
    fixed("SelectV2", 3, 1),
    fixed("Selu", 1, 1),
    fixed("Shape", 1, 1),
    variadic("ShapeN", 1, Outputs::IntAttr("N")),
    fixed("Sigmoid", 1, 1),
    fixed("Sign", 1, 1),
    fixed("Sin", 1, 1),
    fixed("Size", 1, 1),
    fixed("Slice", 3, 1),
    fixed("Snapshot", 1, 1),
    fixed("Softmax", 1, 1),
    fixed("Softplus", 1, 1),
    fixed("Softsign", 1, 1),
    fixed("SpaceToBatchND", 3, 1),
    fixed("SpaceToDepth", 1, 1),
    fixed("Split", 2, 1).with_outputs(Outputs::IntAttr("num_split")),
    fixed("SplitV", 3, 1).with_outputs(Outputs::IntAttr("num_split")),
    fixed("Sqrt", 1, 1),
    fixed("Square", 1, 1),
    fixed("SquaredDifference", 2, 1),
    fixed("Squeeze", 1, 1),
    variadic("StatefulPartitionedCall", 0, Outputs::ListAttr("Tout")),
    variadic("StatelessIf", 1, Outputs::ListAttr("Tout")),
    variadic("StatelessWhile", 0, Outputs::ListAttr("T")),
    fixed("StopGradient", 1, 1),
    fixed("StridedSlice", 4, 1),
    fixed("Sub", 2, 1),
    fixed("Sum", 2, 1),
    fixed("Switch", 2, 2),
    fixed("Tanh", 1, 1),
    fixed("TensorScatterUpdate", 3, 1),
    fixed("Tile", 2, 1),
    fixed("TopKV2", 2, 2),
    fixed("Transpose", 2, 1),
    fixed("TruncatedNormal", 1, 1),
    fixed("Unique", 1, 2),
    fixed("Unpack", 1, 1).with_outputs(Outputs::IntAttr("num")),
    fixed("VarHandleOp", 0, 1),
    fixed("VariableV2", 0, 1),
    variadic("While", 0, Outputs::ListAttr("T")),
    fixed("ZerosLike", 1, 1),
];

impl OpInfo {
    const fn with_outputs(mut self, outputs: Outputs) -> OpInfo {
        self.outputs = outputs;
        self
    }

    /// Outputs of an instance of this op, whose attributes `attr` gives,
    /// when they say.
    pub fn num_outputs(&self, attr: impl Fn(&str) -> Option<AttrValue>) -> Option<u32> {
        match self.outputs {
            Outputs::Fixed(n) => Some(n),
            Outputs::IntAttr(name) => match attr(name)?.value? {
                attr_value::Value::I(n) => u32::try_from(n).ok(),
                _ => None,
            },
            Outputs::ListAttr(name) => match attr(name)?.value? {
                attr_value::Value::List(list) => {
                    let n = list.r#type.len() + list.shape.len() + list.s.len();
                    u32::try_from(n).ok()
                }
                _ => None,
            },
        }
    }
}

/// The names of the outputs of the table's ops that have several, in
/// order; each is one tensor. A function body (`FunctionDef`) names an
/// output `node:name:index`, so inlining one needs them.
static NAMED_OUTPUTS: &[(&str, &[&str])] = &[
    ("BroadcastGradientArgs", &["r0", "r1"]),
    ("FusedBatchNorm", BN_OUTPUTS.split_at(5).0),
    ("FusedBatchNormV2", BN_OUTPUTS.split_at(5).0),
    ("FusedBatchNormV3", BN_OUTPUTS),
    ("MaxPoolWithArgmax", &["output", "argmax"]),
    ("Merge", &["output", "value_index"]),
    ("NonMaxSuppressionV4", &["selected_indices", "valid_outputs"]),
    ("NonMaxSuppressionV5", &["selected_indices", "selected_scores", "valid_outputs"]),
    ("QuantizeV2", &["output", "output_min", "output_max"]),
    ("RefMerge", &["output", "value_index"]),
    ("RefSwitch", &["output_false", "output_true"]),
    ("Switch", &["output_false", "output_true"]),
    ("TopKV2", &["values", "indices"]),
    ("Unique", &["y", "idx"]),
];

const BN_OUTPUTS: &[&str] =
    &["y", "batch_mean", "batch_variance", "reserve_space_1", "reserve_space_2", "reserve_space_3"];

/// The port of output `name:index` of an op of the table (`index` counts
/// within a list output, like Split's `output`); `None` when the op is not
/// in the table or has no such output.
pub fn output_port(op: &str, name: &str, index: u32) -> Option<u32> {
    if let Some((_, names)) = NAMED_OUTPUTS.iter().find(|(o, _)| *o == op) {
        let at = names.iter().position(|n| *n == name)?;
        return (index == 0).then_some(at as u32);
    }
    match lookup(op)?.outputs {
        // One output, a tensor or a list: its name is the op's to choose.
        Outputs::Fixed(1) => (index == 0).then_some(0),
        Outputs::IntAttr(_) | Outputs::ListAttr(_) => Some(index),
        Outputs::Fixed(_) => None,
    }
}

/// The ops of the table with several outputs, and their names.
pub fn named_outputs() -> impl Iterator<Item = (&'static str, &'static [&'static str])> {
    NAMED_OUTPUTS.iter().copied()
}

/// Looks an op up by name.
pub fn lookup(op: &str) -> Option<&'static OpInfo> {
    OPS.binary_search_by(|info| info.name.cmp(op)).ok().map(|i| &OPS[i])
}

/// Outputs of node `id` if its op is in the table and its attributes say.
pub fn num_outputs(graph: &crate::Graph, id: crate::NodeId) -> Option<u32> {
    lookup(graph.op(id))?.num_outputs(|name| graph.attr(id, name).ok().flatten())
}
