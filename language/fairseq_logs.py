"""Reading fairseq's machine-readable output: ``--log-format json`` training records and the ``fairseq-eval-lm``
summary line."""

from __future__ import annotations

import json
import re

_RECORD = re.compile(r"\|\s*(train_inner|train|valid)\s*\|\s*(\{.*\})\s*$")
_EVAL = re.compile(r"Loss \(base 2\): ([0-9.eE+-]+), Perplexity: ([0-9.eE+-]+|inf)")
_EVALUATED = re.compile(r"Evaluated ([0-9,]+) tokens in ([0-9.]+)s")


def parse_record(line: str) -> tuple[str, dict] | None:
    """``("train_inner" | "train" | "valid", stats)`` for a fairseq JSON log line, else None.

    Numbers fairseq logs as strings are converted to float.
    """
    match = _RECORD.search(line)
    if not match:
        return None
    try:
        raw = json.loads(match.group(2))
    except json.JSONDecodeError:
        return None
    return match.group(1), {key: _number(value) for key, value in raw.items()}


def parse_eval_lm(output: str) -> dict:
    """Loss (base 2), perplexity and token count from ``fairseq-eval-lm`` output.

    Raises:
        ValueError: when the summary line is missing.
    """
    match = _EVAL.search(output)
    if not match:
        raise ValueError("fairseq-eval-lm printed no 'Loss (base 2): ..., Perplexity: ...' line")
    result = {"loss_base2": float(match.group(1)), "ppl": float(match.group(2))}
    evaluated = _EVALUATED.search(output)
    if evaluated:
        result["tokens"] = int(evaluated.group(1).replace(",", ""))
        result["eval_seconds"] = float(evaluated.group(2))
    return result


def _number(value):
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value
