"""Chaos scenarios for blobs: kills mid-upload, byte flips, gc against writers, a full disk.

Each scenario runs real processes (`python -c ...` with this checkout's labpipe) against a store of
its own under `workdir`, and returns plain figures. `full=False` is the CI size; `full=True` the
issue's. See `TARGETS` for what each must meet.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))  # tests/: small_disk (also under tools/chaos.py)

import small_disk  # noqa: E402


@contextlib.contextmanager
def _store(folder: Path):
    """Point LABPIPE_STORE (and labpipe.set_store) at `folder` for the scenario; restore after."""
    import labpipe
    from labpipe import config
    from labpipe.store.db import get_database

    saved_env, saved_explicit = os.environ.get(config.ENV_STORE), config._explicit
    labpipe.set_store(folder)
    try:
        yield folder
    finally:
        get_database(folder).close()
        config._explicit = saved_explicit
        if saved_env is None:
            os.environ.pop(config.ENV_STORE, None)
        else:
            os.environ[config.ENV_STORE] = saved_env


def _env(**extra: str) -> dict:
    path = os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, **extra)


def _python(code: str, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, env=_env(**env))


def _payload(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


# -- blob kills: SIGKILL mid-upload, then no bad blob is ever served --------------------------

_UPLOADER = """
import random, sys, time
from labpipe import Task
first, size = int(sys.argv[1]), int(sys.argv[2])
t = Task.create(task_name=f"uploader-{first}")
for seed in range(first, first + 1000):
    data = random.Random(seed).randbytes(size)
    t0 = time.perf_counter()
    t.upload_artifact(f"s{seed}", data)
    print(time.perf_counter() - t0, flush=True)  # one upload done, and how long it took
"""


def blob_kills(workdir: Path, full: bool) -> dict:
    """Uploaders of multi-MB blobs are SIGKILLed at random moments; then every artifact row must load
    its exact bytes, and every blob file must match its hash."""
    kills = 200 if full else 8
    size = 3 << 20
    rng = random.Random(7)
    with _store(workdir / "store") as store:
        from labpipe.store import fsck
        from labpipe.store.db import get_database

        get_database(store).connection()
        for k in range(kills):
            proc = subprocess.Popen([sys.executable, "-c", _UPLOADER, str(k * 1000), str(size)],
                                    stdout=subprocess.PIPE, text=True, env=_env())
            try:
                # let it finish one or two uploads, then kill it at a random point of the next one
                # (timed from its own last upload, so the kill lands mid-upload however loaded the machine)
                for _ in range(rng.choice((1, 2))):
                    took = float(proc.stdout.readline() or 0)
                time.sleep(rng.uniform(0.0, took))
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                proc.stdout.close()
        db = get_database(store)
        served = corrupt_served = unreadable = 0
        for row in db.query("SELECT task, name, hash FROM artifacts"):
            from labpipe import Task
            from labpipe.errors import BlobCorrupted

            try:
                value = Task.get_task(task_id=row["task"]).artifacts[row["name"]].get()
            except BlobCorrupted:
                unreadable += 1
                continue
            served += 1
            corrupt_served += value != _payload(int(row["name"][1:]), size)
        report = fsck.check(db, repair=False)
        temps = sum(1 for p in db.blobs_dir.rglob(".tmp-*"))
    return {"kills": kills, "artifacts_served": served, "corrupt_served": corrupt_served, "unreadable_rows": unreadable,
            "bad_blobs": report.corrupt, "rows_missing_blob": report.missing, "temp_files_left": temps}


# -- byte flips: the next run recomputes and succeeds -----------------------------------------

_RUN_FLIP = """
import json, sys
from labpipe import PipelineDecorator, Task
from labpipe.store import pipelines
from labpipe.store.db import get_database
import blob_steps
PipelineDecorator.run_locally(workers=1)
kib, seed, bonus = map(int, sys.argv[1:4])
out = blob_steps.flip_pipeline(kib, seed, bonus)
pipe = Task.get_tasks(task_filter={"type": ["controller"]})[0]
nodes = {n["name"]: n["status"] for n in pipelines.load_nodes(get_database(), pipe.id)}
print(json.dumps({"out": out, "nodes": nodes}))
"""


def byte_flips(workdir: Path, full: bool) -> dict:
    """Flip a byte in the stored payload of a cached step, then run the pipeline again, in turn:
    with a changed downstream argument (a step reads the payload), unchanged (the logic reads it),
    and with LABPIPE_REFRESH=make_payload. Every run must succeed with the true bytes, and the flipped
    step must have been recomputed."""
    rounds = 30 if full else 3
    kib, seed = 512, 11
    true_sha = hashlib.sha256(_payload(seed, kib * 1024)).hexdigest()
    runs_ok = recomputed = corrupt_served = failed_runs = 0
    with _store(workdir / "store") as store:
        from labpipe.store import blobs
        from labpipe.store.db import get_database

        db = get_database(store)
        first = _python(_RUN_FLIP, str(kib), str(seed), "0")
        if first.returncode != 0:
            raise RuntimeError(f"the first pipeline run failed: {first.stderr[-2000:]}")
        bonus = 0
        for i in range(rounds):
            digest = db.query_one("SELECT a.hash FROM artifacts a JOIN tasks t ON t.id = a.task WHERE t.name = 'make_payload' "
                                  "ORDER BY t.completed DESC LIMIT 1")[0]
            path = blobs.blob_path(db, digest)
            data = bytearray(path.read_bytes())
            data[random.Random(i).randrange(len(data))] ^= 1 << random.Random(i).randrange(8)
            path.write_bytes(bytes(data))
            mode = i % 3
            if mode == 0:
                bonus += 1
            env = {"LABPIPE_REFRESH": "make_payload"} if mode == 2 else {}
            done = _python(_RUN_FLIP, str(kib), str(seed), str(bonus), **env)
            if done.returncode != 0:
                failed_runs += 1
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            out, nodes = result["out"], result["nodes"]
            good = out["logic"] == true_sha and out["step"] == f"{true_sha}:{bonus}"
            corrupt_served += not good
            runs_ok += good
            recomputed += nodes.get("make_payload") == "completed"
    return {"flips": rounds, "runs_ok": runs_ok, "failed_runs": failed_runs, "recomputed": recomputed,
            "corrupt_served": corrupt_served}


# -- gc against writers: nothing referenced is ever deleted -----------------------------------

_WRITER = """
import json, os, random, sys, time
from labpipe import Task
from labpipe.store import blobs, outputs
from labpipe.store.db import get_database
wid, k, stop_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
db = get_database()
t = Task.create(task_name=f"writer-{wid}")
contents = [(f"writer {wid} content {j} ".encode() * 10_000)[:100_000] for j in range(k)]
writes = reuses = missing = 0
rng = random.Random(wid)
print("ready", flush=True)
while not os.path.exists(stop_file):
    j = rng.randrange(k)
    row = outputs.get_artifact(db, t.id, f"c{j}")
    if row is not None:
        # make its blob unreferenced and old, as a blob left by a deleted task is: gc may take it now,
        # while this writer is about to store the same bytes again (the refresh gc used to race)
        outputs.delete_artifact(db, t.id, f"c{j}")
        old = time.time() - 7200
        try:
            os.utime(blobs.blob_path(db, row["hash"]), (old, old))
            reuses += 1
        except FileNotFoundError:
            pass
    t.upload_artifact(f"c{j}", contents[j])
    writes += 1
    row = outputs.get_artifact(db, t.id, f"c{j}")
    missing += not blobs.blob_path(db, row["hash"]).exists()  # committed: its blob must be there
