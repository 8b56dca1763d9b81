// Drives the admin dashboard in Debian's chromium (see scripts/browser-test.sh for the env).
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.env.TOOLS, 'package.json'));
const { chromium } = require('playwright-core');

const BASE = process.env.BASE;
const ADMIN = process.env.ADMIN_TOKEN;
const PHONE = '+77015550101';

function fail(message) {
  console.error('FAIL: ' + message);
  process.exitCode = 1;
  throw new Error(message);
}

function check(cond, message) {
  if (!cond) fail(message);
}

async function api(method, p, token, body) {
  const res = await fetch(BASE + p, {
    method,
    headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null };
}

function day(offset) {
  return new Date(Date.now() + offset * 864e5).toISOString().slice(0, 10);
}

// ----- seed through the API ------------------------------------------------------------------
const listing = await api('POST', '/api/v1/listings', process.env.HOST_TOKEN, {
  title: 'Квартира у Есентая', city: 'Almaty', address: 'ул. Жарокова 1',
  location: { lat: 43.22, lon: 76.93 }, rooms: 2, max_guests: 4, nightly_price_kzt: 25000,
  cleaning_fee_kzt: 5000, min_nights: 1, cancellation_policy: 'flexible', photos: [], amenities: ['wifi'],
});
check(listing.status === 201, `listing: ${listing.status} ${JSON.stringify(listing.json)}`);
const me = await api('PATCH', '/api/v1/users/me', process.env.GUEST_TOKEN, { phone: PHONE });
check(me.status === 200, `profile: ${me.status}`);
const booking = await api('POST', '/api/v1/bookings', process.env.GUEST_TOKEN,
  { listing_id: listing.json.id, check_in: day(2), check_out: day(4), guests: 2 });
check(booking.status === 201, `booking: ${booking.status} ${JSON.stringify(booking.json)}`);
// Let the read models have the seed before the page reads them.
await api('GET', `/api/v1/bookings?min_position=${booking.json.position}`, ADMIN);

// ----- the browser -------------------------------------------------------------------------
// An empty profile of its own (--user-data-dir, which playwright passes for a persistent context).
const browser = await chromium.launchPersistentContext(process.env.PROFILE_DIR, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  viewport: { width: 412, height: 915 }, // a phone
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const errors = [];
let shot = null;
try {
  const page = await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
  const offsite = [];
  page.on('request', (r) => { if (!r.url().startsWith(BASE) && !r.url().startsWith('data:')) offsite.push(r.url()); });

  await page.goto(BASE + '/admin/');
  await page.fill('#token', ADMIN);
  await page.click('#token-form button[type=submit]');
  await page.waitForSelector('body[data-ready=true]', { timeout: 20000 });

  // Charts: the figures drawn are the API's.
  const openapi = await api('GET', '/api/v1/openapi.json', ADMIN);
  const from = await page.inputValue('#from');
  const to = await page.inputValue('#to');
  if (openapi.json.paths['/api/v1/analytics/occupancy']) {
    const drawn = async (chart) => page.$$eval(`svg[data-chart=${chart}] [data-key]`,
      (marks) => marks.map((m) => [m.getAttribute('data-key'), Number(m.getAttribute('data-value'))]));
    const q = `from=${from}&to=${to}`;
    const occ = await api('GET', `/api/v1/analytics/occupancy?${q}&group_by=day`, ADMIN);
    const rev = await api('GET', `/api/v1/analytics/revenue?${q}&group_by=day`, ADMIN);
    const fun = await api('GET', `/api/v1/analytics/funnel?${q}&group_by=day`, ADMIN);
    const ch = await api('GET', `/api/v1/analytics/channels?${q}&group_by=channel`, ADMIN);
    const same = (name, got, want) => check(JSON.stringify(got) === JSON.stringify(want),
      `${name}: drawn ${JSON.stringify(got)} but the API says ${JSON.stringify(want)}`);
    same('occupancy', await drawn('occupancy'), occ.json.items.map((i) => [i.key, i.occupancy]));
    same('revenue', await drawn('revenue'), rev.json.items.map((i) => [i.key, i.net_revenue_kzt]));
    const stages = ['held', 'paid', 'checked_in', 'completed', 'expired', 'cancelled'];
    same('funnel', await drawn('funnel'), stages.map((s) => [s, fun.json.items.reduce((n, i) => n + i[s], 0)]));
    same('channels', await drawn('channels'), ch.json.items.map((i) => [i.key, i.bookings]));
    check(fun.json.items.reduce((n, i) => n + i.held, 0) >= 1, 'the seeded hold is in the funnel');
    console.log('charts match the analytics API');
  } else {
    const state = await page.textContent('#analytics-state');
    check(/недоступна|unavailable/.test(state), `no analytics endpoints, but the page says ${JSON.stringify(state)}`);
    console.log('analytics endpoints absent on this server: the page says so (charts not checked)');
  }

  // Users: phone search, then block, and the table shows it.
  await page.fill('#phone', '8 701 555 01 01');
  await page.click('#user-search button[type=submit]');
  const row = `tr[data-user-id="${process.env.GUEST_ID}"]`;
  // The page's first list (every user) may still be drawn: wait for the phone search's answer.
  const searched = new URLSearchParams({ limit: '50', phone: '8 701 555 01 01' }).toString();
  await page.waitForSelector(`#users-table[data-query="${searched}"]`, { timeout: 10000 });
  await page.waitForSelector(row, { timeout: 10000 });
  check((await page.$$('#users-table tbody tr')).length === 1, 'phone search finds exactly the guest');
  await page.fill('#user-reason', 'chargeback from the bank');
  await page.click(`${row} button[data-action=block]`);
  await page.waitForSelector(`${row} [data-blocked=true]`, { timeout: 10000 });
  const user = await api('GET', `/api/v1/users/${process.env.GUEST_ID}`, ADMIN);
  check(user.json.blocked === true && user.json.block_reason === 'chargeback from the bank', 'blocked in the API');
  const refused = await api('GET', '/api/v1/users/me', process.env.GUEST_TOKEN);
  check(refused.status === 403 && refused.json.code === 'user_blocked', 'the guest is refused');
  console.log('phone search and blocking work');

  // Moderation, reconciliation and health are shown.
  await page.fill('#listing-id', listing.json.id);
  await page.selectOption('#moderation-action', 'pause');
  await page.fill('#moderation-reason', 'photos under review');
  await page.click('#moderation-form button[type=submit]');
  await page.waitForFunction(() => /paused/.test(document.querySelector('#moderation-state').textContent));
  check((await page.textContent('#reconciliation-report')).length > 0, 'the reconciliation report is shown');
  check(/ready/.test(await page.textContent('[data-health=readyz]')), 'readyz is shown');
  check((await page.$$('[data-projection]')).length >= 4, 'every projection is shown');
  // English too.
  await page.click('#lang-en');
  await page.waitForFunction(() => document.querySelector('#users h2').textContent === 'Users');
  shot = path.join(process.env.ARTIFACTS, 'admin-dashboard.png');
  await page.screenshot({ path: shot, fullPage: true });
  check(offsite.length === 0, `the page reached off the service: ${offsite.join(', ')}`);
  check(errors.length === 0, `console errors: ${errors.join(' | ')}`);

  // The API reference renders with nothing but the service: every other origin is cut off, and
  // the page must neither ask for one nor log an error (a CSP violation would).
  const docs = await browser.newPage();
  const docsErrors = [];
  const docsOffsite = [];
  docs.on('console', (m) => { if (m.type() === 'error') docsErrors.push(m.text()); });
  docs.on('pageerror', (e) => docsErrors.push(String(e)));
  docs.on('request', (r) => {
    if (!r.url().startsWith(BASE) && !r.url().startsWith('data:') && !r.url().startsWith('blob:')) docsOffsite.push(r.url());
  });
  await docs.route('**/*', (route) => (route.request().url().startsWith(BASE) ? route.continue() : route.abort()));
  await docs.goto(BASE + '/api/v1/docs');
  await docs.waitForFunction(() => document.body.innerText.includes('ZhilyeGO API')
    && document.body.innerText.includes('/api/v1/listings'), null, { timeout: 30000 });
  const docsShot = path.join(process.env.ARTIFACTS, 'api-docs.png');
  await docs.screenshot({ path: docsShot });
  check(docsOffsite.length === 0, `the docs page reached off the service: ${docsOffsite.join(', ')}`);
  check(docsErrors.length === 0, `docs console errors: ${docsErrors.join(' | ')}`);
  console.log(`the API docs render offline: ${docsShot}`);
} finally {
  await browser.close();
}
if (shot) console.log(`screenshot: ${shot}`);
console.log(process.exitCode ? 'browser test FAILED' : 'browser test passed');
