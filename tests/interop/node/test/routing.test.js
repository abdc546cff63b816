'use strict';
// Exchange types and routing: topic patterns, headers matching, fanout, direct,
// exchange-to-exchange bindings, alternate exchanges, and exchange errors.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Scope, rejectsWithCode, sleep, uid, nextEvent } = require('../lib/helpers');

/** Drains a queue with basic.get and returns the bodies, in order. */
async function drain(ch, q) {
  const out = [];
  for (;;) {
    const m = await ch.get(q, { noAck: true });
    if (!m) return out;
    out.push(m.content.toString());
  }
}

/**
 * Publishes every (routingKey, options) case to exchange `x` with the case's name as
 * body, waits for routing to settle (confirms), and returns { queueLabel: [bodies] }.
 */
async function route(s, x, bindings, cases, bind) {
  const ch = await s.confirmChannel();
  const queues = {};
  for (const [label, args] of Object.entries(bindings)) {
    queues[label] = await s.queue(ch, `r-${label}`);
    for (const a of args) await bind(ch, queues[label], a);
  }
  for (const c of cases) ch.publish(x, c.key ?? '', Buffer.from(c.name), c.options ?? {});
  await ch.waitForConfirms();
  const got = {};
  for (const [label, q] of Object.entries(queues)) got[label] = await drain(ch, q);
  return got;
}

test('topic exchange: * matches one word, # matches zero or more', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const x = await s.exchange(ch, 'topic', 'topic');
  const keys = [
    'a',
    'a.b',
    'a.b.c',
    'a.x.c',
    'a.b.c.d',
    'b.b.c',
    '',
    'a..c',
    'stock.usd.nyse',
    'stock.eur.nyse',
    'quick.orange.rabbit',
    'lazy.orange.elephant',
    'quick.orange.fox',
    'lazy.brown.fox',
    'lazy.pink.rabbit',
    'quick.brown.fox',
    'orange',
    'quick.orange.male.rabbit',
    'lazy.orange.male.rabbit',
  ];
  const got = await route(
    s,
    x,
    {
      star: ['a.*'],
      starStar: ['a.*.c'],
      hash: ['a.#'],
      hashOnly: ['#'],
      hashMid: ['a.#.c'],
      exact: ['a.b.c'],
      empty: [''],
      star1: ['*'],
      orange: ['*.orange.*'],
      rabbitLazy: ['*.*.rabbit', 'lazy.#'],
      starNyse: ['stock.*.nyse'],
      hashHash: ['#.#'],
      leadHash: ['#.c'],
    },
    keys.map((k) => ({ key: k, name: k })),
    (ch2, q, pattern) => ch2.bindQueue(q, x, pattern),
  );
  // Expected sets as RabbitMQ computes them (the classic tutorial five cases included).
  assert.deepEqual(got.star, ['a.b']);
  assert.deepEqual(got.starStar, ['a.b.c', 'a.x.c', 'a..c'], '* matches an empty word');
  assert.deepEqual(got.hash, ['a', 'a.b', 'a.b.c', 'a.x.c', 'a.b.c.d', 'a..c']);
  assert.deepEqual(got.hashOnly, keys);
  assert.deepEqual(got.hashMid, ['a.b.c', 'a.x.c', 'a..c']);
  assert.deepEqual(got.exact, ['a.b.c']);
  assert.deepEqual(got.empty, ['']);
  assert.deepEqual(got.star1, ['a', 'orange'], 'the empty key has no words, so * does not match it');
  assert.deepEqual(got.orange, ['quick.orange.rabbit', 'lazy.orange.elephant', 'quick.orange.fox']);
  assert.deepEqual(got.rabbitLazy, [
    'quick.orange.rabbit',
    'lazy.orange.elephant',
    'lazy.brown.fox',
    'lazy.pink.rabbit',
    'lazy.orange.male.rabbit',
  ]);
  assert.deepEqual(got.starNyse, ['stock.usd.nyse', 'stock.eur.nyse']);
  assert.deepEqual(got.hashHash, keys);
  assert.deepEqual(got.leadHash, ['a.b.c', 'a.x.c', 'b.b.c', 'a..c']);
});

