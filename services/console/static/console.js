// The school's operations console: three views over the console's JSON API, refreshed every
// 2 seconds. No library and nothing from elsewhere: the page must work offline.
// It is an operator's, through their sign-in session: /api/session says who and gives the
// CSRF token every POST sends back; a 401 (the session ended) goes to /login.
"use strict";

const REFRESH_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = {enrollment: "#dbe7fb", payment: "#fde5cc", assignment: "#dcefd6",
                 notification: "#eadcf0", analytics: "#d6eeec", client: "#eef0f2"};
const MARK = {handled: "✓ handled", retry: "↻ retried", duplicate: "≡ duplicate",
              released: "⇠ released", dead_lettered: "✗ dead-lettered", waiting: "… waiting"};
// What each view last drew: a view is redrawn only when its data changed, so that an open
// message body stays open and a button stays where the pointer is.
const state = {view: "topology", conversation: null, search: null, busy: false, drawn: {},
               csrf: null, leaving: false};

function changed(view, data) {
  const key = JSON.stringify(data);
  if (state.drawn[view] === key) return false;
  state.drawn[view] = key;
  return true;
}

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text != null) node.textContent = text;
  return node;
}

function signIn() {
  if (state.leaving) return;  // the other refreshes' 401s follow the first one
  state.leaving = true;
  location.assign("/login");
}

