// Drives Debian's headless Chromium through a scenario for phigate's
// browser-login tests, and prints one JSON result per step on stdout.
//
//   node browser.mjs '<json steps>'
//
// Steps (one browser context for the whole scenario, so cookies persist):
//   {"op":"goto","url":U}                 navigate; result: final url, status, text
//   {"op":"login","user":U,"mfa":bool}    fill and submit the test IdP's form
//   {"op":"cookies","url":U}              the cookies the browser holds for U
//   {"op":"set_cookie","url":U,"name":N,"value":V}  overwrite a cookie (tampering)
//   {"op":"sleep","ms":N}
// Each result: {"url", "status", "text", "cookies"?}.

import { chromium } from 'playwright-core';

const steps = JSON.parse(process.argv[2] || '[]');
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const context = await browser.newContext({ ignoreHTTPSErrors: true });
const page = await context.newPage();
let lastStatus = 0;
page.on('response', (r) => { if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) lastStatus = r.status(); });

const out = [];
const snapshot = async () => ({
  url: page.url(),
  status: lastStatus,
  text: (await page.evaluate(() => document.body ? document.body.innerText : '').catch(() => '')).slice(0, 4000),
});

try {
  for (const s of steps) {
    switch (s.op) {
      case 'goto':
        await page.goto(s.url, { waitUntil: 'load', timeout: 15000 }).catch((e) => { out.push({ error: String(e.message).slice(0, 300) }); });
        out.push(await snapshot());
        break;
      case 'login': {
        // Generous: on a loaded 2-core machine the first IdP page can be slow.
        await page.waitForSelector('#login-user', { timeout: 20000 });
        await page.fill('#login-user', s.user);
        await page.fill('#login-password', s.password || 'test');
        if (s.mfa) await page.check('#login-otp');
        if (s.auth_age) await page.evaluate((a) => { document.getElementById('login-auth-age').value = String(a); }, s.auth_age);
        await Promise.all([
          page.waitForNavigation({ waitUntil: 'load', timeout: 15000 }).catch(() => {}),
          page.click('#login-submit'),
        ]);
        // The IdP may hop through consent and the callback before settling.
        await page.waitForLoadState('load').catch(() => {});
        out.push(await snapshot());
        break;
      }
      case 'click':
        await Promise.all([
          page.waitForNavigation({ waitUntil: 'load', timeout: 15000 }).catch(() => {}),
          page.click(s.selector),
        ]);
        await page.waitForLoadState('load').catch(() => {});
        out.push(await snapshot());
        break;
      case 'cookies':
        out.push({ ...(await snapshot()), cookies: await context.cookies(s.url) });
        break;
      case 'set_cookie': {
        const existing = (await context.cookies(s.url)).find((c) => c.name === s.name);
        await context.addCookies([{ ...(existing || {}), name: s.name, value: s.value, url: existing ? undefined : s.url }]);
        out.push({ ok: true });
        break;
      }
      case 'sleep':
        await new Promise((r) => setTimeout(r, s.ms));
        out.push({ ok: true });
        break;
      default:
        throw new Error(`unknown step ${s.op}`);
    }
  }
} finally {
  process.stdout.write(`${JSON.stringify(out)}\n`);
  await browser.close();
}
