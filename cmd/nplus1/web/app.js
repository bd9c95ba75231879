// nplus1's page: the findings as they arrive and the queries by fingerprint.
//
// Plain JavaScript, no library and no build step. Every value from the API
// is put in the page as text (textContent, Text nodes, attributes), never
// parsed as HTML: queries and application names are the application's data.
// The Content-Security-Policy of the page allows this file and nothing
// inline. With --http-token the page asks for the token once, keeps it in
// this tab's sessionStorage and sends it as "Authorization: Bearer".
'use strict';

(() => {
  const MAX_FINDINGS = 10000; // what the server keeps (analyzer.DefaultStoreSize)
  const MAX_ROWS = 500; // rows of the list drawn; the filters narrow the rest
  const QUERY_ROWS = 500; // fingerprints asked for at once
  const POLL_MS = 2000; // the queries table's refresh
  const COUNT_POLL_MS = 10000; // the Queries tab's count, while it is not shown
  const TOKEN_KEY = 'nplus1.token';
  const STREAM_MARGIN_S = 30; // reloaded past the time the stream was not connected
  const FIRST_ROWS = 60; // rows drawn at once; the others right after, in chunks
  const CHUNK_ROWS = 120;

  const KIND_LABELS = {
    n_plus_one: 'N+1',
    duplicate_query: 'duplicate query',
    unpaginated: 'unpaginated',
    select_star: 'SELECT *',
  };

  const state = {
    findings: [], // oldest first, as they arrived
    keys: new Set(),
    kinds: new Set(),
    apps: new Set(),
    tables: new Set(),
    selected: '', // the key of the finding shown in the detail
    view: 'findings',
    sort: { key: 'total_ms', order: 'desc' },
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    lastEventID: '',
    rendered: false,
    renderQueued: false,
    renderGen: 0,
    countQueued: false,
    listed: false, // the whole list was loaded once
    pollTimer: 0,
    streamAbort: null,
  };

  const $ = (id) => document.getElementById(id);

  // el builds an element; children are nodes or strings, which become Text
  // nodes: nothing is ever parsed as HTML.
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'onclick') e.addEventListener('click', v);
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c !== null && c !== undefined && c !== false) e.append(c);
    }
    return e;
  }

  // ---- the API -----------------------------------------------------------

  class AuthError extends Error {}

  async function api(path, opts = {}) {
    const headers = new Headers(opts.headers || {});
    if (state.token) headers.set('Authorization', 'Bearer ' + state.token);
    const res = await fetch(path, { ...opts, headers, cache: 'no-store', credentials: 'same-origin' });
    if (res.status === 401) {
      askToken(state.token ? 'That token was refused.' : '');
      throw new AuthError('unauthorized');
    }
    if (!res.ok) {
      const body = (await res.text()).trim();
      throw new Error(`${opts.method || 'GET'} ${path}: ${res.status} ${body}`);
    }
    return res;
  }

  function askToken(message) {
    $('token-form').hidden = false;
    $('token-error').textContent = message;
    setStatus('error', 'needs the token');
    $('token-input').focus();
  }

  function onTokenSubmit(ev) {
    ev.preventDefault();
    state.token = $('token-input').value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    $('token-input').value = '';
    $('token-form').hidden = true;
    start();
  }

  function setStatus(s, text) {
    const st = $('status');
    st.dataset.state = s;
    st.textContent = text || s;
  }

  // ---- findings ----------------------------------------------------------

  function keyOf(f) {
    const c = f.connection || {};
    return [f.kind, f.fingerprint, f.time, f.window_start, f.window_end, c.id, f.trace_id || ''].join('|');
  }

  function appOf(f) {
    return f.application_name || (f.connection && f.connection.application_name) || '';
  }

  function addFinding(f) {
    const k = keyOf(f);
    if (state.keys.has(k)) return;
    state.keys.add(k);
    state.findings.push(f);
    if (state.findings.length > MAX_FINDINGS) {
      state.keys.delete(keyOf(state.findings.shift()));
    }
    if (f.kind && !state.kinds.has(f.kind)) {
      state.kinds.add(f.kind);
      addOption($('f-kind'), f.kind, KIND_LABELS[f.kind]);
    }
    const app = appOf(f);
    if (app && !state.apps.has(app)) {
      state.apps.add(app);
      addOption($('f-app'), app);
    }
    for (const t of f.tables || []) {
      if (!state.tables.has(t)) {
        state.tables.add(t);
        addOption($('f-table'), t);
      }
    }
  }

  function addOption(select, value, label) {
    select.append(el('option', { value }, label || value));
  }

  // loadFindings adds the stored findings, all of them or those of the
  // last sinceSeconds.
  async function loadFindings(sinceSeconds) {
    const res = await api(sinceSeconds ? `/api/findings?since=${Math.ceil(sinceSeconds)}s` : '/api/findings');
    const list = await res.json();
    if (!state.listed) performance.mark('nplus1:findings-parsed');
    for (const f of list) addFinding(f);
    if (!sinceSeconds) state.listed = true;
    render();
  }

  // stream follows GET /api/findings/stream, read with fetch so that the
  // token can be sent; it reconnects with a growing pause. The whole list
  // is loaded at the same time as the stream first connects; once the stream
  // is (re)connected, the findings of the time it was not (and a margin) are
  // loaded again, so that none is lost in between (duplicates are dropped).
  async function stream() {
    if (state.streamAbort) state.streamAbort.abort();
    const abort = new AbortController();
    state.streamAbort = abort;
    const first = state.listed ? Promise.resolve() : loadFindings().catch(() => {});
    let lost = Date.now();
    for (let pause = 1000; !abort.signal.aborted;) {
      try {
        const headers = state.lastEventID ? { 'Last-Event-ID': state.lastEventID } : {};
        const res = await api('/api/findings/stream', { signal: abort.signal, headers });
        setStatus('live');
        pause = 1000;
        await first;
        await loadFindings(state.listed ? (Date.now() - lost) / 1000 + STREAM_MARGIN_S : 0);
        await readEvents(res.body, (event, data) => {
          if (event !== 'finding') return;
          addFinding(JSON.parse(data));
          queueRender();
          queueQueryCount();
        });
      } catch (err) {
        if (err instanceof AuthError || abort.signal.aborted) return;
        console.warn('nplus1: findings stream:', err);
      }
      lost = Date.now();
      setStatus('connecting', 'reconnecting');
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(pause * 2, 10000);
    }
  }

  // readEvents parses a text/event-stream body and calls onEvent(event,
  // data) for each event that has data.
  async function readEvents(body, onEvent) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        let event = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line === '' || line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let v = colon < 0 ? '' : line.slice(colon + 1);
          if (v.startsWith(' ')) v = v.slice(1);
          if (field === 'event') event = v;
          else if (field === 'data') data.push(v);
          else if (field === 'id') state.lastEventID = v;
        }
        if (data.length) onEvent(event, data.join('\n'));
      }
    }
  }

  function filters() {
    return {
      kind: $('f-kind').value,
      severity: $('f-severity').value,
      app: $('f-app').value,
      table: $('f-table').value,
      text: $('f-text').value.trim().toLowerCase(),
    };
  }

  function matches(f, q) {
    if (q.kind && f.kind !== q.kind) return false;
    if (q.severity && f.severity !== q.severity) return false;
    if (q.app && appOf(f) !== q.app) return false;
    if (q.table && !(f.tables || []).includes(q.table)) return false;
    if (q.text) {
      const hay = (f.query + '\n' + (f.source ? f.source.query : '')).toLowerCase();
      if (!hay.includes(q.text)) return false;
    }
    return true;
  }

  // shown returns the findings that pass the filters, newest first.
  function shown() {
    const q = filters();
    const out = [];
    for (let i = state.findings.length - 1; i >= 0; i--) {
      if (matches(state.findings[i], q)) out.push(state.findings[i]);
    }
    return out;
  }

  function queueRender() {
    if (state.renderQueued) return;
    state.renderQueued = true;
    requestAnimationFrame(() => {
      state.renderQueued = false;
      render();
    });
  }

  // render draws the list: the first rows at once, the others in chunks
  // after, unless another render started meanwhile.
  function render() {
    const gen = ++state.renderGen;
    const list = shown();
    const limit = Math.min(list.length, MAX_ROWS);
    const rowsOf = (from, to) => {
      const rows = document.createDocumentFragment();
      for (let i = from; i < to; i++) rows.append(findingRow(list[i]));
      return rows;
    };
    const tbody = $('findings');
    tbody.replaceChildren(rowsOf(0, Math.min(limit, FIRST_ROWS)));
    const rest = (from) => {
      if (gen !== state.renderGen || from >= limit) return;
      const to = Math.min(limit, from + CHUNK_ROWS);
      tbody.append(rowsOf(from, to));
      setTimeout(rest, 0, to);
    };
    setTimeout(rest, 0, FIRST_ROWS);
    $('findings-empty').hidden = list.length > 0;
    $('findings-empty').textContent = state.findings.length
      ? 'No finding matches these filters.'
      : 'No findings yet. They appear here as the proxy reports them.';
    const more = $('findings-more');
    more.hidden = list.length <= MAX_ROWS;
    more.textContent = `Showing the newest ${MAX_ROWS} of ${list.length}: narrow the filters to see the others.`;
    $('count-findings').textContent = String(state.findings.length);
    if (!state.rendered) {
      state.rendered = true;
      performance.mark('nplus1:first-render');
      document.documentElement.dataset.ready = '1';
    }
  }

  const rowFindings = new WeakMap(); // a row of the list → its finding

  function findingRow(f) {
    const k = keyOf(f);
    const tr = el('tr', {
      class: 'finding',
      'data-kind': f.kind,
      'data-fingerprint': f.fingerprint,
      'aria-selected': String(k === state.selected),
    },
    el('td', { class: 'time', title: f.time }, clock(f.time)),
    el('td', {}, severityBadge(f.severity)),
    el('td', { class: 'kind' }, KIND_LABELS[f.kind] || f.kind),
    el('td', { class: 'app' }, appOf(f)),
    el('td', { class: 'query', title: f.query }, f.query),
    el('td', { class: 'num' }, number(f.count)),
    el('td', { class: 'num' }, ms(f.duration_ms)));
    rowFindings.set(tr, f);
    return tr;
  }

  function severityBadge(s) {
    return el('span', { class: 'sev sev-' + (s === 'critical' || s === 'warning' ? s : 'info') }, s || 'info');
  }

  function select(f) {
    state.selected = keyOf(f);
    for (const tr of $('findings').children) {
      const rf = rowFindings.get(tr);
      tr.setAttribute('aria-selected', String(rf !== undefined && keyOf(rf) === state.selected));
    }
    renderDetail(f);
  }

  function closeDetail() {
    state.selected = '';
    $('detail').hidden = true;
    $('detail').replaceChildren();
    for (const tr of $('findings').children) tr.setAttribute('aria-selected', 'false');
  }

  // ---- the detail of one finding -----------------------------------------

  // showPlan fetches the generic plan of f's query (GET
  // /api/fingerprints/{id}/plan) and shows it as text; without one, the
  // server's reason.
  async function showPlan(f) {
    const note = $('explain-note');
    const pre = $('plan');
    try {
      const res = await api(`/api/fingerprints/${encodeURIComponent(f.fingerprint)}/plan`);
      pre.textContent = JSON.stringify(await res.json(), null, 2);
      pre.hidden = false;
    } catch (err) {
      if (err instanceof AuthError) return;
      pre.hidden = true;
      note.textContent = String(err.message || err).replace(/^GET \S+: \d+ /, '');
    }
  }

  function renderDetail(f) {
    const d = $('detail');
    const c = f.connection || {};
    const parts = [
      el('h2', {}, severityBadge(f.severity), KIND_LABELS[f.kind] || f.kind,
        el('button', { type: 'button', class: 'close', title: 'close (Esc)', onclick: closeDetail }, '×')),
      el('p', { class: 'sub' }, `${new Date(f.time).toLocaleString()} · ${appOf(f) || 'no application_name'}`),
      el('h3', {}, f.kind === 'n_plus_one' ? 'The loop' : 'The query'),
      loopView(f),
    ];
    if (f.evidence) parts.push(el('p', { class: 'evidence' }, evidenceText(f)));
    parts.push(el('h3', {}, 'Window'), timelineView(f));
    parts.push(el('h3', {}, 'The fix'), fixView(f.suggestion || ''));
    parts.push(el('h3', {}, 'Where'), metaView(f, c));
    parts.push(el('div', { class: 'actions' },
      el('button', { type: 'button', id: 'copy-finding', onclick: () => copy(JSON.stringify(f, null, 2), 'finding copied as JSON') }, 'Copy as JSON'),
      el('button', { type: 'button', id: 'explain', title: 'the generic plan nplus1 took of this query', onclick: () => showPlan(f) }, 'EXPLAIN'),
      el('span', { class: 'note', id: 'explain-note' },
        'EXPLAIN shows the generic plan nplus1 took of this query through --inspect-url (a connection it may use to ask the database for plans, off by default), once the query ran often.'),
      el('pre', { class: 'plan', id: 'plan', hidden: '' })));
    d.replaceChildren(...parts);
    d.hidden = false;
    d.scrollTop = 0;
  }

  function loopView(f) {
    const repeat = el('div', { class: 'box repeat', id: 'detail-query' },
      el('div', { class: 'label' }, f.kind === 'n_plus_one' ? 'repeated for each row' : 'query'),
      el('div', { class: 'query' }, f.query),
      el('div', { class: 'facts' }, countFacts(f)));
    if (f.kind !== 'n_plus_one') return el('div', { class: 'loop' }, repeat);
    if (!f.source) {
      return el('div', { class: 'loop' },
        el('div', { class: 'box', id: 'detail-source' }, el('div', { class: 'label' }, 'source'),
          el('div', { class: 'facts' }, 'No earlier query in the window returned as many rows: the source is not known.')),
        el('div', { class: 'arrow' }, '↓'), repeat);
    }
    return el('div', { class: 'loop' },
      el('div', { class: 'box', id: 'detail-source' },
        el('div', { class: 'label' }, 'source'),
        el('div', { class: 'query' }, f.source.query),
        el('div', { class: 'facts' }, `returned ${number(f.source.rows)} rows`)),
      el('div', { class: 'arrow' }, '↓ for each row'),
      repeat);
  }

  function countFacts(f) {
    const facts = [`${number(f.count)} executions`];
    if (f.distinct_params) facts.push(`${number(f.distinct_params)} distinct parameter sets`);
    if (f.rows) facts.push(`up to ${number(f.rows)} rows`);
    facts.push(`${ms(f.duration_ms)} ms in all`);
    return facts.join(' · ');
  }

  function evidenceText(f) {
    const e = f.evidence;
    if (e.kind === 'data_flow') {
      let s = `Data flow: ${number(e.matched)} of ${number(e.of)} keys of the loop`;
      if (e.param) s += ` ($${e.param})`;
      s += ' were among the values the source returned';
      if (e.source_column) s += ` in column ${e.source_column}`;
      if (e.source_connection) s += `, on connection ${e.source_connection}`;
      return s + '.';
    }
    return 'Repetition: the same query shape ran once per key on a connection that served nothing else at the time.';
  }

  // timelineView draws the finding's window: its statements in order, a run
  // of one query as one bar, from GET /api/timeline; the source and the
  // repeated query are marked. Without it (the server keeps the last 100
  // windows with findings) it draws the window and the repeated query's
  // share of it.
  function timelineView(f) {
    const wrap = el('div', { class: 'timeline', id: 'timeline' }, el('p', { class: 'sub' }, 'Loading the window…'));
    const c = f.connection || {};
    const q = new URLSearchParams({ connection: String(c.id || 0), window_end: f.window_end });
    if (f.trace_id) q.set('trace', f.trace_id);
    const key = keyOf(f);
    api('/api/timeline?' + q)
      .then((res) => res.json())
      .then((tl) => { if (state.selected === key) drawTimeline(wrap, f, tl); })
      .catch((err) => {
        if (state.selected !== key) return;
        drawSummary(wrap, f);
        if (!(err instanceof AuthError)) {
          wrap.append(el('p', { class: 'sub' }, 'The statements of this window are not kept any more.'));
        }
      });
    return wrap;
  }

  function windowSpan(f) {
    return Math.max(Date.parse(f.window_end) - Date.parse(f.window_start), 0);
  }

  function timelineRow(label, cls, fromMS, toMS, span, right, title) {
    const bar = el('div', { class: 'tl-bar' });
    bar.style.left = span > 0 ? `${Math.min(100, (100 * fromMS) / span)}%` : '0';
    bar.style.width = span > 0 ? `${Math.min(100, (100 * Math.max(toMS - fromMS, 0)) / span)}%` : '100%';
    return el('div', { class: 'tl-row ' + cls, title: title || label },
      el('div', { class: 'tl-label' }, label),
      el('div', { class: 'tl-track' }, bar),
      el('div', { class: 'tl-ms' }, right));
  }

  function timelineAxis(f, span) {
    return el('div', { class: 'tl-axis' },
      el('span', {}, clock(f.window_start)), el('span', {}, `${ms(span)} ms`), el('span', {}, clock(f.window_end)));
  }

  function drawTimeline(wrap, f, tl) {
    const entries = tl.entries || [];
    let span = windowSpan(f);
    for (const e of entries) span = Math.max(span, e.end_ms);
    const source = f.source ? f.source.fingerprint : '';
    const parts = [timelineAxis(f, span)];
    let repeatMS = 0;
    for (const e of entries) {
      let cls = 'other';
      if (e.fingerprint && e.fingerprint === f.fingerprint) {
        cls = 'repeat';
        repeatMS += e.duration_ms;
      } else if (e.fingerprint && e.fingerprint === source) {
        cls = 'source';
      }
      const query = e.fingerprint ? (e.query || `fingerprint ${e.fingerprint}`) : '(not fingerprinted)';
      const label = e.count > 1 ? `${number(e.count)} × ${query}` : query;
      const facts = [`${number(e.count)} executions`, `${ms(e.duration_ms)} ms`, `${number(e.rows)} rows`];
      if (e.errors) facts.push(`${number(e.errors)} failed`);
      parts.push(timelineRow(label, cls, e.start_ms, e.end_ms, span, `${ms(e.duration_ms)} ms`, `${query}\n${facts.join(' · ')}`));
    }
    let note = `${number(tl.statements)} statements in ${ms(span)} ms`;
    if (repeatMS > 0) note += `; ${ms(repeatMS)} ms in the repeated query`;
    note += '.';
    if (tl.dropped) note += ` ${number(tl.dropped)} later statements are not drawn.`;
    if (tl.partial) note += ' The window\'s first statements were no longer kept.';
    parts.push(el('p', { class: 'sub' }, note));
    wrap.replaceChildren(...parts);
  }

  function drawSummary(wrap, f) {
    const span = windowSpan(f);
    wrap.replaceChildren(timelineAxis(f, span),
      timelineRow('window', 'other', 0, span, span, `${ms(span)} ms`),
      timelineRow(`${number(f.count)} × ${f.query}`, 'repeat', Math.max(0, span - f.duration_ms), span, span, `${ms(f.duration_ms)} ms`),
      el('p', { class: 'sub' }, `${ms(f.duration_ms)} ms of ${ms(span)} ms spent in the repeated query.`));
  }

  // fixView shows the suggestion, its `code` spans as code, each with a
  // copy button, and a button that copies the whole fix.
  function fixView(text) {
    const p = el('p', { class: 'fix', id: 'fix' });
    text.split('`').forEach((part, i) => {
      if (i % 2 === 0) {
        p.append(part);
        return;
      }
      p.append(el('code', {}, part),
        el('button', { type: 'button', class: 'copy', title: 'copy this SQL', onclick: () => copy(part, 'SQL copied') }, 'copy'));
    });
    return el('div', {}, p,
      el('button', { type: 'button', id: 'copy-fix', onclick: () => copy(text.replaceAll('`', ''), 'fix copied') }, 'Copy the fix'));
  }

  function metaView(f, c) {
    const dl = el('dl', { class: 'meta', id: 'meta' });
    const add = (k, v) => {
      if (v === undefined || v === null || v === '') return;
      dl.append(el('dt', {}, k), el('dd', {}, String(v)));
    };
    add('application', appOf(f));
    add('connection', c.id);
    add('client', c.client_addr);
    add('user', c.user);
    add('database', c.database);
    add('trace id', f.trace_id);
    for (const [k, v] of Object.entries(f.tags || {})) add(`tag ${k}`, v);
    add('occurrences', f.occurrences);
    add('on connections', f.connections);
    add('tables', (f.tables || []).join(', '));
    add('fingerprint', f.fingerprint);
    if (f.source) add('source fingerprint', f.source.fingerprint);
    add('window', `${f.window_start} → ${f.window_end}`);
    return dl;
  }

  // ---- queries -----------------------------------------------------------

  async function loadQueries() {
    const q = new URLSearchParams({ sort: state.sort.key, order: state.sort.order, limit: String(QUERY_ROWS) });
    const text = $('q-text').value.trim();
    if (text) q.set('q', text);
    let res;
    try {
      res = await api('/api/fingerprints?' + q);
    } catch (err) {
      if (!(err instanceof AuthError)) $('queries-note').textContent = String(err.message || err);
      return;
    }
    const data = await res.json();
    renderQueries(data);
  }

  function renderQueries(data) {
    const fps = data.fingerprints || [];
    const rows = document.createDocumentFragment();
    for (const fp of fps) {
      rows.append(el('tr', { class: 'fingerprint', 'data-fingerprint': fp.fingerprint },
        el('td', { class: 'query', title: `${fp.query}\n\nfingerprint ${fp.fingerprint}` }, fp.query),
        el('td', {}, fp.command),
        el('td', { class: 'num calls' }, number(fp.calls)),
        el('td', { class: 'num' }, ms(fp.total_ms)),
        el('td', { class: 'num' }, ms(fp.mean_ms)),
        el('td', { class: 'num' }, ms(fp.p95_ms)),
        el('td', { class: 'num rows' }, number(fp.rows)),
        el('td', { class: 'num errors' }, number(fp.errors)),
        el('td', { class: 'num findings' }, number(fp.findings))));
    }
    $('queries').replaceChildren(rows);
    $('queries-empty').hidden = fps.length > 0;
    $('count-queries').textContent = String(data.tracked || 0);
    let note = `${number(data.matched)} of ${number(data.tracked)} fingerprints`;
    if (fps.length < data.matched) note += `, the first ${number(fps.length)} shown`;
    if (data.evictions) note += `; ${number(data.evictions)} forgotten (bound reached)`;
    $('queries-note').textContent = note + ' · refreshed every 2 s';
    for (const th of document.querySelectorAll('.queries th[data-sort]')) {
      if (th.dataset.sort === state.sort.key) {
        th.setAttribute('aria-sort', state.sort.order === 'asc' ? 'ascending' : 'descending');
      } else {
        th.removeAttribute('aria-sort');
      }
    }
  }

  function onSort(ev) {
    const key = ev.currentTarget.dataset.sort;
    if (state.sort.key === key) {
      state.sort.order = state.sort.order === 'desc' ? 'asc' : 'desc';
    } else {
      state.sort = { key, order: key === 'query' || key === 'command' ? 'asc' : 'desc' };
    }
    loadQueries();
  }

  // loadQueryCount refreshes the Queries tab's count only.
  async function loadQueryCount() {
    try {
      const res = await api('/api/fingerprints?limit=0');
      $('count-queries').textContent = String((await res.json()).tracked || 0);
    } catch {
      // the next poll tries again
    }
  }

  // queueQueryCount refreshes the Queries tab's count shortly after a new
  // finding, once for a burst of them.
  function queueQueryCount() {
    if (state.countQueued || state.view === 'queries') return;
    state.countQueued = true;
    setTimeout(() => {
      state.countQueued = false;
      loadQueryCount();
    }, 300);
  }

  // schedulePoll refreshes the queries table every POLL_MS while it is
  // shown, and the Queries tab's count every COUNT_POLL_MS otherwise.
  function schedulePoll() {
    clearTimeout(state.pollTimer);
    const queries = state.view === 'queries';
    state.pollTimer = setTimeout(async () => {
      if (!document.hidden) await (queries ? loadQueries() : loadQueryCount());
      schedulePoll();
    }, queries ? POLL_MS : COUNT_POLL_MS);
  }

  // ---- views, copying, formatting ----------------------------------------

  function show(view) {
    state.view = view === 'queries' ? 'queries' : 'findings';
    for (const tab of document.querySelectorAll('.tab')) {
      tab.setAttribute('aria-selected', String(tab.dataset.view === state.view));
    }
    $('view-findings').hidden = state.view !== 'findings';
    $('view-queries').hidden = state.view !== 'queries';
    if (location.hash !== '#' + state.view) history.replaceState(null, '', '#' + state.view);
    if (state.view === 'queries') loadQueries();
    schedulePoll();
  }

  async function copy(text, done) {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const ta = el('textarea', { readonly: '' });
      ta.value = text;
      document.body.append(ta);
      ta.select();
      const ok = document.execCommand('copy');
      ta.remove();
      if (!ok) {
        toast('Could not copy: the browser refused.');
        return;
      }
    }
    toast(done);
  }

  let toastTimer = 0;
  function toast(text) {
    const t = $('toast');
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 1800);
  }

  async function clearFindings() {
    try {
      await api('/api/findings', { method: 'DELETE' });
    } catch (err) {
      if (!(err instanceof AuthError)) toast(String(err.message || err));
      return;
    }
    state.findings = [];
    state.keys.clear();
    closeDetail();
    render();
    toast('Findings cleared');
  }

  function clock(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return '';
    const p = (n, w = 2) => String(n).padStart(w, '0');
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  }

  // number writes a count with thousands separators (1,234). Plain code
  // rather than Intl.NumberFormat, whose first use costs tens of
  // milliseconds of a cold page load.
  function number(n) {
    return grouped(String(Math.round(Number(n || 0))));
  }

  // ms writes milliseconds: 2 decimals under 10, 1 under 1000, else none.
  function ms(v) {
    const n = Number(v || 0);
    const [whole, frac] = n.toFixed(n < 10 ? 2 : n < 1000 ? 1 : 0).split('.');
    return grouped(whole) + (frac ? '.' + frac : '');
  }

  function grouped(digits) {
    const neg = digits.startsWith('-');
    let s = neg ? digits.slice(1) : digits;
    for (let i = s.length - 3; i > 0; i -= 3) s = s.slice(0, i) + ',' + s.slice(i);
    return (neg ? '-' : '') + s;
  }

  // ---- start -------------------------------------------------------------

  function start() {
    stream();
    if (state.view === 'queries') loadQueries();
    else loadQueryCount();
  }

  function init() {
    for (const tab of document.querySelectorAll('.tab')) {
      tab.addEventListener('click', () => show(tab.dataset.view));
    }
    for (const id of ['f-kind', 'f-severity', 'f-app', 'f-table']) $(id).addEventListener('change', render);
    $('f-text').addEventListener('input', render);
    $('q-text').addEventListener('input', loadQueries);
    for (const th of document.querySelectorAll('.queries th[data-sort]')) th.addEventListener('click', onSort);
    $('findings').addEventListener('click', (ev) => {
      const tr = ev.target.closest('tr');
      if (tr && rowFindings.has(tr)) select(rowFindings.get(tr));
    });
    $('clear').addEventListener('click', clearFindings);
    $('copy-all').addEventListener('click', () => copy(JSON.stringify(shown(), null, 2), 'findings copied as JSON'));
    $('token').addEventListener('submit', onTokenSubmit);
    document.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') closeDetail();
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && state.view === 'queries') loadQueries();
    });
    stream(); // first: the findings are the page's critical path
    show(location.hash.slice(1)); // loads the queries when they are shown
    if (state.view !== 'queries') loadQueryCount();
  }

  document.addEventListener('DOMContentLoaded', init);
})();
