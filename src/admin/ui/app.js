// The sluice dashboard. It polls the admin API (/status, /rollouts,
// /drains, /services) once a second and renders
// with text nodes only (never HTML from data). Commands go to the same
// endpoints the CLI calls, with the token from the "Admin token" field,
// which is kept in sessionStorage only.
'use strict';

const TYPES = ['cds', 'eds', 'lds', 'rds'];
const TOKEN_KEY = 'sluice-admin-token';
const POLL_MS = 1000;
const SVG = 'http://www.w3.org/2000/svg';

const $ = (sel) => document.querySelector(sel);

// el('td', {class: 'x'}, 'text', child) — attributes and children.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// Replaces a section's content only when its data changed, so focus and
// scroll position survive the polling.
const rendered = new Map();
function changed(key, data) {
  const sig = JSON.stringify(data);
  if (rendered.get(key) === sig) return false;
  rendered.set(key, sig);
  return true;
}

function headers() {
  const token = sessionStorage.getItem(TOKEN_KEY) || '';
  const h = { 'content-type': 'application/json' };
  if (token) h.authorization = 'Bearer ' + token;
  return h;
}

async function getJSON(path) {
  const r = await fetch(path, { cache: 'no-store' });
  if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
  return r.json();
}

// ---------- result of a command ----------

function showResult(text, ok) {
  const p = $('#result');
  p.textContent = text;
  p.dataset.kind = ok ? 'ok' : 'error';
  p.setAttribute('role', ok ? 'status' : 'alert');
}

async function command(what, method, path, body) {
  showResult(what + '…', true);
  let r;
  try {
    r = await fetch(path, { method, headers: headers(), body: body ? JSON.stringify(body) : undefined });
  } catch (e) {
    showResult(what + ' failed: sluice is unreachable (' + e.message + ')', false);
    return null;
  }
  let doc = {};
  try { doc = await r.json(); } catch (_) { /* an empty or non-JSON body */ }
  if (!r.ok) {
    showResult(what + ' failed: ' + (doc.error || 'HTTP ' + r.status), false);
    return null;
  }
  showResult(what + ': done', true);
  poll.now();
  return doc;
}

// A drain command's answer: {"changed": bool}.
function drainResult(what, doc) {
  if (doc) showResult(what + (doc.changed ? ': done' : ': nothing to change'), true);
}

// ---------- fleet ----------

// Over every type the proxy subscribed to (RTDS and SDS too).
function inSync(p) {
  return Object.values(p.types).every((s) => !s.nack && !s.in_flight && s.sent === s.acked);
}

function nacking(p) {
  return Object.values(p.types).some((s) => s.nack);
}

function since(secs) {
  if (!secs) return '–';
  const d = new Date(secs * 1000);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function typeCell(t, s) {
  if (!s) return el('td', { 'data-type': t }, '–');
  const td = el('td', { 'data-type': t });
  td.append(el('span', { class: 'acked', title: 'ACKed' }, s.acked || 'none ACKed'));
  if (s.sent && s.sent !== s.acked) td.append(el('span', { class: 'sent', title: 'sent' }, ' sent ' + s.sent));
  return td;
}

function renderFleet(status) {
  const proxies = status.proxies;
  $('#count-connected').textContent = proxies.length;
  $('#count-in-sync').textContent = proxies.filter(inSync).length;
  $('#count-nacking').textContent = proxies.filter(nacking).length;

  const select = $('#group-filter');
  const groups = [...new Set(proxies.map((p) => p.node.group))].sort();
  if (changed('groups', groups)) {
    const chosen = select.value;
    select.replaceChildren(el('option', { value: '' }, 'all groups'), ...groups.map((g) => el('option', { value: g }, g)));
    select.value = groups.includes(chosen) ? chosen : '';
  }
  const group = select.value;
  const onlyUnsynced = $('#unsynced-filter').checked;
  const shown = proxies.filter((p) => (!group || p.node.group === group) && (!onlyUnsynced || !inSync(p)));
  if (!changed('fleet', [shown, group, onlyUnsynced])) return;
  const rows = shown.map((p) => {
    const nacks = Object.keys(p.types).filter((t) => p.types[t].nack)
      .map((t) => {
        const n = p.types[t].nack;
        return t.toUpperCase() + ' ' + n.version + ': ' + n.error + (n.rule ? ' (from ' + n.rule + ')' : '');
      });
    const kind = p.node.client === 'grpc' ? ' (gRPC)' : '';
    return el('tr', { 'data-node': p.node.id, class: nacking(p) ? 'nacking' : inSync(p) ? 'synced' : 'unsynced' },
      el('th', { scope: 'row' }, p.node.id + kind),
      el('td', {}, p.node.group),
      el('td', {}, p.mode),
      el('td', {}, since(p.connected_at)),
      ...TYPES.map((t) => typeCell(t, p.types[t])),
      el('td', { class: 'nack' }, nacks.join('\n')));
  });
  if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: 9 }, proxies.length ? 'no proxy matches the filters' : 'no proxies connected')));
  $('#fleet tbody').replaceChildren(...rows);
}

