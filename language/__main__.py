"""``python -m language``: the language-modelling suite of Primal-Attention (Chen et al., NeurIPS 2023).

    python -m language prepare-kjv --out data/kjv --dest data-bin/kjv
    python -m language prepare-wikitext --raw-dir wikitext-103 --dest data-bin/wikitext-103
    python -m language train --config kjv-primal --data data-bin/kjv --save-dir runs/kjv-primal --minutes 10
    python -m language eval --data data-bin/kjv --path runs/kjv-primal/checkpoint_best.pt --subset valid
    python -m language benchmark-kjv --data data-bin/kjv --minutes 10
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys

from language import benchmark, evaluate, prepare, train
from language.data.corpus import CorpusLayoutError
from language.data.kjv import MissingBibleError
from language.process import FairseqNotFoundError, terminate_running


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m language",
        description="fairseq language modelling with Primal-Attention and any causal core attention "
                    "(plugin: --user-dir language/fairseq_plugin).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    commands = parser.add_subparsers(dest="command", required=True)
    kjv = commands.add_parser("prepare-kjv", help="King James Bible (Debian bible-kjv) -> WikiText-style splits",
                              description="Write the KJV as wiki.{train,valid,test}.tokens and optionally binarise it.")
    prepare.add_kjv_arguments(kjv)
    kjv.set_defaults(run=prepare.main_kjv)
    wiki = commands.add_parser("prepare-wikitext", help="wiki.*.tokens -> fairseq-preprocess (any corpus in that layout)",
                               description="Binarise a corpus in the WikiText layout with fairseq-preprocess --only-source.")
    prepare.add_wikitext_arguments(wiki)
    wiki.set_defaults(run=prepare.main_wikitext)
    trainer = commands.add_parser("train", help="fairseq-train with a named configuration and the plugin",
                                  description=train.__doc__)
    train.add_arguments(trainer)
    trainer.set_defaults(run=train.main)
    evaluator = commands.add_parser("eval", help="perplexity with fairseq-eval-lm", description=evaluate.__doc__)
    evaluate.add_arguments(evaluator)
    evaluator.set_defaults(run=evaluate.main)
    bench = commands.add_parser("benchmark-kjv", help="Primal.+ vs softmax transformer_lm trained side by side on KJV",
                                description=benchmark.__doc__)
    benchmark.add_arguments(bench)
    bench.set_defaults(run=benchmark.main)
    return parser


def _stop(signum, frame) -> None:
    terminate_running()  # fairseq subprocesses must not outlive a killed or timed-out command
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None:
        signal.signal(signal.SIGTERM, _stop)
    try:
        return args.run(args)
    except (MissingBibleError, CorpusLayoutError, FairseqNotFoundError, FileNotFoundError, ValueError,
            RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(f"error: {error.cmd[0]} exited with status {error.returncode}; {error.output}", file=sys.stderr)
        return 1
    except subprocess.TimeoutExpired as error:
        print(f"error: timed out after {error.timeout:.0f} s: {' '.join(error.cmd[:2])} ...", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
