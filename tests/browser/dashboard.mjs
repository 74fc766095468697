// The dashboard in a real browser: headless Debian chromium driven by playwright-core.
// tests/tests/dashboard.rs starts `sluice serve`, has a build of JOB running (its task waits
// for GO_FILE, then prints the file), and runs this script with a JSON argument:
//   {"base": "http://127.0.0.1:PORT", "tenant": "t", "job": "watched", "project": "org/app",
//    "goFile": "/tmp/.../go", "marker": "unique text", "artifacts": "target/.../dashboard",
//    "userDataDir": "/tmp/fresh-dir"}
// It opens the status page, checks the job's progress bar, clicks through to the live
// console, writes the marker into GO_FILE only then, waits for the marker in the console,
// then checks the finished build's page and the history, layout and config-error pages.
// Screenshots go to ARTIFACTS; the last line printed is `RESULT {json}` with the paint timings.
import fs from 'node:fs';
import path from 'node:path';
import {chromium} from 'playwright-core';

const args = JSON.parse(process.argv[2]);
const {base, tenant, job, project, goFile, marker, artifacts, userDataDir} = args;
const t = `${base}/t/${encodeURIComponent(tenant)}`;
const screenshots = [];
const pageErrors = [];

function step(text) {
  console.log(`dashboard.mjs: ${text}`);
}

async function shot(page, name) {
  const file = path.join(artifacts, `${name}.png`);
  await page.screenshot({path: file, fullPage: true});
  screenshots.push(file);
  step(`screenshot ${file}`);
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

// The paint timings of the page as loaded, from the browser's Performance API.
async function paintTimings(page) {
  return page.evaluate(() => {
    const paint = Object.fromEntries(performance.getEntriesByType('paint').map((e) => [e.name, e.startTime]));
    const nav = performance.getEntriesByType('navigation')[0];
    const rendered = performance.getEntriesByName('sluice-status-rendered')[0];
    return {
      first_paint_ms: paint['first-paint'] ?? null,
      first_contentful_paint_ms: paint['first-contentful-paint'] ?? null,
      status_rendered_ms: rendered ? rendered.startTime : null,
      response_end_ms: nav ? nav.responseEnd : null,
      html_bytes: nav ? nav.transferSize : null,
    };
  });
}

fs.mkdirSync(artifacts, {recursive: true});
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: {width: 1280, height: 900},
});
let ok = false;
try {
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(60_000);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`); });

  // The status page while the build runs: the job's progress bar, from its estimated time.
  step(`open ${t}/status`);
  await page.goto(`${t}/status`);
  const jobRow = page.locator(`.job[data-job="${job}"]`);
  const bar = jobRow.locator('.progress[role="progressbar"]');
  await bar.waitFor({state: 'visible'});
  const cold = await paintTimings(page);
  const valuenow = await bar.getAttribute('aria-valuenow');
  const barClass = await bar.getAttribute('class');
  check(valuenow !== null && Number(valuenow) >= 0 && Number(valuenow) <= 100,
    `the progress bar has no value from the estimated time (class ${barClass}, aria-valuenow ${valuenow})`);
  check(!barClass.includes('indeterminate'), `the progress bar is indeterminate despite an estimate: ${barClass}`);
  await shot(page, 'status');
  // Again with the script cached, as a user coming back sees it.
  await page.reload();
  await bar.waitFor({state: 'visible'});
  const warm = await paintTimings(page);

  // Click through to the live console; the marker is written only once it is open.
  step('click the running job');
  await jobRow.locator('a.live').click();
  await page.waitForURL(/\/stream\/[^/?]+\?logfile=console\.log$/);
  const uuid = new URL(page.url()).pathname.split('/').pop();
  const consolePre = page.locator('#console');
  await page.waitForFunction(() => document.getElementById('console')?.textContent.includes('waiting for go'));
  const before = await consolePre.textContent();
  check(!before.includes(marker), 'the marker is in the console before it was written');
  step(`console open on ${uuid}: writing the marker`);
  fs.writeFileSync(`${goFile}.tmp`, `${marker}\n`);
  fs.renameSync(`${goFile}.tmp`, goFile);
  await page.waitForFunction((m) => document.getElementById('console')?.textContent.includes(m), marker);
  await shot(page, 'stream');
  await page.waitForFunction(() => document.getElementById('stream-state')?.textContent === 'End of stream');

  // The build page once the build is recorded as finished: result and log.
  step('build page');
  // Until the scheduler records the result the page follows the console, then reloads.
  await page.goto(`${t}/build/${uuid}`);
  await page.locator('h1 .result', {hasText: /^SUCCESS$/}).waitFor();
  await page.locator('#log', {hasText: marker}).waitFor();
  await shot(page, 'build');

  // History with filters: the warm-up build and this one succeeded; none failed.
  step('builds and buildsets');
  await page.goto(`${t}/builds?job_name=${encodeURIComponent(job)}&result=SUCCESS`);
  await page.locator('#builds tbody tr').first().waitFor();
  const rows = await page.locator('#builds tbody tr').count();
  check(rows === 2, `builds?job_name=${job}&result=SUCCESS shows ${rows} rows, not 2`);
  check(await page.locator(`#builds tr[data-uuid="${uuid}"]`).count() === 1, `build ${uuid} not listed`);
  await shot(page, 'builds');
  await page.goto(`${t}/builds?job_name=${encodeURIComponent(job)}&result=FAILURE`);
  await page.getByText('No builds.').waitFor();
  await page.goto(`${t}/buildsets?project=${encodeURIComponent(project)}&pipeline=check`);
  await page.locator('#buildsets tbody tr').first().waitFor();
  const sets = await page.locator('#buildsets tbody tr').count();
  check(sets === 2, `buildsets of ${project} in check: ${sets} rows, not 2`);

  // Layout pages.
  step('jobs, projects, config errors');
  await page.goto(`${t}/jobs`);
  await page.locator('#jobs a', {hasText: job}).waitFor();
  await page.goto(`${t}/projects`);
  await page.locator('#projects a', {hasText: project}).click();
  await page.locator('h1', {hasText: `Project ${project}`}).waitFor();
  await page.locator('main a', {hasText: job}).first().waitFor();
  await page.goto(`${t}/config-errors`);
  await page.locator('#no-config-errors').waitFor();

  check(pageErrors.length === 0, `errors in the page:\n${pageErrors.join('\n')}`);
  console.log(`RESULT ${JSON.stringify({uuid, cold, warm, screenshots})}`);
  ok = true;
} catch (e) {
  console.error(`dashboard.mjs: ${e.stack || e}`);
  if (pageErrors.length) console.error(`errors in the page:\n${pageErrors.join('\n')}`);
  try {
    const page = context.pages()[0];
    if (page) await shot(page, 'failure');
  } catch (_) { /* the browser is gone */ }
} finally {
  await context.close();
}
process.exit(ok ? 0 : 1);
