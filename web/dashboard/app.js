// Sluice's dashboard: one small script, no framework, no build step. Every page is a plain
// page load of the same HTML shell (/t/{tenant}/{page}); this script reads the path, fetches
// what that page needs from the REST API (/api/tenant/{tenant}/...) and renders it with DOM
// calls (text is never parsed as HTML). The status page renders after one fetch, the status
// document, and refreshes it every 5 s; the live console reads the websocket console stream.
'use strict';

const REFRESH_MS = 5000;
const main = document.getElementById('main');
const nav = document.getElementById('nav');

// h('a', {href: x, class: 'y'}, child, ...): an element; strings become text nodes.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'style') el.style.cssText = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function show(...children) {
  main.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

function enc(s) {
  return encodeURIComponent(s);
}

// A project name keeps its slashes in paths (org/app).
function encPath(s) {
  return String(s).split('/').map(enc).join('/');
}

class ApiError extends Error {}

async function api(path) {
  const resp = await fetch(path, {headers: {Accept: 'application/json'}});
  if (!resp.ok) {
    let detail = `${resp.status} ${resp.statusText}`;
    try {
      const body = await resp.json();
      if (body && body.description) detail = `${resp.status}: ${body.description}`;
    } catch (_) { /* not JSON */ }
    throw new ApiError(`${path}: ${detail}`);
  }
  return resp.json();
}

function errorBox(e) {
  return h('p', {class: 'error'}, String(e && e.message ? e.message : e));
}

