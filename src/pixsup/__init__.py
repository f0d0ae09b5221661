"""pixsup: pixel-level self-supervision for weakly supervised semantic segmentation.

MainNet + SupportNet with the Regional Contrastive Module (RCM) and the
Multi-scale Attentive Module (MAM), and the standard WSSS pipeline around them.
"""

__version__ = "0.1.0"
