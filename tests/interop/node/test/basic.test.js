'use strict';
// Declare / bind / publish / consume / get / ack / nack / reject / qos / cancel.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Scope, collect, rejectsWithCode, waitUntil, sleep, uid, nextEvent } = require('../lib/helpers');

test('declare, bind, publish, consume and ack through a direct exchange', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const x = await s.exchange(ch, 'direct', 'direct', { durable: false });
  const q = await s.queue(ch, 'dq', { durable: false });
  await ch.bindQueue(q, x, 'key-a');
  for (let i = 0; i < 10; i++) ch.publish(x, 'key-a', Buffer.from(`msg-${i}`));
  ch.publish(x, 'key-b', Buffer.from('unroutable')); // no binding: dropped
  const inbox = await collect(ch, q, { ack: true });
  await inbox.waitFor(10);
  await sleep(100);
  assert.deepEqual(
    inbox.bodies(),
    Array.from({ length: 10 }, (_, i) => `msg-${i}`),
  );
  for (const [i, m] of inbox.messages.entries()) {
    assert.equal(m.fields.exchange, x);
    assert.equal(m.fields.routingKey, 'key-a');
    assert.equal(m.fields.redelivered, false);
    assert.equal(m.fields.deliveryTag, i + 1);
    assert.equal(m.fields.consumerTag, inbox.consumerTag);
  }
  await ch.cancel(inbox.consumerTag);
  const ok = await ch.checkQueue(q);
  assert.equal(ok.messageCount, 0);
  assert.equal(ok.consumerCount, 0);
});

test('queue.declare reports message and consumer counts; redeclare is idempotent', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'counts');
  for (let i = 0; i < 3; i++) ch.sendToQueue(q, Buffer.from(String(i)));
  await waitUntil(async () => (await ch.checkQueue(q)).messageCount === 3);
  const c2 = await s.channel();
  await c2.prefetch(1);
  await c2.consume(q, () => {}); // holds one unacked
  await waitUntil(async () => (await ch.checkQueue(q)).consumerCount === 1);
  const again = await ch.assertQueue(q);
  assert.equal(again.queue, q);
  assert.equal(again.messageCount, 2, 'ready messages only');
  assert.equal(again.consumerCount, 1);
});

test('redeclaring a queue with different arguments fails with 406 PRECONDITION_FAILED', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'pre', { durable: false });
  await rejectsWithCode(ch.assertQueue(q, { durable: true }), 406, /PRECONDITION_FAILED/);
});

test('server-named queue, exclusive queue locked to its connection (405)', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const ok = await ch.assertQueue('', { exclusive: true });
  assert.match(ok.queue, /^amq\.gen-/);
  const other = await s.channel(); // another connection
  await rejectsWithCode(other.checkQueue(ok.queue), 405, /RESOURCE_LOCKED/);
  const other2 = await s.channel();
  await rejectsWithCode(
    other2.consume(ok.queue, () => {}),
    405,
    /RESOURCE_LOCKED/,
  );
  // Same connection: fine.
  const same = await ch.checkQueue(ok.queue);
  assert.equal(same.queue, ok.queue);
});

test('basic.get, ack, nack with requeue sets redelivered, reject without requeue drops', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'get');
  assert.equal(await ch.get(q), false, 'empty queue: get-empty');
  ch.sendToQueue(q, Buffer.from('one'));
  ch.sendToQueue(q, Buffer.from('two'));
  await waitUntil(async () => (await ch.checkQueue(q)).messageCount === 2);

  const m1 = await ch.get(q);
  assert.equal(m1.content.toString(), 'one');
  assert.equal(m1.fields.redelivered, false);
  assert.equal(m1.fields.messageCount, 1, 'get-ok message-count: messages left');
  ch.nack(m1, false, true); // requeue

  const again = await ch.get(q);
  assert.equal(again.content.toString(), 'one', 'requeued message goes back to the head');
  assert.equal(again.fields.redelivered, true);
  ch.ack(again);

  const m2 = await ch.get(q);
  assert.equal(m2.content.toString(), 'two');
  ch.reject(m2, false);
  await sleep(50);
  assert.equal(await ch.get(q), false);
  const ok = await ch.checkQueue(q);
  assert.equal(ok.messageCount, 0);
});

test('ack multiple and nack multiple', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'multi');
  for (let i = 0; i < 6; i++) ch.sendToQueue(q, Buffer.from(`m${i}`));
  const inbox = await collect(ch, q);
  await inbox.waitFor(6);
  ch.ack(inbox.messages[2], true); // acks m0..m2
  ch.nack(inbox.messages[5], true, true); // requeues m3..m5
  await ch.cancel(inbox.consumerTag);
  await waitUntil(async () => (await ch.checkQueue(q)).messageCount === 3, 5000, '3 requeued');
  const back = [];
  for (let i = 0; i < 3; i++) {
    const m = await ch.get(q, { noAck: true });
    back.push(m.content.toString());
    assert.equal(m.fields.redelivered, true);
  }
  assert.deepEqual(back, ['m3', 'm4', 'm5']);
});

