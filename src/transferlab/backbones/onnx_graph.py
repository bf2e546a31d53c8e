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


def _fill(node: onnx.NodeProto, shape) -> onnx.TensorProto:
    """ConstantOfShape with a constant shape -> the tensor it makes."""
    import numpy as np
    from onnx import numpy_helper

    value = next((numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value"), np.zeros(1, np.float32))
    return numpy_helper.from_array(
        np.full([int(d) for d in shape], value.reshape(-1)[0], dtype=value.dtype), node.output[0]
    )


def normalize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold constants into initializers and drop inference no-ops, so onnx2torch finds every weight.

    Constant and ConstantOfShape(constant shape) nodes -> initializers; Identity of an initializer and
    Dropout (a no-op at inference; lossy for fine-tuning: the model trains without it) -> their input;
    trailing empty optional inputs dropped.
    """
    from onnx import numpy_helper

    g = model.graph
    consts = {i.name: i for i in g.initializer}
    nodes = []
    for n in g.node:
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(n.attribute[0].t)
            t.name = n.output[0]
        elif n.op_type == "ConstantOfShape" and n.input[0] in consts:
            t = _fill(n, numpy_helper.to_array(consts[n.input[0]]))
        else:
            nodes.append(n)
            continue
        g.initializer.append(t)
        consts[t.name] = t
        model.ir_version = max(model.ir_version, 4)  # IR >= 4: initializers need not be listed as graph inputs
    inits = set(consts)
    outputs = {o.name for o in g.output}
    used = {i for n in nodes for i in n.input} | outputs
    alias: dict[str, str] = {}
    kept = []
    for n in nodes:
        src = alias.get(n.input[0], n.input[0]) if n.input else None
        no_op = (n.op_type == "Identity" and src in inits) or (
            n.op_type == "Dropout" and not (set(n.output[1:]) & used)
        )
        if no_op and n.output[0] not in outputs:
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
    return prune_inputs(model)


def prune_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Keep only graph inputs that some node reads and no initializer provides (old IRs list weights as inputs)."""
    g = model.graph
    used = {i for n in g.node for i in n.input}
    inits = {i.name for i in g.initializer}
    keep = [i for i in g.input if i.name in used and i.name not in inits]
    del g.input[:]
    g.input.extend(keep)
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
            name = node.input[0]
            # before a Flatten/Reshape: old exports bake batch 1 into the shape; (B, C, 1, 1) is pooled anyway
            while producer.get(name) is not None and producer[name].op_type in ("Flatten", "Reshape", "Squeeze"):
                name = producer[name].input[0]
            return name
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
            f"the ONNX model has no node output '{output}' to cut at (backbone.output). Close names: "
            f"{close or 'none'}; "
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
    return prune_inputs(model)


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
