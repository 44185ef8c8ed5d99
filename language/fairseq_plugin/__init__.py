"""fairseq plugin (``--user-dir language/fairseq_plugin``) for Primal-Attention language modelling (Chen et al.,
NeurIPS 2023).

Importing it registers:

- models ``core_attention_lm`` and ``transformer_lm_primal`` (:mod:`language.fairseq_plugin.model`);
- the criterion ``cross_entropy_ksvd`` (:mod:`language.fairseq_plugin.criterion`).
"""

from language.fairseq_plugin import criterion, model  # noqa: F401
from language.fairseq_plugin.adapter import CoreSelfAttention

__all__ = ["CoreSelfAttention"]
