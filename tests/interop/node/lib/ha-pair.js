'use strict';
// Two fedamq processes as an HA pair for the failover tests (the Node twin of
// tests/interop/python/ha_pair.py): a primary and a backup with [ha] sections naming
// each other on free loopback ports, a `peering` user, an administrator for /api/ha and
// a plain user `app` for the clients (administrators are always admitted, so a client
// must be a plain user to be refused by the passive member). The binary is FEDAMQ_BIN.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function memberConfig(role, peerPort, timeoutMs, epochFile) {
  const users = [['peer', 'peer-secret', '["peering"]'], ['admin', 'admin-secret', '["administrator"]'], ['app', 'app-secret', '[]']];
  let toml = `[ha]\nrole = "${role}"\npeer = "amqp://peer:peer-secret@127.0.0.1:${peerPort}"\ntimeout = "${timeoutMs}ms"\nepoch_file = "${epochFile}"\n`;
  for (const [name, password, tags] of users) {
    toml += `\n[[user]]\nname = "${name}"\npassword = "${password}"\ntags = ${tags}\n`;
    toml += `\n[[permission]]\nuser = "${name}"\nvhost = "/"\nconfigure = ".*"\nwrite = ".*"\nread = ".*"\n`;
  }
  return toml;
}

class Member {
  constructor(role, port, config, dir) {
    Object.assign(this, { role, port, config, dir, proc: null, management: '' });
  }

  get url() {
    return `amqp://app:app-secret@127.0.0.1:${this.port}/%2f`;
  }

  async start(binary) {
    const out = path.join(this.dir, `${this.role}.out`);
    const log = fs.openSync(path.join(this.dir, `${this.role}.log`), 'a');
    const outFd = fs.openSync(out, 'w');
    this.proc = spawn(binary, ['--config', this.config, '--bind', '127.0.0.1', '--port', String(this.port),
      '--management-port', '0', '--prometheus-port', '0', '--log', 'warn'], { stdio: ['ignore', outFd, log] });
    this.exited = new Promise((r) => this.proc.on('exit', r));
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`fedamq ${this.role} exited`);
      const m = /^management API on (http:\/\/\S+)$/m.exec(fs.readFileSync(out, 'utf8'));
      if (m) { this.management = m[1]; return; }
      await sleep(50);
    }
    throw new Error(`fedamq ${this.role} did not print its management address`);
  }

  async haStatus() {
    try {
      const r = await fetch(`${this.management}/api/ha`, {
        headers: { authorization: `Basic ${Buffer.from('admin:admin-secret').toString('base64')}` },
        signal: AbortSignal.timeout(2000),
      });
      return r.ok ? await r.json() : null;
    } catch {
      return null;
    }
  }

  async kill9() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGKILL');
      await this.exited;
    }
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 10000);
      await this.exited;
      clearTimeout(t);
    }
  }
}

class HaPair {
  constructor({ binary = process.env.FEDAMQ_BIN, timeoutMs = 1000 } = {}) {
    this.binary = binary;
    this.timeoutMs = timeoutMs;
  }

  async start() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fedamq-ha-'));
    const [p, b] = [await freePort(), await freePort()];
    const members = [['primary', p, b], ['backup', b, p]].map(([role, port, peer]) => {
      const config = path.join(this.dir, `${role}.toml`);
      fs.writeFileSync(config, memberConfig(role, peer, this.timeoutMs, path.join(this.dir, `${role}-epoch`)));
      return new Member(role, port, config, this.dir);
    });
    [this.primary, this.backup] = members;
    try {
      await this.primary.start(this.binary);
      await this.backup.start(this.binary);
      const deadline = Date.now() + 30000;
      for (;;) {
        const [ps, bs] = [await this.primary.haStatus(), await this.backup.haStatus()];
        if (ps?.state === 'active' && bs?.state === 'passive' && bs?.peer?.state === 'active') break;
        if (Date.now() > deadline) throw new Error(`HA pair not ready: ${JSON.stringify([ps, bs])}`);
        await sleep(50);
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
    return this;
  }

  get urls() {
    return [this.primary.url, this.backup.url];
  }

  async stop() {
    for (const m of [this.primary, this.backup]) if (m) await m.stop();
  }
}

module.exports = { HaPair };
