"""Defaults and rules that docs/conventions.md says follow IRN or DeepLab-v2, against values written out here.

The expected values are copied from the references (IRN's run_sample.py, misc/imutils.py, step/train_irn.py;
DeepLab-v2's VOC solver), or computed with an independent library (pydensecrf's own unary_from_labels); none is
read from pixsup.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixsup.config import Params


def test_cam_inference_and_pseudo_label_defaults_are_irns() -> None:
    params = Params()
    infer, labels = params.cam_infer, params.pseudo_labels
    # run_sample.py: --cam_scales (1.0, 0.5, 1.5, 2.0); make_cam.py: each scale with its mirror, stride-4 `cam`.
    assert infer.scales == (1.0, 0.5, 1.5, 2.0) and infer.flip is True and infer.cam_stride == 4
    # --conf_fg_thres 0.30, --conf_bg_thres 0.05, --sem_seg_bg_thres 0.25.
    assert (labels.conf_fg_threshold, labels.conf_bg_threshold, labels.bg_threshold) == (0.30, 0.05, 0.25)
    # imutils.crf_inference_label: t=10, gt_prob=0.7, Gaussian sxy=3 compat=3, bilateral sxy=50 srgb=5 compat=10.
    crf = labels.crf
    assert crf.iterations == 10 and crf.gt_prob == 0.7
    assert (crf.gaussian_sxy, crf.gaussian_compat) == (3.0, 3.0)
    assert (crf.bilateral_sxy, crf.bilateral_srgb, crf.bilateral_compat) == (50.0, 5.0, 10.0)
    # train_irn.py: PathIndex(radius=10), --irn_crop_size 512, --irn_batch_size 32, --irn_num_epoches 3,
    # --irn_learning_rate 0.1, --irn_weight_decay 1e-4; make_sem_seg_labels.py: radius=5, --beta 10, --exp_times 8.
    irn = labels.irn
    assert (irn.train_radius, irn.crop_size, irn.batch_size, irn.epochs) == (10, 512, 32, 3)
    assert (irn.lr, irn.weight_decay) == (0.1, 1e-4)
    assert (irn.radius, irn.beta, irn.exp_times) == (5, 10.0, 8)


def test_segmentation_defaults_are_deeplab_v2s() -> None:
    seg = Params().seg_train
    # DeepLab-v2 (VOC, ResNet-101): ASPP rates 6/12/18/24, base lr 2.5e-4 with the classifier at 10x, momentum 0.9,
    # weight decay 5e-4, poly power 0.9, batch 10, crop 321.
    assert seg.backbone == "resnet101" and seg.aspp_rates == (6, 12, 18, 24)
    assert (seg.lr, seg.head_lr_mult, seg.momentum, seg.weight_decay, seg.poly_power) == (2.5e-4, 10.0, 0.9, 5e-4, 0.9)
    assert (seg.batch_size, seg.crop_size) == (10, 321)


def test_crf_from_labels_is_irns_crf_inference_label() -> None:
    """IRN's imutils.crf_inference_label written with pydensecrf's own unary_from_labels (zero_unsure=False)."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_labels

    from pixsup.config import CrfConfig
    from pixsup.crf import crf_from_labels

    rng = np.random.default_rng(0)
    height, width, n_labels = 30, 40, 3
    image = np.zeros((height, width, 3), np.uint8)
    image[:, 14:] = (200, 40, 40)
    image[18:, 26:] = (40, 40, 200)
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    labels = np.zeros((height, width), np.int64)
    labels[:, 10:] = 1  # a coarse mask, off by a few pixels from the colour edges
    labels[15:, 24:] = 2
    labels[rng.random((height, width)) < 0.1] = rng.integers(0, n_labels)  # scattered wrong labels

    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(unary_from_labels(labels, n_labels, gt_prob=0.7, zero_unsure=False))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=50, srgb=5, rgbim=np.ascontiguousarray(np.copy(image)), compat=10)
    expected = np.argmax(np.array(crf.inference(10)).reshape((n_labels, height, width)), axis=0)

    ours = crf_from_labels(image, labels, n_labels, CrfConfig())
    assert (ours != labels).any()  # the CRF changed something: the comparison is not vacuous
    np.testing.assert_array_equal(ours, expected)


def test_affinity_loss_weighs_background_and_foreground_pairs_half_each() -> None:
    """IRN's train_irn: ((bg_pos + fg_pos) / 2 + neg) / 2, each a mean -log over its pairs."""
    from pixsup.pseudo_labels.affinity import affinity_loss

    affinity = torch.tensor([[0.9, 0.5, 0.25, 0.8, 0.1, 0.6]])
    mask = {
        "bg_pos": torch.tensor([[True, True, False, False, False, False]]),
        "fg_pos": torch.tensor([[False, False, True, False, False, False]]),
        "neg": torch.tensor([[False, False, False, True, True, False]]),
    }
    eps = 1e-5
    bg = -(np.log(0.9 + eps) + np.log(0.5 + eps)) / 2
    fg = -np.log(0.25 + eps)
    neg = -(np.log(1 + eps - 0.8) + np.log(1 + eps - 0.1)) / 2
    out = affinity_loss(affinity, mask)
    assert out["bg_pos"].item() == pytest.approx(bg, rel=1e-6)
    assert out["fg_pos"].item() == pytest.approx(fg, rel=1e-6)
    assert out["neg"].item() == pytest.approx(neg, rel=1e-6)
    assert out["loss"].item() == pytest.approx(((bg + fg) / 2 + neg) / 2, rel=1e-6)


def test_affinity_labels_take_each_cells_centre_pixel_as_irns_pil_nearest() -> None:
    """IRN shrinks the label crop by 1/4 with PIL nearest: cell i reads pixel 4i + 2."""
    from pixsup.pseudo_labels.affinity import cell_labels

    labels = torch.arange(8 * 10).reshape(1, 8, 10)  # the value is 10 * row + column
    # rows 2, 6; columns 2, 6 and 9 (10 would fall outside: the last cell is clamped to column 9).
    expected = [[22, 26, 29], [62, 66, 69]]
    assert cell_labels(labels, 4).tolist() == [expected]
    from PIL import Image

    crop = (np.arange(16 * 16).reshape(16, 16) % 251).astype(np.uint8)
    shrunk = np.asarray(Image.fromarray(crop).resize((4, 4), Image.Resampling.NEAREST))
    assert cell_labels(torch.from_numpy(crop), 4).numpy().tolist() == shrunk.tolist()
