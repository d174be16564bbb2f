// flyhook operator console: one ES module, no framework, no build step.
//
// Everything the API returns is untrusted (task names, inputs, errors and key names are chosen
// by senders or operators), so the DOM is built with createElement/createElementNS and
// textContent only, never innerHTML. The CSP forbids inline scripts, styles and handlers, so
// listeners are attached with addEventListener and looks come from classes in app.css.

// ---- Constants --------------------------------------------------------------------------------

const STATUSES = ['queued', 'starting', 'running', 'succeeded', 'failed', 'aborted', 'timed_out',
  'ignored', 'rejected', 'dead_lettered', 'skipped', 'coalesced'];
const TERMINAL = new Set(['succeeded', 'failed', 'aborted', 'timed_out', 'ignored', 'rejected',
  'dead_lettered', 'skipped', 'coalesced']);
const REPLAYABLE = new Set(['failed', 'dead_lettered', 'aborted', 'timed_out']);
const CANCELLABLE = new Set(['queued', 'starting', 'running']);

// Shortcuts in the single status select; a combination from the URL gets its own option.
const STATUS_GROUPS = [
  ['queued,starting,running', 'in progress (queued, starting, running)'],
  ['failed,dead_lettered', 'failed or dead-lettered'],
  ['failed,dead_lettered,aborted,timed_out', 'replayable (failed, dead-lettered, aborted, timed out)'],
];

const SERIES = [
  { key: 'accepted', css: 'accepted', label: 'Accepted' },
  { key: 'started', css: 'started', label: 'Started' },
  { key: 'failed', css: 'failed', label: 'Failed' },
  { key: 'dead_lettered', css: 'dead-lettered', label: 'Dead-lettered' },
];

const NAV = [
  { name: 'overview', label: 'Overview', unrestrictedOnly: false },
  { name: 'dispatches', label: 'Dispatches', unrestrictedOnly: false },
  { name: 'dead-letters', label: 'Dead letters', unrestrictedOnly: true },
  { name: 'sources', label: 'Sources', unrestrictedOnly: true },
  { name: 'keys', label: 'Keys', unrestrictedOnly: true },
  { name: 'audit', label: 'Audit', unrestrictedOnly: true },
];

const DISPATCH_FIELDS = [
  { name: 'status', label: 'Status', type: 'status' },
  { name: 'project', label: 'Project' },
  { name: 'domain', label: 'Domain' },
  { name: 'task', label: 'Task name', placeholder: 'hello.main' },
  { name: 'source', label: 'Source' },
  { name: 'route', label: 'Route' },
  { name: 'since', label: 'Received since', type: 'datetime-local' },
  { name: 'until', label: 'Received until', type: 'datetime-local' },
  { name: 'q', label: 'Search', type: 'search', placeholder: 'dispatch id, delivery id or wh-…' },
];

const AUDIT_FIELDS = [
  { name: 'principal', label: 'Principal', placeholder: 'key name or source:<name>' },
  { name: 'route', label: 'Route' },
  { name: 'outcome', label: 'Outcome', placeholder: 'accepted, ok or an error code' },
  { name: 'dispatch_id', label: 'Dispatch id' },
  { name: 'request_id', label: 'Request id' },
  { name: 'since', label: 'Since', type: 'datetime-local' },
  { name: 'until', label: 'Until', type: 'datetime-local' },
];

// The filters a bulk replay understands (the search box `q` is not one of them).
const BULK_FILTERS = ['status', 'project', 'domain', 'task', 'source', 'route', 'since', 'until'];

const state = {
  session: null,
  generation: 0, // bumps on every page change; async work of an older page sees it and stops
  timers: new Set(),
  errorFromLoad: false, // a load error clears itself when a later load succeeds
  path: null, // the route path on screen, to keep notices while a page reloads itself
};

// ---- DOM helpers ------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const pageEl = () => $('page');
const SVG_NS = 'http://www.w3.org/2000/svg';

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else {
      node.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

// Strings become text nodes (Node.append never parses markup); null/false children are skipped.
function appendAll(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
}

/** Creates an HTML element with attributes, listeners (`onclick`…) and children. */
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  appendAll(node, children);
  return node;
}

/** Creates an SVG element: same as h() in the SVG namespace. */
function s(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  appendAll(node, children);
  return node;
}

/**
 * Replaces a container's content without stealing focus: polling re-renders, and the element
 * the user was on (known by its id or data-focus key) is focused again in the new content.
 */
function replaceKeepFocus(container, nodes) {
  const active = document.activeElement;
  const inside = active && active !== container && container.contains(active);
  const id = inside ? active.id : '';
  const key = inside && !id ? active.getAttribute('data-focus') : null;
  container.replaceChildren();
  appendAll(container, [nodes]);
  const again = id ? $(id) : key ? container.querySelector(`[data-focus="${CSS.escape(key)}"]`) : null;
  if (again && container.contains(again)) again.focus({ preventScroll: true });
}

const cssToken = (value) => String(value ?? 'unknown').replace(/[^a-z0-9_-]/gi, '');
const num = (value) => (Number.isFinite(value) ? value : 0);
const dash = () => h('span', { class: 'muted' }, '—');
const text = (value) => (value === null || value === undefined || value === '' ? dash() : String(value));
const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
const dispatchHref = (id) => `#/dispatch/${encodeURIComponent(id)}`;
const shortId = (id) => (id.length > 14 ? `${id.slice(0, 12)}…` : id);

function badge(status, id) {
  return h('span', { class: `badge status-${cssToken(status)}`, id }, status ?? 'unknown');
}

function taskLabel(task) {
  if (!task) return '—';
  if (typeof task === 'string') return task;
  return `${task.project}/${task.domain}/${task.name}:${task.version}`;
}

/** An external link, only for http(s) URLs (a `javascript:` URL from the API must not be clickable). */
function isSafeUrl(url) {
  return typeof url === 'string' && /^https?:\/\//i.test(url);
}

/** A link to a dispatch page; shows a shortened id with the full one as tooltip. */
function idLink(id, cls = 'id-link') {
  return h('a', { href: dispatchHref(id), class: cls, title: id, 'data-focus': `${cls}:${id}` },
    h('code', {}, shortId(id)));
}

function jsonBlock(id, value) {
  const body = value === null || value === undefined ? '(none)' : JSON.stringify(value, null, 2);
  return h('pre', { id, class: 'json' }, body);
}

/** A scrollable table wrapper: focusable so keyboard users can scroll it. */
function tableWrap(label, table) {
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': label }, table);
}

function headRow(...labels) {
  return h('thead', {}, h('tr', {}, labels.map((l) => h('th', { scope: 'col' }, l))));
}