test('unacked messages return to the queue when the channel closes', async (t) => {
  const s = new Scope(t);
  const admin = await s.channel();
  const q = await s.queue(admin, 'requeue-on-close');
  for (let i = 0; i < 4; i++) admin.sendToQueue(q, Buffer.from(`r${i}`));
  const ch = await s.channel();
  const inbox = await collect(ch, q);
  await inbox.waitFor(4);
  ch.ack(inbox.messages[0]);
  await ch.close();
  await waitUntil(async () => (await admin.checkQueue(q)).messageCount === 3, 5000, '3 back');
  const m = await admin.get(q, { noAck: true });
  assert.equal(m.content.toString(), 'r1');
  assert.equal(m.fields.redelivered, true);
});

test('prefetch limits unacked deliveries per consumer', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'qos');
  for (let i = 0; i < 10; i++) ch.sendToQueue(q, Buffer.from(String(i)));
  await ch.prefetch(3);
  const inbox = await collect(ch, q);
  await inbox.waitFor(3);
  await sleep(200);
  assert.equal(inbox.messages.length, 3, 'only 3 in flight');
  ch.ack(inbox.messages[0]);
  ch.ack(inbox.messages[1]);
  await inbox.waitFor(5);
  await sleep(200);
  assert.equal(inbox.messages.length, 5);
  ch.ackAll();
  await inbox.waitFor(8);
  await sleep(200);
  assert.equal(inbox.messages.length, 8);
  ch.ackAll();
  await inbox.waitFor(10);
  assert.deepEqual(inbox.bodies(), ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
  ch.ackAll();
});

test('two consumers on one queue share the messages round-robin', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'rr');
  const a = await collect(ch, q, { ack: true });
  const b = await collect(ch, q, { ack: true });
  for (let i = 0; i < 20; i++) ch.sendToQueue(q, Buffer.from(String(i)));
  await waitUntil(() => a.messages.length + b.messages.length === 20);
  assert.equal(a.messages.length, 10);
  assert.equal(b.messages.length, 10);
  const all = [...a.bodies(), ...b.bodies()].map(Number).sort((x, y) => x - y);
  assert.deepEqual(
    all,
    Array.from({ length: 20 }, (_, i) => i),
  );
});

test('message properties and headers round-trip exactly', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'props');
  const ts = 1_700_000_000;
  const headers = {
    str: 'text',
    int: 42,
    neg: -7,
    big: 2 ** 40,
    float: 1.5,
    bool: true,
    nested: { a: 'b', n: 1 },
    list: ['x', 2, false],
    bytes: Buffer.from([0, 1, 2, 255]),
  };
  ch.sendToQueue(q, Buffer.from('{"hello":"world"}'), {
    contentType: 'application/json',
    contentEncoding: 'utf-8',
    headers,
    deliveryMode: 2,
    priority: 5,
    correlationId: 'corr-1',
    replyTo: 'reply-queue',
    expiration: '60000',
    messageId: 'mid-1',
    timestamp: ts,
    type: 'greeting',
    userId: 'guest',
    appId: 'fedamq-interop',
  });
  let m = false;
  await waitUntil(async () => (m = await ch.get(q, { noAck: true })) !== false);
  assert.equal(m.content.toString(), '{"hello":"world"}');
  const p = m.properties;
  assert.equal(p.contentType, 'application/json');
  assert.equal(p.contentEncoding, 'utf-8');
  assert.equal(p.deliveryMode, 2);
  assert.equal(p.priority, 5);
  assert.equal(p.correlationId, 'corr-1');
  assert.equal(p.replyTo, 'reply-queue');
  assert.equal(p.expiration, '60000');
  assert.equal(p.messageId, 'mid-1');
  assert.equal(p.timestamp, ts);
  assert.equal(p.type, 'greeting');
  assert.equal(p.userId, 'guest');
  assert.equal(p.appId, 'fedamq-interop');
  assert.equal(p.headers.str, 'text');
  assert.equal(p.headers.int, 42);
  assert.equal(p.headers.neg, -7);
  assert.equal(Number(p.headers.big), 2 ** 40);
  assert.equal(p.headers.float, 1.5);
  assert.equal(p.headers.bool, true);
  assert.deepEqual(p.headers.nested, { a: 'b', n: 1 });
  assert.deepEqual(p.headers.list, ['x', 2, false]);
  assert.ok(Buffer.from(p.headers.bytes).equals(Buffer.from([0, 1, 2, 255])));
});

