"""A Celery worker (PyPI `celery`) runs tasks through fedamq.

The worker is a real `celery worker` process (threads pool) on a queue unique to this
run; results come back with the rpc:// backend, which is AMQP too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
N_TASKS = 1000


@pytest.fixture(scope="module")
def celery(amqp_url, module_cleanup, tmp_path_factory):
    import celery_app

    run = uuid.uuid4().hex[:10]
    queue = f"itest.celery.{run}"
    hostname = f"itest-{run}@localhost"
    module_cleanup.queue(queue)
    module_cleanup.exchange(queue)
    module_cleanup.queue(f"{hostname}.celery.pidbox")
    for x in ("celery.pidbox", "reply.celery.pidbox", "celeryev"):
        module_cleanup.exchange(x)

    log = tmp_path_factory.mktemp("celery") / "worker.log"
    env = dict(os.environ, PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log, "wb") as logf:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_app", "worker",
             "-Q", queue, "-n", hostname, "-P", "threads", "-c", "8",
             "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-l", "INFO"],
            cwd=HERE, env=env, stdout=logf, stderr=subprocess.STDOUT,
        )
    app = celery_app.app
    try:
        deadline = time.monotonic() + 60
        replies = []
        while not replies:
            assert worker.poll() is None, "worker exited:\n" + log.read_text()
            assert time.monotonic() < deadline, "worker never answered ping:\n" + log.read_text()
            replies = app.control.ping(destination=[hostname], timeout=1.0)
        yield {"app": app, "mod": celery_app, "queue": queue, "hostname": hostname,
               "worker": worker, "log": log, "first_ping": replies}
    finally:
        worker.terminate()  # SIGTERM: warm shutdown
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
        # the caller's result queue (rpc://) and ping reply queue
        module_cleanup.queue(app.backend.oid)
        module_cleanup.queue(f"{app.control.mailbox.oid}.reply.celery.pidbox")
        app.close()


def test_control_ping_through_fanout_pidbox(celery):
    assert celery["first_ping"] == [{celery["hostname"]: {"ok": "pong"}}]


def test_1000_tasks_1000_results(celery):
    add = celery["mod"].add
    results = [add.apply_async((i, 1000), queue=celery["queue"]) for i in range(N_TASKS)]
    assert len({r.id for r in results}) == N_TASKS
    values = [r.get(timeout=120) for r in results]
    assert values == [i + 1000 for i in range(N_TASKS)]
    assert all(r.state == "SUCCESS" for r in results)


def test_task_failure_propagates(celery):
    r = celery["mod"].fail.apply_async(("boom",), queue=celery["queue"])
    with pytest.raises(ValueError, match="^boom$"):
        r.get(timeout=30)
    assert r.state == "FAILURE"


def test_retry_goes_back_through_the_broker(celery):
    r = celery["mod"].flaky.apply_async((3,), queue=celery["queue"])
    assert r.get(timeout=30) == 3


def test_countdown_task_held_then_run(celery):
    t0 = time.monotonic()
    r = celery["mod"].add.apply_async((20, 22), queue=celery["queue"], countdown=1.5)
    assert r.get(timeout=30) == 42
    assert time.monotonic() - t0 >= 1.4


def test_chain(celery):
    from celery import chain

    mod = celery["mod"]
    q = celery["queue"]
    r = chain(mod.add.s(1, 2).set(queue=q), mod.add.s(3).set(queue=q),
              mod.add.s(4).set(queue=q)).apply_async()
    assert r.get(timeout=30) == 10


def test_group_of_100(celery):
    from celery import group

    mod = celery["mod"]
    r = group(mod.add.s(i, i).set(queue=celery["queue"]) for i in range(100)).apply_async()
    assert r.get(timeout=60) == [2 * i for i in range(100)]
