"""The one schema of every value the pipeline reads.

Values live in ``params.yaml`` (one section per group of rules); types and
defaults live here, and nowhere else. Unknown keys are errors, reported with
their full path (``cam_train.rcm.tau``) so a typo never silently falls back to
a default. Each workflow step reads one resolved params file: either the whole
``params.yaml`` or the file the workflow writes it, holding only the values
that step reads (``STEP_KEYS``); a step that reads any other value stops with
an error (``StepParams``), so a default never stands in for a value the step
was not given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

# Sizes and scales of zero or below would run every image at 1x1 pixels.
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
SEED_DESCRIPTION = "Seeds initialisation, shuffling and augmentation (0 or more)."
SKIP_DESCRIPTION = (
    "Iterations whose loss is NaN or infinite that training skips (no optimiser step) before it stops "
    "with an error; 0 stops at the first."
)

# Names the backbone table (pixsup.models.backbones) builds; register_backbone adds to it. Kept here, free of
# torch, so that the schema refuses a typo before any step starts.
KNOWN_BACKBONES: list[str] = ["tiny", "resnet50", "resnet38", "resnet101"]


def _known_backbone(name: str) -> str:
    if name not in KNOWN_BACKBONES:
        raise ValueError(f"unknown backbone '{name}'; registered: {', '.join(sorted(KNOWN_BACKBONES))}")
    return name


def _plain_path(path: str) -> str:
    """A path the workflow can put into a rule and a shell command, as the user meant it."""
    if not path.strip():
        raise ValueError("an empty path")
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        raise ValueError(f"{path!r} holds a control character (a newline, tab, NUL...)")
    if "{" in path or "}" in path:
        raise ValueError(f"{path!r} holds a brace, which Snakemake reads as a wildcard")
    if path.startswith("-"):
        raise ValueError(f"{path!r} starts with '-' and would be read as an option; write ./{path}")
    return path


def _url(url: str) -> str:
    if not url.startswith(("http://", "https://", "file://")):
        raise ValueError(f"{url!r} is not an http://, https:// or file:// URL")
    return _plain_path(url)


def _md5(digest: str) -> str:
    if len(digest) != 32 or any(char not in "0123456789abcdef" for char in digest.lower()):
        raise ValueError(f"{digest!r} is not an MD5 (32 hex digits)")
    return digest.lower()


BackboneName = Annotated[str, AfterValidator(_known_backbone)]
PathValue = Annotated[str, AfterValidator(_plain_path)]
UrlValue = Annotated[str, AfterValidator(_url)]
Md5Value = Annotated[str, AfterValidator(_md5)]


class ConfigError(ValueError):
    """A params file that does not match the schema; the message names the file and the key."""


class _Section(BaseModel):
    # NaN and infinity are never valid values (`lr: .inf` would train to NaN weights).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# --------------------------------------------------------------------- data


class SyntheticConfig(_Section):
    """The embedded default dataset (badge-versus-body objects, VOC layout); see ``pixsup.data.synthetic``."""

    seed: int = Field(0, ge=0, description="Seed of the generator; the same seed gives byte-identical files.")
    num_train: int = Field(160, ge=1, description="Images in the `train` list (seed evaluation split).")
    num_aug_extra: int = Field(
        160, ge=0, description="Extra images that only `train_aug` holds (train_aug = train + these)."
    )
    num_val: int = Field(80, ge=1, description="Images in the `val` list.")
    num_test: int = Field(40, ge=0, description="Images in the `test` list (no masks or annotations, as on VOC).")
    num_classes: int = Field(6, ge=2, le=20, description="Foreground classes used, VOC ids 1..num_classes.")
    min_side: int = Field(96, ge=32, description="Smallest image side in pixels.")
    max_side: int = Field(144, ge=32, description="Largest image side in pixels.")
    max_objects: int = Field(3, ge=1, le=6, description="Objects per image are drawn from 1..max_objects.")
    object_scale: tuple[float, float] = Field(
        (0.35, 0.65),
        description="Range [lo, hi] of an object's longer box side, as a fraction of the image's shorter side.",
    )
    body_class_colour_prob: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Probability that an object's body carries its class colour; otherwise a distractor "
        "colour from a pool shared by all classes.",
    )
    badge_fraction: float = Field(
        0.22,
        gt=0.0,
        le=0.5,
        description="Badge side as a fraction of the body's shorter side "
        "(at least 6 px; the badge lies inside the body).",
    )
    ignore_ring: int = Field(
        1,
        ge=0,
        description="Pixels within this 4-neighbour distance of an object border are labelled 255 (0: no ring).",
    )
    jpeg_quality: int = Field(95, ge=50, le=100, description="Quality of the JPEGImages files.")

    @model_validator(mode="after")
    def _ranges_ordered(self) -> SyntheticConfig:
        if self.min_side > self.max_side:
            raise ValueError(f"min_side ({self.min_side}) is larger than max_side ({self.max_side})")
        low, high = self.object_scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"object_scale {list(self.object_scale)} must be [lo, hi] with 0 < lo <= hi <= 1")
        return self


class Voc12DownloadConfig(_Section):
    """Where ``prepare_data`` fetches PASCAL VOC 2012 and the SBD masks when ``data.root`` does not exist yet."""

    voc_url: UrlValue = Field(
        "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
        description="VOC 2012 trainval tar (http(s):// or file://).",
    )
    voc_md5: Md5Value | None = Field(
        "6cd6e144f989b92b3379bac3b3de84fd", description="MD5 of the tar; a mismatch stops the step (null: not checked)."
    )
    aug_url: UrlValue = Field(
        "https://www.dropbox.com/s/oeu149j8qtbs1x0/SegmentationClassAug.zip?dl=1",
        description="SegmentationClassAug.zip: SBD masks in VOC's palette-index format.",
    )
    aug_md5: Md5Value | None = Field(
        None,
        description="MD5 of the zip. The mirror publishes none; prepare_data records the MD5 it saw in "
        "its manifest so a lab can pin it here.",
    )
    test_url: UrlValue | None = Field(
        None,
        description="The VOC 2012 test tar (from the evaluation server, for registered users); its images and "
        "test.txt are added to data.root. null: no test split, and the test submission is skipped.",
    )
    test_md5: Md5Value | None = Field(None, description="MD5 of the test tar (null: not checked).")
    archive_dir: PathValue = Field("data/downloads", description="Where downloaded archives are kept (and reused).")


class DataConfig(_Section):
    dataset: Literal["synthetic", "voc12"] = Field("synthetic", description="Which dataset the workflow runs on.")
    root: PathValue = Field(
        "data/synthetic/VOC2012", description="The VOC2012 folder (holds JPEGImages, ImageSets, ...)."
    )
    cls_labels_npy: PathValue | None = Field(
        None,
        description="Opt-in: IRN's cls_labels.npy (a pickle; only load a copy you trust). "
        "By default labels come from Annotations/*.xml, else from the mask.",
    )
    synthetic: SyntheticConfig = SyntheticConfig()
    voc12: Voc12DownloadConfig = Voc12DownloadConfig()


# --------------------------------------------------------------- cam_train


class AugmentConfig(_Section):
    resize_long: tuple[PositiveInt, PositiveInt] = Field(
        (320, 640), description="Random long-side resize range [lo, hi] in pixels."
    )
    crop_size: int = Field(512, ge=16, description="Square random crop; padding is 0 for images and 255 for labels.")
    flip: bool = Field(True, description="Random horizontal flip.")
    brightness: float = Field(0.3, ge=0.0)
    contrast: float = Field(0.3, ge=0.0)
    saturation: float = Field(0.3, ge=0.0)
    hue: float = Field(0.0, ge=0.0, le=0.5)

    @model_validator(mode="after")
    def _range_ordered(self) -> AugmentConfig:
        if self.resize_long[0] > self.resize_long[1]:
            raise ValueError(f"resize_long {list(self.resize_long)} must be [lo, hi] with lo <= hi")
        return self


class SupportConfig(_Section):
    kind: Literal["frozen", "ema"] = Field(
        "frozen", description="frozen: the trained baseline network, fixed; ema: an EMA of MainNet."
    )
    ema_momentum: float = Field(0.996, ge=0.0, lt=1.0, description="EMA momentum (support.kind: ema only).")


class RcmConfig(_Section):
    weight: float = Field(
        0.1,
        ge=0.0,
        description="lambda_rcm in the full variant (0.1: at 1.0 RCM lowered seeds, docs/design-study.md).",
    )
    fg_threshold: float = Field(0.30, gt=0.0, le=1.0, description="Pixel is foreground when max_c A >= this.")
    bg_threshold: float = Field(0.05, ge=0.0, lt=1.0, description="Pixel is background when max_c A < this.")
    tau: float = Field(0.1, gt=0.0, description="InfoNCE temperature.")
    memory: int = Field(0, ge=0, description="Keep prototypes of this many previous batches as extra negatives.")
    regions: Literal["support", "multiscale"] = Field(
        "support",
        description="Region masks from SupportNet's CAM at scale 1 (support) or from the max over "
        "cam_train.mam.scales of its CAMs (multiscale).",
    )
    bg_margin: int = Field(
        0,
        ge=0,
        description="A pixel below bg_threshold within this many CAM cells of one at or above it is ignored, "
        "not background: the weak parts of an object next to its confident ones (0: every such pixel is "
        "background).",
    )


class MamConfig(_Section):
    weight: float = Field(1.0, ge=0.0, description="lambda_mam in the full variant.")
    scales: tuple[PositiveFloat, ...] = Field((0.5, 1.0, 1.5), min_length=1, description="SupportNet input scales.")
    temperature: float = Field(2.0, gt=0.0, description="T of the softmax over scales of the dissimilarity.")
    fusion: Literal["attention", "max", "mean"] = Field("attention", description="How scales fuse into the target.")
    dissimilarity: Literal["abs", "expand"] = Field(
        "abs", description="Attention input: abs = |M - S_s|; expand = relu(S_s - M) (scales that see more object)."
    )
    one_sided: bool = Field(True, description="Penalise only M < Y (expansion), never M > Y.")
    bg_weight: float = Field(
        1.0, ge=0.0, description="Counterweight holding M at 0 where the target is below bg_threshold."
    )
    bg_threshold: float = Field(0.05, ge=0.0, lt=1.0, description="Target value below which a pixel is background.")


class SourceDataConfig(_Section):
    """The generated source dataset of ``pretrain`` (``pixsup.data.source_parts``): one textured object per
    image, its texture the class."""

    seed: int = Field(0, ge=0, description="Seed of the generator: image k of epoch e depends on (seed, e, k).")
    images_per_epoch: int = Field(2000, ge=1, description="Images drawn (afresh) for every epoch.")
    held_out: int = Field(480, ge=1, description="Images of a separate stream the step scores its accuracy on.")
    image_size: int = Field(112, ge=32, description="Side of the square source images in pixels.")


class PretrainConfig(_Section):
    """Pretraining the ``tiny`` backbone on the source dataset (pretrain_backbone): what ImageNet is to the
    ResNets. ``cam_train.pretrained: auto`` on ``tiny`` loads its result."""

    source: SourceDataConfig = SourceDataConfig()
    seed: int = Field(0, ge=0, description=SEED_DESCRIPTION)
    epochs: int = Field(4, ge=1)
    batch_size: int = Field(32, ge=1)
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (each draws images).")
    lr: float = Field(0.03, gt=0.0, description="Learning rate of the backbone and the classifier.")
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    poly_power: float = Field(0.9, ge=0.0)
    nonfinite_skips: int = Field(0, ge=0, description=SKIP_DESCRIPTION)
    deterministic: bool = Field(True, description="Deterministic kernels (bit-reproducible on a CPU).")


class CamTrainConfig(_Section):
    backbone: BackboneName = Field("resnet50", description="Registered backbone: tiny | resnet50 | resnet38.")
    pretrained: PathValue = Field(
        "auto",
        description="auto: the backbone's pretrained weights (ResNets: ImageNet, from the torch cache; tiny: "
        "results/pretrained/tiny_parts.pth, written by pretrain_backbone); none: random init; otherwise a path "
        "to a weights file.",
    )
    seed: int = Field(0, ge=0, description=SEED_DESCRIPTION)
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(16, ge=1)
    gpus: int = Field(
        1,
        ge=1,
        description="GPUs per training job: the workflow starts this many DDP processes "
        "(torchrun, or srun under SLURM); batch_size stays the global batch and must divide by it.",
    )
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes.")
    lr: float = Field(0.01, gt=0.0, description="Backbone learning rate; new heads use lr * head_lr_mult.")
    head_lr_mult: float = Field(10.0, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(1e-4, ge=0.0, description="1e-4 for resnet50; the resnet38 lineage uses 5e-4.")
    poly_power: float = Field(0.9, ge=0.0, description="lr = base * (1 - it / max_it) ** poly_power.")
    nonfinite_skips: int = Field(0, ge=0, description=SKIP_DESCRIPTION)
    proj_dim: int = Field(256, ge=1, description="Projection head output size D.")
    warmup_epochs: int = Field(1, ge=0, description="Epochs before RCM/MAM switch on (support.kind: ema only).")
    deterministic: bool = Field(True, description="Ask torch for deterministic kernels (slower on CUDA).")
    augment: AugmentConfig = AugmentConfig()
    support: SupportConfig = SupportConfig()
    rcm: RcmConfig = RcmConfig()
    mam: MamConfig = MamConfig()


# --------------------------------------------------------------- cam_infer


class RefineConfig(_Section):
    """Prototype-similarity refinement of the CAMs at inference (:mod:`pixsup.cam.refine`)."""

    method: Literal["none", "prototype"] = Field(
        "none",
        description="none: the CAMs as the network gives them; prototype: each scale's CAM replaced by every "
        "pixel's similarity to the class's image-specific prototype (docs/design-study.md).",
    )
    features: Literal["backbone", "projection"] = Field(
        "projection",
        description="Pixel features of the prototypes: the projection head's (the embedding RCM trains; "
        "1.5 points above the backbone's on the default, docs/design-study.md), or the backbone's output.",
    )
    threshold: float = Field(
        0.5, gt=0.0, le=1.0, description="A pixel joins the class prototype where its CAM / the CAM's max >= this."
    )


class CamInferConfig(_Section):
    scales: tuple[PositiveFloat, ...] = Field((1.0, 0.5, 1.5, 2.0), min_length=1, description="Inference scales.")
    flip: bool = Field(True, description="Add the horizontal flip of every scale.")
    cam_stride: int = Field(4, ge=1, description="Stride of the stored low-resolution `cam` grid.")
    num_workers: int = Field(1, ge=0)
    num_shards: int = Field(
        1, ge=1, description="make_cams jobs per split (one GPU each); the CAM files do not depend on it."
    )
    max_side: int = Field(
        1000,
        ge=16,
        description="An image whose long side exceeds this is shrunk to it before inference (CAMs are still "
        "given at image size), so memory does not grow with the photo (VOC images are at most 500 px).",
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="fp32, or bf16: bfloat16 autocast, for GPUs and CPUs with bf16 units (on CPUs "
        "without them, e.g. AVX2 only, it is several times slower); docs/performance.md.",
    )
    refine: RefineConfig = Field(default_factory=RefineConfig)


class CamEvalConfig(_Section):
    threshold_min: float = Field(0.05, ge=0.0, le=1.0, description="Background score sweep start.")
    threshold_max: float = Field(0.60, ge=0.0, le=1.0, description="Background score sweep end (inclusive).")
    threshold_step: float = Field(0.01, gt=0.0)

    @model_validator(mode="after")
    def _range_ordered(self) -> CamEvalConfig:
        if self.threshold_min > self.threshold_max:
            raise ValueError("threshold_min must not exceed threshold_max")
        return self


# ------------------------------------------------------------ pseudo_labels


class ProbabilityCrfConfig(_Section):
    """Dense CRF (pydensecrf2) of probabilities; the defaults are IRN's."""

    iterations: int = Field(10, ge=1, description="Mean-field iterations.")
    gaussian_sxy: float = Field(3.0, gt=0.0, description="Smoothness kernel: spatial std (pixels).")
    gaussian_compat: float = Field(3.0, ge=0.0, description="Smoothness kernel weight.")
    bilateral_sxy: float = Field(50.0, gt=0.0, description="Appearance kernel: spatial std (pixels).")
    bilateral_srgb: float = Field(5.0, gt=0.0, description="Appearance kernel: colour std.")
    bilateral_compat: float = Field(10.0, ge=0.0, description="Appearance kernel weight.")


