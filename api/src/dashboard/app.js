// ZhilyeGO admin dashboard: one page over the public API with a pasted bearer token (kept in
// sessionStorage only). Charts are inline SVG drawn here; every mark carries the figure it
// draws (data-key, data-value), so what is drawn can be checked against the API.
'use strict';

const T = {
  ru: {
    admin: 'админка', login: 'Вход', token_label: 'Токен администратора (Bearer)', sign_in: 'Войти',
    sign_out: 'Выйти', signed_in: 'Вход выполнен', signed_out: 'Вставьте токен администратора',
    charts: 'Показатели', from: 'С', to: 'По', refresh: 'Обновить',
    occupancy: 'Загрузка по дням', revenue: 'Выручка по дням, ₸', funnel: 'Воронка',
    channels: 'Каналы (бронирования)', analytics_unavailable: 'Аналитика недоступна на этом сервере',
    no_data: 'нет данных', users: 'Пользователи', phone_placeholder: '+7 701 123 45 67', all: 'все',
    blocked_only: 'заблокированные', active_only: 'активные', search: 'Найти', reason: 'Причина',
    role: 'Роль', status: 'Статус', bookings: 'Брони', blocked: 'заблокирован', active: 'активен',
    block: 'Заблокировать', unblock: 'Разблокировать', reason_required: 'Укажите причину',
    found: 'Найдено', moderation: 'Модерация объявлений', pause: 'приостановить',
    archive: 'в архив', restore: 'восстановить', apply: 'Применить', done: 'Готово',
    reconciliation: 'Сверка платежей', reconcile_now: 'Сверить сейчас', last_pass: 'Последний проход',
    checked: 'проверено', reconciled: 'сверено', mismatches: 'расхождения', errors: 'ошибки',
    mismatched_payments: 'Платежи с отклонёнными уведомлениями', none: 'нет',
    health: 'Состояние', store: 'Хранилище событий', read_db: 'База чтения', bus: 'Шина',
    projections: 'Проекции', relay: 'Ретранслятор', notary: 'Нотариус',
    notary_unavailable: 'нотариус недоступен на этом сервере', behind: 'отстаёт',
    stopped: 'ОСТАНОВЛЕНА', error: 'Ошибка',
    held: 'удержано', paid: 'оплачено', checked_in: 'заселено', completed: 'завершено',
    expired: 'истекло', cancelled: 'отменено',
  },
  en: {
    admin: 'admin', login: 'Sign in', token_label: 'Admin token (Bearer)', sign_in: 'Sign in',
    sign_out: 'Sign out', signed_in: 'Signed in', signed_out: 'Paste an admin token',
    charts: 'Figures', from: 'From', to: 'To', refresh: 'Refresh',
    occupancy: 'Occupancy by day', revenue: 'Net revenue by day, ₸', funnel: 'Funnel',
    channels: 'Channels (bookings)', analytics_unavailable: 'Analytics unavailable on this server',
    no_data: 'no data', users: 'Users', phone_placeholder: '+7 701 123 45 67', all: 'all',
    blocked_only: 'blocked', active_only: 'active', search: 'Search', reason: 'Reason',
    role: 'Role', status: 'Status', bookings: 'Bookings', blocked: 'blocked', active: 'active',
    block: 'Block', unblock: 'Unblock', reason_required: 'Give a reason', found: 'Found',
    moderation: 'Listing moderation', pause: 'pause', archive: 'archive', restore: 'restore',
    apply: 'Apply', done: 'Done', reconciliation: 'Payment reconciliation',
    reconcile_now: 'Reconcile now', last_pass: 'Last pass', checked: 'checked',
    reconciled: 'reconciled', mismatches: 'mismatches', errors: 'errors',
    mismatched_payments: 'Payments with refused notifications', none: 'none',
    health: 'Health', store: 'Event store', read_db: 'Read database', bus: 'Bus',
    projections: 'Projections', relay: 'Relay', notary: 'Notary',
    notary_unavailable: 'notary unavailable on this server', behind: 'behind',
    stopped: 'STOPPED', error: 'Error',
    held: 'held', paid: 'paid', checked_in: 'checked in', completed: 'completed',
    expired: 'expired', cancelled: 'cancelled',
  },
};

let lang = localStorage.getItem('zhilego-admin-lang') === 'en' ? 'en' : 'ru';
const t = (k) => T[lang][k] || k;
const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
let paths = null; // the served OpenAPI document's paths: which endpoints this server has