test('user-id that is not the connection user is refused with 406', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'userid');
  const closed = nextEvent(ch, 'error');
  ch.sendToQueue(q, Buffer.from('x'), { userId: 'someone-else' });
  const err = await closed;
  assert.equal(err.code, 406);
  assert.match(err.message, /PRECONDITION_FAILED/);
});

test('publishing to a missing exchange closes the channel with 404', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const closed = nextEvent(ch, 'error');
  ch.publish(uid('nope'), 'k', Buffer.from('x'));
  const err = await closed;
  assert.equal(err.code, 404);
  assert.match(err.message, /NOT_FOUND/);
});

test('purge returns the count; delete if-empty / if-unused are enforced', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'purge');
  for (let i = 0; i < 7; i++) ch.sendToQueue(q, Buffer.from('p'));
  await waitUntil(async () => (await ch.checkQueue(q)).messageCount === 7);
  const p = await ch.purgeQueue(q);
  assert.equal(p.messageCount, 7);
  ch.sendToQueue(q, Buffer.from('left'));
  await waitUntil(async () => (await ch.checkQueue(q)).messageCount === 1);
  await rejectsWithCode(ch.deleteQueue(q, { ifEmpty: true }), 406, /PRECONDITION_FAILED/);

  const ch2 = await s.channel();
  const q2 = await s.queue(ch2, 'unused');
  const c = await ch2.consume(q2, () => {});
  await rejectsWithCode(ch2.deleteQueue(q2, { ifUnused: true }), 406, /PRECONDITION_FAILED/);
  void c;

  const ch3 = await s.channel();
  const del = await ch3.deleteQueue(q);
  assert.equal(del.messageCount, 1);
  await rejectsWithCode(ch3.checkQueue(q), 404);
});

test('deleting a consumed queue cancels the consumer (consumer_cancel_notify)', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'cancel-notify');
  let cancelled = false;
  await ch.consume(q, (msg) => {
    if (msg === null) cancelled = true;
  });
  const admin = await s.channel();
  await admin.deleteQueue(q);
  await waitUntil(() => cancelled, 5000, 'basic.cancel from the server');
  // The channel stays open.
  const q2 = await s.queue(ch, 'after-cancel', { exclusive: true });
  assert.ok((await ch.checkQueue(q2)).queue);
});

test('basic.cancel stops deliveries; noAck consumers need no acks', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'noack');
  const inbox = await collect(ch, q, { noAck: true });
  for (let i = 0; i < 5; i++) ch.sendToQueue(q, Buffer.from(String(i)));
  await inbox.waitFor(5);
  await ch.cancel(inbox.consumerTag);
  ch.sendToQueue(q, Buffer.from('after'));
  await waitUntil(async () => (await ch.checkQueue(q)).messageCount === 1);
  assert.equal(inbox.messages.length, 5);
  assert.equal((await ch.get(q, { noAck: true })).content.toString(), 'after');
});

test(
  'exclusive consumer blocks a second consumer with 403',
  async (t) => {
    const s = new Scope(t);
    const ch = await s.channel();
    const q = await s.queue(ch, 'excl-consumer');
    await ch.consume(q, () => {}, { exclusive: true });
    const ch2 = await s.channel();
    await rejectsWithCode(
      ch2.consume(q, () => {}),
      403,
      /ACCESS_REFUSED/,
    );
  },
);

test('duplicate consumer tag on one channel is a 530 connection error', async (t) => {
  const s = new Scope(t);
  const conn = await s.connect();
  const ch = await s.channel(conn);
  const q = await s.queue(ch, 'dup-tag', { durable: false });
  await ch.consume(q, () => {}, { consumerTag: 'same-tag' });
  const connClosed = nextEvent(conn, 'close');
  await assert.rejects(ch.consume(q, () => {}, { consumerTag: 'same-tag' }));
  const err = await connClosed;
  assert.equal(err.code, 530);
  assert.match(err.message, /NOT_ALLOWED/);
});

test('basic.recover requeues unacked messages, redelivered', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'recover');
  ch.sendToQueue(q, Buffer.from('again'));
  const inbox = await collect(ch, q);
  await inbox.waitFor(1);
  assert.equal(inbox.messages[0].fields.redelivered, false);
  await ch.recover();
  await inbox.waitFor(2);
  assert.equal(inbox.messages[1].content.toString(), 'again');
  assert.equal(inbox.messages[1].fields.redelivered, true);
  ch.ack(inbox.messages[1]);
});
