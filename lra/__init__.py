"""Long Range Arena (Tay et al., ICLR 2021) and PSF's synthetic long-sequence tasks for the core attention library.

The suite reproduces the LRA experiments of Primal-Attention (Chen et al., NeurIPS 2023, Tables 2 and 3) on the
shared PyTorch LRA model of Nystromformer/Skyformer: real preprocessing of the ``lra_release`` files into compact
arrays, offline generators (ListOps, Pathfinder-style images, Adding, Temporal Order), one model with attention by
registry name, a trainer and the time/memory protocol. Entry point: ``python -m lra --help``.
"""
