// Drives the dashboard in headless Chromium (playwright-core) through a
// failed replication and its retry. Run by
// tests/integration/dashboard_browser_test.sh, which owns the daemon and the
// registries; the two talk through marker files in OUTDIR:
//
//   this script writes   failure-seen   the failure row is on the page
//                        complete       the image is COMPLETE after the retry
//                        banner-seen    the "disconnected" banner showed
//   the shell writes     registry-up    the destination registry is back
//                        daemon-down    ferry serve was stopped
//                        daemon-up      ferry serve was started again
//
// usage: node dashboard.mjs URL TOKEN OUTDIR SCREENSHOT_DIR
// env:   DASHBOARD_DEST (destination name, default d1),
//        DASHBOARD_IMAGE (source repository:tag, default app:v1),
//        CHROMIUM (default /usr/bin/chromium)
// Exit status 0 when every check passed; 1 with "FAIL: ..." otherwise.
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const require = createRequire(new URL('../../replicator/daemon/dashboard/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [url, token, outDir, shotDir] = process.argv.slice(2);
if (!url || !token || !outDir || !shotDir) {
  console.error('usage: node dashboard.mjs URL TOKEN OUTDIR SCREENSHOT_DIR');
  process.exit(2);
}
const dest = process.env.DASHBOARD_DEST || 'd1';
const image = process.env.DASHBOARD_IMAGE || 'app:v1';
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const DESKTOP = { width: 1366, height: 900 };
const PHONE = { width: 390, height: 844 };
const t0 = Date.now();

// The whole run is bounded, whatever hangs.
const overall = setTimeout(() => {
  console.log('FAIL: the browser test did not finish in 240 s');
  process.exit(1);
}, 240_000);

function step(message) {
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${message}`);
}

function marker(name) {
  writeFileSync(join(outDir, name), `${new Date().toISOString()}\n`);
  step(`wrote ${name}`);
}

async function waitForFile(name, seconds) {
  const deadline = Date.now() + seconds * 1000;
  while (!existsSync(join(outDir, name))) {
    if (Date.now() > deadline) throw new Error(`${name} did not appear in ${seconds} s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// locator.waitFor, saying what was awaited when it times out.
async function until(what, locator, options) {
  try {
    await locator.waitFor(options);
  } catch (error) {
    throw new Error(`${what}: ${error.message.split('\n')[0]}`);
  }
}

mkdirSync(shotDir, { recursive: true });
const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
const page = await browser.newPage({ viewport: DESKTOP });
page.setDefaultTimeout(15_000);

// Script errors, and resources the page was not allowed to load, are bugs;
// 401 and 404 answers are part of the scenario.
const problems = [];
let reconnected = false;
const daemonAway = () => !reconnected && existsSync(join(outDir, 'daemon-stopping'));
page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
page.on('console', (msg) => {
  if (msg.type() !== 'error') return;
  const text = msg.text();
  if (/status of (401|404)\b/.test(text)) return;
  // The daemon is stopped on purpose ("daemon-stopping" to the reconnection):
  // requests in flight then are reset, later ones refused. At any other time
  // a failed request is a bug.
  if (daemonAway() && /Failed to load resource: net::ERR_(CONNECTION_REFUSED|CONNECTION_RESET|CONNECTION_CLOSED|EMPTY_RESPONSE)\b/.test(text)) return;
  problems.push(`console error: ${text}`);
});
page.on('requestfailed', (request) => {
  if (!request.url().startsWith(new URL(url).origin)) problems.push(`request to another origin: ${request.url()}`);
});

const card = page.getByTestId(`dest-${dest}`);
const failureRow = page.getByTestId('failure-row').filter({ hasText: dest });
const imageState = page.getByTestId(`image-dest-${dest}`).getByTestId('image-state');

async function screenshots(suffix) {
  const desktop = join(shotDir, `dashboard-desktop${suffix}.png`);
  const phone = join(shotDir, `dashboard-phone${suffix}.png`);
  await page.setViewportSize(DESKTOP);
  await page.screenshot({ path: desktop, fullPage: true });
  await page.setViewportSize(PHONE);
  // Let the charts follow the narrower cards before the picture.
  await page.waitForTimeout(300);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `at phone width the page is ${overflow} px wider than the screen`);
  await page.screenshot({ path: phone, fullPage: true });
  await page.setViewportSize(DESKTOP);
  step(`screenshots ${desktop} ${phone}`);
}

try {
  await page.goto(url);

  // No token yet: the page asks for one.
  const form = page.getByTestId('token-form');
  await until('the token prompt', form, { state: 'visible' });
  check(!(await page.getByTestId('token-error').isVisible()), 'an error shows before any token was tried');
  step('the token prompt appeared');

  // A wrong token is refused and the prompt asks again, saying so.
  await form.locator('input[name=token]').fill(`wrong-${token}`);
  await form.locator('button[type=submit]').click();
  await until('the refused-token message', page.getByTestId('token-error').filter({ hasText: 'refused' }), { state: 'visible' });
  check(await form.isVisible(), 'the prompt went away after a wrong token');
  step('a wrong token was refused');

  await form.locator('input[name=token]').fill(token);
  await form.locator('button[type=submit]').click();
  await until('the prompt to go after the right token', form, { state: 'hidden' });
  await until(`the card of ${dest}`, card, { state: 'visible' });
  check(await page.evaluate(() => sessionStorage.getItem('ferry.apiToken')) === token, 'the token is not in sessionStorage');
  step('the right token was accepted');

  // The replication to the stopped registry fails.
  await until(`a failure row for ${dest}`, failureRow.first(), { state: 'visible', timeout: 60_000 });
  const rowText = await failureRow.first().innerText();
  const errorText = (await failureRow.first().locator('td.error').innerText()).trim();
  check(rowText.includes(dest), `the failure row does not name ${dest}: ${rowText}`);
  check(errorText !== '' && errorText !== '—', `the failure row has no error: ${rowText}`);
  await until('a failed count above 0 on the card', card.getByTestId('failed').filter({ hasNotText: /^0$/ }));
  const state = await card.getByTestId('state').innerText();
  check(['degraded', 'down'].includes(state.trim().toLowerCase()), `the card says ${state} with a failure`);
  step(`failure row: ${rowText.replace(/\s+/g, ' ')}`);
  console.log('FAILURE_SEEN');
  marker('failure-seen');

  // The image's state in every destination, through the search box.
  const search = page.getByTestId('search');
  await search.locator('input[name=q]').fill(image);
  await search.locator('button[type=submit]').click();
  await until(`${image} FAILED in the search results`, imageState.filter({ hasText: 'FAILED' }));
  step(`${image} is FAILED in ${dest}`);

  await until('a journal row', page.getByTestId('journal-row').first());
  // Where each registry's credentials come from (never the secret).
  await until('a credentials row', page.getByTestId('registry-row').first());
  const credRow = (await page.getByTestId('registry-row').first().innerText()).trim();
  check(/docker config/.test(credRow), `the credentials row names no source: ${credRow}`);
  check(/^updated \d\d:\d\d:\d\d$/.test((await page.getByTestId('updated').innerText()).trim()), 'no "updated HH:MM:SS" stamp');
  await screenshots('');

  // The registry comes back; one click on retry, and the image arrives.
  await waitForFile('registry-up', 60);
  await failureRow.first().getByTestId('retry').click();
  step('clicked retry');
  await until(`${image} COMPLETE after the retry`, imageState.filter({ hasText: 'COMPLETE' }), { timeout: 30_000 });
  await until('the failed count back to 0 on the card', card.getByTestId('failed').filter({ hasText: /^0$/ }), { timeout: 30_000 });
  await until('the failure row to go', failureRow.first(), { state: 'detached', timeout: 30_000 });
  step(`${image} is COMPLETE in ${dest}; the card counts no failure`);
  await page.screenshot({ path: join(shotDir, 'dashboard-desktop-complete.png'), fullPage: true });
  marker('complete');

  // The daemon goes away: a banner says so, and polling goes on until it is back.
  await waitForFile('daemon-down', 30);
  await until('the disconnected banner', page.getByTestId('disconnected'), { state: 'visible', timeout: 10_000 });
  step(`banner: ${await page.getByTestId('disconnected').innerText()}`);
  marker('banner-seen');
  await waitForFile('daemon-up', 60);
  await until('the banner to go once the daemon is back', page.getByTestId('disconnected'), { state: 'hidden', timeout: 15_000 });
  await until(`${image} COMPLETE after reconnecting`, imageState.filter({ hasText: 'COMPLETE' }));
  reconnected = true;
  step('reconnected');

  check(problems.length === 0, problems.join('; '));
  console.log(`PASS: dashboard in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
} catch (error) {
  console.log(`FAIL: ${error.message.split('\n')[0]}`);
  if (problems.length) console.log(`also: ${problems.join('; ')}`);
  await page.screenshot({ path: join(shotDir, 'dashboard-failure.png'), fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
  clearTimeout(overall);
}