async function api(path, options = {}) {
  const headers = {Accept: "application/json", ...options.headers};
  if ((options.method || "GET") !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const response = await fetch(path, {...options, headers});
  if (response.status === 401) signIn();
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.detail || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function age(seconds) {
  if (seconds == null) return "-";
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

function clock(iso) {
  return new Date(iso).toLocaleTimeString([], {hour12: false});
}

// --- routing: #topology, #dlqs, #conversations, #conversation/<id>, #search/<text> ----------

function route() {
  const [view, ...rest] = (location.hash.slice(1) || "topology").split("/");
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : null;
  if ((view === "conversation" ? arg : null) !== state.conversation) {
    // another conversation: nothing of the last one may stay on screen meanwhile
    delete state.drawn.conversation;
    $("conversation-head").replaceChildren();
    $("sequence-svg").replaceChildren();
    $("hops").replaceChildren();
    $("hops").removeAttribute("data-correlation-id");
  }
  state.conversation = view === "conversation" ? arg : null;
  state.search = view === "search" ? arg : null;
  state.view = {conversation: "conversations", search: "conversations"}[view] || view;
  if (!["topology", "dlqs", "conversations"].includes(state.view)) state.view = "topology";
  for (const section of document.querySelectorAll(".view")) {
    section.classList.toggle("active", section.id === `view-${state.view}`);
  }
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.view === state.view);
  }
  if (state.search) $("search-input").value = state.search;
  refresh();
}

async function refresh() {
  // One refresh at a time: a slow answer (a redrive running) is not asked for again behind it.
  if (state.refreshing) {
    state.again = true;
    return;
  }
  state.refreshing = true;
  state.again = false;
  try {
    const work = [refreshTopology()];
    if (state.view === "dlqs" && !state.busy) work.push(refreshDlqs());
    if (state.view === "conversations") work.push(refreshConversations());
    await Promise.all(work);
    $("live").classList.remove("stale");
    $("live").textContent = `live · ${new Date().toLocaleTimeString([], {hour12: false})}`;
  } catch (error) {
    $("live").classList.add("stale");
    $("live").textContent = `not updating: ${error.message}`;
  } finally {
    state.refreshing = false;
    if (state.again) refresh();  // the view changed while this one was on its way
  }
}

// --- topology ------------------------------------------------------------------------------

const LAYOUT = {producerX: 20, topicX: 250, queueX: 500, consumerX: 870, top: 40, row: 120,
                width: 1050};

function layout(graph) {
  const queues = graph.nodes.filter((n) => n.kind === "queue");
  const at = {};
  queues.forEach((q, i) => {
    const y = LAYOUT.top + i * LAYOUT.row;
    at[q.id] = {x: LAYOUT.queueX, y, w: 290, h: 62};
    at[`dlq:${q.dlq}`] = {x: LAYOUT.queueX + 30, y: y + 74, w: 260, h: 34};
    at[`consumer:${q.consumer}`] = {x: LAYOUT.consumerX, y: y + 8, w: 160, h: 46};
  });
  const topic = graph.nodes.find((n) => n.kind === "topic");
  at[topic.id] = {x: LAYOUT.topicX, y: LAYOUT.top + LAYOUT.row / 2 - 10, w: 170, h: 62};
  const producers = graph.nodes.filter((n) => n.kind === "service" && n.produces.length);
  producers.forEach((p) => {
    const sent = graph.edges.find((e) => e.from === p.id && e.kind === "send");
    const y = sent ? at[sent.to].y + 8 : LAYOUT.top;
    at[`producer:${p.name}`] = {x: LAYOUT.producerX, y, w: 160, h: 46};
  });
  return at;
}

function box(group, spot, cls, lines) {
  const g = svg("g", {class: `node ${cls}`});
  g.append(svg("rect", {x: spot.x, y: spot.y, width: spot.w, height: spot.h}));
  lines.forEach(([text, kind], i) => {
    g.append(svg("text", {x: spot.x + 10, y: spot.y + 18 + i * 16, class: kind || ""}, text));
  });
  group.append(g);
  return g;
}

function connect(group, a, b, cls, label) {
  const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2;
  const mid = (x1 + x2) / 2;
  group.append(svg("path", {class: `edge ${cls}`, "marker-end": "url(#arrowhead)",
                            d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2 - 2},${y2}`}));
  if (label) {
    const short = label.length > 38 ? `${label.slice(0, 36)}…` : label;
    group.append(svg("text", {class: "edge-label", x: mid - 60, y: (y1 + y2) / 2 - 4}, short));
  }
}

async function refreshTopology() {
  let data;
  try {
    data = await api("/api/topology");
    $("topology-error").textContent = "";
  } catch (error) {
    $("topology-error").textContent = `Cannot read the queues: ${error.message}`;
    throw error;
  }
  $("env").textContent = `· ${data.env}`;
  countDeadLetters(data);
  if (state.view !== "topology" || !changed("topology", data)) return;
  const at = layout(data);
  const root = $("topology-svg");
  const height = LAYOUT.top + data.nodes.filter((n) => n.kind === "queue").length * LAYOUT.row;
  root.setAttribute("viewBox", `0 0 ${LAYOUT.width} ${height}`);
  root.setAttribute("width", LAYOUT.width);
  root.setAttribute("height", height);
  root.replaceChildren(svg("defs"));
  const marker = svg("marker", {id: "arrowhead", markerWidth: 8, markerHeight: 8, refX: 7,
                                refY: 4, orient: "auto"});
  marker.append(svg("path", {d: "M0,0 L8,4 L0,8 z", fill: "#9aa5b1"}));
  root.firstChild.append(marker);
  for (const [x, text] of [[LAYOUT.producerX, "producers"], [LAYOUT.topicX, "SNS topic"],
                           [LAYOUT.queueX, "SQS queues and their DLQs"],
                           [LAYOUT.consumerX, "consumers"]]) {
    root.append(svg("text", {x, y: 20, class: "edge-label"}, text.toUpperCase()));
  }
  const edges = svg("g"), nodes = svg("g");
  root.append(edges, nodes);
  for (const edge of data.edges) {
    const from = edge.kind === "consume" ? at[edge.from] : at[edge.from.replace("service:",
                                                                                 "producer:")];
    const to = edge.kind === "consume" ? at[edge.to.replace("service:", "consumer:")]
                                       : at[edge.to];
    if (!from || !to) continue;
    if (edge.kind === "dead-letter") {
      edges.append(svg("path", {class: "edge dead-letter", "marker-end": "url(#arrowhead)",
                                d: `M${from.x + 14},${from.y + from.h} V${to.y + to.h / 2} ` +
                                   `H${to.x - 2}`}));
    } else {
      // Only a direct send is labelled (with its events); a subscription's filter is written
      // in its queue's box, and every producer publishes every event to the topic.
      connect(edges, from, to, edge.kind, edge.kind === "send" ? edge.label : "");
    }
  }
  for (const node of data.nodes) {
    if (node.kind === "service") {
      if (at[`producer:${node.name}`]) {
        box(nodes, at[`producer:${node.name}`], "service", [[node.name, "title"],
                                                            ["produces events"]]);
      }
    } else if (node.kind === "topic") {
      box(nodes, at[node.id], "topic", [[node.name, "title"], ["SNS, standard"]]);
    } else if (node.kind === "queue") {
      const s = data.states[node.name];
      const feed = data.edges.find((e) => e.to === node.id && e.kind === "subscription");
      const via = feed ? (feed.label === "all events" ? " · from the topic: all"
        : ` · from the topic: ${feed.label.split(", ").length} types`) : "";
      const g = box(nodes, at[node.id], "queue", [
        [`${node.name}${node.fifo ? "" : " (standard)"}`, "title"],
        [`${s.visible} waiting · ${s.in_flight} in flight · oldest ${age(s.oldest_age)}`,
         "figure"],
        [`${node.max_receive_count} attempts${via}`]]);
      if (feed) g.append(svg("title", {}, `filter: ${feed.label}`));
      g.setAttribute("data-queue", node.name);
    } else if (node.kind === "dlq") {
      const s = data.states[node.name];
      const dead = s.visible + s.in_flight;
      const g = box(nodes, at[node.id], `dlq${dead ? " alert" : ""}`,
                    [[`${node.name}: ${dead} dead`, "figure"]]);
      g.setAttribute("data-dlq", node.name);
      g.setAttribute("data-count", dead);
    }
  }
  const consumers = new Set(data.nodes.filter((n) => n.kind === "queue").map((n) => n.consumer));
  for (const name of consumers) {
    const spot = at[`consumer:${name}`];
    const queue = data.nodes.find((n) => n.kind === "queue" && n.consumer === name);
    const g = box(nodes, spot, "service", [[name, "title"], ["its worker"]]);
    g.append(svg("title", {}, `the ${name} worker consumes ${queue.name}`));
  }
}

// --- dead letters --------------------------------------------------------------------------

function countDeadLetters(data) {
  const total = data.nodes.filter((n) => n.kind === "dlq")
    .map((n) => data.states[n.name].visible + data.states[n.name].in_flight)
    .reduce((a, b) => a + b, 0);
  $("dlq-total").textContent = total;
  $("dlq-total").classList.toggle("alert", total > 0);
}

function showResult(text, ok) {
  const result = $("dlq-result");
  result.textContent = text;
  result.className = ok ? "ok" : "failed";
}

async function redrive(path, button) {
  state.busy = true;
  button.disabled = true;
  showResult("redriving…", true);
  try {
    const result = await api(path, {method: "POST"});
    showResult(`Redriven: ${result.result}`, result.completed);
  } catch (error) {
    showResult(`Redrive failed: ${error.message}`, false);
  } finally {
    state.busy = false;
    await refreshDlqs();
  }
}

async function refreshDlqs() {
  const data = await api("/api/dlqs");
  const list = $("dlq-list");
  for (const dlq of data.dlqs) {
    for (const m of dlq.messages) {
      const cell = list.querySelector(`td.age[data-message-id="${CSS.escape(m.message_id)}"]`);
      if (cell) cell.textContent = age(m.age);
    }
  }
  const shape = data.dlqs.map((d) => ({...d, messages: d.messages.map((m) => ({...m, age: 0}))}));
  if (!changed("dlqs", shape) && list.childElementCount) return;
  const cards = [];
  for (const dlq of data.dlqs) {
    const title = el("h3", {}, dlq.dlq, el("span", {class: `badge${dlq.count ? " alert" : ""}`},
                                            String(dlq.count)),
                     el("span", {class: "muted"}, `→ redrives to ${dlq.queue}`),
                     el("span", {class: "spacer"}));
    if (dlq.count) {
      title.append(el("button", {class: "secondary", "data-action": "redrive-all",
                                 "data-queue": dlq.queue,
                                 onclick: (e) => redrive(
                                   `/api/dlqs/${encodeURIComponent(dlq.queue)}/redrive`,
                                   e.target)}, "Redrive all"));
    }
    const card = el("div", {class: `card${dlq.count ? " alert" : ""}`, "data-dlq": dlq.dlq},
                    title);
    if (dlq.messages.length) {
      const table = el("table", {}, el("tr", {}, ...["event", "reason", "error", "source queue",
                                                     "age", "body", ""].map((h) => el("th", {}, h))));
      for (const m of dlq.messages) {
        const link = m.correlation_id ? el("a", {href: `#conversation/${encodeURIComponent(
          m.correlation_id)}`}, "conversation") : null;
        table.append(el("tr", {"data-message-id": m.message_id, class: "dlq-message"},
          el("td", {}, el("strong", {}, m.event_type || "?"), el("br"), link),
          el("td", {}, m.dlq_reason),
          el("td", {}, m.dlq_error || "-"),
          el("td", {}, m.source_queue),
          el("td", {class: "age", "data-message-id": m.message_id}, age(m.age)),
          el("td", {}, el("details", {}, el("summary", {}, "body"), el("pre", {}, m.body))),
          el("td", {}, el("button", {"data-action": "redrive-one",
                                     onclick: (e) => redrive(
                                       `/api/dlqs/${encodeURIComponent(dlq.queue)}/messages/` +
                                       `${encodeURIComponent(m.message_id)}/redrive`, e.target)},
                          "Redrive"))));
      }
      card.append(table);
    }
    if (dlq.not_shown) {
      card.append(el("p", {class: "muted"}, `${dlq.not_shown} more not shown (a FIFO group ` +
                                             "shows its first messages only)"));
    }
    cards.push(card);
  }
  if (!state.busy) list.replaceChildren(...cards);
}

// --- conversations -------------------------------------------------------------------------

async function refreshConversations() {
  const query = state.search ? `?q=${encodeURIComponent(state.search)}` : "";
  const found = await api(`/api/conversations${query}`);
  if (!changed("list", [found, state.conversation, state.search])) {
    if (state.conversation) await refreshConversation(state.conversation);
    return;
  }
  $("list-title").textContent = state.search
    ? `${found.length} conversation(s) for “${state.search}”` : "Recent conversations";
  $("conversation-list").replaceChildren(...found.map((c) => {
    const flags = [];
    if (c.dead_lettered) flags.push(el("span", {class: "flag"}, ` ✗ ${c.dead_lettered} dead`));
    if (c.retries) flags.push(el("span", {class: "flag retry"}, ` ↻ ${c.retries} retries`));
    return el("li", {}, el("a", {href: `#conversation/${encodeURIComponent(c.correlation_id)}`,
                                 class: c.correlation_id === state.conversation ? "current" : "",
                                 "data-correlation-id": c.correlation_id},
      el("strong", {}, c.first_event), ` · ${c.events} event(s) · ${clock(c.last_at)}`,
      ...flags, el("br"), el("span", {class: "id"}, c.correlation_id)));
  }));
  if (!state.conversation && state.search && found.length === 1) {
    location.hash = `#conversation/${encodeURIComponent(found[0].correlation_id)}`;
    return;
  }
  if (state.conversation) await refreshConversation(state.conversation);
  else {
    $("conversation-empty").textContent = state.search && !found.length
      ? `Nothing has reached the console for “${state.search}”.`
      : "Pick a conversation, or search for an id.";
    $("conversation-empty").hidden = false;
    delete state.drawn.conversation;
    $("conversation-head").replaceChildren();
    $("sequence-svg").replaceChildren();
    $("hops").replaceChildren();
  }
}

