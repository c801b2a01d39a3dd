"""Interpretation and robustness of a compiled model (``nndsl explain``, ``nndsl robust``).

Attributions, Grad-CAM, occlusion, LIME and KernelSHAP come from captum (the ``explain``
extra); permutation importance and attention maps are nndsl's own; the attacks are captum's
FGSM and PGD. See docs/EXPLAIN.md.
"""

from nndsl.explain.attribution import METHODS, Explanation, explain
from nndsl.explain.common import ExplainError, Samples, load_samples
from nndsl.explain.robust import ATTACKS, RobustResult, robustness

__all__ = ["ATTACKS", "METHODS", "ExplainError", "Explanation", "RobustResult", "Samples",
           "explain", "load_samples", "robustness"]
