'use strict';
// A reconnect wrapper for amqplib over the members of an HA pair (amqplib itself takes
// one URL and does not reconnect). It tries the URLs in turn every `retryMs` until one
// admits it (a passive member refuses with connection.close 320, a dead one with
// ECONNREFUSED, a stuck one by the connect timeout), runs `setup(channel)` on every new
// connection (declare what you use: definitions and messages are not carried over),
// re-subscribes consumers, and re-sends a publish whose confirm
// was lost with the connection, so delivery is at least once (duplicates possible).
//
//   const conn = new FailoverConnection([urlA, urlB], { setup: (ch) => ch.assertQueue('q') });
//   await conn.publish('', 'q', Buffer.from('hi'));      // resolves once confirmed
//   conn.consume('q', (msg, ch) => ch.ack(msg));          // re-subscribed after failover
//   await conn.close();

const { EventEmitter } = require('node:events');
const amqp = require('amqplib');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class FailoverConnection extends EventEmitter {
  constructor(urls, { retryMs = 100, connectTimeoutMs = 2000, setup = async () => {} } = {}) {
    super();
    this.urls = urls;
    this.retryMs = retryMs;
    // amqplib waits for a handshake with no limit: a member that accepts the TCP
    // connection and never answers must not hold the wrapper.
    this.connectTimeoutMs = connectTimeoutMs;
    this.setup = setup;
    this.next = 0; // index of the URL to try next
    this.generation = -1; // raised on every new connection
    this.url = null; // the URL of the current connection
    this.current = null; // Promise<{ conn, ch, lost }> while connected or connecting
    this.consumers = [];
    this.closed = false;
  }

  /** The current confirm channel and a promise that rejects when its connection is lost. */
  link() {
    if (!this.current) this.current = this.connect();
    return this.current;
  }

  async connect() {
    for (;;) {
      if (this.closed) throw new Error('FailoverConnection closed');
      const url = this.urls[this.next];
      this.next = (this.next + 1) % this.urls.length;
      let conn;
      try {
        conn = await amqp.connect(url, { timeout: this.connectTimeoutMs });
      } catch (err) {
        this.emit('refused', url, err);
        await sleep(this.retryMs);
        continue;
      }
      try {
        const ch = await conn.createConfirmChannel();
        let drop;
        const lost = new Promise((_, reject) => { drop = reject; });
        lost.catch(() => {}); // observed by publish; never an unhandled rejection
        const link = { conn, ch, lost, subscribed: new Set() };
        const onLost = (err) => {
          link.dead = true;
          if (this.current && this.current.link === link) this.current = null;
          drop(err || new Error('connection closed'));
          // Consumers come back by themselves, without waiting for a publish.
          if (this.consumers.length && !this.closed && !this.current) this.link().catch(() => {});
        };
        conn.on('close', onLost);
        conn.on('error', () => {}); // 'close' follows
        ch.on('error', () => {});
        ch.on('close', onLost);
        await this.setup(ch);
        for (const c of this.consumers) await this.subscribe(link, c);
        // Lost while being set up: its 'close' found no established link to drop.
        if (link.dead) throw new Error('connection lost during setup');
        if (this.closed) {
          await conn.close().catch(() => {});
          throw new Error('FailoverConnection closed');
        }
        this.generation += 1;
        this.url = url;
        this.emit('connected', url, this.generation);
        const ready = Promise.resolve(link);
        ready.link = link;
        this.current = ready;
        return link;
      } catch (err) {
        if (this.closed) throw err;
        this.emit('refused', url, err);
        conn.close().catch(() => {});
        await sleep(this.retryMs);
      }
    }
  }

  /** Publishes and resolves with the connection's generation once the broker confirmed;
   * retried on the next connection when the confirm was lost. */
  async publish(exchange, routingKey, body, options = {}) {
    for (;;) {
      const { ch, lost } = await this.link();
      const generation = this.generation;
      try {
        await Promise.race([
          new Promise((resolve, reject) => {
            ch.publish(exchange, routingKey, body, options, (err) => (err ? reject(err) : resolve()));
          }),
          lost,
        ]);
        return generation;
      } catch (err) {
        if (this.closed) throw err;
        this.emit('retry', err);
        await sleep(this.retryMs);
      }
    }
  }

  /** Consumes `queue` on this connection and on every one after it. */
  async consume(queue, onMessage, options = {}) {
    const c = { queue, onMessage, options };
    this.consumers.push(c);
    await this.subscribe(await this.link(), c);
  }

  async subscribe(link, c) {
    if (link.subscribed.has(c)) return;
    link.subscribed.add(c);
    await link.ch.consume(c.queue, (m) => m && c.onMessage(m, link.ch), c.options);
  }

  async close() {
    this.closed = true;
    const current = this.current;
    this.current = null;
    if (!current) return;
    try {
      const { conn } = await current;
      await conn.close();
    } catch {
      // already gone
    }
  }
}

module.exports = { FailoverConnection };
