// The marketplace web UI in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core). Run by crates/kiln-cli/tests/web.rs, which
// starts a real `kiln serve`, creates the users and seeds entries, and passes:
//   KILN_URL            the server
//   KILN_UPLOAD_IMAGE   a small qcow2 image to upload through the form
//   KILN_SEED_SHA256    sha256 of the seeded entry "Debian 12 base"
// Users: admin, dev (developer), reader; password "<name>-password".
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const base = process.env.KILN_URL;
const image = process.env.KILN_UPLOAD_IMAGE;
const seedSha256 = process.env.KILN_SEED_SHA256;
const seedEndorser = process.env.KILN_SEED_ENDORSER;
assert.ok(base && image && seedSha256, "KILN_URL, KILN_UPLOAD_IMAGE and KILN_SEED_SHA256 are set");

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox"],
  });
});
after(async () => {
  await browser?.close();
});

/// A fresh browser context (its own cookies) with one page.
async function fresh() {
  const context = await browser.newContext({ baseURL: base });
  const page = await context.newPage();
  return { context, page };
}

async function login(page, name, password = `${name}-password`) {
  await page.goto("/login");
  await page.fill("input[name=name]", name);
  await page.fill("input[name=password]", password);
  await Promise.all([page.waitForLoadState("load"), page.click("#login-form button[type=submit]")]);
}

async function titles(page) {
  return page.locator("table.entries tr.entry td:first-child a").allTextContents();
}

test("login: a wrong password is refused, the right one opens a session cookie", async () => {
  const { context, page } = await fresh();
  await login(page, "dev", "not-the-password");
  assert.equal(await page.textContent("#error"), "wrong name or password");
  assert.equal(await page.locator("#me").count(), 0, "still logged out");
  const refused = await page.request.get("/api/v1/me", { failOnStatusCode: false });
  assert.equal(refused.status(), 401);

  await login(page, "dev");
  assert.equal(new URL(page.url()).pathname, "/");
  assert.equal(await page.textContent("#me"), "dev");
  const cookie = (await context.cookies()).find((c) => c.name === "kiln_session");
  assert.ok(cookie, "kiln_session is set");
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, "Lax");
  assert.equal(cookie.secure, false, "plain http on loopback: no Secure");
  assert.equal(await page.evaluate(() => document.cookie.includes("kiln_session")), false, "scripts cannot read it");
  const me = await page.request.get("/api/v1/me");
  assert.equal((await me.json()).name, "dev");

  // Logout revokes the session on the server, not only in this browser.
  await Promise.all([page.waitForLoadState("load"), page.click("#logout")]);
  assert.equal(await page.locator("#login").count(), 1);
  const replay = await fetch(`${base}/api/v1/me`, { headers: { cookie: `kiln_session=${cookie.value}` } });
  assert.equal(replay.status, 401, "the old session token is dead");
  await context.close();
});

test("cookies get Secure behind a proxy that says https", async () => {
  const r = await fetch(`${base}/login`, { headers: { "x-forwarded-proto": "https" } });
  const cookies = r.headers.getSetCookie();
  assert.ok(cookies.some((c) => c.startsWith("kiln_csrf=") && /;\s*Secure/.test(c) && /HttpOnly/.test(c) && /SameSite=Lax/.test(c)), cookies.join(" | "));
  const plain = await fetch(`${base}/login`);
  assert.ok(plain.headers.getSetCookie().every((c) => !/Secure/.test(c)));
});

