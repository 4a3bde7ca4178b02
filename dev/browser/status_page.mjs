// Opens a running pipeline's status page in headless Chromium (Debian's
// chromium, driven by playwright-core) and checks what an operator relies
// on: every task is listed and its position rises between two looks, the
// checkpoint history grows, and both charts draw. Saves a screenshot.
//
//   node dev/browser/status_page.mjs URL TASKS SCREENSHOT
//
// Prints one JSON line of what it saw; exits 1 with the reason when a
// check fails. Used by examples/tests/observe.rs; dev/setup installs it.
import { chromium } from "playwright-core";

const [url, tasksArg, screenshot] = process.argv.slice(2);
const tasks = Number(tasksArg);
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const WAIT = { timeout: 30000, polling: 100 };

const browser = await chromium.launch({
  executablePath: chromiumPath,
  headless: true,
  // Root in CI: Chromium's sandbox needs a user namespace it may not have.
  args: ["--no-sandbox"],
});
const seen = {};
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(url);

  // Every task has its row.
  await page.waitForFunction(
    (n) => document.querySelectorAll("#tasks tbody tr[data-task]").length === n, tasks, WAIT);
  const positions = () => page.$$eval("#tasks tbody tr[data-task]", (rows) =>
    Object.fromEntries(rows.map((r) => [r.dataset.task,
      Number(r.querySelector(".position").textContent.replace(/[^0-9]/g, ""))])));
  seen.first = await positions();

  // A position rises between two looks.
  await page.waitForFunction((first) => {
    for (const r of document.querySelectorAll("#tasks tbody tr[data-task]")) {
      const now = Number(r.querySelector(".position").textContent.replace(/[^0-9]/g, ""));
      if (now > (first[r.dataset.task] ?? Infinity)) return true;
    }
    return false;
  }, seen.first, WAIT);
  seen.second = await positions();

  // The checkpoint history grows: a newer epoch tops it.
  const newest = () => page.$eval("#checkpoints tbody tr td:first-child",
    (td) => Number(td.textContent) || 0);
  await page.waitForFunction(() =>
    Number(document.querySelector("#checkpoints tbody tr td:first-child")?.textContent) > 0,
    null, WAIT);
  seen.epoch = await newest();
  await page.waitForFunction((e) =>
    Number(document.querySelector("#checkpoints tbody tr td:first-child")?.textContent) > e,
    seen.epoch, WAIT);
  seen.later_epoch = await newest();

  // Both charts draw a line: points, and pixels of the line's colour.
  for (const id of ["rate-chart", "checkpoint-chart"]) {
    await page.waitForFunction((id) => Number(document.getElementById(id).dataset.points) >= 2,
      id, WAIT);
    seen[id] = await page.$eval("#" + id, (c) => {
      const g = c.getContext("2d");
      const data = g.getImageData(0, 0, c.width, c.height).data;
      let coloured = 0;
      for (let i = 0; i < data.length; i += 4) {
        const [r, gr, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
        // Not grey: the grid and labels are; the line is blue or green.
        if (a > 0 && Math.max(r, gr, b) - Math.min(r, gr, b) > 60) coloured++;
      }
      return { points: Number(c.dataset.points), coloured };
    });
    if (seen[id].coloured < 20) throw new Error(`the chart #${id} drew no line: ${JSON.stringify(seen[id])}`);
  }
  seen.topology = await page.$$eval("#topology g.node", (n) => n.length);
  if (seen.topology < 2) throw new Error(`the topology shows ${seen.topology} operators`);
  if (errors.length) throw new Error(`the page logged errors: ${errors.join("; ")}`);

  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify(seen));
} catch (e) {
  console.error(`status page check failed: ${e.message}\nseen: ${JSON.stringify(seen)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
