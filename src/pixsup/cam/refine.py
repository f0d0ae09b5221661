"""Prototype-similarity refinement of CAMs at inference (``cam_infer.refine``).

A CAM lights the most discriminative part of an object; the rest of the object is
often close to that part in feature space. The refinement takes, per image and
class, the mean feature over the pixels where the class's CAM is confident (the
image-specific class prototype) and replaces the CAM by each pixel's similarity
to it, so activation follows feature similarity instead of discriminativeness.

The features are centred on the image's mean feature before the cosine: the
backbone's features are ReLU outputs, all non-negative, so their raw cosines
are positive everywhere and the background would light up with the object.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def prototype_similarity(cam: Tensor, features: Tensor, threshold: float) -> Tensor:
    """Refined maps (B, K, h, w) of ReLU'd CAMs ``cam`` (B, K, h, w) and pixel ``features`` (B, D, h, w).

    For class k of image b the prototype is the mean of the centred, unit-length
    features over the pixels where ``cam[b, k] / max(cam[b, k]) >= threshold``; the map is
    ReLU of the cosine between each pixel's centred feature and that prototype. A class
    whose CAM is zero everywhere gets a zero map.
    """
    if cam.shape[0] != features.shape[0] or cam.shape[2:] != features.shape[2:]:
        raise ValueError(f"CAMs {tuple(cam.shape)} and features {tuple(features.shape)} do not share a grid")
    centred = F.normalize(features - features.mean(dim=(2, 3), keepdim=True), dim=1)
    peak = cam.flatten(2).amax(dim=2)[:, :, None, None]
    confident = ((cam >= threshold * peak) & (peak > 0)).to(centred.dtype)
    prototypes = torch.einsum("bkhw,bdhw->bkd", confident, centred)
    prototypes = F.normalize(prototypes, dim=2)  # mean direction; an empty region stays zero
    return F.relu(torch.einsum("bkd,bdhw->bkhw", prototypes, centred))
