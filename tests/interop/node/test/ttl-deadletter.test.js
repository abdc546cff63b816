'use strict';
// Message TTL (per queue and per message), queue expiry, max-length, dead-lettering and
// the x-death header.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Scope, collect, rejectsWithCode, waitUntil, sleep, uid } = require('../lib/helpers');

/** A fanout dead-letter exchange with one queue bound, returned as { dlx, dlq }. */
async function deadLetterSink(s, ch, type = 'fanout', key = '') {
  const dlx = await s.exchange(ch, 'dlx', type);
  const dlq = await s.queue(ch, 'dlq');
  await ch.bindQueue(dlq, dlx, key);
  return { dlx, dlq };
}

async function getOne(ch, q, { noAck = true, ms = 5000 } = {}) {
  let m = false;
  await waitUntil(async () => (m = await ch.get(q, { noAck })) !== false, ms, `a message on ${q}`);
  return m;
}

test('queue message TTL (x-message-ttl) expires messages into the dead-letter exchange with x-death', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const { dlx, dlq } = await deadLetterSink(s, ch);
  const q = await s.queue(ch, 'ttl-q', { messageTtl: 200, deadLetterExchange: dlx });
  ch.sendToQueue(q, Buffer.from('expire me'), { messageId: 'ttl-1', headers: { keep: 'this' } });
  await sleep(50);
  assert.equal((await ch.checkQueue(q)).messageCount, 1, 'still there before the TTL');
  const m = await getOne(ch, dlq);
  assert.equal(m.content.toString(), 'expire me');
  assert.equal(m.properties.messageId, 'ttl-1');
  assert.equal(m.properties.headers.keep, 'this');
  assert.equal(m.fields.exchange, dlx);
  assert.equal(m.fields.routingKey, q, 'original routing key kept');
  const death = m.properties.headers['x-death'];
  assert.ok(Array.isArray(death) && death.length === 1, 'one x-death entry');
  assert.equal(death[0].queue, q);
  assert.equal(death[0].reason, 'expired');
  assert.equal(Number(death[0].count), 1);
  assert.equal(death[0].exchange, '');
  assert.deepEqual(death[0]['routing-keys'], [q]);
  assert.equal(m.properties.headers['x-first-death-reason'], 'expired');
  assert.equal(m.properties.headers['x-first-death-queue'], q);
  assert.equal(m.properties.headers['x-first-death-exchange'], '');
  assert.equal((await ch.checkQueue(q)).messageCount, 0);
});

test('per-message expiration: an expired message is never delivered', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'msg-ttl');
  ch.sendToQueue(q, Buffer.from('short'), { expiration: '100' });
  ch.sendToQueue(q, Buffer.from('long'), { expiration: '60000' });
  ch.sendToQueue(q, Buffer.from('forever'));
  await sleep(300);
  const got = [];
  for (;;) {
    const m = await ch.get(q, { noAck: true });
    if (!m) break;
    got.push(m.content.toString());
  }
  assert.deepEqual(got, ['long', 'forever']);
});

test('per-message expiration dead-letters with reason expired; expiration property removed', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const { dlx, dlq } = await deadLetterSink(s, ch);
  const q = await s.queue(ch, 'msg-ttl-dlx', { deadLetterExchange: dlx });
  ch.sendToQueue(q, Buffer.from('per-message'), { expiration: '100' });
  const m = await getOne(ch, dlq);
  assert.equal(m.content.toString(), 'per-message');
  assert.equal(m.properties.expiration, undefined, 'expiration is removed on dead-lettering');
  const death = m.properties.headers['x-death'][0];
  assert.equal(death.reason, 'expired');
  assert.equal(death['original-expiration'], '100');
});

test('zero TTL: message expires unless a consumer can take it at once', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'ttl-zero', { messageTtl: 0 });
  ch.sendToQueue(q, Buffer.from('gone'));
  await sleep(100);
  assert.equal((await ch.checkQueue(q)).messageCount, 0);
  const inbox = await collect(ch, q, { noAck: true });
  ch.sendToQueue(q, Buffer.from('taken'));
  await inbox.waitFor(1);
  assert.deepEqual(inbox.bodies(), ['taken']);
});

test('reject / nack without requeue dead-letter with reason rejected and x-dead-letter-routing-key', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const { dlx, dlq } = await deadLetterSink(s, ch, 'direct', 'dead-key');
  const q = await s.queue(ch, 'rej', { deadLetterExchange: dlx, deadLetterRoutingKey: 'dead-key' });
  ch.sendToQueue(q, Buffer.from('reject me'));
  ch.sendToQueue(q, Buffer.from('nack me'));
  const m1 = await getOne(ch, q, { noAck: false });
  ch.reject(m1, false);
  const m2 = await getOne(ch, q, { noAck: false });
  ch.nack(m2, false, false);
  const d1 = await getOne(ch, dlq);
  const d2 = await getOne(ch, dlq);
  assert.deepEqual([d1.content.toString(), d2.content.toString()], ['reject me', 'nack me']);
  for (const d of [d1, d2]) {
    assert.equal(d.fields.routingKey, 'dead-key');
    const death = d.properties.headers['x-death'];
    assert.equal(death.length, 1);
    assert.equal(death[0].reason, 'rejected');
    assert.equal(death[0].queue, q);
    assert.deepEqual(death[0]['routing-keys'], [q]);
  }
  // Requeue=true does not dead-letter.
  ch.sendToQueue(q, Buffer.from('requeue me'));
  const m3 = await getOne(ch, q, { noAck: false });
  ch.nack(m3, false, true);
  const again = await getOne(ch, q);
  assert.equal(again.content.toString(), 'requeue me');
  assert.equal(await ch.get(dlq), false);
});

