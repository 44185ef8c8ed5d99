"""Language modelling suite: fairseq ``transformer_lm`` with Primal-Attention (Chen et al., NeurIPS 2023,
"Primal-Attention: Self-attention through Asymmetric Kernel SVD in Primal Representation", Table 7b) and any
causal ``core`` attention, on WikiText-103 or any corpus in its layout (offline: the King James Bible).

Entry point: ``python -m language --help``.
"""

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent / "fairseq_plugin"
