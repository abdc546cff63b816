"""The Celery app the interop test runs a worker for (broker: FEDAMQ_URL, results: rpc://).

rpc:// sends every result back over AMQP to a reply queue of the caller, so the broker
under test carries both the tasks and their results; nothing else (Redis, a database) is
involved.
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery("fedamq_interop", broker=os.environ["FEDAMQ_URL"], backend="rpc://")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=3,
    worker_prefetch_multiplier=8,
    worker_hijack_root_logger=False,
    task_acks_late=True,
)


@app.task
def add(x, y):
    return x + y


@app.task
def fail(message):
    raise ValueError(message)


@app.task(bind=True, max_retries=3)
def flaky(self, succeed_on):
    """Fails until attempt number `succeed_on` (1-based), retrying through the broker."""
    attempt = self.request.retries + 1
    if attempt < succeed_on:
        raise self.retry(countdown=0, exc=RuntimeError(f"attempt {attempt}"))
    return attempt
