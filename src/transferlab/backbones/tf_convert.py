"""SavedModel -> ONNX, run in its own process: `python -m transferlab.backbones.tf_convert DIR OUT.onnx`.

TensorFlow never loads into the training process (two frameworks, two protobuf/thread pools, and
seconds of import time). The signature is checked first: one float image input `(B, H, W, C)` or
`(B, C, H, W)`. Any other input (strings: a text model; ints: token ids) stops here with the
signature's inputs listed. Then tf2onnx converts the signature; ops it can't map are reported by name.

Exit codes: 0 ok (the ONNX file is written, a JSON summary on stdout), 3 the signature doesn't fit,
4 tf2onnx failed (its errors on stdout as JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys


def _signature(saved_model: str, name: str) -> tuple[dict, dict]:
    import tensorflow as tf

    loaded = tf.saved_model.load(saved_model)
    if name not in loaded.signatures:
        _fail(
            3,
            f"the SavedModel has no signature '{name}'; it has {sorted(loaded.signatures)}. "
            "Set backbone.signature to one of them.",
        )
    fn = loaded.signatures[name]
    inputs = {k: (v.dtype.name, v.shape.as_list()) for k, v in fn.structured_input_signature[1].items()}
    outputs = {k: (v.dtype.name, v.shape.as_list()) for k, v in fn.structured_outputs.items()}
    return inputs, outputs


def _fail(code: int, message: str, **extra) -> None:
    print(json.dumps({"error": message, **extra}))
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("saved_model")
    p.add_argument("output")
    p.add_argument("--signature", default="serving_default")
    p.add_argument("--opset", type=int, default=17)
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    inputs, outputs = _signature(a.saved_model, a.signature)
    image = [
        k for k, (dtype, shape) in inputs.items() if dtype.startswith(("float", "half", "bfloat")) and len(shape) == 4
    ]
    if len(inputs) != 1 or not image:
        kind = " (strings: a text model)" if any(d == "string" for d, _ in inputs.values()) else ""
        _fail(
            3,
            f"signature '{a.signature}' takes {inputs}{kind}, but an image backbone needs one float input "
            "(B, H, W, C). Use an image model's signature (backbone.signature) or another model.",
            inputs=inputs,
        )
    from tf2onnx import convert

    log = io.StringIO()
    args = [
        "tf2onnx.convert",
        "--saved-model",
        a.saved_model,
        "--signature_def",
        a.signature,
        "--opset",
        str(a.opset),
        "--output",
        a.output,
    ]
    sys.argv = args
    try:
        with contextlib.redirect_stderr(log):
            convert.main()
    except SystemExit as e:
        if e.code not in (0, None):
            _fail(4, "tf2onnx failed", log=log.getvalue()[-4000:])
    except Exception as e:  # tf2onnx raises op-mapping errors as plain exceptions; reported as JSON
        _fail(4, f"tf2onnx failed: {type(e).__name__}: {e}", log=log.getvalue()[-4000:])
    unsupported = [
        ln.strip() for ln in log.getvalue().splitlines() if "is not supported" in ln or "Unsupported ops" in ln
    ]
    if unsupported or not os.path.exists(a.output):
        _fail(4, "tf2onnx could not map every op", unsupported=unsupported, log=log.getvalue()[-4000:])
    print(json.dumps({"inputs": inputs, "outputs": outputs, "opset": a.opset, "signature": a.signature}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
