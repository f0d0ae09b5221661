"""Backbone registry, CAM network outputs, frozen layers, ImageNet weight loading, checkpoints."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from pixsup.checkpoints import CAM_NET_FORMAT, CheckpointError, load_cam_net, save_cam_net
from pixsup.models import CamNet, available_backbones, create_backbone, create_model, register_backbone
from pixsup.models.resnet50 import RESNET50_FILE
from pixsup.models.segnet import SegNet
from pixsup.models.weights import WeightsNotFoundError

pytestmark = pytest.mark.usefixtures("one_thread")

# Per backbone: an input whose sides are not multiples of the output stride (resnet38 is
# heavy, so it gets batch 1 and a small image).
INPUT_SHAPE = {"tiny": (2, 3, 36, 44), "resnet50": (2, 3, 36, 44), "resnet38": (1, 3, 25, 32)}
OUTPUT_STRIDE = {"tiny": 8, "resnet50": 16, "resnet38": 8, "resnet101": 8}


@pytest.fixture(scope="module")
def model_of() -> Callable[[str], CamNet]:
    """Build each backbone's CAM network once per module (resnet38 alone takes seconds)."""
    cache: dict[str, CamNet] = {}

    def get(name: str) -> CamNet:
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = create_model(name, num_classes=20, proj_dim=16, pretrained="none")
        return cache[name]

    return get


def test_builtin_backbones_are_registered() -> None:
    assert set(available_backbones()) >= {"tiny", "resnet50", "resnet38"}


@pytest.mark.parametrize("name", available_backbones())
def test_forward_backward_shapes(name: str, model_of: Callable[[str], CamNet]) -> None:
    model = model_of(name)
    model.train()
    shape = INPUT_SHAPE.get(name, (1, 3, 32, 32))
    batch, _, height, width = shape
    out = model(torch.randn(*shape))
    stride = model.output_stride
    grid = (math.ceil(height / stride), math.ceil(width / stride))
    assert set(out) == {"cam", "logits", "proj"}
    assert out["cam"].shape == (batch, 20, *grid)
    assert out["logits"].shape == (batch, 20)
    assert out["proj"].shape == (batch, 16, *grid)
    # Projected features are unit length per pixel; logits are the spatial mean of the CAM.
    torch.testing.assert_close(out["proj"].norm(dim=1), torch.ones(batch, *grid), atol=1e-5, rtol=0)
    torch.testing.assert_close(out["logits"], out["cam"].mean(dim=(2, 3)))
    model.zero_grad()
    (out["logits"].sum() + out["proj"].sum()).backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
    assert "proj" not in model(torch.randn(*shape), with_proj=False)


@pytest.mark.parametrize("name", sorted(OUTPUT_STRIDE))
def test_output_stride(name: str, model_of: Callable[[str], CamNet]) -> None:
    assert model_of(name).output_stride == OUTPUT_STRIDE[name]


def _batchnorms(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def test_resnet50_frozen_parts_and_bn_eval(model_of: Callable[[str], CamNet]) -> None:
    model = model_of("resnet50")
    backbone = model.backbone
    assert not any(p.requires_grad for p in backbone.stem.parameters())
    # IRN's resnet50_cam: stage1 (stem, layer1) and stage2 (layer2, detached) get no gradient.
    for stage in (backbone.stem, backbone.layer1, backbone.layer2):
        assert not any(p.requires_grad for p in stage.parameters())
    bns = _batchnorms(backbone)
    assert bns and not any(p.requires_grad for bn in bns for p in bn.parameters())
    # The rest of the trunk trains.
    assert backbone.layer3[0].conv1.weight.requires_grad and backbone.layer4[0].conv2.weight.requires_grad
    model.train()
    assert model.training and backbone.layer4.training
    assert not any(bn.training for bn in bns)
    # Frozen statistics: a training-mode forward leaves the running mean alone.
    before = backbone.layer3[0].bn1.running_mean.clone()
    model(torch.randn(2, 3, 32, 32), with_proj=False)
    assert torch.equal(before, backbone.layer3[0].bn1.running_mean)


def test_resnet38_width_stride_and_frozen_parts(model_of: Callable[[str], CamNet]) -> None:
    model = model_of("resnet38")
    backbone = model.backbone
    assert backbone.out_channels == 4096 and backbone.output_stride == 8
    model.eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 32, 32))
    assert features.shape == (1, 4096, 4, 4)
    for module in (backbone.conv1a, backbone.b2, backbone.b2_1, backbone.b2_2):
        assert not any(p.requires_grad for p in module.parameters())
    assert backbone.b3.conv_branch2a.weight.requires_grad
    model.train()
    assert not any(bn.training for bn in _batchnorms(backbone))
    assert backbone.b7.dropout_2b1.training  # dropout still follows the mode