async function refreshConversation(id) {
  let c;
  try {
    c = await api(`/api/conversations/${encodeURIComponent(id)}`);
  } catch (error) {
    if (error.status !== 404) throw error;
    $("conversation-empty").textContent = `No event of conversation ${id} has reached the ` +
      "console (yet).";
    $("conversation-empty").hidden = false;
    return;
  }
  $("conversation-empty").hidden = true;
  if (!changed("conversation", c)) return;
  const outcomes = Object.entries(c.outcomes).map(([k, n]) => `${n} ${k}`).join(" · ");
  $("conversation-head").replaceChildren(
    el("h2", {}, `Conversation ${c.correlation_id}`),
    el("div", {class: "muted"}, `started ${new Date(c.started_at).toLocaleString()} · ` +
                                `${c.events.length} event(s) · ${outcomes}`));
  drawSequence(c);
  drawHops(c);
}

function drawSequence(c) {
  const root = $("sequence-svg");
  const laneW = 170, left = 30, top = 20, rowH = 34;
  const x = (lane) => left + c.lanes.indexOf(lane) * laneW + laneW / 2;
  const rows = [];
  if (c.request) rows.push({kind: "request"});
  for (const event of c.events) {
    event.handlings.forEach((h, i) => rows.push({kind: "hop", event, handling: h, first: i === 0}));
    if (!event.handlings.length) rows.push({kind: "hop", event, handling: null, first: true});
  }
  const height = top + 50 + rows.length * rowH + 20;
  const width = left * 2 + c.lanes.length * laneW + 60;
  root.setAttribute("viewBox", `0 0 ${width} ${height}`);
  root.setAttribute("width", width);
  root.setAttribute("height", height);
  root.replaceChildren();
  const defs = svg("defs");
  const marker = svg("marker", {id: "seqhead", markerWidth: 8, markerHeight: 8, refX: 7, refY: 4,
                                orient: "auto"});
  marker.append(svg("path", {d: "M0,0 L8,4 L0,8 z", fill: "#52606d"}));
  defs.append(marker);
  root.append(defs);
  for (const lane of c.lanes) {
    root.append(svg("line", {class: "lifeline", x1: x(lane), x2: x(lane), y1: top + 30,
                             y2: height - 10}));
    const g = svg("g", {class: "lane", "data-lane": lane});
    g.append(svg("rect", {class: `lane-box ${lane === "client" ? "client" : ""}`,
                          x: x(lane) - 70, y: top, width: 140, height: 28,
                          style: `fill:${COLOURS[lane] || "#e3ecfa"}`}));
    g.append(svg("text", {x: x(lane), y: top + 18, "text-anchor": "middle",
                          class: "lane-label"}, lane));
    root.append(g);
  }
  rows.forEach((row, i) => {
    const y = top + 62 + i * rowH;
    if (row.kind === "request") {
      const r = c.request;
      root.append(svg("path", {class: "arrow", "marker-end": "url(#seqhead)",
                               d: `M${x("client")},${y} H${x(r.service) - 3}`}));
      root.append(svg("text", {x: x("client") + 8, y: y - 6, class: "event-type"},
                      `${r.name} → ${r.status ?? ""}`));
      return;
    }
    const {event, handling} = row;
    const from = x(event.producer);
    const g = svg("g", {class: "hop", "data-event-type": event.event_type,
                        "data-producer": event.producer,
                        "data-consumer": handling ? handling.service : ""});
    if (row.first) {
      g.append(svg("circle", {cx: from, cy: y, r: 3.5, fill: "#52606d"}));
      g.append(svg("text", {x: from + 8, y: y - 6, class: "event-type"},
                   `${event.event_type}  +${(event.offset_ms / 1000).toFixed(3)} s`));
    }
    if (handling) {
      const to = x(handling.service);
      const outcome = handling.outcome;
      const tries = handling.attempts.length;
      g.append(svg("path", {class: `arrow ${outcome}`, "marker-end": "url(#seqhead)",
                            d: `M${from},${y + 4} C${(from + to) / 2},${y + 14} ` +
                               `${(from + to) / 2},${y + 14} ${to + (to > from ? -3 : 3)},${y + 8}`}));
      // Several attempts: each one's mark in order, e.g. "✓ handled · ↻ ↻ ✗ ✓" for a
      // payment retried twice, dead-lettered, then redriven and handled.
      const trail = tries > 1 ? ` · ${handling.attempts.map((a) => (MARK[a.outcome] || "?")
        .split(" ")[0]).join(" ")}` : "";
      const text = `${MARK[outcome] || outcome}${trail}`;
      g.append(svg("text", {x: to + 6, y: y + 12, class: `outcome-${outcome}`}, text));
    }
    root.append(g);
  });
}

