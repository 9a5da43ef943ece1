"""Bad plans and misused commands, run through the real ``relman`` command line.

The malformed corpus (``tests/models/malformed``) is joined by files too big or too hostile
to commit, generated here: 5 MB plans, YAML alias and merge-key bombs ("billion laughs"),
nesting deeper than any parser stack, text that is not UTF-8. Every one must get exit code 2
from ``relman plan check`` and from ``relman submit`` with a message naming the file, and no
release may start.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.reliability.harness import CliResult, free_port, relman

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted((ROOT / "tests" / "models" / "malformed").glob("*.yaml"))
EXPECT = "# expect: "
MB = 1024 * 1024
# Each CLI run is a Python process; two at a time leave the crash scenarios some CPU.
PARALLEL_RUNS = 2

MINIMAL = """\
id: bad-input-1
application: web
version: "1.0.0"
requested_by: alice
targets:
  - {name: web-version, kind: ssm_parameter, parameter: /web/version, value: "1.0.0"}
waves:
  - name: prod
    department: ops
    targets: [web-version]
"""


def expected_lines(path: Path) -> list[str]:
    """The ``# expect:`` lines a corpus file opens with."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith(EXPECT):
            break
        lines.append(line.removeprefix(EXPECT))
    return lines


def _laughs(levels: int = 9) -> str:
    """Anchors of ten aliases of the anchor before: 10**levels strings from ~600 bytes."""
    lines = ["lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


def generate(directory: Path) -> dict[Path, str]:
    """Write the hostile plans; return each path with the start of the error it must get."""
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[Path, tuple[bytes, str]] = {}
    big_text = MINIMAL + "description: |\n" + ("  " + "x" * 98 + "\n") * (5 * MB // 101)
    groups = "".join(f"  g{i}: [u{i}a, u{i}b, u{i}c, u{i}d]\n" for i in range(5 * MB // 48))
    for name, text in (
        ("five-megabyte-description.yaml", big_text),
        ("five-megabytes-of-approver-groups.yaml", MINIMAL + "approver_groups:\n" + groups),
    ):
        size = len(text.encode()) / MB
        message = f"cannot read plan: it is {size:.1f} MiB, more than the 1 MiB a plan may be"
        files[directory / name] = (text.encode(), message)
    bomb = "invalid YAML: aliases expand the document to more than 200000 values"
    files[directory / "billion-laughs-in-on-rejection.yaml"] = (
        (_laughs() + MINIMAL + "on_rejection: *lol8\n").encode(),
        bomb,
    )
    files[directory / "billion-laughs-in-window-days.yaml"] = (
        (
            _laughs()
            + MINIMAL
            + "    window: {timezone: UTC, start: '09:00', end: '17:00', days: *lol8}\n"
        ).encode(),
        bomb,
    )
    merges = "m0: &m0 {k0: 0, k1: 1}\n" + "".join(
        f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 10)}]}}\n" for i in range(1, 9)
    )
    files[directory / "merge-key-bomb.yaml"] = ((merges + MINIMAL).encode(), bomb)
    files[directory / "nested-ten-thousand-deep.yaml"] = (
        (MINIMAL + "description: " + "[" * 10_000 + "]" * 10_000 + "\n").encode(),
        "invalid YAML: line 11, column 63: nested more than 50 levels deep",
    )
    latin1 = MINIMAL.replace("alice", "josé")
    files[directory / "latin-1.yaml"] = (
        latin1.encode("latin-1"),
        f"cannot read plan: not UTF-8 text (byte {latin1.index('é')})",
    )
    files[directory / "utf-16.yaml"] = (
        MINIMAL.encode("utf-16"),
        "cannot read plan: not UTF-8 text (byte 0)",
    )
    noise = random.Random(5).randbytes(4096)
    files[directory / "random-bytes.yaml"] = (noise, "cannot read plan: not UTF-8 text")
    files[directory / "a-directory.yaml"] = (b"", "cannot read plan: Is a directory")
    out = {}
    for path, (content, message) in files.items():
        if path.name == "a-directory.yaml":
            path.mkdir(exist_ok=True)
        else:
            path.write_bytes(content)
        out[path] = message
    out[directory / "does-not-exist.yaml"] = "cannot read plan: No such file or directory"
    return out


@dataclass
class BadInputRun:
    """What ``plan check`` and ``submit`` said about one bad plan."""

    path: Path
    expected: list[str]  # whole lines for corpus files; the start of the line for generated
    exact: bool
    check: CliResult
    submit: CliResult


@dataclass
class BadInputs:
    runs: list[BadInputRun] = field(default_factory=list)
    task_queue: str = ""
    started_on_queue: int = -1
    control_started: int = -1
    seconds: float = 0.0


async def bad_inputs(temporal_address: str, home: Path) -> BadInputs:
    """Run every bad plan through ``plan check`` and ``submit``; count what started."""
    from temporalio.client import Client

    started = time.monotonic()
    result = BadInputs(task_queue=f"relman-bad-input-{free_port()}")
    env = {
        "TEMPORAL_ADDRESS": temporal_address,
        "RELMAN_TASK_QUEUE": result.task_queue,
        "RELMAN_HOME": str(home / "relman-home"),
    }
    cases: list[tuple[Path, list[str], bool]] = [(p, expected_lines(p), True) for p in CORPUS]
    cases += [(p, [m], False) for p, m in generate(home / "generated").items()]
    limit = asyncio.Semaphore(PARALLEL_RUNS)

    async def run(path: Path, expected: list[str], exact: bool) -> BadInputRun:
        async with limit:
            check = await relman("plan", "check", str(path), env=env)
            submit = await relman("submit", str(path), env=env)
        return BadInputRun(path, expected, exact, check, submit)

    result.runs = list(await asyncio.gather(*(run(*case) for case in cases)))

    # Nothing started on the queue the bad plans were submitted to; a good plan submitted the
    # same way shows that the query would have seen one.
    client = await Client.connect(temporal_address)
    query = f"TaskQueue = '{result.task_queue}'"
    result.started_on_queue = (await client.count_workflows(query)).count
    good = home / "good.yaml"
    good.write_text(MINIMAL.replace("bad-input-1", f"good-input-{free_port()}"))
    submitted = await relman("submit", str(good), env=env)
    assert submitted.returncode == 0, submitted.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        result.control_started = (await client.count_workflows(query)).count
        if result.control_started:
            break
        await asyncio.sleep(0.2)
    await client.get_workflow_handle(submitted.stdout.strip()).terminate("test over")
    result.seconds = time.monotonic() - started
    return result
