"""A backbone from an ONNX file (e.g. the ONNX Model Zoo), converted to trainable PyTorch with onnx2torch.

The graph is cut at the features: `output` names the node output to stop at; by default the input
of the final classifier (a Gemm/MatMul with constant weights) is found, or a feature-vector model is
kept whole. Spatial outputs `(B, C, H, W)` are average-pooled. Weights that onnx2torch keeps as
constants (MatMul/Add initializers, e.g. TensorFlow Dense layers exported by tf2onnx) are turned
into parameters so every strategy can train them.

What the ONNX round trip loses: an ONNX file is an *inference* graph, so batch norm is usually
folded into the convolutions by the exporter (no running statistics left to adapt) and dropout is
gone; training then fine-tunes the folded weights.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from transferlab.backbones.base import Backbone, BackboneInfo, LayerGroup, Preprocessing
from transferlab.errors import ConfigError, WeightsError
from transferlab.infra import hub, licence
from transferlab.infra.paths import cache_dir


def _locate(path: str | None, url: str | None, name: str) -> tuple[Path, str]:
    if path:
        if not Path(path).is_file():
            raise WeightsError(f"ONNX file not found: backbone.path='{path}'. Point it at an existing .onnx file.")
        return Path(path), f"file:{path}"
    if not url:
        raise ConfigError(f"backbone '{name}' needs backbone.path (a local .onnx file) or backbone.url.")
    out = cache_dir("onnx") / Path(urlparse(url).path).name
    if not out.exists():
        host = urlparse(url).hostname or ""
        if hub.offline_forced() or not hub.reachable(host):
            raise WeightsError(
                f"backbone '{name}' downloads '{url}' but {host} is unreachable (offline?). Download it "
                "elsewhere and give the local file: backbone.path=/path/to/model.onnx"
            )
        torch.hub.download_url_to_file(url, str(out), progress=False)
    return out, f"hub:{url}"


def _image_input(model) -> tuple[str, list]:
    """Name and dims of the single image input; a clear error for text/int inputs or several inputs."""
    import onnx

    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    described = [
        f"{i.name}: {onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)} rank "
        f"{len(i.type.tensor_type.shape.dim)}"
        for i in inputs
    ]
    ok = (
        len(inputs) == 1
        and inputs[0].type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
        and len(inputs[0].type.tensor_type.shape.dim) == 4
    )
    if not ok:
        raise ConfigError(
            f"this ONNX model takes {described}, but an image backbone needs one float input of shape "
            "(B, C, H, W) or (B, H, W, C). Use an image model (or cut/re-export it to take images)."
        )
    return inputs[0].name, [d.dim_value or None for d in inputs[0].type.tensor_type.shape.dim]


def _promote_initializers(gm: nn.Module) -> int:
    """Float initializers with more than one element (weights kept as buffers by onnx2torch) -> parameters."""
    if not hasattr(gm, "initializers"):  # no initializers at all
        return 0
    container = gm.get_submodule("initializers")
    n = 0
    for name, buf in list(container.named_buffers(recurse=False)):
        if buf.is_floating_point() and buf.numel() > 1:
            del container._buffers[name]
            container.register_parameter(name, nn.Parameter(buf.clone()))
            n += 1
    return n


def _licence(license: str | None, license_source: str | None, meta: dict, file: Path) -> tuple[str | None, str | None]:
    """(licence, where it came from): as given, else the ONNX metadata, else a LICENSE file beside the model."""
    if license is None and meta.get("license"):
        return meta["license"], "ONNX metadata_props"
    if license is None and (found := licence.from_folder(file.parent)):
        return found, f"LICENSE file beside {file.name}"
    return license, license_source


class OnnxBackbone(Backbone):
    """An ONNX model converted to an `fx.GraphModule` (onnx2torch) and cut at its features.

    Args:
        path: local .onnx file; null = download `url` (cached in the transferlab cache).
        url: e.g. an ONNX Model Zoo file URL (needs a network once).
        output: node output name to cut at (the features); null = the classifier's input, found automatically.
        name: display name recorded in results.
        license: licence of the weights; null = the file's `metadata_props["license"]`, a LICENSE file beside it,
            or unknown.
        mean, std: input normalisation the weights expect.
        input_size: (C, H, W); null = from the ONNX input when static, else (3, 224, 224).
        layout: "auto", "nchw" or "nhwc" (NHWC models get a transpose in front).
        num_groups: layer groups for unfreezing: contiguous slices of the graph's parameters, input -> output.
        source: recorded source (set by converters that produce the file, e.g. TF Hub).
        license_source: where `license` came from (set by converters).

    Shape:
        input `(B, C, H, W)` -> output `(B, num_features)`.
    """

    def __init__(
        self,
        path: str | None = None,
        url: str | None = None,
        output: str | None = None,
        name: str | None = None,
        license: str | None = None,
        mean: tuple[float, ...] = (0.485, 0.456, 0.406),
        std: tuple[float, ...] = (0.229, 0.224, 0.225),
        input_size: tuple[int, int, int] | None = None,
        layout: str = "auto",
        num_groups: int = 4,
        source: str | None = None,
        license_source: str | None = None,
    ) -> None:
        super().__init__()
        name = name or Path(str(path or url)).stem
        file, where = _locate(path, url, name)  # before the onnx imports: fail fast offline
        import onnx
        import onnx2torch

        from transferlab.backbones import onnx_graph

        try:
            model = onnx.load(str(file))
        except Exception as e:  # protobuf decode errors have many types
            raise WeightsError(f"could not read ONNX file '{file}': {type(e).__name__}: {e}") from e
        meta = {p.key.lower(): p.value for p in model.metadata_props}
        input_name, dims = _image_input(model)
        nhwc = layout == "nhwc" or (layout == "auto" and dims[3] in (1, 3) and dims[1] not in (1, 3))
        onnx_graph.normalize(model)
        cut_at = output or onnx_graph.find_classifier_input(model)
        if cut_at:
            onnx_graph.cut(model, cut_at)
        ops = onnx_graph.check_convertible(model)
        try:
            self.model = onnx2torch.convert(model)
        except Exception as e:  # converter errors name the node; pass them on in one message
            raise WeightsError(f"onnx2torch could not convert '{file}': {type(e).__name__}: {e}") from e
        promoted = _promote_initializers(self.model)
        self.nhwc, self.cut_at = nhwc, cut_at or model.graph.output[0].name
        c, h, w = (dims[3], dims[1], dims[2]) if nhwc else (dims[1], dims[2], dims[3])
        size = tuple(input_size) if input_size else (c or 3, h or 224, w or 224)
        self.num_features, self.pool = self._probe(size)
        self.num_groups = num_groups
        lic, lsrc = _licence(license, license_source, meta, file)
        extra = {
            "input": input_name,
            "cut_at": self.cut_at,
            "layout": "nhwc" if nhwc else "nchw",
            "onnx_opset": next((o.version for o in model.opset_import if o.domain == ""), None),
            "ops": dict(Counter(ops).most_common()),
            "initializers_made_trainable": promoted,
        }
        if lsrc:
            extra["license_source"] = lsrc
        self.info = BackboneInfo(name=name, source=source or where, license=lic, kind="image", extra=extra)
        self.preprocessing = Preprocessing("image", tuple(mean), tuple(std), size, size[0])

    @torch.no_grad()
    def _probe(self, size) -> tuple[int, str | None]:
        """(num_features, pooling needed) from one forward pass at `size`."""
        try:
            out = self.model.eval()(self._layout(torch.zeros(2, *size)))
        except RuntimeError as e:
            raise ConfigError(
                f"the converted ONNX graph fails on a batch of 2 images of {size} ({e}). Exports with batch size 1 "
                "bake it into Reshape shapes: cut before the first such Reshape with backbone.output=<node output>, "
                "re-export with a dynamic batch axis, or set backbone.input_size to the size the file expects."
            ) from e
        if out.dim() == 2:
            return out.shape[1], None
        if out.dim() == 4:
            return (out.shape[3], "nhwc") if self.nhwc else (out.shape[1], "nchw")
        if out.dim() == 3:
            return out.shape[2], "tokens"
        raise ConfigError(
            f"the features (ONNX value '{self.cut_at}') have shape {tuple(out.shape)}; cut at a (B, F), "
            "(B, C, H, W) or (B, T, F) value with backbone.output."
        )

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1) if self.nhwc else x  # (B, C, H, W) -> (B, H, W, C) for NHWC graphs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(self._layout(x))
        if self.pool == "nchw":
            return out.mean(dim=(2, 3))  # (B, C)
        if self.pool == "nhwc":
            return out.mean(dim=(1, 2))  # (B, C)
        if self.pool == "tokens":
            return out.mean(dim=1)  # (B, F)
        return out  # (B, F)

    def layer_groups(self) -> list[LayerGroup]:
        """`num_groups` contiguous slices of the parameters in graph (input -> output) order."""
        seen, ordered = set(), []
        params = dict(self.model.named_parameters())
        for node in self.model.graph.nodes:
            if node.op == "call_module":
                names = [f"{node.target}.{n}" for n, _ in self.model.get_submodule(node.target).named_parameters()]
            elif node.op == "get_attr":
                names = [str(node.target)]
            else:
                continue
            for n in names:
                if n in params and n not in seen:
                    seen.add(n)
                    ordered.append((n, params[n]))
        ordered += [(n, p) for n, p in params.items() if n not in seen]
        k = max(1, min(self.num_groups, len(ordered)))
        bounds = [round(i * len(ordered) / k) for i in range(k + 1)]
        return [
            LayerGroup(f"{i}:{ordered[bounds[i]][0].split('.')[0]}", ordered[bounds[i] : bounds[i + 1]])
            for i in range(k)
            if bounds[i] < bounds[i + 1]
        ]