test("search and filter: free text, os, arch, tag, latest per series, paging counts", async () => {
  const { context, page } = await fresh();
  await page.goto("/");
  const all = await titles(page);
  for (const t of ["Debian 12 base", "Debian 12 web", "Alpine 3.20"]) assert.ok(all.includes(t), `${t} in ${all}`);

  await page.fill("#search input[name=q]", "alpine");
  await Promise.all([page.waitForLoadState("load"), page.click("#search button[type=submit]")]);
  assert.deepEqual(await titles(page), ["Alpine 3.20"]);
  assert.match(await page.textContent("#count"), /^1–1 of 1$/);

  await page.goto("/");
  await page.fill("#search input[name=os]", "debian");
  await Promise.all([page.waitForLoadState("load"), page.click("#search button[type=submit]")]);
  assert.deepEqual((await titles(page)).sort(), ["Debian 12 base", "Debian 12 web"]);
  assert.equal(new URL(page.url()).searchParams.get("os"), "debian", "filters live in the URL");

  await page.check("#search input[name=latest]");
  await Promise.all([page.waitForLoadState("load"), page.click("#search button[type=submit]")]);
  assert.deepEqual(await titles(page), ["Debian 12 web"], "latest of series debian-12");

  await page.goto("/?arch=aarch64");
  assert.deepEqual(await titles(page), ["Alpine 3.20"]);
  await page.goto("/?tag=web");
  assert.deepEqual(await titles(page), ["Debian 12 web"]);
  await page.goto("/?q=no-such-image");
  assert.equal(await page.textContent("p.empty"), "No entries match.");
  await page.goto("/?status=bogus");
  assert.equal(await page.textContent("#error"), 'unknown status "bogus"');

  // Paging (25 a page): a page past the end lists nothing and links back.
  await page.goto("/?sort=title&page=1");
  assert.equal(await page.locator("tr.entry").count(), 0);
  assert.equal(await page.locator("a[rel=prev]").count(), 1);

  // Publisher page: dev's entries.
  await page.goto("/");
  await Promise.all([page.waitForLoadState("load"), page.locator("tr.entry td a[href='/publishers/dev']").first().click()]);
  assert.equal(await page.textContent("#publisher"), "dev");
  assert.ok((await titles(page)).length >= 3);
  await context.close();
});

test("the entry page shows checksums, locations, details and the versions of its series", async () => {
  const { context, page } = await fresh();
  await page.goto("/?q=Debian 12 base");
  await Promise.all([page.waitForLoadState("load"), page.click("text=Debian 12 base")]);
  assert.equal(await page.textContent("code.digest[data-algo=sha256]"), seedSha256);
  assert.match(await page.textContent("code.digest[data-algo=sha512]"), /^[0-9a-f]{128}$/);
  assert.match(await page.textContent("#locations"), /stored in this marketplace/);
  assert.match(await page.textContent("#details"), /debian/);
  assert.equal(await page.locator("#versions tbody tr").count(), 2, "both entries of series debian-12");
  // Its endorsement, verified when `kiln push --sign` submitted it.
  assert.equal(await page.locator("#endorsements tbody tr").count(), 1);
  assert.equal(await page.textContent("#endorsements code.endorser"), seedEndorser);
  assert.equal(await page.textContent("#endorsements td.status"), "active");
  // The download link serves the bytes whose digest the page shows.
  const href = await page.getAttribute("#download", "href");
  const body = await (await page.request.get(href)).body();
  assert.equal(createHash("sha256").update(body).digest("hex"), seedSha256);
  // An entry nobody endorsed says so.
  await page.goto("/?q=Alpine 3.20");
  await Promise.all([page.waitForLoadState("load"), page.click("text=Alpine 3.20")]);
  assert.equal(await page.textContent("#no-endorsements"), "No endorsements.");
  await context.close();
});

test("upload through the form: chunked session, progress to 100%, the entry appears", async () => {
  const { context, page } = await fresh();
  await login(page, "dev");
  const patches = [];
  page.on("request", (r) => {
    if (r.method() === "PATCH" && r.url().includes("/api/v1/uploads/")) patches.push(r.headers()["content-range"]);
  });
  await page.goto("/upload?chunk_kib=64");
  await page.setInputFiles("#file", image);
  await page.fill("input[name=title]", "Uploaded from Chromium");
  await page.fill("textarea[name=description]", "sent in 64 KiB chunks");
  await page.fill("input[name=os]", "debian");
  await page.fill("input[name=arch]", "x86_64");
  await page.fill("input[name=tags]", "browser, e2e");
  await page.click("#upload-button");
  await page.waitForSelector("#published", { timeout: 60_000 });
  assert.equal(await page.getAttribute("#progress", "value"), "100");
  assert.equal(await page.textContent("#progress-text"), "100%");
  const size = readFileSync(image).length;
  assert.equal(patches.length, Math.ceil(size / 65536), `one PATCH per 64 KiB chunk: ${patches.length}`);
  assert.equal(patches[0], "bytes 0-65535/*");

  await Promise.all([page.waitForLoadState("load"), page.click("#published")]);
  assert.equal(await page.textContent("#title"), "Uploaded from Chromium active");
  const sha = createHash("sha256").update(readFileSync(image)).digest("hex");
  assert.equal(await page.textContent("code.digest[data-algo=sha256]"), sha);
  assert.match(await page.textContent("#details"), /Format\s*qcow2/);

  // Anyone finds it now.
  const anon = await browser.newPage({ baseURL: base });
  await anon.goto("/?tag=e2e");
  assert.deepEqual(await titles(anon), ["Uploaded from Chromium"]);
  await anon.close();
  await context.close();
});

