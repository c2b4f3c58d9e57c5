// "My consumption": reads /v1/accounts/{account}/usage and draws one bar per meter.
// The API key never stays in the page: it is exchanged once for an HttpOnly cookie.
"use strict";

const $ = (id) => document.getElementById(id);
const numbers = new Intl.NumberFormat("en-US");
// The status word is the API's `state` (metering/core/status.py), the same word the CLI prints:
// "Over" only strictly above the limit; the colour is the plan's thresholds'.
const LABELS = {
  ok: "OK", at_risk: "At risk", at_limit: "At limit", over: "Over", no_credits: "No credits",
};
let refresh = null;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
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

async function problem(response) {
  try {
    const doc = await response.json();
    return doc.detail || response.statusText;
  } catch (e) {
    return response.statusText;
  }
}

function showLogin(message) {
  if (refresh) clearTimeout(refresh);
  $("login").hidden = false;
  $("logout").hidden = true;
  $("meters").replaceChildren();
  $("subtitle").textContent = "";
  $("status").textContent = "Enter your API key to see your consumption.";
  $("login-error").textContent = message || "";
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

function meterCard(meter, tz) {
  const balance = meter.aggregation === "balance";
  const card = el("article", "meter " + meter.status);
  card.dataset.meter = meter.meter;
  card.dataset.status = meter.status;
  const heading = el("h2");
  heading.append(el("span", "dot"), el("span", "name", title(meter.meter)));
  card.dataset.state = meter.state;
  heading.append(el("span", "status", LABELS[meter.state] || meter.state));
  card.append(heading);
  if (meter.description) card.append(el("p", "desc muted", meter.description));

  if (meter.limit !== null) {
    const bar = el("div", "bar");
    const fill = el("div", "fill");
    fill.style.width = Math.min(100, Math.round((meter.ratio || 0) * 1000) / 10) + "%";
    bar.append(fill);
    card.append(bar);
  }
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
  if (meter.projection && meter.limit !== null) {
    let text = "≈ " + numbers.format(meter.projection.used_at_period_end) + " by period end";
    if (meter.projection.limit_reached_at) {
      text += "; limit reached " + day(meter.projection.limit_reached_at, tz);
    }
    fact("At this pace", text);
  }
  card.append(facts);
  return card;
}

function render(usage) {
  const tz = usage.timezone;
  $("subtitle").textContent =
    usage.account + " · " + usage.plan.name + " · times in " + tz;
  $("meters").replaceChildren(...usage.meters.map((m) => meterCard(m, tz)));
  $("status").textContent = "Updated " + moment(usage.as_of, tz) + " · " + asOf(usage.freshness, tz);
}

// How fresh the counts are: the account's partition's event-time watermark and applied time,
// and the records produced but not counted yet (docs/api.md, "Freshness and waiting").
function asOf(freshness, tz) {
  if (!freshness) return "counted as of: unknown";
  const counted = freshness.applied_at
    ? "counted as of " + moment(freshness.applied_at, tz) +
      (freshness.watermark ? " (events up to " + moment(freshness.watermark, tz) + ")" : "")
    : "nothing counted yet";
  if (freshness.lag === null) return counted + "; lag unknown";
  if (freshness.lag === 0) return counted + "; up to date";
  return counted + "; " + numbers.format(freshness.lag) + " events not counted yet";
}

async function load() {
  if (refresh) clearTimeout(refresh);
  const me = await fetch("/v1/me", { credentials: "same-origin" });
  if (me.status === 401) return showLogin();
  if (!me.ok) {
    $("status").textContent = await problem(me);
    return;
  }
  const who = await me.json();
  $("login").hidden = true;
  $("logout").hidden = false;
  const account = who.account || new URLSearchParams(location.search).get("account");
  if (!account) {
    $("status").textContent = "Admin key: add ?account=<id> to the address.";
    return;
  }
  const response = await fetch("/v1/accounts/" + encodeURIComponent(account) + "/usage", {
    credentials: "same-origin",
  });
  if (!response.ok) {
    $("status").textContent = await problem(response);
    return;
  }
  render(await response.json());
  document.body.dataset.ready = "1";
  refresh = setTimeout(load, 60000);
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
