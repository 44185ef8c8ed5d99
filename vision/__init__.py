"""Vision suite: DeiT and Primal.+DeiT on ImageNet-1K, ImageNet-100 and Fashion-MNIST through timm.

Reproduces the image-classification experiments of Primal-Attention (Chen et al., NeurIPS 2023, Table 7a and
Figure 2). Importing the package registers ``primal_deit_{tiny,small,base}_patch16_224`` with timm.
"""

from vision.adapter import CoreAttention, timm_attention_layer
from vision.models import create_vit, make_primal_plus, primal_block_indices
from vision.pretrained import load_pretrained

__all__ = [
    "CoreAttention",
    "create_vit",
    "load_pretrained",
    "make_primal_plus",
    "primal_block_indices",
    "timm_attention_layer",
]
