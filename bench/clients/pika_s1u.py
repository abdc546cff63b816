"""S1u with pika: a client slower than the broker, so each publish finds it asleep.

One publisher (pika's BlockingConnection, which writes a publish's method, header and
body frames with a write each) and one auto-ack consumer in a second process, 16 B
bodies, on a queue of their own, for SECONDS (default 10). Prints what was sent,
consumed and the publish rate; measure the broker's CPU around it from /proc, e.g.

    python3 -m venv /tmp/pika && /tmp/pika/bin/pip install pika==1.4.4
    t0=$(awk '{print $14+$15}' /proc/$BROKER_PID/stat)
    /tmp/pika/bin/python bench/clients/pika_s1u.py amqp://guest:guest@127.0.0.1:5672/%2f
    t1=$(awk '{print $14+$15}' /proc/$BROKER_PID/stat)   # (t1-t0) clock ticks

See ARCHITECTURE.md, "Clients that write each publish on its own".
"""

import multiprocessing as mp
import sys
import time

import pika

QUEUE = "pika-s1u"


def consume(url, ready, done, out):
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.queue_declare(QUEUE, auto_delete=True)
    count = [0]

    def on_message(_ch, _method, _props, _body):
        count[0] += 1

    ch.basic_consume(QUEUE, on_message, auto_ack=True)
    ready.set()
    while not done.is_set():
        conn.process_data_events(time_limit=0.1)
    # What is still on its way after the publisher stopped.
    end = time.time() + 2
    while time.time() < end:
        conn.process_data_events(time_limit=0.1)
    out.put(count[0])
    conn.close()


def main():
    url = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    ready, done, out = mp.Event(), mp.Event(), mp.Queue()
    consumer = mp.Process(target=consume, args=(url, ready, done, out))
    consumer.start()
    ready.wait()
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    body = b"x" * 16
    sent = 0
    started = time.time()
    while time.time() - started < seconds:
        for _ in range(100):
            ch.basic_publish("", QUEUE, body)
        sent += 100
    elapsed = time.time() - started
    conn.close()
    done.set()
    consumed = out.get()
    consumer.join()
    print(f"sent {sent} consumed {consumed} rate {sent / elapsed:.0f} msg/s")
    sys.exit(0 if consumed == sent else 1)


if __name__ == "__main__":
    main()
