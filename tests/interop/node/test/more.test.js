'use strict';
// Further RabbitMQ behaviours clients rely on: heartbeats, priorities, global qos,
// single active consumer, length limits in bytes, argument validation, binding errors.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Scope, collect, rejectsWithCode, waitUntil, sleep, uid, urlWith, nextEvent } = require('../lib/helpers');

async function drain(ch, q) {
  const out = [];
  for (;;) {
    const m = await ch.get(q, { noAck: true });
    if (!m) return out;
    out.push(m.content.toString());
  }
}

test('heartbeats: an idle connection with a 1 s heartbeat stays open for 4 s', async (t) => {
  const s = new Scope(t);
  const conn = await s.connect(urlWith({ query: { heartbeat: 1 } }));
  assert.equal(conn.connection.heartbeat, 1);
  let closed = null;
  conn.on('close', (e) => {
    closed = e || 'clean';
  });
  await sleep(4000);
  assert.equal(closed, null, `connection still open (${closed && closed.message})`);
  const ch = await s.channel(conn);
  const q = await s.queue(ch, 'hb', { exclusive: true });
  assert.equal((await ch.checkQueue(q)).messageCount, 0);
});

test('priority queue (x-max-priority) delivers higher priorities first, FIFO within one', async (t) => {
  const s = new Scope(t);
  const ch = await s.confirmChannel();
  const q = await s.queue(ch, 'prio', { maxPriority: 10 });
  const sends = [
    ['p1-a', 1],
    ['p5-a', 5],
    ['none', undefined],
    ['p9', 9],
    ['p5-b', 5],
    ['p200', 200], // above the max: treated as the max (10)
    ['p1-b', 1],
  ];
  for (const [b, p] of sends) ch.sendToQueue(q, Buffer.from(b), p === undefined ? {} : { priority: p });
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, q), ['p200', 'p9', 'p5-a', 'p5-b', 'p1-a', 'p1-b', 'none']);
});

test(
  'consumer priorities (x-priority): the higher-priority consumer gets the messages while it has credit',
  async (t) => {
    const s = new Scope(t);
    const admin = await s.channel();
    const q = await s.queue(admin, 'cprio');
    const lowCh = await s.channel();
    const highCh = await s.channel();
    await lowCh.prefetch(100);
    await highCh.prefetch(100);
    const low = await collect(lowCh, q, { ack: true, options: { priority: 1 } });
    const high = await collect(highCh, q, { ack: true, options: { priority: 10 } });
    for (let i = 0; i < 20; i++) admin.sendToQueue(q, Buffer.from(String(i)));
    await waitUntil(() => low.messages.length + high.messages.length === 20);
    assert.equal(high.messages.length, 20);
    assert.equal(low.messages.length, 0);
  },
);

test(
  'global qos (prefetch shared by the channel) limits unacked across consumers',
  async (t) => {
    const s = new Scope(t);
    const admin = await s.channel();
    const q1 = await s.queue(admin, 'gq1');
    const q2 = await s.queue(admin, 'gq2');
    for (let i = 0; i < 5; i++) {
      admin.sendToQueue(q1, Buffer.from(`a${i}`));
      admin.sendToQueue(q2, Buffer.from(`b${i}`));
    }
    const ch = await s.channel();
    await ch.prefetch(3, true);
    const a = await collect(ch, q1);
    const b = await collect(ch, q2);
    await waitUntil(() => a.messages.length + b.messages.length === 3);
    await sleep(200);
    assert.equal(a.messages.length + b.messages.length, 3, 'channel-wide limit of 3');
    ch.ackAll();
    await waitUntil(() => a.messages.length + b.messages.length === 6);
    await sleep(200);
    assert.equal(a.messages.length + b.messages.length, 6);
    ch.ackAll();
  },
);

test('single active consumer: only the first consumer gets messages until it cancels', async (t) => {
  const s = new Scope(t);
  const admin = await s.channel();
  const q = await s.queue(admin, 'sac', { arguments: { 'x-single-active-consumer': true } });
  const c1 = await s.channel();
  const c2 = await s.channel();
  const first = await collect(c1, q, { ack: true });
  const second = await collect(c2, q, { ack: true });
  for (let i = 0; i < 10; i++) admin.sendToQueue(q, Buffer.from(`s${i}`));
  await first.waitFor(10);
  await sleep(100);
  assert.equal(second.messages.length, 0);
  await c1.cancel(first.consumerTag);
  admin.sendToQueue(q, Buffer.from('to the second'));
  await second.waitFor(1);
  assert.deepEqual(second.bodies(), ['to the second']);
});

