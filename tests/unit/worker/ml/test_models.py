"""Backbones, heads, training modes and weight loading, on tiny inputs with random init (CPU)."""

import pytest
import torch
import torch.nn.functional as F
import torchvision.models as tvm

from core.config import ARCHS, HEADS, IMAGENET_ARCHS, MIN_IMAGE_SIZE, ModelConfig, default_image_size
from core.errors import ConfigError
from worker.ml.models import (
    AUX_LOSS_WEIGHT,
    BASELINE_CNN_HEAD,
    Classifier,
    InceptionAuxHead,
    build_head,
    build_model,
    build_optimizer,
    feature_shape,
    set_mode,
    trainable_parameters,
)
from worker.ml.weights import imagenet_file, load_backbone_weights, load_safetensors, save_safetensors

# The smallest test input for each arch: 32 px where the arch allows it.
SIZE = {arch: max(32, MIN_IMAGE_SIZE[arch]) for arch in ARCHS} | {"alexnet": 64, "inception_v3": 75}
VALID = [(a, h) for a in ARCHS for h in HEADS if a != "logistic" or h == "linear"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def inception():
    """One Inception V3 for the tests that need it: building it is the slow part."""
    torch.manual_seed(0)
    return build_model(ModelConfig("inception_v3", 4, dense=(8,), image_size=75))


@pytest.mark.parametrize("arch,head", VALID)
def test_every_valid_combination_gives_logits(arch, head):
    size = SIZE[arch]
    cfg = ModelConfig(arch, 3, head=head, dense=(8,) if head != "gap" else (), image_size=size)
    model = build_model(cfg).eval()
    x = torch.randn(2, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        feats = model.features(x)
        assert tuple(feats.shape[1:]) == feature_shape(cfg)  # the analytic shape is the real one
        assert model(x).shape == (2, 3)
    # The head trains on a batch of 2 (dense BatchNorm included); backbones' backward passes are slow on a CPU
    # and the same for every head, so they are left to the training tests.
    model.head.train()
    F.cross_entropy(model.head(feats), torch.tensor([0, 2])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.head.parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_every_backbone_fine_tunes_end_to_end(arch):
    size = SIZE[arch]
    model = build_model(ModelConfig(arch, 3, head="linear" if arch == "logistic" else "gap", image_size=size))
    set_mode(model, "fine-tune")
    model.train()
    out = model(torch.randn(2, 3, size, size))
    y = torch.tensor([1, 2])
    if arch == "inception_v3":
        logits, aux = out
        loss = F.cross_entropy(logits, y) + AUX_LOSS_WEIGHT * F.cross_entropy(aux, y)
    else:
        loss = F.cross_entropy(out, y)
    loss.backward()
    assert all(p.grad is not None for p in model.backbone.parameters())  # the whole backbone learns
    before = next(model.backbone.parameters()).detach().clone()
    build_optimizer("adam", trainable_parameters(model), 1e-3).step()
    assert not torch.equal(before, next(model.backbone.parameters()))


@pytest.mark.parametrize("arch", IMAGENET_ARCHS)
def test_backbone_keys_are_torchvisions(arch):
    """So ImageNet files load without renaming: every backbone (and Inception aux conv) tensor has
    torchvision's name and shape (checked against torchvision's model built on the meta device)."""
    with torch.device("meta"):
        tv = tvm.get_model(arch, weights=None, **({"init_weights": False} if arch == "inception_v3" else {}))
    tv_shapes = {k: v.shape for k, v in tv.state_dict().items()}
    model = Classifier(ModelConfig(arch, 3, image_size=SIZE[arch]))
    assert {k: v.shape for k, v in model.backbone.state_dict().items()}.items() <= tv_shapes.items()
    if model.aux_head is not None:
        convs = {f"AuxLogits.{k}": v.shape for k, v in model.aux_head.state_dict().items() if not k.startswith("fc.")}
        assert convs.items() <= tv_shapes.items()


@pytest.mark.parametrize(
    "arch,size,shape",
    [
        ("vgg16", 224, (512, 7, 7)),
        ("resnet18", 224, (512, 7, 7)),
        ("resnet50", 224, (2048, 7, 7)),
        ("alexnet", 224, (256, 6, 6)),
        ("inception_v3", 299, (2048, 8, 8)),
        ("baseline-cnn", 224, (128, 14, 14)),
        ("logistic", 32, (3 * 32 * 32,)),
    ],
)
def test_feature_shape_at_design_sizes(arch, size, shape):
    assert feature_shape(ModelConfig(arch, 2, head="linear", image_size=size)) == shape


def test_default_image_size_and_config_default():
    assert default_image_size("inception_v3") == 299 and default_image_size("resnet50") == 224
    assert ModelConfig("inception_v3", 3).image_size == 299


@pytest.mark.parametrize(
    "cfg,match",
    [
        (ModelConfig("logistic", 3, head="spp", image_size=32), "has none: use head 'linear'"),
        (ModelConfig("logistic", 3, head="gap", image_size=32), "has none"),
        (ModelConfig("resnet9", 3), "unknown arch 'resnet9'"),
        (ModelConfig("resnet18", 3, head="max"), "unknown head 'max'"),
        (ModelConfig("resnet18", 3, dense=(0,)), "positive integers"),
        (ModelConfig("resnet18", 3, dense="0"), "positive integers"),
        (ModelConfig("resnet18", 3, dense=(64, -1)), "positive integers"),
        (ModelConfig("resnet18", 3, dropout=1.0), r"\[0, 1\)"),
        (ModelConfig("resnet18", 3, dropout=-0.1), r"\[0, 1\)"),
        (ModelConfig("resnet18", 1), "at least 2 classes"),
        (ModelConfig("inception_v3", 3, image_size=64), "at least 75 px"),
        (ModelConfig("alexnet", 3, image_size=32), "at least 63 px"),
        (ModelConfig("baseline-cnn", 3, weights="imagenet"), "no ImageNet weights"),
    ],
)
def test_bad_configurations(cfg, match):
    with pytest.raises(ConfigError, match=match):
        cfg.validate()
    with pytest.raises(ConfigError, match=match):
        build_model(cfg)


def test_baseline_cnn_classic_head():
    model = build_model(ModelConfig("baseline-cnn", 2, image_size=64, **BASELINE_CNN_HEAD))
    convs = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 128]
    assert model.head.dense[0].linear.out_features == 512 and model.head.dense[0].dropout.p == 0.5
    assert model.head.dense[0].linear.in_features == 128 * 4 * 4


def test_heads_pool_as_documented():
    maps = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    spp = build_head(ModelConfig("resnet18", 5, head="spp"), (3, 4, 4))
    assert spp.classifier.in_features == 3 * 14
    assert torch.equal(spp.pool(maps)[:, :3], maps.amax(dim=(2, 3)))  # the 1x1 level is a global max
    gap = build_head(ModelConfig("resnet18", 5, head="gap"), (3, 4, 4))
    assert torch.allclose(gap.pool(maps), maps.mean(dim=(2, 3)))
    lin = build_head(ModelConfig("resnet18", 5, head="linear", dense=(7, 6)), (3, 4, 4))
    assert lin.classifier.in_features == 6 and lin.dense[0].linear.in_features == 48
    with pytest.raises(ConfigError, match="spatial feature maps"):
        build_head(ModelConfig("logistic", 5, head="gap"), (48,))


def test_inception_aux_logits_only_while_training_a_trainable_backbone(inception):
    inception.train()
    logits, aux = inception(torch.randn(2, 3, 75, 75))
    assert logits.shape == aux.shape == (2, 4) and AUX_LOSS_WEIGHT == 0.4
    aux_params = list(inception.aux_head.parameters())
    F.cross_entropy(aux, torch.tensor([0, 1])).backward(inputs=aux_params)  # the aux loss trains the aux head
    assert all(p.grad is not None for p in aux_params)
    inception.eval()
    assert inception(torch.randn(2, 3, 75, 75)).shape == (2, 4)
    set_mode(inception, "feature-extract")
    inception.train()
    assert inception(torch.randn(2, 3, 75, 75)).shape == (2, 4)  # frozen: the aux loss could train nothing useful
    set_mode(inception, "fine-tune")
    assert isinstance(inception.train()(torch.randn(2, 3, 75, 75)), tuple)


def test_inception_aux_head_is_torchvisions_at_299():
    ref = tvm.inception.InceptionAux(768, 3).eval()
    head = InceptionAuxHead(ref, 3).eval()
    head.fc.load_state_dict(ref.fc.state_dict())
    mid = torch.randn(1, 768, 17, 17)  # Mixed_6e at 299 px
    with torch.no_grad():
        assert torch.allclose(head(mid), ref(mid), atol=1e-5)
        assert head(torch.randn(2, 768, 3, 3)).shape == (2, 3)  # and it still works at 75 px


def _trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_feature_extract_freezes_exactly_the_backbone_and_its_batchnorm():
    model = build_model(ModelConfig("resnet18", 3, dense=(8,), image_size=32))
    set_mode(model, "feature-extract")
    model.train()
    assert _trainable_names(model) == {f"head.{n}" for n, _ in model.head.named_parameters()}
    assert {id(p) for p in trainable_parameters(model)} == {id(p) for p in model.head.parameters()}
    assert not any(m.training for m in model.backbone.modules()) and model.head.training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = build_optimizer("sgd", trainable_parameters(model), lr=0.1)
    F.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0])).backward()
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    # the head's weights and its BatchNorm statistics moved; nothing of the backbone did, running stats included
    assert changed and all(k.startswith("head.") for k in changed)
    assert "head.classifier.weight" in changed and "head.dense.0.bn.running_mean" in changed

    set_mode(model, "fine-tune")
    assert _trainable_names(model) == {n for n, _ in model.named_parameters()}
    assert all(m.training for m in model.backbone.modules())


