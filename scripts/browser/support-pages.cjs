// The support pages (SPEC §15) in a real browser: Debian's chromium, headless, driven by
// puppeteer-core. Started by scripts/browser-test (which installs what it needs).
//
//   node support-pages.cjs DEPS_DIR DEMO_BINARY SHOT_DIR [--docs]
//
// Starts DEMO_BINARY (the `support_pages` example: fixed data, a fixed clock), reads the pages
// it serves and what each must show, and for each page, at desktop and at phone width:
// it answers 200 and renders; the marks in its picture match the data (one event mark per
// record); the outcome, next step and references are visible text; no console error; no
// request leaves the service's own address; the page does not scroll sideways on a phone.
// Screenshots go to SHOT_DIR. With --docs, only the desktop screenshots are written, named
// support-<page>.png (the pictures in docs/operations.md).
'use strict';
const path = require('node:path');
const fs = require('node:fs');
const readline = require('node:readline');
const { spawn } = require('node:child_process');
const { createRequire } = require('node:module');

const [depsDir, demoBinary, shotDir, mode] = process.argv.slice(2);
if (!depsDir || !demoBinary || !shotDir) {
  console.error('usage: node support-pages.cjs DEPS_DIR DEMO_BINARY SHOT_DIR [--docs]');
  process.exit(2);
}
const docs = mode === '--docs';
const puppeteer = createRequire(path.join(depsDir, 'package.json'))('puppeteer-core');

function fail(message) {
  throw new Error(message);
}

async function startDemo() {
  const child = spawn(demoBinary, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout });
  const first = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the demo printed nothing within 30 s')), 30000);
    lines.once('line', (line) => { clearTimeout(timer); resolve(line); });
    child.once('exit', (code) => reject(new Error(`the demo exited (${code}) before it was ready`)));
  });
  return { child, demo: JSON.parse(first) };
}

async function checkPage(browser, demo, page, viewport, problems) {
  const tab = await browser.newPage();
  await tab.setViewport(viewport);
  await tab.authenticate({ username: 'support', password: demo.token });
  const origin = new URL(demo.base).origin;
  tab.on('console', (msg) => { if (msg.type() === 'error') problems.push(`${page.name}: console error: ${msg.text()}`); });
  tab.on('pageerror', (error) => problems.push(`${page.name}: page error: ${error.message}`));
  tab.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(origin + '/') && !url.startsWith('data:')) problems.push(`${page.name}: request left the service: ${url}`);
  });
  tab.on('requestfailed', (request) => problems.push(`${page.name}: request failed: ${request.url()}`));
  const response = await tab.goto(demo.base + page.path, { waitUntil: 'load', timeout: 15000 });
  if (!response || response.status() !== 200) fail(`${page.name}: status ${response && response.status()}`);
  const seen = await tab.evaluate(() => ({
    text: document.body.innerText,
    eventMarks: document.querySelectorAll('svg .event-mark').length,
    windowBars: document.querySelectorAll('svg .window-bar[data-number]').length,
    pictures: [...document.querySelectorAll('.picture svg')].map((svg) => svg.getBoundingClientRect().height),
    scripts: document.scripts.length,
    pageWidth: document.documentElement.scrollWidth,
  }));
  if (seen.eventMarks !== page.eventMarks) fail(`${page.name}: ${seen.eventMarks} event marks, expected ${page.eventMarks}`);
  if (page.windowBars !== undefined && seen.windowBars !== page.windowBars) fail(`${page.name}: ${seen.windowBars} window bars, expected ${page.windowBars}`);
  if (page.name !== 'list' && !(seen.pictures.length === 1 && seen.pictures[0] > 100)) fail(`${page.name}: the picture did not render: ${seen.pictures}`);
  if (seen.scripts !== 0) fail(`${page.name}: ${seen.scripts} scripts on a page meant to need none`);
  for (const text of page.texts) {
    if (!seen.text.includes(text)) fail(`${page.name}: "${text}" is not visible text`);
  }
  if (seen.pageWidth > viewport.width + 1) fail(`${page.name}: ${seen.pageWidth} px wide at ${viewport.width} px: the page scrolls sideways`);
  const file = docs ? `support-${page.name}.png` : `${page.name}-${viewport.width}.png`;
  await tab.screenshot({ path: path.join(shotDir, file), fullPage: true });
  await tab.close();
}

async function main() {
  fs.mkdirSync(shotDir, { recursive: true });
  const started = Date.now();
  const { child, demo } = await startDemo();
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--font-render-hinting=none'],
  });
  const problems = [];
  try {
    const viewports = docs ? [{ width: 1100, height: 900 }] : [{ width: 1280, height: 900 }, { width: 375, height: 740, isMobile: true, deviceScaleFactor: 2 }];
    for (const page of demo.pages) {
      for (const viewport of viewports) await checkPage(browser, demo, page, viewport, problems);
    }
  } finally {
    await browser.close();
    child.stdin.end();
  }
  if (problems.length) fail(problems.join('\n'));
  console.log(`browser: ${demo.pages.length} pages checked in ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${shotDir}`);
}

main().catch((error) => { console.error(`browser test failed: ${error.stack || error}`); process.exit(1); });
