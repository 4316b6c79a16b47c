"""What a convolutional classifier looks at (seed 002, "Activations Visualization"):

- ``mean_activation``: the mean over channels of a conv block's output, per image, as a map at the
  block's resolution. Seed 002 shows that the first layers keep almost all of the image and the
  higher ones grow abstract and sparse; one map per block tells the same story compactly.
- ``grad_cam``: Selvaraju et al. 2017. The gradient of a class's logit with respect to a block's
  output, averaged over space, weights that output's channels; the ReLU of the weighted sum, upsampled
  to the image, is where the evidence for the class lies.

Both run on a model in eval mode and hand back maps scaled to [0, 1] per image. ``conv_blocks`` picks
the blocks a report shows for any backbone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _capture(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor):
    """Run ``model`` on ``x``; return (its output, ``layer``'s output)."""
    seen: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        seen["out"] = output

    handle = layer.register_forward_hook(hook)
    try:
        logits = model(x)
    finally:
        handle.remove()
    if "out" not in seen:
        raise ValueError(f"{type(layer).__name__} did not run in the model's forward pass")
    return logits, seen["out"]


def _unit_scale(maps: torch.Tensor) -> torch.Tensor:
    """(B, H, W) scaled to [0, 1] per image (a flat map stays 0)."""
    flat = maps.flatten(1)
    low, high = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    return ((maps - low) / (high - low).clamp(min=1e-12)).clamp(0, 1)


@torch.no_grad()
def mean_activation(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) images -> (B, h, w): ``layer``'s output averaged over its channels, scaled per image.

    What is captured is the block's output tensor, read once the forward pass has ended: for a bare ``Conv2d``
    followed by an in-place ReLU (VGG, AlexNet, the baseline CNN) the ReLU has overwritten that tensor by
    then, so the map is the post-ReLU one; ResNet's ``conv1`` gives the pre-BatchNorm map (its ``bn1`` and
    ReLU are blocks of their own); a composite block (ResNet's ``layer4``, Inception's ``Mixed_7c``) its
    own final output."""
    _, out = _capture(model.eval(), layer, x)
    return _unit_scale(out.float().mean(1))


def grad_cam(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, classes: torch.Tensor | None = None):
    """(B, 3, H, W) images -> (B, H, W) Grad-CAM maps for ``classes`` (B,) (default: the predicted class).

    The gradient is taken with ``torch.autograd.grad`` with respect to the captured output alone, so the
    model's parameters never receive a ``.grad`` (a cached, shared model is left exactly as it was). The
    captured output is the one ``mean_activation`` describes (post-ReLU for a bare conv with an in-place
    ReLU after it)."""
    model = model.eval()
    # The input asks for a gradient so the layer's output has one even when every weight is frozen.
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits, out = _capture(model, layer, x)
        classes = logits.argmax(1) if classes is None else classes.to(logits.device)
        (grad,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), out)
    weights = grad.float().mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    cam = F.relu((weights * out.detach().float()).sum(1, keepdim=True))  # (B, 1, h, w)
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return _unit_scale(cam)


def conv_blocks(backbone: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """(name, block) of the first and the last block of ``backbone`` that holds a convolution: an early map
    that still looks like the picture, and the last before pooling (where Grad-CAM is read, as in the paper).

    Blocks are the backbone's children, looked for inside a lone container (``features`` of VGG, AlexNet and
    the baseline CNN, whose children are single layers): ResNet's ``conv1`` and ``layer4``, Inception's
    ``Conv2d_1a_3x3`` and ``Mixed_7c``, VGG's first and last conv. None for a backbone without convolutions
    (``logistic``); one block when it has only one.

    A block's map is its output (``mean_activation`` says exactly which tensor): for a bare ``Conv2d`` followed
    by an in-place ReLU (VGG, AlexNet, the baseline CNN) the post-ReLU map, for ResNet's ``conv1`` the
    pre-BatchNorm one.
    """
    prefix, children = "", list(backbone.named_children())
    while len(children) == 1 and not isinstance(children[0][1], torch.nn.Conv2d):
        prefix += f"{children[0][0]}."
        children = list(children[0][1].named_children())
    blocks = [(prefix + n, m) for n, m in children if any(isinstance(x, torch.nn.Conv2d) for x in m.modules())]
    return blocks[:1] + blocks[1:][-1:]
