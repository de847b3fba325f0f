// Live container logs of a stack: WebSocket ws/logs/<env>/<stack>/[<service>/]
// (protocol in stacks/consumers.py). Acknowledges every batch so the server
// can tell a slow page from a fast one; pauses by holding lines back here;
// reconnects with `since` so no line is lost or shown twice.
(function () {
  "use strict";

  const root = document.getElementById("container-logs");
  if (!root) return;
  const output = root.querySelector("[data-output]");
  const stateEl = root.querySelector("[data-state]");
  const countsEl = root.querySelector("[data-counts]");
  const filterInput = root.querySelector('input[name="filter"]');
  const followBox = root.querySelector('input[name="follow"]');
  const pauseButton = root.querySelector('[data-action="pause"]');
  const MAX_KEEP = 100000;   // lines kept for download and re-filtering
  const MAX_DOM = 5000;      // lines shown at once
  const MAX_PAUSED = 50000;  // lines held back while paused

  const colours = {};
  root.querySelectorAll(".svc-label").forEach(function (el, i) {
    colours[el.dataset.service] = "svc-c" + (i % 8);
    el.classList.add(colours[el.dataset.service]);
  });

  let lines = [];            // {ts, svc, text} or {dropped, first, last}
  let held = [];             // received while paused
  let heldDropped = 0;
  let paused = false;
  let received = 0;
  let dropped = 0;
  const lastTs = {};         // service -> timestamp of its last line
  const atLastTs = {};       // service -> Set of texts with that timestamp
  let socket = null;
  let retry = 0;
  let stopped = false;

  function selectedServices() {
    const set = new Set();
    root.querySelectorAll('input[name="service"]:checked').forEach(function (b) { set.add(b.value); });
    return set;
  }
  let services = selectedServices();
  let needle = "";

  function visible(entry) {
    if (entry.dropped !== undefined) return true;
    if (!services.has(entry.svc) && entry.svc in colours) return false;
    return !needle || entry.text.toLowerCase().indexOf(needle) !== -1;
  }

  function lineElement(entry) {
    const div = document.createElement("div");
    if (entry.dropped !== undefined) {
      div.className = "line dropped";
      div.textContent = "··· " + entry.dropped + " lines dropped (the page fell behind) ···";
      return div;
    }
    div.className = "line";
    const ts = document.createElement("span");
    ts.className = "ts";
    ts.textContent = entry.ts.replace("T", " ").slice(0, 23);
    ts.title = entry.ts;
    const svc = document.createElement("span");
    svc.className = "svc " + (colours[entry.svc] || "");
    svc.textContent = entry.svc;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = entry.text;
    div.append(ts, svc, text);
    return div;
  }

  function show(entries) {
    const fragment = document.createDocumentFragment();
    let n = 0;
    entries.forEach(function (entry) {
      if (visible(entry)) { fragment.appendChild(lineElement(entry)); n++; }
    });
    if (!n) return;
    output.appendChild(fragment);
    let excess = output.childElementCount - MAX_DOM;
    while (excess-- > 0) output.removeChild(output.firstChild);
    if (followBox.checked) output.scrollTop = output.scrollHeight;
  }

  function redraw() {
    output.textContent = "";
    const shown = [];
    for (let i = lines.length - 1; i >= 0 && shown.length < MAX_DOM; i--) {
      if (visible(lines[i])) shown.push(lines[i]);
    }
    show(shown.reverse());
  }

  function keep(entries) {
    for (let i = 0; i < entries.length; i++) lines.push(entries[i]);
    // Trimmed in steps, not on every batch: slicing 100k entries is not free.
    if (lines.length > MAX_KEEP * 1.1) lines = lines.slice(lines.length - MAX_KEEP);
    if (paused) {
      for (let i = 0; i < entries.length; i++) held.push(entries[i]);
      if (held.length > MAX_PAUSED) {
        heldDropped += held.length - MAX_PAUSED;
        held = held.slice(held.length - MAX_PAUSED);
      }
    } else {
      show(entries);
    }
    updateCounts();
  }

  function updateCounts() {
    let text = received + " lines";
    if (dropped) text += ", " + dropped + " dropped";
    if (paused) text += ", " + held.length + " held while paused";
    countsEl.textContent = text;
  }

  // A line is new unless this page already has it: same service and an
  // earlier timestamp, or the same timestamp and text (after a reconnect).
  function isNew(ts, svc, text) {
    const last = lastTs[svc];
    if (last !== undefined) {
      if (ts < last) return false;
      if (ts === last && atLastTs[svc].has(text)) return false;
    }
    if (ts !== last) { lastTs[svc] = ts; atLastTs[svc] = new Set(); }
    atLastTs[svc].add(text);
    return true;
  }

  function onMessage(event) {
    const msg = JSON.parse(event.data);
    switch (msg.type) {
      case "hello":
        retry = 0;
        setState("connected", "loading history…");
        break;
      case "lines": {
        const entries = [];
        msg.lines.forEach(function (l) {
          if (isNew(l[0], l[1], l[2])) entries.push({ts: l[0], svc: l[1], text: l[2]});
        });
        received += entries.length;
        keep(entries);
        socket.send(JSON.stringify({type: "ack", seq: msg.seq}));
        break;
      }
      case "tail.done":
        setState("live", "live");
        break;
      case "dropped":
        dropped += msg.count;
        keep([{dropped: msg.count, first: msg.first, last: msg.last}]);
        break;
      case "containers":
        setState("live", "live · containers changed: " + msg.containers.map(function (c) {
          return c.service + " " + c.state;
        }).join(", "));
        break;
      case "error":
        setState("error", msg.message);
        break;
    }
  }

  function setState(kind, text) {
    stateEl.className = "log-state " + kind;
    stateEl.textContent = text;
  }

  function resumePoint() {
    const stamps = Object.values(lastTs);
    if (!stamps.length) return null;
    return stamps.reduce(function (a, b) { return a < b ? a : b; });
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const params = new URLSearchParams();
    const since = resumePoint();
    if (since) {
      params.set("since", since);
    } else if (root.dataset.tail) {
      params.set("tail", root.dataset.tail);
    }
    if (root.dataset.grep) params.set("grep", root.dataset.grep);
    socket = new WebSocket(scheme + location.host + root.dataset.wsPath + "?" + params.toString());
    socket.onmessage = onMessage;
    socket.onclose = function (event) {
      const reasons = {4400: "bad request", 4401: "not logged in", 4403: "no permission to view this environment", 4404: "no such environment, stack or service"};
      if (reasons[event.code]) {
        stopped = true;
        setState("error", "closed: " + reasons[event.code]);
        return;
      }
      if (stopped) return;
      const delay = Math.min(10000, 500 * Math.pow(2, retry++));
      setState("error", "disconnected, reconnecting in " + Math.round(delay / 1000) + " s…");
      setTimeout(connect, delay);
    };
  }

  pauseButton.addEventListener("click", function () {
    paused = !paused;
    pauseButton.textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      const backlog = held;
      held = [];
      if (heldDropped) {
        backlog.unshift({dropped: heldDropped});
        heldDropped = 0;
      }
      show(backlog);
    }
    updateCounts();
  });

  root.querySelector('[data-action="clear"]').addEventListener("click", function () {
    lines = [];
    held = [];
    output.textContent = "";
    updateCounts();
  });

  root.querySelector('[data-action="download"]').addEventListener("click", function () {
    const text = lines.map(function (e) {
      if (e.dropped !== undefined) return "--- " + e.dropped + " lines dropped ---";
      return e.ts + " " + e.svc + " | " + e.text;
    }).join("\n") + "\n";
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], {type: "text/plain"}));
    link.download = root.dataset.downloadName || "logs.txt";
    document.body.appendChild(link);
    link.click();
    setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
  });

  filterInput.addEventListener("input", function () {
    needle = filterInput.value.toLowerCase();
    redraw();
  });
  root.querySelectorAll('input[name="service"]').forEach(function (box) {
    box.addEventListener("change", function () { services = selectedServices(); redraw(); });
  });

  connect();
})();
