"""ONNX graph surgery before conversion to PyTorch: normalise, cut at a feature node, check the ops.

onnx2torch converts most vision ops, but it looks weights up among the graph's *initializers* and
trips over three things common exporters emit: weights held in `Constant` nodes, weights reached
through `Identity` nodes (the TorchScript exporter de-duplicates shared tensors that way) and empty
optional inputs (`Clip(x, min, "")`). `normalize` rewrites those into the plain form; `cut` makes a
chosen intermediate value (the features) the graph's output and drops everything after it.
"""

from __future__ import annotations

import difflib
from collections import Counter

import onnx

from transferlab.errors import ConfigError, WeightsError

# Ops that only reshape or normalise a classifier's output: walked through when looking for the classifier.
_PASS = {"Softmax", "LogSoftmax", "Identity", "Flatten", "Reshape", "Squeeze", "Add", "Cast", "Dropout"}


def normalize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant nodes -> initializers, Identity-of-initializer -> the initializer, trailing "" inputs dropped."""
    g = model.graph
    nodes = []
    for n in g.node:
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(n.attribute[0].t)
            t.name = n.output[0]
            g.initializer.append(t)
        else:
            nodes.append(n)
    inits = {i.name for i in g.initializer}
    outputs = {o.name for o in g.output}
    alias: dict[str, str] = {}
    kept = []
    for n in nodes:
        src = alias.get(n.input[0], n.input[0]) if n.input else None
        if n.op_type == "Identity" and src in inits and n.output[0] not in outputs:
            alias[n.output[0]] = src
        else:
            kept.append(n)
    for n in kept:
        for i, name in enumerate(n.input):
            if name in alias:
                n.input[i] = alias[name]
        while n.input and n.input[-1] == "":
            n.input.pop()
    del g.node[:]
    g.node.extend(kept)
    return model


def value_names(model: onnx.ModelProto) -> list[str]:
    """Every intermediate value (node output) in topological order."""
    return [o for n in model.graph.node for o in n.output if o]


def find_classifier_input(model: onnx.ModelProto) -> str | None:
    """The input of the final Gemm/MatMul with constant weights (the classifier), or None (a feature model)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name for i in model.graph.initializer}
    name = model.graph.output[0].name
    for _ in range(8):
        node = producer.get(name)
        if node is None:
            return None
        if node.op_type in ("Gemm", "MatMul") and len(node.input) > 1 and node.input[1] in inits:
            return node.input[0]
        if node.op_type not in _PASS:
            return None
        data = [i for i in node.input if i and i not in inits]
        if len(data) != 1:
            return None
        name = data[0]
    return None


def cut(model: onnx.ModelProto, output: str) -> onnx.ModelProto:
    """Make `output` the only graph output and keep only the nodes and initializers it needs."""
    names = value_names(model)
    if output not in names:
        close = difflib.get_close_matches(output, names, n=5, cutoff=0.3)
        raise ConfigError(
            f"the ONNX model has no node output '{output}' to cut at (backbone.output). Close names: {close or 'none'}; "
            f"its last outputs are {names[-5:]}. List them all with "
            "`[o for n in onnx.load(path).graph.node for o in n.output]`."
        )
    g = model.graph
    needed, keep = {output}, []
    for n in reversed(g.node):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    keep.reverse()
    inits = [i for i in g.initializer if i.name in needed]
    vi = next((v for v in list(g.value_info) + list(g.output) if v.name == output), None)
    out = vi if vi is not None else onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)
    del g.node[:]
    g.node.extend(keep)
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.output[:]
    g.output.append(out)
    return model


def check_convertible(model: onnx.ModelProto) -> Counter:
    """Op counts; raise `WeightsError` naming every op onnx2torch can't convert (all at once, before converting)."""
    from onnx2torch.node_converters import get_converter

    opsets = {o.domain: o.version for o in model.opset_import}
    ops = Counter((n.domain, n.op_type) for n in model.graph.node)
    missing = []
    for domain, op in ops:
        try:
            get_converter(domain=domain, operation_type=op, version=opsets.get(domain, opsets.get("", 0)))
        except NotImplementedError:
            missing.append(f"{domain + '::' if domain else ''}{op} x{ops[(domain, op)]}")
    if missing:
        raise WeightsError(
            f"onnx2torch can't convert these ONNX ops (opset {opsets.get('')}): {', '.join(missing)}. Cut the graph "
            "before them with backbone.output=<node output name>, or re-export the model without them."
        )
    return Counter({op: c for (_, op), c in ops.items()})
