"""A PyTorch Hub model as a backbone: `torch.hub.load(repo, model)` from GitHub, or a local hub repo offline.

The classifier is cut off and replaced by the task's new head: named by `head` (e.g. "fc",
"classifier") or discovered (the first of fc / classifier / head / heads / last_linear that holds
a `Linear`). Layer groups are the model's top-level children in order, a long `Sequential` /
`ModuleList` (resnet `layer1`..., mobilenet `features`) split into its blocks.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from transferlab.backbones.base import Backbone, BackboneInfo, LayerGroup, Preprocessing
from transferlab.errors import ConfigError, WeightsError
from transferlab.infra import hub, licence

HEAD_NAMES = ("fc", "classifier", "head", "heads", "last_linear")
GITHUB = "github.com"


def _hub_entries(repo_dir: str) -> list[str]:
    """The public callables of a local hubconf.py (what `torch.hub.list` gives for a GitHub repo)."""
    import importlib.util
    import sys

    sys.path.insert(0, repo_dir)  # as torch.hub does: hubconf.py may import modules beside it
    try:
        spec = importlib.util.spec_from_file_location("hubconf", str(Path(repo_dir) / "hubconf.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as e:  # a broken hubconf.py: say which file, with its error
        raise ConfigError(f"could not read '{repo_dir}/hubconf.py': {type(e).__name__}: {e}") from e
    finally:
        sys.path.remove(repo_dir)
    return sorted(n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_"))


def _check_repo(repo: str, source: str, model: str, name: str) -> str:
    """Fail fast: a local dir without hubconf.py / entry `model`, or GitHub unreachable and not cached."""
    if source == "local":
        if not (Path(repo) / "hubconf.py").is_file():
            raise ConfigError(
                f"backbone.repo='{repo}' is not a torch.hub repo dir (no hubconf.py). Point it at a "
                "folder with a hubconf.py, e.g. a `git clone` of the hub repo."
            )
        entries = _hub_entries(repo)
        if model not in entries:
            raise ConfigError(
                f"torch.hub repo '{repo}' has no entry '{model}'; its hubconf.py offers "
                f"{entries or 'no entries'}. Set backbone.model to one of them."
            )
        return f"file:{repo}"
    if source != "github":
        raise ConfigError(f"backbone.source='{source}' must be 'github' or 'local'.")
    owner_repo = repo.split(":")[0].replace("/", "_")
    cached = any(Path(torch.hub.get_dir()).glob(f"{owner_repo}_*"))
    if not cached and (hub.offline_forced() or not hub.reachable(GITHUB)):
        raise WeightsError(
            f"backbone '{name}' loads '{model}' from the torch.hub repo '{repo}' on GitHub, but "
            f"{GITHUB} is unreachable "
            "(offline?). Offline, clone the repo elsewhere (with its weights) and set `backbone.source=local "
            "backbone.repo=/path/to/repo`."
        )
    return f"hub:torchhub:{repo}"


def _split_head(model: nn.Module, head: str | None) -> tuple[str, int]:
    """Replace the classifier (dotted path `head`, or discovered) by Identity; (its path, in_features)."""
    names = [head] if head else [n for n in HEAD_NAMES if hasattr(model, n)]
    for path in names:
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        linears = [
            m for m in ([module] if isinstance(module, nn.Linear) else module.modules()) if isinstance(m, nn.Linear)
        ]
        if linears:
            parent, _, attr = path.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, nn.Identity())
            return path, linears[0].in_features
    children = [n for n, _ in model.named_children()]
    raise ConfigError(
        f"can't find the classifier of this torch.hub model (tried {names}); its top-level modules are "
        f"{children}. Name it with backbone.head=<module path> (e.g. fc or classifier.1)."
    )


class TorchHubBackbone(Backbone):
    """`torch.hub.load(repo, model, **model_kwargs)` with the classifier replaced by the new head.

    Args:
        repo: "owner/name[:ref]" on GitHub, or a local folder holding a hubconf.py (`source: local`).
        model: the hubconf entry (`torch.hub.list(repo)`).
        source: "github" (needs a network or a torch.hub cache) or "local".
        weights: the entry's `weights=` argument (torchvision style, e.g. "DEFAULT"); null = not passed.
        pretrained: the entry's `pretrained=` argument (older hub repos); null = not passed.
        model_kwargs: further keyword arguments of the entry.
        head: module path of the classifier to cut off; null = discovered.
        name: display name recorded in results (default: `model`).
        license: licence of the weights; null = the repo's LICENSE file (local repos) or unknown.
        mean, std: input normalisation the weights expect.
        input_size: (C, H, W) the weights were trained at.

    Shape:
        input `(B, C, H, W)` -> output `(B, num_features)`.
    """

    def __init__(
        self,
        repo: str,
        model: str,
        source: str = "github",
        weights: str | None = None,
        pretrained: bool | None = None,
        model_kwargs: dict | None = None,
        head: str | None = None,
        name: str | None = None,
        license: str | None = None,
        mean: tuple[float, ...] = (0.485, 0.456, 0.406),
        std: tuple[float, ...] = (0.229, 0.224, 0.225),
        input_size: tuple[int, int, int] = (3, 224, 224),
    ) -> None:
        super().__init__()
        name = name or model
        where = _check_repo(str(repo), source, model, name)
        kwargs = {k: v for k, v in (("weights", weights), ("pretrained", pretrained)) if v is not None}
        try:
            self.model = torch.hub.load(
                str(repo),
                model,
                source=source,
                trust_repo=True,
                skip_validation=True,
                **kwargs,
                **dict(model_kwargs or {}),
            )
        except Exception as e:  # hub code raises anything: one message naming the entry
            raise WeightsError(
                f"torch.hub.load('{repo}', '{model}', source='{source}') failed: {type(e).__name__}: {e}"
            ) from e
        if not isinstance(self.model, nn.Module):
            raise ConfigError(
                f"torch.hub entry '{model}' of '{repo}' returned a {type(self.model).__name__}, not an nn.Module."
            )
        self.head_path, self.num_features = _split_head(self.model, head)
        self._check_features(input_size)
        extra = {"head_removed": self.head_path, "entry": model}
        lic = license
        if lic is None and source == "local":
            lic = licence.from_folder(Path(repo))
            extra["license_source"] = "LICENSE file of the torch.hub repo"
        self.info = BackboneInfo(name=name, source=where, license=lic, kind="image", extra=extra)
        self.preprocessing = Preprocessing("image", tuple(mean), tuple(std), tuple(input_size), input_size[0])

    @torch.no_grad()
    def _check_features(self, input_size) -> None:
        was = self.model.training
        out = self.model.eval()(torch.zeros(2, *input_size))
        self.model.train(was)
        if out.dim() != 2 or out.shape[1] != self.num_features:
            raise ConfigError(
                f"with '{self.head_path}' removed the model outputs {tuple(out.shape)}, not (B, "
                f"{self.num_features}) features. Name the classifier with backbone.head=<module path>."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # (B, num_features)

    def layer_groups(self) -> list[LayerGroup]:
        """Top-level children in order (long Sequential/ModuleList split into blocks); root parameters first."""
        own = [(n, p) for n, p in self.model.named_parameters(recurse=False)]
        parts: list[tuple[str, nn.Module]] = []
        for cname, child in self.model.named_children():
            if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(child) > 4:
                parts += [(f"{cname}.{i}", m) for i, m in child.named_children()]
            else:
                parts.append((cname, child))
        groups = [LayerGroup("0:root", own)] if own else []
        for pname, part in parts:
            params = [(f"{pname}.{n}", p) for n, p in part.named_parameters()]
            if params:
                groups.append(LayerGroup(f"{len(groups)}:{pname}", params))
        return groups
