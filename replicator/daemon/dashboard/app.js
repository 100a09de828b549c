// Ferry's replication status dashboard: polls the daemon's /v1 API (same
// origin) every second and renders destinations, one image's state, failures,
// the latest journal entries and the sources.
//
// Every string from the API reaches the page through textContent or an
// attribute, never through innerHTML.
'use strict';

(function () {
  const POLL_MS = 1000;           // updates stay well within 2 s of the daemon
  const REQUEST_TIMEOUT_MS = 4000;
  const JOURNAL_ROWS = 20;
  const CHART_SECONDS = 15 * 60;  // the API keeps 15 minutes of throughput
  const CHART_HEIGHT = 110;
  const TOKEN_KEY = 'ferry.apiToken';
  const FAILURES_SHOWN = 200;     // rows of the failures table
  const API_LIST_MAX = 1000;      // the API answers at most this many failures

  // ------------------------------------------------------------ helpers

  const byId = (id) => document.getElementById(id);

  // el('td', {class: 'num', 'data-label': 'Seq'}, 'text', childNode, ...)
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function setText(node, text) {
    const s = text === undefined || text === null ? '' : String(text);
    if (node.textContent !== s) node.textContent = s;
  }

  function setTitle(node, title) {
    if (title) node.title = String(title);
    else node.removeAttribute('title');
  }

  const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  const pad2 = (n) => String(n).padStart(2, '0');
  const clock = (d) => `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;

  function fmtCount(v) {
    return num(v).toLocaleString('en-US');
  }

  function fmtBytes(v) {
    let n = num(v);
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    if (i === 0) return `${Math.round(n)} B`;
    return `${n < 10 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
  }

  const fmtRate = (v) => `${fmtBytes(v)}/s`;

  function fmtDuration(seconds) {
    if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return '—';
    const s = Math.max(0, seconds);
    if (s < 10) return `${s.toFixed(1)} s`;
    if (s < 60) return `${Math.round(s)} s`;
    const whole = Math.round(s);
    if (whole < 3600) return `${Math.floor(whole / 60)} m ${pad2(whole % 60)} s`;
    if (whole < 86400) return `${Math.floor(whole / 3600)} h ${pad2(Math.floor(whole / 60) % 60)} m`;
    return `${Math.floor(whole / 86400)} d ${Math.floor(whole / 3600) % 24} h`;
  }

  // The daemon's clock, so that "ago" does not depend on this machine's.
  let serverOffsetMs = 0;
  const serverNowMs = () => Date.now() + serverOffsetMs;

  function fmtAgo(rfc3339) {
    if (!rfc3339) return '—';
    const t = Date.parse(rfc3339);
    if (Number.isNaN(t)) return String(rfc3339);
    const s = (serverNowMs() - t) / 1000;
    return s < 1 ? 'just now' : `${fmtDuration(s)} ago`;
  }

  const shortDigest = (d) => (typeof d === 'string' && d.length > 19 ? `${d.slice(0, 19)}…` : d || '—');

  // ------------------------------------------------------------ API

  class AuthError extends Error {}
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function getToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || '';
    } catch (e) {
      return memoryToken;
    }
  }
  let memoryToken = ''; // where sessionStorage is not available

  function storeToken(token) {
    memoryToken = token;
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      /* memoryToken holds it */
    }
  }

  async function api(path, options) {
    const method = (options && options.method) || 'GET';
    const headers = { Accept: 'application/json' };
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    let body;
    if (options && options.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(options.body);
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    let response;
    let data = null;
    try {
      response = await fetch(path, {
        method, headers, body, cache: 'no-store', credentials: 'same-origin', signal: controller.signal,
      });
      const text = await response.text();
      if (text) {
        try {
          data = JSON.parse(text);
        } catch (e) {
          data = null;
        }
      }
    } catch (e) {
      throw new ApiError(0, e && e.name === 'AbortError' ? 'no answer in time' : 'daemon unreachable');
    } finally {
      clearTimeout(timer);
    }
    const message = data && typeof data.error === 'string' ? data.error : `HTTP ${response.status}`;
    if (response.status === 401) throw new AuthError(message);
    if (!response.ok) throw new ApiError(response.status, message);
    if (data === null || typeof data !== 'object') throw new ApiError(response.status, 'answer is not JSON');
    return data;
  }

  // ------------------------------------------------------------ token prompt

  let waitingForToken = false;

  function askForToken(error) {
    const refused = getToken() !== '';
    storeToken('');
    waitingForToken = true;
    byId('forget-token').hidden = true;
    const box = byId('token-error');
    if (refused) {
      setText(box, `The daemon refused that token (${error.message}). Enter it again.`);
      box.hidden = false;
    } else {
      box.hidden = true;
    }
    const submit = byId('token-submit');
    submit.disabled = false;
    setText(submit, 'Connect');
    const input = byId('token-input');
    input.value = '';
    byId('auth').hidden = false;
    document.body.classList.add('locked');
    input.focus();
  }

  function tokenAccepted() {
    if (byId('auth').hidden) return;
    byId('auth').hidden = true;
    document.body.classList.remove('locked');
  }

  byId('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = byId('token-input').value.trim();
    if (!token) return;
    storeToken(token);
    waitingForToken = false;
    const submit = byId('token-submit');
    submit.disabled = true;
    setText(submit, 'Checking…');
    pollNow();
  });

  byId('forget-token').addEventListener('click', () => {
    storeToken('');
    askForToken(new Error(''));
  });

  // ------------------------------------------------------------ toasts and banner

  function toast(message, kind) {
    const node = el('div', { class: `toast ${kind || ''}`, role: kind === 'error' ? 'alert' : 'status' }, message);
    byId('toasts').append(node);
    setTimeout(() => node.remove(), 6000);
  }

  let lastUpdate = null;

  function showConnected() {
    lastUpdate = new Date();
    setText(byId('updated'), `updated ${clock(lastUpdate)}`);
    byId('updated').classList.remove('stale');
    byId('updated').classList.add('ok');
    byId('banner').hidden = true;
    document.body.classList.remove('stale');
  }

  function showDisconnected(error) {
    const since = lastUpdate ? `; last update ${clock(lastUpdate)}` : '';
    setText(byId('banner'), `Disconnected: ${error.message}. Retrying every second${since}.`);
    byId('banner').hidden = false;
    byId('updated').classList.add('stale');
    byId('updated').classList.remove('ok');
    document.body.classList.add('stale');
  }

  // ------------------------------------------------------------ keyed rows

  // Updates `tbody` in place so that rows (and the buttons in them) survive
  // polls: `make(item)` builds a row, `update(row, item)` refreshes it.
  function syncRows(tbody, items, key, make, update) {
    const old = new Map();
    for (const row of Array.from(tbody.children)) old.set(row.dataset.key, row);
    let previous = null;
    for (const item of items) {
      const k = key(item);
      let row = old.get(k);
      if (row) old.delete(k);
      else {
        row = make(item);
        row.dataset.key = k;
      }
      update(row, item);
      const wanted = previous ? previous.nextSibling : tbody.firstChild;
      if (row !== wanted) tbody.insertBefore(row, wanted);
      previous = row;
    }
    for (const row of old.values()) row.remove();
  }

  // A row of cells, each labelled for the narrow (stacked) layout.
  function makeRow(testid, labels, classes) {
    const row = el('tr', { 'data-testid': testid });
    labels.forEach((label, i) => row.append(el('td', { 'data-label': label, class: classes && classes[i] })));
    return row;
  }

  function cell(row, i) {
    return row.children[i];
  }

  // A button that shows an image in the search panel.
  function imageLink(repository, digest, label) {
    return el('button', {
      type: 'button', class: 'link', title: `show ${repository}@${digest}`,
      onclick: () => search(`${repository}@${digest}`),
    }, label);
  }

  // ------------------------------------------------------------ destinations

  const cards = new Map(); // name -> card parts

  // `failedNow` counts the destination's jobs that are FAILED now (from
  // /v1/failures); the status's "failed" counts every job that failed since
  // the daemon started, retried or not.
  function destinationState(d, failedNow) {
    if (d.circuit === 'open') return 'down';
    if (failedNow > 0 || d.circuit === 'half-open') return 'degraded';
    return 'healthy';
  }

  function figure(label, testid) {
    const value = el('dd', { 'data-testid': testid });
    return { node: el('div', { class: 'figure' }, el('dt', {}, label), value), value };
  }

  function makeCard(name) {
    const card = { name };
    card.state = el('span', { class: 'badge', 'data-testid': 'state' });
    card.registry = el('p', { class: 'registry muted', 'data-testid': 'registry' });
    const figures = {
      backlog: figure('backlog', 'backlog'),
      lag: figure('lag', 'lag'),
      inFlight: figure('in flight', 'in-flight'),
      failed: figure('failed', 'failed'),
      completed: figure('completed', 'completed'),
      superseded: figure('superseded', 'superseded'),
      rate: figure('rate', 'rate'),
      bytes: figure('copied', 'bytes'),
      circuit: figure('circuit', 'circuit'),
    };
    card.figures = figures;
    card.chart = el('div', { class: 'chart', role: 'img', 'aria-label': `${name}: bytes per second, last 15 minutes` });
    card.error = el('p', { class: 'last-error', 'data-testid': 'last-error', hidden: true });
    card.retry = el('button', {
      type: 'button', class: 'retry-all', 'data-testid': 'retry-all', hidden: true,
      onclick: () => retry({ destination: name }, card.retry),
    });
    card.root = el('article', { class: 'card', 'data-testid': `dest-${name}` },
      el('header', {}, el('h3', {}, name), card.state),
      card.registry,
      el('dl', { class: 'figures' }, ...Object.values(figures).map((f) => f.node)),
      el('div', { class: 'chart-title muted' }, 'throughput, last 15 min'),
      card.chart,
      card.error,
      card.retry);
    return card;
  }

  function chartColors() {
    const style = getComputedStyle(document.documentElement);
    const get = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
    return {
      line: get('--accent', '#4ea1ff'),
      fill: get('--accent-fill', 'rgba(78, 161, 255, 0.18)'),
      axis: get('--muted', '#8b97a8'),
      grid: get('--grid', 'rgba(139, 151, 168, 0.15)'),
    };
  }

  function makeChart(card) {
    if (typeof window.uPlot !== 'function') {
      card.chart.append(el('p', { class: 'muted' }, 'chart library not loaded'));
      return;
    }
    const colors = chartColors();
    const axis = { stroke: colors.axis, grid: { stroke: colors.grid, width: 1 }, ticks: { stroke: colors.grid, width: 1 } };
    card.now = Date.now() / 1000;
    card.plot = new window.uPlot({
      width: Math.max(card.chart.clientWidth, 200),
      height: CHART_HEIGHT,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: () => [card.now - CHART_SECONDS, card.now] },
        y: { range: (u, min, max) => [0, Math.max(1024, num(max) * 1.15)] },
      },
      axes: [
        Object.assign({}, axis, {
          space: 60,
          values: (u, ticks) => ticks.map((t) => {
            const d = new Date(t * 1000);
            return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
          }),
        }),
        Object.assign({}, axis, { size: 72, values: (u, ticks) => ticks.map(fmtRate) }),
      ],
      series: [
        {},
        { label: 'bytes/s', stroke: colors.line, fill: colors.fill, width: 2, points: { show: false }, value: (u, v) => (v === null ? '—' : fmtRate(v)) },
      ],
    }, [[], []], card.chart);
    if (typeof ResizeObserver === 'function') {
      card.resize = new ResizeObserver(() => {
        const width = card.chart.clientWidth;
        if (width > 0 && card.plot && Math.abs(width - card.plot.width) > 1) card.plot.setSize({ width, height: CHART_HEIGHT });
      });
      card.resize.observe(card.chart);
    }
  }

  function updateCard(card, d, nowSeconds, failures) {
    const failed = failures.counts.get(d.name) || 0;
    const state = destinationState(d, failed);
    setText(card.state, state);
    card.root.className = `card state-${state}`;
    setText(card.registry, d.registry || '');
    const f = card.figures;
    setText(f.backlog.value, fmtCount(d.backlog));
    setText(f.lag.value, fmtDuration(num(d.lag_seconds)));
    setText(f.inFlight.value, fmtCount(d.in_flight));
    setText(f.failed.value, `${fmtCount(failed)}${failures.capped && failed > 0 ? '+' : ''}`);
    setTitle(f.failed.node, `failed now; ${fmtCount(d.failed)} failed since the daemon started`);
    f.failed.node.classList.toggle('bad', failed > 0);
    setText(f.completed.value, fmtCount(d.completed));
    setText(f.superseded.value, fmtCount(d.superseded));
    setText(f.rate.value, fmtRate(d.bytes_per_second));
    setText(f.bytes.value, fmtBytes(d.bytes));
    setText(f.circuit.value, d.circuit || '—');
    f.circuit.node.classList.toggle('bad', d.circuit === 'open');
    if (d.last_error) {
      setText(card.error, `Last error${d.last_error_time ? ` (${fmtAgo(d.last_error_time)})` : ''}: ${d.last_error}`);
      setTitle(card.error, d.last_error_time);
      card.error.classList.toggle('past', state === 'healthy');
      card.error.hidden = false;
    } else {
      card.error.hidden = true;
    }
    card.retry.hidden = failed === 0;
    if (!card.retry.disabled) setText(card.retry, `retry ${fmtCount(failed)} failed`);
    if (card.plot) {
      card.now = nowSeconds;
      const xs = [];
      const ys = [];
      for (const point of Array.isArray(d.throughput) ? d.throughput : []) {
        if (Array.isArray(point) && point.length >= 2) {
          xs.push(num(point[0]));
          ys.push(num(point[1]));
        }
      }
      card.plot.setData([xs, ys]);
    }
  }

  function renderDestinations(destinations, nowSeconds, failures) {
    const container = byId('cards');
    const seen = new Set();
    let previous = null;
    for (const d of destinations) {
      if (!d || typeof d.name !== 'string' || seen.has(d.name)) continue;
      seen.add(d.name);
      let card = cards.get(d.name);
      const wanted = previous ? previous.nextSibling : container.firstChild;
      if (!card) {
        card = makeCard(d.name);
        cards.set(d.name, card);
        container.insertBefore(card.root, wanted);
        makeChart(card);
      } else if (card.root !== wanted) {
        container.insertBefore(card.root, wanted);
      }
      updateCard(card, d, nowSeconds, failures);
      previous = card.root;
    }
    for (const [name, card] of cards) {
      if (seen.has(name)) continue;
      if (card.resize) card.resize.disconnect();
      if (card.plot) card.plot.destroy();
      card.root.remove();
      cards.delete(name);
    }
    byId('cards-empty').hidden = seen.size > 0;
  }

  // ------------------------------------------------------------ sources and summary

  function renderSources(sources) {
    const labels = ['Source', 'Registry', 'Poller', 'Last event', 'Entries', 'Last seq',
      'Pull budget'];
    syncRows(byId('sources-rows'), sources, (s) => String(s.name),
      () => makeRow('source-row', labels, [null, null, null, null, 'num', 'num', null]),
      (row, s) => {
        setText(cell(row, 0), s.name);
        setText(cell(row, 1), s.registry);
        setText(cell(row, 2), s.poller);
        cell(row, 2).className = `poller-${s.poller}`;
        setText(cell(row, 3), fmtAgo(s.last_event_time));
        setTitle(cell(row, 3), s.last_event_time);
        setText(cell(row, 4), fmtCount(s.entries));
        setText(cell(row, 5), fmtCount(s.last_seq));
        // What the registry's RateLimit-* headers said (Docker Hub), and the poller's error.
        const rl = s.ratelimit;
        setText(cell(row, 6), rl ? `${rl.remaining ?? '?'} of ${rl.limit ?? '?'}` : '—');
        setTitle(cell(row, 6), rl && rl.window_s ? `per ${fmtDuration(rl.window_s)}` : '');
        setTitle(cell(row, 2), s.poller_error || '');
      });
    byId('sources-table').hidden = sources.length === 0;
  }

  // A cluster's nodes as the asked node's last heartbeat read them (none on one node).
  function renderCluster(cluster) {
    const nodes = cluster && Array.isArray(cluster.nodes) ? cluster.nodes : [];
    const labels = ['Node', 'State', 'Last heartbeat', 'Pending', 'In flight', 'Completed',
      'Failed'];
    syncRows(byId('cluster-rows'), nodes, (n) => String(n.name),
      () => makeRow('node-row', labels, [null, null, null, 'num', 'num', 'num', 'num']),
      (row, n) => {
        const f = n.figures || {};
        setText(cell(row, 0), n.self ? `${n.name} (this node)` : n.name);
        setText(cell(row, 1), n.alive ? 'alive' : 'gone');
        cell(row, 1).className = n.alive ? 'node-alive' : 'node-gone';
        setText(cell(row, 2), fmtAgo(n.last_heartbeat));
        setTitle(cell(row, 2), n.last_heartbeat || '');
        setText(cell(row, 3), fmtCount(f.pending || 0));
        setText(cell(row, 4), fmtCount(f.running || 0));
        setText(cell(row, 5), fmtCount(f.complete || 0));
        setText(cell(row, 6), fmtCount(f.failed || 0));
      });
    byId('cluster-section').hidden = nodes.length === 0;
  }

  // Where each registry's credentials come from and when they were renewed (never the secret).
  function renderRegistries(registries) {
    const labels = ['Registry', 'Host', 'Credentials from', 'Renewed', 'Expires', 'Renewals',
      'Last error'];
    syncRows(byId('registries-rows'), registries, (r) => String(r.name),
      () => makeRow('registry-row', labels, [null, null, null, null, null, 'num', null]),
      (row, r) => {
        const c = r.credentials || {};
        setText(cell(row, 0), r.name);
        setText(cell(row, 1), r.registry);
        setText(cell(row, 2), r.credentials ? c.source : 'anonymous');
        setText(cell(row, 3), c.renewed_at ? fmtAgo(c.renewed_at) : '—');
        setTitle(cell(row, 3), c.renewed_at || '');
        setText(cell(row, 4), c.expires_at || '—');
        setText(cell(row, 5), fmtCount(c.renewals || 0));
        setText(cell(row, 6), c.last_error || '');
      });
    byId('registries-table').hidden = registries.length === 0;
  }

  function renderSummary(status) {
    const journal = status.journal || {};
    setText(byId('summary'),
      `up ${fmtDuration(num(status.uptime_seconds))} · journal seq ${fmtCount(journal.last_seq)}` +
      ` · cursor ${fmtCount(journal.cursor)}`);
    setText(byId('journal-seq'), journal.last_seq ? `last seq ${fmtCount(journal.last_seq)}` : '');
  }

  // ------------------------------------------------------------ failures

  // FAILED jobs per destination, and whether the API's list was cut short.
  function countFailures(failures) {
    const counts = new Map();
    for (const f of failures) counts.set(f.destination, (counts.get(f.destination) || 0) + 1);
    return { counts, capped: failures.length >= API_LIST_MAX };
  }

  function renderFailures(all, capped) {
    const failures = all.slice(0, FAILURES_SHOWN);
    const labels = ['Destination', 'Repository', 'Digest', 'Tags', 'Attempts', 'Error', 'Updated', ''];
    syncRows(byId('failures-rows'), failures,
      (f) => `${f.destination}\n${f.repository}\n${f.digest}`,
      (f) => {
        const row = makeRow('failure-row', labels, [null, null, 'digest', null, 'num', 'error', null, 'actions']);
        const button = el('button', { type: 'button', class: 'retry', 'data-testid': 'retry' }, 'Retry');
        button.addEventListener('click', () => retry({
          destination: f.destination, repository: f.repository, digest: f.digest,
        }, button));
        cell(row, 7).append(button);
        return row;
      },
      (row, f) => {
        setText(cell(row, 0), f.destination);
        const repo = cell(row, 1);
        if (repo.dataset.value !== `${f.repository}\n${f.source_repository}`) {
          repo.dataset.value = `${f.repository}\n${f.source_repository}`;
          const wrap = el('span', {},
            f.source_repository ? imageLink(f.source_repository, f.digest, f.repository) : f.repository || '');
          if (f.source_repository && f.source_repository !== f.repository) {
            wrap.append(el('span', { class: 'muted small' }, ` from ${f.source_repository}`));
          }
          repo.replaceChildren(wrap);
        }
        setText(cell(row, 2), shortDigest(f.digest));
        setTitle(cell(row, 2), f.digest);
        setText(cell(row, 3), Array.isArray(f.tags) && f.tags.length ? f.tags.join(', ') : '—');
        setText(cell(row, 4), fmtCount(f.attempts));
        setText(cell(row, 5), f.last_error || '—');
        cell(row, 5).classList.toggle('none', !f.last_error);
        setText(cell(row, 6), fmtAgo(f.updated));
        setTitle(cell(row, 6), f.updated);
      });
    byId('failures-table').hidden = failures.length === 0;
    byId('failures-empty').hidden = failures.length > 0;
    const total = `${fmtCount(all.length)}${capped ? '+' : ''}`;
    setText(byId('failures-count'), all.length ? total : '');
    byId('failures-count').classList.toggle('bad', all.length > 0);
    const more = byId('failures-more');
    more.hidden = all.length <= failures.length;
    setText(more, `Showing the first ${fmtCount(failures.length)} of ${total}; "retry" on a card requeues all of a destination's.`);
  }

  async function retry(body, button) {
    button.disabled = true;
    const label = button.textContent;
    setText(button, 'Retrying…');
    try {
      const answer = await api('v1/retry', { method: 'POST', body });
      const n = num(answer.requeued);
      toast(`Requeued ${n} job${n === 1 ? '' : 's'} for ${body.destination}.`, n ? 'ok' : '');
    } catch (e) {
      if (e instanceof AuthError) askForToken(e);
      else toast(`Retry failed: ${e.message}`, 'error');
    } finally {
      button.disabled = false;
      setText(button, label);
      pollNow();
    }
  }

  // ------------------------------------------------------------ journal

  function renderJournal(journal) {
    const entries = (Array.isArray(journal.entries) ? journal.entries.slice() : [])
      .sort((a, b) => num(b.seq) - num(a.seq))
      .slice(0, JOURNAL_ROWS);
    const labels = ['Seq', 'Received', 'Source', 'Repository', 'Tag', 'Digest', 'Action', 'Origin'];
    syncRows(byId('journal-rows'), entries, (e) => String(e.seq),
      () => makeRow('journal-row', labels, ['num', null, 'wide-only', null, null, 'digest wide-only', null, 'wide-only']),
      (row, e) => {
        setText(cell(row, 0), e.seq);
        setText(cell(row, 1), fmtAgo(e.received));
        setTitle(cell(row, 1), e.received);
        setText(cell(row, 2), e.source);
        const repo = cell(row, 3);
        if (repo.dataset.value !== `${e.repository}\n${e.digest}`) {
          repo.dataset.value = `${e.repository}\n${e.digest}`;
          repo.replaceChildren(e.digest ? imageLink(e.repository, e.digest, e.repository) : e.repository || '');
        }
        setText(cell(row, 4), e.tag || '—');
        setText(cell(row, 5), shortDigest(e.digest));
        setTitle(cell(row, 5), e.digest);
        setText(cell(row, 6), e.action);
        cell(row, 6).className = `action-${e.action}`;
        setText(cell(row, 7), e.origin);
      });
    byId('journal-table').hidden = entries.length === 0;
    byId('journal-empty').hidden = entries.length > 0;
  }

  // ------------------------------------------------------------ image search

  let query = null; // {text, repository, tag, digest}

  // "repo:tag", "repo@sha256:hex" or "repo" (tag latest).
  function parseQuery(text) {
    const q = text.trim();
    if (!q) return null;
    const at = q.indexOf('@');
    if (at >= 0) {
      const repository = q.slice(0, at);
      const digest = q.slice(at + 1);
      if (!repository || !/^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(digest)) {
        throw new Error('a digest looks like repository@sha256:…');
      }
      return { text: q, repository, tag: null, digest };
    }
    const slash = q.lastIndexOf('/');
    const colon = q.lastIndexOf(':');
    if (colon > slash) {
      const repository = q.slice(0, colon);
      const tag = q.slice(colon + 1);
      if (!repository || !tag) throw new Error('give repository:tag or repository@sha256:…');
      return { text: q, repository, tag, digest: null };
    }
    return { text: q, repository: q, tag: 'latest', digest: null };
  }

  function queryPath(qy) {
    const params = new URLSearchParams({ repository: qy.repository });
    if (qy.digest) params.set('digest', qy.digest);
    else params.set('tag', qy.tag);
    return `v1/images?${params}`;
  }

  function search(text) {
    const form = byId('search');
    form.elements.q.value = text;
    try {
      query = parseQuery(text);
    } catch (e) {
      query = null;
      showImageMessage(e.message, 'error');
      byId('image-table').hidden = true;
      return;
    }
    try {
      history.replaceState(null, '', query ? `#q=${encodeURIComponent(query.text)}` : location.pathname);
    } catch (e) {
      /* not important */
    }
    if (!query) {
      showImageMessage('State of one image in every destination.', '');
      byId('image-table').hidden = true;
      syncRows(byId('image-rows'), [], () => '', null, null);
      return;
    }
    showImageMessage(`Looking up ${query.text}…`, '');
    pollNow();
  }

  function showImageMessage(text, kind) {
    const p = byId('image-message');
    setText(p, text);
    p.className = kind === 'error' ? 'error-text' : 'muted';
  }

  // Fetches the searched image, if any; a 404 is an answer, not a failure.
  async function fetchImage() {
    const qy = query;
    if (!qy) return null;
    try {
      return { query: qy, image: await api(queryPath(qy)) };
    } catch (e) {
      if (e instanceof ApiError && e.status >= 400 && e.status < 500) return { query: qy, error: e };
      throw e;
    }
  }

  function renderImage(result) {
    if (!result || result.query !== query) return; // the search changed meanwhile
    const table = byId('image-table');
    if (result.error) {
      showImageMessage(result.error.status === 404
        ? `${result.query.text}: not known to Ferry (${result.error.message}).`
        : `${result.query.text}: ${result.error.message}`, 'error');
      table.hidden = true;
      syncRows(byId('image-rows'), [], () => '', null, null);
      return;
    }
    const image = result.image;
    const name = image.digest
      ? `${image.repository}${image.tag ? `:${image.tag}` : ''}@${image.digest}`
      : `${image.repository}:${image.tag || result.query.tag}`;
    const destinations = Array.isArray(image.destinations) ? image.destinations : [];
    showImageMessage(destinations.length ? name : `${name}: no destination replicates it.`, '');
    const labels = ['Destination', 'Repository', 'State', 'Attempts', 'Bytes', 'Updated', 'Completed', 'Last error'];
    syncRows(byId('image-rows'), destinations, (d) => String(d.name),
      (d) => {
        const row = makeRow(`image-dest-${d.name}`, labels, [null, null, null, 'num', 'num', null, null, 'error']);
        cell(row, 2).append(el('span', { class: 'pill', 'data-testid': 'image-state' }));
        return row;
      },
      (row, d) => {
        setText(cell(row, 0), d.name);
        setText(cell(row, 1), d.repository);
        const pill = cell(row, 2).firstChild;
        setText(pill, d.state);
        pill.className = `pill job-${String(d.state).toLowerCase()}`;
        setText(cell(row, 3), fmtCount(d.attempts));
        setText(cell(row, 4), fmtBytes(d.bytes));
        setText(cell(row, 5), fmtAgo(d.updated));
        setTitle(cell(row, 5), d.updated);
        setText(cell(row, 6), d.completed ? fmtAgo(d.completed) : '—');
        setTitle(cell(row, 6), d.completed);
        setText(cell(row, 7), d.last_error || '—');
        cell(row, 7).classList.toggle('none', !d.last_error);
      });
    table.hidden = destinations.length === 0;
  }

  byId('search').addEventListener('submit', (event) => {
    event.preventDefault();
    search(event.target.elements.q.value);
  });

  // ------------------------------------------------------------ polling

  let pollTimer = 0;
  let polling = false;
  let pollAgain = false;

  function pollNow() {
    clearTimeout(pollTimer);
    if (polling) pollAgain = true;
    else poll();
  }

  async function poll() {
    if (waitingForToken) return;
    polling = true;
    clearTimeout(pollTimer);
    let next = POLL_MS;
    try {
      const status = await api('v1/status');
      const lastSeq = num(status.journal && status.journal.last_seq);
      const after = Math.max(0, lastSeq - JOURNAL_ROWS);
      const [failures, journal, image] = await Promise.all([
        api('v1/failures'),
        api(`v1/journal?after=${after}&limit=${JOURNAL_ROWS}`),
        fetchImage(),
      ]);
      const t = Date.parse(status.time);
      serverOffsetMs = Number.isNaN(t) ? 0 : t - Date.now();
      tokenAccepted();
      byId('forget-token').hidden = getToken() === '';
      renderSummary(status);
      const failed = Array.isArray(failures.failures) ? failures.failures : [];
      const counted = countFailures(failed);
      renderDestinations(Array.isArray(status.destinations) ? status.destinations : [], serverNowMs() / 1000, counted);
      renderSources(Array.isArray(status.sources) ? status.sources : []);
      renderRegistries(Array.isArray(status.registries) ? status.registries : []);
      renderCluster(status.cluster);
      renderFailures(failed, counted.capped);
      renderJournal(journal);
      renderImage(image);
      showConnected();
    } catch (e) {
      if (e instanceof AuthError) {
        askForToken(e);
        next = null; // polling resumes when a token is entered
      } else {
        showDisconnected(e);
        if (!(e instanceof ApiError)) console.error(e); // a bug in this page, not the daemon
      }
    } finally {
      polling = false;
      if (next !== null) {
        if (pollAgain) {
          pollAgain = false;
          pollTimer = setTimeout(poll, 0);
        } else {
          pollTimer = setTimeout(poll, next);
        }
      }
    }
  }

  const initial = /^#q=(.*)$/.exec(location.hash);
  if (initial) {
    try {
      search(decodeURIComponent(initial[1]));
    } catch (e) {
      /* a malformed hash is ignored */
    }
  }
  pollNow();
})();
