"""ListOps (Nangia and Bowman, 2018) with the Long Range Arena grammar (Tay et al., ICLR 2021).

A sample is a nested expression over the digits 0-9 with the operators ``[MIN``, ``[MAX``, ``[MED`` (the
median, truncated to an integer) and ``[SM`` (sum modulo 10), each closed by ``]``. The LRA generator draws a
tree with ``generate_tree``: below ``max_depth`` a node is a leaf digit with probability 0.75, else an operator
with ``randint(2, max_args)`` children; the length counts operator, ``]`` and digit tokens; trees with
``min_length < length < max_length`` are kept and de-duplicated. The string form wraps every (operator, args...)
pair prefix in parentheses, as in the LRA TSV files.

The generator computes labels on the tree; :func:`evaluate_expression` is an independent stack evaluator of the
string form, used to prove every label.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
CLOSE = "]"
VALUE_PROBABILITY = 0.25  # LRA's VALUE_P: an inner node is drawn when r <= 0.25

# Fixed vocabulary (the fixed LRA pipeline keeps "]"; 0 is padding).
VOCAB = ("<pad>", *OPERATORS, CLOSE, *(str(d) for d in range(10)))
TOKEN_IDS = {token: index for index, token in enumerate(VOCAB)}


def _apply(operator: str, values: list[int]) -> int:
    if operator == "[MIN":
        return min(values)
    if operator == "[MAX":
        return max(values)
    if operator == "[MED":
        return int(np.median(values))
    if operator == "[SM":
        return sum(values) % 10
    raise ValueError(f"unknown ListOps operator {operator!r}; expected one of {OPERATORS}")


class Tree:
    """An expression tree: a digit leaf or an operator with children."""

    __slots__ = ("operator", "children", "digit", "length")

    def __init__(self, operator: str | None = None, children: list[Tree] | None = None, digit: int | None = None):
        self.operator = operator
        self.children = children or []
        self.digit = digit
        self.length = 1 if operator is None else 2 + sum(child.length for child in self.children)

    def value(self) -> int:
        """The label: the tree evaluated recursively."""
        if self.operator is None:
            return self.digit
        return _apply(self.operator, [child.value() for child in self.children])

    def to_string(self) -> str:
        """The LRA string form: left-nested ``( ... )`` pairs, e.g. ``( ( ( [MAX 2 ) 9 ) ] )``."""
        if self.operator is None:
            return str(self.digit)
        text = f"( {self.operator} {self.children[0].to_string()} )"
        for child in self.children[1:]:
            text = f"( {text} {child.to_string()} )"
        return f"( {text} {CLOSE} )"


class _TooLong(Exception):
    """A tree under construction already exceeds the length bound (it would be rejected anyway)."""


def generate_tree(
    rng: random.Random, depth: int = 1, max_depth: int = 10, max_args: int = 10, limit: int | None = None
) -> Tree:
    """Sample a tree exactly as LRA's ``generate_tree`` (leaf with probability 0.75 below ``max_depth``).

    Args:
        limit: give up (raise ``_TooLong``) as soon as the tree has ``limit`` tokens; rejection sampling with an
            upper bound then accepts the same distribution without building huge trees.
    """
    budget = [limit if limit is not None else float("inf")]

    def grow(level: int) -> Tree:
        r = rng.random() if level < max_depth else 1.0
        if r > VALUE_PROBABILITY:
            budget[0] -= 1
            if budget[0] < 0:
                raise _TooLong
            return Tree(digit=rng.randint(0, 9))
        count = rng.randint(2, max_args)
        operator = rng.choice(OPERATORS)
        budget[0] -= 2
        return Tree(operator, [grow(level + 1) for _ in range(count)])

    return grow(depth)


def generate_examples(
    count: int,
    seed: int = 0,
    min_length: int = 500,
    max_length: int = 2000,
    max_depth: int = 10,
    max_args: int = 10,
) -> Iterator[tuple[str, int]]:
    """Yield ``count`` distinct ``(source, label)`` pairs with ``min_length < length < max_length``.

    Raises:
        ValueError: if the bounds cannot be met (``max_length - min_length < 2`` or ``min_length < 0``).
    """
    if min_length < 0 or max_length - min_length < 2:
        raise ValueError(
            f"need 0 <= min_length and max_length - min_length >= 2 (length is strictly between them), "
            f"got min_length={min_length}, max_length={max_length}"
        )
    rng = random.Random(seed)
    seen: set[str] = set()
    while len(seen) < count:
        try:
            tree = generate_tree(rng, max_depth=max_depth, max_args=max_args, limit=max_length - 1)
        except _TooLong:
            continue
        if not min_length < tree.length < max_length:
            continue
        source = tree.to_string()
        if source in seen:
            continue
        seen.add(source)
        yield source, tree.value()


def evaluate_expression(source: str) -> int:
    """Evaluate a ListOps string with an explicit stack, independently of :class:`Tree`.

    Parentheses are ignored; an operator token opens a frame, digits are appended to the innermost frame and
    ``]`` closes it. Works on the LRA string form and on a bracket-only form alike.

    Raises:
        ValueError: on an unknown token, an unbalanced expression or an operator without arguments.
    """
    stack: list[tuple[str, list[int]]] = []
    result: int | None = None
    for token in source.split():
        if token in ("(", ")"):
            continue
        if token in OPERATORS:
            stack.append((token, []))
        elif token == CLOSE:
            if not stack:
                raise ValueError(f"unbalanced ListOps expression: ']' without an operator in {source[:80]!r}")
            operator, arguments = stack.pop()
            if not arguments:
                raise ValueError(f"operator {operator} has no arguments in {source[:80]!r}")
            value = _apply(operator, arguments)
            if stack:
                stack[-1][1].append(value)
            else:
                result = value
        elif token.isdigit() and len(token) == 1:
            if stack:
                stack[-1][1].append(int(token))
            elif result is None:
                result = int(token)
            else:
                raise ValueError(f"two top-level values in ListOps expression {source[:80]!r}")
        else:
            raise ValueError(f"unknown ListOps token {token!r}; expected one of {VOCAB[1:]} or parentheses")
    if stack or result is None:
        raise ValueError(f"unbalanced or empty ListOps expression {source[:80]!r}")
    return result


def tokenize(source: str, drop_brackets: bool = False) -> np.ndarray:
    """Token ids of a ListOps string (parentheses dropped, ``]`` kept), as int16.

    Args:
        source: the LRA string form.
        drop_brackets: reproduce the pre-2021 LRA pipeline copied by Nystromformer/Skyformer/Primal-Attention,
            whose alphanumeric tokenizer also drops ``[`` and ``]`` (operators become MIN/MAX/MED/SM, nesting is
            lost). The ids are the same; ``]`` simply never occurs.

    Raises:
        ValueError: on an unknown token.
    """
    ids = []
    for token in source.split():
        if token in ("(", ")") or (drop_brackets and token == CLOSE):
            continue
        if token not in TOKEN_IDS or token == VOCAB[0]:
            raise ValueError(f"unknown ListOps token {token!r}; expected one of {VOCAB[1:]} or parentheses")
        ids.append(TOKEN_IDS[token])
    return np.asarray(ids, dtype=np.int16)
