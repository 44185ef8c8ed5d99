"""The King James Bible (Debian ``bible-kjv`` + ``bible-kjv-text``) as an offline WikiText-style corpus.

The Primal-Attention language-modelling experiment (Chen et al., NeurIPS 2023, Table 7b) uses WikiText-103, which
cannot be downloaded here. The KJV (about 823k words, between WikiText-2 and WikiText-103 in size) is written in the
same layout, ``wiki.{train,valid,test}.tokens``: `` = Book = `` and `` = = Chapter N = = `` headings, one verse per
line, punctuation split from words, ``@-@`` inside hyphenated words. Chapters are split deterministically: in every
run of ``holdout_every`` consecutive chapters, one goes to valid and one to test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

WHOLE_BIBLE = "gen1:1-rev22:21"
SPLITS = ("train", "valid", "test")
_HEADING = re.compile(r"^(\S.*?) (\d+)$")
_VERSE = re.compile(r"^\s+(\d+) (.*)$")
_PUNCTUATION = re.compile(r"([,.;:?!()\"])")


@dataclass
class Chapter:
    """One chapter: book name, chapter number and its verses (raw text)."""

    book: str
    number: int
    verses: list[str] = field(default_factory=list)


class MissingBibleError(RuntimeError):
    """The Debian packages that hold the KJV text are not installed."""


def read_kjv(bible_command: str = "bible", spec: str = WHOLE_BIBLE) -> list[Chapter]:
    """All chapters of ``spec`` (default: Genesis 1:1 to Revelation 22:21) via the ``bible`` command.

    Raises:
        MissingBibleError: when the ``bible`` command or its data is missing (names the apt packages).
    """
    hint = "install the Debian packages with: apt-get install bible-kjv bible-kjv-text"
    if shutil.which(bible_command) is None:
        raise MissingBibleError(f"the '{bible_command}' command was not found; {hint}")
    result = subprocess.run([bible_command, "-l100000", spec], capture_output=True, text=True, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        raise MissingBibleError(f"'{bible_command} {spec}' failed ({result.stderr.strip() or 'no output'}); {hint}")
    return parse_bible_output(result.stdout)


def parse_bible_output(text: str) -> list[Chapter]:
    """Chapters from the ``bible`` command's output (headings ``Book N``, verses ``  N text``, wrapped lines)."""
    chapters: list[Chapter] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        verse = _VERSE.match(line)
        if verse and chapters:
            chapters[-1].verses.append(verse.group(2).strip())
            continue
        heading = _HEADING.match(line)
        if heading and not line.startswith(" "):
            chapters.append(Chapter(heading.group(1), int(heading.group(2))))
        elif chapters and chapters[-1].verses:
            chapters[-1].verses[-1] += " " + line.strip()  # a verse wrapped onto the next line
        else:
            raise ValueError(f"unexpected line in the bible output before any verse: {line!r}")
    if not chapters:
        raise ValueError("the bible output held no chapters")
    return chapters


def wikitext_tokenize(text: str) -> str:
    """WikiText-103 tokenisation: punctuation split off, ``'s`` separated, hyphens inside words as ``@-@``."""
    text = _PUNCTUATION.sub(r" \1 ", text)
    text = re.sub(r"(\w)-(\w)", r"\1 @-@ \2", text)
    text = re.sub(r"(\w)'s\b", r"\1 's", text)
    return " ".join(text.split())


def split_of(index: int, holdout_every: int) -> str:
    """The split of the ``index``-th chapter: one valid and one test chapter in every ``holdout_every``."""
    if holdout_every < 3:
        raise ValueError(f"holdout_every must be >= 3 (one valid, one test, at least one train), got {holdout_every}")
    position = index % holdout_every
    if position == holdout_every // 2:
        return "valid"
    if position == holdout_every - 1:
        return "test"
    return "train"


def wikitext_lines(chapters: Iterable[Chapter]) -> list[str]:
    """WikiText-layout lines (with newlines) for consecutive chapters of one split."""
    lines: list[str] = []
    book = None
    for chapter in chapters:
        if chapter.book != book:
            book = chapter.book
            lines += [" \n", f" = {book} = \n", " \n"]
        else:
            lines.append(" \n")
        lines += [f" = = Chapter {chapter.number} = = \n", " \n"]
        lines += [f" {wikitext_tokenize(verse)} \n" for verse in chapter.verses]
    return lines


def write_wikitext_splits(
    chapters: list[Chapter], out_dir: Path, holdout_every: int = 20, max_chapters: int | None = None
) -> dict[str, dict[str, int]]:
    """Write ``wiki.{train,valid,test}.tokens`` to ``out_dir``.

    Args:
        chapters: the chapters in canonical order.
        out_dir: destination directory (created).
        holdout_every: one valid and one test chapter in every ``holdout_every`` consecutive chapters.
        max_chapters: use only the first chapters (a small slice for tests); None = all.

    Returns:
        Per split: the number of chapters, lines and whitespace-separated tokens.
    """
    if max_chapters is not None:
        if max_chapters < holdout_every:
            raise ValueError(
                f"max_chapters={max_chapters} is smaller than holdout_every={holdout_every}: valid or test would be empty"
            )
        chapters = chapters[:max_chapters]
    out_dir.mkdir(parents=True, exist_ok=True)
    by_split: dict[str, list[Chapter]] = {name: [] for name in SPLITS}
    for index, chapter in enumerate(chapters):
        by_split[split_of(index, holdout_every)].append(chapter)
    stats = {}
    for name in SPLITS:
        lines = wikitext_lines(by_split[name])
        (out_dir / f"wiki.{name}.tokens").write_text("".join(lines), encoding="utf-8")
        stats[name] = {
            "chapters": len(by_split[name]),
            "lines": len(lines),
            "tokens": sum(len(line.split()) for line in lines),
        }
    return stats
