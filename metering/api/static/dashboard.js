// "My consumption": reads /v1/accounts/{account}/usage, each windowed meter's history and the
// account's tiers, and draws one card per meter (bar, numbers, forecast, a 12-period chart in
// hand-written SVG: no third-party code) and one card per tier ladder.
// The API key never stays in the page: it is exchanged once for an HttpOnly cookie.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const HISTORY_PERIODS = 12;
const REFRESH_MS = 60000;
const numbers = new Intl.NumberFormat("en-US");
// The status word is the API's `state` (metering/core/status.py), the same word the CLI prints:
// "Over" only strictly above the limit; the colour is the plan's thresholds'.
const LABELS = {
  ok: "OK", at_risk: "At risk", at_limit: "At limit", over: "Over", no_credits: "No credits",
};
let refresh = null;
let loads = 0;
// What the live region last knew, per account: meter -> status word. Only differences from it
// are announced, so a refresh that changes nothing says nothing.
let known = { account: null, states: new Map() };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

const ACRONYMS = { sms: "SMS", api: "API" };

function title(name) {
  const words = name.split("_").map((w) => ACRONYMS[w] || w).join(" ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function day(iso, tz) {
  return new Intl.DateTimeFormat("en-GB", { timeZone: tz, dateStyle: "medium" })
    .format(new Date(iso));
}

function moment(iso, tz) {
  return new Intl.DateTimeFormat("en-GB", { timeZone: tz, dateStyle: "medium", timeStyle: "short" })
    .format(new Date(iso));
}

// A period's short label under its bar: "Nov" for months, "2026" for years, "15" for days.
function periodLabel(kind, iso, tz) {
  const options = kind.endsWith("year") ? { year: "numeric" }
    : kind === "day" ? { day: "numeric" } : { month: "short" };
  return new Intl.DateTimeFormat("en-GB", { timeZone: tz, ...options }).format(new Date(iso));
}

function periodName(kind, iso, tz) {
  const options = kind.endsWith("year") ? { year: "numeric" }
    : kind === "day" ? { dateStyle: "medium" } : { month: "long", year: "numeric" };
  return new Intl.DateTimeFormat("en-GB", { timeZone: tz, ...options }).format(new Date(iso));
}

async function problem(response) {
  try {
    const doc = await response.json();
    return doc.detail || response.statusText;
  } catch (e) {
    return response.statusText;
  }
}

async function getJson(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  if (!response.ok) throw new Error(await problem(response));
  return response.json();
}

function showLogin(message) {
  if (refresh) clearTimeout(refresh);
  $("login").hidden = false;
  $("logout").hidden = true;
  $("refresh").hidden = true;
  $("picker").hidden = true;
  $("meters").replaceChildren();
  $("tier-cards").replaceChildren();
  $("tiers").hidden = true;
  $("subtitle").textContent = "";
  $("freshness").textContent = "";
  $("status").textContent = "Enter your API key to see your consumption.";
  $("login-error").textContent = message || "";
  known = { account: null, states: new Map() };
}

async function exchange(key) {
  const response = await fetch("/v1/session", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ key: key }),
  });
  if (!response.ok) throw new Error(await problem(response));
}

// The bar is a progressbar for assistive technology: value clamped to [0, limit], the exact
// numbers and the status word in aria-valuetext.
function progressBar(meter) {
  const bar = el("div", "bar");
  const shown = Math.min(meter.used, meter.limit);
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-label", title(meter.meter) + " used");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", String(meter.limit));
  bar.setAttribute("aria-valuenow", String(Math.max(0, shown)));
  bar.setAttribute("aria-valuetext", numbers.format(meter.used) + " of " +
    numbers.format(meter.limit) + " (" + (LABELS[meter.state] || meter.state) + ")");
  const fill = el("div", "fill");
  fill.style.width = Math.min(100, Math.round((meter.ratio || 0) * 1000) / 10) + "%";
  bar.append(fill);
  return bar;
}

