"""`tai sweep`: a grid of queued DVC experiments that finishes even when DVC's queue worker dies.

`dvc exp run --queue` runs each experiment in a fresh copy of the repository (so the workspace stays free),
through a Celery worker on a filesystem broker. `dvc queue status` (and `dvc queue start`, which calls the
same code) inspects that worker through the broker it reads, and the two race: the worker dies with
"Unrecoverable error: JSONDecodeError" and the rest of the queue waits forever (treeverse/dvc#7903's
discussion, treeverse/dvc-task#73, celery/kombu#1551). So this module never inspects a worker:

- it queues the grid with `dvc exp run --queue` and starts the workers itself (`dvc exp queue-worker`, what
  `dvc queue start` spawns), as its own child processes, so it knows at once when one is gone;
- it follows the experiments by `dvc exp show --json`, which reads the queue's files and no worker;
- a worker that died while experiments of the grid wait is started again (one line says so); the experiment
  it was running is orphaned (its task never finishes, DVC would show it running forever): its leftover
  process is stopped, its task removed, and it is queued again under its name and overrides, so the
  grid still ends with every point run once (its stages resume from the per-user cache);
- at the end it writes and prints the `tai report` table, and fails when an experiment failed.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pipeline.errors import UserError

log = logging.getLogger(__name__)

DVC = (sys.executable, "-m", "dvc")
QUEUEING = re.compile(r"Queueing with overrides '(.*)'\.")
QUEUED = re.compile(r"Queued experiment '([^']+)' for future execution\.")
DONE_STATES = ("success", "failed")
SHOW_TIMEOUT_S = 120  # a `dvc exp show` that waits this long is stuck (seen once, on a lock of DVC's index): ask again
MAX_MISREADS = 10  # consecutive failed `dvc exp show` reads (one can race a file being written) before giving up


class SweepError(UserError):
    """The grid could not be queued, or DVC could not be read: one line, exit 2."""


@dataclass
class Experiment:
    """One grid point as queued: its DVC name and the overrides that recreate it (`-S file:key=value`)."""

    name: str
    overrides: list[str]
    state: str = "queued"  # queued | running | success | failed (dvc exp show's executor state)
    pid: int | None = None  # the running experiment's `dvc exp exec-run` process
    root: str | None = None  # its temporary copy of the repository
    requeued: int = 0


@dataclass
class Worker:
    """A `dvc exp queue-worker` this sweep started and owns."""

    number: int
    node: str
    log_path: Path
    process: subprocess.Popen | None = None
    restarts: int = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class SweepResult:
    experiments: dict[str, Experiment] = field(default_factory=dict)
    worker_restarts: int = 0
    table: str = ""

    @property
    def failed(self) -> list[str]:
        return [name for name, e in self.experiments.items() if e.state == "failed"]


def _dvc(root: Path, *args: str, check: bool = True, timeout_s: float | None = None) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run([*DVC, *args], cwd=root, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise SweepError(f"`dvc {' '.join(args)}` hung for {timeout_s:.0f} s in {root}; it was stopped") from e
    if check and done.returncode != 0:
        raise SweepError(
            f"`dvc {' '.join(args)}` failed in {root} (exit {done.returncode}): {(done.stderr or done.stdout).strip()}"
        )
    return done


def parse_queued(output: str) -> dict[str, list[str]]:
    """`dvc exp run --queue` output -> {experiment name: its overrides as `-S` values (`params.yaml:key=v`)}."""
    queued: dict[str, list[str]] = {}
    overrides: list[str] = []
    for line in output.splitlines():
        if match := QUEUEING.search(line):
            by_file = ast.literal_eval(match.group(1))
            overrides = [f"{file}:{item}" for file, items in by_file.items() for item in items]
        elif match := QUEUED.search(line):
            queued[match.group(1)] = overrides
            overrides = []
    return queued


def queue(root: Path, settings: list[str], name: str | None = None) -> dict[str, list[str]]:
    """`dvc exp run --queue -S ...` (DVC expands `key=a,b,c` into a grid); {name: overrides} of what it queued."""
    args = ["exp", "run", "--queue", *(arg for s in settings for arg in ("-S", s))] + (["-n", name] if name else [])
    done = _dvc(root, *args)
    queued = parse_queued(done.stdout + done.stderr)
    if not queued:
        raise SweepError(f"`dvc {' '.join(args)}` queued nothing:\n{done.stdout}{done.stderr}")
    return queued


def experiment_states(root: Path) -> dict[str, dict]:
    """{name: executor state} of the baseline's experiments from `dvc exp show --json`, which reads the queue's
    files and never inspects a worker. Each value: state, and for a running one the exec-run pid and copy."""
    data = json.loads(_dvc(root, "exp", "show", "--json", timeout_s=SHOW_TIMEOUT_S).stdout)
    states: dict[str, dict] = {}
    for commit in data:
        for group in commit.get("experiments") or []:
            executor = group.get("executor") or {}
            local = executor.get("local") or {}
            name = group.get("name") or next((r.get("name") for r in group.get("revs") or [] if r.get("name")), None)
            if name:
                states[name] = {
                    "state": executor.get("state") or "success",
                    "pid": local.get("pid"),
                    "root": local.get("root"),
                }
    return states


def node_name(root: Path, number: int) -> str:
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:6]
    return f"tai-sweep-{digest}-{number}@localhost"


def start_worker(root: Path, worker: Worker) -> None:
    """`dvc exp queue-worker NODE` as this process's child; the first one cleans the broker when it ends, as
    `dvc queue start`'s first worker does. It exits by itself 10 s after the queue runs dry."""
    worker.log_path.parent.mkdir(parents=True, exist_ok=True)
    with worker.log_path.open("ab") as out:
        clean = ["--clean"] if worker.number == 1 else []
        worker.process = subprocess.Popen(
            [*DVC, "exp", "queue-worker", worker.node, *clean],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _process_alive(pid: int | None) -> bool:
    import psutil

    try:
        return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _parent_pid(pid: int) -> int | None:
    import psutil

    try:
        return psutil.Process(pid).ppid()
    except psutil.NoSuchProcess:
        return None


def orphans(experiments: dict[str, Experiment], workers: list[Worker]) -> list[Experiment]:
    """Running experiments no live worker of ours is running: their exec-run process is gone, or its parent
    is no longer one of our workers (a worker killed mid-experiment leaves its child behind)."""
    live = {w.process.pid for w in workers if w.alive}
    found = []
    for e in experiments.values():
        if e.state != "running":
            continue
        if e.pid is None:  # taken from the queue, not started yet: orphaned only if no worker is left to start it
            if not live:
                found.append(e)
        elif not _process_alive(e.pid) or _parent_pid(e.pid) not in live:
            found.append(e)
    return found


def drop_orphan(root: Path, experiment: Experiment) -> None:
    """Stop the orphan's leftover process, remove its never-finishing task from DVC's queue (what `dvc queue
    remove` does to a finished one) and its temporary copy."""
    import psutil
    from dvc.repo import Repo
    from dvc.repo.experiments.queue.remove import remove_tasks

    if _process_alive(experiment.pid):
        try:
            psutil.Process(experiment.pid).kill()
        except psutil.NoSuchProcess:
            pass
    with Repo(str(root)) as repo:
        celery_queue = repo.experiments.celery_queue
        active = {entry.stash_rev for entry in celery_queue.iter_active() if entry.name == experiment.name}
        tasks = [(msg, entry) for msg, entry in celery_queue._iter_processed() if entry.stash_rev in active]
        for msg, _ in tasks:  # as `dvc queue kill` marks a task whose process is gone, then remove it
            celery_queue.celery.backend.mark_as_failure(msg.headers["id"], None)
        remove_tasks(celery_queue, [entry for _, entry in tasks])
    if experiment.root and Path(experiment.root).is_dir():
        shutil.rmtree(experiment.root, ignore_errors=True)


def run_sweep(
    root: Path,
    settings: list[str],
    jobs: int = 1,
    poll_s: float = 3.0,
    say: Callable[[str], None] = print,
    timeout_s: float | None = None,
) -> SweepResult:
    """Queue the grid, run it on `jobs` workers of our own, restart any that dies while the grid waits, and
    requeue the experiment a dead worker left orphaned. Returns each experiment's final state."""
    root = Path(root)
    if jobs < 1:
        raise SweepError(f"-j {jobs}: the number of workers must be at least 1")
    result = SweepResult({name: Experiment(name, overrides) for name, overrides in queue(root, settings).items()})
    experiments = result.experiments
    say(f"queued {len(experiments)} experiment(s): {', '.join(experiments)}")
    logs = root / ".dvc" / "tmp" / "exps" / "tai-sweep"
    workers = [Worker(i, node_name(root, i), logs / f"worker-{i}.out") for i in range(1, jobs + 1)]
    for worker in workers:
        start_worker(root, worker)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        misreads = 0
        while True:
            try:
                states = experiment_states(root)
                misreads = 0
            except (SweepError, json.JSONDecodeError) as e:  # a file DVC was writing or removing as it read
                misreads += 1
                if misreads >= MAX_MISREADS:
                    raise SweepError(f"could not read the experiments {misreads} times in a row: {e}") from e
                log.debug("dvc exp show failed (%s); reading again", e)
                time.sleep(poll_s)
                continue
            for name, e in experiments.items():
                seen = states.get(name)
                if seen:
                    e.state, e.pid, e.root = seen["state"], seen["pid"], seen["root"]
            if all(e.state in DONE_STATES for e in experiments.values()):
                break
            dead = [w for w in workers if not w.alive]
            if dead:
                for orphan in orphans(experiments, workers):
                    drop_orphan(root, orphan)
                    queue(root, orphan.overrides, name=orphan.name)
                    orphan.state, orphan.pid, orphan.requeued = "queued", None, orphan.requeued + 1
                    say(f"experiment {orphan.name} lost its worker: queued again")
            waiting = sum(e.state == "queued" for e in experiments.values())
            for worker in dead:
                if waiting:
                    code = worker.process.returncode if worker.process else None
                    start_worker(root, worker)
                    worker.restarts += 1
                    result.worker_restarts += 1
                    say(
                        f"queue worker {worker.number} ended (exit {code}) with {waiting} experiment(s) queued: "
                        f"started again (log: {worker.log_path})"
                    )
            if deadline is not None and time.monotonic() > deadline:
                raise SweepError(
                    f"the sweep did not finish in {timeout_s:.0f} s: "
                    + ", ".join(f"{e.name} {e.state}" for e in experiments.values())
                )
            time.sleep(poll_s)
    finally:
        for worker in workers:  # idle workers exit 10 s after the queue is empty; do not wait for that
            if worker.alive and all(e.state in DONE_STATES for e in experiments.values()):
                worker.process.terminate()
                try:
                    worker.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.process.kill()
    return result
