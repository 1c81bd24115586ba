// OpenGSLB status page: polls the API every second and renders what it says.
// No dependencies; the write token lives only in this tab (sessionStorage).
"use strict";

const POLL_MS = 1000;
const TOKEN_KEY = "opengslb-token";

function $(id) { return document.getElementById(id); }

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (className) td.className = className;
  return td;
}

// Rows are [key, signature, build]: a row whose signature did not change keeps its
// element, so keyboard focus and an in-progress click survive the refresh.
function fill(tableId, rows) {
  const body = $(tableId).tBodies[0];
  const previous = new Map();
  for (const tr of body.rows) if (tr.dataset.key) previous.set(tr.dataset.key, tr);
  const next = rows.map(([key, signature, build]) => {
    const old = previous.get(key);
    if (old && old.dataset.signature === signature) return old;
    const tr = build();
    tr.dataset.key = key;
    tr.dataset.signature = signature;
    return tr;
  });
  if (!next.length) {
    const tr = document.createElement("tr");
    const td = cell("none");
    td.colSpan = $(tableId).tHead.rows[0].cells.length;
    td.className = "muted";
    tr.append(td);
    next.push(tr);
  }
  const same = next.length === body.rows.length && next.every((tr, i) => body.rows[i] === tr);
  if (!same) body.replaceChildren(...next);
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function say(text, bad) {
  const message = $("message");
  message.textContent = text;
  message.className = bad ? "bad" : "ok";
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (method !== "GET" && token()) headers["Authorization"] = "Bearer " + token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body) });
  let data = {};
  try { data = await response.json(); } catch (e) { data = { error: response.statusText }; }
  if (!response.ok) {
    const error = new Error(data.error || response.statusText);
    error.status = response.status;
    throw error;
  }
  return data;
}

function when(text) { return text ? text.replace("T", " ").replace("Z", " UTC") : "–"; }

function overridePath(region, address) {
  return "/api/v1/overrides/" + encodeURIComponent(region) + "/" + encodeURIComponent(address);
}

async function act(label, method, path, body) {
  try {
    await api(method, path, body);
    say(label + ": done", false);
    await refresh();
  } catch (error) {
    say(label + " refused: " + error.message + (error.status ? " (" + error.status + ")" : ""), true);
  }
}