function drawHops(c) {
  const table = $("hops");
  const rows = [el("tr", {}, ...["#", "event", "produced by", "at", "handled by", "outcome",
                                 "attempts"].map((h) => el("th", {}, h)))];
  c.events.forEach((event, i) => {
    const handlers = event.handlings.length ? event.handlings : [null];
    handlers.forEach((h, j) => {
      const attempts = h ? h.attempts.map((a) => `${a.outcome} at +${(a.offset_ms / 1000)
        .toFixed(3)} s (${a.duration_ms} ms)${a.detail ? `: ${a.detail}` : ""}`).join("; ") : "";
      rows.push(el("tr", {"data-testid": "hop", "data-event-type": event.event_type,
                          "data-producer": event.producer,
                          "data-consumer": h ? h.service : "",
                          "data-outcome": h ? h.outcome : ""},
        el("td", {}, j ? "" : String(i + 1)),
        el("td", {}, j ? "" : `${"· ".repeat(event.depth)}${event.event_type}`),
        el("td", {}, j ? "" : event.producer),
        el("td", {}, j ? "" : `+${(event.offset_ms / 1000).toFixed(3)} s`),
        el("td", {}, h ? `${h.service} (${h.queue})` : "no consumer"),
        el("td", {class: h ? `outcome-${h.outcome}` : ""}, h ? MARK[h.outcome] || h.outcome : ""),
        el("td", {}, attempts)));
    });
  });
  table.replaceChildren(...rows);
  table.setAttribute("data-correlation-id", c.correlation_id);
}

// --- the session ---------------------------------------------------------------------------

async function session() {
  const me = await api("/api/session");
  state.csrf = me.csrf_token;
  $("who").textContent = `signed in as ${me.sub}`;
  $("who").dataset.sub = me.sub;
  $("sign-out").hidden = me.via !== "session";
}

async function signOut() {
  $("sign-out").disabled = true;
  try {
    await api("/logout", {method: "POST"});
    state.leaving = true;
    location.assign("/");  // signed out: the page sends the next visitor to sign in
  } catch (error) {
    $("sign-out").disabled = false;
    $("live").classList.add("stale");
    $("live").textContent = `not signed out: ${error.message}`;
  }
}

// --- wiring --------------------------------------------------------------------------------

$("search").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("search-input").value.trim();
  if (text) location.hash = `#search/${encodeURIComponent(text)}`;
});
$("sign-out").addEventListener("click", signOut);
window.addEventListener("hashchange", route);
session().catch((error) => {
  $("live").classList.add("stale");
  $("live").textContent = `not signed in: ${error.message}`;
}).finally(() => {
  setInterval(refresh, REFRESH_MS);
  route();
});