// With several replicas the table lists this replica's proxies; the
// others' counts come from what each replica publishes.
function renderReplicas(ha) {
  const box = $('#fleet-replicas');
  const counts = ha && ha.proxies ? Object.entries(ha.proxies) : [];
  if (!changed('replicas', [ha && ha.replica, counts])) return;
  if (!ha) { box.hidden = true; return; }
  const total = counts.reduce((sum, [, n]) => sum + n, 0);
  const each = counts.map(([r, n]) => r + ' ' + n + (r === ha.replica ? ' (this page)' : '')).join(', ');
  box.textContent = 'Fleet across replicas: ' + total + ' proxies (' + each +
    '). This table lists the proxies connected to replica ' + ha.replica + '; open another replica\'s /ui for its own.';
  box.hidden = false;
}

function renderDenials(denials) {
  if (!changed('denials', denials)) return;
  const box = $('#denials');
  if (!denials.length) { box.replaceChildren(); return; }
  box.replaceChildren(el('h3', {}, 'Refused streams'),
    el('ul', {}, ...denials.map((d) => el('li', {}, since(d.at) + ' ' + d.node_id + ' (' + d.group + ', ' + d.identity + '): ' + d.reason))));
}

// ---------- sources, services, drains ----------

function age(s) {
  return s === null || s === undefined ? 'never' : s.toFixed(1) + ' s ago';
}

function renderSources(sources) {
  if (!changed('sources', sources)) return;
  const rows = sources.map((s) => {
    const err = s.feeds.map((f) => f.last_error).find((e) => e) || '';
    return el('tr', { class: s.up ? '' : 'down' },
      el('th', { scope: 'row' }, s.source),
      el('td', {}, s.up ? 'up' : s.synced ? 'down' : 'not synced'),
      el('td', {}, age(s.last_sync_age_seconds)),
      el('td', {}, s.endpoints),
      el('td', {}, err));
  });
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 5 }, 'no discovery sources')));
  $('#sources tbody').replaceChildren(...rows);
}

function healthCounts(svc) {
  return Object.entries(svc.by_health).map(([h, n]) => n + ' ' + h).join(', ');
}

// Each served service: where its endpoints come from, and the endpoints
// with their health (a drained one is "draining").
function renderServices(services, sources) {
  if (!changed('services', [services, sources])) return;
  const feeds = new Map();
  for (const s of sources) {
    for (const f of s.feeds) {
      const list = feeds.get(f.service) || [];
      list.push(s.source + ' ' + f.state + (f.last_error ? ': ' + f.last_error : ''));
      feeds.set(f.service, list);
    }
  }
  const rows = services.map((svc) => {
    const eps = svc.endpoints.map((e) => el('li', { 'data-health': e.health },
      e.address + ' ' + e.health + (e.locality ? ' (' + e.locality + ')' : '') +
      (Object.keys(e.labels).length ? ' ' + Object.entries(e.labels).map(([k, v]) => k + '=' + v).join(',') : '')));
    if (svc.endpoints_total > svc.endpoints.length) eps.push(el('li', {}, '… ' + (svc.endpoints_total - svc.endpoints.length) + ' more'));
    const list = svc.endpoints_total
      ? el('details', {}, el('summary', {}, svc.endpoints_total + ': ' + healthCounts(svc)), el('ul', { class: 'endpoints' }, ...eps))
      : 'none';
    return el('tr', { 'data-service': svc.name },
      el('th', { scope: 'row' }, svc.name),
      el('td', {}, (feeds.get(svc.name) || ['rules file']).join('; ')),
      el('td', {}, list));
  });
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 3 }, 'no services')));
  $('#services tbody').replaceChildren(...rows);
}

