/*
 * Live backups page (templates/backups/environment_backups.html).
 *
 * Each running backup (a row with data-operation) follows its operation's
 * WebSocket, ws/operations/<uuid>/, as operation_log.js does, asking for no
 * log lines (?after= a seq no operation reaches): its status frames carry
 * status and progress, which fill the row's bar. When one ends, and every
 * data-interval milliseconds besides (a backup queued elsewhere, by cron or
 * another user), the page fetches a fresh copy of itself, swaps in the
 * sections marked data-section and follows the new running rows. The
 * forms outside those sections are never replaced.
 */
(function () {
  "use strict";

  var root = document.querySelector("[data-backup-page]");
  if (!root) {
    return;
  }
  // Higher than any operation's last line: the consumer then sends only
  // status frames.
  var NO_LINES = 2147483647;
  var terminal = (root.dataset.terminal || "").split(",");
  var interval = parseInt(root.dataset.interval || "15000", 10);
  var followed = {}; // operation id -> {row, socket, done, retries}
  var state = { refreshes: 0, events: 0, refreshing: false, again: false };
  window.backupPage = state;

  function field(row, name) {
    return row.querySelector('[data-field="' + name + '"]');
  }

  function isTerminal(status) {
    return terminal.indexOf(status) !== -1;
  }

  function show(row, event) {
    state.events += 1;
    row.dataset.status = event.status;
    var status = field(row, "status");
    status.textContent = event.status;
    status.className = "status-" + event.status;
    field(row, "progress").style.width = (event.progress || 0) + "%";
    field(row, "percent").textContent = event.progress || 0;
    field(row, "progress_message").textContent = event.progress_message || "";
  }

  function connect(id, entry) {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(
      scheme + window.location.host + "/ws/operations/" + id + "/?after=" + NO_LINES
    );
    entry.socket = socket;
    socket.onopen = function () {
      entry.retries = 0;
    };
    socket.onmessage = function (message) {
      var data = JSON.parse(message.data);
      if (data.type !== "status") {
        return;
      }
      show(entry.row, data);
      if (isTerminal(data.status)) {
        entry.done = true;
        socket.close();
        refresh();
      }
    };
    socket.onclose = function (event) {
      if (entry.done || entry.socket !== socket) {
        return;
      }
      if (event.code === 4401 || event.code === 4403) {
        entry.done = true; // not allowed: the page's own data stays
        return;
      }
      var delay = Math.min(10000, 500 * Math.pow(2, entry.retries++));
      window.setTimeout(function () {
        if (!entry.done) {
          connect(id, entry);
        }
      }, delay);
    };
  }

  function stop(id) {
    var entry = followed[id];
    entry.done = true;
    if (entry.socket) {
      entry.socket.close();
    }
    delete followed[id];
  }

  // Follow every running row on the page; let go of those no longer there.
  function bind() {
    var present = {};
    root.querySelectorAll("tr[data-operation]").forEach(function (row) {
      var id = row.dataset.operation;
      present[id] = true;
      if (followed[id]) {
        followed[id].row = row;
        return;
      }
      if (isTerminal(row.dataset.status)) {
        return;
      }
      var entry = { row: row, socket: null, done: false, retries: 0 };
      followed[id] = entry;
      connect(id, entry);
    });
    Object.keys(followed).forEach(function (id) {
      if (!present[id]) {
        stop(id);
      }
    });
  }

  function refresh() {
    if (state.refreshing) {
      state.again = true;
      return;
    }
    if (!window.fetch) {
      return;
    }
    state.refreshing = true;
    window
      .fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) {
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === null) {
          return;
        }
        var doc = new DOMParser().parseFromString(html, "text/html");
        root.querySelectorAll("[data-section]").forEach(function (section) {
          var fresh = doc.querySelector(
            '[data-backup-page] [data-section="' + section.dataset.section + '"]'
          );
          if (fresh) {
            section.replaceWith(document.importNode(fresh, true));
          }
        });
        state.refreshes += 1;
        bind();
      })
      .catch(function () {
        // Offline for a moment: the next refresh tries again.
      })
      .then(function () {
        state.refreshing = false;
        if (state.again) {
          state.again = false;
          refresh();
        }
      });
  }

  bind();
  window.setInterval(refresh, interval);
})();