test('topic exchange: unbind stops routing; a message matching two bindings of one queue arrives once', async (t) => {
  const s = new Scope(t);
  const ch = await s.confirmChannel();
  const x = await s.exchange(ch, 'topic2', 'topic');
  const q = await s.queue(ch, 'topic-once');
  await ch.bindQueue(q, x, 'a.*');
  await ch.bindQueue(q, x, '*.b');
  await ch.bindQueue(q, x, '#');
  ch.publish(x, 'a.b', Buffer.from('once'));
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, q), ['once']);
  await ch.unbindQueue(q, x, '#');
  await ch.unbindQueue(q, x, 'a.*');
  ch.publish(x, 'a.c', Buffer.from('a.c gone'));
  ch.publish(x, 'z.b', Buffer.from('z.b kept'));
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, q), ['z.b kept']);
});

test('headers exchange: x-match all / any, any-with-x / all-with-x, typed values', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const x = await s.exchange(ch, 'headers', 'headers');
  const cases = [
    { name: 'both', options: { headers: { format: 'pdf', type: 'report' } } },
    { name: 'format-only', options: { headers: { format: 'pdf' } } },
    { name: 'type-only', options: { headers: { type: 'report' } } },
    { name: 'wrong-value', options: { headers: { format: 'zip', type: 'report' } } },
    { name: 'extra', options: { headers: { format: 'pdf', type: 'report', other: 1 } } },
    { name: 'none', options: {} },
    { name: 'number', options: { headers: { n: 42 } } },
    { name: 'number-as-string', options: { headers: { n: '42' } } },
    { name: 'x-header', options: { headers: { 'x-tag': 'v' } } },
  ];
  const got = await route(
    s,
    x,
    {
      all: [{ 'x-match': 'all', format: 'pdf', type: 'report' }],
      any: [{ 'x-match': 'any', format: 'pdf', type: 'report' }],
      dflt: [{ format: 'pdf' }], // x-match defaults to all
      empty: [{}], // all of nothing: matches everything
      num: [{ n: 42 }],
      anyX: [{ 'x-match': 'any', 'x-tag': 'v' }], // x- keys ignored for plain any
      anyWithX: [{ 'x-match': 'any-with-x', 'x-tag': 'v' }],
      allWithX: [{ 'x-match': 'all-with-x', 'x-tag': 'v' }],
    },
    cases,
    (ch2, q, args) => ch2.bindQueue(q, x, '', args),
  );
  assert.deepEqual(got.all, ['both', 'extra']);
  assert.deepEqual(got.any, ['both', 'format-only', 'type-only', 'wrong-value', 'extra']);
  assert.deepEqual(got.dflt, ['both', 'format-only', 'extra']);
  assert.deepEqual(
    got.empty,
    cases.map((c) => c.name),
  );
  assert.deepEqual(got.num, ['number']);
  assert.deepEqual(got.anyX, []);
  assert.deepEqual(got.anyWithX, ['x-header']);
  assert.deepEqual(got.allWithX, ['x-header']);
});

test('headers exchange ignores the routing key; unbind with the same arguments removes the binding', async (t) => {
  const s = new Scope(t);
  const ch = await s.confirmChannel();
  const x = await s.exchange(ch, 'headers2', 'headers');
  const q = await s.queue(ch, 'h2');
  const args = { 'x-match': 'any', color: 'red' };
  await ch.bindQueue(q, x, 'ignored-key', args);
  ch.publish(x, 'some-other-key', Buffer.from('red'), { headers: { color: 'red' } });
  ch.publish(x, 'ignored-key', Buffer.from('blue'), { headers: { color: 'blue' } });
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, q), ['red']);
  await ch.unbindQueue(q, x, 'ignored-key', args);
  ch.publish(x, '', Buffer.from('red again'), { headers: { color: 'red' } });
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, q), []);
});

