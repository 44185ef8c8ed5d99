"""UEA multivariate time-series classification with Primal-Attention and every core mechanism.

Reproduces section 4.1 / Table 1 of Chen et al., "Primal-Attention: Self-attention through Asymmetric Kernel SVD
in Primal Representation" (NeurIPS 2023): PrimalFormer, Primal.+Transformer and the canonical Transformer on the
ten UEA sets of the Flowformer benchmark. ``python -m timeseries`` runs the main job (JapaneseVowels).
"""