print(json.dumps({"writes": writes, "reuses": reuses, "missing": missing}))
"""

_GC_LOOP = """
import json, os, sys
from labpipe.store import gc
from labpipe.store.db import get_database
db = get_database()
runs = deleted = 0
while not os.path.exists(sys.argv[1]):
    deleted += gc.collect(db, grace=gc.MIN_GRACE).deleted_files
    runs += 1
print(json.dumps({"runs": runs, "deleted": deleted}))
"""


def gc_vs_writers(workdir: Path, full: bool) -> dict:
    """Writers keep storing bytes whose blob was just made old and unreferenced, while gc runs in a
    loop; no row may ever name a blob gc deleted."""
    writers, seconds = (4, 60.0) if full else (2, 4.0)
    stop_file = workdir / "stop"
    with _store(workdir / "store") as store:
        from labpipe.store import fsck
        from labpipe.store.db import get_database

        db = get_database(store)
        db.connection()
        procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(w), "8", str(stop_file)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=_env()) for w in range(writers)]
        procs.append(subprocess.Popen([sys.executable, "-c", _GC_LOOP, str(stop_file)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=_env()))
        outs = []
        try:
            for p in procs[:-1]:
                p.stdout.readline()  # started (imports take a while on a loaded machine): the clock starts now
            time.sleep(seconds)
        finally:
            stop_file.touch()
            for p in procs:
                try:
                    out, err = p.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    out, err = p.communicate()
                if p.returncode != 0:
                    raise RuntimeError(f"a scenario process failed: {err[-2000:]}")
                outs.append(json.loads(out.strip().splitlines()[-1]))
        report = fsck.check(db, repair=False)
    gc_out, writer_outs = outs[-1], outs[:-1]
    return {"writers": writers, "writes": sum(o["writes"] for o in writer_outs), "reuses": sum(o["reuses"] for o in writer_outs),
            "gc_runs": gc_out["runs"], "gc_deleted": gc_out["deleted"],
            "referenced_deleted": sum(o["missing"] for o in writer_outs) + report.missing}


# -- a full disk: one clear error, nothing half-written, gc frees it --------------------------

_FILLER = """
import json, sys
from labpipe import Task
from labpipe.errors import StoreFull
t = Task.create(task_name="fill")
n = 0
try:
    while True:
        t.upload_artifact(f"chunk{n}", bytes([n % 256]) * (1 << 20))
        n += 1