test('fanout exchange delivers to every bound queue regardless of key', async (t) => {
  const s = new Scope(t);
  const ch = await s.confirmChannel();
  const x = await s.exchange(ch, 'fanout', 'fanout');
  const qs = [];
  for (let i = 0; i < 5; i++) {
    const q = await s.queue(ch, `fan${i}`);
    await ch.bindQueue(q, x, `k${i}`);
    qs.push(q);
  }
  ch.publish(x, 'anything', Buffer.from('to all'));
  await ch.waitForConfirms();
  for (const q of qs) assert.deepEqual(await drain(ch, q), ['to all']);
});

test('default exchange routes by queue name; binding to it is refused (403)', async (t) => {
  const s = new Scope(t);
  const ch = await s.confirmChannel();
  const q = await s.queue(ch, 'dflt');
  ch.publish('', q, Buffer.from('by name'));
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, q), ['by name']);
  const ch2 = await s.channel();
  await rejectsWithCode(ch2.bindQueue(q, '', 'x'), 403, /ACCESS_REFUSED/);
});

const AMQ_EXCHANGES = [
  ['amq.direct', 'direct'],
  ['amq.fanout', 'fanout'],
  ['amq.topic', 'topic'],
  ['amq.headers', 'headers'],
  ['amq.match', 'headers'],
];

test('amq.* pre-declared exchanges exist; declaring a new amq.* name or deleting one is refused (403)', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  for (const [name] of AMQ_EXCHANGES) await ch.checkExchange(name);
  await rejectsWithCode(ch.assertExchange(`amq.${uid('mine')}`, 'direct'), 403, /ACCESS_REFUSED/);
  const ch2 = await s.channel();
  await rejectsWithCode(ch2.deleteExchange('amq.direct'), 403, /ACCESS_REFUSED/);
});

test(
  'redeclaring an existing amq.* exchange with the same properties is declare-ok',
  async (t) => {
    const s = new Scope(t);
    const ch = await s.channel();
    for (const [name, type] of AMQ_EXCHANGES) {
      await ch.assertExchange(name, type, { durable: true });
    }
    // Not equivalent: still a 406, as for any exchange.
    await rejectsWithCode(ch.assertExchange('amq.direct', 'fanout', { durable: true }), 406);
  },
);

test('redeclaring an exchange with another type fails with 406; unknown type with 503', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const x = await s.exchange(ch, 'retype', 'direct');
  await rejectsWithCode(ch.assertExchange(x, 'topic'), 406, /PRECONDITION_FAILED/);
  const conn = await s.connect();
  const ch2 = await s.channel(conn);
  const closed = nextEvent(conn, 'close');
  await assert.rejects(ch2.assertExchange(uid('weird'), 'no-such-type'));
  const err = await closed;
  assert.equal(err.code, 503, `connection closed with ${err.message}`);
});

test('exchange-to-exchange bindings route through a chain, and unbind', async (t) => {
  const s = new Scope(t);
  const ch = await s.confirmChannel();
  const src = await s.exchange(ch, 'e2e-src', 'topic');
  const mid = await s.exchange(ch, 'e2e-mid', 'fanout');
  const dst = await s.exchange(ch, 'e2e-dst', 'direct');
  await ch.bindExchange(mid, src, 'logs.#');
  await ch.bindExchange(dst, mid, '');
  const q = await s.queue(ch, 'e2e');
  await ch.bindQueue(q, dst, 'logs.error');
  ch.publish(src, 'logs.error', Buffer.from('through two hops'));
  ch.publish(src, 'logs.info', Buffer.from('filtered by direct'));
  ch.publish(src, 'metrics.error', Buffer.from('filtered by topic'));
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, q), ['through two hops']);
  // A cycle must not loop or duplicate.
  await ch.bindExchange(src, dst, 'logs.error');
  ch.publish(src, 'logs.error', Buffer.from('cycle'));
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, q), ['cycle']);
  await ch.unbindExchange(mid, src, 'logs.#');
  ch.publish(src, 'logs.error', Buffer.from('unbound'));
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, q), []);
});