class CrfConfig(ProbabilityCrfConfig):
    """Dense CRF of hard labels: each label becomes a probability first."""

    gt_prob: float = Field(0.7, gt=0.0, lt=1.0, description="Confidence given to a hard label's own class.")


class IrnConfig(_Section):
    """IRN's class-boundary branch on a frozen backbone, and its random walk."""

    backbone: BackboneName = Field("resnet50", description="Registered backbone (frozen): tiny | resnet50 | resnet38.")
    pretrained: PathValue = Field(
        "auto",
        description="auto | none | <path> as in cam_train, or `cam`: the backbone of the CAM network the "
        "labels come from (useful where no ImageNet weights exist, e.g. tiny).",
    )
    seed: int = Field(0, ge=0, description=SEED_DESCRIPTION)
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(32, ge=1)
    gpus: int = Field(
        1,
        ge=1,
        description="GPUs of the training job: the workflow starts this many DDP processes "
        "(torchrun, or srun under SLURM); batch_size stays the global batch and must divide by it.",
    )
    num_workers: int = Field(2, ge=0)
    lr: float = Field(0.1, gt=0.0, description="Learning rate of the boundary branch.")
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    poly_power: float = Field(0.9, ge=0.0)
    nonfinite_skips: int = Field(0, ge=0, description=SKIP_DESCRIPTION)
    resize_long: tuple[PositiveInt, PositiveInt] = Field((320, 640), description="Random long-side resize range.")
    crop_size: int = Field(512, ge=16, description="Square random crop (labels padded with 255).")
    train_radius: int = Field(10, ge=2, description="Pairs within this radius (stride-4 grid) train the boundary.")
    radius: int = Field(5, ge=2, description="Random-walk neighbourhood radius (stride-4 grid).")
    beta: float = Field(10.0, gt=0.0, description="Affinity exponent of the random walk.")
    exp_times: int = Field(8, ge=0, description="The walk takes 2**exp_times steps.")

    @model_validator(mode="after")
    def _range_ordered(self) -> IrnConfig:
        if self.resize_long[0] > self.resize_long[1]:
            raise ValueError(f"resize_long {list(self.resize_long)} must be [lo, hi] with lo <= hi")
        return self