def test_feature_extract_keeps_inception_aux_frozen(inception):
    set_mode(inception, "feature-extract")
    assert _trainable_names(inception) == {f"head.{n}" for n, _ in inception.head.named_parameters()}
    inception.train()
    assert not inception.aux_head.training and not inception.backbone.training
    set_mode(inception, "fine-tune")


@pytest.mark.parametrize("mode,match", [("staged", "schedule of phases"), ("freeze", "unknown mode 'freeze'")])
def test_set_mode_rejects(mode, match):
    with pytest.raises(ConfigError, match=match):
        set_mode(build_model(ModelConfig("baseline-cnn", 2, image_size=32)), mode)


def test_build_optimizer():
    params = [torch.nn.Parameter(torch.zeros(3))]
    sgd = build_optimizer("sgd", params, 0.1, weight_decay=1e-4)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    assert isinstance(build_optimizer("adam", params, 1e-4), torch.optim.Adam)
    assert build_optimizer("rmsprop", params, 2e-5).defaults["alpha"] == 0.9
    with pytest.raises(ConfigError, match="unknown optimizer 'lbfgs'"):
        build_optimizer("lbfgs", params, 0.1)
    with pytest.raises(ConfigError, match="positive"):
        build_optimizer("adam", params, 0.0)


def test_head_trained_alone_on_cached_features_loads_into_the_classifier():
    cfg = ModelConfig("resnet18", 5, head="spp", dense=(32, 16), image_size=64)
    shape = feature_shape(cfg)
    assert shape == (512, 2, 2)
    head = build_head(cfg, shape)
    head.train()
    F.cross_entropy(head(torch.randn(3, *shape)), torch.tensor([0, 1, 4])).backward()
    model = build_model(cfg)
    model.head.load_state_dict(head.state_dict())  # a grid cell's head, then fine-tuned with its backbone
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), head.eval()(model.backbone(x)))


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_weights_round_trip_through_safetensors_and_pth(tmp_path):
    src = build_model(ModelConfig("resnet18", 3, image_size=32))
    path = tmp_path / "run" / "best.safetensors"
    save_safetensors(src.state_dict(), path, {"epoch": "3"})  # our checkpoint: backbone.*, head.* keys
    state, meta = load_safetensors(path)
    assert meta == {"epoch": "3"} and _same(state, src.state_dict())

    # The config names the weights for the record; the file comes from the job (worker.weights_store).
    dst = build_model(ModelConfig("resnet18", 7, image_size=32, weights="mine"), path)  # other classes: head not taken
    assert _same(dst.backbone.state_dict(), src.backbone.state_dict())
    head_before = {k: v.clone() for k, v in dst.head.state_dict().items()}

    # A torchvision-layout .pth (its 1000-class fc is ignored) loads the same way, with weights_only.
    tv = tvm.resnet18(weights=None)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    load_backbone_weights(dst, "resnet18", tmp_path / "tv.pth")
    assert all(torch.equal(v, tv.state_dict()[k]) for k, v in dst.backbone.state_dict().items())
    assert _same(dst.head.state_dict(), head_before)


