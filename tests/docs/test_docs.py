"""The docs stay true: every relative link resolves, every documented command answers ``--help``, every script exists.

Scope: README.md and every Markdown file under docs/. Commands are read from bash code blocks and from inline code
that starts with ``python -m``, ``bash`` or ``sbatch``. Each distinct ``python -m MODULE [SUBCOMMAND]`` runs once
with ``--help`` (through runpy, one subprocess per suite), and a command shown with ``--help`` runs exactly as
shown. Paths of repository files in those commands (``bash lra/run.sh``, ``--config rl/configs/paper.json``,
``sbatch vision/slurm/...``) must exist. A module whose optional dependency is not installed is skipped with the
name of the missing package.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = {"core", "lra", "timeseries", "vision", "language", "rl"}
# first folders of repository paths that commands may name; runs/ and data/ are outputs, so not checked
REPOSITORY_FOLDERS = PROJECT_PACKAGES | {"scripts", "envs", "tests", "docs"}
HELP_FLAGS = ("--help", "-h")
HELP_TIMEOUT = 120.0

FENCE = re.compile(r"^(```|~~~)\s*([\w+-]*)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
INLINE_COMMAND = ("python -m ", "bash ", "sbatch ")
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(].*?[\"')])?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$")
SUBCOMMAND = re.compile(r"[a-z][a-z0-9_-]*")
MODULE = re.compile(r"[A-Za-z_][\w.]*")
REPO_PATH = re.compile(r"(?:\./)?[\w.-]+(?:/[\w.-]+)+\.(?:sh|sbatch|py|json|ya?ml|toml|txt|cfg)")
PLACEHOLDER = re.compile(r"[<>{}$*]|\.\.\.")
SHELL_WORDS = {"bash", "sh", "sbatch", "srun", "exec", "nohup", "time"}


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------------------------------------- links


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code spans blanked out."""
    lines, fence = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line.strip())
        if match:
            if fence is None:
                fence = match.group(1)
            elif match.group(1) == fence:
                fence = None
            continue
        if fence is None:
            lines.append((number, INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)))
    return lines


def relative_links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every inline or reference link that is not a URL or an in-page anchor."""
    links = []
    for number, line in prose_lines(text):
        targets = LINK.findall(line)
        reference = REFERENCE.match(line)
        if reference:
            targets.append(reference.group(1))
        for target in targets:
            if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("#", "//")):
                continue  # http:, https:, mailto:, ... and anchors within the page
            links.append((number, target))
    return links


def broken_links(path: Path, text: str) -> list[str]:
    """``file:line: target`` for each relative link of ``text`` (the content of ``path``) that names no file."""
    broken = []
    for number, target in relative_links(text):
        file_part = unquote(target.split("#", 1)[0].split("?", 1)[0])
        if not file_part:
            continue
        resolved = (ROOT / file_part.lstrip("/")) if file_part.startswith("/") else (path.parent / file_part)
        if not resolved.exists():
            broken.append(f"{_relative(path)}:{number}: {target}")
    return broken


# -------------------------------------------------------------------------------------------------------- commands


@dataclass
class DocumentedCommands:
    """What the commands of some Markdown text ask for, with where each was seen."""

    help_calls: dict[tuple[str, tuple[str, ...]], list[str]] = field(default_factory=lambda: defaultdict(list))
    paths: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    executables: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


def shell_snippets(text: str) -> list[tuple[int, str]]:
    """(line number, logical line) of bash code blocks, continuation lines joined, plus inline commands."""
    snippets, fence, language, pending = [], None, "", None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line.strip())
        if match and (fence is None or match.group(1) == fence):
            fence, language = (match.group(1), match.group(2).lower()) if fence is None else (None, "")
            continue
        if fence is None:
            for span in INLINE_CODE.findall(line):
                if span[1].strip().startswith(INLINE_COMMAND):
                    snippets.append((number, span[1].strip()))
            continue
        if language not in ("bash", "sh", "shell", "console"):
            continue
        stripped = line.rstrip()
        if pending is not None:
            start, previous = pending
            stripped = previous + " " + stripped.lstrip()
        else:
            start = number
        if stripped.endswith("\\"):
            pending = (start, stripped[:-1])
            continue
        pending = None
        snippets.append((start, stripped.lstrip("$ ").strip()))
    return snippets


def simple_commands(line: str) -> list[list[str]]:
    """The simple commands of one shell line: words split like the shell, comments dropped, split at && ; | ||."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return []
    commands, current = [], []
    for word in words:
        if word in ("&&", "||", ";", "|", "&"):
            commands.append(current)
            current = []
        else:
            current.append(word.rstrip(";"))
    commands.append(current)
    return [command for command in commands if command]


