// bench/dashboard-paint's browser side: loads the status page (fresh context, then reloaded)
// and the raw status document (fresh context) RUNS times round-robin after a warm-up round,
// and prints one JSON line: every load's Performance API paint timings and their medians.
// Argument: {"base": "http://127.0.0.1:PORT", "tenant": "t", "runs": 20}
import {createRequire} from 'node:module';

// playwright-core is installed under tests/browser/ (npm ci, by scripts/test).
const require = createRequire(new URL('../tests/browser/package.json', import.meta.url));
const {chromium} = require('playwright-core');

const {base, tenant, runs} = JSON.parse(process.argv[2]);
const statusPage = `${base}/t/${encodeURIComponent(tenant)}/status`;
const statusJson = `${base}/api/tenant/${encodeURIComponent(tenant)}/status`;

async function timings(page, withMark) {
  if (withMark) {
    await page.waitForFunction(() => performance.getEntriesByName('sluice-status-rendered').length > 0);
  }
  await page.waitForFunction(() => performance.getEntriesByType('paint').length >= 2);
  return page.evaluate(() => {
    const paint = Object.fromEntries(performance.getEntriesByType('paint').map((e) => [e.name, e.startTime]));
    const mark = performance.getEntriesByName('sluice-status-rendered')[0];
    const nav = performance.getEntriesByType('navigation')[0];
    return {
      first_paint_ms: paint['first-paint'],
      first_contentful_paint_ms: paint['first-contentful-paint'],
      status_rendered_ms: mark ? mark.startTime : null,
      html_bytes: nav ? nav.encodedBodySize : null,
    };
  });
}

const loads = {
  'status page, cold cache': async (browser) => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(statusPage);
    const t = await timings(page, true);
    await context.close();
    return t;
  },
  'status page, cached script': async (browser) => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(statusPage);
    await timings(page, true);
    await page.reload();
    const t = await timings(page, true);
    await context.close();
    return t;
  },
  'raw status JSON (baseline)': async (browser) => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(statusJson);
    const t = await timings(page, false);
    await context.close();
    return t;
  },
};

function median(xs) {
  const s = xs.filter((x) => x !== null).sort((a, b) => a - b);
  if (!s.length) return null;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const names = Object.keys(loads);
const all = Object.fromEntries(names.map((n) => [n, []]));
let htmlBytes = null;
try {
  for (let round = 0; round <= runs; round++) {
    const order = names.slice(round % names.length).concat(names.slice(0, round % names.length));
    for (const name of order) {
      const t = await loads[name](browser);
      if (name === 'status page, cold cache') htmlBytes = t.html_bytes;
      if (round > 0) all[name].push(t);
    }
  }
} finally {
  await browser.close();
}
const medians = Object.fromEntries(names.map((n) => [n, {
  first_paint_ms: median(all[n].map((t) => t.first_paint_ms)),
  first_contentful_paint_ms: median(all[n].map((t) => t.first_contentful_paint_ms)),
  status_rendered_ms: median(all[n].map((t) => t.status_rendered_ms)),
}]));
console.log(JSON.stringify({medians, html_bytes: htmlBytes, loads: all}));
