"""The fenced examples of README.md and docs/*.md, and a session that runs a page's examples as
written, in order, the way a reader types them: the shell examples in bash (what one exports, the
next one sees), the Python examples in one interpreter (what one defines, the next one uses).

The only substitution is the one README.md documents: port 5000 becomes a free port.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = ("sh", "python")
PAGES = ("README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")))
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def fenced_blocks(page: str, language: str, *, under: str | None = None) -> list[str]:
    """The ``language`` blocks of ``page`` (relative to the repository), in order; with ``under``,
    only those in the section whose heading is ``under`` (up to the next heading of any level).

    >>> fenced_blocks("docs/deployment.md", "sh", under="### 1. Create the env file")[0].split()[0]
    'cp'
    """
    text = (ROOT / page).read_text()
    if under is not None:
        start = text.index(under + "\n")
        following = re.search(r"^#{1,6} ", text[start + len(under) :], re.M)
        text = text[start : start + len(under) + following.start()] if following else text[start:]
    return re.findall(rf"^```{re.escape(language)}\n(.*?)^```", text, re.S | re.M)


@dataclass(frozen=True)
class Example:
    """One fenced shell or Python block of a page."""

    page: str
    line: int
    language: str
    code: str

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def first_line(self) -> str:
        return self.code.strip().splitlines()[0]


def examples(page: str) -> list[Example]:
    """Every shell and Python example of ``page``, in the page's order."""
    text = (ROOT / page).read_text()
    return [
        Example(page, text.count("\n", 0, match.start()) + 2, match.group(1), match.group(2))
        for match in _FENCE.finditer(text)
        if match.group(1) in LANGUAGES
    ]


class ExampleFailed(AssertionError):
    pass


class DocSession:
    """A reader's terminal and Python prompt in a scratch folder, for one page's examples.

    Every process an example starts (``mlflow server ... &`` included) lives in a process group
    the session ends when it is closed.
    """

    def __init__(self, port: int, env: dict[str, str] | None = None, timeout: float = 600) -> None:
        self.port = port
        self.timeout = timeout
        self.folder = Path(tempfile.mkdtemp(prefix="hokusai-docs-"))
        self._environ = self.folder.parent / f"{self.folder.name}.environ.json"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HOKUSAI_"))}
        base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"
        base["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        base.update(env or {})
        self._environ.write_text(json.dumps(base))
        self._groups: list[subprocess.Popen] = []
        self._python: subprocess.Popen | None = None
        self._bash: subprocess.Popen | None = None

    def substituted(self, code: str) -> str:
        return code.replace("127.0.0.1:5000", f"127.0.0.1:{self.port}").replace(
            "--port 5000", f"--port {self.port}"
        )

    def run(self, example: Example) -> str:
        """Run one example; its output, or :class:`ExampleFailed` with what it printed."""
        code = self.substituted(example.code)
        return self._shell(example, code) if example.language == "sh" else self._py(example, code)

    def _shell(self, example: Example, code: str) -> str:
        # One bash for the page, fed one example at a time: what an example sets (exported or
        # not), the next one sees. `set -e` ends that bash at the first failing command.
        if self._bash is None:
            self._bash = subprocess.Popen(
                ["bash", "--norc", "--noprofile"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
                cwd=self.folder,
                env=json.loads(self._environ.read_text()),
            )
            self._groups.append(self._bash)
            # inherit_errexit: a failing command inside $(...) fails the assignment that runs it.
            self._bash.stdin.write("set -euo pipefail\nshopt -s inherit_errexit\n")
        script, output, done = (
            self.folder.parent / f"{self.folder.name}.{suffix}" for suffix in ("sh", "out", "done")
        )
        script.write_text(code)
        done.unlink(missing_ok=True)
        # The output goes to a file: a server started with `&` keeps a copy of the descriptor.
        self._bash.stdin.write(
            f"source {script} > {output} 2>&1 < /dev/null\n"
            f"{sys.executable} -c 'import json, os; print(json.dumps(dict(os.environ)))' > {self._environ}\n"
            f"touch {done}\n"
        )
        self._bash.stdin.flush()
        deadline = time.monotonic() + self.timeout
        while not done.exists() and self._bash.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        printed = output.read_text() if output.exists() else ""
        if done.exists():
            return printed
        if self._bash.poll() is None:
            raise ExampleFailed(f"{example.name} still ran after {self.timeout} s:\n{printed}")
        raise ExampleFailed(
            f"{example.name} exited {self._bash.returncode}:\n{code}\n--- output ---\n{printed}"
        )

    def _py(self, example: Example, code: str) -> str:
        if self._python is None:
            self._python = subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "doc_python_session.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
                cwd=self.folder,
            )
            self._groups.append(self._python)
        request = {"code": code, "name": example.name, "cwd": str(self.folder)}
        request["env"] = json.loads(self._environ.read_text())
        self._python.stdin.write(json.dumps(request) + "\n")
        self._python.stdin.flush()
        line = self._python.stdout.readline()
        if not line:
            raise ExampleFailed(f"{example.name}: the Python session ended")
        answer = json.loads(line)
        if not answer["ok"]:
            raise ExampleFailed(
                f"{example.name} raised:\n{answer['error']}\n--- output ---\n{answer['output']}"
            )
        return answer["output"]

    def close(self) -> None:
        for process in (self._python, self._bash):
            if process is not None and process.stdin:
                try:
                    process.stdin.close()
                except OSError:  # it ended with input unread: its group is ended below all the same
                    pass
        for leader in self._groups:
            _end_group(leader)
        if self._python is not None:
            self._python.wait(timeout=30)
        for suffix in ("environ.json", "sh", "out", "done"):
            (self.folder.parent / f"{self.folder.name}.{suffix}").unlink(missing_ok=True)
        subprocess.run(["rm", "-rf", str(self.folder)], check=False)


def _end_group(leader: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL, to every process in ``leader``'s group, until none is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(leader.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            leader.poll()  # reaped, so that a finished leader no longer counts as the group's
            try:
                os.killpg(leader.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.1)