// The forecast ("at this pace") is the API's `projection` (metering/core/status.py), computed
// from the period so far: used_at_period_end = used x period length / elapsed, and the limit
// is reached at period start + limit x elapsed / used when that falls inside the period.
function forecast(meter, tz) {
  const p = meter.projection;
  const byEnd = "≈ " + numbers.format(p.used_at_period_end) + " by period end";
  if (p.limit_reached_at) {
    return "you reach the limit on " + day(p.limit_reached_at, tz) + " (" + byEnd + ")";
  }
  if (meter.used >= meter.limit) return "the limit is already reached (" + byEnd + ")";
  return "you stay within the limit this period (" + byEnd + ")";
}

function historyChart(meter, past, tz) {
  const rows = past.periods;
  const width = 360, height = 130, top = 8, bottom = 18;
  const limits = rows.map((r) => r.limit).filter((l) => l !== null);
  const scale = Math.max(1, ...rows.map((r) => r.used), ...limits);
  const plot = height - top - bottom;
  const slot = width / rows.length;
  const y = (value) => top + plot - (value / scale) * plot;
  const figure = el("figure", "history");
  const caption = el("figcaption", null, "Last " + rows.length + " periods");
  caption.id = "history-" + meter.meter;
  const chart = svg("svg", {
    viewBox: "0 0 " + width + " " + height, role: "img", "aria-labelledby": caption.id,
  });
  const summary = rows.map((r) => periodName(past.kind, r.start, tz) + ": " +
    numbers.format(r.used) + (r.limit === null ? "" : " of " + numbers.format(r.limit)));
  chart.append(svg("desc", {}, summary.join("; ")));
  rows.forEach((row, i) => {
    const h = Math.max(row.used > 0 ? 1 : 0, (row.used / scale) * plot);
    const rect = svg("rect", {
      x: (i * slot + slot * 0.15).toFixed(1), width: (slot * 0.7).toFixed(1),
      y: (top + plot - h).toFixed(1), height: h.toFixed(1),
      class: row.status + (row.closed ? "" : " current"),
      "data-period": row.period, "data-used": row.used,
    });
    rect.append(svg("title", {}, summary[i] + (row.closed ? "" : " (so far)")));
    chart.append(rect);
    chart.append(svg("text", {
      x: (i * slot + slot / 2).toFixed(1), y: height - 4, "text-anchor": "middle",
    }, periodLabel(past.kind, row.start, tz)));
  });
  chart.append(svg("line", {
    class: "axis", x1: 0, x2: width, y1: top + plot, y2: top + plot,
  }));
  const current = rows[rows.length - 1].limit;
  if (current !== null) {
    chart.append(svg("line", {
      class: "limit", x1: 0, x2: width, y1: y(current).toFixed(1), y2: y(current).toFixed(1),
    }));
  }
  figure.append(caption, chart);
  return figure;
}