function emptyRow(columns, message) {
  return h('tr', { class: 'empty' }, h('td', { colspan: String(columns) }, message));
}

// ---- Times: the user's locale on screen, the full ISO string in the title ---------------------

const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const clockFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

function timeEl(iso) {
  if (!iso) return dash();
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return h('time', { datetime: iso, title: iso }, dateTimeFormat.format(date));
}

function clock(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : clockFormat.format(date);
}

const pad2 = (n) => String(n).padStart(2, '0');

/** RFC 3339 → the local "YYYY-MM-DDTHH:MM" a datetime-local input shows. */
function toLocalInput(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}T${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

/** A datetime-local value (local time, no offset) → RFC 3339 in UTC. */
function fromLocalInput(value) {
  if (!value) return '';
  const d = new Date(value); // a date-time without offset is read as local time
  return Number.isNaN(d.getTime()) ? '' : d.toISOString().replace(/\.000Z$/, 'Z');
}

// ---- API --------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.message || `Request failed (HTTP ${status})`);
    this.status = status;
    this.problem = problem;
    this.handled = false; // true when api() already reacted (a 401 shows the sign-in view)
  }
}

async function readBody(res) {
  if (res.status === 204) return null;
  const body = await res.text();
  if (!body) return null;
  try {
    return JSON.parse(body);
  } catch {
    return res.ok ? body : { title: body.slice(0, 300) };
  }
}

/**
 * Calls the API with the session cookie; non-GET requests carry the CSRF token. Errors are
 * problem+json and become ApiError; a 401 means the session ended and shows the sign-in view.
 */
async function api(method, path, body) {
  const headers = { Accept: 'application/json, application/problem+json' };
  if (method !== 'GET' && state.session) headers['X-CSRF-Token'] = state.session.csrf_token;
  const init = { method, credentials: 'same-origin', headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, { title: 'The server could not be reached.' });
  }
  const data = await readBody(res);
  if (res.ok) return data;
  const problem = data && typeof data === 'object' ? data : { message: res.statusText };
  const error = new ApiError(res.status, problem);
  // A wrong key on the sign-in form is an ordinary error shown next to the form.
  const signingIn = method === 'POST' && path === '/ui/session';
  if (res.status === 401 && !signingIn) {
    error.handled = true;
    sessionEnded();
  }
  throw error;
}

/** Builds `?a=1&b=2` from the non-empty values of an object. */
function query(values) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) {
    if (value !== '' && value !== null && value !== undefined) params.set(key, String(value));
  }
  const qs = params.toString();
  return qs ? `?${qs}` : '';
}

// ---- Alert and notice regions -----------------------------------------------------------------

function showError(error, fromLoad = false) {
  if (error?.handled) return;
  const message = error instanceof Error ? error.message : String(error);
  $('error').replaceChildren(h('p', {}, message));
  state.errorFromLoad = fromLoad;
}

function clearError(onlyLoadErrors = false) {
  if (onlyLoadErrors && !state.errorFromLoad) return;
  $('error').replaceChildren();
  state.errorFromLoad = false;
}

function notify(...content) {
  $('notice').replaceChildren(h('p', {}, content));
}

function clearNotice() {
  $('notice').replaceChildren();
}

/**
 * A confirm step shown in `area` before a bulk action: a group `#<group>` holding the question,
 * an optional note, and `#<buttons>-yes` / `#<buttons>-no`. Either button closes the step and
 * gives focus back to `opener`; yes runs `action` first.
 */
function confirmStep({ area, opener, group, buttons, question, note = null, yesLabel, canConfirm, action }) {
  const yes = h('button', { id: `${buttons}-yes`, type: 'button', class: 'danger', disabled: !canConfirm }, yesLabel);
  const no = h('button', { id: `${buttons}-no`, type: 'button' }, 'Cancel');
  const close = () => {
    area.replaceChildren();
    opener.focus();
  };
  no.addEventListener('click', close);
  yes.addEventListener('click', () => withButton(yes, async () => {
    await action();
    close();
  }));
  area.replaceChildren(h('div', { id: group, class: 'confirm', role: 'group', 'aria-labelledby': `${group}-question` },
    h('p', { id: `${group}-question` }, ...question),
    note ? h('p', { class: 'muted small' }, note) : null,
    h('div', { class: 'actions' }, yes, no)));
  (canConfirm ? yes : no).focus();
}

// ---- Page lifecycle: each page gets a context that knows whether it is still on screen --------

function leavePage() {
  state.generation += 1;
  for (const timer of state.timers) clearTimeout(timer);
  state.timers.clear();
}

function pageContext() {
  const generation = state.generation;
  const ctx = {
    alive: () => generation === state.generation && state.session !== null,
    /**
     * Calls fn every `ms` after the previous call finished (requests never overlap). Stops when
     * the page goes away, on stop(), or when fn returns false. Skips ticks in a hidden tab.
     */
    poll(ms, fn) {
      let handle = null;
      let stopped = false;
      const schedule = () => {
        handle = setTimeout(tick, ms);
        state.timers.add(handle);
      };
      const tick = async () => {
        state.timers.delete(handle);
        if (stopped || !ctx.alive()) return;
        let again = true;
        if (!document.hidden) {
          try {
            again = (await fn()) !== false;
          } catch (error) {
            if (ctx.alive()) showError(error, true);
          }
        }
        if (again && !stopped && ctx.alive()) schedule();
      };
      schedule();
      return {
        stop() {
          stopped = true;
          clearTimeout(handle);
          state.timers.delete(handle);
        },
      };
    },
  };
  return ctx;
}

/** data-page tells the browser tests (and anyone else) that the page shows its first data. */
function pageReady(ctx, name) {
  if (ctx.alive()) pageEl().setAttribute('data-page', name);
}

function beginPage(title) {
  document.title = `${title} · flyhook`;
  const page = pageEl();
  page.removeAttribute('data-page');
  page.replaceChildren(h('p', { class: 'loading' }, 'Loading…'));
}

/**
 * Runs a page's first load. On failure the alert says why, and `where` (a page's data area, so
 * its forms stay usable) or else the whole page, if it has no data yet, says nothing loaded.
 */
async function firstLoad(ctx, load, where = null) {
  try {
    return { ok: true, value: await load() };
  } catch (error) {
    if (ctx.alive()) {
      showError(error, true);
      const note = h('p', { class: 'muted' }, 'The data could not be loaded.');
      if (where) where.replaceChildren(note);
      else if (!pageEl().hasAttribute('data-page')) pageEl().replaceChildren(note);
    }
    return { ok: false };
  }
}