function applyLang() {
  document.documentElement.lang = lang;
  document.querySelectorAll('[data-i18n]').forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.querySelectorAll('[data-i18n-placeholder]').forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
}

const token = () => sessionStorage.getItem('zhilego-admin-token');

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (token()) headers.Authorization = 'Bearer ' + token();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = { detail: text }; }
  return { status: res.status, json };
}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, String(v)));
  return e;
}

function problem(r) {
  return t('error') + ' ' + r.status + (r.json && r.json.detail ? ': ' + r.json.detail : '');
}

// ----- charts -------------------------------------------------------------------------------

const W = 320, H = 170, PAD = 26;

function frame(name, items) {
  const svg = svgEl('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'data-chart': name, 'data-count': items.length });
  svg.appendChild(svgEl('line', { x1: PAD, y1: H - PAD, x2: W - 4, y2: H - PAD, stroke: '#c5ccd6' }));
  return svg;
}

function label(svg, x, y, text, anchor) {
  const e = svgEl('text', { x, y, 'text-anchor': anchor || 'middle' });
  e.textContent = text;
  svg.appendChild(e);
}

function barChart(host, name, items, format) {
  host.replaceChildren();
  const svg = frame(name, items);
  const max = Math.max(1, ...items.map((i) => i.value));
  const step = (W - PAD - 4) / Math.max(1, items.length);
  items.forEach((item, n) => {
    const h = ((H - 2 * PAD) * item.value) / max;
    const x = PAD + n * step + step * 0.15;
    const bar = svgEl('rect', { class: 'bar' + (n % 2 ? ' alt' : ''), x, y: H - PAD - h, width: step * 0.7, height: h,
      'data-key': item.key, 'data-value': item.value });
    const tip = svgEl('title', {});
    tip.textContent = `${item.label}: ${format(item.value)}`;
    bar.appendChild(tip);
    svg.appendChild(bar);
    if (items.length <= 8 || n % Math.ceil(items.length / 8) === 0) label(svg, x + step * 0.35, H - PAD + 12, item.label);
  });
  label(svg, PAD - 2, PAD - 6, format(max), 'start');
  if (!items.length) label(svg, W / 2, H / 2, t('no_data'));
  host.appendChild(svg);
}

function lineChart(host, name, items, format) {
  host.replaceChildren();
  const svg = frame(name, items);
  const max = Math.max(1, ...items.map((i) => i.value));
  const step = (W - PAD - 8) / Math.max(1, items.length - 1);
  const points = items.map((item, n) => [PAD + n * step, H - PAD - ((H - 2 * PAD) * item.value) / max]);
  if (points.length) svg.appendChild(svgEl('polyline', { class: 'line', points: points.map((p) => p.join(',')).join(' ') }));
  items.forEach((item, n) => {
    const dot = svgEl('circle', { class: 'dot', cx: points[n][0], cy: points[n][1], r: 3, 'data-key': item.key, 'data-value': item.value });
    const tip = svgEl('title', {});
    tip.textContent = `${item.key}: ${format(item.value)}`;
    dot.appendChild(tip);
    svg.appendChild(dot);
    if (n % Math.max(1, Math.ceil(items.length / 6)) === 0) label(svg, points[n][0], H - PAD + 12, item.key.slice(5));
  });
  label(svg, PAD - 2, PAD - 6, format(max), 'start');
  if (!items.length) label(svg, W / 2, H / 2, t('no_data'));
  host.appendChild(svg);
}

const pct = (v) => (v * 100).toFixed(0) + '%';
const kzt = (v) => Math.round(v).toLocaleString('ru-RU') + ' ₸';
const count = (v) => String(v);

async function loadCharts() {
  const state = $('analytics-state');
  state.textContent = '';
  if (!paths || !paths['/api/v1/analytics/occupancy']) {
    state.textContent = t('analytics_unavailable');
    ['occupancy', 'revenue', 'funnel', 'channels'].forEach((c) => $('chart-' + c).replaceChildren());
    return;
  }
  const range = `from=${$('from').value}&to=${$('to').value}`;
  const [occ, rev, fun, ch] = await Promise.all([
    api('GET', `/api/v1/analytics/occupancy?${range}&group_by=day`),
    api('GET', `/api/v1/analytics/revenue?${range}&group_by=day`),
    api('GET', `/api/v1/analytics/funnel?${range}&group_by=day`),
    api('GET', `/api/v1/analytics/channels?${range}&group_by=channel`),
  ]);
  const bad = [occ, rev, fun, ch].find((r) => r.status !== 200);
  if (bad) { state.textContent = bad.status === 404 ? t('analytics_unavailable') : problem(bad); return; }
  lineChart($('chart-occupancy'), 'occupancy', occ.json.items.map((i) => ({ key: i.key, value: i.occupancy })), pct);
  barChart($('chart-revenue'), 'revenue', rev.json.items.map((i) => ({ key: i.key, label: i.key.slice(5), value: i.net_revenue_kzt })), kzt);
  const stages = ['held', 'paid', 'checked_in', 'completed', 'expired', 'cancelled'];
  const totals = stages.map((s) => ({ key: s, label: t(s), value: fun.json.items.reduce((sum, i) => sum + (i[s] || 0), 0) }));
  barChart($('chart-funnel'), 'funnel', totals, count);
  barChart($('chart-channels'), 'channels', ch.json.items.map((i) => ({ key: i.key, label: i.key, value: i.bookings })), count);
}

// ----- users ------------------------------------------------------------------------------

// Only the newest search draws: an answer to an older one (the page's first list, say) that
// arrives late must not replace it.
let usersSearch = 0;

async function loadUsers() {
  const q = new URLSearchParams({ limit: '50' });
  if ($('phone').value.trim()) q.set('phone', $('phone').value.trim());
  if ($('blocked-filter').value) q.set('blocked', $('blocked-filter').value);
  const search = ++usersSearch;
  const r = await api('GET', '/api/v1/users?' + q);
  if (search !== usersSearch) return;
  const table = $('users-table');
  const body = table.tBodies[0];
  body.replaceChildren();
  // What the rows answer, for whoever reads the table (the browser test waits on it).
  table.dataset.query = q.toString();
  if (r.status !== 200) { $('users-state').textContent = problem(r); return; }
  $('users-state').textContent = `${t('found')}: ${r.json.items.length}`;
  r.json.items.forEach((u) => {
    const row = el('tr', { 'data-user-id': u.id });
    row.appendChild(el('td', { class: 'id' }, u.id));
    row.appendChild(el('td', {}, u.role + (u.kind === 'api_key' ? ' (API)' : '')));
    const status = el('td', {});
    status.appendChild(el('span', { class: 'badge ' + (u.blocked ? 'blocked' : 'ok'), 'data-blocked': String(u.blocked) },
      u.blocked ? t('blocked') : t('active')));
    if (u.block_reason) status.appendChild(el('span', { class: 'muted' }, ' ' + u.block_reason));
    row.appendChild(status);
    row.appendChild(el('td', {}, String(u.bookings_count)));
    const act = el('td', {});
    const button = el('button', { type: 'button', class: 'act', 'data-action': u.blocked ? 'unblock' : 'block' },
      u.blocked ? t('unblock') : t('block'));
    button.addEventListener('click', () => setBlocked(u.id, u.blocked ? 'unblock' : 'block'));
    act.appendChild(button);
    row.appendChild(act);
    body.appendChild(row);
  });
}

async function setBlocked(id, action) {
  const reason = $('user-reason').value.trim();
  if (!reason) { $('users-state').textContent = t('reason_required'); $('user-reason').focus(); return; }
  const r = await api('POST', `/api/v1/users/${id}/${action}`, { reason });
  if (r.status !== 200) { $('users-state').textContent = problem(r); return; }
  await loadUsers();
}

// ----- moderation, reconciliation, health ---------------------------------------------------

async function moderate(ev) {
  ev.preventDefault();
  const id = $('listing-id').value.trim();
  const r = await api('POST', `/api/v1/listings/${encodeURIComponent(id)}/moderation`,
    { action: $('moderation-action').value, reason: $('moderation-reason').value });
  $('moderation-state').textContent = r.status === 200 ? `${t('done')}: ${r.json.title} — ${r.json.status}` : problem(r);
}

function kv(host, pairs) {
  const dl = el('dl', {});
  pairs.forEach(([k, v, attrs]) => { dl.appendChild(el('dt', {}, k)); dl.appendChild(el('dd', attrs || {}, v)); });
  host.appendChild(dl);
}

async function loadReconciliation(run) {
  const r = await api(run ? 'POST' : 'GET', '/api/v1/admin/payments/reconciliation');
  const host = $('reconciliation-report');
  host.replaceChildren();
  if (r.status !== 200) { host.textContent = problem(r); return; }
  const p = r.json.last_pass;
  kv(host, [
    [t('last_pass'), p.ran_at || '—'],
    [t('checked'), String(p.checked)],
    [t('reconciled'), String(p.reconciled.length)],
    [t('mismatches'), String(p.mismatches.length)],
    [t('errors'), p.errors.length ? p.errors.join('; ') : t('none')],
  ]);
  host.appendChild(el('h3', {}, t('mismatched_payments')));
  if (!r.json.mismatched_payments.length) { host.appendChild(el('p', { class: 'muted' }, t('none'))); return; }
  const table = el('table', {});
  r.json.mismatched_payments.forEach((m) => {
    const row = el('tr', {});
    [m.payment_id, m.status, kzt(m.amount_kzt), String(m.mismatches)].forEach((v) => row.appendChild(el('td', {}, v)));
    table.appendChild(row);
  });
  host.appendChild(table);
}

async function loadHealth() {
  const host = $('health-report');
  host.replaceChildren();
  const [ready, status] = await Promise.all([api('GET', '/readyz'), api('GET', '/api/v1/admin/status')]);
  if (status.status !== 200) { host.textContent = problem(status); return; }
  const s = status.json;
  const pairs = [
    ['readyz', ready.json ? ready.json.status : String(ready.status), { 'data-health': 'readyz' }],
    [t('store'), s.store], [t('read_db'), s.read_db], [t('bus'), s.bus],
  ];
  s.projections.forEach((p) => pairs.push([`${t('projections')}: ${p.name}`,
    p.stopped_at ? t('stopped') : `${p.position} (${t('behind')} ${p.behind_events}, ${p.lag_seconds.toFixed(1)} s)`,
    { 'data-projection': p.name }]));
  if (s.relay) pairs.push([t('relay'), `${t('behind')} ${s.relay.behind_events}, ${s.relay.lag_seconds.toFixed(1)} s`]);
  if (paths && paths['/api/v1/audit/checkpoints/latest']) {
    const n = await api('GET', '/api/v1/audit/checkpoints/latest');
    pairs.push([t('notary'), n.status === 200 ? `tree ${n.json.tree_size}` : problem(n), { 'data-health': 'notary' }]);
  } else {
    pairs.push([t('notary'), t('notary_unavailable'), { 'data-health': 'notary' }]);
  }
  kv(host, pairs);
}

// ----- start --------------------------------------------------------------------------------

async function signedIn() {
  $('who').textContent = token() ? t('signed_in') : t('signed_out');
  if (!token()) return;
  if (!paths) {
    const doc = await api('GET', '/api/v1/openapi.json');
    paths = doc.status === 200 ? doc.json.paths : {};
  }
  await Promise.all([loadCharts(), loadUsers(), loadReconciliation(false), loadHealth()]);
  document.body.dataset.ready = 'true';
}

function isoDay(d) { return d.toISOString().slice(0, 10); }

document.addEventListener('DOMContentLoaded', () => {
  applyLang();
  const today = new Date();
  $('from').value = isoDay(new Date(today.getTime() - 7 * 864e5));
  $('to').value = isoDay(new Date(today.getTime() + 14 * 864e5));
  $('lang-ru').addEventListener('click', () => { lang = 'ru'; localStorage.setItem('zhilego-admin-lang', lang); applyLang(); signedIn(); });
  $('lang-en').addEventListener('click', () => { lang = 'en'; localStorage.setItem('zhilego-admin-lang', lang); applyLang(); signedIn(); });
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem('zhilego-admin-token', $('token').value.trim());
    $('token').value = '';
    signedIn();
  });
  $('sign-out').addEventListener('click', () => { sessionStorage.removeItem('zhilego-admin-token'); location.reload(); });
  $('range-form').addEventListener('submit', (ev) => { ev.preventDefault(); loadCharts(); });
  $('user-search').addEventListener('submit', (ev) => { ev.preventDefault(); loadUsers(); });
  $('moderation-form').addEventListener('submit', moderate);
  $('reconcile-now').addEventListener('click', () => loadReconciliation(true));
  signedIn();
});
