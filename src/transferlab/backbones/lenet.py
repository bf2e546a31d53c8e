"""LeNet-5-style digits network (LeCun et al. 1998), the classic from-scratch backbone of digits DA.

The feature extractor of the DANN (Ganin et al. 2016) and CDAN (Long et al. 2018) digit experiments
as in tllib's `tllib/vision/models/digits.py` `LeNet`, without its 800 -> 500 fully connected layer
(that belongs to the head / bottleneck): conv 1->20 5x5, max-pool 2, ReLU, conv 20->50 5x5,
Dropout2d, max-pool 2, ReLU, flatten -> 50 x 4 x 4 = 800 features for a 28x28 gray image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from transferlab.backbones.base import Backbone, BackboneInfo, LayerGroup, Preprocessing
from transferlab.errors import ConfigError

MIN_SIZE = 16  # conv5 -> pool2 -> conv5 leaves a 2x2 map at 16 px; smaller inputs have no features left


class LeNet(Backbone):
    """LeNet-5-style convolutional feature extractor, randomly initialised (no pretrained weights).

    The second max-pool is adaptive (to 4x4): for the native 28x28 input it is exactly the classic
    `MaxPool2d(2)` on an 8x8 map, and other sizes (e.g. `data.image_size=32`) still give 800 features.

    Args:
        dropout: channel dropout after the second convolution (0.5 in the classic network).
        name: display name recorded in results.

    Shape:
        input `(B, 1, H, W)` with H, W >= 16 (28 native) -> output `(B, 800)`.
    """

    kind = "image"  # declared on the class: the config is checked against strategies/data before building

    def __init__(self, dropout: float = 0.5, name: str = "lenet") -> None:
        super().__init__()
        if not 0 <= dropout < 1:
            raise ConfigError(f"backbone.dropout={dropout} must be in [0, 1) (0.5 is the classic LeNet value).")
        self.conv1 = nn.Conv2d(1, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.dropout = nn.Dropout2d(dropout)
        self.pool = nn.AdaptiveMaxPool2d((4, 4))
        self.num_features = 50 * 4 * 4
        self.info = BackboneInfo(
            name=name,
            source="random-init",
            license="n/a",
            kind="image",
            extra={"pretrained": False, "reference": "tllib.vision.models.digits.LeNet"},
        )
        self.preprocessing = Preprocessing("image", mean=(0.5,), std=(0.5,), input_size=(1, 28, 28), in_chans=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 1 or min(x.shape[-2:]) < MIN_SIZE:
            raise ConfigError(
                f"LeNet takes gray images (B, 1, H, W) with H, W >= {MIN_SIZE}, got {tuple(x.shape)}. "
                "Use 1-channel data at data.image_size=28 (its preprocessing asks for 1 channel)."
            )
        x = F.relu(F.max_pool2d(self.conv1(x), 2))  # (B, 20, 12, 12) at 28 px
        x = F.relu(self.pool(self.dropout(self.conv2(x))))  # (B, 50, 4, 4)
        return x.flatten(1)  # (B, 800)

    def layer_groups(self) -> list[LayerGroup]:
        """The two convolutions, input -> output (dropout and pooling have no parameters)."""
        return [
            LayerGroup(f"{i}:{name}", [(f"{name}.{n}", p) for n, p in getattr(self, name).named_parameters()])
            for i, name in enumerate(("conv1", "conv2"))
        ]
