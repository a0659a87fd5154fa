"""Continuous regression of motion from audio features.

- :mod:`motion.regression.regressor`: ``FaceFormerRegressor``, the FaceFormer-style autoregressive baseline.
"""

from motion.regression.regressor import FaceFormerRegressor

__all__ = ["FaceFormerRegressor"]