def collect_commands(text: str, origin: str, into: DocumentedCommands | None = None) -> DocumentedCommands:
    """Every ``python -m`` help call, repository path and directly executed script of ``text``'s commands."""
    found = into if into is not None else DocumentedCommands()
    pending = [(number, line) for number, line in shell_snippets(text)]
    while pending:
        number, line = pending.pop()
        where = f"{origin}:{number}"
        for words in simple_commands(line):
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                words = words[1:]  # VAR=value prefixes
            for word in words:
                value = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
                if " " in value and value.startswith("python "):
                    pending.append((number, value))  # a command passed as an argument (sweeps)
                elif REPO_PATH.fullmatch(value) and not PLACEHOLDER.search(value):
                    if value.removeprefix("./").split("/", 1)[0] in REPOSITORY_FOLDERS:
                        found.paths[value].append(where)
            if not words:
                continue
            if REPO_PATH.fullmatch(words[0]) and words[0].endswith(".sh"):
                found.executables[words[0]].append(where)  # run as ./script: it must be executable
            if words[0] in ("python", "python3") and len(words) >= 3 and words[1] == "-m":
                module, rest = words[2], words[3:]
                if not MODULE.fullmatch(module):
                    continue
                helps = [i for i, word in enumerate(rest) if word in HELP_FLAGS]
                if helps:
                    argv = tuple(rest[: helps[0]]) + ("--help",)
                elif rest and SUBCOMMAND.fullmatch(rest[0]):
                    argv = (rest[0], "--help")
                else:
                    argv = ("--help",)
                if not any(PLACEHOLDER.search(word) for word in argv):
                    found.help_calls[(module, argv)].append(where)
    return found


def documented_commands() -> DocumentedCommands:
    found = DocumentedCommands()
    for path in markdown_files():
        collect_commands(path.read_text(), _relative(path), into=found)
    return found


# ------------------------------------------------------------------------------------------------------ help runner

_MARKER = "DOCS_HELP_RESULT "
_DRIVER = r"""
import contextlib, io, json, runpy, sys
results = []
for module, argv in json.loads(sys.argv[1]):
    captured = io.StringIO()
    code, missing, error = 0, None, None
    sys.argv = [module, *argv]
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except ModuleNotFoundError as exc:
        code, missing, error = 1, exc.name, repr(exc)
    except BaseException as exc:
        code, error = 1, repr(exc)
    results.append({"module": module, "argv": argv, "code": code, "missing": missing, "error": error,
                    "output": captured.getvalue()})
print(__MARKER__ + json.dumps(results))
""".replace("__MARKER__", repr(_MARKER))


