'use strict';
// Large messages: frame-boundary sizes, multi-megabyte bodies, small frame_max, and the
// max-message-size limit.

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Scope, collect, urlWith, waitUntil, nextEvent } = require('../lib/helpers');

const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');

async function roundTrip(s, conn, sizes) {
  const ch = await s.confirmChannel(conn);
  const q = await s.queue(ch, 'large');
  const bodies = sizes.map((n) => crypto.randomBytes(n));
  for (const [i, b] of bodies.entries()) ch.sendToQueue(q, b, { messageId: String(i) });
  await ch.waitForConfirms();
  const inbox = await collect(ch, q, { ack: true });
  await inbox.waitFor(bodies.length, 60_000);
  assert.equal(inbox.messages.length, bodies.length);
  for (const [i, m] of inbox.messages.entries()) {
    assert.equal(m.properties.messageId, String(i), 'order kept');
    assert.equal(m.content.length, sizes[i], `size of message ${i}`);
    assert.equal(sha(m.content), sha(bodies[i]), `content of message ${i} (${sizes[i]} bytes)`);
  }
}

test('bodies at frame boundaries (frame_max 131072) arrive byte-identical', async (t) => {
  const s = new Scope(t);
  const conn = await s.connect();
  const fm = conn.connection.frameMax;
  assert.equal(fm, 131072);
  const max = fm - 8; // body frame payload
  await roundTrip(s, conn, [0, 1, max - 1, max, max + 1, 2 * max, 2 * max + 1, 3 * max - 1]);
});

test('bodies of 1 MiB, 8 MiB and 64 MiB arrive byte-identical', async (t) => {
  const s = new Scope(t);
  const conn = await s.connect();
  await roundTrip(s, conn, [1 << 20, 8 << 20, 64 << 20]);
});

test('a 4 MiB body over a connection with frame_max 4096 (1000+ body frames)', async (t) => {
  const s = new Scope(t);
  const conn = await s.connect(urlWith({ query: { frameMax: 4096 } }));
  assert.equal(conn.connection.frameMax, 4096);
  await roundTrip(s, conn, [4 << 20, 4088, 4089, 0]);
});

test('large message via basic.get and redelivery after requeue', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'large-get');
  const body = crypto.randomBytes(3 << 20);
  ch.sendToQueue(q, body);
  let m = false;
  await waitUntil(async () => (m = await ch.get(q)) !== false, 10_000);
  assert.equal(sha(m.content), sha(body));
  ch.nack(m, false, true);
  let again = false;
  await waitUntil(async () => (again = await ch.get(q, { noAck: true })) !== false, 10_000);
  assert.equal(again.fields.redelivered, true);
  assert.equal(sha(again.content), sha(body));
});

test('a body over the 128 MiB max-message-size is refused with 406; the connection lives', async (t) => {
  const s = new Scope(t);
  const conn = await s.connect();
  const ch = await s.channel(conn);
  // Opened first: amqplib reuses a closed channel's number at once, and a channel.open
  // on that number can overtake the old channel's close-ok still queued behind the
  // rest of the refused body, which any broker then ignores.
  const ch2 = await s.channel(conn);
  const q = await s.queue(ch, 'too-big');
  const closed = nextEvent(ch, 'error');
  ch.sendToQueue(q, Buffer.alloc(128 * 1024 * 1024 + 1, 1));
  const err = await closed;
  assert.equal(err.code, 406);
  assert.match(
    err.message,
    /PRECONDITION_FAILED - message size 134217729 is larger than configured max size 134217728/,
  );
  assert.equal((await ch2.checkQueue(q)).messageCount, 0);
  // Exactly the limit is accepted.
  ch2.sendToQueue(q, Buffer.alloc(128 * 1024 * 1024, 2));
  await waitUntil(async () => (await ch2.checkQueue(q)).messageCount === 1, 30_000, 'the 128 MiB message');
  await ch2.purgeQueue(q);
});