function drainTarget(d) {
  return d.endpoint || d.locality || '';
}

function renderDrains(drains) {
  if (!changed('drains', drains)) return;
  const rows = drains.map((d) => {
    const drain = { service: d.service };
    if (d.endpoint) drain.endpoint = d.endpoint; else drain.locality = d.locality;
    const button = el('button', { type: 'button', 'aria-label': 'Remove drain', title: 'Remove drain of ' + d.service + ' ' + drainTarget(d) }, 'Remove');
    const what = 'remove drain ' + d.service + ' ' + drainTarget(d);
    button.addEventListener('click', async () => drainResult(what, await command(what, 'DELETE', '/drains', drain)));
    return el('tr', {}, el('th', { scope: 'row' }, d.service), el('td', {}, drainTarget(d)), el('td', {}, d.matches), el('td', {}, button));
  });
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 4 }, 'no drains')));
  $('#drains tbody').replaceChildren(...rows);
}

// ---------- rollouts ----------

const LIVE = ['waiting_for_ack', 'analysing', 'paused'];

function stepOf(r) {
  const n = r.spec ? r.spec.steps.length : 0;
  return LIVE.includes(r.phase) ? 'step ' + (r.step + 1) + '/' + n : '';
}

function pct(x) {
  return x === null || x === undefined ? 'n/a' : (x * 100).toFixed(2) + '%';
}

// One bar chart per metric: a bar per analysis window (failed ones
// marked), the threshold as a dashed line.
function chart(title, values, limit, fmt, passed) {
  const W = 300, H = 110, PAD = 22;
  const present = values.filter((v) => v !== null && v !== undefined);
  const top = Math.max(limit || 0, ...present, 1e-9) * 1.15;
  const y = (v) => H - PAD - (v / top) * (H - 2 * PAD);
  const label = title + ': ' + (values.length ? values.map(fmt).join(', ') : 'no windows yet') + (limit ? '; threshold ' + fmt(limit) : '');
  const s = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': label, class: 'chart' });
  s.append(svg('title', {}, label));
  s.append(svg('text', { x: 4, y: 14, class: 'chart-title' }, title));
  s.append(svg('line', { x1: 0, x2: W, y1: H - PAD, y2: H - PAD, class: 'axis' }));
  const bw = (W - 8) / Math.max(values.length, 10);
  values.forEach((v, i) => {
    const x = 4 + i * bw;
    if (v === null || v === undefined) {
      s.append(svg('text', { x: x + 1, y: H - PAD - 4, class: 'nodata' }, '∅'));
      return;
    }
    s.append(svg('rect', { x, y: y(v), width: Math.max(bw - 2, 1), height: Math.max(H - PAD - y(v), 1), class: passed[i] ? 'bar pass' : 'bar fail' }));
  });
  if (limit) {
    s.append(svg('line', { x1: 0, x2: W, y1: y(limit), y2: y(limit), class: 'threshold' }));
    s.append(svg('text', { x: W - 4, y: y(limit) - 3, class: 'threshold-label', 'text-anchor': 'end' }, 'max ' + fmt(limit)));
  }
  if (present.length) s.append(svg('text', { x: 4, y: H - 6, class: 'chart-last' }, 'last ' + fmt(present[present.length - 1])));
  return s;
}

