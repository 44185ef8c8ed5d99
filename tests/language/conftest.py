"""Shared fixtures of the language-suite tests: tiny fairseq models built in-process, a tiny KJV corpus."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest

fairseq = pytest.importorskip("fairseq", reason="fairseq is not installed: pip install --no-build-isolation fairseq-fixed")

from fairseq import options, tasks  # noqa: E402
from fairseq.dataclass.utils import convert_namespace_to_omegaconf  # noqa: E402

from language import PLUGIN_DIR  # noqa: E402

WORDS = (
    "the of and to in that he shall unto for i his a lord they be is him not them it with all thou thy was god "
    "which my me said but ye their have"
).split()


@pytest.fixture(scope="session")
def dict_dir(tmp_path_factory) -> Path:
    """A data directory holding only a fairseq ``dict.txt`` (enough to build a language-modelling task)."""
    path = tmp_path_factory.mktemp("lm_dict")
    with open(path / "dict.txt", "w") as handle:
        for i, word in enumerate(WORDS):
            handle.write(f"{word} {1000 - i}\n")
    return path


@functools.cache
def _build_lm(data_dir: Path, arch: str, *extra: str, layers: int = 2, dim: int = 32, heads: int = 2):
    """Build (task, model, config) exactly as ``fairseq-train`` would, with the plugin loaded.

    Cached: tests that share a configuration share the model (use it in eval mode, do not train it).
    """
    argv = [
        str(data_dir), "--user-dir", str(PLUGIN_DIR), "--task", "language_modeling", "--arch", arch,
        "--decoder-layers", str(layers), "--decoder-embed-dim", str(dim), "--decoder-input-dim", str(dim),
        "--decoder-output-dim", str(dim), "--decoder-ffn-embed-dim", str(2 * dim),
        "--decoder-attention-heads", str(heads), "--tokens-per-sample", "32", "--dropout", "0", "--cpu",
        "--criterion", "cross_entropy_ksvd", *extra,
    ]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    return task, model, cfg


@pytest.fixture(scope="session")
def build_lm():
    """The cached model builder :func:`_build_lm` (a fixture, since test modules cannot import conftest)."""
    return _build_lm


@pytest.fixture(scope="session")
def kjv_available() -> None:
    if shutil.which("bible") is None or not Path("/usr/lib/bible.data").exists():
        pytest.skip("the King James Bible is not installed: apt-get install bible-kjv bible-kjv-text")
