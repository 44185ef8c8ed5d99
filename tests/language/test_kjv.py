"""KJV parsing, WikiText tokenisation and the deterministic split (no Debian package needed)."""

from __future__ import annotations

import pytest

from language.cpu_worker import worker_argv
from language.data.kjv import Chapter, parse_bible_output, split_of, wikitext_tokenize, write_wikitext_splits

OUTPUT = """
Genesis 1

  1 In the beginning God created the heaven and the earth.
  2 And the earth was without form, and void; and darkness was upon the face of
the deep.

1 Kings 2

  1 Now the days of David drew nigh that he should die; and he charged Solomon his son, saying,
"""


def test_parse_bible_output_joins_wrapped_verses():
    chapters = parse_bible_output(OUTPUT)
    assert [(c.book, c.number, len(c.verses)) for c in chapters] == [("Genesis", 1, 2), ("1 Kings", 2, 1)]
    assert chapters[0].verses[1].endswith("upon the face of the deep.")
    with pytest.raises(ValueError, match="no chapters"):
        parse_bible_output("\n\n")


def test_wikitext_tokenize():
    assert wikitext_tokenize("the LORD's loving-kindness, (saith he): Amen.") == (
        "the LORD 's loving @-@ kindness , ( saith he ) : Amen ."
    )


def test_split_is_deterministic_and_balanced():
    splits = [split_of(i, 20) for i in range(40)]
    assert splits.count("valid") == 2 and splits.count("test") == 2 and splits[10] == "valid" and splits[19] == "test"
    with pytest.raises(ValueError, match="holdout_every"):
        split_of(0, 2)


def test_write_splits(tmp_path):
    chapters = [Chapter("Ruth" if i < 3 else "Esther", i + 1, [f"verse {i}."]) for i in range(6)]
    stats = write_wikitext_splits(chapters, tmp_path, holdout_every=3)
    assert {name: s["chapters"] for name, s in stats.items()} == {"train": 2, "valid": 2, "test": 2}
    valid = (tmp_path / "wiki.valid.tokens").read_text().splitlines()
    assert valid[:6] == [" ", " = Ruth = ", " ", " = = Chapter 2 = = ", " ", " verse 1 . "]
    with pytest.raises(ValueError, match="max_chapters"):
        write_wikitext_splits(chapters, tmp_path, holdout_every=3, max_chapters=2)


def test_cpu_worker_flags():
    env = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    argv = worker_argv(["data", "--cpu", "--arch", "transformer_lm"], env)
    assert argv.count("--cpu") == 1 and argv[argv.index("--distributed-rank") + 1] == "1"
    assert argv[argv.index("--distributed-world-size") + 1] == "2" and "gloo" in argv
    with pytest.raises(RuntimeError, match="torchrun"):
        worker_argv(["data"], {})