def run_help_calls(calls: list[tuple[str, tuple[str, ...]]], timeout: float = HELP_TIMEOUT) -> list[dict]:
    """Run ``python -m module *argv`` for each (module, argv) in one fresh interpreter, through runpy.

    Returns:
        one dict per call: module, argv, exit code, captured output, and the missing module of an ImportError.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    payload = json.dumps([[module, list(argv)] for module, argv in calls])
    done = subprocess.run([sys.executable, "-c", _DRIVER, payload], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env)
    for line in done.stdout.splitlines():
        if line.startswith(_MARKER):
            return json.loads(line[len(_MARKER):])
    raise AssertionError(f"the help driver crashed (exit {done.returncode}): {done.stderr[-2000:]}")


def help_problems(results: list[dict]) -> tuple[list[tuple[tuple[str, ...], str]], str | None]:
    """((argv, what went wrong) per failure, name of a missing optional package or None) for :func:`run_help_calls`."""
    failures, optional = [], None
    for result in results:
        argv = tuple(result["argv"])
        missing = result["missing"]
        if missing and missing.split(".")[0] not in PROJECT_PACKAGES:
            optional = missing
            continue
        if result["code"] != 0:
            detail = result["error"] or result["output"].strip()[-800:]
            failures.append((argv, f"exit {result['code']}: {detail}"))
        elif "usage" not in result["output"].lower():
            failures.append((argv, "exit 0 but printed no usage (does the command ignore --help?)"))
    return failures, optional


# ----------------------------------------------------------------------------------------------------------- tests

COMMANDS = documented_commands()
CALLS_BY_MODULE: dict[str, list[tuple[str, ...]]] = defaultdict(list)
for _module, _argv in sorted(COMMANDS.help_calls):
    CALLS_BY_MODULE[_module].append(_argv)


def interpreter_group(module: str) -> str:
    """Calls of one suite share an interpreter; core and non-project modules share another (isolation per suite)."""
    top = module.split(".")[0]
    return top if top in PROJECT_PACKAGES else "core"


@pytest.fixture(scope="module")
def help_results() -> dict[str, list[dict] | BaseException]:
    """module -> results of its help calls; one interpreter per suite, two at a time (each imports torch)."""
    groups: dict[str, list[tuple[str, tuple[str, ...]]]] = defaultdict(list)
    for module, calls in CALLS_BY_MODULE.items():
        groups[interpreter_group(module)] += [(module, argv) for argv in calls]

    def run(calls: list[tuple[str, tuple[str, ...]]]) -> list[dict] | BaseException:
        try:
            return run_help_calls(calls)
        except (AssertionError, subprocess.TimeoutExpired) as error:
            return error

    by_module: dict[str, list[dict] | BaseException] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for calls, results in zip(groups.values(), pool.map(run, groups.values())):
            for module in dict.fromkeys(module for module, _ in calls):
                if isinstance(results, BaseException):
                    by_module[module] = results
                else:
                    by_module[module] = [result for result in results if result["module"] == module]
    return by_module


@pytest.mark.parametrize("path", markdown_files(), ids=_relative)
def test_relative_links_resolve(path):
    broken = broken_links(path, path.read_text())
    assert not broken, "links to missing files:\n" + "\n".join(broken)


def pages_reachable_from(index: Path) -> set[Path]:
    """Markdown files reached from ``index`` through relative links, following links inside the same folder tree."""
    seen, todo = {index.resolve()}, [index.resolve()]
    while todo:
        page = todo.pop()
        for _, target in relative_links(page.read_text()):
            linked = (page.parent / unquote(target.split("#", 1)[0])).resolve()
            if linked.suffix == ".md" and linked.is_file() and linked.is_relative_to(index.parent.resolve()):
                if linked not in seen:
                    seen.add(linked)
                    todo.append(linked)
    return seen


def test_results_index_reaches_every_results_page():
    index = ROOT / "docs" / "results" / "README.md"
    if not index.exists():
        pytest.skip("docs/results/README.md does not exist yet")
    pages = {path.resolve() for path in index.parent.rglob("*.md")}
    unlisted = sorted(_relative(path) for path in pages - pages_reachable_from(index))
    assert not unlisted, "results pages that docs/results/README.md does not lead to (add a row):\n" + "\n".join(unlisted)


def test_repository_paths_in_commands_exist():
    missing = [f"{where[0]}: {path}" for path, where in COMMANDS.paths.items() if not (ROOT / path).exists()]
    assert not missing, "commands name files that do not exist:\n" + "\n".join(missing)


def test_scripts_run_directly_are_executable():
    bad = [f"{where[0]}: {path}" for path, where in COMMANDS.executables.items()
           if not os.access(ROOT / path, os.X_OK)]
    assert not bad, "scripts shown as ./path (no bash) must be executable:\n" + "\n".join(bad)


def test_docs_show_commands_of_every_suite():
    assert {"core.bench", "timeseries", "lra", "vision", "language", "rl"} <= set(CALLS_BY_MODULE)


@pytest.mark.parametrize("module", sorted(CALLS_BY_MODULE))
def test_documented_commands_answer_help(module, help_results):
    results = help_results[module]
    if isinstance(results, BaseException):
        pytest.fail(f"python -m {module}: {results}")
    failures, optional = help_problems(results)
    lines = [f"{COMMANDS.help_calls[(module, argv)][0]}: python -m {module} {' '.join(argv)}: {problem}"
             for argv, problem in failures]
    assert not lines, "documented commands fail with --help:\n" + "\n".join(lines)
    if optional:
        pytest.skip(f"python -m {module}: optional dependency {optional!r} is not installed")


# ---------------------------------------------------------------------------------- the checks can fail (synthetic)

SYNTHETIC = """# Title

