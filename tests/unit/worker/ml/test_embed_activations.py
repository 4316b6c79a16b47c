"""The pure pieces of the run report: a t-SNE map under a seed, and activation maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worker.ml.activations import grad_cam, mean_activation
from worker.ml.embed import tsne_map


def clusters(n_per: int = 15, noise_seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Three well separated clusters in 16-D (the same centres whatever ``noise_seed``)."""
    centres = torch.randn(3, 16, generator=torch.Generator().manual_seed(0)) * 10
    labels = np.repeat(np.arange(3), n_per)
    return centres[labels] + torch.randn(len(labels), 16, generator=torch.Generator().manual_seed(noise_seed)), labels


def test_tsne_is_a_function_of_features_and_seed_and_keeps_clusters_apart():
    x, labels = clusters()
    first, again = tsne_map(x, seed=0), tsne_map(x, seed=0)
    assert first.points.shape == (45, 2) and np.array_equal(first.points, again.points)
    assert not np.array_equal(first.points, tsne_map(x, seed=1).points)
    centres = np.stack([first.points[labels == k].mean(0) for k in range(3)])
    spread = max(np.linalg.norm(first.points[labels == k] - centres[k], axis=1).mean() for k in range(3))
    gaps = [np.linalg.norm(centres[i] - centres[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(gaps) > 2 * spread  # well separated clusters stay separated in the map


def test_new_points_are_placed_near_their_kind_without_moving_the_map():
    x, labels = clusters()
    fitted = tsne_map(x, seed=0)
    before = fitted.points.copy()
    extra, extra_labels = clusters(n_per=2, noise_seed=5)
    placed = fitted.place(extra[:, :])
    assert placed.shape == (6, 2) and np.array_equal(fitted.points, before)
    for point, label in zip(placed, extra_labels):
        nearest = labels[np.argmin(np.linalg.norm(fitted.points - point, axis=1))]
        assert nearest == label
    assert fitted.place(torch.zeros(0, 16)).shape == (0, 2)


def test_tsne_refuses_what_it_cannot_map():
    with pytest.raises(ValueError, match="at least 4"):
        tsne_map(torch.randn(3, 8))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        tsne_map(torch.randn(10, 2, 2))


def small_cnn() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    block = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
    model = torch.nn.Sequential(block, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))
    return model, block


def test_mean_activation_maps_are_per_image_at_the_blocks_resolution():
    model, block = small_cnn()
    x = torch.rand(2, 3, 16, 12)
    maps = mean_activation(model, block, x)
    assert maps.shape == (2, 16, 12) and float(maps.min()) >= 0 and float(maps.max()) <= 1
    # One image does not see the other (float32 conv kernels may sum in another order for another batch size).
    assert torch.allclose(maps[1], mean_activation(model, block, x[1:])[0], atol=1e-5)


def test_grad_cam_is_deterministic_shaped_like_the_image_and_follows_the_class():
    model, block = small_cnn()
    x = torch.rand(3, 3, 16, 16)
    cam = grad_cam(model, block, x)
    assert cam.shape == (3, 16, 16) and torch.equal(cam, grad_cam(model, block, x))
    assert float(cam.min()) >= 0 and float(cam.max()) <= 1
    other = grad_cam(model, block, x, classes=torch.tensor([0, 1, 2]))
    assert other.shape == cam.shape
    assert all(p.grad is None for p in model.parameters())  # the model is left as it was found


def test_grad_cam_after_an_in_place_relu_leaves_no_grad_on_any_parameter_and_batches_like_single_images():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)  # a bare conv followed by an in-place ReLU, as in VGG's features
    features = torch.nn.Sequential(conv, torch.nn.ReLU(inplace=True), torch.nn.Conv2d(8, 8, 3, padding=1))
    model = torch.nn.Sequential(features, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))
    x = torch.rand(3, 3, 16, 16)
    cam = grad_cam(model, conv, x, classes=torch.tensor([0, 1, 2]))
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    for i in range(3):
        one = grad_cam(model, conv, x[i : i + 1], classes=torch.tensor([i]))
        assert torch.allclose(cam[i], one[0], atol=1e-5)
    # What is read for the conv is its output after the in-place ReLU overwrote it: the post-ReLU map.
    with torch.no_grad():
        post = torch.relu(conv(x)).mean(1)
    flat = post.flatten(1)
    low, high = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    assert torch.allclose(mean_activation(model, conv, x), (post - low) / (high - low), atol=1e-5)