function rolloutDetails(r) {
  const spec = r.spec || { steps: [], from: '', to: '' };
  const facts = el('dl', { class: 'facts' },
    el('div', {}, el('dt', {}, 'phase'), el('dd', { class: 'phase', 'data-phase': r.phase }, r.phase.replace(/_/g, ' '))),
    el('div', {}, el('dt', {}, 'step'), el('dd', { class: 'step' }, stepOf(r) || '–')),
    el('div', {}, el('dt', {}, 'weights'), el('dd', { class: 'weights' }, 'canary ' + spec.to + ' ' + r.canary_weight + '% / stable ' + spec.from + ' ' + r.stable_weight + '%')),
    el('div', {}, el('dt', {}, 'ACKed'), el('dd', { class: 'acks' }, r.acked + '/' + r.targeted)),
    el('div', {}, el('dt', {}, 'failed checks'), el('dd', {}, r.failures + '/' + (spec.failure_threshold || '?'))),
    r.reason ? el('div', {}, el('dt', {}, 'reason'), el('dd', { class: 'reason' }, r.reason)) : null);
  const checks = r.checks || [];
  const passed = checks.map((c) => c.passed);
  const p99limit = spec.max_p99_ms || 0;
  const charts = el('div', { class: 'charts' },
    chart('error rate per window', checks.map((c) => c.error_rate), spec.max_error_rate, pct, passed),
    chart('p99 per window', checks.map((c) => c.p99_ms), p99limit, (v) => (v === null || v === undefined ? 'n/a' : v.toFixed(1) + ' ms'), passed));
  const start = r.history && r.history.length ? r.history[0].at_ms : 0;
  const history = el('details', { class: 'history', open: '' }, el('summary', {}, 'History'),
    el('ol', {}, ...(r.history || []).slice(-30).map((e) => el('li', {}, '+' + ((e.at_ms - start) / 1000).toFixed(1) + ' s  ' + e.message))));
  return [el('p', { class: 'summary' }, r.summary), facts, charts, history];
}

const ACTIONS = [['pause', 'Pause rollout', 'Pause'], ['resume', 'Resume rollout', 'Resume'], ['promote', 'Promote rollout', 'Promote'], ['abort', 'Abort rollout', 'Abort']];
const cards = new Map();

function rolloutCard(service) {
  const live = el('div', { class: 'live' });
  const buttons = ACTIONS.map(([action, label, text]) => {
    const b = el('button', { type: 'button', 'aria-label': label, 'data-action': action, class: action === 'abort' ? 'danger' : '' }, text);
    b.addEventListener('click', async () => {
      const doc = await command(action + ' rollout of ' + service, 'POST', '/rollouts/' + encodeURIComponent(service) + '/' + action);
      if (doc) showResult(action + ': ' + doc.summary, true);
    });
    return b;
  });
  const card = el('article', { class: 'rollout', 'data-service': service, 'aria-label': 'rollout of ' + service },
    el('h3', {}, service), live, el('div', { class: 'actions' }, ...buttons));
  return { card, live, buttons };
}

function renderRollouts(rollouts) {
  const box = $('#rollouts');
  if (rollouts === null) {
    $('#rollouts-empty').textContent = 'no rollout controller (start sluice serve with --state-dir or --state-etcd)';
    return;
  }
  $('#rollouts-empty').textContent = rollouts.length ? '' : 'no rollouts';
  const seen = new Set();
  for (const r of rollouts) {
    seen.add(r.service);
    let c = cards.get(r.service);
    if (!c) {
      c = rolloutCard(r.service);
      cards.set(r.service, c);
      box.append(c.card);
    }
    if (changed('rollout:' + r.service, r)) {
      c.live.replaceChildren(...rolloutDetails(r));
      c.card.dataset.phase = r.phase;
      for (const b of c.buttons) b.disabled = r.done;
    }
  }
  for (const [service, c] of cards) {
    if (!seen.has(service)) { c.card.remove(); cards.delete(service); rendered.delete('rollout:' + service); }
  }
}

// ---------- rules ----------