[ok](present.md) and [anchor only](#title) and [web](https://example.org/x.md) and [gone](missing/file.md#part)
`[not a link](inside-code.md)`

```python
[also not a link](inside-block.md)
```

```bash
python -m lra train --task listops \\
    --config lra/configs/listops.json    # a comment with python -m fake
bash lra/no-such-run.sh smoke && python -m core.bench --approx --help
vision/run.sh fashion
python -m core.engine.sweep "python -m timeseries --dataset X" --dry-run
python -m vision <command> --help
```

Inline: `python -m rl collect --env hopper` and `bash rl/inline-missing.sh`.

[ref]: another-missing.md
"""


def test_link_check_finds_missing_files_only(tmp_path):
    (tmp_path / "present.md").write_text("# here\n")
    page = tmp_path / "page.md"
    broken = broken_links(page, SYNTHETIC)
    assert [entry.split(": ", 1)[1] for entry in broken] == ["missing/file.md#part", "another-missing.md"]
    assert broken[0].endswith(":3: missing/file.md#part")


def test_results_index_walk_finds_unlinked_pages(tmp_path):
    (tmp_path / "README.md").write_text("[a](a.md) and [outside](../x.md)\n")
    (tmp_path / "a.md").write_text("[table](a_table.md)\n")
    for name in ["a_table.md", "orphan.md"]:
        (tmp_path / name).write_text("# page\n")
    reached = {path.name for path in pages_reachable_from(tmp_path / "README.md")}
    assert reached == {"README.md", "a.md", "a_table.md"}


def test_command_extraction_on_synthetic_markdown():
    found = collect_commands(SYNTHETIC, "page.md")
    assert set(found.help_calls) == {
        ("lra", ("train", "--help")),
        ("core.bench", ("--approx", "--help")),
        ("core.engine.sweep", ("--help",)),
        ("timeseries", ("--help",)),
        ("rl", ("collect", "--help")),
    }
    assert found.help_calls[("lra", ("train", "--help"))] == ["page.md:11"]
    assert set(found.paths) == {"lra/configs/listops.json", "lra/no-such-run.sh", "vision/run.sh", "rl/inline-missing.sh"}
    assert not (ROOT / "lra/no-such-run.sh").exists()
    assert set(found.executables) == {"vision/run.sh"}


def test_help_check_fails_on_commands_without_usage_and_skips_missing_packages():
    results = run_help_calls([("this", ("--help",))], timeout=60)  # prints the Zen of Python, ignores --help
    failures, optional = help_problems(results)
    assert len(failures) == 1 and "printed no usage" in failures[0][1] and optional is None
    results = run_help_calls([("json.tool", ("--help",)), ("json.tool", ("--no-such-flag",))], timeout=60)
    failures, _ = help_problems(results)
    assert [(argv, problem[:6]) for argv, problem in failures] == [(("--no-such-flag",), "exit 2")]
    missing = [{"argv": ["--help"], "code": 1, "missing": "fairseq.models", "error": "x", "output": ""}]
    assert help_problems(missing) == ([], "fairseq.models")
    project = [{"argv": ["--help"], "code": 1, "missing": "lra.gone", "error": "ModuleNotFoundError", "output": ""}]
    assert help_problems(project)[0]