/** Runs a button's action with the button disabled; errors go to the alert region. */
async function withButton(button, action) {
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
  }
}

// ---- Routing and the top bar ------------------------------------------------------------------

const PAGES = {
  overview: { title: 'Overview', render: overviewPage },
  dispatches: { title: 'Dispatches', render: dispatchesPage },
  dispatch: { title: 'Dispatch', render: dispatchPage },
  'dead-letters': { title: 'Dead letters', render: deadLettersPage },
  sources: { title: 'Sources', render: sourcesPage },
  keys: { title: 'Keys', render: keysPage },
  audit: { title: 'Audit', render: auditPage },
};

function parseHash() {
  const raw = location.hash.startsWith('#/') ? location.hash.slice(2) : '';
  const mark = raw.indexOf('?');
  const path = mark < 0 ? raw : raw.slice(0, mark);
  const params = new URLSearchParams(mark < 0 ? '' : raw.slice(mark + 1));
  const [name, ...rest] = path.split('/');
  let arg = rest.join('/');
  try {
    arg = decodeURIComponent(arg);
  } catch {
    // keep it as typed; the server will say it is not an id
  }
  return { name: name || 'overview', arg, params, path: path || 'overview' };
}

function route() {
  if (!state.session) return;
  const target = parseHash();
  leavePage();
  if (state.path !== target.path) clearNotice();
  state.path = target.path;
  clearError();
  markNav(target.name === 'dispatch' ? 'dispatches' : target.name);
  const page = PAGES[target.name];
  if (!page) {
    beginPage('Not found');
    pageEl().replaceChildren(h('h1', {}, 'Page not found'),
      h('p', {}, h('a', { href: '#/overview' }, 'Go to the overview')));
    return;
  }
  beginPage(page.title);
  page.render(pageContext(), target);
}

function renderTopBar() {
  const session = state.session;
  $('who').hidden = !session;
  $('signed-in-as').textContent = session ? session.key_name : '';
  if (!session) {
    $('nav').replaceChildren();
    return;
  }
  const items = NAV.filter((item) => session.unrestricted || !item.unrestrictedOnly)
    .map((item) => h('li', {}, h('a', { href: `#/${item.name}`, 'data-nav': item.name }, item.label)));
  $('nav').replaceChildren(h('ul', {}, items));
}