function meterCard(meter, tz, past) {
  const balance = meter.aggregation === "balance";
  const card = el("article", "meter " + meter.status);
  card.dataset.meter = meter.meter;
  card.dataset.status = meter.status;
  card.dataset.state = meter.state;
  const heading = el("h2");
  heading.append(el("span", "dot"), el("span", "name", title(meter.meter)));
  heading.append(el("span", "status", LABELS[meter.state] || meter.state));
  card.append(heading);
  if (meter.description) card.append(el("p", "desc muted", meter.description));

  if (meter.limit !== null && !balance) card.append(progressBar(meter));
  const line = el("div", "numbers");
  if (balance) {
    line.append(el("span", "used", numbers.format(meter.used) + " credits left"));
  } else if (meter.limit !== null) {
    line.append(el("span", "used",
      numbers.format(meter.used) + " / " + numbers.format(meter.limit)));
    line.append(el("span", "percent", Math.round((meter.ratio || 0) * 100) + "%"));
  } else {
    line.append(el("span", "used", numbers.format(meter.used) + " (no limit)"));
  }
  card.append(line);

  const facts = el("dl");
  const fact = (name, value) => facts.append(el("dt", null, name), el("dd", null, value));
  if (meter.remaining !== null && !balance) fact("Remaining", numbers.format(meter.remaining));
  if (meter.extension) fact("Extension", "+" + numbers.format(meter.extension) + " this period");
  // Units admitted and held for usage not counted yet (docs/api.md, "Holds"): beside the
  // usage, never inside it (the bar, status and remaining count usage only).
  if (meter.held) fact("Held", numbers.format(meter.held) + (balance ? " credits" : "") + " admitted, not counted yet");
  if (meter.period) {
    const last = new Date(new Date(meter.period.end).getTime() - 1).toISOString();
    fact("Consumption since", day(meter.period.start, tz) + " (until " + day(last, tz) + ")");
  }
  fact("Last update", meter.last_update ? moment(meter.last_update, tz) : "no usage yet");
  if (meter.projection && meter.limit !== null) fact("At this pace", forecast(meter, tz));
  card.append(facts);
  if (past) card.append(historyChart(meter, past, tz));
  return card;
}

// One card per ladder of the plan: the tier the last closed months place the account in,
// those months, and the boundary above which the average moves it to the next tier.
function tierCard(entry) {
  const card = el("article", "tier");
  card.dataset.ladder = entry.ladder;
  const heading = el("h3", null, title(entry.ladder) + " tier");
  card.append(heading, el("p", "muted", "by the average of " + title(entry.meter).toLowerCase()));
  const p = entry.placement;
  if (!p) {
    card.append(el("p", "placed", "Not available yet"));
    if (entry.note) card.append(el("p", "muted", entry.note));
    return card;
  }
  const placed = p.up_to === null ? "Above every tier" : "Up to " + numbers.format(p.up_to);
  card.append(el("p", "placed", placed + (p.complete ? "" : " (provisional)")));
  const table = el("table");
  const head = el("tr");
  head.append(el("th", null, "Month"), el("th", null, "Used"));
  table.append(head);
  for (const month of p.months) {
    const row = el("tr");
    row.append(el("td", null, month.period), el("td", null, numbers.format(month.used)));
    table.append(row);
  }
  card.append(table);
  const facts = el("dl");
  const fact = (name, value) => facts.append(el("dt", null, name), el("dd", null, value));
  fact("Monthly average", numbers.format(Math.round(p.average)));
  const bounds = entry.bounds || [];
  const above = bounds.find((b) => p.up_to !== null && b > p.up_to);
  if (p.up_to === null) {
    fact("Next boundary", "none: above the highest tier (" + numbers.format(bounds[bounds.length - 1]) + ")");
  } else if (above !== undefined) {
    fact("Next boundary", "an average above " + numbers.format(p.up_to) +
      " moves you to up to " + numbers.format(above));
  } else {
    fact("Next boundary", "none: this is the highest tier");
  }
  card.append(facts);
  return card;
}

// How fresh the counts are: the account's partition's event-time watermark and applied time,
// and the records produced but not counted yet (docs/api.md, "Freshness and waiting").
function asOf(freshness, tz) {
  if (!freshness) return "Counted as of: unknown";
  const counted = freshness.applied_at
    ? "Counted as of " + moment(freshness.applied_at, tz) +
      (freshness.watermark ? " (events up to " + moment(freshness.watermark, tz) + ")" : "")
    : "Nothing counted yet";
  if (freshness.lag === null) return counted + "; lag unknown";
  if (freshness.lag === 0) return counted + "; up to date";
  return counted + "; " + numbers.format(freshness.lag) + " events not counted yet";
}

