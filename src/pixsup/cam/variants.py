"""The CAM networks the workflow trains, named as their results folders, and the loss terms of each.

=====================  =====  =====  ==========================================
variant                RCM    MAM    starts from
=====================  =====  =====  ==========================================
support                off    off    ImageNet weights (or random): the SupportNet
baseline_same_budget   off    off    the SupportNet, classification only again
rcm                    on     off    the SupportNet, which supervises it
mam                    off    on     the SupportNet, which supervises it
full                   on     on     the SupportNet, which supervises it
=====================  =====  =====  ==========================================

``baseline_same_budget`` trains as long in total as a MainNet (SupportNet epochs
plus MainNet epochs): the ablation's fair baseline. With ``cam_train.support.kind:
ema`` the MainNets may also start without a SupportNet (their SupportNet is then an
average of themselves). No torch here: the workflow reads this table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    rcm: bool
    mam: bool
    from_support: bool  # continues from the trained SupportNet's weights

    @property
    def self_supervised(self) -> bool:
        return self.rcm or self.mam


VARIANTS: dict[str, Variant] = {
    "support": Variant(rcm=False, mam=False, from_support=False),
    "baseline_same_budget": Variant(rcm=False, mam=False, from_support=True),
    "rcm": Variant(rcm=True, mam=False, from_support=True),
    "mam": Variant(rcm=False, mam=True, from_support=True),
    "full": Variant(rcm=True, mam=True, from_support=True),
}
