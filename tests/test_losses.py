"""Loss functions: CAM normalisation, RCM (regional contrast), MAM (multi-scale attention), SupportNet."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from pixsup.cam.losses import (
    IGNORE_REGION,
    PrototypeMemory,
    mam_loss,
    mam_target,
    normalize_cam,
    rcm_loss,
    region_labels,
    region_prototypes,
)
from pixsup.cam.training import compute_losses
from pixsup.config import CamTrainConfig, MamConfig, RcmConfig
from pixsup.models import create_model
from pixsup.models.support import SupportNet

pytestmark = pytest.mark.usefixtures("one_thread")


def _unit(*values: float) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


# ------------------------------------------------------------- normalize_cam


def _cam_and_labels() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    cam = torch.randn(2, 3, 4, 5, generator=gen) * 3
    cam[:, :, 0, 0] = 2.5  # every map has a positive peak somewhere
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    return cam, labels


def test_normalize_cam_relu_and_absent_classes_zeroed() -> None:
    cam, labels = _cam_and_labels()
    out = normalize_cam(cam, labels)
    assert (out >= 0).all()
    # Negative activations vanish (ReLU) ...
    assert (out[cam < 0] == 0).all()
    # ... and classes absent from the label are zero everywhere.
    assert (out[0, 1] == 0).all() and (out[1, 0] == 0).all() and (out[1, 2] == 0).all()


def test_normalize_cam_present_class_peak_is_one_and_shape_kept() -> None:
    cam, labels = _cam_and_labels()
    out = normalize_cam(cam, labels)
    for b, c in [(0, 0), (0, 2), (1, 1)]:
        assert out[b, c].max().item() == pytest.approx(1.0, abs=1e-4)
        # Division by the peak keeps the map's shape: relu(cam) / max(relu(cam)).
        positive = cam[b, c].clamp_min(0)
        torch.testing.assert_close(out[b, c], positive / positive.max(), atol=1e-4, rtol=0)


def test_normalize_cam_gradients_flow_to_present_classes_only() -> None:
    cam, labels = _cam_and_labels()
    cam.requires_grad_(True)
    (normalize_cam(cam, labels) * torch.rand(cam.shape)).sum().backward()
    assert cam.grad is not None
    assert cam.grad[0, 0].abs().sum() > 0 and cam.grad[1, 1].abs().sum() > 0
    assert (cam.grad[0, 1] == 0).all() and (cam.grad[1, 0] == 0).all()


# -------------------------------------------------------------- region_labels


def test_region_labels_on_hand_made_cam() -> None:
    # Exactly representable values so the threshold boundaries are tested exactly.
    ch0 = [[0.875, 0.25, 0.0, 0.25], [0.5, 0.0625, 0.125, 0.0]]
    ch1 = [[0.25, 0.75, 0.0625, 0.375], [0.375, 0.0, 0.0, 0.0]]
    cam = torch.tensor([[ch0, ch1]])
    region = region_labels(cam, fg_threshold=0.5, bg_threshold=0.125)
    # (0,0) ch0 fg -> 1; (0,1) ch1 fg -> 2; (0,2) < bg -> 0; (0,3) max 0.375 in between -> -1;
    # (1,0) max == fg threshold -> fg 1; (1,1) -> 0; (1,2) max == bg threshold -> not bg, -1; (1,3) -> 0.
    expected = torch.tensor([[[1, 2, 0, IGNORE_REGION], [1, 0, IGNORE_REGION, 0]]])
    assert region.dtype == torch.long
    assert torch.equal(region, expected)


def test_region_labels_margin_ignores_weak_pixels_beside_lit_ones() -> None:
    # One channel, 1 x 7: a lit pixel at 2 (fg), one in between at 5, the rest below bg.
    cam = torch.tensor([[[[0.0, 0.0, 0.75, 0.0, 0.0, 0.25, 0.0]]]])
    assert torch.equal(region_labels(cam, 0.5, 0.125)[0, 0], torch.tensor([0, 0, 1, 0, 0, IGNORE_REGION, 0]))
    # Margin 1: the cells next to a lit one (distance 1: 1, 3, 4, 6) are ignored; 0 stays background.
    ignored = IGNORE_REGION
    assert torch.equal(
        region_labels(cam, 0.5, 0.125, bg_margin=1)[0, 0],
        torch.tensor([0, ignored, 1, ignored, ignored, ignored, ignored]),
    )
    # Margin 2 reaches cell 0 as well: nothing is background any more. Diagonals count (Chebyshev distance).
    assert (region_labels(cam, 0.5, 0.125, bg_margin=2) != 0).all()
    square = torch.zeros(1, 1, 3, 3)
    square[0, 0, 0, 0] = 1.0
    assert region_labels(square, 0.5, 0.125, bg_margin=1)[0, 1, 1] == IGNORE_REGION
    assert region_labels(square, 0.5, 0.125, bg_margin=1)[0, 2, 2] == 0


# ---------------------------------------------------------- region_prototypes


def test_region_prototypes_masked_mean_unit_length_sorted_ids() -> None:
    # Two images of 1 x 3 pixels, D = 2; regions given out of order, one pixel ignored.
    region = torch.tensor([[[3, 0, IGNORE_REGION]], [[3, 1, 0]]])
    vectors = {
        (0, 0): [1.0, 0.0],
        (0, 1): [0.0, 2.0],
        (0, 2): [-5.0, 7.0],
        (1, 0): [3.0, 4.0],
        (1, 1): [0.5, -0.5],
        (1, 2): [0.0, 1.0],
    }
    proj = torch.zeros(2, 2, 1, 3)
    for (b, x), v in vectors.items():
        proj[b, :, 0, x] = torch.tensor(v)
    ids, protos, pixels = region_prototypes(proj, region, num_regions=4)
    assert ids.tolist() == [0, 1, 3] and pixels.item() == 5
    members = {0: [(0, 1), (1, 2)], 1: [(1, 1)], 3: [(0, 0), (1, 0)]}
    for row, rid in enumerate([0, 1, 3]):
        mean = np.mean([vectors[m] for m in members[rid]], axis=0)
        expected = mean / np.linalg.norm(mean)
        np.testing.assert_allclose(protos[row].numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(protos.norm(dim=1).numpy(), 1.0, atol=1e-6)


def test_region_prototypes_ignore_the_ignored_pixels() -> None:
    region = torch.tensor([[[1, IGNORE_REGION, 0, 1]]])
    proj = torch.randn(1, 3, 1, 4)
    _, before, _ = region_prototypes(proj, region, num_regions=2)
    proj[0, :, 0, 1] = torch.tensor([100.0, -100.0, 50.0])  # only the ignored pixel changes
    _, after, _ = region_prototypes(proj, region, num_regions=2)
    torch.testing.assert_close(before, after)


# -------------------------------------------------------------------- RCM


def _rcm_example() -> dict[str, object]:
    """One image of 1 x 4 pixels, C = 1, D = 2: regions [1, 1, 0, ignored]."""
    support_cam = torch.tensor([1.0, 0.875, 0.0, 0.25]).view(1, 1, 1, 4)
    support_vecs = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]]
    support_proj = torch.tensor(support_vecs).t().reshape(1, 2, 1, 4)
    proto1 = _unit(1.6, 0.8)  # mean of pixels 0 and 1, made unit length
    proto0 = [0.0, 1.0]
    return {
        "support_cam": support_cam,
        "support_proj": support_proj,
        "proto0": proto0,
        "proto1": proto1,
        "targets": [1, 1, 0],
        "fg": 0.5,
        "bg": 0.125,
    }


def _hand_infonce(
    pixels: list[list[float]], targets: list[list[float]], candidates: list[list[float]], tau: float
) -> float:
    """Mean over pixels of -log softmax(z . p / tau)[target], written out with math."""
    total = 0.0
    for z, pos in zip(pixels, targets):
        sims = [sum(a * b for a, b in zip(z, p)) / tau for p in candidates]
        pos_sim = sum(a * b for a, b in zip(z, pos)) / tau
        total += -pos_sim + math.log(sum(math.exp(s) for s in sims))
    return total / len(pixels)


def _main_proj(vecs: list[list[float]]) -> torch.Tensor:
    return torch.tensor(vecs).t().reshape(1, 2, 1, len(vecs)).contiguous()


def test_rcm_loss_equals_hand_computed_infonce() -> None:
    ex = _rcm_example()
    tau = 0.5
    main_vecs = [_unit(1.0, 1.0), _unit(-0.2, 1.0), _unit(0.7, -0.3), _unit(0.0, -1.0)]
    loss = rcm_loss(_main_proj(main_vecs), ex["support_proj"], ex["support_cam"], ex["fg"], ex["bg"], tau)
    protos = {0: ex["proto0"], 1: ex["proto1"]}
    expected = _hand_infonce(main_vecs[:3], [protos[t] for t in ex["targets"]], [protos[0], protos[1]], tau)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_rcm_loss_lower_on_own_prototype_than_on_another() -> None:
    ex = _rcm_example()
    own = [ex["proto1"], ex["proto1"], ex["proto0"], [1.0, 0.0]]
    swapped = [ex["proto0"], ex["proto0"], ex["proto1"], [1.0, 0.0]]
    args = (ex["support_proj"], ex["support_cam"], ex["fg"], ex["bg"], 0.1)
    assert rcm_loss(_main_proj(own), *args) < rcm_loss(_main_proj(swapped), *args)


def test_rcm_loss_is_zero_with_graph_when_every_pixel_is_ignored() -> None:
    support_cam = torch.full((1, 2, 3, 3), 0.25)  # between bg 0.125 and fg 0.5 everywhere
    main_proj = torch.randn(1, 4, 3, 3, requires_grad=True)
    loss = rcm_loss(main_proj, torch.randn(1, 4, 3, 3), support_cam, 0.5, 0.125, 0.1)
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()  # must not raise: training code always calls backward
    assert main_proj.grad is not None and (main_proj.grad == 0).all()


def test_rcm_loss_memory_adds_negatives_of_absent_ids_only() -> None:
    ex = _rcm_example()
    tau = 0.5
    main_vecs = [_unit(1.0, 1.0), _unit(-0.2, 1.0), _unit(0.7, -0.3), _unit(0.0, -1.0)]
    args = (_main_proj(main_vecs), ex["support_proj"], ex["support_cam"], ex["fg"], ex["bg"], tau)
    protos = {0: ex["proto0"], 1: ex["proto1"]}
    positives = [protos[t] for t in ex["targets"]]
    extra = _unit(-1.0, 0.5)

    memory = PrototypeMemory(size=4)
    # id 1 is present in the batch: its stored prototype must not become a negative;
    # id 7 is absent: its prototype joins the candidates.
    memory.push(torch.tensor([1, 7]), torch.tensor([_unit(0.3, -1.0), extra]))
    loss = rcm_loss(*args, memory=memory)
    expected = _hand_infonce(main_vecs[:3], positives, [protos[0], protos[1], extra], tau)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # The batch's own prototypes were pushed afterwards.
    assert len(memory._batches) == 2
    assert memory._batches[-1][0].tolist() == [0, 1]


def test_prototype_memory_negatives_and_size_limit() -> None:
    memory = PrototypeMemory(size=2)
    for i in range(3):  # batch i holds ids [i, 10 + i] with prototypes filled with i and 10 + i
        memory.push(torch.tensor([i, 10 + i]), torch.tensor([[float(i)] * 2, [float(10 + i)] * 2]))
    assert len(memory._batches) == 2
    negatives = memory.negatives(torch.tensor([2, 11]))
    # Batch 0 was dropped; batch 1 gives id 1 (11 is present), batch 2 gives id 12 (2 is present).
    assert sorted(negatives[:, 0].tolist()) == [1.0, 12.0]
    assert memory.negatives(torch.tensor([1, 2, 11, 12])) is None


def test_prototype_memory_size_zero_stores_nothing() -> None:
    memory = PrototypeMemory(size=0)
    memory.push(torch.tensor([1]), torch.ones(1, 2))
    assert memory.negatives(torch.tensor([0])) is None


def test_prototype_memory_detaches_what_it_stores() -> None:
    memory = PrototypeMemory(size=1)
    protos = torch.ones(1, 2, requires_grad=True)
    memory.push(torch.tensor([3]), protos * 2)
    assert not memory.negatives(torch.tensor([0])).requires_grad


# -------------------------------------------------------------------- MAM


def _mam_inputs() -> tuple[torch.Tensor, list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    main = torch.rand(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    supports = [torch.rand(2, 3, 4, 5, generator=gen, dtype=torch.float64) for _ in range(3)]
    return main, supports


def test_mam_target_mean_fusion() -> None:
    main, supports = _mam_inputs()
    target, weights = mam_target(main, supports, fusion="mean")
    s = [x.numpy() for x in supports]
    np.testing.assert_allclose(target.numpy(), (s[0] + s[1] + s[2]) / 3, atol=1e-12)
    assert weights.shape == (3, *main.shape)


def test_mam_target_max_fusion() -> None:
    main, supports = _mam_inputs()
    target, weights = mam_target(main, supports, fusion="max")
    np.testing.assert_allclose(target.numpy(), np.maximum.reduce([x.numpy() for x in supports]), atol=1e-12)
    np.testing.assert_allclose(weights.sum(dim=0).numpy(), 1.0)


@pytest.mark.parametrize("dissimilarity", ["abs", "expand"])
def test_mam_target_attention_fusion_matches_hand_softmax(dissimilarity: str) -> None:
    main, supports = _mam_inputs()
    temperature = 0.3
    target, weights = mam_target(
        main, supports, fusion="attention", temperature=temperature, dissimilarity=dissimilarity
    )
    m = main.numpy()
    s = np.stack([x.numpy() for x in supports])
    d = np.abs(m - s) if dissimilarity == "abs" else np.maximum(s - m, 0.0)
    e = np.exp(d / temperature)
    w = e / e.sum(axis=0)
    np.testing.assert_allclose(weights.numpy(), w, atol=1e-12)
    np.testing.assert_allclose(target.numpy(), (w * s).sum(axis=0), atol=1e-12)
    np.testing.assert_allclose(weights.sum(dim=0).numpy(), 1.0, atol=1e-12)


def test_mam_target_expand_ignores_scales_that_see_less() -> None:
    # With `expand`, a scale below M has dissimilarity 0 like a scale equal to M:
    # only the scale above M gets extra weight.
    main = torch.full((1, 1, 1, 1), 0.5)
    supports = [torch.full((1, 1, 1, 1), v) for v in (0.1, 0.5, 0.9)]
    _, weights = mam_target(main, supports, temperature=0.2, dissimilarity="expand")
    w = weights.flatten()
    assert w[0] == pytest.approx(w[1].item())
    assert w[2] > w[1]


@pytest.mark.parametrize("fusion", ["attention", "max", "mean"])
def test_mam_target_and_weights_are_detached(fusion: str) -> None:
    main, supports = _mam_inputs()
    main.requires_grad_(True)
    for s in supports:
        s.requires_grad_(True)
    target, weights = mam_target(main, supports, fusion=fusion)
    assert not target.requires_grad
    assert not weights.requires_grad


def test_mam_target_rejects_unknown_options() -> None:
    main, supports = _mam_inputs()
    with pytest.raises(ValueError, match="fusion"):
        mam_target(main, supports, fusion="median")
    with pytest.raises(ValueError, match="dissimilarity"):
        mam_target(main, supports, dissimilarity="square")


def test_mam_loss_is_the_mean_l1_over_label_class_pixels() -> None:
    # B=1, C=2, 2x2 grid, only class 0 in the label: the loss is the mean |M - Y|
    # over the 4 pixels of class 0, here (0.5 + 0.25 + 0 + 1) / 4.
    main = torch.tensor([[[[0.5, 0.25], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]])
    target = torch.tensor([[[[0.0, 0.5], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]]])
    labels = torch.tensor([[1.0, 0.0]])
    assert mam_loss(main, target, labels).item() == pytest.approx(1.75 / 4)


def test_mam_loss_absent_classes_do_not_count() -> None:
    gen = torch.Generator().manual_seed(2)
    main, target = torch.rand(2, 3, 4, 4, generator=gen), torch.rand(2, 3, 4, 4, generator=gen)
    labels = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    loss = mam_loss(main, target, labels)
    # The mean |M - Y| over the label class's pixels alone (torch ops, not mam_loss): absent classes do not
    # dilute the average ...
    expected = (main[:, 0] - target[:, 0]).abs().mean().item()
    assert loss.item() == pytest.approx(expected)
    # ... and changing them changes nothing.
    main2, target2 = main.clone(), target.clone()
    main2[:, 1:] = 1.0
    target2[:, 1:] = 0.0
    assert mam_loss(main2, target2, labels).item() == pytest.approx(expected)


def test_mam_loss_one_sided_only_penalises_main_below_target() -> None:
    gen = torch.Generator().manual_seed(3)
    main, target = torch.rand(1, 2, 4, 4, generator=gen), torch.rand(1, 2, 4, 4, generator=gen)
    labels = torch.ones(1, 2)
    # M >= Y everywhere: nothing to expand, no loss.
    assert mam_loss(torch.maximum(main, target), target, labels, one_sided=True).item() == 0.0
    # In general only the M < Y part counts: the mean of relu(Y - M) over every (label class) pixel,
    # against the two-sided mean |M - Y| (both written with torch ops, not mam_loss).
    one_sided = mam_loss(main, target, labels, one_sided=True)
    assert one_sided.item() == pytest.approx((target - main).clamp_min(0).mean().item())
    two_sided = mam_loss(main, target, labels)
    assert two_sided.item() == pytest.approx((main - target).abs().mean().item())
    assert one_sided < two_sided


def test_mam_loss_bg_weight_acts_only_where_target_is_below_threshold() -> None:
    gen = torch.Generator().manual_seed(4)
    main = torch.rand(1, 2, 4, 4, generator=gen)
    target = torch.full((1, 2, 4, 4), 0.5)
    target[0, 0, 0, :2] = 0.0
    target[0, 0, 1, 0] = 0.125  # exactly the threshold: not background
    target[0, 1, 2, 2] = 0.0  # class 1 is absent from the label: never counts
    labels = torch.tensor([[1.0, 0.0]])
    bg = (target < 0.125).float()
    weight = 3.0
    base = mam_loss(main, target, labels, bg_threshold=0.125)
    with_bg = mam_loss(main, target, labels, bg_weight=weight, bg_threshold=0.125)
    # By hand (torch ops, not mam_loss): class 0 alone counts, 16 pixels. The base is the mean |M - Y|; the
    # counterweight is weight * (the sum of M at its confident-background pixels) / 16, the same normalisation.
    expected_base = (main[0, 0] - target[0, 0]).abs().sum().item() / 16
    extra = (main[0, 0] * bg[0, 0]).sum().item() / 16
    assert bg[0, 0].sum().item() == 2 and extra > 0  # (0, 0) and (0, 1); 0.125 itself is not background
    assert base.item() == pytest.approx(expected_base)
    assert with_bg.item() == pytest.approx(expected_base + weight * extra, rel=1e-5)
    assert (with_bg - base).item() == pytest.approx(weight * extra, rel=1e-5)
    assert with_bg > base
    # No pixel below the threshold: the weight changes nothing.
    flat = torch.full_like(target, 0.5)
    assert mam_loss(main, flat, labels, bg_weight=weight, bg_threshold=0.125).item() == pytest.approx(
        (main[0, 0] - 0.5).abs().mean().item()
    )


# ----------------------------------------------------- SupportNet and gradients


def test_compute_losses_gradients_reach_mainnet_only() -> None:
    torch.manual_seed(0)
    main = create_model("tiny", pretrained="none", proj_dim=16)
    support = SupportNet(copy.deepcopy(main), kind="frozen")
    main.train()
    images = torch.randn(2, 3, 64, 64)
    labels = torch.zeros(2, 20)
    labels[0, 3] = labels[1, 11] = 1.0
    # fg == bg threshold: every pixel is fg or bg, so RCM has valid pixels.
    cfg = CamTrainConfig(rcm=RcmConfig(fg_threshold=0.5, bg_threshold=0.5), mam=MamConfig(scales=(0.5, 1.0)))
    # Precondition: SupportNet's regions hold at least two ids, else InfoNCE is trivially 0.
    support_cam = normalize_cam(support(images)["cam"], labels)
    assert len(torch.unique(region_labels(support_cam, 0.5, 0.5))) >= 2

    terms = compute_losses(main, support, images, labels, cfg, use_rcm=True, use_mam=True)
    assert terms["rcm"].item() > 0 and terms["mam"].item() > 0
    terms["loss"].backward()
    for name, param in main.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    for name, param in support.named_parameters():
        assert not param.requires_grad, name
        assert param.grad is None, name


def test_compute_losses_without_support_for_rcm_raises() -> None:
    main = create_model("tiny", pretrained="none", proj_dim=8)
    labels = torch.zeros(1, 20)
    labels[0, 0] = 1
    with pytest.raises(ValueError, match="SupportNet"):
        compute_losses(main, None, torch.randn(1, 3, 32, 32), labels, CamTrainConfig(), use_rcm=True, use_mam=False)


def _perturbed_copy(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``net`` with different parameters and BatchNorm statistics."""
    other = copy.deepcopy(net)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p))
    other.train()
    other(torch.randn(2, 3, 32, 32))  # updates running statistics
    return other