def test_unknown_backbone_lists_registered_ones() -> None:
    with pytest.raises(ValueError) as info:
        create_model("resnet152", pretrained="none")
    message = str(info.value)
    assert "resnet152" in message
    for name in available_backbones():
        assert name in message


def test_registering_a_name_twice_is_an_error() -> None:
    available_backbones()  # makes sure the built-in names are registered
    with pytest.raises(ValueError, match="tiny"):
        register_backbone("tiny")(lambda pretrained="auto": nn.Identity())


# ----------------------------------------------------------------- weights


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch cache; the hub directory is restored after the test."""
    home = tmp_path / "torch_home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # restored on teardown
    torch.hub.set_dir(str(home / "hub"))
    return home / "hub" / "checkpoints"


def test_missing_resnet50_weights_name_file_and_directory(empty_torch_home: Path) -> None:
    with pytest.raises(WeightsNotFoundError) as info:
        create_model("resnet50")
    message = str(info.value)
    assert RESNET50_FILE == "resnet50-0676ba61.pth"
    assert RESNET50_FILE in message
    assert str(empty_torch_home) in message
    assert isinstance(info.value, FileNotFoundError)


def test_missing_resnet38_weights_name_the_file(empty_torch_home: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="resnet38d_ilsvrc.pth"):
        create_model("resnet38")


def test_tiny_auto_without_the_pretrained_file_names_the_file_and_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsNotFoundError) as info:
        create_model("tiny")
    message = str(info.value)
    assert "results/pretrained/tiny_parts.pth" in message
    assert "pretrain_backbone" in message


def test_tiny_auto_loads_the_file_pretrain_backbone_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The layout pixsup.pretraining saves: the backbone's own state dict, under the project's results/pretrained/.
    torch.manual_seed(7)
    state = create_backbone("tiny", pretrained="none").state_dict()
    state["layers.0.1.running_mean"].fill_(0.25)  # a value random init never gives
    (tmp_path / "results" / "pretrained").mkdir(parents=True)
    torch.save(state, tmp_path / "results" / "pretrained" / "tiny_parts.pth")
    monkeypatch.chdir(tmp_path)
    loaded = create_model("tiny").backbone.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())


def test_weights_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(WeightsNotFoundError) as info:
        create_model("resnet50", pretrained=str(missing))
    assert str(missing) in str(info.value)


@pytest.fixture(scope="module")
def resnet50_state(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A weights file as torchvision writes it (fresh resnet50 state dict, classifier included)."""
    torch.manual_seed(123)
    state = torchvision.models.resnet50(weights=None).state_dict()
    state["bn1.running_mean"].fill_(0.5)  # a buffer value random init never gives
    path = tmp_path_factory.mktemp("weights") / RESNET50_FILE
    torch.save(state, path)
    return path, state


def _assert_loaded(backbone: nn.Module, state: dict[str, torch.Tensor]) -> None:
    assert torch.equal(backbone.stem[0].weight, state["conv1.weight"])
    assert torch.equal(backbone.stem[1].running_mean, state["bn1.running_mean"])
    assert torch.equal(backbone.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])


def test_torchvision_resnet50_weights_file_loads_from_path(
    resnet50_state: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    # The file carries torchvision's classifier (fc.*), which the backbone drops.
    path, state = resnet50_state
    _assert_loaded(create_model("resnet50", pretrained=str(path)).backbone, state)


def test_torchvision_resnet50_weights_file_loads_from_torch_cache(
    resnet50_state: tuple[Path, dict[str, torch.Tensor]], empty_torch_home: Path
) -> None:
    path, state = resnet50_state
    empty_torch_home.mkdir(parents=True)
    (empty_torch_home / RESNET50_FILE).symlink_to(path)
    _assert_loaded(create_model("resnet50").backbone, state)


def test_weights_file_with_wrong_keys_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "head.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError) as info:
        create_model("resnet50", pretrained=str(path))
    assert str(path) in str(info.value)
    assert not isinstance(info.value, WeightsNotFoundError)


def test_unreadable_weights_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"this is not a torch file")
    with pytest.raises(ValueError, match="garbage.pth"):
        create_model("tiny", pretrained=str(path))


