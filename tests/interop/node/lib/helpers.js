'use strict';
// Shared helpers for the amqplib interop tests. Every test gets its own connection(s)
// and uniquely named queues/exchanges, all removed again when the test ends.

const crypto = require('node:crypto');
const net = require('node:net');
const path = require('node:path');
const assert = require('node:assert/strict');
const amqp = require('amqplib');

// amqplib has no transaction API; its protocol definitions (generated from the spec)
// still encode tx.select/commit/rollback, sent through the channel's own rpc().
// The package's "exports" hide lib/, so load the file by path.
const amqplibLib = path.join(path.dirname(require.resolve('amqplib')), 'lib');
const defs = require(path.join(amqplibLib, 'defs.js'));
const frame = require(path.join(amqplibLib, 'frame.js'));

const URL = process.env.FEDAMQ_URL;
if (!URL) {
  throw new Error('FEDAMQ_URL is not set (e.g. amqp://guest:guest@127.0.0.1:5672/%2f)');
}

/** A URL like FEDAMQ_URL with other credentials / vhost / query. */
function urlWith({ user, pass, vhost, query } = {}) {
  const u = new globalThis.URL(URL);
  if (user !== undefined) u.username = encodeURIComponent(user);
  if (pass !== undefined) u.password = encodeURIComponent(pass);
  if (vhost !== undefined) u.pathname = `/${encodeURIComponent(vhost)}`;
  if (query) for (const [k, v] of Object.entries(query)) u.searchParams.set(k, String(v));
  return u.toString();
}

/** A name no other test (or other run) uses. */
function uid(label) {
  return `node.${label}.${process.pid}.${crypto.randomBytes(4).toString('hex')}`;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves when `cond()` is true, polling; rejects after `ms`. */
async function waitUntil(cond, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * A test scope: connections and channels opened through it are closed, and queues and
 * exchanges declared through it are deleted, when the test ends (via t.after).
 */
class Scope {
  constructor(t) {
    this.conns = [];
    this.queues = new Set();
    this.exchanges = new Set();
    this.errors = []; // channel/connection 'error' events, for assertions
    t.after(() => this.cleanup());
  }

  async connect(url = URL, socketOptions) {
    const conn = await amqp.connect(url, socketOptions);
    conn.on('error', (e) => this.errors.push(e));
    this.conns.push(conn);
    return conn;
  }

  async channel(conn) {
    const c = conn || (await this.connect());
    const ch = await c.createChannel();
    ch.on('error', (e) => this.errors.push(e));
    return ch;
  }

  async confirmChannel(conn) {
    const c = conn || (await this.connect());
    const ch = await c.createConfirmChannel();
    ch.on('error', (e) => this.errors.push(e));
    return ch;
  }

  async queue(ch, label, options = {}) {
    const name = label === '' ? '' : uid(label);
    const ok = await ch.assertQueue(name, options);
    this.queues.add(ok.queue);
    return ok.queue;
  }

  async exchange(ch, label, type, options = {}) {
    const name = uid(label);
    await ch.assertExchange(name, type, options);
    this.exchanges.add(name);
    return name;
  }

  track({ queue, exchange }) {
    if (queue) this.queues.add(queue);
    if (exchange) this.exchanges.add(exchange);
  }

  async cleanup() {
    try {
      if (this.queues.size || this.exchanges.size) {
        const conn = await amqp.connect(URL);
        conn.on('error', () => {});
        for (const q of this.queues) {
          const ch = await conn.createChannel();
          ch.on('error', () => {});
          await ch.deleteQueue(q).catch(() => {});
          await ch.close().catch(() => {});
        }
        for (const x of this.exchanges) {
          const ch = await conn.createChannel();
          ch.on('error', () => {});
          await ch.deleteExchange(x).catch(() => {});
          await ch.close().catch(() => {});
        }
        await conn.close().catch(() => {});
      }
    } finally {
      for (const c of this.conns) await c.close().catch(() => {});
    }
  }
}

/**
 * Consumes `queue` into an array; `waitFor(n)` resolves once n messages arrived.
 * With `ack: true` every delivery is acked as it arrives.
 */
async function collect(ch, queue, { ack = false, noAck = false, options = {} } = {}) {
  const inbox = { messages: [], cancelled: false, consumerTag: null };
  const ok = await ch.consume(
    queue,
    (msg) => {
      if (msg === null) {
        inbox.cancelled = true;
        return;
      }
      inbox.messages.push(msg);
      if (ack && !noAck) ch.ack(msg);
    },
    { noAck, ...options },
  );
  inbox.consumerTag = ok.consumerTag;
  inbox.waitFor = (n, ms = 5000) =>
    waitUntil(() => inbox.messages.length >= n, ms, `${n} messages on ${queue} (have ${inbox.messages.length})`);
  inbox.bodies = () => inbox.messages.map((m) => m.content.toString());
  return inbox;
}

/** The next `event` from `emitter` (its first argument); rejects after `ms`. */
function nextEvent(emitter, event, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.removeListener(event, onEvent);
      reject(new Error(`no '${event}' event within ${ms} ms`));
    }, ms);
    function onEvent(arg) {
      clearTimeout(timer);
      resolve(arg);
    }
    emitter.once(event, onEvent);
  });
}

