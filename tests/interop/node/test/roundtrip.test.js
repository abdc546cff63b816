'use strict';
// 100,000 messages through one queue, published with confirms on one connection and
// consumed with manual acks on another, concurrently: every message arrives exactly
// once with its exact body, and nothing is left behind.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Scope, waitUntil } = require('../lib/helpers');

const N = 100_000;

function body(i) {
  // 8-byte sequence number + a recognisable, index-dependent tail.
  const tail = `|message ${i}|${'x'.repeat(i % 61)}`;
  const b = Buffer.alloc(8 + Buffer.byteLength(tail));
  b.writeBigUInt64BE(BigInt(i), 0);
  b.write(tail, 8);
  return b;
}

test(
  `${N.toLocaleString('en')} messages round trip: nothing lost, nothing duplicated`,
  { timeout: 300_000 },
  async (t) => {
    const s = new Scope(t);
    const pubConn = await s.connect();
    const subConn = await s.connect();
    const pub = await s.confirmChannel(pubConn);
    const sub = await s.channel(subConn);
    const q = await s.queue(pub, 'roundtrip', { durable: false });

    const seen = new Uint8Array(N);
    let received = 0;
    let duplicates = 0;
    let corrupt = 0;
    let redelivered = 0;
    let outOfOrder = 0;
    let lastSeq = -1;
    await sub.prefetch(1000);
    const started = Date.now();
    const { consumerTag } = await sub.consume(q, (msg) => {
      if (msg === null) return;
      const i = Number(msg.content.readBigUInt64BE(0));
      if (i < 0 || i >= N || !msg.content.equals(body(i))) corrupt++;
      else if (seen[i]++) duplicates++;
      if (msg.fields.redelivered) redelivered++;
      if (i <= lastSeq) outOfOrder++;
      lastSeq = i;
      received++;
      // Ack in batches of 100 (multiple), plus the final one.
      if (received % 100 === 0 || received === N) sub.ack(msg, true);
    });

    let nacked = 0;
    for (let i = 0; i < N; i++) {
      if (!pub.publish('', q, body(i), {}, (err) => err && nacked++)) {
        await new Promise((r) => pub.once('drain', r));
      }
    }
    await pub.waitForConfirms();
    assert.equal(nacked, 0, 'no publish was nacked');

    await waitUntil(() => received >= N, 240_000, `${N} deliveries (have ${received})`);
    const elapsed = (Date.now() - started) / 1000;
    t.diagnostic(`${N} messages round trip in ${elapsed.toFixed(1)} s (${Math.round(N / elapsed)} msg/s)`);
    // Give the broker a moment to deliver anything extra (duplicates) before counting.
    await new Promise((r) => setTimeout(r, 300));

    assert.equal(corrupt, 0, 'no corrupt bodies');
    assert.equal(duplicates, 0, 'no duplicates');
    assert.equal(received, N, 'exactly N deliveries');
    assert.equal(redelivered, 0, 'nothing redelivered');
    assert.equal(outOfOrder, 0, 'single publisher, single consumer: FIFO order');
    let missing = 0;
    for (let i = 0; i < N; i++) if (seen[i] !== 1) missing++;
    assert.equal(missing, 0, 'every sequence number exactly once');

    // All acked: closing the consumer's channel must not requeue anything.
    await sub.cancel(consumerTag);
    await sub.close();
    const ok = await pub.checkQueue(q);
    assert.equal(ok.messageCount, 0, 'queue empty after all acks');
    assert.equal(ok.consumerCount, 0);
  },
);

test(
  `${N.toLocaleString('en')} messages from a backlog to two competing consumers: each exactly once`,
  { timeout: 300_000 },
  async (t) => {
    const s = new Scope(t);
    const pub = await s.confirmChannel();
    const q = await s.queue(pub, 'backlog', { durable: false });
    for (let i = 0; i < N; i++) {
      if (!pub.sendToQueue(q, body(i))) await new Promise((r) => pub.once('drain', r));
    }
    await pub.waitForConfirms();
    assert.equal((await pub.checkQueue(q)).messageCount, N, 'whole backlog queued');

    const seen = new Uint8Array(N);
    const per = [0, 0];
    let problems = 0;
    for (const k of [0, 1]) {
      const ch = await s.channel(); // its own connection
      await ch.prefetch(250);
      await ch.consume(q, (msg) => {
        if (msg === null) return;
        const i = Number(msg.content.readBigUInt64BE(0));
        if (i < 0 || i >= N || !msg.content.equals(body(i)) || seen[i]++) problems++;
        per[k]++;
        ch.ack(msg);
      });
    }
    await waitUntil(() => per[0] + per[1] >= N, 240_000, `${N} deliveries (have ${per[0] + per[1]})`);
    await new Promise((r) => setTimeout(r, 300));
    t.diagnostic(`consumer split: ${per[0]} / ${per[1]}`);
    assert.equal(problems, 0, 'no corrupt or duplicate deliveries');
    assert.equal(per[0] + per[1], N);
    assert.ok(per[0] > 0 && per[1] > 0, 'both consumers got messages');
    for (let i = 0; i < N; i++) if (seen[i] !== 1) assert.fail(`message ${i} seen ${seen[i]} times`);
    await waitUntil(async () => (await pub.checkQueue(q)).messageCount === 0, 5000, 'queue drained');
  },
);