function markNav(name) {
  for (const link of $('nav').querySelectorAll('a[data-nav]')) {
    if (link.dataset.nav === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

// ---- Session: sign in, sign out, session end --------------------------------------------------

function startSession(session) {
  state.session = session;
  state.path = null;
  renderTopBar();
  clearError();
  if (!location.hash.startsWith('#/')) history.replaceState(null, '', '#/overview');
  route();
}

function sessionEnded() {
  const hadSession = state.session !== null;
  if (!hadSession && $('sign-in')) return; // several polls can fail at once
  showSignIn(hadSession ? 'Your session has ended. Sign in again.' : '');
}

function showSignIn(message) {
  leavePage();
  state.session = null;
  renderTopBar();
  clearNotice();
  document.title = 'Sign in · flyhook';
  const input = h('input', { id: 'api-key', name: 'key', type: 'password', autocomplete: 'off',
    spellcheck: 'false', required: true });
  const submit = h('button', { id: 'sign-in-submit', type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { id: 'sign-in', class: 'card sign-in' },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'Sign in with a flyhook API key. The console keeps a session cookie; the key is not stored.'),
    h('div', { class: 'field' }, h('label', { for: 'api-key' }, 'API key'), input),
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    withButton(submit, async () => {
      try {
        const session = await api('POST', '/ui/session', { key: input.value });
        input.value = '';
        startSession(session);
        pageEl().focus({ preventScroll: true }); // the form is gone: put focus on the new page
      } catch (error) {
        input.select();
        input.focus();
        throw error;
      }
    });
  });
  const page = pageEl();
  page.replaceChildren(form);
  page.setAttribute('data-page', 'sign-in');
  if (message) showError(message);
  else clearError();
  input.focus();
}

async function signOut() {
  try {
    await api('DELETE', '/ui/session');
  } catch (error) {
    showError(error); // a 401 already showed the sign-in view; anything else keeps the session
    return;
  }
  showSignIn('');
}

// ---- Overview ---------------------------------------------------------------------------------

async function overviewPage(ctx) {
  const load = async () => {
    const data = await api('GET', '/overview');
    if (!ctx.alive()) return;
    replaceKeepFocus(pageEl(), renderOverview(data));
    clearError(true);
    pageReady(ctx, 'overview');
  };
  await firstLoad(ctx, load);
  ctx.poll(10_000, load);
}

function renderOverview(data) {
  const queue = data.queue;
  const inFlight = data.in_flight || {};
  return [
    h('div', { class: 'page-head' }, h('h1', {}, 'Overview'),
      h('p', { class: 'muted' }, 'Updated ', timeEl(data.generated_at), ' · refreshes every 10 s')),
    h('div', { class: 'grid-2' },
      windowSection('hour', 'Last hour', data.hour, data.totals?.hour),
      windowSection('day', 'Last 24 hours', data.day, data.totals?.day)),
    h('section', { class: 'card' }, h('h2', {}, 'Work in progress'),
      h('div', { class: 'tiles' },
        tile('Starting', num(inFlight.starting), 'in-flight-starting'),
        tile('Running', num(inFlight.running), 'in-flight-running'),
        tile('Queue: ready', queue ? num(queue.ready) : '—', 'queue-ready'),
        tile('Dead letters', queue ? num(queue.dead_letters) : '—', 'queue-dead-letters',
          queue && state.session?.unrestricted ? '#/dead-letters' : null)),
      queue ? null : h('p', { class: 'muted' },
        'Queue depth is not available (the key is restricted or the broker is unreachable).')),
    data.rejections ? rejectionsSection(data.rejections) : null,
  ];
}

function windowSection(name, title, span, totals) {
  const buckets = span?.buckets || [];
  const secs = span?.bucket_secs || 0;
  const size = secs >= 3600 ? 'hourly buckets' : `${Math.round(secs / 60)}-minute buckets`;
  return h('section', { class: 'card' },
    h('h2', {}, title),
    h('div', { class: 'tiles' }, SERIES.map((series) =>
      tile(series.label, num(totals?.[series.key]), `overview-${series.css}-${name}`))),
    h('figure', { class: 'chart-figure' },
      h('div', { class: 'chart-wrap' }, barChart(`chart-${name}`, title, buckets, totals)),
      h('figcaption', {}, legend(), h('span', { class: 'muted' }, `${size}, local time`))));
}

function tile(label, value, id, href) {
  const shown = h('span', { class: 'tile-value', id }, String(value));
  return h('div', { class: 'tile' }, h('span', { class: 'tile-label' }, label),
    href ? h('a', { href, id: `${id}-link`, class: 'tile-link' }, shown) : shown);
}

function legend() {
  return h('ul', { class: 'legend' }, SERIES.map((series) =>
    h('li', {}, h('span', { class: `swatch s-${series.css}`, 'aria-hidden': 'true' }), series.label)));
}

/** The smallest 1/2/2.5/5 × 10^n step so that 4 steps cover the maximum (whole numbers only). */
function axisStep(max) {
  const rough = Math.max(1, max / 4);
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((candidate) => candidate >= rough);
  return Math.max(1, Math.ceil(step));
}

/** Grouped bars (four series per bucket) as SVG; the aria-label carries the totals. */
function barChart(id, title, buckets, totals) {
  const width = 640;
  const height = 220;
  const margin = { top: 10, right: 10, bottom: 28, left: 40 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const highest = Math.max(0, ...buckets.flatMap((b) => SERIES.map((x) => num(b[x.key]))));
  const step = axisStep(highest);
  const top = step * 4;
  const y = (value) => +(margin.top + plotH - (value / top) * plotH).toFixed(2);
  const slot = plotW / Math.max(1, buckets.length);
  const barW = (slot * 0.8) / SERIES.length;
  const labelEvery = Math.max(1, Math.ceil(buckets.length / 8)); // at most ~8 time labels

  const summary = `${title}: ${SERIES.map((x) => `${num(totals?.[x.key])} ${x.label.toLowerCase()}`).join(', ')}`;
  const svg = s('svg', { id, class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': summary }, s('title', {}, summary));

  for (let value = 0; value <= top; value += step) {
    svg.append(
      s('line', { class: 'grid', x1: margin.left, x2: width - margin.right, y1: y(value), y2: y(value) }),
      s('text', { class: 'axis-label', x: margin.left - 6, y: y(value) + 4, 'text-anchor': 'end' }, String(value)));
  }
  buckets.forEach((bucket, i) => {
    const left = margin.left + i * slot + slot * 0.1;
    SERIES.forEach((series, j) => {
      const value = num(bucket[series.key]);
      const barH = +((value / top) * plotH).toFixed(2);
      svg.append(s('rect', { class: `bar s-${series.css}`, x: +(left + j * barW).toFixed(2),
        y: +(margin.top + plotH - barH).toFixed(2), width: +barW.toFixed(2), height: barH },
      s('title', {}, `${clock(bucket.start)} · ${series.label}: ${value}`)));
    });
    if (i % labelEvery === 0) {
      svg.append(s('text', { class: 'axis-label', x: +(margin.left + i * slot + slot / 2).toFixed(2),
        y: height - 8, 'text-anchor': 'middle' }, clock(bucket.start)));
    }
  });
  svg.append(s('line', { class: 'axis', x1: margin.left, x2: width - margin.right,
    y1: margin.top + plotH, y2: margin.top + plotH }));
  return svg;
}

// Each reason with its count over the last hour and day, most frequent first (as served).
function rejectionsSection(rejections) {
  const rows = rejections.map(({ reason, hour, day }) =>
    h('tr', {}, h('td', {}, h('code', {}, reason)), h('td', { class: 'num' }, String(num(hour))),
      h('td', { class: 'num' }, String(num(day)))));
  const table = h('table', { id: 'rejections' }, headRow('Reason', 'Last hour', 'Last 24 hours'),
    h('tbody', {}, rows.length ? rows : emptyRow(3, 'No rejected requests in the last 24 hours.')));
  return h('section', { class: 'card' }, h('h2', {}, 'Rejections by reason'), tableWrap('Rejections', table));
}

// ---- Filtered lists (Dispatches and Audit): filters in the URL hash, a table, an "Older" pager ----

function readParams(params, fields) {
  const values = {};
  for (const { name } of fields) {
    const value = (params.get(name) || '').trim();
    if (value) values[name] = value;
  }
  return values;
}

function readForm(form, fields) {
  const data = new FormData(form);
  const values = {};
  for (const { name, type } of fields) {
    let value = String(data.get(name) ?? '').trim();
    if (type === 'datetime-local') value = fromLocalInput(value);
    if (value) values[name] = value;
  }
  return values;
}

function statusSelect(id, value) {
  const known = new Set(['', ...STATUS_GROUPS.map(([v]) => v), ...STATUSES]);
  const option = (v, label) => h('option', { value: v, selected: v === (value || '') }, label);
  return h('select', { id, name: 'status' },
    option('', 'any'),
    value && !known.has(value) ? option(value, value) : null,
    h('optgroup', { label: 'Groups' }, STATUS_GROUPS.map(([v, label]) => option(v, label))),
    h('optgroup', { label: 'One status' }, STATUSES.map((v) => option(v, v))));
}

function filterForm(prefix, formId, applyId, fields, values) {
  const controls = fields.map((field) => {
    const id = `${prefix}-${field.name}`;
    const value = values[field.name] || '';
    const input = field.type === 'status'
      ? statusSelect(id, value)
      : h('input', { id, name: field.name, type: field.type || 'text', placeholder: field.placeholder,
        value: field.type === 'datetime-local' ? toLocalInput(value) : value, autocomplete: 'off' });
    return h('div', { class: 'field' }, h('label', { for: id }, field.label), input);
  });
  return h('form', { id: formId, class: 'filters card', role: 'search', 'aria-label': 'Filters' },
    h('div', { class: 'field-grid' }, controls),
    h('div', { class: 'actions' },
      h('button', { id: applyId, type: 'submit', class: 'primary' }, 'Apply filters'),
      h('button', { type: 'reset', class: 'ghost' }, 'Clear')));
}

/**
 * Sets up a filter form, a table and Older/Newest buttons. `cfg.live` (ms) polls the first page.
 * Returns the list state; `onLoad` and `onReload` let a page add its own controls.
 */
function filteredList(ctx, target, cfg) {
  const list = { applied: readParams(target.params, cfg.fields), cursor: null, next: null };
  let seq = 0; // only the newest request may render (a poll and an Apply can overlap)
  let poller = null;
  let lastJson = '';

  const form = filterForm(cfg.prefix, cfg.formId, cfg.applyId, cfg.fields, list.applied);
  const tableBox = h('div', { class: 'list-body' });
  const liveNote = h('p', { class: 'muted small live-note' });
  const older = h('button', { id: 'older', type: 'button', hidden: true }, 'Older');
  const newest = h('button', { id: 'newest', type: 'button', class: 'ghost', hidden: true }, 'Back to newest');

  const load = async () => {
    const mine = ++seq;
    const page = await api('GET', cfg.endpoint + query({ ...list.applied, limit: cfg.limit, cursor: list.cursor }));
    if (!ctx.alive() || mine !== seq) return;
    const json = JSON.stringify(page);
    if (json !== lastJson) {
      lastJson = json;
      replaceKeepFocus(tableBox, cfg.table(page.items || []));
    }
    list.next = page.next_cursor ?? null;
    older.hidden = list.next === null;
    newest.hidden = list.cursor === null;
    liveNote.textContent = !cfg.live ? ''
      : list.cursor === null ? `Live: updated ${new Date().toLocaleTimeString()}` : 'Older page: not updating live.';
    clearError(true);
    cfg.onLoad?.(list);
    pageReady(ctx, cfg.page);
  };

  list.reload = async () => {
    poller?.stop();
    poller = null;
    lastJson = '';
    pageEl().removeAttribute('data-page');
    cfg.onReload?.(list);
    const { ok } = await firstLoad(ctx, load, tableBox);
    if (ctx.alive() && cfg.live && list.cursor === null) poller = ctx.poll(cfg.live, load);
    return ok;
  };

  // pushState keeps the filters in the URL without a hashchange, so the form keeps its focus.
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    list.applied = readForm(form, cfg.fields);
    list.cursor = null;
    const hash = `#/${cfg.page}${query(list.applied)}`;
    if (hash !== location.hash) history.pushState(null, '', hash);
    list.reload();
  });
  form.addEventListener('reset', () => {
    // reset restores the initial values; clear to truly empty fields instead
    setTimeout(() => form.querySelectorAll('input, select').forEach((field) => { field.value = ''; }));
  });
  older.addEventListener('click', async () => {
    list.cursor = list.next;
    await list.reload();
    (older.hidden ? newest : older).focus();
  });
  newest.addEventListener('click', async () => {
    list.cursor = null;
    await list.reload();
    (older.hidden ? tableBox.querySelector('.table-wrap') || form : older).focus();
  });

  list.nodes = { form, tableBox, liveNote, pager: h('div', { class: 'actions pager' }, newest, older) };
  return list;
}

// ---- Dispatches -------------------------------------------------------------------------------

async function dispatchesPage(ctx, target) {
  const bulkButton = h('button', { id: 'bulk-replay', type: 'button' }, 'Replay matching…');
  const bulkHint = h('p', { class: 'muted small', id: 'bulk-hint' });
  const bulkArea = h('div', { class: 'bulk-area' });

  const list = filteredList(ctx, target, {
    page: 'dispatches', endpoint: '/dispatches', prefix: 'dispatches', formId: 'dispatch-filters',
    applyId: 'apply-filters', fields: DISPATCH_FIELDS, limit: 50, live: 2000, table: dispatchTable,
    onReload: (l) => {
      bulkArea.replaceChildren();
      // Bulk replay filters like the list except for the search box: refuse rather than surprise.
      bulkButton.disabled = Boolean(l.applied.q);
      bulkHint.textContent = l.applied.q ? 'Clear the search box to replay by filters.' : '';
    },
  });

  bulkButton.addEventListener('click', () => withButton(bulkButton, async () => {
    const filters = {};
    for (const name of BULK_FILTERS) if (list.applied[name]) filters[name] = list.applied[name];
    const dryRun = await api('POST', '/dispatches/replay', { ...filters, dry_run: true });
    if (ctx.alive()) showBulkConfirm(num(dryRun.matched), dryRun.ids || []);
  }));

  // The confirm step replays exactly the dispatches that were counted (by id), not whatever
  // matches the filters by the time it is confirmed.
  function showBulkConfirm(matched, ids) {
    confirmStep({
      area: bulkArea, opener: bulkButton, group: 'bulk-confirm', buttons: 'bulk-confirm',
      yesLabel: 'Confirm', canConfirm: matched > 0,
      question: ['Replay ', h('strong', { id: 'bulk-count' }, String(matched)), ` ${matched === 1 ? 'dispatch' : 'dispatches'}?`],
      note: matched === 0
        ? 'No replayable dispatch matches these filters.'
        : 'Only failed, dead-lettered, aborted and timed-out dispatches matching the filters are counted.',
      action: async () => {
        const result = await api('POST', '/dispatches/replay', { ids });
        if (!ctx.alive()) return;
        notify(`Replayed ${plural(num(result.replayed), 'dispatch', 'dispatches')} of ${num(result.matched)} matching.`);
        await list.reload();
      },
    });
  }

  const { form, tableBox, liveNote, pager } = list.nodes;
  pageEl().replaceChildren(
    h('div', { class: 'page-head' }, h('h1', {}, 'Dispatches'),
      h('div', { class: 'actions' }, bulkButton)),
    bulkHint, bulkArea, form, liveNote, tableBox, pager);
  await list.reload();
}

function dispatchTable(items) {
  const rows = items.map((d) => h('tr', { 'data-id': d.id },
    h('td', {}, timeEl(d.received_at)),
    h('td', { class: 'status' }, badge(d.status)),
    h('td', {}, taskLabel(d.task)),
    h('td', {}, [d.source, d.route].filter(Boolean).join(' / ') || dash()),
    h('td', { class: 'num' }, String(num(d.attempts))),
    h('td', {}, h('a', { class: 'dispatch-link', href: dispatchHref(d.id), 'data-focus': `d:${d.id}` }, d.run_name || d.id))));
  const table = h('table', { id: 'dispatches' },
    h('caption', { class: 'visually-hidden' }, 'Dispatches, newest first'),
    headRow('Received', 'Status', 'Task', 'Source / route', 'Attempts', 'Run name'),
    h('tbody', {}, rows.length ? rows : emptyRow(6, 'No dispatches match these filters.')));
  return tableWrap('Dispatches', table);
}

// ---- One dispatch -----------------------------------------------------------------------------

async function dispatchPage(ctx, target) {
  const id = target.arg;
  const path = `/dispatches/${encodeURIComponent(id)}`;
  let poller = null;
  let lastJson = '';

  // Returns false once the status is terminal, which ends the polling.
  const load = async () => {
    const [dispatch, history] = await Promise.all([
      api('GET', path),
      api('GET', `${path}/history`).catch((error) => (error.status === 404 ? null : Promise.reject(error))),
    ]);
    if (!ctx.alive()) return false;
    const json = JSON.stringify([dispatch, history]);
    if (json !== lastJson) {
      lastJson = json;
      replaceKeepFocus(pageEl(), renderDispatch(dispatch, history, { cancel, replay }));
    }
    document.title = `Dispatch ${dispatch.run_name || id} · flyhook`;
    clearError(true);
    pageReady(ctx, 'dispatch');
    return !TERMINAL.has(dispatch.status);
  };

  const watch = async () => {
    poller?.stop();
    const { ok, value } = await firstLoad(ctx, load);
    poller = ok && value && ctx.alive() ? ctx.poll(2000, load) : null;
  };

  async function cancel(button) {
    await withButton(button, async () => {
      await api('POST', `${path}/cancel`, {});
      notify('Cancellation requested.');
      await watch();
    });
  }

  async function replay(button) {
    await withButton(button, async () => {
      const accepted = await api('POST', `${path}/replay`, {});
      const link = h('a', { id: 'replayed-link', href: dispatchHref(accepted.id) }, accepted.id);
      // Replaying under the same id links to this very page: reload instead of a no-op hashchange.
      link.addEventListener('click', (event) => {
        if (link.getAttribute('href') === location.hash) {
          event.preventDefault();
          route();
        }
      });
      notify('Replay queued: ', link);
      await watch();
    });
  }

  await watch();
}

function renderDispatch(d, history, actions) {
  const buttons = [];
  if (CANCELLABLE.has(d.status)) {
    const button = h('button', { id: 'cancel', type: 'button', class: 'danger' }, 'Cancel');
    button.addEventListener('click', () => actions.cancel(button));
    buttons.push(button);
  }
  if (REPLAYABLE.has(d.status)) {
    const button = h('button', { id: 'replay', type: 'button', class: 'primary' }, 'Replay');
    button.addEventListener('click', () => actions.replay(button));
    buttons.push(button);
  }
  // Without a safe URL the run name is a placeholder link (an <a> without href).
  const runLink = isSafeUrl(d.url)
    ? h('a', { id: 'run-link', href: d.url, target: '_blank', rel: 'noopener noreferrer' }, d.run_name || d.url)
    : h('a', { id: 'run-link', class: 'placeholder' }, d.run_name || '—');
  const events = history?.events || [];
  return [
    h('div', { class: 'page-head' },
      h('div', {},
        h('h1', {}, 'Dispatch ', h('code', { id: 'dispatch-id', class: 'break' }, d.id)),
        h('p', { class: 'head-meta' }, badge(d.status, 'dispatch-status'), ' ',
          h('span', { id: 'dispatch-task' }, taskLabel(d.task)))),
      h('div', { class: 'actions' }, buttons)),
    d.recorded === false ? h('p', { class: 'muted' }, 'No worker has recorded this dispatch yet.') : null,
    d.error ? h('div', { id: 'dispatch-error', class: 'error-box' },
      h('h2', {}, 'Error', d.error_kind ? ` (${d.error_kind})` : ''), h('p', { class: 'pre-wrap' }, d.error)) : null,
    h('div', { class: 'grid-2' },
      h('section', { class: 'card' }, h('h2', {}, 'Facts'),
        h('dl', { class: 'facts' },
          fact('Run name', runLink),
          fact('Flyte phase', text(d.flyte_phase)),
          fact('Request id', h('code', { id: 'request-id' }, d.request_id || '—')),
          fact('Source', text(d.source)),
          fact('Route', text(d.route)),
          fact('Delivery id', d.delivery_id ? h('code', {}, d.delivery_id) : dash()),
          fact('Attempts', String(num(d.attempts))),
          d.coalesced_into ? fact('Coalesced into', h('a', { href: `#/dispatches/${encodeURIComponent(d.coalesced_into)}` },
            h('code', {}, d.coalesced_into))) : null,
          fact('Callback', d.callback
            ? h('span', { id: 'dispatch-callback' }, `${d.callback.destination}: ${d.callback.state || 'when it ends'}`,
              d.callback.attempts ? ` after ${num(d.callback.attempts)} attempt(s)` : '',
              d.callback.last_answer ? h('span', { class: 'muted' }, ` (${d.callback.last_answer})`) : '')
            : dash()),
          fact('Received', timeEl(d.received_at)),
          fact('Started', timeEl(d.started_at)),
          fact('Finished', timeEl(d.finished_at)),
          fact('Updated', timeEl(d.updated_at)))),
      h('section', { class: 'card' }, h('h2', {}, 'Timeline'),
        h('ol', { id: 'timeline', class: 'timeline' }, events.map((event) => h('li', {},
          badge(event.status), ' ', event.flyte_phase ? [h('span', { class: 'phase' }, event.flyte_phase), ' '] : null,
          timeEl(event.at),
          Number.isFinite(event.attempts) && event.attempts > 0
            ? h('span', { class: 'muted small' }, ` · attempt ${event.attempts}`) : null))),
        events.length ? null : h('p', { class: 'muted' }, 'No events recorded yet.'))),
    h('div', { class: 'grid-2' },
      h('section', { class: 'card' }, h('h2', {}, 'Inputs'), jsonBlock('inputs', history?.inputs)),
      h('section', { class: 'card' }, h('h2', {}, 'Outputs'), jsonBlock('outputs', d.outputs))),
  ];
}

function fact(label, value) {
  return h('div', {}, h('dt', {}, label), h('dd', {}, value));
}

// ---- Dead letters -----------------------------------------------------------------------------

async function deadLettersPage(ctx) {
  const summary = h('p', { class: 'muted', id: 'dead-letters-summary' });
  const confirmArea = h('div', {});
  const tableBox = h('div', {});
  const replayAll = h('button', { id: 'replay-all', type: 'button', class: 'danger' }, 'Replay all…');
  const refresh = h('button', { type: 'button', class: 'ghost' }, 'Refresh');
  let ready = 0;
  let listed = []; // the ids on screen: "Replay all" sends exactly these

  const load = async () => {
    const data = await api('GET', '/dead-letters?limit=100');
    if (!ctx.alive()) return;
    const items = data.items || [];
    ready = num(data.ready);
    listed = items.map((letter) => letter.id).filter(Boolean);
    summary.textContent = `${plural(ready, 'message', 'messages')} in the dead-letter queue; showing ${items.length}.`;
    replayAll.disabled = listed.length === 0;
    replaceKeepFocus(tableBox, deadLetterTable(items, replayOne));
    clearError(true);
    pageReady(ctx, 'dead-letters');
  };

  const sent = (result) => notify(`${plural(num(result.sent), 'message', 'messages')} sent back to the work queue; `
    + `${num(result.kept)} kept in the dead-letter queue.`);

  async function replayOne(button, id) {
    await withButton(button, async () => {
      sent(await api('POST', '/dead-letters/replay', { ids: [id] }));
      await load();
    });
  }

  replayAll.addEventListener('click', () => confirmStep({
    area: confirmArea, opener: replayAll, group: 'replay-all-confirm', buttons: 'replay-all',
    yesLabel: 'Replay all', canConfirm: listed.length > 0,
    question: [`Send the ${plural(listed.length, 'dead letter', 'dead letters')} listed here back to the work queue?`],
    note: ready > listed.length ? `${ready - listed.length} more wait beyond this page; replay them after.` : null,
    action: async () => {
      sent(await api('POST', '/dead-letters/replay', { ids: [...listed] }));
      await load();
    },
  }));
  refresh.addEventListener('click', () => withButton(refresh, load));

  pageEl().replaceChildren(
    h('div', { class: 'page-head' }, h('h1', {}, 'Dead letters'), h('div', { class: 'actions' }, refresh, replayAll)),
    summary, confirmArea, tableBox);
  await firstLoad(ctx, load, tableBox);
}

function deadLetterTable(items, replayOne) {
  const rows = items.map((item) => {
    const button = item.id
      ? h('button', { type: 'button', class: 'replay-one small', 'aria-label': `Replay ${item.id}`, 'data-focus': `replay:${item.id}` }, 'Replay')
      : null;
    button?.addEventListener('click', () => replayOne(button, item.id));
    return h('tr', { 'data-id': item.id || '' },
      h('td', {}, item.id ? idLink(item.id) : dash()),
      h('td', {}, item.kind || '—'),
      h('td', {}, text(item.task)),
      h('td', {}, item.reason ? h('code', {}, item.reason) : dash()),
      h('td', {}, text(item.queue)),
      h('td', {}, button));
  });
  const table = h('table', { id: 'dead-letters' },
    headRow('Dispatch', 'Kind', 'Task', 'Reason', 'Queue', 'Action'),
    h('tbody', {}, rows.length ? rows : emptyRow(6, 'The dead-letter queue is empty.')));
  return tableWrap('Dead letters', table);
}

// ---- Sources and routes -----------------------------------------------------------------------

async function sourcesPage(ctx) {
  const list = h('div', { class: 'sources' });
  const refresh = h('button', { type: 'button', class: 'ghost' }, 'Refresh');
  const load = async () => {
    const data = await api('GET', '/sources');
    if (!ctx.alive()) return;
    const items = data.items || [];
    replaceKeepFocus(list, items.length ? items.map(sourceCard) : h('p', { class: 'muted' }, 'No webhook sources are configured.'));
    clearError(true);
    pageReady(ctx, 'sources');
  };
  refresh.addEventListener('click', () => withButton(refresh, load));
  pageEl().replaceChildren(h('div', { class: 'page-head' }, h('h1', {}, 'Sources and routes'),
    h('div', { class: 'actions' }, refresh)), list);
  await firstLoad(ctx, load, list);
}

function sourceCard(source) {
  const day = source.last_day || {};
  const routes = source.routes || [];
  const refusals = day.refusals || [];
  const recent = source.recent || [];
  return h('section', { class: 'card source', 'data-source': source.name },
    h('div', { class: 'page-head' }, h('h2', {}, source.name), h('span', { class: 'tag' }, source.provider || 'generic')),
    h('h3', {}, 'Routes'),
    routes.length ? h('ul', { class: 'routes' }, routes.map((r) => h('li', {},
      h('strong', {}, r.name), ' → ', h('code', {}, text(r.task)),
      (r.when || []).length
        ? h('ul', { class: 'conditions' }, r.when.map((c) => h('li', {}, h('code', {}, c))))
        : h('span', { class: 'muted' }, ' (always)'))))
      : h('p', { class: 'muted' }, 'No routes.'),
    h('h3', {}, 'Last 24 hours'),
    h('div', { class: 'tiles compact' },
      tile('Deliveries', num(day.deliveries)), tile('Dispatches', num(day.dispatches)),
      tile('Ignored', num(day.ignored)), tile('Refused', num(day.refused))),
    refusals.length ? h('ul', { class: 'refusals' }, refusals.map((r) =>
      h('li', {}, h('code', {}, r.reason), `: ${num(r.count)}`))) : null,
    h('h3', {}, 'Recent deliveries'),
    tableWrap(`Recent deliveries to ${source.name}`, h('table', { class: 'recent' },
      headRow('Time', 'HTTP', 'Outcome', 'Request id', 'Dispatches'),
      h('tbody', {}, recent.length ? recent.map((d) => h('tr', {},
        h('td', {}, timeEl(d.at)),
        h('td', { class: 'num' }, String(d.status ?? '—')),
        h('td', {}, ((o) => h('span', { class: `badge ${o.css}` }, o.label))(deliveryOutcome(d))),
        h('td', {}, d.request_id ? h('code', {}, d.request_id) : dash()),
        h('td', { class: 'id-list' }, (d.dispatch_ids || []).length ? d.dispatch_ids.map((id) => idLink(id)) : dash())))
        : emptyRow(5, 'No deliveries yet.')))));
}

/**
 * A delivery's outcome in words and colour: accepted (green); ignored (amber: a 200 that names
 * the dispatch recorded `ignored`); a handshake (a 200 naming none); or refused with its code (red).
 */
function deliveryOutcome(delivery) {
  if (num(delivery.status) >= 400) return { label: delivery.outcome || 'refused', css: 'status-rejected' };
  if (delivery.outcome === 'ok') {
    return (delivery.dispatch_ids || []).length
      ? { label: 'ignored', css: 'status-ignored' }
      : { label: 'handshake', css: 'status-queued' };
  }
  return { label: delivery.outcome || '—', css: 'status-succeeded' };
}

// ---- API keys ---------------------------------------------------------------------------------

async function keysPage(ctx) {
  const created = h('div', {});
  const tableBox = h('div', {});
  const field = (name, label, attrs = {}, hint = null) => h('div', { class: 'field' },
    h('label', { for: `key-${name}` }, label),
    h('input', { id: `key-${name}`, name, autocomplete: 'off', ...attrs, 'aria-describedby': hint ? `key-${name}-hint` : null }),
    hint ? h('span', { class: 'hint', id: `key-${name}-hint` }, hint) : null);
  const submit = h('button', { id: 'create-key-submit', type: 'submit', class: 'primary' }, 'Create key');
  const form = h('form', { id: 'create-key', class: 'card' },
    h('h2', {}, 'New key'),
    h('div', { class: 'field-grid' },
      field('name', 'Name', { required: true, placeholder: 'ci' }),
      field('scopes', 'Scopes', { required: true, placeholder: 'flytesnacks/development' },
        'Comma-separated: project, project/domain or project/domain/task; * for every scope.'),
      field('rate_per_second', 'Rate per second', { type: 'number', min: '1', step: '1' }, 'Optional; the default rate when empty.'),
      field('rate_burst', 'Burst', { type: 'number', min: '1', step: '1' }, 'Optional; the rate when empty.')),
    h('div', { class: 'actions' }, submit));

  const load = async () => {
    const data = await api('GET', '/keys');
    if (!ctx.alive()) return;
    replaceKeepFocus(tableBox, keysTable(data.items || [], revoke));
    clearError(true);
    pageReady(ctx, 'keys');
  };

  async function revoke(button, name) {
    await withButton(button, async () => {
      await api('POST', `/keys/${encodeURIComponent(name)}/revoke`, {});
      notify(`Key "${name}" revoked.`);
      await load();
    });
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    withButton(submit, async () => {
      const values = new FormData(form);
      const body = {
        name: String(values.get('name')).trim(),
        scopes: String(values.get('scopes')).split(',').map((v) => v.trim()).filter(Boolean),
      };
      for (const name of ['rate_per_second', 'rate_burst']) {
        const raw = String(values.get(name) ?? '').trim();
        if (raw) body[name] = Number(raw);
      }
      const result = await api('POST', '/keys', body);
      if (!ctx.alive()) return;
      form.reset();
      showNewKey(created, body.name, result.key);
      await load();
    });
  });

  pageEl().replaceChildren(h('div', { class: 'page-head' }, h('h1', {}, 'API keys')), created, form,
    h('h2', {}, 'Keys'), tableBox);
  await firstLoad(ctx, load, tableBox);
}

/** The key exists only in this answer: show it once, with a copy button. */
function showNewKey(container, name, key) {
  const code = h('code', { id: 'new-key', class: 'break' }, key);
  const copy = h('button', { type: 'button', class: 'small' }, 'Copy');
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(key);
      copy.textContent = 'Copied';
    } catch {
      getSelection().selectAllChildren(code); // no clipboard access: select it for Ctrl+C
      copy.textContent = 'Selected: press Ctrl+C';
    }
  });
  const box = h('div', { class: 'new-key card', tabindex: '-1', 'aria-labelledby': 'new-key-title' },
    h('h2', { id: 'new-key-title' }, `Key "${name}" created`),
    h('p', {}, h('strong', {}, 'Copy it now: '), 'it will not be shown again.'),
    h('div', { class: 'key-line' }, code, copy));
  container.replaceChildren(box);
  notify(`Key "${name}" created. Copy it now: it is shown only once.`);
  box.focus();
}

