// The page's script: logs in, then polls the management API and draws what it gets.
// Every value from the API goes into the DOM as text (textContent), never as markup.
"use strict";

// The API's rates change at most once per 5 s sample (src/management/stats.rs), so
// polling faster would only repeat them.
const POLL_MS = 5000;
// Points kept in the chart: five minutes at one point per poll.
const CHART_POINTS = 60;
const AUTH_KEY = "fedamq.auth";

const $ = (id) => document.getElementById(id);
let timer = null;
const history = [];

// `user:password` in base64 as HTTP basic auth wants it, UTF-8 first (btoa takes
// only Latin-1).
function basic(user, password) {
  const bytes = new TextEncoder().encode(user + ":" + password);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

class Unauthorized extends Error {}

// GETs an API path as the logged-in user. `credentials: "omit"` keeps the browser
// from answering the API's 401 challenge with its own login dialog.
async function api(path) {
  const response = await fetch(path, {
    headers: { Authorization: "Basic " + sessionStorage.getItem(AUTH_KEY) },
    credentials: "omit",
    cache: "no-store",
  });
  if (response.status === 401) throw new Unauthorized("Login failed");
  if (response.status === 404) return null;
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

function showLogin(message) {
  clearTimeout(timer);
  timer = null;
  sessionStorage.removeItem(AUTH_KEY);
  $("main").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

async function logIn(event) {
  event.preventDefault();
  sessionStorage.setItem(AUTH_KEY, basic($("user").value, $("password").value));
  await start();
}

async function start() {
  try {
    const me = await api("/api/whoami");
    $("who").textContent = me.name;
  } catch (e) {
    showLogin(e instanceof Unauthorized ? "Login failed" : String(e));
    return;
  }
  $("login").hidden = true;
  $("main").hidden = false;
  $("logout").hidden = false;
  history.length = 0;
  poll();
}

async function poll() {
  try {
    const [overview, queues, exchanges, connections, links, ha, tunnels] = await Promise.all([
      api("/api/overview"),
      api("/api/queues"),
      api("/api/exchanges"),
      api("/api/connections"),
      api("/api/federation-links"),
      // Not an HA member (404) or not allowed to see it: no HA section.
      api("/api/ha").catch(() => null),
      // Node-wide, for monitoring users only: others see the section say so.
      api("/api/tunnels").catch((e) => (e instanceof Unauthorized ? undefined : Promise.reject(e))),
    ]);
    showHa(ha);
    showOverview(overview);
    showQueues(queues || []);
    showExchanges(exchanges || []);
    showConnections(connections || []);
    showLinks(links);
    showTunnels(tunnels);
    $("status").textContent = "";
  } catch (e) {
    if (e instanceof Unauthorized) {
      showLogin("Logged out: the broker refused the credentials");
      return;
    }
    $("status").textContent = "Could not reach the broker: " + e.message;
  }
  timer = setTimeout(poll, POLL_MS);
}

function rate(stats, name) {
  const details = stats && stats[name + "_details"];
  return details && typeof details.rate === "number" ? details.rate : 0;
}

function showRate(id, value) {
  const el = $(id);
  el.dataset.rate = String(value);
  el.textContent = value.toFixed(1) + "/s";
}

function showOverview(o) {
  $("node").textContent = o.node + " · " + o.product_name + " " + o.product_version;
  const publish = rate(o.message_stats, "publish");
  const deliver = rate(o.message_stats, "deliver_get");
  showRate("publish-rate", publish);
  showRate("deliver-rate", deliver);
  const q = o.queue_totals || {};
  const t = o.object_totals || {};
  $("messages-ready").textContent = String(q.messages_ready ?? 0);
  $("messages-unacked").textContent = String(q.messages_unacknowledged ?? 0);
  $("queue-count").textContent = String(t.queues ?? 0);
  $("exchange-count").textContent = String(t.exchanges ?? 0);
  $("connection-count").textContent = String(t.connections ?? 0);
  $("consumer-count").textContent = String(t.consumers ?? 0);
  history.push({ publish, deliver });
  if (history.length > CHART_POINTS) history.shift();
  drawChart();
}

// Two polylines, publish and deliver/get, scaled to the largest rate shown.
function drawChart() {
  const svg = $("chart");
  const [width, height, pad] = [600, 160, 4];
  const max = Math.max(1, ...history.map((p) => Math.max(p.publish, p.deliver)));
  const step = (width - 2 * pad) / (CHART_POINTS - 1);
  const x0 = width - pad - (history.length - 1) * step;
  svg.replaceChildren();
  for (const series of ["publish", "deliver"]) {
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("class", series);
    const points = history.map((p, i) => {
      const x = x0 + i * step;
      const y = height - pad - (p[series] / max) * (height - 2 * pad);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    line.setAttribute("points", points.join(" "));
    svg.append(line);
  }
  svg.dataset.points = String(history.length);
  $("chart-max").textContent = max.toFixed(1);
}

// Replaces a table's rows: one per item, one cell per column function; numbers are
// right-aligned.
function fill(tableId, items, columns, empty) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren();
  if (items.length === 0) {
    const cell = body.insertRow().insertCell();
    cell.colSpan = columns.length;
    cell.className = "empty";
    cell.textContent = empty;
    return;
  }
  for (const item of items) {
    const row = body.insertRow();
    for (const column of columns) {
      const value = column(item);
      const cell = row.insertCell();
      if (typeof value === "number") cell.className = "number";
      cell.textContent = value === undefined || value === null ? "" : String(value);
    }
  }
}

const yesNo = (b) => (b ? "yes" : "no");

function showQueues(queues) {
  fill("queues", queues, [
    (q) => q.vhost,
    (q) => q.name,
    (q) => q.type,
    (q) => q.messages_ready,
    (q) => q.messages_unacknowledged,
    (q) => q.consumers,
    (q) => rate(q.message_stats, "publish").toFixed(1),
  ], "No queues");
}

function showExchanges(exchanges) {
  fill("exchanges", exchanges, [
    (x) => x.vhost,
    (x) => (x.name === "" ? "(AMQP default)" : x.name),
    (x) => x.type,
    (x) => yesNo(x.durable),
    (x) => yesNo(x.auto_delete),
  ], "No exchanges");
}

function showConnections(connections) {
  fill("connections", connections, [
    (c) => c.name,
    (c) => c.user,
    (c) => c.vhost,
    (c) => c.channels,
    (c) => c.state,
  ], "No connections");
}

// `null` when the broker has no federation-links endpoint (404).
function showLinks(links) {
  fill("federation-links", links || [], [
    (l) => l.vhost,
    (l) => l.upstream,
    (l) => l.type,
    (l) => l.exchange ?? l.queue,
    (l) => l.status,
  ], links === null ? "Federation links are not available on this broker" : "No federation links");
}

// The HA pair's member on this broker; `null` hides the section.
function showHa(ha) {
  $("ha").hidden = ha === null;
  if (ha === null) return;
  $("ha-state").textContent = ha.state;
  $("ha-role").textContent = ha.role;
  $("ha-epoch").textContent = String(ha.epoch);
  $("ha-peer").textContent =
    ha.peer_address + (ha.peer ? " (" + ha.peer.state + ")" : " (not heard)");
  $("ha-heard").textContent =
    ha.last_peer_heartbeat_ms === null ? "never" : ha.last_peer_heartbeat_ms + " ms ago";
  $("ha-reason").textContent = ha.reason;
}

// `null`: no tunnels endpoint (404); `undefined`: the user may not see them.
function showTunnels(tunnels) {
  const counter = (t, name) => (t.counters ? t.counters[name] : undefined);
  fill("tunnels", tunnels || [], [
    (t) => t.direction,
    (t) => t.service,
    (t) => t.remote ?? t.opener,
    (t) => t.state,
    (t) => t.reason ?? t.why,
    (t) => counter(t, "sent"),
    (t) => counter(t, "received"),
    (t) => counter(t, "resent"),
    (t) => t.last_error,
  ], tunnels === null ? "Tunnels are not available on this broker"
    : tunnels === undefined ? "Tunnels are shown to monitoring users" : "No tunnels");
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", logIn);
  $("logout").addEventListener("click", () => showLogin(""));
  if (sessionStorage.getItem(AUTH_KEY)) start();
  else showLogin("");
});
