'use strict';
// amqplib through lib/failover.js's reconnect wrapper, given both members of an HA pair
// (lib/ha-pair.js, 1 s timeout), publishing with confirms and consuming through a
// kill -9 of the active member. Messages are kept in memory and not replicated, so the
// check is the one in tests/interop/python/test_ha_failover.py: every message confirmed
// by the member that stays alive is consumed (0 lost); what the killed member confirmed
// and had not delivered dies with it (counted, small because the consumer runs all
// along); duplicates are allowed and counted. A passive member refuses ordinary clients,
// so the wrapper's generation 0 is the primary and every later one the backup.

const test = require('node:test');
const assert = require('node:assert/strict');
const amqp = require('amqplib');
const { HaPair } = require('../lib/ha-pair');
const { FailoverConnection } = require('../lib/failover');

const BEFORE = 300;
const AFTER = 300;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('amqplib with the reconnect wrapper: 0 confirmed messages lost through kill -9 of the active', {
  skip: process.env.FEDAMQ_BIN ? false : 'FEDAMQ_BIN is not set (run-node.sh sets it)',
  timeout: 120000,
}, async (t) => {
  const pair = await new HaPair().start();
  t.after(() => pair.stop());
  const queue = `node.ha.${process.pid}.${Date.now()}`;
  const setup = (ch) => ch.assertQueue(queue);
  const pub = new FailoverConnection(pair.urls, { setup });
  const sub = new FailoverConnection(pair.urls, { setup });
  t.after(() => Promise.all([pub.close(), sub.close()]));

  const confirmed = new Map(); // id -> generation
  const received = new Map(); // id -> count
  const receive = (body) => {
    const id = Number(body.toString());
    received.set(id, (received.get(id) || 0) + 1);
  };
  await sub.consume(queue, (m, ch) => { receive(m.content); ch.ack(m); });

  let stop = false;
  const afterKill = () => [...confirmed.values()].filter((g) => g > 0).length;
  const publishing = (async () => {
    for (let i = 0; !stop; i++) {
      confirmed.set(i, await pub.publish('', queue, Buffer.from(String(i))));
    }
  })();
  const waitFor = async (pred, what) => {
    const deadline = Date.now() + 60000;
    while (!pred()) {
      assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
      await sleep(20);
    }
  };
  await waitFor(() => confirmed.size >= BEFORE, 'confirms before the kill');
  await pair.primary.kill9();
  const killedAt = Date.now();
  await waitFor(() => afterKill() >= AFTER, 'confirms after the kill');
  const failoverMs = Date.now() - killedAt;
  await waitFor(() => sub.generation >= 1, 'the consumer back on the new active');
  stop = true;
  await publishing;
  await Promise.all([pub.close(), sub.close()]);
  assert.equal((await pair.backup.haStatus()).state, 'active');

  // Everything left on the new active.
  const conn = await amqp.connect(pair.backup.url);
  const ch = await conn.createChannel();
  let drained = 0;
  for (let m; (m = await ch.get(queue, { noAck: true })); drained++) receive(m.content);
  await conn.close();

  const byKilled = [...confirmed].filter(([, g]) => g === 0).map(([i]) => i);
  const bySurvivor = [...confirmed].filter(([, g]) => g > 0).map(([i]) => i);
  const lostSurvivor = bySurvivor.filter((i) => !received.has(i));
  const lostWithKilled = byKilled.filter((i) => !received.has(i));
  const duplicates = [...received.values()].reduce((n, c) => n + c - 1, 0);
  console.log(`amqplib: confirmed ${confirmed.size} (${byKilled.length} by the killed primary, ` +
    `${bySurvivor.length} by the new active), received ${received.size} distinct (${drained} drained at the end), ` +
    `duplicates ${duplicates}, confirmed by the new active and lost ${lostSurvivor.length}, confirmed by the ` +
    `killed primary and lost with its process ${lostWithKilled.length}, kill to ${AFTER} confirms on the new active ${failoverMs} ms`);
  assert.ok(bySurvivor.length >= AFTER);
  assert.deepEqual(lostSurvivor, [], 'confirmed by the new active but never consumed');
  assert.ok(byKilled.length > lostWithKilled.length, 'the consumer got some of the killed member\'s messages');
});
