"""The status page: one self-contained HTML document (inline CSS and JS; no CDN, no
build step, no external request but its own ``status.json`` and ``force``).

The script fetches ``status.json`` ``refresh`` seconds after the previous fetch ended (one
at a time, each abandoned after ``max(refresh, 5 s)``) and redraws one table row
per breaker (``tr[data-service][data-endpoint]``, the state in ``td.state``), built with
DOM calls and ``textContent`` only, so no service or endpoint name can inject markup.
While the JSON says forcing is enabled, each row has open/closed/reset buttons that
POST to ``force`` with the token typed into the page (kept in memory, never stored).
"""

from __future__ import annotations

import json

__all__ = ["render_page"]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>resilience: breakers</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em;margin:0 0 .3em}
#meta{color:#666;margin-bottom:1em}
#error{color:#fff;background:#b00;padding:.3em .6em;display:none}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;white-space:nowrap}
th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.state{font-weight:bold}
.state-closed{color:#080}.state-open,.state-forced_open{color:#fff;background:#c00}
.state-half_open{background:#fc0}.state-forced_closed,.state-disabled{background:#ccc}
tr.broken td{color:#b00}
.bar{display:inline-block;width:5em;height:.7em;background:#eee;vertical-align:middle}
.bar i{display:block;height:100%;background:#68a}
#forcing{display:none;margin-bottom:1em}
</style></head><body>
<h1>Circuit breakers</h1>
<div id="meta">loading&hellip;</div>
<div id="error"></div>
<div id="forcing">token: <input id="token" type="password" autocomplete="off">
operator: <input id="operator" size="12"> <span id="forced"></span></div>
<table><thead><tr><th>service</th><th>endpoint</th><th>state</th><th>failure rate</th>
<th>slow-call rate</th><th>window</th><th>open until</th><th>retry budget</th>
<th>bulkhead</th><th class="act"></th></tr></thead><tbody id="rows"></tbody></table>
<script>
"use strict";
const JSON_URL = __JSON_URL__, FORCE_URL = __FORCE_URL__, REFRESH_MS = __REFRESH_MS__;
const $ = (id) => document.getElementById(id);
const pct = (x) => (100 * x).toFixed(1) + "%";
function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}
function bar(td, fill) {
  const b = document.createElement("span"), i = document.createElement("i");
  b.className = "bar"; i.style.width = pct(fill); b.appendChild(i); td.appendChild(b);
}
async function force(service, endpoint, action) {
  const r = await fetch(FORCE_URL, {method: "POST", headers: {
      "Content-Type": "application/json", "Authorization": "Bearer " + $("token").value},
    body: JSON.stringify({service, endpoint, action, operator: $("operator").value})});
  const doc = await r.json().catch(() => ({error: r.statusText}));
  $("forced").textContent = r.ok ? `forced ${service} ${endpoint} ${action}`
                                 : `refused (${r.status}): ${doc.error}`;
  await refresh();
}
function row(svc, b, forcing) {
  const tr = document.createElement("tr");
  tr.dataset.service = svc.service; tr.dataset.endpoint = b.endpoint;
  tr.dataset.state = b.state;
  cell(tr, svc.service + (svc.kind === "policy" ? " (policy)" : ""));
  cell(tr, b.endpoint);
  cell(tr, b.state.toUpperCase(), "state state-" + b.state);
  cell(tr, `${pct(b.failure_rate)} / ${pct(b.failure_rate_threshold)}`, "num");
  cell(tr, `${pct(b.slow_call_rate)} / ${pct(b.slow_call_rate_threshold)}`, "num");
  const w = cell(tr, `${b.calls} calls (min ${b.minimum_calls}) `, "num");
  bar(w, b.window_fill);
  cell(tr, b.open_until === null ? "" :
       `${new Date(b.open_until * 1000).toLocaleTimeString()} (${b.retry_after.toFixed(1)} s)`);
  const rb = svc.retry_budget;
  cell(tr, rb === null ? "no retries" : `${rb.balance.toFixed(1)} left, ${rb.refused} refused`,
       "num");
  cell(tr, b.bulkhead === null ? "no limit" : `${b.bulkhead.in_use} / ${b.bulkhead.max_concurrent}`,
       "num");
  const act = cell(tr, "", "act");
  if (forcing) {
    for (const action of ["open", "closed", "reset"]) {
      const btn = document.createElement("button");
      btn.textContent = action;
      btn.onclick = () => force(svc.service, b.endpoint, action);
      act.appendChild(btn);
    }
  }
  return tr;
}
// One refresh at a time, the next one REFRESH_MS after this one ends; a fetch that
// hangs is abandoned after max(REFRESH_MS, 5 s), so a stuck service shows as an error.
let timer = null, busy = false;
function brokenRow(svc) {
  const tr = document.createElement("tr");
  tr.dataset.service = svc.service; tr.className = "broken";
  cell(tr, svc.service);
  cell(tr, "cannot read: " + svc.error).colSpan = 9;
  return tr;
}
async function refresh() {
  if (busy) return;
  busy = true;
  clearTimeout(timer);
  try {
    const r = await fetch(JSON_URL, {cache: "no-store",
                                     signal: AbortSignal.timeout(Math.max(REFRESH_MS, 5000))});
    if (!r.ok) throw new Error(`${JSON_URL}: HTTP ${r.status}`);
    const doc = await r.json();
    const rows = [];
    for (const svc of doc.services) {
      if (svc.error) rows.push(brokenRow(svc));
      for (const b of svc.breakers) rows.push(row(svc, b, doc.forcing));
    }
    $("rows").replaceChildren(...rows);
    $("forcing").style.display = doc.forcing ? "block" : "none";
    $("meta").textContent = `${rows.length} breakers, as of ${new Date(doc.time * 1000)
      .toLocaleTimeString()}; refreshing every ${REFRESH_MS / 1000} s` +
      (doc.forcing ? "" : "; read-only");
    $("error").style.display = "none";
  } catch (e) {
    $("error").textContent = "cannot refresh: " + e.message;
    $("error").style.display = "block";
  } finally {
    busy = false;
    timer = setTimeout(refresh, REFRESH_MS);
  }
}
refresh();
</script></body></html>
"""


def _js(value: object) -> str:
    # JSON is a JS literal; "</" must not end the <script> element early.
    return json.dumps(value).replace("</", "<\\/")


def render_page(prefix: str, refresh: float) -> bytes:
    """The page for an app mounted at ``prefix`` (no trailing slash; "" at the root),
    refreshing every ``refresh`` seconds."""
    return (_PAGE.replace("__JSON_URL__", _js(prefix + "/status.json"))
            .replace("__FORCE_URL__", _js(prefix + "/force"))
            .replace("__REFRESH_MS__", str(round(refresh * 1000)))).encode()
