'use strict';
// Mandatory returns, publisher confirms, and transactions.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Scope, collect, rejectsWithCode, waitUntil, sleep, uid, tx, defs, nextEvent } = require('../lib/helpers');

function returns(ch) {
  const got = [];
  ch.on('return', (m) => got.push(m));
  return got;
}

test('mandatory publish with no route comes back as basic.return 312 NO_ROUTE', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const got = returns(ch);
  const x = await s.exchange(ch, 'mand', 'direct');
  const q = await s.queue(ch, 'mand');
  await ch.bindQueue(q, x, 'routed');
  ch.publish(x, 'nowhere', Buffer.from('bounce me'), { mandatory: true, messageId: 'm-1', headers: { h: 'v' } });
  ch.publish(x, 'routed', Buffer.from('deliver me'), { mandatory: true });
  ch.publish(x, 'nowhere', Buffer.from('drop me'), { mandatory: false });
  ch.sendToQueue(uid('no-such-queue'), Buffer.from('default exchange, no queue'), { mandatory: true });
  await waitUntil(() => got.length >= 2, 5000, 'two returns');
  await sleep(200);
  assert.equal(got.length, 2);
  const [r1, r2] = got;
  assert.equal(r1.fields.replyCode, 312);
  assert.equal(r1.fields.replyText, 'NO_ROUTE');
  assert.equal(r1.fields.exchange, x);
  assert.equal(r1.fields.routingKey, 'nowhere');
  assert.equal(r1.content.toString(), 'bounce me');
  assert.equal(r1.properties.messageId, 'm-1');
  assert.deepEqual(r1.properties.headers, { h: 'v' });
  assert.equal(r2.fields.replyCode, 312);
  assert.equal(r2.fields.exchange, '');
  assert.equal(r2.content.toString(), 'default exchange, no queue');
  const m = await ch.get(q, { noAck: true });
  assert.equal(m.content.toString(), 'deliver me');
  assert.equal(await ch.get(q, { noAck: true }), false);
});

test('publisher confirms: every publish is acked, tags in order', async (t) => {
  const s = new Scope(t);
  const ch = await s.confirmChannel();
  const q = await s.queue(ch, 'confirms');
  const acks = [];
  ch.on('ack', (f) => acks.push(f));
  const results = await Promise.all(
    Array.from(
      { length: 500 },
      (_, i) =>
        new Promise((resolve) => {
          ch.sendToQueue(q, Buffer.from(`c${i}`), {}, (err) => resolve(err));
        }),
    ),
  );
  assert.equal(results.filter((e) => e !== null && e !== undefined).length, 0, 'all acked');
  await ch.waitForConfirms();
  // Each basic.ack covers its delivery-tag, and with multiple every earlier tag too.
  const covered = new Set();
  let last = 0;
  for (const a of acks) {
    assert.ok(a.deliveryTag > last, `ack tags increase (${a.deliveryTag} after ${last})`);
    if (a.multiple) for (let tag = 1; tag <= a.deliveryTag; tag++) covered.add(tag);
    else covered.add(a.deliveryTag);
    last = a.deliveryTag;
  }
  assert.equal(covered.size, 500, 'tags 1..500 all confirmed');
  assert.equal(last, 500, 'the last tag confirmed is 500');
  const ok = await ch.checkQueue(q);
  assert.equal(ok.messageCount, 500);
});

test('publisher confirms: unroutable mandatory message is returned, then acked', async (t) => {
  const s = new Scope(t);
  const ch = await s.confirmChannel();
  const order = [];
  ch.on('return', (m) => order.push(['return', m.content.toString(), m.fields.replyCode]));
  const err = await new Promise((resolve) => {
    ch.publish('', uid('nobody-home'), Buffer.from('unroutable'), { mandatory: true }, (e) => {
      order.push(['ack']);
      resolve(e);
    });
  });
  assert.ok(err === null || err === undefined, 'acked, not nacked');
  assert.deepEqual(order, [['return', 'unroutable', 312], ['ack']]);
  // Unroutable without mandatory: acked, nothing returned.
  await new Promise((resolve, reject) =>
    ch.publish('', uid('nobody-home'), Buffer.from('x'), {}, (e) => (e ? reject(e) : resolve())),
  );
  assert.equal(order.length, 2);
});

test('publisher confirms: confirm.select on a tx channel is refused (406)', async (t) => {
  const s = new Scope(t);
  const conn = await s.connect();
  const ch = await s.channel(conn);
  await tx.select(ch);
  await rejectsWithCode(
    ch.rpc(defs.ConfirmSelect, { nowait: false }, defs.ConfirmSelectOk),
    406,
    /PRECONDITION_FAILED/,
  );
  const cch = await s.confirmChannel(conn);
  await rejectsWithCode(tx.select(cch), 406, /PRECONDITION_FAILED/);
});