// The live region hears only what changed since the last answer for the same account.
function announce(usage) {
  const fresh = known.account !== usage.account;
  const changes = [];
  for (const meter of usage.meters) {
    const before = known.states.get(meter.meter);
    if (!fresh && before !== undefined && before !== meter.state) {
      changes.push(title(meter.meter) + " is now " + (LABELS[meter.state] || meter.state) +
        " (" + numbers.format(meter.used) +
        (meter.limit === null ? "" : " of " + numbers.format(meter.limit)) + ")");
    }
  }
  known = { account: usage.account, states: new Map(usage.meters.map((m) => [m.meter, m.state])) };
  if (changes.length) $("announce").textContent = changes.join(". ") + ".";
}

function render(usage, histories, tiers) {
  const tz = usage.timezone;
  $("subtitle").textContent =
    usage.account + " · " + usage.plan.name + " · times in " + tz;
  $("meters").replaceChildren(...usage.meters.map((m) => meterCard(m, tz, histories[m.meter])));
  const ladders = tiers ? tiers.ladders : [];
  $("tier-cards").replaceChildren(...ladders.map(tierCard));
  $("tiers").hidden = ladders.length === 0;
  $("status").textContent = "Updated " + moment(usage.as_of, tz);
  $("freshness").textContent = asOf(usage.freshness, tz);
  announce(usage);
}

async function pickAccount(who) {
  const asked = new URLSearchParams(location.search).get("account");
  if (who.account) return who.account;
  const listed = (await getJson("/v1/accounts")).accounts.map((a) => a.id).sort();
  const select = $("account");
  if (select.options.length !== listed.length ||
      [...select.options].some((o, i) => o.value !== listed[i])) {
    select.replaceChildren(...listed.map((id) => {
      const option = el("option", null, id);
      option.value = id;
      return option;
    }));
  }
  $("picker").hidden = false;
  const chosen = listed.includes(asked) ? asked : listed[0];
  if (chosen === undefined) return null;
  select.value = chosen;
  return chosen;
}

async function load() {
  if (refresh) clearTimeout(refresh);
  try {
    const me = await fetch("/v1/me", { credentials: "same-origin" });
    if (me.status === 401) return showLogin();
    if (!me.ok) throw new Error(await problem(me));
    const who = await me.json();
    $("login").hidden = true;
    $("logout").hidden = false;
    $("refresh").hidden = false;
    const account = await pickAccount(who);
    if (!account) {
      $("status").textContent = "This admin key sees no accounts yet.";
      return;
    }
    const base = "/v1/accounts/" + encodeURIComponent(account);
    const usage = await getJson(base + "/usage");
    const windowed = usage.meters.filter((m) => m.period !== null);
    const [histories, tiers] = await Promise.all([
      Promise.all(windowed.map((m) => getJson(base + "/meters/" + encodeURIComponent(m.meter) +
        "/history?periods=" + HISTORY_PERIODS))),
      getJson(base + "/tiers"),
    ]);
    const byMeter = Object.fromEntries(histories.map((h) => [h.meter, h]));
    render(usage, byMeter, tiers);
    loads += 1;
    document.body.dataset.loads = String(loads);
    document.body.dataset.ready = "1";
  } catch (e) {
    $("status").textContent = e.message;
  }
  refresh = setTimeout(load, REFRESH_MS);
}

async function start() {
  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await exchange($("key").value);
      $("key").value = "";
      await load();
    } catch (e) {
      showLogin(e.message);
    }
  });
  $("logout").addEventListener("click", async () => {
    await fetch("/v1/session", { method: "DELETE", credentials: "same-origin" });
    showLogin();
  });
  $("refresh").addEventListener("click", () => load());
  $("account").addEventListener("change", () => {
    const params = new URLSearchParams(location.search);
    params.set("account", $("account").value);
    history.replaceState(null, "", location.pathname + "?" + params.toString());
    load();
  });
  const match = location.hash.match(/^#key=(.+)$/);
  if (match) {
    history.replaceState(null, "", location.pathname + location.search);
    try {
      await exchange(decodeURIComponent(match[1]));
    } catch (e) {
      return showLogin(e.message);
    }
  }
  await load();
}

start();