def test_weights_that_do_not_fit(tmp_path):
    r18 = build_model(ModelConfig("resnet18", 3, image_size=32))
    save_safetensors(r18.state_dict(), tmp_path / "r18.safetensors")
    with pytest.raises(ConfigError, match="do not fit the resnet50 backbone"):
        build_model(ModelConfig("resnet50", 3, image_size=32, weights="x"), tmp_path / "r18.safetensors")
    with pytest.raises(ConfigError, match="not found"):
        build_model(ModelConfig("resnet18", 3, image_size=32, weights="x"), tmp_path / "nope.safetensors")
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"must be \.safetensors, \.pt or \.pth"):
        build_model(ModelConfig("resnet18", 3, image_size=32, weights="x"), tmp_path / "w.bin")
    torch.save({"net": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pt")  # needs code to unpickle: refused
    with pytest.raises(ConfigError, match="weights_only"):
        build_model(ModelConfig("resnet18", 3, image_size=32, weights="x"), tmp_path / "pickled.pt")


def test_named_weights_without_a_file_are_refused_not_trained_from_random():
    with pytest.raises(ConfigError, match="names weights 'imagenet' but no weight file was given"):
        build_model(ModelConfig("resnet18", 3, image_size=32, weights="imagenet"))
    build_model(ModelConfig("resnet18", 3, image_size=32, weights="random"))  # explicit random init: fine


def test_imagenet_file_is_where_torchvision_caches_it(tmp_path):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        assert imagenet_file("alexnet") == tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
        assert imagenet_file("vgg19").name == "vgg19-dcbb9e9d.pth"  # the style VGG too
    finally:
        torch.hub.set_dir(old)
    with pytest.raises(ConfigError, match="no ImageNet weights"):
        imagenet_file("baseline-cnn")