class PseudoLabelsConfig(_Section):
    variants: list[str] = Field(
        ["full"], min_length=1, description="CAM variants whose pseudo masks are made and evaluated."
    )
    method: Literal["irn", "crf", "cam"] = Field(
        "irn", description="Refinement whose masks train the segmentation network (of the first variant)."
    )
    compare_methods: list[Literal["irn", "crf", "cam"]] = Field(
        ["irn", "crf", "cam"], description="Refinements evaluated side by side in the seeds/masks table."
    )
    max_side: int = Field(
        1000,
        ge=16,
        description="An image whose long side exceeds this is refined shrunk to it (its mask is enlarged back), "
        "so memory does not grow with the photo (VOC images are at most 500 px).",
    )
    conf_fg_threshold: float = Field(0.30, gt=0.0, lt=1.0, description="Confident foreground: CAM above this.")
    conf_bg_threshold: float = Field(0.05, gt=0.0, lt=1.0, description="Confident background: every CAM below this.")
    bg_threshold: float = Field(
        0.25, gt=0.0, lt=1.0, description="Background score of the final masks (random walk, crf and cam)."
    )
    calibration: Literal["none", "seed_curve"] = Field(
        "none",
        description="none: the three thresholds as given | seed_curve: moved with each variant's best seed "
        "threshold on train (pixsup.pseudo_labels.calibration; docs/pseudo-labels.md).",
    )
    reference_threshold: float = Field(
        0.15,
        gt=0.0,
        lt=1.0,
        description="The best seed threshold the three thresholds are meant for (IRN's cam_eval_thres, 0.15).",
    )
    crf: CrfConfig = CrfConfig()
    irn: IrnConfig = IrnConfig()

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> PseudoLabelsConfig:
        if self.conf_bg_threshold >= self.conf_fg_threshold:
            raise ValueError("conf_bg_threshold must be below conf_fg_threshold")
        return self


