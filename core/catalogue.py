"""``python -m core.catalogue``: the registry as a markdown table (names, capabilities, complexity, summary).

``docs/attention.md`` embeds this table; a test checks that the two agree.
"""

from __future__ import annotations

import argparse

from core.registry import attention_info, list_attentions


def catalogue_table() -> str:
    """Markdown table of every registered mechanism."""
    lines = [
        "| name | causal | padding mask | decoding | approximates | complexity | summary |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in list_attentions():
        info = attention_info(name)
        flags = ["yes" if flag else "no" for flag in (info.causal, info.key_padding_mask, info.incremental)]
        lines.append(f"| `{name}` | {' | '.join(flags)} | {info.approximates or '-'} | {info.complexity} | {info.summary} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m core.catalogue", description=__doc__).parse_args(argv)
    print(catalogue_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