test('publisher confirms: publish to a missing exchange fails the pending confirm and the channel (404)', async (t) => {
  const s = new Scope(t);
  const ch = await s.confirmChannel();
  const closed = nextEvent(ch, 'error');
  const confirm = new Promise((resolve) => ch.publish(uid('missing-x'), 'k', Buffer.from('x'), {}, resolve));
  const err = await closed;
  assert.equal(err.code, 404);
  const cbErr = await confirm;
  assert.ok(cbErr instanceof Error, 'the publish callback gets an error, not an ack');
});

test('tx: published messages appear only on commit; rollback discards them', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'tx-pub');
  const obs = await s.channel();
  await tx.select(ch);
  ch.sendToQueue(q, Buffer.from('t1'));
  ch.sendToQueue(q, Buffer.from('t2'));
  await sleep(100);
  assert.equal((await obs.checkQueue(q)).messageCount, 0, 'nothing before commit');
  await tx.commit(ch);
  assert.equal((await obs.checkQueue(q)).messageCount, 2, 'both after commit');

  ch.sendToQueue(q, Buffer.from('t3'));
  await tx.rollback(ch);
  await tx.commit(ch); // an empty transaction
  assert.equal((await obs.checkQueue(q)).messageCount, 2, 'rolled back publish is gone');

  const bodies = [];
  for (let i = 0; i < 2; i++) bodies.push((await obs.get(q, { noAck: true })).content.toString());
  assert.deepEqual(bodies, ['t1', 't2']);
});

test('tx: acks take effect on commit; rolled-back acks leave messages unacked', async (t) => {
  const s = new Scope(t);
  const admin = await s.channel();
  const q = await s.queue(admin, 'tx-ack');
  for (const b of ['a1', 'a2']) admin.sendToQueue(q, Buffer.from(b));
  await waitUntil(async () => (await admin.checkQueue(q)).messageCount === 2);

  const ch = await s.channel();
  await tx.select(ch);
  const m1 = await ch.get(q);
  const m2 = await ch.get(q);
  assert.equal(m1.content.toString(), 'a1');
  assert.equal(m2.content.toString(), 'a2');
  ch.ack(m1);
  await tx.rollback(ch); // the ack of a1 is discarded; a1 stays unacked
  ch.ack(m2);
  await tx.commit(ch); // a2 is acked for good
  await ch.close(); // a1, still unacked, goes back to the queue
  await waitUntil(async () => (await admin.checkQueue(q)).messageCount === 1, 5000, 'a1 requeued');
  const back = await admin.get(q, { noAck: true });
  assert.equal(back.content.toString(), 'a1');
  assert.equal(back.fields.redelivered, true);
});

test('tx: commit without select is refused (406)', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  await rejectsWithCode(tx.commit(ch), 406, /PRECONDITION_FAILED/);
  const ch2 = await s.channel();
  await rejectsWithCode(tx.rollback(ch2), 406, /PRECONDITION_FAILED/);
});

test('tx: mandatory returns in a transaction are sent on commit', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const got = returns(ch);
  await tx.select(ch);
  ch.publish('', uid('nobody'), Buffer.from('tx-bounce'), { mandatory: true });
  await sleep(150);
  assert.equal(got.length, 0, 'nothing is routed (or returned) before commit');
  await tx.commit(ch);
  await waitUntil(() => got.length === 1, 5000, 'return after commit');
  assert.equal(got[0].fields.replyCode, 312);
  assert.equal(got[0].content.toString(), 'tx-bounce');
});

test('consumer on a tx channel: deliveries are not transactional, acks are', async (t) => {
  const s = new Scope(t);
  const admin = await s.channel();
  const q = await s.queue(admin, 'tx-consume');
  const ch = await s.channel();
  await tx.select(ch);
  const inbox = await collect(ch, q);
  for (let i = 0; i < 3; i++) admin.sendToQueue(q, Buffer.from(`d${i}`));
  await inbox.waitFor(3);
  assert.deepEqual(inbox.bodies(), ['d0', 'd1', 'd2']);
  ch.ackAll();
  await tx.commit(ch);
  await ch.cancel(inbox.consumerTag);
  await ch.close();
  await sleep(100);
  assert.equal((await admin.checkQueue(q)).messageCount, 0, 'committed acks stick');
});
