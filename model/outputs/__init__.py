"""Results as files and pictures: PNG, NPZ and JSON encoders and the pixel-ownership rule
(``encoding``), overlays and IUV panels (``visualize``)."""
