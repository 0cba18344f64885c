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

  if (list.children.length === 0) validate(); else drawGutter(new Map(Array.from(list.children).map(
    function (li) { return [+li.dataset.line, li.textContent]; })));
})();
