"""Every command README.md shows works as written: its ```bash and ```python blocks, run in order.

How a block runs:
- From the checkout's root, in a new shell each (``bash -e -o pipefail``; python blocks with
  ``.venv/bin/python``), as a reader who opens a terminal per section would: nothing carries over
  from one block to the next but files and the stack's state, so a block that needs the stack's
  environment must say ``eval "$(.venv/bin/ferry stack env)"`` itself.
- That shell is the test session's: ``FERRY_HOME`` and the ports are the session's isolated stack
  (tests/conftest.py), so ``make up``/``make down`` act on it and never on a developer's ``.ferry/``;
  the rest of the session's environment (Airflow's settings, connections, AWS keys) is removed, and
  ``AIRFLOW_HOME`` is an empty folder, so a block that forgets the ``eval`` fails here too.
- A block's trailing comment lines (``# …`` after its last command) are the output it shows: they
  must be the last lines the block prints, where ``…`` stands for any text (a time, a path).

Exceptions are marked in README.md by an HTML comment just before the block, each with its reason
in parentheses (a marker without one fails ``test_markers_are_well_formed``):
- ``<!-- readme-test: skip (reason) -->``: the block is not run;
- ``<!-- readme-test: skip `command` (reason) -->``: that line of the block is not run;
- ``<!-- readme-test: replace `text` with `other` (reason) -->``: run with ``text`` replaced;
- ``<!-- readme-test: first `command` (reason) -->``: run ``command`` before the block (what the
  reader brings, such as a downloaded file).

The README test runs last in the session (tests/conftest.py orders it): ``make down`` in the
README stops the session's stack, which the blocks after it start again. At the end, services the
README started (Airflow, Spark) are stopped, so the session's stack is as it was.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

MARKER = re.compile(r"<!--\s*readme-test:(.*?)-->", re.S)
FORMS = {
    "skip": re.compile(r"^skip\s+\((?P<reason>.*)\)$", re.S),
    "skip-line": re.compile(r"^skip\s+`(?P<text>[^`]+)`\s+\((?P<reason>.*)\)$", re.S),
    "replace": re.compile(r"^replace\s+`(?P<text>[^`]+)`\s+with\s+`(?P<other>[^`]*)`\s+\((?P<reason>.*)\)$", re.S),
    "first": re.compile(r"^first\s+`(?P<text>[^`]+)`\s+\((?P<reason>.*)\)$", re.S),
}
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass
class Marker:
    line: int
    kind: str
    reason: str
    text: str = ""
    other: str = ""


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    markers: list[Marker] = field(default_factory=list)

    @property
    def skipped(self) -> bool:
        return any(m.kind == "skip" for m in self.markers)

    def script(self) -> str:
        code = self.code
        for marker in self.markers:
            if marker.kind == "skip-line":
                code = "\n".join(line for line in code.splitlines() if marker.text not in line)
            elif marker.kind == "replace":
                code = code.replace(marker.text, marker.other)
        first = [m.text for m in self.markers if m.kind == "first"]
        return "\n".join([*first, code.rstrip("\n")]) + "\n"

    def shown_output(self) -> list[str]:
        """The comment lines after the block's last command."""
        lines = self.code.rstrip("\n").splitlines()
        shown = []
        while lines and lines[-1].startswith("#"):
            shown.insert(0, lines.pop()[1:].strip())
        return shown if self.language == "bash" and lines else []


def parse_marker(number: int, body: str) -> Marker:
    body = " ".join(body.split())
    for kind, form in FORMS.items():
        match = form.match(body)
        if match:
            reason = match["reason"].strip()
            assert reason, f"README.md:{number}: readme-test marker without a reason: {body!r}"
            found = match.groupdict()
            return Marker(number, kind, reason, found.get("text") or "", found.get("other") or "")
    raise AssertionError(f"README.md:{number}: unknown readme-test marker {body!r} (see tests/test_readme.py)")


def readme_blocks(text: str | None = None) -> list[Block]:
    """The README's fenced blocks in order, each with the markers written since the previous block."""
    lines = (README.read_text() if text is None else text).splitlines()
    blocks, pending, index = [], [], 0
    while index < len(lines):
        line = lines[index]
        fence = FENCE.match(line)
        if fence:
            start, body = index, []
            index += 1
            while index < len(lines) and not lines[index].startswith("```"):
                body.append(lines[index])
                index += 1
            assert index < len(lines), f"README.md:{start + 1}: unclosed code block"
            blocks.append(Block(start + 1, fence.group(1), "\n".join(body) + "\n", pending))
            pending = []
        elif line.lstrip().startswith("<!--") and "readme-test" in line:  # a marker is a line of its own
            comment = line
            while "-->" not in comment and index + 1 < len(lines):
                index += 1
                comment += " " + lines[index]
            found = MARKER.search(comment)
            assert found, f"README.md:{index + 1}: malformed readme-test comment"
            pending.append(parse_marker(index + 1, found.group(1).strip()))
        index += 1
    assert not pending, f"README.md:{pending[0].line}: readme-test marker after the last block"
    return blocks


