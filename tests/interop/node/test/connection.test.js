'use strict';
// Connecting, authentication failures, negotiation, and channel/connection errors.

const test = require('node:test');
const assert = require('node:assert/strict');
const { amqp, URL, urlWith, uid, Scope, rejectsWithCode, waitUntil, rawHandshake } = require('../lib/helpers');

test('connects as guest and reports RabbitMQ-compatible server properties', async (t) => {
  const s = new Scope(t);
  const conn = await s.connect();
  const props = conn.connection.serverProperties;
  assert.ok(props, 'server properties present');
  assert.equal(typeof props.product, 'string');
  assert.equal(typeof props.version, 'string');
  const caps = props.capabilities;
  assert.ok(caps, 'capabilities table present');
  // The capabilities amqplib and other clients look for.
  for (const cap of [
    'publisher_confirms',
    'exchange_exchange_bindings',
    'basic.nack',
    'consumer_cancel_notify',
    'connection.blocked',
    'authentication_failure_close',
    'per_consumer_qos',
  ]) {
    assert.equal(caps[cap], true, `capability ${cap}`);
  }
});

test('negotiates frame_max, channel_max and heartbeat', async (t) => {
  const s = new Scope(t);
  // The client asks for less than the server's defaults: the smaller values win.
  const conn = await s.connect(urlWith({ query: { frameMax: 8192, channelMax: 7, heartbeat: 5 } }));
  assert.equal(conn.connection.frameMax, 8192);
  assert.equal(conn.connection.channelMax, 7);
  assert.equal(conn.connection.heartbeat, 5);
  // Heartbeat 0 from the client disables heartbeats.
  const quiet = await s.connect(urlWith({ query: { heartbeat: 0 } }));
  assert.equal(quiet.connection.heartbeat, 0);
  // A channel still works at a small frame size (content is split into many frames).
  const ch = await s.channel(conn);
  const q = await s.queue(ch, 'small-frames', { exclusive: true });
  const body = Buffer.alloc(50_000, 7);
  ch.sendToQueue(q, body);
  let msg = false;
  for (let i = 0; i < 200 && !msg; i++) {
    msg = await ch.get(q, { noAck: true });
    if (!msg) await new Promise((r) => setTimeout(r, 10));
  }
  assert.ok(msg, 'message arrives');
  assert.ok(msg.content.equals(body));
});

test('wrong password is refused with 403 ACCESS_REFUSED', async () => {
  await assert.rejects(amqp.connect(urlWith({ pass: 'not-the-password' })), (err) => {
    assert.match(err.message, /Handshake terminated by server: 403 \(ACCESS-REFUSED\)/);
    return true;
  });
});

test('unknown user is refused with 403 ACCESS_REFUSED', async () => {
  await assert.rejects(amqp.connect(urlWith({ user: uid('nobody'), pass: 'x' })), (err) => {
    assert.match(err.message, /Handshake terminated by server: 403 \(ACCESS-REFUSED\)/);
    return true;
  });
});

test('unknown vhost is refused with 530 NOT_ALLOWED', async () => {
  await assert.rejects(amqp.connect(urlWith({ vhost: uid('no-such-vhost') })), (err) => {
    // amqplib reports the connection.close it got instead of connection.open-ok.
    assert.match(err.message, /Expected ConnectionOpenOk; got <ConnectionClose channel:0>/);
    return true;
  });
  // The exact reply, seen with a hand-driven handshake using amqplib's codec.
  const vhost = uid('no-such-vhost');
  const got = await rawHandshake({ vhost });
  assert.deepEqual(
    got.map((m) => m.name),
    ['ConnectionStart', 'ConnectionTune', 'ConnectionClose'],
  );
  const close = got[2].fields;
  assert.equal(close.replyCode, 530);
  assert.match(close.replyText, /^NOT_ALLOWED/);
  assert.equal(close.classId, 10);
  assert.equal(close.methodId, 40); // connection.open
});

test('refused login: exact connection.close (403, ACCESS_REFUSED) after start-ok', async () => {
  const got = await rawHandshake({ pass: 'wrong' });
  assert.deepEqual(
    got.map((m) => m.name),
    ['ConnectionStart', 'ConnectionClose'],
  );
  const close = got[1].fields;
  assert.equal(close.replyCode, 403);
  assert.match(close.replyText, /^ACCESS_REFUSED/);
  // PLAIN is offered, and the handshake with the right password gets as far as open-ok.
  assert.match(got[0].fields.mechanisms.toString(), /\bPLAIN\b/);
  const ok = await rawHandshake();
  assert.deepEqual(ok.map((m) => m.name).slice(0, 3), ['ConnectionStart', 'ConnectionTune', 'ConnectionOpenOk']);
});

test('a refused login does not disturb other connections', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const q = await s.queue(ch, 'after-refusal', { exclusive: true });
  await assert.rejects(amqp.connect(urlWith({ pass: 'wrong' })));
  ch.sendToQueue(q, Buffer.from('still here'));
  const ok = await ch.checkQueue(q);
  assert.equal(ok.queue, q);
});

test('channel error (404 on passive declare) closes only that channel', async (t) => {
  const s = new Scope(t);
  const conn = await s.connect();
  const bad = await s.channel(conn);
  const good = await s.channel(conn);
  const missing = uid('missing');
  await rejectsWithCode(bad.checkQueue(missing), 404, /NOT_FOUND/);
  // amqplib refuses further use of the closed channel.
  await assert.rejects(bad.checkExchange(missing), /closed/i);
  // The other channel on the same connection still works.
  const q = await s.queue(good, 'survivor', { exclusive: true });
  const ok = await good.checkQueue(q);
  assert.equal(ok.messageCount, 0);
  // A new channel on the same connection works too.
  const again = await s.channel(conn);
  await rejectsWithCode(again.checkExchange(missing), 404, /NOT_FOUND/);
});

test('many channels on one connection, each usable', async (t) => {
  const s = new Scope(t);
  const conn = await s.connect();
  const chans = [];
  for (let i = 0; i < 50; i++) chans.push(await s.channel(conn));
  const q = await s.queue(chans[0], 'many-channels', { exclusive: true });
  for (let i = 0; i < chans.length; i++) chans[i].sendToQueue(q, Buffer.from(`from ${i}`));
  const ch = chans[chans.length - 1];
  await waitUntil(async () => (await ch.checkQueue(q)).messageCount === 50, 5000, '50 messages');
  const bodies = new Set();
  for (let i = 0; i < 50; i++) {
    const m = await ch.get(q, { noAck: true });
    assert.ok(m);
    bodies.add(m.content.toString());
  }
  assert.equal(bodies.size, 50);
  for (let i = 0; i < 50; i++) assert.ok(bodies.has(`from ${i}`));
  // Closing channels one by one is clean.
  for (const c of chans.slice(1, 25)) await c.close();
  assert.equal(s.errors.length, 0, `no errors: ${s.errors.map((e) => e.message)}`);
});

test('connection close is clean and exclusive queues go with it', async (t) => {
  const s = new Scope(t);
  const conn = await amqp.connect(URL);
  const ch = await conn.createChannel();
  const ok = await ch.assertQueue('', { exclusive: true });
  assert.match(ok.queue, /^amq\.gen-/);
  let closed = false;
  conn.on('close', (err) => {
    closed = err === undefined ? 'clean' : err;
  });
  await conn.close();
  assert.equal(closed, 'clean');
  const other = await s.channel();
  await rejectsWithCode(other.checkQueue(ok.queue), 404);
});