function resultBadge(result) {
  const r = result || 'RUNNING';
  return h('span', {class: `result r-${r}`}, r);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return '';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function time(iso) {
  return iso ? String(iso).replace('T', ' ').replace(/\.\d+/, '') : '';
}

function changeText(ref) {
  if (!ref) return '';
  if (ref.change !== null && ref.change !== undefined) {
    // The git driver's patchsets are commit ids: a short one reads better.
    const ps = String(ref.patchset);
    return `${ref.change},${/^[0-9a-f]{40}$/.test(ps) ? ps.slice(0, 7) : ps}`;
  }
  return (ref.newrev || ref.ref || '').slice(0, 12) || ref.ref;
}

function changeLink(ref) {
  if (!ref) return '';
  const url = ref.ref_url || ref.url;
  const text = changeText(ref);
  return url && /^https?:/.test(url) ? h('a', {href: url}, text) : text;
}

// A log URL: a link when the browser can open it (http/https), else the text (file://).
function logLink(url) {
  if (!url) return '';
  return /^https?:/.test(url) ? h('a', {href: url}, url) : h('code', {}, url);
}

function fields(pairs) {
  return h('dl', {class: 'fields'},
    pairs.filter(([, v]) => v !== '' && v !== null && v !== undefined)
      .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

// ---- routing ----

const match = location.pathname.match(/^\/t\/([^/]+)(?:\/(.*))?$/);
const tenant = match ? decodeURIComponent(match[1]) : null;
const rest = match && match[2] ? match[2] : 'status';
const base = tenant ? `/t/${enc(tenant)}/` : '/';
const apiBase = tenant ? `/api/tenant/${enc(tenant)}/` : '/api/';
const params = new URLSearchParams(location.search);

const PAGES = [
  ['status', 'Status'], ['projects', 'Projects'], ['jobs', 'Jobs'],
  ['builds', 'Builds'], ['buildsets', 'Buildsets'], ['config-errors', 'Config errors'],
];

function renderNav() {
  if (!tenant) return;
  const page = rest.split('/')[0];
  nav.replaceChildren(h('span', {class: 'muted'}, tenant),
    ...PAGES.map(([p, label]) => h('a', {href: base + p, id: `nav-${p}`,
      class: page === p || (page === 'build' && p === 'builds') ||
        (page === 'buildset' && p === 'buildsets') ? 'current' : null}, label)));
}

// After the page rendered: flag configuration errors in the navigation bar.
function flagConfigErrors() {
  api(apiBase + 'config-errors').then((errors) => {
    const link = document.getElementById('nav-config-errors');
    if (link && errors.length) link.append(h('span', {class: 'badge-count'}, errors.length));
  }).catch(() => {});
}

async function route() {
  renderNav();
  if (!tenant) return tenantsPage();
  const [page, ...tail] = rest.split('/');
  const arg = decodeURIComponent(tail.join('/'));
  document.title = `${page} · ${tenant} · Sluice`;
  const pages = {
    'status': statusPage,
    'builds': buildsPage,
    'build': () => buildPage(arg),
    'buildsets': buildsetsPage,
    'buildset': () => buildsetPage(arg),
    'stream': () => streamPage(arg),
    'jobs': jobsPage,
    'job': () => jobPage(arg),
    'projects': projectsPage,
    'project': () => projectPage(arg),
    'config-errors': configErrorsPage,
  };
  const render = pages[page];
  if (!render) return show(h('h1', {}, 'Not found'), h('p', {}, `No page ${page}.`));
  try {
    await render();
  } catch (e) {
    show(h('h1', {}, page), errorBox(e));
  }
  setTimeout(flagConfigErrors, 0);
}

// ---- tenants ----

async function tenantsPage() {
  document.title = 'Tenants · Sluice';
  const tenants = await api('/api/tenants');
  if (tenants.length === 1) {
    location.replace(`/t/${enc(tenants[0].name)}/status`);
    return;
  }
  show(h('h1', {}, 'Tenants'), h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Tenant'), h('th', {}, 'Projects'), h('th', {}, 'Queue'))),
    h('tbody', {}, tenants.map((t) => h('tr', {},
      h('td', {}, h('a', {href: `/t/${enc(t.name)}/status`}, t.name)),
      h('td', {}, t.projects), h('td', {}, t.queue))))));
}

// ---- status ----

// Running jobs' progress advances between refreshes from the time the document was fetched.
let statusFetchedAt = 0;

function jobProgress(job) {
  if (job.result) return resultBadge(job.result);
  if (job.paused) return resultBadge('PAUSED');
  if (job.start_time === null || job.start_time === undefined) {
    return h('span', {class: 'muted job-wait'}, job.waiting_status ? `waiting (${job.waiting_status})` : 'queued');
  }
  const est = job.estimated_time ? job.estimated_time * 1000 : null;
  const bar = h('div', {class: 'bar'});
  const progress = h('div', {class: est ? 'progress' : 'progress indeterminate', role: 'progressbar',
    'aria-label': `${job.name} progress`, 'data-elapsed': job.elapsed_time || 0,
    'data-estimated': est || ''}, bar);
  updateProgress(progress, 0);
  return progress;
}

function updateProgress(progress, sinceFetch) {
  const elapsed = Number(progress.dataset.elapsed) + sinceFetch;
  const est = Number(progress.dataset.estimated);
  if (!est) {
    progress.title = `${duration(elapsed / 1000)} elapsed, no estimate yet`;
    return;
  }
  const pct = Math.min(100, Math.round((100 * elapsed) / est));
  progress.firstChild.style.width = `${pct}%`;
  progress.setAttribute('aria-valuenow', pct);
  progress.setAttribute('aria-valuemin', 0);
  progress.setAttribute('aria-valuemax', 100);
  const left = Math.max(0, est - elapsed);
  progress.title = `${pct}%: ${duration(elapsed / 1000)} of about ${duration(est / 1000)}, ${duration(left / 1000)} left`;
}

function tickProgress() {
  const since = Date.now() - statusFetchedAt;
  for (const p of document.querySelectorAll('.progress[data-elapsed]')) updateProgress(p, since);
}

function statusJob(job) {
  const running = job.start_time !== null && job.start_time !== undefined && !job.result;
  // The status document's URLs are relative to the tenant's dashboard, unless absolute.
  const url = (u) => (/^(https?:|\/)/.test(u) ? u : base + u);
  const href = running && job.url ? url(job.url) : job.report_url ? url(job.report_url) : null;
  const label = job.name + (job.voting ? '' : ' (non-voting)') + (job.tries > 1 ? ` (${job.tries})` : '');
  return h('li', {class: 'job', 'data-job': job.name},
    h('span', {class: 'job-name'}, href ? h('a', {href, class: running ? 'live' : null}, label) : label),
    jobProgress(job));
}

function statusItem(item) {
  const ref = item.refs[0] || {};
  const failing = item.failing_reasons && item.failing_reasons.length;
  const remaining = item.remaining_time !== null && item.remaining_time !== undefined
    ? `${duration(item.remaining_time / 1000)} left` : '';
  return h('div', {class: `item${failing ? ' failing' : ''}${item.active ? '' : ' inactive'}`, 'data-item': item.id},
    h('div', {class: 'item-head'},
      h('span', {}, h('strong', {}, ref.project || ''), ' ', changeLink(ref), ' ',
        h('span', {class: 'muted'}, ref.branch || '')),
      h('span', {class: 'muted'}, remaining)),
    failing ? h('div', {class: 'error'}, item.failing_reasons.join('; ')) : null,
    h('ul', {class: 'jobs'}, item.jobs.map(statusJob)));
}

function statusPipeline(p) {
  const queues = p.change_queues.filter((q) => q.heads.some((head) => head.length));
  return h('section', {class: 'pipeline', 'data-pipeline': p.name},
    h('h2', {}, p.name, ' ', h('span', {class: 'muted'}, p.manager)),
    p.description ? h('div', {class: 'muted'}, p.description) : null,
    queues.length ? queues.map((q) => h('div', {class: 'queue'},
      q.name ? h('div', {class: 'queue-name'}, `Queue: ${q.name}${q.branch ? ` (${q.branch})` : ''}`) : null,
      q.heads.flat().map(statusItem))) : h('div', {class: 'muted'}, 'No items.'));
}

async function statusPage() {
  const render = async () => {
    const status = await api(apiBase + 'status');
    statusFetchedAt = Date.now();
    const items = status.pipelines.reduce((n, p) => n + p.change_queues.reduce(
      (m, q) => m + q.heads.reduce((k, head) => k + head.length, 0), 0), 0);
    show(h('h1', {}, 'Status ', h('span', {class: 'muted'}, `${items} item${items === 1 ? '' : 's'}`)),
      h('p', {class: 'muted'}, `Events: ${status.trigger_event_queue.length} trigger, `,
        `${status.management_event_queue.length} management`),
      h('div', {class: 'pipelines'}, status.pipelines.map(statusPipeline)));
    performance.mark('sluice-status-rendered');
  };
  await render();
  setInterval(tickProgress, 1000);
  const refresh = async () => {
    if (!document.hidden) {
      try {
        await render();
      } catch (e) {
        main.prepend(errorBox(e));
      }
    }
    setTimeout(refresh, REFRESH_MS);
  };
  setTimeout(refresh, REFRESH_MS);
}

// ---- history lists ----

function filterForm(names) {
  return h('form', {class: 'filters', method: 'get'},
    names.map(([name, label]) => h('label', {}, label,
      h('input', {name, value: params.get(name) || '', size: 14, list: name === 'result' ? 'results' : null}))),
    h('datalist', {id: 'results'}, ['SUCCESS', 'FAILURE', 'POST_FAILURE', 'TIMED_OUT', 'NODE_FAILURE',
      'RETRY_LIMIT', 'SKIPPED', 'CANCELED', 'ABORTED', 'MERGE_CONFLICT', 'CONFIG_ERROR', 'DEQUEUED']
      .map((r) => h('option', {value: r}))),
    h('button', {type: 'submit'}, 'Filter'),
    h('a', {href: location.pathname}, 'Clear'));
}

// The API query: the filters set in the page's own query string, and the page.
function historyQuery(names, limit) {
  const q = new URLSearchParams();
  for (const [name] of names) {
    const v = params.get(name);
    if (v) q.set(name, v);
  }
  q.set('limit', limit);
  q.set('skip', Number(params.get('skip')) || 0);
  return q;
}

function pager(count, limit) {
  const skip = Number(params.get('skip')) || 0;
  const at = (s) => {
    const q = new URLSearchParams(params);
    q.set('skip', s);
    return `?${q}`;
  };
  return h('div', {class: 'pager'},
    skip > 0 ? h('a', {href: at(Math.max(0, skip - limit))}, '← Newer') : null,
    count === limit ? h('a', {href: at(skip + limit)}, 'Older →') : null);
}

const BUILD_FILTERS = [['project', 'Project'], ['pipeline', 'Pipeline'], ['job_name', 'Job'],
  ['result', 'Result'], ['change', 'Change'], ['branch', 'Branch']];

async function buildsPage() {
  const limit = 50;
  const builds = await api(`${apiBase}builds?${historyQuery(BUILD_FILTERS, limit)}`);
  show(h('h1', {}, 'Builds'), filterForm(BUILD_FILTERS),
    builds.length ? h('table', {id: 'builds'},
      h('thead', {}, h('tr', {}, ['Job', 'Project', 'Branch', 'Pipeline', 'Change', 'Duration', 'Start', 'Result']
        .map((t) => h('th', {}, t)))),
      h('tbody', {}, builds.map((b) => h('tr', {'data-uuid': b.uuid},
        h('td', {}, h('a', {href: `${base}build/${enc(b.uuid)}`}, b.job_name)),
        h('td', {}, b.ref ? b.ref.project : ''),
        h('td', {}, b.ref ? b.ref.branch : ''),
        h('td', {}, b.pipeline),
        h('td', {}, changeLink(b.ref)),
        h('td', {}, duration(b.duration)),
        h('td', {}, time(b.start_time)),
        h('td', {}, resultBadge(b.result)))))) : h('p', {class: 'muted'}, 'No builds.'),
    pager(builds.length, limit));
}

const BUILDSET_FILTERS = [['project', 'Project'], ['pipeline', 'Pipeline'], ['result', 'Result'],
  ['change', 'Change'], ['branch', 'Branch']];

async function buildsetsPage() {
  const limit = 50;
  const sets = await api(`${apiBase}buildsets?${historyQuery(BUILDSET_FILTERS, limit)}`);
  show(h('h1', {}, 'Buildsets'), filterForm(BUILDSET_FILTERS),
    sets.length ? h('table', {id: 'buildsets'},
      h('thead', {}, h('tr', {}, ['Project', 'Branch', 'Pipeline', 'Change', 'Start', 'End', 'Result']
        .map((t) => h('th', {}, t)))),
      h('tbody', {}, sets.map((s) => {
        const ref = s.refs[0];
        return h('tr', {'data-uuid': s.uuid},
          h('td', {}, h('a', {href: `${base}buildset/${enc(s.uuid)}`}, ref ? ref.project : s.uuid)),
          h('td', {}, ref ? ref.branch : ''),
          h('td', {}, s.pipeline),
          h('td', {}, changeLink(ref)),
          h('td', {}, time(s.first_build_start_time)),
          h('td', {}, time(s.last_build_end_time)),
          h('td', {}, resultBadge(s.result)));
      }))) : h('p', {class: 'muted'}, 'No buildsets.'),
    pager(sets.length, limit));
}

async function buildsetPage(uuid) {
  const s = await api(`${apiBase}buildset/${enc(uuid)}`);
  const ref = s.refs[0];
  show(h('h1', {}, 'Buildset ', resultBadge(s.result)),
    h('div', {class: 'card'}, fields([
      ['Project', ref ? ref.project : ''], ['Branch', ref ? ref.branch : ''], ['Pipeline', s.pipeline],
      ['Change', changeLink(ref)], ['Ref', ref ? ref.ref : ''], ['Message', s.message],
      ['Tested on', (s.ahead || []).map(changeText).join(', ')], ['Event', s.event_id], ['UUID', s.uuid]])),
    h('h2', {}, 'Builds'),
    h('table', {}, h('tbody', {}, (s.builds || []).map((b) => h('tr', {},
      h('td', {}, h('a', {href: `${base}build/${enc(b.uuid)}`}, b.job_name)),
      h('td', {}, duration(b.duration)), h('td', {}, time(b.start_time)),
      h('td', {}, resultBadge(b.result)))))));
}

// ---- one build and its console ----

function consoleUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${apiBase}console-stream`;
}

// Follows a build's console into `pre`; `onEnd(event)` when the stream closes.
function followConsole(uuid, logfile, pre, state, onEnd) {
  const ws = new WebSocket(consoleUrl());
  state.textContent = 'Connecting…';
  ws.onopen = () => {
    state.textContent = 'Streaming';
    ws.send(JSON.stringify({uuid, logfile}));
  };
  ws.onmessage = (ev) => {
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
    pre.append(String(ev.data));
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  };
  ws.onerror = () => { state.textContent = 'Connection error'; };
  ws.onclose = (ev) => {
    state.textContent = ev.code === 1000 ? 'End of stream' : `Stream closed (${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`;
    if (onEnd) onEnd(ev);
  };
  return ws;
}

async function buildPage(uuid) {
  const b = await api(`${apiBase}build/${enc(uuid)}`);
  const ref = b.ref || {};
  const running = !b.result;
  const artifacts = b.artifacts || [];
  const logPre = h('pre', {class: 'console', id: 'log'});
  const logState = h('span', {class: 'muted', id: 'log-state'});
  show(h('div', {class: 'stack'},
    h('h1', {}, `Build ${b.job_name} `, resultBadge(b.result)),
    h('div', {class: 'card'}, fields([
      ['Result', resultBadge(b.result)], ['Job', b.job_name], ['Project', ref.project], ['Branch', ref.branch],
      ['Pipeline', b.pipeline], ['Change', changeLink(ref)], ['Ref', ref.ref], ['Revision', ref.newrev],
      ['Start', time(b.start_time)], ['End', time(b.end_time)], ['Duration', duration(b.duration)],
      ['Voting', b.voting ? 'yes' : 'no'], ['Attempt', b.attempt], ['Nodeset', b.nodeset],
      ['Buildset', h('a', {href: `${base}buildset/${enc(b.buildset.uuid)}`}, b.buildset.uuid)],
      ['Log', logLink(b.log_url)], ['Error', b.error_detail ? h('span', {class: 'error'}, b.error_detail) : ''],
      ['UUID', b.uuid]])),
    artifacts.length ? h('div', {class: 'card', id: 'artifacts'}, h('h2', {}, 'Artifacts'),
      h('ul', {}, artifacts.map((a) => h('li', {}, /^https?:/.test(a.url) ? h('a', {href: a.url}, a.name) : `${a.name}: ${a.url}`)))) : null,
    h('div', {class: 'card'}, h('h2', {}, running ? 'Console ' : 'Log ', logState,
      running ? [' ', h('a', {href: `${base}stream/${enc(uuid)}?logfile=console.log`}, 'full screen')] : null),
    logPre)));
  if (running) {
    // The stream ends with the build: show the result and the log once they are recorded.
    followConsole(uuid, 'console.log', logPre, logState, (ev) => {
      if (ev.code === 1000) setTimeout(() => location.reload(), 1000);
    });
  } else {
    loadLog(uuid, logPre, logState);
  }
}

// A finished build's log through the web server (the log URL may be on the executor's disk).
async function loadLog(uuid, pre, state) {
  state.textContent = 'Loading…';
  try {
    const resp = await fetch(`${apiBase}build/${enc(uuid)}/log`);
    if (!resp.ok) {
      state.textContent = `(${resp.status}: ${await resp.text()})`;
      return;
    }
    pre.textContent = await resp.text();
    state.textContent = '';
  } catch (e) {
    state.textContent = `(${e.message})`;
  }
}

function streamPage(uuid) {
  const logfile = params.get('logfile') || 'console.log';
  const pre = h('pre', {class: 'console', id: 'console', style: 'max-height:none'});
  const state = h('span', {class: 'muted', id: 'stream-state'});
  show(h('h1', {}, 'Live console ', state),
    h('p', {}, 'Build ', h('a', {href: `${base}build/${enc(uuid)}`}, uuid), ` (${logfile})`), pre);
  followConsole(uuid, logfile, pre, state, null);
}

// ---- layout pages ----

async function jobsPage() {
  const jobs = await api(apiBase + 'jobs');
  const filter = h('input', {placeholder: 'Filter jobs', size: 30, value: params.get('q') || ''});
  const body = h('tbody', {});
  const fill = () => {
    const q = filter.value.toLowerCase();
    body.replaceChildren(...jobs.filter((j) => !q || j.name.toLowerCase().includes(q)).map((j) => h('tr', {},
      h('td', {}, h('a', {href: `${base}job/${enc(j.name)}`}, j.name)),
      h('td', {}, j.description || ''), h('td', {}, (j.tags || []).join(', ')),
      h('td', {}, j.variants.length))));
  };
  filter.addEventListener('input', fill);
  fill();
  show(h('h1', {}, 'Jobs'), h('form', {class: 'filters', onsubmit: (e) => e.preventDefault()}, filter),
    h('table', {id: 'jobs'}, h('thead', {}, h('tr', {}, ['Job', 'Description', 'Tags', 'Variants'].map((t) => h('th', {}, t)))), body));
}

function jsonBlock(value) {
  return h('pre', {class: 'json'}, JSON.stringify(value, null, 2));
}

async function jobPage(name) {
  const variants = await api(`${apiBase}job/${enc(name)}`);
  show(h('h1', {}, `Job ${name}`),
    h('p', {}, h('a', {href: `${base}builds?job_name=${enc(name)}`}, 'Builds of this job')),
    variants.map((v, i) => {
      const sc = v.source_context || {};
      return h('div', {class: 'card stack'}, h('h2', {}, `Variant ${i + 1}`),
        fields([['Description', v.description], ['Parent', v.parent],
          ['Defined in', sc.project ? `${sc.project} ${sc.branch || ''} ${sc.path || ''}` : ''],
          ['Branches', (v.branches || []).join(', ')], ['Voting', v.voting === false ? 'no' : 'yes'],
          ['Run', (v.run || []).map((r) => (typeof r === 'string' ? r : r.path || JSON.stringify(r))).join(', ')]]),
        h('details', {}, h('summary', {}, 'All attributes'), jsonBlock(v)));
    }));
}

async function projectsPage() {
  const projects = await api(apiBase + 'projects');
  show(h('h1', {}, 'Projects'), h('table', {id: 'projects'},
    h('thead', {}, h('tr', {}, ['Project', 'Canonical name', 'Connection', 'Type'].map((t) => h('th', {}, t)))),
    h('tbody', {}, projects.map((p) => h('tr', {},
      h('td', {}, h('a', {href: `${base}project/${encPath(p.name)}`}, p.name)),
      h('td', {}, p.canonical_name), h('td', {}, p.connection_name), h('td', {}, p.type))))));
}

async function projectPage(name) {
  const p = await api(`${apiBase}project/${encPath(name)}`);
  const md = p.metadata || {};
  show(h('h1', {}, `Project ${p.name}`),
    h('div', {class: 'card stack'}, fields([['Canonical name', p.canonical_name], ['Connection', p.connection_name],
      ['Type', p.type], ['Merge mode', md.merge_mode], ['Default branch', md.default_branch], ['Queue', md.queue_name]]),
    h('p', {}, h('a', {href: `${base}builds?project=${enc(p.name)}`}, 'Builds'), ' · ',
      h('a', {href: `${base}buildsets?project=${enc(p.name)}`}, 'Buildsets'))),
    (p.configs || []).map((c) => {
      const sc = c.source_context || {};
      return h('div', {class: 'card', style: 'margin-top:1em'},
        h('h2', {}, sc.project ? `${sc.project} ${sc.branch || ''} ${sc.path || ''}` : 'Configuration'),
        (c.pipelines || []).map((pl) => [h('h3', {}, pl.name),
          h('ul', {}, (pl.jobs || []).flat().map((j) => h('li', {},
            h('a', {href: `${base}job/${enc(j.name)}`}, j.name))))]),
        h('details', {}, h('summary', {}, 'All attributes'), jsonBlock(c)));
    }));
}

async function configErrorsPage() {
  const errors = await api(apiBase + 'config-errors');
  show(h('h1', {}, 'Configuration errors'), errors.length ? errors.map((e) => {
    const sc = e.source_context || {};
    return h('div', {class: 'card config-error', style: 'margin-bottom:1em'},
      h('h2', {}, `${sc.project || ''} ${sc.branch || ''} ${sc.path || ''}${e.source_line ? `:${e.source_line}` : ''}`),
      fields([['Item', e.name], ['Severity', e.severity]]),
      h('pre', {class: 'console'}, e.error));
  }) : h('p', {class: 'muted', id: 'no-config-errors'}, 'No configuration errors.'));
}

route();
