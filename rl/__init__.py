"""Offline RL suite: the Decision Transformer (Chen et al., 2021) and Primal.+DT (Chen et al., NeurIPS 2023,
"Primal-Attention: Self-attention through Asymmetric Kernel SVD in Primal Representation") on D4RL-layout data,
evaluated in gymnasium MuJoCo. Entry point: ``python -m rl --help``.
"""
