"""One Python interpreter for a doc page's examples, driven over stdin by tests/doc_examples.py.

Each request is one JSON line ``{"code": ..., "env": {...}}``: the environment the shell examples
left, then the code, run in the namespace the page's earlier examples filled (as in a notebook).
Each answer is one JSON line ``{"ok": bool, "output": ..., "error": ...}`` on the original stdout.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import threading
import traceback


def main() -> None:
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    namespace: dict = {"__name__": "__main__"}
    # An exception in a thread an example started fails that example too.
    thread_errors: list[str] = []
    threading.excepthook = lambda args: thread_errors.append(
        "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
    )
    for line in sys.stdin:
        request = json.loads(line)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        output = io.StringIO()
        ok, error = True, None
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            try:
                exec(compile(request["code"], request["name"], "exec"), namespace)
            except BaseException:  # the test reports it; the session goes on to be closed
                ok, error = False, traceback.format_exc()
        if ok and thread_errors:
            ok, error = False, "in a thread:\n" + "".join(thread_errors)
        thread_errors.clear()
        answers.write(json.dumps({"ok": ok, "output": output.getvalue(), "error": error}) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