def test_support_ema_update_formula() -> None:
    torch.manual_seed(0)
    net = create_model("tiny", pretrained="none", proj_dim=8)
    m = 0.9
    support = SupportNet(net, kind="ema", momentum=m)
    start = [p.clone() for p in support.net.parameters()]
    main = _perturbed_copy(net)
    support.update(main)
    for s0, s, p in zip(start, support.net.parameters(), main.parameters()):
        torch.testing.assert_close(s, m * s0 + (1 - m) * p)
    for b_support, b_main in zip(support.net.buffers(), main.buffers()):
        assert torch.equal(b_support, b_main)
    # The update changed something (the perturbation is large): the test is not vacuous.
    assert not torch.equal(start[0], next(support.net.parameters()))


def test_support_frozen_update_changes_nothing() -> None:
    torch.manual_seed(0)
    net = create_model("tiny", pretrained="none", proj_dim=8)
    support = SupportNet(net, kind="frozen")
    before = {k: v.clone() for k, v in support.state_dict().items()}
    support.update(_perturbed_copy(net))
    for key, value in support.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_support_net_stays_in_eval_and_is_a_copy() -> None:
    net = create_model("tiny", pretrained="none", proj_dim=8)
    support = SupportNet(net)
    support.train()
    assert not support.training and not any(m.training for m in support.modules())
    # Deep copy: the wrapped network's parameters still train.
    assert all(p.requires_grad for p in net.parameters())
    with pytest.raises(ValueError, match="kind"):
        SupportNet(net, kind="teacher")