function keysTable(items, revoke) {
  const rows = items.map((key) => {
    let action = null;
    if (!key.managed) action = h('span', { class: 'muted' }, 'configured');
    else if (!key.revoked_at) {
      action = h('button', { type: 'button', class: 'revoke danger small', 'aria-label': `Revoke ${key.name}`,
        'data-focus': `revoke:${key.name}` }, 'Revoke');
      action.addEventListener('click', () => revoke(action, key.name));
    }
    const rate = key.rate_per_second == null && key.rate_burst == null ? 'default'
      : `${key.rate_per_second ?? 'default'}/s, burst ${key.rate_burst ?? 'default'}`;
    return h('tr', { 'data-key': key.name, class: key.revoked_at ? 'revoked' : null },
      h('td', {}, key.name),
      h('td', {}, h('code', {}, key.prefix || '')),
      h('td', {}, (key.scopes || []).join(', ') || '—'),
      h('td', {}, rate),
      h('td', {}, timeEl(key.created_at)),
      h('td', {}, key.revoked_at ? ['revoked ', timeEl(key.revoked_at)] : 'active'),
      h('td', {}, action));
  });
  const table = h('table', { id: 'keys' },
    headRow('Name', 'Prefix', 'Scopes', 'Rate limit', 'Created', 'State', 'Action'),
    h('tbody', {}, rows.length ? rows : emptyRow(7, 'No keys.')));
  return tableWrap('API keys', table);
}