def test_markers_are_well_formed():
    blocks = readme_blocks()
    runnable = [b for b in blocks if b.language in ("bash", "python")]
    assert runnable, "no bash or python blocks in README.md"
    for block in blocks:
        assert block.language in ("bash", "python", ""), f"README.md:{block.line}: unknown language {block.language}"
        for marker in block.markers:
            assert block.language in ("bash", "python"), f"README.md:{marker.line}: marker before a plain block"
            if marker.kind in ("skip-line", "replace"):
                assert marker.text in block.code, f"README.md:{marker.line}: `{marker.text}` is not in the block"


def test_the_parser_refuses_markers_without_a_reason():
    for marker in ("<!-- readme-test: skip -->", "<!-- readme-test: skip () -->",
                   "<!-- readme-test: replace `a` with `b` -->", "<!-- readme-test: run it twice (why not) -->"):
        with pytest.raises(AssertionError, match="readme-test marker"):
            readme_blocks(f"{marker}\n```bash\ntrue\n```\n")
    [block] = readme_blocks("<!-- readme-test: replace `a b` with `c`\n  (a reason) -->\n```bash\necho a b\n# c\n```\n")
    assert block.script() == "echo c\n# c\n" and block.shown_output() == ["c"]


def shows(shown: list[str], printed: list[str]) -> bool:
    """Whether ``printed`` is what ``shown`` shows, each ``…`` in it standing for any text."""
    patterns = [".*".join(re.escape(part) for part in line.split("…")) for line in shown]
    return len(printed) == len(shown) and all(re.fullmatch(p, line) for p, line in zip(patterns, printed, strict=True))


def test_shown_output_may_elide_with_an_ellipsis():
    assert shows(["ran in … s — log: …/x.log"], ["ran in 14 s — log: /tmp/a/x.log"])
    assert shows(['{"digit":7}'], ['{"digit":7}'])
    assert not shows(["ran in … s"], ["ran in 14 s, then failed"])
    assert not shows(['{"digit":7}'], ['{"digit":1}'])
    assert not shows(["a", "b"], ["b"])


def reader_environment(tmp_path: Path) -> dict[str, str]:
    """A new shell of the session's user: the session's FERRY_HOME and ports, nothing of the stack else."""
    from ferry.stack.environment import stack_environment
    from ferry.stack.settings import DEFAULT_PORTS
    from ferry.stack.spark import spark_home

    from .conftest import SESSION_SETTINGS

    stack_vars = set(stack_environment(SESSION_SETTINGS))
    env = {k: v for k, v in os.environ.items()
           if k not in stack_vars and not k.startswith(("AIRFLOW", "PYTEST_", "FERRY_"))}
    spark_bin = str(spark_home() / "bin")  # the one variable the stack's environment extends, not sets
    env["PATH"] = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != spark_bin)
    env["FERRY_HOME"] = str(SESSION_SETTINGS.home)
    for name, (var, _default) in DEFAULT_PORTS.items():
        env[var] = str(SESSION_SETTINGS.ports[name])
    env["AIRFLOW_HOME"] = str(tmp_path / "airflow-home-of-a-new-shell")
    return env


def run_block(block: Block, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / f"readme-{block.line}.{'sh' if block.language == 'bash' else 'py'}"
    script.write_text(block.script())
    command = (["bash", "-e", "-o", "pipefail", str(script)] if block.language == "bash"
               else [str(ROOT / ".venv" / "bin" / "python"), str(script)])
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)


@pytest.mark.integration
@pytest.mark.timeout(5400)
def test_every_readme_block_runs_as_written(stack, tmp_path, capsys):
    from ferry.stack.stack import CORE_SERVICES, OPTIONAL_SERVICES

    optional = [cls.name for cls in OPTIONAL_SERVICES]
    running_before = {name for name in optional if stack.service(name).is_running()}
    data_before = (ROOT / "data").exists()
    env = reader_environment(tmp_path)
    timings = []
    try:
        for block in readme_blocks():
            if block.language not in ("bash", "python") or block.skipped:
                continue
            started = time.monotonic()
            result = run_block(block, env, tmp_path)
            timings.append(f"  README.md:{block.line} ({block.language}) {time.monotonic() - started:.0f} s")
            with capsys.disabled():
                print(timings[-1], flush=True)
            output = result.stdout + result.stderr
            assert result.returncode == 0, (
                f"README.md:{block.line}: the {block.language} block exits {result.returncode}\n"
                f"--- ran ---\n{block.script()}--- its output (end) ---\n{output[-6000:]}")
            shown = block.shown_output()
            if shown:
                printed = [line.strip() for line in result.stdout.strip().splitlines()][-len(shown):]
                assert shows(shown, printed), f"README.md:{block.line}: the block shows {shown}, it printed {printed}"
    finally:
        # Leave the session's stack as the README found it: core services up, the rest as before.
        stack.up([cls.name for cls in CORE_SERVICES], echo=lambda line: None)
        stack.down([name for name in optional if name not in running_before], echo=lambda line: None)
        if not data_before:
            shutil.rmtree(ROOT / "data", ignore_errors=True)
        print("\n".join(["README blocks:", *timings]), file=sys.stderr)