function button(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

function renderStatus(status) {
  $("node").textContent = status.node_name ? "— " + status.node_name : "";
  const raft = status.raft;
  let role = status.mode === "standalone" ? "Standalone: this node serves DNS."
    : (status.is_leader ? "Leader" : (raft ? raft.state : "Follower")) + " in a cluster" +
      (raft ? ", term " + raft.term : "") + (status.leader_address ? "; leader " + status.leader_address : "; no leader");
  $("role").textContent = role;
  $("role").className = status.is_leader ? "ok" : "warn";
  const own = status.config_hash;
  fill("members", (status.members || []).map((m) => {
    const hash = m.config_hash === undefined ? own : m.config_hash;
    const drift = hash && own && hash !== own;
    return [m.name + "|" + m.address, JSON.stringify([m, hash, drift]), () => {
      const tr = document.createElement("tr");
      tr.append(cell(m.name), cell(m.address), cell(m.status, m.status === "alive" ? "ok" : "bad"),
        cell(hash ? hash.slice(0, 12) + (drift ? " (differs from this node)" : "") : "–", drift ? "bad" : ""));
      return tr;
    }];
  }));
}

function renderServers(servers, overrides) {
  const drained = new Set(overrides.filter((o) => o.enabled === false).map((o) => o.region + "/" + o.address));
  fill("servers", servers.map((s) => {
    const key = s.region + "/" + s.address;
    const isDrained = drained.has(key);
    // Only what the row shows: a new check result alone does not rebuild it (focus stays).
    const shown = [s.healthy, s.effective_weight, s.weight, s.weight_source, s.last_error, s.node_verdicts,
      s.healthy ? null : s.last_healthy, isDrained];
    return [key + ":" + s.port, JSON.stringify(shown), () => serverRow(s, key, isDrained)];
  }));
}

function serverRow(s, key, isDrained) {
  const tr = document.createElement("tr");
  const verdicts = Object.entries(s.node_verdicts || {}).map(([n, v]) => n + ": " + (v ? "up" : "down")).join(", ");
  const why = s.weight_source === "config" ? "configured" : s.weight_source;
  tr.append(cell(s.region), cell(s.address + ":" + s.port),
    cell(s.healthy ? "up" : "DOWN", s.healthy ? "ok" : "bad"), cell(verdicts || "–"),
    cell(Number(s.effective_weight).toFixed(1) + " of " + s.weight), cell(why),
    cell(s.last_error), cell(s.healthy ? "–" : "down; last healthy " + when(s.last_healthy)));
  const td = document.createElement("td");
  if (isDrained) {
    td.append(button("Undrain", "Undrain " + key, () => act("Undrain " + key, "DELETE", overridePath(s.region, s.address))));
  } else {
    td.append(button("Drain", "Drain " + key, () => act("Drain " + key, "PUT", overridePath(s.region, s.address),
      { enabled: false, reason: "drained from the status page" })));
  }
  tr.append(td);
  return tr;
}

function wouldAnswer(domain) {
  const eligible = (domain.candidates || []).filter((c) => c.healthy && c.effective_weight > 0);
  if (!eligible.length) return "nothing healthy: SERVFAIL (or the last healthy address)";
  if (domain.algorithm === "failover") return eligible[0].address;
  return "one of " + eligible.map((c) => c.address).join(", ");
}

function renderDomains(domains) {
  fill("domains", domains.map((d) => {
    const answer = wouldAnswer(d);
    return [d.name, JSON.stringify([d.algorithm, d.ttl, answer]), () => {
      const tr = document.createElement("tr");
      tr.append(cell(d.name), cell(d.algorithm), cell(d.ttl), cell(answer, answer.startsWith("nothing") ? "bad" : ""));
      return tr;
    }];
  }));
}

function renderOverrides(overrides) {
  fill("overrides", overrides.map((o) => {
    const key = o.region + "/" + o.address;
    return [key, JSON.stringify(o), () => {
      const tr = document.createElement("tr");
      tr.append(cell(o.region), cell(o.address), cell(o.weight), cell(o.enabled), cell(o.reason), cell(when(o.expires_at)));
      const td = document.createElement("td");
      td.append(button("Lift", "Lift the override of " + key, () => act("Lift " + key, "DELETE", overridePath(o.region, o.address))));
      tr.append(td);
      return tr;
    }];
  }));
}

function renderEvents(events) {
  const list = $("events");
  list.replaceChildren(...events.map((e) => {
    const li = document.createElement("li");
    const stamp = document.createElement("time");
    stamp.textContent = when(e.time);
    li.append(stamp, " ", e.message);
    if (e.level === "warn" || e.level === "error" || e.level === "critical") li.className = "bad";
    return li;
  }));
  if (!events.length) list.replaceChildren(Object.assign(document.createElement("li"), { textContent: "none yet", className: "muted" }));
}

async function refresh() {
  try {
    const [status, servers, domains, overrides, events] = await Promise.all([
      api("GET", "/api/v1/cluster/status"), api("GET", "/api/v1/health/servers"),
      api("GET", "/api/v1/domains"), api("GET", "/api/v1/overrides"), api("GET", "/api/v1/events")]);
    renderStatus(status);
    renderServers(servers.servers, overrides.overrides);
    renderDomains(domains.domains);
    renderOverrides(overrides.overrides);
    renderEvents(events.events);
    $("updated").textContent = new Date().toISOString().replace("T", " ").slice(0, 19) + " UTC";
    $("stale").hidden = true;
  } catch (error) {
    $("stale-reason").textContent = error.message;
    $("stale").hidden = false;
  }
}

function showTokenState() {
  $("token-state").textContent = token() ? "A token is set for this tab." : "No token: read-only.";
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    showTokenState();
  });
  $("forget").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showTokenState(); });
  showTokenState();
  refresh();
  setInterval(refresh, POLL_MS);
});
