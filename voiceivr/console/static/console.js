// The dialplan editor: live validation (each problem marked at its line in the gutter and listed with its
// line and column, as `voiceivr dialplan validate` prints them) and the simulation pane. Served from the
// package; no other script runs on the console's pages (Content-Security-Policy: script-src 'self').
"use strict";

(function () {
  const draft = document.getElementById("draft");
  if (!draft) return;
  const gutter = document.getElementById("gutter");
  const list = document.getElementById("problems");
  const status = document.getElementById("status");
  const csrf = document.querySelector('meta[name="csrf"]').content;
  const maxBytes = parseInt(draft.dataset.maxBytes, 10);
  let timer = null;
  let sent = 0;

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
      body: JSON.stringify(body),
    }).then(function (r) { return r.json().then(function (data) { return {status: r.status, data: data}; }); });
  }

  function drawGutter(bad) {
    const lines = draft.value.split("\n").length;
    gutter.textContent = "";
    for (let n = 1; n <= lines; n++) {
      const span = document.createElement("span");
      span.dataset.line = String(n);
      span.textContent = String(n);
      if (bad.has(n)) { span.className = "bad"; span.title = bad.get(n); }
      gutter.appendChild(span);
      gutter.appendChild(document.createTextNode("\n"));
    }
    gutter.scrollTop = draft.scrollTop;
  }

  function showProblems(problems) {
    const bad = new Map();
    list.textContent = "";
    problems.forEach(function (p) {
      bad.set(p.line, (bad.has(p.line) ? bad.get(p.line) + "\n" : "") + p.message);
      const li = document.createElement("li");
      li.dataset.line = String(p.line);
      li.dataset.col = String(p.col);
      li.textContent = "line " + p.line + ", column " + p.col + ": " + p.message;
      li.addEventListener("click", function () { jumpTo(p.line, p.col); });
      list.appendChild(li);
    });
    drawGutter(bad);
    status.className = "status " + (problems.length ? "error" : "ok");
    status.textContent = problems.length ? problems.length + " problem(s)" : "no problems";
  }

  function jumpTo(line, col) {
    const lines = draft.value.split("\n");
    let at = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) at += lines[i].length + 1;
    at += Math.max(0, col - 1);
    draft.focus();
    draft.setSelectionRange(at, at + 1);
    const lineHeight = parseFloat(getComputedStyle(draft).lineHeight) || 18;
    draft.scrollTop = Math.max(0, (line - 6) * lineHeight);  // the line, with a few above it for context
    gutter.scrollTop = draft.scrollTop;
  }

  function tooBig() {
    const bytes = new TextEncoder().encode(draft.value).length;
    if (bytes <= maxBytes) return false;
    status.className = "status error";
    status.textContent = "The draft is " + bytes.toLocaleString() + " bytes; a dialplan may be at most " +
      maxBytes.toLocaleString() + ". Nothing was checked or stored.";
    list.textContent = "";
    return true;
  }

  function validate() {
    if (tooBig()) return;
    const mine = ++sent;
    status.textContent = "checking...";
    post("/api/validate", {text: draft.value}).then(function (r) {
      if (mine !== sent) return;  // a newer check is on its way
      if (r.data.problems) showProblems(r.data.problems);
      else { status.className = "status error"; status.textContent = r.data.refused || r.data.error; }
    }).catch(function () { status.textContent = "could not reach the console to check the draft"; });
  }

  draft.addEventListener("input", function () {
    drawGutter(new Map());
    clearTimeout(timer);
    timer = setTimeout(validate, 400);
  });
  draft.addEventListener("scroll", function () { gutter.scrollTop = draft.scrollTop; });
  list.querySelectorAll("li").forEach(function (li) {
    li.addEventListener("click", function () { jumpTo(+li.dataset.line, +li.dataset.col); });
  });

  const button = document.getElementById("simulate");
  const trace = document.getElementById("trace");
  button.addEventListener("click", function () {
    if (tooBig()) return;
    trace.textContent = "running...";
    post("/api/simulate", {text: draft.value, script: document.getElementById("script").value}).then(function (r) {
      if (r.data.lines) trace.textContent = r.data.lines.join("\n") + "\ncall " + r.data.ended;
      else if (r.data.problems) { showProblems(r.data.problems); trace.textContent = "the draft has problems: fix them first"; }
      else trace.textContent = r.data.refused || r.data.error;
    }).catch(function () { trace.textContent = "could not reach the console"; });
  });

  const whatifButton = document.getElementById("whatif");
  const whatifStatus = document.getElementById("whatif-status");
  const results = document.getElementById("whatif-results");

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  function showCall(c) {
    const box = el("div", undefined, "whatif-call");
    box.dataset.call = c.call_id;
    box.appendChild(el("h3", c.call_id + " (" + c.recorded_at + ")" +
      (c.error ? "" : c.changed.length ? ": changed " + c.changed.join(", ") : ": no change")));
    if (c.error) { box.appendChild(el("p", c.error, "error")); return box; }
    if (c.note) box.appendChild(el("p", c.note, "note"));
    const table = el("table");
    const head = el("tr");
    ["", "live", "draft"].forEach(function (h) { head.appendChild(el("th", h)); });
    table.appendChild(head);
    ["intents", "outcome", "actions"].forEach(function (k) {
      const row = el("tr", undefined, c.changed.indexOf(k) >= 0 ? "changed" : "");
      row.dataset.field = k;
      row.appendChild(el("th", k));
      [c.live[k], c.draft[k]].forEach(function (v) { row.appendChild(el("td", Array.isArray(v) ? v.join(", ") : v)); });
      table.appendChild(row);
    });
    box.appendChild(table);
    const audio = el("p", "What the agent said: ", "audio");
    [["live", c.live_audio], ["draft", c.draft_audio]].forEach(function (pair) {
      if (!pair[1]) return;
      const player = el("audio");
      player.controls = true;
      player.preload = "none";
      player.src = pair[1];
      player.className = "agent-" + pair[0];
      audio.appendChild(el("span", " " + pair[0] + " "));
      audio.appendChild(player);
    });
    box.appendChild(audio);
    const prompts = el("ul", undefined, "prompt-diff");
    c.prompts_gone.forEach(function (p) { prompts.appendChild(el("li", "- " + p, "gone")); });
    c.prompts_new.forEach(function (p) { prompts.appendChild(el("li", "+ " + p, "new")); });
    if (prompts.children.length) { box.appendChild(el("p", "Prompts:")); box.appendChild(prompts); }
    return box;
  }

  if (whatifButton) whatifButton.addEventListener("click", function () {
    if (tooBig()) return;
    const chosen = Array.from(document.querySelectorAll("#recordings input:checked")).map(function (i) { return i.value; });
    whatifStatus.textContent = "replaying " + (chosen.length || "the newest") + " call(s) twice...";
    results.textContent = "";
    whatifButton.disabled = true;
    post("/api/whatif", {text: draft.value, name: whatifButton.dataset.name, calls: chosen}).then(function (r) {
      whatifButton.disabled = false;
      if (r.data.calls) {
        const changed = r.data.calls.filter(function (c) { return c.changed.length; }).length;
        whatifStatus.textContent = r.data.calls.length + " call(s) replayed against live version " +
          r.data.live_version + " and the draft: " + changed + " changed";
        r.data.calls.forEach(function (c) { results.appendChild(showCall(c)); });
      } else if (r.data.problems) { showProblems(r.data.problems); whatifStatus.textContent = "the draft has problems: fix them first"; }
      else whatifStatus.textContent = r.data.refused || r.data.error;
    }).catch(function () { whatifButton.disabled = false; whatifStatus.textContent = "could not reach the console"; });
  });

  if (list.children.length === 0) validate(); else drawGutter(new Map(Array.from(list.children).map(
    function (li) { return [+li.dataset.line, li.textContent]; })));
})();