except StoreFull as exc:
    print(json.dumps({"uploaded": n, "error": type(exc).__name__, "message": str(exc), "failed": f"chunk{n}"}))
"""


def full_disk(workdir: Path, full: bool) -> dict:
    """On a small tmpfs: garbage blobs (unreferenced, old), then a writer fills the disk until it gets
    StoreFull. The error must name the artifact, the store and the free space; nothing half-written may
    stay; `labpipe gc` in a fresh process must free the garbage; then writes work again."""
    size_mb, garbage = (64, 16) if full else (12, 4)
    mount = workdir / "disk"
    with small_disk.mounted(mount, size_mb << 20), _store(mount / "store") as store:
        from labpipe import Task
        from labpipe.store import blobs
        from labpipe.store.db import get_database

        db = get_database(store)
        junk = Task.create(task_name="garbage")
        for i in range(garbage):
            junk.upload_artifact(f"g{i}", bytes([200 + i % 50]) * (1 << 20) + bytes([i]))
        paths = [blobs.blob_path(db, a["hash"]) for a in db.query("SELECT hash FROM artifacts WHERE task = ?", (junk.id,))]
        junk.delete()
        old = time.time() - 7200
        for p in paths:
            os.utime(p, (old, old))
        db.close()  # from here on only fresh processes touch the full store
        filled = _python(_FILLER)
        if filled.returncode != 0:
            raise RuntimeError(f"the filler did not end with StoreFull: {filled.stderr[-2000:]}")
        fill = json.loads(filled.stdout.strip().splitlines()[-1])
        message = fill["message"]
        names_all = f"artifact {fill['failed']!r}" in message and str(store) in message and "bytes free" in message
        half = sum(1 for _ in db.blobs_dir.rglob(".tmp-*"))
        gc_run = _python("from labpipe.cli import main; main()", "gc", "--json")
        gc_report = json.loads(gc_run.stdout) if gc_run.returncode == 0 else {}
        after = _python("from labpipe import Task; Task.create(task_name='after').upload_artifact('x', bytes(1 << 20))")
        check = _python("from labpipe.cli import main; main()", "fsck", "--json")
        fsck_report = json.loads(check.stdout) if check.stdout.strip() else {}
        row = _python("import json; from labpipe.store.db import get_database; from labpipe.store import outputs; "
                      "from labpipe import Task; t = Task.get_tasks(task_name='fill')[0]; "
                      f"print(json.dumps(outputs.get_artifact(get_database(), t.id, {fill['failed']!r}) is not None))")
    return {"uploaded_before_full": fill["uploaded"], "store_full_errors": int(fill["error"] == "StoreFull"),
            "error_names_artifact_store_free": int(names_all), "half_written": half + (row.stdout.strip() == "true"),
            "gc_exit": gc_run.returncode, "gc_deleted_files": gc_report.get("deleted_files", 0),
            "gc_freed_bytes": gc_report.get("freed_bytes", 0), "write_after_gc_exit": after.returncode,
            "fsck_problems": fsck_report.get("remaining", -1)}


SCENARIOS = {"blob_kills": blob_kills, "byte_flips": byte_flips, "gc_vs_writers": gc_vs_writers, "full_disk": full_disk}

TARGETS = {
    "blob_kills": "0 corrupt served, 0 bad blobs, 0 rows naming a missing blob, every row loads",
    "byte_flips": "0 corrupt served; every run after a flip succeeds and recomputes the flipped step",
    "gc_vs_writers": "referenced_deleted: 0, with gc deleting garbage meanwhile (gc_deleted > 0)",
    "full_disk": "StoreFull naming artifact, store, free space; 0 half-written; gc exits 0 and frees the garbage; writes work after",
}

CHECKS = {
    "blob_kills": lambda f: f["corrupt_served"] == 0 and f["bad_blobs"] == 0 and f["rows_missing_blob"] == 0
    and f["unreadable_rows"] == 0 and f["artifacts_served"] > 0,
    "byte_flips": lambda f: f["corrupt_served"] == 0 and f["failed_runs"] == 0 and f["runs_ok"] == f["flips"]
    and f["recomputed"] == f["flips"],
    "gc_vs_writers": lambda f: f["referenced_deleted"] == 0 and f["gc_deleted"] > 0 and f["reuses"] > 0,
    "full_disk": lambda f: f["store_full_errors"] == 1 and f["error_names_artifact_store_free"] == 1 and f["half_written"] == 0
    and f["gc_exit"] == 0 and f["gc_deleted_files"] > 0 and f["write_after_gc_exit"] == 0 and f["fsck_problems"] == 0,
}