# -------------------------------------------------------------- checkpoints


def _trained_looking_tiny() -> CamNet:
    """A tiny CAM net with non-default sizes and BatchNorm statistics that differ from init."""
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=5, proj_dim=12, pretrained="none")
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    return model.eval()


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model = _trained_looking_tiny()
    path = tmp_path / "model.pt"
    save_cam_net(path, model, "tiny", proj_dim=12, extra={"variant": "full"})
    loaded, state = load_cam_net(path)
    loaded.eval()
    assert state["format"] == CAM_NET_FORMAT and state["variant"] == "full"
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert b["cam"].shape[1] == 5 and b["proj"].shape[1] == 12
    for key in ("cam", "logits", "proj"):
        assert torch.equal(a[key], b[key]), key


def test_truncated_checkpoint_raises_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    save_cam_net(path, _trained_looking_tiny(), "tiny", proj_dim=12, extra={})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_cam_net(path)
    assert str(path) in str(info.value)


def test_corrupt_checkpoint_raises_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(CheckpointError, match="noise.pt"):
        load_cam_net(path)


def test_checkpoint_without_needed_keys(tmp_path: Path) -> None:
    path = tmp_path / "partial.pt"
    torch.save({"format": CAM_NET_FORMAT, "backbone": "tiny"}, path)
    with pytest.raises(CheckpointError) as info:
        load_cam_net(path)
    assert str(path) in str(info.value) and "model" in str(info.value)


def test_checkpoint_missing_file_and_foreign_format(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="absent.pt"):
        load_cam_net(tmp_path / "absent.pt")
    path = tmp_path / "other.pt"
    torch.save({"format": "something/9", "backbone": "tiny", "model": {}, "proj_dim": 4, "num_classes": 2}, path)
    with pytest.raises(CheckpointError, match="format"):
        load_cam_net(path)


def test_checkpoint_weights_that_do_not_fit(tmp_path: Path) -> None:
    model = _trained_looking_tiny()
    path = tmp_path / "model.pt"
    save_cam_net(path, model, "tiny", proj_dim=12, extra={})
    state = torch.load(path, weights_only=False)
    state["proj_dim"] = 7  # the stored weights no longer fit the rebuilt head
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_cam_net(path)


@pytest.mark.parametrize("name", available_backbones())
def test_stages_feed_the_boundary_branch(name: str) -> None:
    backbone = create_backbone(name, pretrained="none").eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        stages = backbone.forward_stages(x)
        final = backbone(x)
    assert [s.shape[1] for s in stages] == list(backbone.stage_channels)
    torch.testing.assert_close(stages[-1], final)


def test_deeplab_v2_head_on_resnet101_keeps_the_input_size() -> None:
    backbone = create_backbone("resnet101", pretrained="none")
    assert backbone.output_stride == 8
    model = SegNet(backbone, rates=(6, 12, 18, 24)).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 40, 56))
    assert logits.shape == (1, 21, 40, 56)
    backbone_params, head_params = model.param_groups()
    assert len(head_params) == 8 and backbone_params


def test_weights_digest_follows_the_weights_not_the_file(tmp_path: Path) -> None:
    import hashlib

    from pixsup.checkpoints import weights_sha256

    torch.manual_seed(0)
    model = create_model("tiny", proj_dim=8, pretrained="none")
    for name in ("a.pt", "b.pt"):
        save_cam_net(tmp_path / name, model, "tiny", 8, {})
    files = [hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() for name in ("a.pt", "b.pt")]
    assert files[0] != files[1]  # torch.save gives every file its own bytes
    a, b = load_cam_net(tmp_path / "a.pt")[0], load_cam_net(tmp_path / "b.pt")[0]
    assert weights_sha256(a) == weights_sha256(b) == weights_sha256(model)
    with torch.no_grad():
        b.cam_head.weight[0, 0] += 1e-6
    assert weights_sha256(b) != weights_sha256(a)


# ------------------------------------------------- IRN's ResNet-50 (strides 2, 2, 2, 1)


def _irn_reference_resnet50(state: dict[str, torch.Tensor]) -> nn.Module:
    """IRN's ``resnet50(strides=(2, 2, 2, 1))`` built independently: torchvision's plain ResNet-50 (no
    ``replace_stride_with_dilation``) whose layer4 first block and shortcut get stride 1 by hand."""
    net = torchvision.models.resnet50(weights=None)
    net.load_state_dict(state)
    net.layer4[0].conv2.stride = (1, 1)
    net.layer4[0].downsample[0].stride = (1, 1)
    return net.eval()