/** Asserts that `promise` rejects with a channel/connection error carrying `code`. */
async function rejectsWithCode(promise, code, re) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.code, code, `expected reply code ${code}, got ${err.code}: ${err.message}`);
    if (re) assert.match(err.message, re);
    return true;
  });
}

/** tx.select / tx.commit / tx.rollback through amqplib's own codec. */
const tx = {
  select: (ch) => ch.rpc(defs.TxSelect, {}, defs.TxSelectOk),
  commit: (ch) => ch.rpc(defs.TxCommit, {}, defs.TxCommitOk),
  rollback: (ch) => ch.rpc(defs.TxRollback, {}, defs.TxRollbackOk),
};

/**
 * The opening handshake done by hand with amqplib's codec, to see the exact
 * connection.close a refused login or vhost gets (amqplib's connect() only reports
 * "Handshake terminated" / "Expected ConnectionOpenOk; got <ConnectionClose>").
 * Returns the decoded methods the server sent, in order, until it closed.
 */
function rawHandshake({ user = 'guest', pass = 'guest', vhost = '/' } = {}) {
  const u = new globalThis.URL(URL);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(u.port), u.hostname);
    const got = [];
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`raw handshake timed out; got ${JSON.stringify(got.map((m) => m.name))}`));
    }, 5000);
    const send = (id, fields) => sock.write(defs.encodeMethod(id, 0, fields));
    sock.on('connect', () => sock.write(Buffer.from(frame.PROTOCOL_HEADER, 'binary')));
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const f = frame.parseFrame(buf, 0);
        if (!f) break;
        buf = f.rest;
        const m = frame.decodeFrame(f);
        if (m.id === undefined) continue; // heartbeat
        const name = defs.info(m.id).name;
        got.push({ name, fields: m.fields });
        if (m.id === defs.ConnectionStart) {
          send(defs.ConnectionStartOk, {
            // As amqplib does: without this capability RabbitMQ just drops the
            // socket on a failed login instead of sending connection.close 403.
            clientProperties: { product: 'fedamq-interop-raw', capabilities: { authentication_failure_close: true } },
            mechanism: 'PLAIN',
            response: Buffer.from(`\0${user}\0${pass}`),
            locale: 'en_US',
          });
        } else if (m.id === defs.ConnectionTune) {
          send(defs.ConnectionTuneOk, { channelMax: m.fields.channelMax, frameMax: m.fields.frameMax, heartbeat: 0 });
          send(defs.ConnectionOpen, { virtualHost: vhost, capabilities: '', insist: false });
        } else if (m.id === defs.ConnectionClose) {
          send(defs.ConnectionCloseOk, {});
        } else if (m.id === defs.ConnectionOpenOk) {
          send(defs.ConnectionClose, { replyCode: 200, replyText: 'bye', classId: 0, methodId: 0 });
        }
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

module.exports = {
  amqp,
  defs,
  rawHandshake,
  URL,
  urlWith,
  uid,
  sleep,
  waitUntil,
  nextEvent,
  Scope,
  collect,
  rejectsWithCode,
  tx,
};
