'use strict';
// The Phalanx dashboard: one script, no framework, nothing from another origin, no inline
// code (the page's Content-Security-Policy allows scripts from files only).
//
// Every string the API returns (tool messages, suite and rule names, reasons, paths,
// owners) is untrusted: the DOM is built with createElement and textContent only, never
// from HTML text, and no link takes its address from data.
//
// The token goes in an `Authorization: Bearer` header. EventSource cannot send headers,
// so the live streams are read with fetch() and a small Server-Sent Events parser, and
// resumed after a cut with `Last-Event-ID`, as EventSource would.

(() => {
  const API = '/api/v1';
  const TOKEN_KEY = 'phalanx.token';
  const SEVERITIES = ['critical', 'high', 'medium', 'low', 'info'];
  const FINDING_STATES = ['new', 'unchanged', 'suppressed'];
  // RunView.outcomes keys, in the order people read them.
  const OUTCOMES = ['passed', 'failed', 'timed_out', 'error', 'skipped', 'cancelled', 'invalid'];
  const LIVE_STATES = ['queued', 'running'];
  const RECONNECT_MS = [500, 1000, 2000, 5000, 10000];
  const TREND_SIZES = [10, 20, 50];
  const SVG_NS = 'http://www.w3.org/2000/svg';

  // ---- DOM ---------------------------------------------------------------------------

  /** An element with `props` (class, text, on, dataset, properties, attributes). */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    setProps(el, props);
    el.append(...flat(children));
    return el;
  }

  /** An SVG element: every prop is an attribute. */
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) el.setAttribute(k, String(v));
    }
    el.append(...flat(children));
    return el;
  }

  const PROPERTIES = new Set(['value', 'checked', 'disabled', 'selected', 'hidden', 'type']);

  function setProps(el, props) {
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = String(v);
      else if (k === 'on') for (const [name, fn] of Object.entries(v)) el.addEventListener(name, fn);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (PROPERTIES.has(k)) el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }

  /** Children as nodes: strings (and numbers) become text nodes, never markup. */
  function flat(children) {
    const out = [];
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      out.push(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return out;
  }

  const $ = (sel, root) => (root || document).querySelector(sel);

  /** An in-app link: `parts` are encoded, so no data can choose where it goes. */
  function link(parts, ...children) {
    return h('a', { href: route(parts) }, ...children);
  }

  function route(parts) {
    return '#/' + parts.map(encodeURIComponent).join('/');
  }

  function section(title, ...children) {
    return h('section', { class: 'panel' }, h('h2', { text: title }), ...children);
  }

  function notice(err, kind) {
    const text = err instanceof Error ? err.message : String(err);
    return h('p', { class: 'notice ' + (kind || 'error'), role: 'alert', text });
  }

  function badge(state, label) {
    return h('span', { class: 'badge state-' + String(state), text: label || String(state) });
  }

  function severityChips(counts, opts) {
    const chips = h('span', { class: 'chips' });
    let any = false;
    for (const sev of SEVERITIES) {
      const n = counts ? counts[sev] || 0 : 0;
      if (n === 0 && !(opts && opts.zeros)) continue;
      any = true;
      chips.append(h('span', { class: 'chip sev-' + sev, title: sev, text: `${n} ${sev}` }));
    }
    if (!any) chips.append(h('span', { class: 'muted', text: (opts && opts.empty) || 'none' }));
    return chips;
  }

  function table(headings, cls) {
    const body = h('tbody');
    const el = h('table', { class: cls || '' },
      h('thead', null, h('tr', null, headings.map((t) => h('th', { scope: 'col', text: t })))),
      body);
    return { el, body };
  }

  // ---- formats -----------------------------------------------------------------------

  const pad = (n) => String(n).padStart(2, '0');

  function when(iso) {
    if (!iso) return '–';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return '–';
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function duration(secs) {
    if (typeof secs !== 'number' || !Number.isFinite(secs)) return '–';
    if (secs < 10) return `${secs.toFixed(1)} s`;
    if (secs < 120) return `${Math.round(secs)} s`;
    const m = Math.floor(secs / 60);
    if (m < 120) return `${m} min ${Math.round(secs - m * 60)} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  const total = (counts) => SEVERITIES.reduce((n, sev) => n + ((counts && counts[sev]) || 0), 0);

  /** What a run came to, as one word: live state, or the verdict of its exit code. */
  function verdict(run) {
    if (LIVE_STATES.includes(run.state)) return run.state;
    if (run.state === 'interrupted') return 'interrupted';
    // A run cancelled through the API exits 3 (not trustworthy) with no suite in error:
    // its suites say it was cancelled.
    const outcomes = run.outcomes || {};
    const cancelled = outcomes.cancelled > 0 && !(outcomes.error > 0);
    switch (run.exit_code) {
      case 0: return 'passed';
      case 1: return 'failed';
      case 2: return 'config-error';
      case 3: return cancelled ? 'cancelled' : 'error';
      default: return 'finished';
    }
  }

  const VERDICT_WORDS = {
    'config-error': 'configuration error',
    error: 'error: not trustworthy',
  };

  const verdictBadge = (run) => badge(verdict(run), VERDICT_WORDS[verdict(run)]);

  const outcomeWord = (o) => String(o).replace('_', '-');

  // ---- the token ---------------------------------------------------------------------

  const token = {
    get: () => sessionStorage.getItem(TOKEN_KEY),
    set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
    clear: () => sessionStorage.removeItem(TOKEN_KEY),
  };

  // ---- the API -----------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  /** The problem document's `detail`, or the status line when there is none. */
  async function problemOf(res) {
    let detail = `${res.status} ${res.statusText}`;
    try {
      const doc = await res.json();
      if (doc && typeof doc.detail === 'string') detail = doc.detail;
    } catch (_) { /* not a problem document: the status says enough */ }
    return new ApiError(res.status, detail);
  }

  function headers(extra) {
    return Object.assign({ Authorization: 'Bearer ' + (token.get() || '') }, extra);
  }

  /** `path` under /api/v1 as JSON (or the Response itself with `raw`). */
  async function api(path, opts) {
    const o = opts || {};
    const init = {
      method: o.method || 'GET',
      headers: headers({ Accept: o.raw ? '*/*' : 'application/json' }),
      signal: o.signal,
      cache: 'no-store',
      credentials: 'omit',
    };
    if (o.json !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(o.json);
    }
    const res = await fetch(API + path, init);
    if (res.status === 401) signedOut('The server did not accept the token; enter another.');
    if (!res.ok) throw await problemOf(res);
    return o.raw ? res : res.json();
  }

  const enc = encodeURIComponent;

  function query(params) {
    const q = Object.entries(params)
      .filter(([, v]) => v !== undefined && v !== null && v !== '')
      .map(([k, v]) => `${enc(k)}=${enc(v)}`);
    return q.length ? '?' + q.join('&') : '';
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }

  /**
   * The run as recorded once it has ended: its last event may come a moment before its
   * record, so it is read again until it is no longer queued or running (for a while).
   */
  async function recorded(runId, signal) {
    let run = null;
    for (let tries = 0; tries < 120 && !signal.aborted; tries += 1) {
      try {
        run = await api('/runs/' + enc(runId), { signal });
        if (!LIVE_STATES.includes(run.state)) return run;
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) throw e;
      }
      await sleep(250, signal);
    }
    return run;
  }

  // ---- Server-Sent Events over fetch -------------------------------------------------

  /**
   * The SSE parser of the HTML standard: lines end in CR, LF or CRLF (also across
   * chunks), `:` starts a comment, a blank line dispatches, `id` persists until changed.
   */
  function sseParser(dispatch) {
    let buf = '';
    let data = [];
    let event = '';
    let lastId = null;
    let retry = null;
    function line(l) {
      if (l === '') {
        if (data.length) dispatch({ id: lastId, event: event || 'message', data: data.join('\n') });
        data = [];
        event = '';
        return;
      }
      if (l[0] === ':') return;
      const i = l.indexOf(':');
      const field = i < 0 ? l : l.slice(0, i);
      let value = i < 0 ? '' : l.slice(i + 1);
      if (value[0] === ' ') value = value.slice(1);
      if (field === 'data') data.push(value);
      else if (field === 'event') event = value;
      else if (field === 'id' && !value.includes('\0')) lastId = value;
      else if (field === 'retry' && /^\d+$/.test(value)) retry = Number(value);
    }
    return {
      push(chunk) {
        buf += chunk;
        for (;;) {
          const m = /\r\n|\r|\n/.exec(buf);
          // A CR at the very end may be the first half of a CRLF: wait for more.
          if (!m || (m[0] === '\r' && m.index === buf.length - 1)) return;
          line(buf.slice(0, m.index));
          buf = buf.slice(m.index + m[0].length);
        }
      },
      lastId: () => lastId,
      retry: () => retry,
    };
  }

  const liveIndicator = {
    streams: new Map(),
    set(key, state) {
      if (state === null) this.streams.delete(key);
      else this.streams.set(key, state);
      const states = [...this.streams.values()];
      const el = $('#live');
      if (!el) return;
      el.dataset.state = states.length === 0 ? 'off'
        : states.includes('reconnecting') ? 'reconnecting' : 'open';
      el.textContent = { off: 'not live', open: 'live', reconnecting: 'reconnecting' }[el.dataset.state];
    },
  };

  /**
   * Follows the event stream at `path` until `signal` aborts, or until the server ends
   * it and `done()` says nothing more will come (a run that has finished). Reconnects
   * after a cut or a lag, with `Last-Event-ID`, so no event is missed or repeated.
   */
  async function follow(path, { signal, onEvent, done, onFail }) {
    const key = {};
    let lastId = null;
    let failures = 0;
    try {
      while (!signal.aborted) {
        let parser = null;
        try {
          const extra = { Accept: 'text/event-stream' };
          if (lastId !== null) extra['Last-Event-ID'] = lastId;
          const res = await fetch(API + path, { headers: headers(extra), signal, cache: 'no-store', credentials: 'omit' });
          if (res.status === 401) return signedOut('The server did not accept the token; enter another.');
          if (!res.ok) throw await problemOf(res);
          liveIndicator.set(key, 'open');
          failures = 0;
          parser = sseParser((ev) => {
            if (ev.id !== null) lastId = ev.id;
            let doc = null;
            try { doc = JSON.parse(ev.data); } catch (_) { return; }
            if (doc && typeof doc === 'object') onEvent(doc, ev.event);
          });
          const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          for (;;) {
            const { value, done: end } = await reader.read();
            if (end) break;
            parser.push(value);
          }
        } catch (e) {
          if (signal.aborted) return;
          // A refusal that a retry cannot change (no such run, not this token's) ends it.
          if (e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 429) {
            if (onFail) onFail(e);
            return;
          }
          failures += 1;
        }
        if (signal.aborted || (done && done())) return;
        liveIndicator.set(key, 'reconnecting');
        const hinted = parser && parser.retry();
        await sleep(hinted || RECONNECT_MS[Math.min(failures, RECONNECT_MS.length - 1)], signal);
      }
    } finally {
      liveIndicator.set(key, null);
    }
  }

  /** One stream shared by the parts of a view that listen to it. */
  function hub(path, signal) {
    const listeners = [];
    follow(path, { signal, onEvent: (doc) => listeners.forEach((fn) => fn(doc)) });
    return { on: (fn) => listeners.push(fn) };
  }

  // ---- routing -----------------------------------------------------------------------

  let viewControl = null;

  function render() {
    if (viewControl) viewControl.abort();
    viewControl = new AbortController();
    const signal = viewControl.signal;
    const view = $('#view');
    view.replaceChildren();
    $('#signout').hidden = !token.get();
    if (!token.get()) return loginView(view);
    let parts;
    try {
      parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
    } catch (_) {
      parts = [];
    }
    if (parts[0] === 'runs' && parts[1]) return runView(view, parts[1], signal);
    if (parts[0] === 'projects' && parts[1]) return projectView(view, parts[1], signal);
    return homeView(view, signal);
  }

  let signOutMessage = null;

  function signedOut(message) {
    token.clear();
    signOutMessage = message || null;
    render();
  }

  // ---- sign in -----------------------------------------------------------------------

  function loginView(view) {
    document.title = 'Phalanx · sign in';
    const input = h('input', {
      id: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true,
      placeholder: 'the token phalanx token new printed',
    });
    const status = h('p', { class: 'muted', text: 'The token is kept in this tab only (sessionStorage) and sent as a header.' });
    const form = h('form', { id: 'login', class: 'panel login' },
      h('h2', { text: 'Sign in' }),
      signOutMessage ? notice(signOutMessage, 'warn') : null,
      h('label', { for: 'token', text: 'API token' }),
      input,
      h('button', { type: 'submit', text: 'Open the dashboard' }),
      status);
    signOutMessage = null;
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const t = input.value.trim();
      if (!t) return;
      token.set(t);
      render();
    });
    view.append(form);
    input.focus();
  }

  // ---- home: projects and runs -------------------------------------------------------

  function homeView(view, signal) {
    document.title = 'Phalanx';
    const projects = h('div', { class: 'cards', id: 'projects' }, h('p', { class: 'muted', text: 'Loading…' }));
    const runs = h('div', { id: 'runs' });
    view.append(section('Projects', projects), section('Runs', runs));
    const events = hub('/events', signal);
    loadProjects(projects, events, signal);
    runList(runs, { events, signal });
  }

  async function projectList(signal) {
    const doc = await api('/projects', { signal });
    return Array.isArray(doc) ? doc : (doc.projects || []);
  }

  async function loadProjects(el, events, signal) {
    let list;
    try {
      list = await projectList(signal);
    } catch (e) {
      if (!signal.aborted) el.replaceChildren(notice(e));
      return;
    }
    el.replaceChildren();
    if (!list.length) el.append(h('p', { class: 'muted', text: 'This token sees no project.' }));
    for (const p of list) {
      const card = h('article', { class: 'card', dataset: { project: p.name } });
      el.append(card);
      fillCard(card, p, signal);
    }
    // A run that starts is shown on its project's card; one that ends changes its verdict
    // and trend.
    events.on((ev) => {
      if (ev.event !== 'run-finished' && ev.event !== 'run-started') return;
      const card = [...el.children].find((c) => c.dataset.project === ev.project);
      const p = list.find((x) => x.name === ev.project);
      if (!card || !p) return;
      const ready = ev.event === 'run-finished' ? recorded(ev.run_id, signal) : Promise.resolve();
      ready.then(() => fillCard(card, p, signal), () => {});
    });
  }

  async function fillCard(card, project, signal) {
    let page;
    try {
      page = await api('/runs' + query({ project: project.name, limit: 10 }), { signal });
    } catch (e) {
      if (!signal.aborted) card.replaceChildren(h('h3', null, link(['projects', project.name], project.name)), notice(e));
      return;
    }
    const runs = page.runs || [];
    // The verdict is the latest finished run's; one under way is said beside it.
    const finished = runs.filter((r) => !LIVE_STATES.includes(r.state));
    const last = finished[0];
    const body = [h('h3', null, link(['projects', project.name], project.name))];
    if (!last) {
      body.push(h('p', { class: 'muted', text: 'No finished run yet.' }));
    } else {
      body.push(
        h('p', null, verdictBadge(last), ' ', link(['runs', last.run_id], when(last.started_at))),
        h('p', null, severityChips(last.findings, { empty: 'no findings' })),
        h('div', { class: 'trend' }, sparkline(finished), trendWords(finished)));
    }
    const live = runs.filter((r) => LIVE_STATES.includes(r.state));
    if (live.length) {
      body.push(h('p', null, live.map((r) => [link(['runs', r.run_id], verdictBadge(r)), ' '])));
    }
    card.replaceChildren(...body);
  }

  /** Findings now against the run before: "3 more than the run before". */
  function trendWords(finished) {
    if (finished.length < 2) return h('span', { class: 'muted', text: 'first run' });
    const diff = total(finished[0].findings) - total(finished[1].findings);
    if (diff === 0) return h('span', { class: 'trend-same', text: 'same findings as the run before' });
    return h('span', {
      class: diff > 0 ? 'trend-up' : 'trend-down',
      text: `${Math.abs(diff)} ${diff > 0 ? 'more' : 'fewer'} than the run before`,
    });
  }

  function sparkline(runs) {
    const points = runs.slice().reverse().map((r) => total(r.findings));
    const w = 120;
    const ht = 28;
    const max = Math.max(1, ...points);
    const step = points.length > 1 ? w / (points.length - 1) : 0;
    const xy = points.map((v, i) => `${(i * step).toFixed(1)},${(ht - 2 - (v / max) * (ht - 4)).toFixed(1)}`);
    return s('svg', { class: 'spark', viewBox: `-2 0 ${w + 4} ${ht}`, width: w + 4, height: ht, role: 'img', 'aria-label': 'findings over the last runs' },
      s('title', null, `findings over the last ${points.length} runs: ${points.join(', ')}`),
      points.length > 1 ? s('polyline', { points: xy.join(' '), class: 'spark-line' }) : null,
      xy.length ? s('circle', { cx: xy[xy.length - 1].split(',')[0], cy: xy[xy.length - 1].split(',')[1], r: 2.5, class: 'spark-dot' }) : null);
  }

  // ---- a live list of runs ----------------------------------------------------------

  /**
   * Runs newest first, a page at a time, kept up to date by the server-wide stream: a run
   * that starts appears, its suites' outcomes count up as they finish, and it is read
   * again when it ends.
   */
  function runList(el, { project, events, signal }) {
    const t = table(['Run', 'Project', 'Verdict', 'Started', 'Took', 'Suites', 'Findings', 'Commit'], 'runs');
    const more = h('button', { type: 'button', class: 'link', text: 'Older runs', hidden: true });
    const status = h('div');
    el.replaceChildren(status, t.el, more);
    const rows = new Map();
    let cursor = null;

    function put(run, atTop) {
      const row = runRow(run);
      const known = rows.get(run.run_id);
      if (known) known.row.replaceWith(row);
      else if (atTop) t.body.prepend(row);
      else t.body.append(row);
      rows.set(run.run_id, { run, row });
    }

    async function page() {
      more.disabled = true;
      try {
        const doc = await api('/runs' + query({ project, limit: 25, cursor }), { signal });
        for (const run of doc.runs || []) if (!rows.has(run.run_id)) put(run, false);
        cursor = doc.next_cursor || null;
        more.hidden = !cursor;
        t.el.hidden = !rows.size;
        if (!rows.size) status.replaceChildren(h('p', { class: 'muted', text: 'No run yet.' }));
      } catch (e) {
        if (!signal.aborted) status.replaceChildren(notice(e));
      } finally {
        more.disabled = false;
      }
    }
    more.addEventListener('click', page);

    function show(run) {
      status.replaceChildren();
      t.el.hidden = false;
      const known = rows.get(run.run_id);
      put(LIVE_STATES.includes(run.state) ? liveCounts(run, known && known.run) : run, !known);
    }

    const pending = new Set();
    function reread(runId, ended) {
      const key = runId + (ended ? ':end' : '');
      if (pending.has(key)) return;
      pending.add(key);
      const read = ended ? recorded(runId, signal) : api('/runs/' + enc(runId), { signal });
      read.then((run) => { if (run) show(run); }, () => { /* the next event tries again */ })
        .finally(() => pending.delete(key));
    }

    events.on((ev) => {
      if (typeof ev.run_id !== 'string' || (project && ev.project !== project)) return;
      const known = rows.get(ev.run_id);
      if (ev.event === 'run-finished') return reread(ev.run_id, true);
      if (!known || ev.event === 'run-started') return reread(ev.run_id, false);
      if (ev.event === 'suite-finished' && typeof ev.outcome === 'string') {
        const run = known.run;
        const key = ev.outcome.replace('-', '_');
        run.outcomes = Object.assign({}, run.outcomes, { [key]: ((run.outcomes || {})[key] || 0) + 1 });
        if (ev.findings) {
          run.findings = Object.assign({}, run.findings);
          for (const sev of SEVERITIES) run.findings[sev] = (run.findings[sev] || 0) + (ev.findings[sev] || 0);
        }
        put(run, false);
      }
    });
    page();
  }

  /**
   * A live run's counts so far: its suites' outcomes from their states, and the findings
   * counted from the events (a live run's record has none yet).
   */
  function liveCounts(run, before) {
    const out = Object.assign({}, run);
    if (Array.isArray(run.suites)) {
      out.outcomes = {};
      for (const sv of run.suites) {
        const key = String(sv.state).replace('-', '_');
        if (OUTCOMES.includes(key)) out.outcomes[key] = (out.outcomes[key] || 0) + 1;
      }
    }
    if (before && total(before.findings) > total(run.findings)) out.findings = before.findings;
    return out;
  }

  function runRow(run) {
    const git = run.git && run.git.commit
      ? `${(run.git.branch || '')}${run.git.branch ? ' @ ' : ''}${run.git.commit.slice(0, 10)}${run.git.dirty ? ' (dirty)' : ''}`
      : '–';
    return h('tr', { dataset: { run: run.run_id, state: run.state } },
      h('td', null, link(['runs', run.run_id], h('code', { text: run.run_id }))),
      h('td', null, run.project ? link(['projects', run.project], run.project) : h('span', { class: 'muted', text: 'CLI' })),
      h('td', null, verdictBadge(run)),
      h('td', { text: when(run.started_at) }),
      h('td', { text: duration(run.duration) }),
      h('td', null, outcomeChips(run.outcomes)),
      h('td', null, severityChips(run.findings)),
      h('td', { class: 'mono', text: git }));
  }

  function outcomeChips(outcomes) {
    const chips = h('span', { class: 'chips' });
    for (const o of OUTCOMES) {
      const n = outcomes ? outcomes[o] || 0 : 0;
      if (n) chips.append(h('span', { class: 'chip state-' + outcomeWord(o), text: `${n} ${outcomeWord(o)}` }));
    }
    if (!chips.childNodes.length) chips.append(h('span', { class: 'muted', text: '–' }));
    return chips;
  }

  // ---- a project: trends, trigger, runs ---------------------------------------------

  function projectView(view, name, signal) {
    document.title = `Phalanx · ${name}`;
    const head = h('div', { class: 'head' }, h('h1', { text: name }), h('p', { class: 'muted', text: 'Loading…' }));
    const chart = h('div', { id: 'trend' });
    const trigger = h('div', { id: 'trigger-panel' });
    const runs = h('div', { id: 'runs' });
    view.append(head,
      section('Findings over the last runs', chart),
      section('Run a targeted scan', trigger),
      section('Runs', runs));
    const events = hub('/events', signal);
    let size = TREND_SIZES[1];
    const refreshChart = () => trendPanel(chart, name, size, (n) => { size = n; refreshChart(); }, signal);
    refreshChart();
    events.on((ev) => {
      if (ev.event === 'run-finished' && ev.project === name) recorded(ev.run_id, signal).then(refreshChart, () => {});
    });
    runList(runs, { project: name, events, signal });
    projectList(signal).then((list) => {
      const p = list.find((x) => x.name === name);
      if (!p) {
        head.replaceChildren(h('h1', { text: name }), notice('This token sees no such project.'));
        trigger.replaceChildren();
        return;
      }
      head.replaceChildren(h('h1', { text: name }), projectFacts(p));
      trigger.replaceChildren(triggerForm(p, signal));
    }, (e) => { if (!signal.aborted) head.append(notice(e)); });
  }

  function projectFacts(p) {
    const facts = h('dl', { class: 'facts' });
    const add = (k, v) => { if (v !== undefined && v !== null && v !== '') facts.append(h('dt', { text: k }), h('dd', { text: v })); };
    const sel = selectionOf(p);
    add('Default selection', [sel.suites.length ? 'suites ' + sel.suites.join(', ') : '', sel.tags.length ? 'tags ' + sel.tags.join(', ') : '']
      .filter(Boolean).join('; ') || 'every suite');
    add('Fails on', p.fail_on);
    add('Gate', p.gate);
    add('Baseline', p.baseline);
    add('Queued', p.queued);
    add('Running', p.running);
    return facts;
  }

  /** The project's default selection, wherever the server puts it. */
  function selectionOf(p) {
    const d = p.default_selection || p.defaults || p.selection || {};
    const list = (v) => (Array.isArray(v) ? v.map(String) : []);
    return {
      suites: list(d.suites || p.default_suites),
      tags: list(d.tags || p.default_tags),
    };
  }

  /** The suites a project's folder holds, as `{name, tags, description}`. */
  function suitesOf(p) {
    const list = Array.isArray(p.suites) ? p.suites : [];
    return list.map((x) => (typeof x === 'string' ? { name: x, tags: [], description: '' } : {
      name: String(x.name), tags: Array.isArray(x.tags) ? x.tags.map(String) : [], description: x.description ? String(x.description) : '',
    }));
  }

  async function trendPanel(el, project, size, resize, signal) {
    let runs;
    try {
      const doc = await api('/runs' + query({ project, limit: size }), { signal });
      runs = (doc.runs || []).filter((r) => !LIVE_STATES.includes(r.state));
    } catch (e) {
      if (!signal.aborted) el.replaceChildren(notice(e));
      return;
    }
    const picker = h('select', { id: 'trend-size', 'aria-label': 'runs shown' },
      TREND_SIZES.map((n) => h('option', { value: String(n), selected: n === size, text: `last ${n} runs` })));
    picker.addEventListener('change', () => resize(Number(picker.value)));
    el.replaceChildren(h('div', { class: 'toolbar' }, picker, legend()),
      runs.length ? trendChart(runs.slice().reverse()) : h('p', { class: 'muted', text: 'No finished run yet.' }));
  }

  function legend() {
    return h('span', { class: 'legend' },
      SEVERITIES.map((sev) => h('span', { class: 'key' }, h('span', { class: 'swatch sev-' + sev }), sev)));
  }

  /** Unsuppressed findings of each run by severity, oldest left: stacked bars. */
  function trendChart(runs) {
    const w = 760;
    const ht = 240;
    const left = 36;
    const bottom = 28;
    const top = 10;
    const plot = ht - bottom - top;
    const max = Math.max(1, ...runs.map((r) => total(r.findings)));
    const step = (w - left - 8) / runs.length;
    const bar = Math.max(3, Math.min(40, step * 0.7));
    const y = (v) => top + plot - (v / max) * plot;
    const chart = s('svg', { class: 'chart', viewBox: `0 0 ${w} ${ht}`, role: 'img', 'aria-label': 'findings by severity over the last runs' });
    for (const v of new Set([0, Math.round(max / 2), max])) {
      chart.append(s('line', { x1: left, x2: w - 4, y1: y(v), y2: y(v), class: 'grid' }),
        s('text', { x: left - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, String(v)));
    }
    const labelEvery = Math.ceil(runs.length / 10);
    runs.forEach((run, i) => {
      const x = left + i * step + (step - bar) / 2;
      const g = s('g', { class: 'bar', tabindex: 0, 'data-run': run.run_id });
      g.append(s('title', null, `${run.run_id}\n${when(run.started_at)}\n` +
        SEVERITIES.map((sev) => `${sev}: ${(run.findings || {})[sev] || 0}`).join('\n') +
        `\nsuppressed: ${run.suppressed || 0}`));
      let acc = 0;
      for (const sev of SEVERITIES) {
        const n = (run.findings || {})[sev] || 0;
        if (!n) continue;
        g.append(s('rect', { x, y: y(acc + n), width: bar, height: Math.max(0.5, y(acc) - y(acc + n)), class: 'sev-' + sev }));
        acc += n;
      }
      if (!acc) g.append(s('rect', { x, y: y(0) - 1, width: bar, height: 1, class: 'zero' }));
      // Something to click even for a run without findings.
      g.append(s('rect', { x: x - 1, y: top, width: bar + 2, height: plot, class: 'hit' }));
      g.addEventListener('click', () => { location.hash = route(['runs', run.run_id]); });
      chart.append(g);
      if (i % labelEvery === 0) {
        const d = new Date(run.started_at);
        const label = Number.isNaN(d.getTime()) ? '' : `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
        chart.append(s('text', { x: x + bar / 2, y: ht - 10, class: 'axis', 'text-anchor': 'middle' }, label));
      }
    });
    return chart;
  }

  /** Suites and tags of the project to run now (the runner role may; others are told). */
  function triggerForm(p, signal) {
    const suites = suitesOf(p);
    const tags = [...new Set(suites.flatMap((x) => x.tags))].sort();
    const status = h('div', { class: 'status' });
    const suiteBoxes = h('fieldset', { class: 'choices' }, h('legend', { text: 'Suites' }),
      suites.length ? suites.map((x) => h('label', { title: x.description || null },
        h('input', { type: 'checkbox', name: 'suite', value: x.name }), ' ', x.name)) :
        h('span', { class: 'muted', text: Array.isArray(p.suites) ? 'no suite' : (p.suites_error || 'the server does not list them') }));
    const tagBoxes = h('fieldset', { class: 'choices' }, h('legend', { text: 'Tags' }),
      tags.length ? tags.map((t) => h('label', null, h('input', { type: 'checkbox', name: 'tag', value: t }), ' ', t)) :
        h('span', { class: 'muted', text: 'no tag' }));
    const failOn = h('select', { name: 'fail_on', id: 'fail-on' },
      h('option', { value: '', text: 'the suites\u2019 own' }),
      SEVERITIES.map((sev) => h('option', { value: sev, text: sev })));
    const submit = h('button', { type: 'submit', text: 'Start the scan' });
    const form = h('form', { id: 'trigger', class: 'trigger' },
      h('p', { class: 'muted', text: 'Nothing ticked runs the project\u2019s default selection. Needs a runner token.' }),
      suiteBoxes, tagBoxes,
      h('label', { class: 'inline' }, 'Fail on ', failOn),
      submit, status);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const picked = (n) => [...form.querySelectorAll(`input[name="${n}"]:checked`)].map((i) => i.value);
      const body = { suites: picked('suite'), tags: picked('tag') };
      if (failOn.value) body.fail_on = failOn.value;
      submit.disabled = true;
      status.replaceChildren(h('p', { class: 'muted', text: 'Asking the server…' }));
      try {
        const made = await api(`/projects/${enc(p.name)}/runs`, { method: 'POST', json: body, signal });
        const id = made.run_id || (made.run && made.run.run_id);
        if (typeof id !== 'string') throw new Error('the server did not say which run it started');
        justTriggered.add(id);
        location.hash = route(['runs', id]);
      } catch (err) {
        if (!signal.aborted) status.replaceChildren(notice(err));
      } finally {
        submit.disabled = false;
      }
    });
    return form;
  }

  const justTriggered = new Set();

  // ---- one run -----------------------------------------------------------------------

  const SUITE_WORDS = {
    queued: 'queued', building: 'building image', running: 'running', retrying: 'retrying',
  };

  function runView(view, runId, signal) {
    document.title = `Phalanx · run ${runId}`;
    const head = h('div', { class: 'head' }, h('h1', null, 'Run ', h('code', { text: runId })));
    const facts = h('div', { id: 'run-facts' }, h('p', { class: 'muted', text: 'Loading…' }));
    const stopping = h('div', { id: 'stopping' });
    const suites = table(['Suite', 'State', 'Took', 'Attempts', 'Findings', 'Why'], 'suites');
    suites.el.id = 'suites';
    const outcome = h('div', { id: 'outcome' });
    const findings = h('div', { id: 'findings-panel' });
    const suppressions = h('div', { id: 'suppressions' });
    const reports = h('div', { id: 'reports' });
    view.append(head, facts, stopping, section('Suites', suites.el, outcome));
    const after = [section('Findings', findings), section('Suppressions', suppressions), section('Reports', reports)];
    const run = { id: runId, detail: null, suites: new Map(), finished: false };

    function suiteRow(name) {
      let entry = run.suites.get(name);
      if (entry) return entry;
      const row = h('tr', { dataset: { suite: name, state: 'queued' } });
      suites.body.append(row);
      entry = { name, state: 'queued', row };
      run.suites.set(name, entry);
      return entry;
    }

    function paint(entry) {
      const st = entry.state;
      entry.row.dataset.state = st;
      entry.row.replaceChildren(
        h('td', { text: entry.name }),
        h('td', { class: 'suite-state' }, badge(st, SUITE_WORDS[st] || outcomeWord(st))),
        h('td', { text: duration(entry.duration) }),
        h('td', { text: entry.attempts ? String(entry.attempts) + (entry.flaky ? ' (flaky)' : '') : '–' }),
        h('td', null, suiteFindings(entry)),
        h('td', { class: 'reason', text: entry.reason || '' }));
    }

    function suiteFindings(entry) {
      if (entry.findings) return severityChips(entry.findings);
      if (entry.hasFindings && typeof entry.blocking === 'number') {
        return h('span', { text: `${entry.blocking} at or above ${entry.failOn || 'its threshold'}` });
      }
      return h('span', { class: 'muted', text: entry.hasFindings ? 'listed below' : '–' });
    }

    function setSuite(name, fields) {
      const entry = suiteRow(name);
      Object.assign(entry, fields);
      paint(entry);
    }

    function onEvent(ev) {
      switch (ev.event) {
        case 'run-started':
          for (const name of ev.suites || []) if (!run.suites.has(name)) setSuite(name, {});
          for (const bad of ev.invalid_suites || []) setSuite(String(bad.name), { state: 'error', reason: `invalid suite file ${bad.file || ''}`.trim() });
          break;
        case 'image-build-started':
          for (const name of ev.suites || []) setSuite(name, { state: 'building' });
          break;
        case 'image-build-finished':
          for (const name of ev.suites || []) if (suiteRow(name).state === 'building') setSuite(name, { state: 'queued' });
          break;
        case 'suite-started':
          setSuite(ev.suite, { state: 'running', attempts: ev.attempt, reason: '' });
          break;
        case 'suite-retrying':
          setSuite(ev.suite, { state: 'retrying', attempts: ev.attempt, reason: ev.reason || '' });
          break;
        case 'suite-finished':
          setSuite(ev.suite, {
            state: ev.outcome, duration: ev.duration, attempts: ev.attempts, flaky: ev.flaky,
            findings: ev.findings || null, reason: ev.reason || '',
          });
          break;
        case 'stopping':
          stopping.replaceChildren(notice(`Stopping: ${ev.reason || 'asked to'}`, 'warn'));
          break;
        case 'run-finished':
          run.finished = true;
          finish();
          break;
        default:
          break;
      }
    }

    function showDetail(detail) {
      run.detail = detail;
      facts.replaceChildren(runFacts(detail, signal));
      for (const sv of detail.suites || []) {
        // The counts per severity come with the live events only; a stored suite says
        // how many findings blocked it.
        setSuite(sv.name, {
          state: sv.state, duration: sv.duration, attempts: sv.attempts, flaky: sv.flaky,
          reason: sv.reason || '', hasFindings: sv.has_findings, blocking: sv.blocking, failOn: sv.fail_on,
        });
      }
      outcome.replaceChildren(h('p', null, 'Outcomes: ', outcomeChips(detail.outcomes), ' · findings: ',
        severityChips(detail.findings), detail.suppressed ? ` · ${detail.suppressed} suppressed` : ''));
    }

    async function load() {
      for (let tries = 0; ; tries += 1) {
        try {
          return await api('/runs/' + enc(runId), { signal });
        } catch (e) {
          // A run just triggered may not be readable for a moment.
          if (!(e instanceof ApiError && e.status === 404 && justTriggered.has(runId) && tries < 20)) throw e;
          await sleep(250, signal);
        }
      }
    }

    let finishing = false;
    async function finish() {
      if (finishing) return;
      finishing = true;
      stopping.replaceChildren();
      let detail = null;
      try {
        detail = await recorded(runId, signal);
      } catch (e) {
        if (!signal.aborted) facts.replaceChildren(notice(e));
        return;
      }
      if (signal.aborted || !detail) return;
      showDetail(detail);
      view.append(...after);
      findingsPanel(findings, detail, signal);
      suppressionsPanel(suppressions, runId, signal);
      reports.replaceChildren(reportButtons(detail, signal));
    }

    load().then((detail) => {
      showDetail(detail);
      if (LIVE_STATES.includes(detail.state)) {
        follow(`/runs/${enc(runId)}/events`, {
          signal, onEvent, done: () => run.finished,
          onFail: (e) => stopping.replaceChildren(notice(e)),
        }).then(() => { if (!signal.aborted && !run.finished) finish(); });
      } else {
        finish();
      }
    }, (e) => { if (!signal.aborted) facts.replaceChildren(notice(e)); });
  }

  function runFacts(run, signal) {
    const dl = h('dl', { class: 'facts' });
    const add = (k, ...v) => dl.append(h('dt', { text: k }), h('dd', null, ...v));
    add('Verdict', verdictBadge(run), run.interrupted ? ` (${run.interrupted})` : '');
    if (run.project) add('Project', link(['projects', run.project], run.project));
    add('Started', when(run.started_at));
    if (run.finished_at) add('Finished', when(run.finished_at));
    add('Took', duration(run.duration));
    if (typeof run.exit_code === 'number') add('Exit code', String(run.exit_code));
    const sel = run.selection || {};
    const picked = [(sel.suites || []).length ? 'suites ' + sel.suites.join(', ') : '', (sel.tags || []).length ? 'tags ' + sel.tags.join(', ') : '']
      .filter(Boolean).join('; ');
    add('Selection', picked || 'default');
    if (run.partition) add('Shard', run.partition);
    if (run.git && run.git.commit) {
      add('Commit', h('code', { text: run.git.commit.slice(0, 12) }), run.git.branch ? ` on ${run.git.branch}` : '', run.git.dirty ? ' (dirty)' : '');
    }
    if (run.baseline) {
      add('Baseline', run.baseline.source, ` · ${run.baseline.new} new, ${run.baseline.unchanged} unchanged, ${run.baseline.absent} fixed`);
    }
    if (LIVE_STATES.includes(run.state)) {
      const cancel = h('button', { type: 'button', class: 'danger', id: 'cancel', text: 'Cancel the run' });
      const said = h('span');
      cancel.addEventListener('click', async () => {
        cancel.disabled = true;
        try {
          await api(`/runs/${enc(run.run_id)}/cancel`, { method: 'POST', signal });
          said.replaceChildren(' ', h('span', { class: 'muted', text: 'stopping…' }));
        } catch (e) {
          cancel.disabled = false;
          said.replaceChildren(' ', notice(e));
        }
      });
      add('', cancel, said);
    }
    return dl;
  }

  // ---- findings ----------------------------------------------------------------------

  function findingsPanel(el, run, signal) {
    const filter = { severity: new Set(), suite: '', state: '' };
    const sevBoxes = h('fieldset', { class: 'choices' }, h('legend', { text: 'Severity' }),
      SEVERITIES.map((sev) => {
        const box = h('input', { type: 'checkbox', name: 'severity', value: sev });
        box.addEventListener('change', () => { if (box.checked) filter.severity.add(sev); else filter.severity.delete(sev); reload(); });
        return h('label', null, box, ' ', sev);
      }));
    const suite = h('select', { name: 'suite', id: 'filter-suite', 'aria-label': 'suite' },
      h('option', { value: '', text: 'every suite' }),
      (run.suites || []).filter((x) => x.has_findings).map((x) => h('option', { value: x.name, text: x.name })));
    const state = h('select', { name: 'state', id: 'filter-state', 'aria-label': 'state' },
      h('option', { value: '', text: 'every state' }),
      FINDING_STATES.map((x) => h('option', { value: x, text: x === 'new' && run.baseline ? 'new since the baseline' : x })));
    suite.addEventListener('change', () => { filter.suite = suite.value; reload(); });
    state.addEventListener('change', () => { filter.state = state.value; reload(); });
    const tools = [sevBoxes, h('label', { class: 'inline' }, 'Suite ', suite), h('label', { class: 'inline' }, 'State ', state)];
    if (run.baseline) {
      const onlyNew = h('button', { type: 'button', class: 'link', text: `Only the ${run.baseline.new} new since the baseline` });
      onlyNew.addEventListener('click', () => { state.value = 'new'; filter.state = 'new'; reload(); });
      tools.push(onlyNew);
    }
    const t = table(['Severity', 'State', 'Suite', 'Rule', 'Where', 'Message'], 'findings');
    t.el.id = 'findings';
    const more = h('button', { type: 'button', class: 'link', text: 'More findings', hidden: true });
    const count = h('p', { class: 'muted' });
    el.replaceChildren(h('div', { class: 'toolbar filters' }, tools), count, t.el, more);
    let cursor = null;
    let generation = 0;
    let shown = 0;

    async function load(fresh) {
      const mine = fresh ? ++generation : generation;
      if (fresh) { cursor = null; shown = 0; }
      more.disabled = true;
      try {
        const doc = await api(`/runs/${enc(run.run_id)}/findings` + query({
          severity: [...filter.severity].join(','), suite: filter.suite, state: filter.state, limit: 200, cursor,
        }), { signal });
        if (mine !== generation) return;
        if (fresh) t.body.replaceChildren();
        for (const f of doc.findings || []) t.body.append(findingRow(f));
        shown += (doc.findings || []).length;
        cursor = doc.next_cursor || null;
        more.hidden = !cursor;
        count.textContent = shown === 0 ? 'No finding matches.' : `${shown}${cursor ? '+' : ''} finding${shown === 1 ? '' : 's'}`;
      } catch (e) {
        if (!signal.aborted && mine === generation) count.replaceChildren(notice(e));
      } finally {
        more.disabled = false;
      }
    }
    const reload = () => load(true);
    more.addEventListener('click', () => load(false));
    reload();
  }

  function findingRow(f) {
    const where = f.path ? `${f.path}${f.line ? ':' + f.line : ''}` : '–';
    return h('tr', { class: 'finding', dataset: { severity: String(f.severity), state: String(f.state) } },
      h('td', null, h('span', { class: 'chip sev-' + String(f.severity), text: String(f.severity) })),
      h('td', null, badge('finding-' + String(f.state), String(f.state))),
      h('td', { text: f.suite }),
      h('td', null, h('code', { text: f.rule }), h('div', { class: 'muted small', text: f.tool })),
      h('td', { class: 'mono where', text: where }),
      h('td', null,
        h('div', { class: 'message', text: f.message }),
        f.justification ? h('div', { class: 'muted small', text: 'suppressed: ' + f.justification }) : null,
        h('div', { class: 'muted small mono', text: f.fingerprint })));
  }

  // ---- suppressions: from the run's run.json ----------------------------------------

  const SUPPRESSION_STATES = ['expired', 'expiring', 'stale', 'applied'];

  async function suppressionsPanel(el, runId, signal) {
    el.replaceChildren(h('p', { class: 'muted', text: 'Loading…' }));
    let doc;
    try {
      const res = await api(`/runs/${enc(runId)}/reports/run.json`, { raw: true, signal });
      doc = await res.json();
    } catch (e) {
      if (!signal.aborted) el.replaceChildren(notice(e.status === 404 ? 'This run\u2019s run.json is not on the server.' : e, 'warn'));
      return;
    }
    const sup = doc && doc.suppressions;
    if (!sup) {
      el.replaceChildren(h('p', { class: 'muted', text: 'The run had no suppressions file.' }));
      return;
    }
    // An expiring entry is also applied or stale: show each entry once, by its line.
    const byLine = new Map();
    for (const st of SUPPRESSION_STATES) {
      for (const entry of sup[st] || []) if (!byLine.has(entry.line)) byLine.set(entry.line, Object.assign({ shown: st }, entry));
    }
    const t = table(['State', 'Matches', 'Owner', 'Expires', 'Reason', 'Ticket', 'Findings'], 'suppressions');
    for (const e of byLine.values()) {
      const scope = ['suite', 'rule', 'fingerprint', 'path'].filter((k) => e[k]).map((k) => `${k} ${e[k]}`).join(', ');
      t.body.append(h('tr', { dataset: { state: e.shown } },
        h('td', null, badge('sup-' + e.shown, e.shown)),
        h('td', { class: 'mono', text: scope || '–' }),
        h('td', { text: e.owner }),
        h('td', { text: e.expires }),
        h('td', { text: e.reason }),
        h('td', { text: e.ticket || '–' }),
        h('td', { text: String(e.findings || 0) })));
    }
    el.replaceChildren(
      h('p', null, `${sup.suppressed_findings || 0} finding(s) suppressed by the file, ` +
        `${sup.in_source_findings || 0} in the source (nosec and the like); judged on ${sup.today}.`),
      byLine.size ? t.el : h('p', { class: 'muted', text: 'No entry applied, expired or stale.' }));
  }

  // ---- reports -----------------------------------------------------------------------

  function reportButtons(run, signal) {
    const names = Object.keys((run.links && run.links.reports) || {});
    if (!names.length) return h('p', { class: 'muted', text: 'No report yet.' });
    const out = h('div', { class: 'toolbar' });
    for (const name of names) {
      const b = h('button', { type: 'button', text: name });
      b.addEventListener('click', () => download(run.run_id, name, signal).catch((e) => out.append(notice(e))));
      out.append(b);
    }
    return out;
  }

  /** A report needs the token, so it is fetched and handed to the browser as a file. */
  async function download(runId, name, signal) {
    const res = await api(`/runs/${enc(runId)}/reports/${enc(name)}`, { raw: true, signal });
    const url = URL.createObjectURL(await res.blob());
    const a = h('a', { href: url, download: `${runId}-${name}` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  // ---- start -------------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    $('#signout').addEventListener('click', () => signedOut(null));
    window.addEventListener('hashchange', render);
    render();
  });

  // For the browser test: the stream reader and its parser on their own.
  window.phalanxDashboard = Object.freeze({ sseParser, follow });
})();