test('x-max-length-bytes drops from the head by body bytes', async (t) => {
  const s = new Scope(t);
  const ch = await s.confirmChannel();
  const q = await s.queue(ch, 'maxbytes', { arguments: { 'x-max-length-bytes': 10 } });
  for (const b of ['aaaa', 'bbbb', 'cccc', 'dddd']) ch.sendToQueue(q, Buffer.from(b));
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, q), ['cccc', 'dddd']);
});

test('dead-lettering back into the same queue on reject increments x-death count', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const dlx = await s.exchange(ch, 'self-dlx', 'fanout');
  const q = await s.queue(ch, 'self', { deadLetterExchange: dlx });
  await ch.bindQueue(q, dlx, '');
  ch.sendToQueue(q, Buffer.from('again and again'));
  let m = false;
  for (let round = 1; round <= 3; round++) {
    await waitUntil(async () => (m = await ch.get(q)) !== false, 5000, `round ${round}`);
    const death = m.properties.headers?.['x-death'];
    if (round === 1) assert.equal(death, undefined);
    else {
      assert.equal(death.length, 1, 'one entry per (queue, reason)');
      assert.equal(death[0].reason, 'rejected');
      assert.equal(Number(death[0].count), round - 1);
    }
    ch.reject(m, false);
  }
  await waitUntil(async () => (m = await ch.get(q, { noAck: true })) !== false);
  assert.equal(Number(m.properties.headers['x-death'][0].count), 3);
});

test('invalid arguments are refused with 406: x-match, x-max-length, x-overflow', async (t) => {
  const s = new Scope(t);
  const ch1 = await s.channel();
  const x = await s.exchange(ch1, 'hdr-bad', 'headers');
  const q = await s.queue(ch1, 'hdr-bad');
  await rejectsWithCode(
    ch1.bindQueue(q, x, '', { 'x-match': 'some' }),
    406,
    /PRECONDITION_FAILED - Invalid x-match field value/,
  );
  const ch3 = await s.channel();
  await rejectsWithCode(ch3.assertQueue(uid('bad-len'), { arguments: { 'x-max-length': -1 } }), 406);
  const ch4 = await s.channel();
  await rejectsWithCode(ch4.assertQueue(uid('bad-of'), { arguments: { 'x-overflow': 'explode' } }), 406);
});

test(
  'a publish with an invalid expiration property is refused with 406',
  async (t) => {
    const s = new Scope(t);
    const ch1 = await s.channel();
    const q = await s.queue(ch1, 'bad-expiration');
    const ch2 = await s.channel();
    const closed = nextEvent(ch2, 'error', 3000);
    ch2.sendToQueue(q, Buffer.from('x'), { expiration: 'soon' });
    const err = await closed;
    assert.equal(err.code, 406);
    assert.match(err.message, /PRECONDITION_FAILED - invalid expiration 'soon'/);
    assert.equal((await ch1.checkQueue(q)).messageCount, 0);
  },
);

test('bind errors: missing exchange or queue is 404; passive exchange declare of a missing one is 404', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'bind-err');
  await rejectsWithCode(ch.bindQueue(q, uid('no-x'), 'k'), 404, /NOT_FOUND/);
  const ch2 = await s.channel();
  const x = await s.exchange(ch2, 'bind-err', 'direct');
  await rejectsWithCode(ch2.bindQueue(uid('no-q'), x, 'k'), 404, /NOT_FOUND/);
  const ch3 = await s.channel();
  await rejectsWithCode(ch3.checkExchange(uid('no-x')), 404, /NOT_FOUND/);
  const ch4 = await s.channel();
  await rejectsWithCode(ch4.bindExchange(x, uid('no-src'), 'k'), 404, /NOT_FOUND/);
});

test('a dead-letter exchange that does not exist drops the message silently', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'dlx-missing', { messageTtl: 50, deadLetterExchange: uid('absent') });
  ch.sendToQueue(q, Buffer.from('into the void'));
  await waitUntil(async () => (await ch.checkQueue(q)).messageCount === 0, 5000, 'expiry');
  assert.equal(s.errors.length, 0);
});

test('redelivered messages keep their properties and headers', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'redeliver-props');
  ch.sendToQueue(q, Buffer.from('p'), { headers: { a: 1 }, correlationId: 'c', priority: 3 });
  const inbox = await collect(ch, q);
  await inbox.waitFor(1);
  ch.nack(inbox.messages[0], false, true);
  await inbox.waitFor(2);
  const m = inbox.messages[1];
  assert.equal(m.fields.redelivered, true);
  assert.deepEqual(m.properties.headers, { a: 1 });
  assert.equal(m.properties.correlationId, 'c');
  assert.equal(m.properties.priority, 3);
  ch.ack(m);
});