def _trunk(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


def test_resnet50_is_irns_stride_2221_network(resnet50_state: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, state = resnet50_state
    backbone = create_backbone("resnet50", pretrained=str(path)).eval()
    reference = _irn_reference_resnet50(state)
    convs = [m for m in backbone.layer4.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(conv.dilation == (1, 1) for conv in convs)
    assert all(conv.stride == (1, 1) for conv in convs)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 72, 100)  # sides not multiples of 16
    with torch.no_grad():
        ours, theirs = backbone(x), _trunk(reference, x)
    assert ours.shape == (1, 2048, math.ceil(72 / 16), math.ceil(100 / 16)) == theirs.shape
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert backbone.output_stride == 16


def test_resnet50_cams_are_irns_make_cam(resnet50_state: tuple[Path, dict[str, torch.Tensor]]) -> None:
    """cam_maps of a ResNet-50 CAM network equals IRN's step/make_cam written out here with the same weights:
    each scale PIL-bicubic on the uint8 image (scale 1 untouched), normalised in float64, image and mirror
    through the strides (2, 2, 2, 1) trunk, relu(conv(x, classifier)), mirror added back; `cam` summed at
    ceil(H/4) x ceil(W/4), `high_res` at the next multiples of 16 then cropped; each kept class divided by
    its max + 1e-5."""
    import numpy as np
    import torch.nn.functional as F
    from PIL import Image

    from pixsup.cam.inference import cam_maps

    path, state = resnet50_state
    torch.manual_seed(0)
    model = create_model("resnet50", pretrained=str(path)).eval()
    reference = _irn_reference_resnet50(state)
    classifier = model.cam_head.weight.detach()
    height, width = 61, 83
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    scales, classes = (1.0, 0.5, 1.5), [4, 11]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    strided = (math.ceil(height / 4), math.ceil(width / 4))
    strided_up = (math.ceil(height / 16) * 16, math.ceil(width / 16) * 16)
    low = high = 0
    for scale in scales:
        size = (int(np.round(width * scale)), int(np.round(height * scale)))  # imutils.pil_rescale
        scaled = image if scale == 1.0 else np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
        x = torch.from_numpy(((scaled / 255.0 - mean) / std).astype(np.float32)).permute(2, 0, 1)[None]
        with torch.no_grad():
            cam = F.relu(F.conv2d(_trunk(reference, torch.cat([x, x.flip(-1)])), classifier))
        cam = cam[0] + cam[1].flip(-1)
        low = low + F.interpolate(cam[None], strided, mode="bilinear", align_corners=False)[0]
        high = high + F.interpolate(cam[:, None], strided_up, mode="bilinear", align_corners=False)[:, 0]
    low, high = low[classes], high[classes, :height, :width]
    low = low / (F.adaptive_max_pool2d(low, (1, 1)) + 1e-5)
    high = high / (F.adaptive_max_pool2d(high, (1, 1)) + 1e-5)
    ours_low, ours_high = cam_maps(model, image, np.array(classes), scales=scales, flip=True, cam_stride=4)
    torch.testing.assert_close(ours_low, low, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours_high, high, atol=1e-5, rtol=1e-5)


def test_boundary_branch_on_resnet50_is_irns_fc_edge() -> None:
    """Five levels (stem after max pooling, layer1..4), each conv + GroupNorm, upsampled by its integer
    factor to stride 4, then ReLU; fused by a 1x1 conv with bias (IRN's fc_edge1..6)."""
    torch.manual_seed(0)
    model = create_model("resnet50", "boundary", pretrained="none").eval()
    assert [branch[0].in_channels for branch in model.branches] == [64, 256, 512, 1024, 2048]
    assert model.fuse.in_channels == 160 and model.fuse.bias is not None
    with torch.no_grad():
        for p in model.fuse.parameters():
            p.normal_()
        for branch in model.branches:  # GroupNorm's affine parameters away from (1, 0)
            branch[1].weight.normal_()
            branch[1].bias.normal_()
        x = torch.randn(1, 3, 64, 96)
        stages = model.backbone.forward_stages(x)
        levels = []
        for branch, stage, factor in zip(model.branches, stages, (1, 1, 2, 4, 4)):
            level = branch[1](branch[0](stage))
            if factor > 1:
                level = nn.Upsample(scale_factor=factor, mode="bilinear", align_corners=False)(level)
            levels.append(torch.relu(level))
        reference = model.fuse(torch.cat(levels, dim=1))[:, 0]
        logits = model.logits(x)
    assert logits.shape == (1, 16, 24)
    torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(x), torch.sigmoid(reference), atol=1e-6, rtol=1e-6)


class _StubBoundaryNet(nn.Module):
    """Logits chosen by the test: ``logits[b]`` = ``self.maps[b]`` on whatever padded input arrives."""

    def __init__(self, maps: torch.Tensor, crop_size: int | None, output_stride: int = 16) -> None:
        super().__init__()
        self.maps, self.crop_size, self.seen = maps, crop_size, []
        self.backbone = nn.Module()
        self.backbone.output_stride = output_stride

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return self.maps[:, : x.shape[2] // 4, : x.shape[3] // 4]


def test_predict_boundary_is_the_sigmoid_of_the_mean_logit_of_the_cropped_padded_pair() -> None:
    import numpy as np

    from pixsup.pseudo_labels.boundary import predict_boundary

    height, width = 37, 50  # grid ceil(37/4) x ceil(50/4) = 10 x 13
    image = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    torch.manual_seed(0)
    maps = torch.randn(2, 16, 16) * 3  # logits of the 64 x 64 padded pair
    stub = _StubBoundaryNet(maps, crop_size=64)
    edge = predict_boundary(stub, image, torch.device("cpu"))
    # The pair: the normalised image and its mirror, each zero-padded right and bottom to the crop (64).
    (batch,) = stub.seen
    # Normalised independently of pixsup's helper: (x / 255 - mean) / std with torchvision's ImageNet statistics.
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = torch.from_numpy(((image / 255.0 - mean) / std).astype(np.float32).transpose(2, 0, 1))
    assert batch.shape == (2, 3, 64, 64)
    torch.testing.assert_close(batch[0, :, :height, :width], x)
    torch.testing.assert_close(batch[1, :, :height, :width], x.flip(-1))
    assert not batch[:, :, height:].any() and not batch[:, :, :, width:].any()
    # Crop each logit map to the image's grid, mirror the second back, sigmoid of the mean.
    a, b = maps[0, :10, :13], maps[1, :10, :13].flip(-1)
    torch.testing.assert_close(edge, torch.sigmoid((a + b) / 2))
    assert edge.shape == (10, 13)
    # ... which is not the mean of the sigmoids (the former rule), nor the uncropped mirror.
    assert (edge - (torch.sigmoid(a) + torch.sigmoid(b)) / 2).abs().max() > 0.05
    assert (edge - torch.sigmoid((a + maps[1].flip(-1)[:10, :13]) / 2)).abs().max() > 0.05


def test_predict_boundary_pads_larger_images_to_the_next_multiple_of_the_stride() -> None:
    import numpy as np

    from pixsup.pseudo_labels.boundary import inference_padding, predict_boundary

    assert inference_padding(375, 500, 512, 16) == (512, 512)  # IRN: every VOC image padded to 512
    assert inference_padding(530, 200, 512, 16) == (544, 512)  # IRN would cut; we pad on
    assert inference_padding(37, 50, None, 16) == (48, 64)
    assert inference_padding(37, 50, 20, 8) == (40, 56)
    stub = _StubBoundaryNet(torch.zeros(2, 32, 32), crop_size=64)
    edge = predict_boundary(stub, np.zeros((70, 90, 3), np.uint8), torch.device("cpu"))
    assert stub.seen[0].shape == (2, 3, 80, 96) and edge.shape == (18, 23)
    predict_boundary(stub, np.zeros((70, 90, 3), np.uint8), torch.device("cpu"), crop_size=100)
    assert stub.seen[1].shape == (2, 3, 112, 112)


def test_built_boundary_net_pads_to_its_training_crop() -> None:
    import numpy as np

    from pixsup.config import IrnConfig
    from pixsup.pseudo_labels.boundary import build_boundary_net, predict_boundary

    model = build_boundary_net(IrnConfig(backbone="tiny", pretrained="none", crop_size=48)).eval()
    assert model.crop_size == 48
    edge = predict_boundary(model, np.full((30, 41, 3), 128, np.uint8), torch.device("cpu"))
    assert edge.shape == (8, 11) and 0.0 <= edge.min() <= edge.max() <= 1.0