// ---- Audit ------------------------------------------------------------------------------------

async function auditPage(ctx, target) {
  const list = filteredList(ctx, target, {
    page: 'audit', endpoint: '/audit', prefix: 'audit', formId: 'audit-filters', applyId: 'apply-audit-filters',
    fields: AUDIT_FIELDS, limit: 100, live: 0, table: auditTable,
  });
  const { form, tableBox, pager } = list.nodes;
  pageEl().replaceChildren(h('div', { class: 'page-head' }, h('h1', {}, 'Audit log')), form, tableBox, pager);
  await list.reload();
}

function auditTable(items) {
  const rows = items.map((entry) => h('tr', { 'data-audit-id': String(entry.id) },
    h('td', {}, timeEl(entry.at)),
    h('td', {}, text(entry.principal)),
    h('td', {}, h('code', {}, entry.method || ''), ' ', h('span', { title: entry.route || '' }, entry.path || '')),
    h('td', { class: 'num' }, String(entry.status ?? '—')),
    h('td', {}, h('code', {}, entry.outcome || '—')),
    h('td', { class: 'id-list' }, (entry.dispatch_ids || []).length ? entry.dispatch_ids.map((id) => idLink(id)) : dash()),
    h('td', {}, entry.request_id ? h('code', {}, entry.request_id) : dash()),
    h('td', {}, text(entry.client_addr))));
  const table = h('table', { id: 'audit' },
    headRow('Time', 'Principal', 'Request', 'HTTP', 'Outcome', 'Dispatches', 'Request id', 'Client'),
    h('tbody', {}, rows.length ? rows : emptyRow(8, 'No audit entries match these filters.')));
  return tableWrap('Audit log', table);
}

// ---- Start ------------------------------------------------------------------------------------

async function boot() {
  $('sign-out').addEventListener('click', signOut);
  // The skip link targets #page, which is not a route: focus main without touching the hash.
  document.querySelector('.skip-link')?.addEventListener('click', (event) => {
    event.preventDefault();
    pageEl().focus();
  });
  window.addEventListener('hashchange', () => {
    route();
    pageEl().focus({ preventScroll: true });
  });
  try {
    startSession(await api('GET', '/ui/session'));
  } catch (error) {
    if (error.handled) return; // 401: the sign-in view is showing
    showError(error);
    const retry = h('button', { type: 'button', class: 'primary' }, 'Retry');
    retry.addEventListener('click', () => window.location.reload());
    pageEl().replaceChildren(h('p', {}, 'The console could not reach flyhook.'), retry);
  }
}

boot();
