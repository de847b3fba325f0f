/*
 * Live log of one operation (templates/portal/operation_detail.html).
 *
 * Opens ws/operations/<uuid>/?after=<last seq seen>. The server sends the
 * stored backlog, then live lines, as {"type": "lines", "lines": [...]}, and
 * status changes as {"type": "status", ...}. Lines are appended by seq and
 * duplicates dropped; after a disconnect the page reconnects with the last
 * seq it has, so it resumes without gaps. Once the status is terminal and
 * every line up to its last_seq has arrived, the socket is closed for good.
 *
 * Status events also fill the facts a page loaded before the run could not
 * show (started, queue wait, finished, duration) and hide the Cancel form
 * once the operation is over. The worker's name is not in the event, so it
 * is read from a fresh copy of this page once the operation has started.
 * The result is shown as the server renders it (tables and lists, the same
 * component as the plan): the final status fetches that fragment. Flash
 * messages about this operation ("Queued operation ...") go once the
 * operation has left the queue: they are no longer true.
 */
(function () {
  "use strict";

  var root = document.querySelector("[data-operation-log]");
  if (!root) {
    return;
  }
  // Keep the page responsive on huge logs; the plain-text view has it all.
  var MAX_LINES = 20000;

  var field = function (name) {
    return root.querySelector('[data-field="' + name + '"]');
  };
  var logEl = field("log");
  var terminal = (root.dataset.terminal || "").split(",");
  var state = {
    lastSeq: 0,
    status: root.dataset.status,
    finalSeq: null,
    done: false,
    retries: 0,
    connects: 0,
    socket: null,
    shown: 0,
    hidden: 0,
    workerRequested: false,
    resultRequested: false,
    resultShown: false
  };
  window.operationLog = state;

  function isTerminal(status) {
    return terminal.indexOf(status) !== -1;
  }

  function atBottom() {
    return logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 40;
  }

  function timeOf(iso) {
    var t = new Date(iso);
    if (isNaN(t.getTime())) {
      return "";
    }
    return t.toTimeString().slice(0, 8);
  }

  // Same format as the template's date:"Y-m-d H:i:s" (event times are UTC
  // ISO strings, as the page's are with the default TIME_ZONE).
  function stamp(iso) {
    return iso ? iso.slice(0, 19).replace("T", " ") : "";
  }

  // Mirrors portal.models.format_duration.
  function formatDuration(seconds) {
    seconds = Math.max(0, seconds);
    if (seconds < 1) {
      return Math.round(seconds * 1000) + " ms";
    }
    if (seconds < 60) {
      return seconds.toFixed(1) + " s";
    }
    var pad = function (n) {
      return (n < 10 ? "0" : "") + n;
    };
    if (seconds < 3600) {
      return Math.floor(seconds / 60) + " min " + pad(Math.floor(seconds % 60)) + " s";
    }
    return (
      Math.floor(seconds / 3600) + " h " + pad(Math.floor((seconds % 3600) / 60)) + " min"
    );
  }

  function secondsBetween(from, to) {
    return (new Date(to) - new Date(from)) / 1000;
  }

  // Fetch this page again and copy the worker's name from it.
  function fillWorker() {
    var worker = field("worker");
    if (!worker || worker.textContent || state.workerRequested || !window.fetch) {
      return;
    }
    state.workerRequested = true;
    window
      .fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) {
        return response.ok ? response.text() : "";
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector('[data-operation-log] [data-field="worker"]');
        if (fresh && fresh.textContent) {
          worker.textContent = fresh.textContent;
        } else {
          state.workerRequested = false; // try again at the next event
        }
      })
      .catch(function () {
        state.workerRequested = false;
      });
  }

  function setTimes(event) {
    if (event.started) {
      field("started").textContent = stamp(event.started);
      var wait = field("queue_wait");
      if (wait && wait.dataset.enqueued) {
        wait.textContent = formatDuration(
          secondsBetween(wait.dataset.enqueued, event.started)
        );
      }
      fillWorker();
    }
    if (event.finished) {
      field("finished").textContent = stamp(event.finished);
    }
    if (event.started && event.finished) {
      field("duration").textContent = formatDuration(
        secondsBetween(event.started, event.finished)
      );
    }
  }

  function appendLines(lines) {
    var stick = atBottom();
    var fragment = document.createDocumentFragment();
    for (var i = 0; i < lines.length; i++) {
      var line = lines[i];
      if (line.seq <= state.lastSeq) {
        continue; // already shown (backlog and live overlap)
      }
      // The server fills gaps from the database before it sends a line, so
      // a jump in seq means those lines were never stored: go on.
      var span = document.createElement("span");
      span.className = "line level-" + line.level;
      span.setAttribute("data-seq", line.seq);
      span.textContent = timeOf(line.created) + " " + line.text + "\n";
      fragment.appendChild(span);
      state.lastSeq = line.seq;
      state.shown += 1;
    }
    logEl.appendChild(fragment);
    while (state.shown > MAX_LINES) {
      var first = logEl.querySelector("span.line");
      if (!first) {
        break;
      }
      logEl.removeChild(first);
      state.shown -= 1;
      state.hidden += 1;
    }
    if (state.hidden) {
      var note = logEl.querySelector(".hidden-note");
      if (!note) {
        note = document.createElement("span");
        note.className = "hidden-note muted";
        logEl.insertBefore(note, logEl.firstChild);
      }
      note.textContent = "… " + state.hidden + " earlier lines (see plain text)\n";
    }
    root.dataset.lastSeq = String(state.lastSeq);
    if (stick) {
      logEl.scrollTop = logEl.scrollHeight;
    }
    maybeDone();
  }

  var TONES = {
    succeeded: "ok",
    failed: "bad",
    errored: "bad",
    canceled: "idle",
    running: "info"
  };

  function showResult(event) {
    var box = field("result");
    var fallback = function () {
      box.textContent = JSON.stringify(event.result, null, 2);
    };
    if (!window.fetch || !root.dataset.resultUrl) {
      fallback();
      return;
    }
    window
      .fetch(root.dataset.resultUrl, { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        box.innerHTML = html;
        state.resultShown = true;
      })
      .catch(fallback);
  }

  function setStatus(event) {
    state.status = event.status;
    root.dataset.status = event.status;
    var badge = field("status");
    badge.textContent = event.status;
    badge.className = "badge tone-" + (TONES[event.status] || "warn");
    if (event.status !== "pending" && event.status !== "queued" && window.portal) {
      window.portal.dropMessages("op-" + root.dataset.operationId);
    }
    field("progress").style.width = (event.progress || 0) + "%";
    field("percent").textContent = event.progress || 0;
    field("progress_message").textContent = event.progress_message || "";
    var error = field("error");
    error.textContent = event.error || "";
    error.hidden = !event.error;
    var cancel = field("cancel");
    cancel.hidden = !(event.cancel_requested && !isTerminal(event.status));
    setTimes(event);
    if (isTerminal(event.status)) {
      state.finalSeq = event.last_seq || 0;
      var form = field("cancel-form");
      if (form) {
        form.hidden = true;
        var button = form.querySelector("button");
        if (button) {
          button.disabled = true;
        }
      }
      if (!state.resultRequested) {
        state.resultRequested = true;
        showResult(event);
      }
    }
    maybeDone();
  }

  function maybeDone() {
    if (state.finalSeq !== null && state.lastSeq >= state.finalSeq && !state.done) {
      state.done = true;
      field("connection").textContent = "";
      if (state.socket) {
        state.socket.close();
      }
    }
  }

  function url() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + root.dataset.wsPath + "?after=" + state.lastSeq;
  }

  function connect() {
    var socket = new WebSocket(url());
    state.socket = socket;
    socket.onopen = function () {
      state.retries = 0;
      state.connects += 1;
      field("connection").textContent = "";
    };
    socket.onmessage = function (message) {
      var data = JSON.parse(message.data);
      if (data.type === "lines") {
        appendLines(data.lines);
      } else if (data.type === "status") {
        setStatus(data);
      }
    };
    socket.onclose = function (event) {
      if (state.socket !== socket || state.done) {
        return;
      }
      if (event.code === 4401 || event.code === 4403) {
        field("connection").textContent = "(not allowed to follow this log)";
        return;
      }
      field("connection").textContent = "(reconnecting…)";
      reconnect(Math.min(10000, 500 * Math.pow(2, state.retries++)));
    };
  }

  function reconnect(delay) {
    var old = state.socket;
    state.socket = null;
    if (old) {
      old.onclose = null;
      old.onmessage = null;
      old.close();
    }
    window.setTimeout(connect, delay);
  }

  connect();
})();