test('alternate exchange receives unroutable messages; mandatory is then not returned', async (t) => {
  const s = new Scope(t);
  const ch = await s.confirmChannel();
  const ae = await s.exchange(ch, 'ae', 'fanout');
  const aeq = await s.queue(ch, 'ae');
  await ch.bindQueue(aeq, ae, '');
  const x = await s.exchange(ch, 'with-ae', 'direct', { alternateExchange: ae });
  const q = await s.queue(ch, 'with-ae');
  await ch.bindQueue(q, x, 'known');
  const returned = [];
  ch.on('return', (m) => returned.push(m));
  ch.publish(x, 'known', Buffer.from('routed'));
  ch.publish(x, 'unknown', Buffer.from('to ae'), { mandatory: true });
  await ch.waitForConfirms();
  await sleep(100);
  assert.deepEqual(await drain(ch, q), ['routed']);
  assert.deepEqual(await drain(ch, aeq), ['to ae']);
  assert.equal(returned.length, 0);
});

test('internal exchange refuses direct publishes (403) but routes from bindings', async (t) => {
  const s = new Scope(t);
  const ch = await s.confirmChannel();
  const internal = await s.exchange(ch, 'internal', 'fanout', { internal: true });
  const front = await s.exchange(ch, 'front', 'fanout');
  await ch.bindExchange(internal, front, '');
  const q = await s.queue(ch, 'internal');
  await ch.bindQueue(q, internal, '');
  ch.publish(front, '', Buffer.from('via front'));
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, q), ['via front']);
  const ch2 = await s.channel();
  const closed = nextEvent(ch2, 'error');
  ch2.publish(internal, '', Buffer.from('direct'));
  const err = await closed;
  assert.equal(err.code, 403);
});

test('exchange delete if-unused; deleting an exchange removes its bindings', async (t) => {
  const s = new Scope(t);
  const ch = await s.channel();
  const x = await s.exchange(ch, 'del', 'fanout');
  const q = await s.queue(ch, 'del');
  await ch.bindQueue(q, x, '');
  await rejectsWithCode(ch.deleteExchange(x, { ifUnused: true }), 406, /PRECONDITION_FAILED/);
  const ch2 = await s.channel();
  await ch2.deleteExchange(x);
  await rejectsWithCode(ch2.checkExchange(x), 404);
  const ch3 = await s.channel();
  await ch3.assertExchange(x, 'fanout');
  ch3.publish(x, '', Buffer.from('no old binding'));
  await sleep(100);
  assert.equal((await ch3.checkQueue(q)).messageCount, 0);
});

test(
  'CC and BCC headers route to extra queues; BCC is stripped',
  async (t) => {
    const s = new Scope(t);
    const ch = await s.confirmChannel();
    const x = await s.exchange(ch, 'cc', 'direct');
    const [q1, q2, q3] = [await s.queue(ch, 'cc1'), await s.queue(ch, 'cc2'), await s.queue(ch, 'cc3')];
    await ch.bindQueue(q1, x, 'k1');
    await ch.bindQueue(q2, x, 'k2');
    await ch.bindQueue(q3, x, 'k3');
    ch.publish(x, 'k1', Buffer.from('cc'), { CC: ['k2'], BCC: ['k3'] });
    await ch.waitForConfirms();
    const got = [];
    const msgs = [];
    for (const q of [q1, q2, q3]) msgs.push(await ch.get(q, { noAck: true }));
    assert.deepEqual(
      msgs.map((m) => (m ? m.content.toString() : null)),
      ['cc', 'cc', 'cc'],
      'routed by the routing key, CC and BCC',
    );
    for (const m of msgs) {
      assert.equal(m.content.toString(), 'cc');
      assert.equal(m.properties.headers.BCC, undefined, 'BCC removed');
      assert.deepEqual(m.properties.headers.CC, ['k2']);
      got.push(m.fields.routingKey);
    }
    assert.deepEqual(got, ['k1', 'k1', 'k1']);
  },
);
