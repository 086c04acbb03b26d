// Drives Debian's chromium (never a downloaded browser) against the runs page of `distillery up`.
// Usage: node runs-page.test.mjs <page url> <runId> <comma-separated recipe nodes> <screenshot.png> [deploymentId]
// Waits until the run shows SUCCEEDED with one SVG node per recipe stage (all completed), its evaluation report's
// size-vs-quality chart and a working report link, and, when a deployment id is given, that deployment's panel with
// its misfire plot; saves a full-page screenshot. Exit code 0 when all of that holds, 1 otherwise (with the reason).
import { chromium } from 'playwright-core';

const [url, runId, nodeList, screenshot, deploymentId] = process.argv.slice(2);
if (!url || !runId || !nodeList || !screenshot) {
  console.error('usage: node runs-page.test.mjs <url> <runId> <node,node,...> <screenshot.png> [deploymentId]');
  process.exit(2);
}
const nodes = nodeList.split(',');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const timeout = Number(process.env.RUNS_PAGE_TIMEOUT_MS || 120000);

const problems = [];
const browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
try {
  const page = await browser.newPage({ viewport: { width: 1360, height: 900 }, deviceScaleFactor: 1 });
  page.on('pageerror', e => problems.push('page error: ' + e.message));
  page.on('console', m => { if (m.type() === 'error') problems.push('console error: ' + m.text()); });
  page.on('requestfailed', r => problems.push('request failed: ' + r.url() + ' ' + (r.failure()?.errorText ?? '')));
  page.on('request', r => {
    if (!r.url().startsWith('data:') && !r.url().startsWith(new URL(url).origin)) problems.push('the page fetched from elsewhere: ' + r.url());
  });
  await page.goto(url, { waitUntil: 'domcontentloaded' });

  const run = `section.run[data-run="${runId}"]`;
  await page.waitForSelector(`${run}[data-status="SUCCEEDED"]`, { timeout });
  for (const n of nodes) {
    await page.waitForSelector(`${run} svg.graph g.node[data-node="${n}"][data-state="COMPLETED"]`, { timeout: 10000 });
  }
  const drawn = await page.$$eval(`${run} svg.graph g.node`, gs => gs.map(g => g.getAttribute('data-node')));
  if (drawn.length !== nodes.length) problems.push(`graph has nodes ${drawn} but the recipe has ${nodes}`);
  const edges = await page.$$eval(`${run} svg.graph path.edge`, ps => ps.length);
  if (edges === 0) problems.push('the graph has no edges');

  await page.waitForSelector(`${run} svg.scatter g.candidate`, { timeout: 20000 });
  const candidates = await page.$$eval(`${run} svg.scatter g.candidate`, gs => gs.map(g => g.getAttribute('data-candidate')));
  const href = await page.getAttribute(`${run} a.report-link`, 'href');
  const report = await page.request.get(new URL(href, url).toString());
  if (!report.ok() || !(await report.text()).includes('<html')) problems.push(`report link ${href} answered ${report.status()}`);
  const metricCells = await page.$$eval(`${run} table.metrics td.v`, tds => tds.map(td => td.textContent));
  if (!metricCells.some(v => / (ms|kB|MB|GB|B|tokens\/s|%|×)$/.test(v))) problems.push(`no metric shows a unit: ${metricCells}`);

  if (deploymentId) {
    const dep = `section.deployment[data-deployment="${deploymentId}"]`;
    await page.waitForSelector(`${dep} svg.misfires circle.point`, { timeout: 30000 });
    const text = await page.textContent(dep);
    if (!/rolled back/.test(text)) problems.push(`deployment panel does not show the rollback: ${text}`);
  }
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`run ${runId} SUCCEEDED on the page: nodes ${drawn.join(',')}, ${edges} edges, candidates ${candidates.join(',')}, `
    + `${metricCells.length} metrics, report ${href}; screenshot ${screenshot}`);
} catch (e) {
  problems.push(e.message);
  try {
    const pages = browser.contexts().flatMap(c => c.pages());
    if (pages.length) await pages[0].screenshot({ path: screenshot, fullPage: true });
  } catch (ignored) {
    // the screenshot of a failure is a courtesy; the failure itself is reported below
  }
} finally {
  await browser.close();
}
if (problems.length) {
  console.error('runs page check failed:\n  ' + problems.join('\n  '));
  process.exit(1);
}
