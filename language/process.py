"""Running fairseq's command-line tools (``fairseq-preprocess``, ``fairseq-train``, ``fairseq-eval-lm``) as
subprocesses with the plugin importable, their output teed to a log file and fed line by line to a callback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from language import PLUGIN_DIR

REPO_ROOT = PLUGIN_DIR.parent.parent


_RUNNING: set[subprocess.Popen] = set()


def terminate_running() -> None:
    """Kill every fairseq subprocess started by :func:`run_logged` that is still running (on SIGTERM)."""
    for process in list(_RUNNING):
        if process.poll() is None:
            process.kill()


class FairseqNotFoundError(RuntimeError):
    """fairseq's command-line tools are not installed."""


def fairseq_executable(name: str) -> str:
    """Path of a fairseq console script, preferring the one next to the running Python.

    Raises:
        FairseqNotFoundError: with the install command when the script is missing.
    """
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FairseqNotFoundError(
            f"'{name}' was not found next to {sys.executable} or on PATH; install fairseq with "
            "'pip install cython numpy wheel setuptools && pip install --no-build-isolation fairseq-fixed' "
            "(Python >= 3.11) or 'pip install fairseq==0.12.2' (Python 3.10)"
        )
    return found


def subprocess_env(threads: int | None = None) -> dict[str, str]:
    """The environment for fairseq subprocesses: the repository on PYTHONPATH (so ``--user-dir`` can import
    ``language``), optionally a thread count."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("PYTHONWARNINGS", "ignore")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
        env["MKL_NUM_THREADS"] = str(threads)
    return env


def run_logged(
    command: Sequence[str],
    log_path: Path,
    on_line: Callable[[str], None] | None = None,
    timeout: float | None = None,
    threads: int | None = None,
) -> float:
    """Run ``command``, append its merged stdout/stderr to ``log_path`` and pass each line to ``on_line``.

    Returns:
        The wall time in seconds.

    Raises:
        subprocess.CalledProcessError: on a non-zero exit (the message names the log file).
        subprocess.TimeoutExpired: when ``timeout`` seconds pass (the process is killed).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log_path, "a", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(
            list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=subprocess_env(threads)
        )
        _RUNNING.add(process)
        try:
            for line in process.stdout:
                log.write(line)
                if on_line is not None:
                    on_line(line.rstrip("\n"))
                if timeout is not None and time.monotonic() - start > timeout:
                    raise subprocess.TimeoutExpired(command, timeout)
            code = process.wait(timeout=None if timeout is None else max(1.0, timeout - (time.monotonic() - start)))
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            _RUNNING.discard(process)
    if code != 0:
        raise subprocess.CalledProcessError(code, list(command), output=f"see {log_path} for the output")
    return time.monotonic() - start
