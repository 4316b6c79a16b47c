"""Gatys style transfer for many (content, style) pairs at once, each pair independent of its batch-mates.

The method (Gatys, Ecker & Bethge, "A Neural Algorithm of Artistic Style"): pass
three images through a frozen VGG, match the content image's activations at
relu4_2 and the style image's Gram matrices at relu1_1 .. relu5_1, and optimise
the *image* (not the network), from white noise, to minimise

    alpha * content_loss + beta * style_loss (+ tv_weight * tv_loss).

The paper's choices are the defaults: L_content = 1/2 sum (F - P)^2 at relu4_2,
L_style = sum_l 1/5 * E_l with E_l = 1/(4 N_l^2 M_l^2) sum (G - A)^2 (``loss="gatys"``),
average pooling, noise init, and a VGG normalised so that every filter's mean
activation over images and positions is 1 (``mean_activation_scales``): only then
do alpha/beta mean what the paper's ratios (1e-3, 1e-4) mean. The PyTorch
tutorial's normalisation (MSE, Grams / CHW, equal layer weights) is ``loss="tutorial"``.

Batching without coupling. Pairs share a batch only to fill the GPU; a pair's
result must not depend on which pairs sit next to it. So:
  - every loss is per sample, shape (B,), and gradients come from their sum
    (the VGG has no batch statistics, so d(sum)/d(x_i) = d(loss_i)/d(x_i));
  - Grams use ``bmm`` over (B, C, HW), never a (B*C, HW) view that mixes samples;
  - Adam is elementwise, hence per pair;
  - torch.optim.LBFGS is *not*: one history, one step length, one line search
    for the whole tensor. ``batched_lbfgs`` (optimisers.py) keeps a history, a direction,
    a step length and an Armijo line search per pair, vectorised over B;
    ``lbfgs_one_pass`` does the same at one evaluation of the batch per iteration
    (each pair's accept/backtrack decision a mask, or no line search at all);
  - noise init draws each pair's noise from its own generator (cfg.seed and a
    per-pair key), so it does not depend on the pair's position.
The kernels are another matter: float32 convolutions (oneDNN, cuDNN) and batched
matmuls (MKL's, in the Grams' backward pass even with oneDNN off) pick their
blocking by batch size, so a pair's gradients differ with its batch at rounding
level (on CPU ~2e-7 of their largest entry with oneDNN off, ~4e-6 with it on);
like any perturbation of a non-convex optimisation that grows over the steps,
most with Adam, whose steps are normalised pixel by pixel (the tests in
tests/unit/worker/ml/test_style.py measure how much). Results are then equally
good, not bitwise equal.

Parametrisation: pixel space, the image itself in [0, 1], kept there by
projection (clamp after every step). L-BFGS treats it as a box-constrained
problem: pixels at a bound that the search direction pushes further out are
frozen for that step, and the Armijo test uses the projected step.

Precision: on CUDA the VGG convolutions run under bf16 autocast; Grams and
losses are always fp32. The final losses reported are recomputed in fp32.

One module per concern:
  losses.py        the per-sample content, style and total-variation losses, and the layers they read;
  vgg.py           the frozen VGG, its paper layer names, its weight files and the mean-activation normalisation;
  optimisers.py    per-pair L-BFGS (``batched_lbfgs``, ``lbfgs_one_pass``) and projected Adam;
  transfer.py      ``stylize_batch``: the pairs' targets, weights (a dose or a raw beta) and the optimisation;
  device_batch.py  how many pairs fit on a device;
  images.py        PIL images in and out.
"""

# The public names, so callers keep importing ``from worker.ml.style import ...`` whichever module owns them.
from worker.ml.style.device_batch import device_batch_for
from worker.ml.style.images import from_pil, resize_long_side, to_pil
from worker.ml.style.losses import CONTENT_LAYER, STYLE_LAYERS, content_loss, gram_matrix, style_loss, tv_loss
from worker.ml.style.optimisers import STOP_REASONS, Objective, Stops, adam, batched_lbfgs, lbfgs_one_pass
from worker.ml.style.transfer import StyleResult, initial_image, stylize_batch
from worker.ml.style.vgg import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_GAIN,
    VGGFeatures,
    build_vgg,
    layer_indices,
    mean_activation_scales,
    vgg_channels,
)

__all__ = [
    "CONTENT_LAYER",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_GAIN",
    "STOP_REASONS",
    "STYLE_LAYERS",
    "Objective",
    "StyleResult",
    "Stops",
    "VGGFeatures",
    "adam",
    "batched_lbfgs",
    "build_vgg",
    "content_loss",
    "device_batch_for",
    "from_pil",
    "gram_matrix",
    "initial_image",
    "layer_indices",
    "lbfgs_one_pass",
    "mean_activation_scales",
    "resize_long_side",
    "stylize_batch",
    "style_loss",
    "to_pil",
    "tv_loss",
    "vgg_channels",
]