test('queue TTL counts from enqueue: requeued messages keep their original expiry', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'ttl-requeue', { messageTtl: 400 });
  ch.sendToQueue(q, Buffer.from('ticking'));
  let m = false;
  await waitUntil(async () => (m = await ch.get(q)) !== false);
  await sleep(600); // past the TTL while unacked
  ch.nack(m, false, true); // requeued already expired
  await sleep(100);
  assert.equal(await ch.get(q, { noAck: true }), false, 'expired on requeue');
});

test('many queues and consumers on one connection (200 queues)', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const x = await s.exchange(ch, 'many', 'fanout');
  const inboxes = [];
  for (let i = 0; i < 200; i++) {
    const q = await s.queue(ch, `many${i}`, { autoDelete: false });
    await ch.bindQueue(q, x, '');
    inboxes.push(await collect(ch, q, { noAck: true }));
  }
  for (let i = 0; i < 5; i++) ch.publish(x, '', Buffer.from(`f${i}`));
  await waitUntil(() => inboxes.every((b) => b.messages.length === 5), 10000, 'fanout to 200 queues');
  for (const b of inboxes) assert.deepEqual(b.bodies(), ['f0', 'f1', 'f2', 'f3', 'f4']);
});

test('auto-delete exchange goes away when its last binding is removed', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const x = await s.exchange(ch, 'autodel-x', 'direct', { autoDelete: true });
  const q = await s.queue(ch, 'autodel-x');
  await ch.bindQueue(q, x, 'a');
  await ch.bindQueue(q, x, 'b');
  await ch.unbindQueue(q, x, 'a');
  await ch.checkExchange(x); // one binding left
  await ch.unbindQueue(q, x, 'b');
  await rejectsWithCode(ch.checkExchange(x), 404, /NOT_FOUND/);
});

test('x-expires: a queue with a consumer does not expire; it does once the consumer is gone', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'expires-used', { expires: 300 });
  const { consumerTag } = await ch.consume(q, () => {}, { noAck: true });
  await sleep(700);
  assert.equal((await ch.checkQueue(q)).consumerCount, 1, 'still there while consumed');
  await ch.cancel(consumerTag);
  await sleep(800);
  await rejectsWithCode(ch.checkQueue(q), 404, /NOT_FOUND/);
});

test('UTF-8 names and routing keys (up to 255 bytes) work end to end', async (t) => {
  const s = new Scope(t);
  const ch = await s.confirmChannel();
  const x = `node.ünïcødé.交換.${uid('x')}`;
  const q = `node.очередь.キュー.${uid('q')}`;
  s.track({ queue: q, exchange: x });
  await ch.assertExchange(x, 'topic');
  await ch.assertQueue(q);
  const key = `ключ.${'é'.repeat(100)}`; // 5 + 1 + 200 bytes... within 255
  assert.ok(Buffer.byteLength(key) <= 255);
  await ch.bindQueue(q, x, key);
  ch.publish(x, key, Buffer.from('héllo wörld ✓'));
  await ch.waitForConfirms();
  const m = await ch.get(q, { noAck: true });
  assert.equal(m.content.toString(), 'héllo wörld ✓');
  assert.equal(m.fields.exchange, x);
  assert.equal(m.fields.routingKey, key);
});

test(
  '10 concurrent publishers x 5,000 messages: per-publisher order kept, none lost',
  { timeout: 120_000 },
  async (t) => {
    const s = new Scope(t);
    const admin = await s.channel();
    const q = await s.queue(admin, 'many-publishers');
    const P = 10;
    const M = 5000;
    const lastSeen = new Array(P).fill(-1);
    let disorder = 0;
    let received = 0;
    const sub = await s.channel();
    await sub.consume(
      q,
      (msg) => {
        const p = msg.content.readUInt16BE(0);
        const i = msg.content.readUInt32BE(2);
        if (i !== lastSeen[p] + 1) disorder++;
        lastSeen[p] = i;
        received++;
      },
      { noAck: true },
    );
    await Promise.all(
      Array.from({ length: P }, async (_, p) => {
        const ch = await s.confirmChannel(); // own connection
        for (let i = 0; i < M; i++) {
          const b = Buffer.alloc(6);
          b.writeUInt16BE(p, 0);
          b.writeUInt32BE(i, 2);
          if (!ch.sendToQueue(q, b)) await new Promise((r) => ch.once('drain', r));
        }
        await ch.waitForConfirms();
      }),
    );
    await waitUntil(() => received >= P * M, 60_000, `${P * M} messages (have ${received})`);
    await sleep(200);
    assert.equal(received, P * M);
    assert.equal(disorder, 0, 'each publisher’s messages arrive in order, without gaps');
    assert.deepEqual(lastSeen, new Array(P).fill(M - 1));
  },
);