test('x-max-length drops from the head and dead-letters with reason maxlen', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const { dlx, dlq } = await deadLetterSink(s, ch);
  const q = await s.queue(ch, 'maxlen', { maxLength: 2, deadLetterExchange: dlx });
  for (const b of ['m1', 'm2', 'm3', 'm4']) ch.sendToQueue(q, Buffer.from(b));
  await waitUntil(async () => (await ch.checkQueue(dlq)).messageCount === 2, 5000, '2 dead-lettered');
  assert.equal((await ch.checkQueue(q)).messageCount, 2);
  const kept = [
    (await ch.get(q, { noAck: true })).content.toString(),
    (await ch.get(q, { noAck: true })).content.toString(),
  ];
  assert.deepEqual(kept, ['m3', 'm4']);
  const d1 = await getOne(ch, dlq);
  const d2 = await getOne(ch, dlq);
  assert.deepEqual([d1.content.toString(), d2.content.toString()], ['m1', 'm2']);
  assert.equal(d1.properties.headers['x-death'][0].reason, 'maxlen');
});

test('x-overflow reject-publish nacks confirms beyond the limit', async (t) => {
  const s = new Scope(t);
  const ch = await s.confirmChannel();
  const q = await s.queue(ch, 'overflow', { maxLength: 1, arguments: { 'x-overflow': 'reject-publish' } });
  const r1 = await new Promise((resolve) => ch.sendToQueue(q, Buffer.from('fits'), {}, resolve));
  const r2 = await new Promise((resolve) => ch.sendToQueue(q, Buffer.from('does not'), {}, resolve));
  assert.ok(r1 === null || r1 === undefined, 'first is acked');
  assert.ok(r2 instanceof Error, 'second is nacked');
  assert.equal((await ch.checkQueue(q)).messageCount, 1);
  assert.equal((await ch.get(q, { noAck: true })).content.toString(), 'fits');
});

test('dead-letter cycle through two queues counts x-death per queue and reason', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  // q1 (ttl 100) --expired--> x2 -> q2 ; q2 rejects --> x3 -> sink
  const x2 = await s.exchange(ch, 'x2', 'fanout');
  const x3 = await s.exchange(ch, 'x3', 'fanout');
  const sink = await s.queue(ch, 'sink');
  await ch.bindQueue(sink, x3, '');
  const q2 = await s.queue(ch, 'q2', { deadLetterExchange: x3 });
  await ch.bindQueue(q2, x2, '');
  const q1 = await s.queue(ch, 'q1', { messageTtl: 100, deadLetterExchange: x2 });
  ch.sendToQueue(q1, Buffer.from('hop'));
  let m = false;
  await waitUntil(async () => (m = await ch.get(q2)) !== false, 5000, 'the message in q2');
  assert.equal(m.properties.headers['x-death'].length, 1);
  assert.equal(m.properties.headers['x-death'][0].reason, 'expired');
  ch.reject(m, false);
  const d = await getOne(ch, sink);
  assert.equal(d.content.toString(), 'hop');
  const deaths = d.properties.headers['x-death'];
  assert.equal(deaths.length, 2);
  // Most recent first.
  assert.equal(deaths[0].queue, q2);
  assert.equal(deaths[0].reason, 'rejected');
  assert.equal(deaths[1].queue, q1);
  assert.equal(deaths[1].reason, 'expired');
  assert.equal(d.properties.headers['x-first-death-queue'], q1);
  assert.equal(d.properties.headers['x-first-death-reason'], 'expired');
});

test('queue expiry (x-expires) deletes an unused queue', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'expires', { expires: 300 });
  assert.equal((await ch.checkQueue(q)).queue, q);
  await sleep(800);
  await rejectsWithCode(ch.checkQueue(q), 404, /NOT_FOUND/);
});

test('invalid x-message-ttl is refused with 406', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  await rejectsWithCode(
    ch.assertQueue(uid('bad-ttl'), { arguments: { 'x-message-ttl': -1 } }),
    406,
    /PRECONDITION_FAILED/,
  );
  const ch2 = await s.channel();
  await rejectsWithCode(
    ch2.assertQueue(uid('bad-ttl'), { arguments: { 'x-message-ttl': 'soon' } }),
    406,
    /PRECONDITION_FAILED/,
  );
});

test('auto-delete queue goes away when its last consumer cancels', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'autodel', { autoDelete: true });
  const a = await ch.consume(q, () => {});
  const b = await ch.consume(q, () => {});
  await ch.cancel(a.consumerTag);
  assert.equal((await ch.checkQueue(q)).consumerCount, 1);
  await ch.cancel(b.consumerTag);
  await waitUntil(
    async () => {
      const probe = await s.channel();
      try {
        await probe.checkQueue(q);
        await probe.close();
        return false;
      } catch (e) {
        return e.code === 404;
      }
    },
    5000,
    'auto-delete',
  );
});
