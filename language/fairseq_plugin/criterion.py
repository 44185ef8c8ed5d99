"""Cross-entropy plus the Primal-Attention KSVD regulariser (Chen et al., NeurIPS 2023, section 1.4 of the fact
sheet): ``loss = NLL + eta * L_KSVD`` with L_KSVD gathered by :func:`core.ksvd_loss` from every primal layer.

fairseq sums the token NLL over a batch and divides gradients by ``sample_size`` (the number of target tokens).
With ``--ksvd-scaling token`` (default) the KSVD term is multiplied by ``sample_size`` before that division, so the
optimised objective is ``mean token NLL + eta * L_KSVD`` whatever the batch size or ``--update-freq``. The official
code adds ``eta * L_KSVD`` to the summed NLL, i.e. an effective weight of ``eta / ntokens`` (about 5e-6 for 2048-token
batches); ``--ksvd-scaling sum`` reproduces that.

Logged: ``loss`` (the optimised objective per token, base 2), ``nll_loss`` and ``ppl`` (the pure language-model
terms, never including KSVD) and ``ksvd`` (L_KSVD averaged over batches).
"""

import math
from dataclasses import dataclass, field

import torch
from fairseq import utils
from fairseq.criterions import register_criterion
from fairseq.criterions.cross_entropy import CrossEntropyCriterion, CrossEntropyCriterionConfig
from fairseq.dataclass import ChoiceEnum
from fairseq.logging import metrics

import core

KSVD_SCALINGS = ChoiceEnum(["token", "sum"])


@dataclass
class KSVDCrossEntropyConfig(CrossEntropyCriterionConfig):
    ksvd_eta: float = field(default=0.1, metadata={"help": "eta, the weight of the KSVD loss (the paper's NLP code: 0.1)"})
    ksvd_scaling: KSVD_SCALINGS = field(
        default="token",
        metadata={"help": "token: eta * L_KSVD per target token (added as eta * L_KSVD * sample_size to the summed NLL); "
                  "sum: added once to the summed NLL, as the official code does (negligible weight)"},
    )


@register_criterion("cross_entropy_ksvd", dataclass=KSVDCrossEntropyConfig)
class KSVDCrossEntropyCriterion(CrossEntropyCriterion):
    """Token cross-entropy plus ``eta`` times the KSVD loss of the model's primal layers."""

    def __init__(self, task, sentence_avg: bool, ksvd_eta: float = 0.1, ksvd_scaling: str = "token"):
        super().__init__(task, sentence_avg)
        if ksvd_eta < 0:
            raise ValueError(f"--ksvd-eta must be >= 0, got {ksvd_eta}")
        if str(ksvd_scaling) not in ("token", "sum"):
            raise ValueError(f"--ksvd-scaling must be 'token' or 'sum', got {ksvd_scaling!r}")
        self.ksvd_eta = ksvd_eta
        self.ksvd_scaling = str(ksvd_scaling)

    def forward(self, model, sample, reduce=True):
        """Loss of one batch.

        Returns:
            tuple: the summed loss (a scalar), the sample size fairseq divides gradients by, and logging outputs.
        """
        net_output = model(**sample["net_input"])
        nll, _ = self.compute_loss(model, net_output, sample, reduce=reduce)
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        ksvd = core.ksvd_loss(model)
        scale = sample_size if self.ksvd_scaling == "token" else 1.0
        weighted = self.ksvd_eta * scale * ksvd
        loss = nll + weighted.to(nll.dtype) if reduce else nll
        logging_output = {
            "loss": (nll.detach().sum() + weighted.detach()).data if not reduce else loss.data,
            "nll_loss": nll.detach().sum().data,
            "ksvd": ksvd.detach().float() * sample_size,
            "ntokens": sample["ntokens"],
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
        }
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        """Aggregate logging outputs from data-parallel workers (base-2 losses, as fairseq logs them)."""
        loss_sum = sum(log.get("loss", 0) for log in logging_outputs)
        nll_sum = sum(log.get("nll_loss", 0) for log in logging_outputs)
        ksvd_sum = sum(log.get("ksvd", 0) for log in logging_outputs)
        ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        metrics.log_scalar("loss", loss_sum / sample_size / math.log(2), sample_size, round=3)
        metrics.log_scalar("nll_loss", nll_sum / ntokens / math.log(2), ntokens, round=3)
        metrics.log_scalar("ksvd", _as_float(ksvd_sum) / sample_size, sample_size, round=5)
        metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))


def _as_float(value) -> float:
    return value.item() if torch.is_tensor(value) else float(value)