function renderRules(status) {
  const rules = status.rules;
  const data = [rules, status.ready];
  if (!changed('rules', data)) return;
  // An error (a diagnostic with its file:line:column) takes a whole row.
  const fact = (k, v, cls) => el('div', { class: cls === 'error' ? 'wide' : '' }, el('dt', {}, k), el('dd', { class: cls || '' }, v));
  const items = [
    fact('file', rules.file),
    fact('served version', rules.served_hash || 'none yet', 'served'),
    fact('ready', status.ready ? 'yes' : 'no: no complete snapshot yet'),
    fact('reloads', rules.reloads + ' (' + rules.rejected_reloads + ' refused)'),
    fact('last refused edit', rules.last_error || 'none', rules.last_error ? 'error' : ''),
  ];
  if (rules.held) {
    items.push(fact('held by the mass-removal guard', 'version ' + rules.held.version + ' (confirm with: sluice rules confirm ' + rules.held.version + ')', 'error'));
  }
  $('#rules').replaceChildren(...items);
}

// ---------- polling ----------

function setConnected(ok, why) {
  const p = $('#conn');
  p.dataset.state = ok ? 'connected' : 'disconnected';
  p.textContent = ok ? 'connected, updated ' + new Date().toLocaleTimeString() : 'disconnected: ' + why + ' (retrying)';
  document.body.classList.toggle('disconnected', !ok);
}

// /services can be large (every endpoint's health): it is read every
// SERVICES_EVERY polls, and right after a command.
const SERVICES_EVERY = 5;
const polling = { ticks: 0, servicesDue: true, inFlight: false, again: false, services: [] };

// One poll at a time: a command's poll.now() during a poll runs another
// right after it, so there is never more than one timer.
async function poll() {
  clearTimeout(poll.timer);
  if (polling.inFlight) { polling.again = true; return; }
  polling.inFlight = true;
  const wantServices = polling.servicesDue || polling.ticks % SERVICES_EVERY === 0;
  polling.servicesDue = false;
  polling.ticks += 1;
  try {
    const [status, rollouts, drains, services] = await Promise.all([
      getJSON('/status'), getJSON('/rollouts'), getJSON('/drains'),
      wantServices ? getJSON('/services') : Promise.resolve(null)]);
    if (services) polling.services = services;
    setConnected(true);
    renderFleet(status);
    renderDenials(status.xds_denials || []);
    renderSources(status.sources || []);
    renderServices(polling.services, status.sources || []);
    renderDrains(drains);
    renderRollouts(status.rollout_controller ? rollouts : null);
    renderRules(status);
    const ha = status.ha;
    $('#replica').textContent = ha ? 'replica ' + ha.replica + (ha.is_leader ? ' (leader)' : ', leader ' + (ha.leader || 'none')) : '';
    renderReplicas(ha);
    if (!poll.last) performance.mark('sluice-first-render');
    poll.last = { status, rollouts, drains };
  } catch (e) {
    if (wantServices) polling.servicesDue = true;
    setConnected(false, e.message);
  }
  polling.inFlight = false;
  if (polling.again) {
    polling.again = false;
    poll();
  } else {
    poll.timer = setTimeout(poll, POLL_MS);
  }
}
poll.now = () => { polling.servicesDue = true; poll(); };

function init() {
  const token = $('#token');
  token.value = sessionStorage.getItem(TOKEN_KEY) || '';
  token.addEventListener('input', () => sessionStorage.setItem(TOKEN_KEY, token.value.trim()));
  const rerender = () => { if (poll.last) renderFleet(poll.last.status); };
  $('#group-filter').addEventListener('change', rerender);
  $('#unsynced-filter').addEventListener('change', rerender);
  $('#add-drain').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const service = $('#drain-service').value.trim();
    const target = $('#drain-target').value.trim();
    const drain = { service };
    if (/:\d+$/.test(target)) drain.endpoint = target; else drain.locality = target;
    const what = 'add drain ' + service + ' ' + target;
    drainResult(what, await command(what, 'POST', '/drains', drain));
  });
  poll();
}

init();