test("CSRF: forms and cookie-authenticated API calls without the token are refused", async () => {
  const { context, page } = await fresh();
  await login(page, "admin");
  // A form post without the token (as another site would send it).
  const form = await page.request.post("/admin/users", {
    form: { name: "mallory", role: "admin", password: "x" },
    failOnStatusCode: false,
  });
  assert.equal(form.status(), 403);
  assert.match(await form.text(), /CSRF/);
  const wrong = await page.request.post("/admin/users", {
    form: { name: "mallory", role: "admin", password: "x", csrf: "0".repeat(64) },
    failOnStatusCode: false,
  });
  assert.equal(wrong.status(), 403);
  const logout = await page.request.post("/logout", { form: {}, failOnStatusCode: false });
  assert.equal(logout.status(), 403, "even logout needs the token");
  // The API with the session cookie but no X-CSRF-Token header.
  const api = await page.evaluate(async () => {
    const r = await fetch("/api/v1/entries", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ title: "forged" }),
    });
    return r.status;
  });
  assert.equal(api, 403);
  await page.goto("/admin/users");
  assert.equal(await page.locator("tr[data-user=mallory]").count(), 0, "no user was created");
  assert.equal(await page.textContent("#me"), "admin", "still logged in");
  await context.close();
});

test("a reader sees no admin pages; anonymous visitors are sent to log in", async () => {
  const { context, page } = await fresh();
  const anon = await page.goto("/admin/users");
  assert.equal(new URL(page.url()).pathname, "/login");
  assert.equal(new URL(page.url()).searchParams.get("next"), "/admin/users");
  assert.equal(anon.status(), 200);

  await login(page, "reader");
  assert.equal(await page.locator("nav a[href='/admin/users']").count(), 0);
  assert.equal(await page.locator("nav a[href='/upload']").count(), 0);
  for (const path of ["/admin/users", "/admin/catalogues", "/upload"]) {
    const r = await page.goto(path);
    assert.equal(r.status(), 403, path);
  }
  await context.close();
});

test("an admin creates a user, who then logs in; changes a role; manages a catalogue", async () => {
  const { context, page } = await fresh();
  await login(page, "admin", "admin-password");
  // Logged in from the redirect: login sends us back to where we were.
  await page.goto("/admin/users");
  await page.fill("#new-user input[name=name]", "carol");
  await page.selectOption("#new-user select[name=role]", "reader");
  await page.fill("#new-user input[name=password]", "carol-password");
  await Promise.all([page.waitForLoadState("load"), page.click("#new-user button[type=submit]")]);
  assert.match(await page.textContent("#new-token"), /^kiln_[0-9a-f]{64}$/);
  assert.equal(await page.locator("tr[data-user=carol]").count(), 1);

  const row = page.locator("tr[data-user=carol]");
  await row.locator("select[name=role]").selectOption("developer");
  await Promise.all([page.waitForLoadState("load"), row.locator("button").click()]);
  assert.equal(await page.locator("tr[data-user=carol] select[name=role]").inputValue(), "developer");

  const carol = await fresh();
  await login(carol.page, "carol");
  assert.equal(await carol.page.textContent("#me"), "carol");
  assert.equal(await carol.page.locator("nav a[href='/upload']").count(), 1, "a developer may upload");
  await carol.context.close();

  await page.goto("/admin/catalogues");
  await page.fill("#new-catalogue input[name=name]", "team");
  await page.fill("#new-catalogue input[name=description]", "private images");
  await Promise.all([page.waitForLoadState("load"), page.click("#new-catalogue button[type=submit]")]);
  const team = page.locator("tr[data-catalogue=team]");
  assert.match(await team.textContent(), /private/);
  await team.locator("input[name=user]").fill("carol");
  await Promise.all([page.waitForLoadState("load"), team.locator("button", { hasText: "Add" }).click()]);
  assert.match(await page.locator("tr[data-catalogue=team]").textContent(), /carol/);
  await context.close();
});