# -------------------------------------------------------- seg_train, seg_infer


class SegTrainConfig(_Section):
    """DeepLab-v2 trained on the pseudo masks of train_aug."""

    backbone: BackboneName = Field("resnet101", description="Registered backbone: resnet101 (DeepLab-v2) | tiny | ...")
    pretrained: PathValue = Field(
        "auto",
        description="auto (ImageNet weights from the torch cache) | none | <path> | cam: the backbone of the "
        "CAM network the masks come from (where no ImageNet weights exist, e.g. tiny).",
    )
    aspp_rates: tuple[int, ...] = Field((6, 12, 18, 24), min_length=1, description="ASPP dilation rates.")
    seed: int = Field(0, ge=0, description=SEED_DESCRIPTION)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(10, ge=1)
    gpus: int = Field(
        1,
        ge=1,
        description="GPUs per training job: the workflow starts this many DDP processes "
        "(torchrun, or srun under SLURM); batch_size stays the global batch and must divide by it.",
    )
    num_workers: int = Field(4, ge=0)
    lr: float = Field(2.5e-4, gt=0.0, description="Backbone learning rate; ASPP uses lr * head_lr_mult.")
    head_lr_mult: float = Field(10.0, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    poly_power: float = Field(0.9, ge=0.0)
    nonfinite_skips: int = Field(0, ge=0, description=SKIP_DESCRIPTION)
    scale_range: tuple[float, float] = Field((0.5, 1.5), description="Random rescale factor range.")
    crop_size: int = Field(321, ge=16, description="Square random crop (masks padded with 255).")
    flip: bool = True

    @model_validator(mode="after")
    def _range_ordered(self) -> SegTrainConfig:
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range {list(self.scale_range)} must be [lo, hi] with 0 < lo <= hi")
        return self


class SegInferConfig(_Section):
    scales: tuple[PositiveFloat, ...] = Field(
        (0.5, 0.75, 1.0, 1.25, 1.5), min_length=1, description="Scales of the multi-scale prediction."
    )
    flip: bool = Field(True, description="Add the mirror of every scale in the multi-scale prediction.")
    crf: bool = Field(False, description="Also refine the multi-scale prediction with the dense CRF.")
    crf_params: ProbabilityCrfConfig = ProbabilityCrfConfig()
    max_side: int = Field(
        1000,
        ge=16,
        description="An image whose long side exceeds this is predicted shrunk to it; its probabilities are "
        "enlarged back a band of rows at a time, so memory does not grow with the photo.",
    )


# ------------------------------------------------------------------ report


class ReportConfig(_Section):
    gallery_size: int = Field(4, ge=1, description="Images in the CAM gallery figure.")
    gallery_ids: list[str] = Field(
        default_factory=list,
        description="Image ids of the gallery; empty: the first gallery_size ids of the evaluated split.",
    )
    peers: PathValue | None = Field(
        None, description="YAML of published peer numbers; null: the file shipped in pixsup/report/peers.yaml."
    )
    bootstrap_samples: int = Field(
        2000, ge=100, description="Bootstrap replicates of the ablation's 95 % intervals (resampling images)."
    )


# ------------------------------------------------------------------ experiment


def _distinct(values: list[int]) -> list[int]:
    if len(set(values)) != len(values):
        raise ValueError(f"repeats a value: {values}")
    return values


class ExperimentConfig(_Section):
    seeds: Annotated[list[Annotated[int, Field(ge=0)]], AfterValidator(_distinct)] = Field(
        default_factory=lambda: [0],
        min_length=1,
        description="Training repeats: run s trains every network with its seed (cam_train.seed, "
        "pseudo_labels.irn.seed, seg_train.seed) plus s, under results/<dataset>/seed<s>/; the tables "
        "give the mean, sd and intervals over the runs.",
    )


# The seeds a training repeat offsets, by the step that reads each.
RUN_SEED_KEYS: dict[str, str] = {
    "train_cam": "cam_train.seed",
    "train_irn": "pseudo_labels.irn.seed",
    "train_seg": "seg_train.seed",
}


def with_run_seed(params: Params, run: int) -> Params:
    """``params`` for training repeat ``run`` of ``experiment.seeds``: each key of RUN_SEED_KEYS plus ``run``."""
    raw = params.model_dump(mode="json")
    for dotted in RUN_SEED_KEYS.values():
        *parents, leaf = dotted.split(".")
        node = raw
        for name in parents:
            node = node[name]
        node[leaf] += run
    return parse_params(raw, f"experiment seed {run}")


class Params(_Section):
    """Root of params.yaml."""

    experiment: ExperimentConfig = ExperimentConfig()
    data: DataConfig = DataConfig()
    pretrain: PretrainConfig = PretrainConfig()
    cam_train: CamTrainConfig = CamTrainConfig()
    cam_infer: CamInferConfig = CamInferConfig()
    cam_eval: CamEvalConfig = CamEvalConfig()
    pseudo_labels: PseudoLabelsConfig = PseudoLabelsConfig()
    seg_train: SegTrainConfig = SegTrainConfig()
    seg_infer: SegInferConfig = SegInferConfig()
    report: ReportConfig = ReportConfig()


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "<top level>"
    if error["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    # A check of our own (a ValueError in a validator) reads as its message alone.
    return f"{key}: {error['msg'].removeprefix('Value error, ')}"


def parse_params(raw: Any, source: str = "<params>") -> Params:
    """Validate a mapping against the schema; raise ConfigError naming ``source`` and each bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"{source}: {problems}") from None


def load_params(path: str | os.PathLike) -> Params:
    """Read and validate a params YAML file (whole or resolved per step)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw, str(path))


# ------------------------------------------------------------- per-step values

# The values each workflow step reads, as dotted keys (a key names its whole subtree). The workflow
# writes each step a params file holding these and nothing else, so a change anywhere else does not
# rerun it; a step that reads a value outside its list stops with an error (StepParams) instead of
# silently using a default. prepare_data reads the generator's or the download's values (DATASET_KEYS).
STEP_KEYS: dict[str, tuple[str, ...]] = {
    "prepare_data": ("data.dataset", "data.root"),
    # The download MD5 pins are checked apart from the download, so pinning one after the first download
    # (as the README suggests) reruns this check alone, not the data and all that follows.
    "check_downloads": ("data.voc12.voc_md5", "data.voc12.aug_md5", "data.voc12.test_md5"),
    "pretrain_backbone": ("pretrain",),
    "train_cam": ("cam_train", "data.cls_labels_npy"),
    "make_cams": (
        "cam_infer.scales",
        "cam_infer.flip",
        "cam_infer.cam_stride",
        "cam_infer.num_workers",
        "cam_infer.precision",
        "cam_infer.max_side",
        "cam_infer.refine",
        "data.cls_labels_npy",
    ),
    "eval_cams": ("cam_eval",),
    "make_ir_labels": (
        "pseudo_labels.conf_fg_threshold",
        "pseudo_labels.conf_bg_threshold",
        "pseudo_labels.calibration",
        "pseudo_labels.reference_threshold",
        "pseudo_labels.crf",
        "pseudo_labels.max_side",
    ),
    "train_irn": tuple(
        f"pseudo_labels.irn.{key}" for key in IrnConfig.model_fields if key not in ("radius", "beta", "exp_times")
    ),
    "make_pseudo_masks": (
        "pseudo_labels.conf_fg_threshold",
        "pseudo_labels.conf_bg_threshold",
        "pseudo_labels.calibration",
        "pseudo_labels.reference_threshold",
        "pseudo_labels.bg_threshold",
        "pseudo_labels.crf",
        "pseudo_labels.max_side",
        "pseudo_labels.irn.radius",
        "pseudo_labels.irn.beta",
        "pseudo_labels.irn.exp_times",
    ),
    "train_seg": ("seg_train",),
    "make_seg_preds": ("seg_infer",),
    "make_test_submission": ("seg_infer",),
    # The report hashes every value that decides a result (where the data was downloaded from is in the
    # data manifest instead).
    "make_report": tuple(
        [f"data.{key}" for key in DataConfig.model_fields if key != "voc12"]
        + [name for name in Params.model_fields if name != "data"]
    ),
}
DATASET_KEYS: dict[str, tuple[str, ...]] = {
    "synthetic": ("data.synthetic",),
    "voc12": ("data.voc12.voc_url", "data.voc12.aug_url", "data.voc12.test_url", "data.voc12.archive_dir"),
}
# Values the workflow itself reads to shape its plan (how many jobs, on how many GPUs, which outputs).
WORKFLOW_KEYS: tuple[str, ...] = (
    "experiment.seeds",
    "data.dataset",
    "data.root",
    "cam_train.gpus",
    "cam_infer.num_shards",
    "pseudo_labels.variants",
    "pseudo_labels.method",
    "pseudo_labels.compare_methods",
    "pseudo_labels.irn.gpus",
    "seg_train.gpus",
)


def step_keys(step: str, params: Params) -> tuple[str, ...]:
    """The dotted keys ``step`` reads under these params (STEP_KEYS, and DATASET_KEYS for prepare_data)."""
    try:
        keys = STEP_KEYS[step]
    except KeyError:
        raise ConfigError(f"no step '{step}' reads params; steps that do: {', '.join(STEP_KEYS)}") from None
    if step == "prepare_data":
        keys = keys + DATASET_KEYS[params.data.dataset]
    return keys


def _covers(keys: tuple[str, ...], dotted: str) -> bool:
    return any(dotted == key or dotted.startswith(key + ".") for key in keys)


def _pick(dumped: dict[str, Any], keys: tuple[str, ...], prefix: str) -> dict[str, Any]:
    picked: dict[str, Any] = {}
    for name, value in dumped.items():
        dotted = prefix + name
        if _covers(keys, dotted):
            picked[name] = value
        elif isinstance(value, dict) and any(key.startswith(dotted + ".") for key in keys):
            picked[name] = _pick(value, keys, dotted + ".")
    return picked


def select_keys(params: Params, keys: tuple[str, ...]) -> dict[str, Any]:
    """Nested plain dict of only the values under ``keys`` (dotted), in schema order."""
    return _pick(params.model_dump(mode="json"), keys, "")


class StepParams:
    """The params of one step: reads inside its STEP_KEYS give the value, any other read is an error.

    A section the step reads whole comes back as the schema model itself; a section it reads in part
    comes back as another StepParams, whose ``model_dump`` holds only the declared values.
    """

    def __init__(self, model: BaseModel, step: str, keys: tuple[str, ...], source: str, prefix: str = "") -> None:
        self._model, self._step, self._keys, self._source, self._prefix = model, step, keys, source, prefix

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        dotted = self._prefix + name
        value = getattr(self._model, name)
        if _covers(self._keys, dotted):
            return value
        if isinstance(value, BaseModel) and any(key.startswith(dotted + ".") for key in self._keys):
            return StepParams(value, self._step, self._keys, self._source, dotted + ".")
        raise ConfigError(
            f"{self._source}: step '{self._step}' read '{dotted}', which is not among the values it declares "
            "(pixsup.config.STEP_KEYS): declare it there so that a change to it reruns the step"
        )

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        """The declared values below this point, as the schema model would dump them."""
        return _pick(self._model.model_dump(**kwargs), self._keys, self._prefix)


def load_step_params(path: str | os.PathLike, step: str) -> StepParams:
    """Read a step's params file (the workflow's per-step file or a whole params.yaml) for ``step``."""
    params = load_params(path)
    return StepParams(params, step, step_keys(step, params), str(path))


def json_schema() -> dict[str, Any]:
    """JSON Schema of params.yaml, generated from these models (workflow/schemas/config.schema.json)."""
    schema = Params.model_json_schema()
    schema["title"] = "pixsup params.yaml"
    schema["$comment"] = "Generated by `python -m pixsup.config --schema`; do not edit by hand."
    return schema


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="python -m pixsup.config", description="Check a params file, or print the JSON Schema of params.yaml."
    )
    parser.add_argument("params", nargs="?", help="params file to validate")
    parser.add_argument("--schema", action="store_true", help="print the JSON Schema instead")
    args = parser.parse_args(argv)
    if args.schema:
        print(json.dumps(json_schema(), indent=2))
        return 0
    if not args.params:
        parser.error("give a params file or --schema")
    try:
        load_params(args.params)
    except ConfigError as exc:
        print(f"error: {exc}")
        return 2
    print(f"{args.params}: valid")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
