/*
 * Live resource usage of a stack's containers (templates/stacks/stack_stats.html).
 *
 * The page is rendered with one sample; while it is open and visible this
 * script asks stats.json for a new one every few seconds (the server takes
 * one `stats` sample per running container through the engine layer) and
 * redraws the rows. Network and block I/O show the totals and, from the
 * second sample on, the rate since the previous one.
 */
(function () {
  "use strict";

  var root = document.getElementById("container-stats");
  if (!root || !window.fetch) {
    return;
  }
  var url = root.dataset.statsUrl;
  var interval = parseInt(root.dataset.interval || "5000", 10);
  var body = root.querySelector('[data-field="rows"]');
  var errorBox = document.querySelector('[data-field="error"]');
  var generated = document.querySelector('[data-field="generated"]');
  var previous = {};
  var state = { samples: 0, errors: 0, inFlight: false };
  window.containerStats = state;

  function bytes(n) {
    var units = ["B", "KB", "MB", "GB", "TB"];
    var i = 0;
    n = n || 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }

  function cell(text, cls, field, label) {
    var td = document.createElement("td");
    if (label) {
      td.dataset.label = label;
    }
    if (cls) {
      td.className = cls;
    }
    if (field) {
      td.dataset.field = field;
    }
    td.textContent = text;
    return td;
  }

  function meter(td, percent, tone) {
    var m = document.createElement("span");
    m.className = "meter" + (tone ? " tone-" + tone : "");
    var bar = document.createElement("span");
    bar.style.width = Math.max(0, Math.min(100, percent)) + "%";
    m.appendChild(bar);
    td.appendChild(m);
  }

  function rate(id, key, now, value) {
    var before = previous[id];
    if (!before || !before.at || now <= before.at) {
      return "";
    }
    var per = (value - (before[key] || 0)) / ((now - before.at) / 1000);
    return per >= 0 ? " (" + bytes(per) + "/s)" : "";
  }

  function render(sample) {
    errorBox.hidden = !sample.error;
    errorBox.textContent = sample.error || "";
    generated.textContent = "sampled " + new Date().toLocaleTimeString();
    var now = Date.now();
    var rows = document.createDocumentFragment();
    sample.containers.forEach(function (c) {
      var tr = document.createElement("tr");
      tr.dataset.container = c.id;
      tr.dataset.service = c.service;
      var first = document.createElement("td");
      var link = document.createElement("a");
      link.href = root.dataset.logsUrl + "?service=" + encodeURIComponent(c.service);
      link.textContent = c.service;
      first.appendChild(link);
      tr.appendChild(first);
      var stateTd = document.createElement("td");
      stateTd.dataset.label = "State";
      var badge = document.createElement("span");
      badge.className = "badge tone-" + c.tone;
      badge.textContent = c.state;
      stateTd.appendChild(badge);
      tr.appendChild(stateTd);
      var s = c.stats;
      if (s && !s.error) {
        var cpu = cell(s.cpu_percent.toFixed(1) + " %", "num", "cpu", "CPU");
        meter(cpu, s.cpu_percent / (s.cpus || 1), s.cpu_percent > 80 ? "warn" : "");
        tr.appendChild(cpu);
        var mem = cell(bytes(s.memory_bytes) + " / " + bytes(s.memory_limit_bytes), "num", "memory", "Memory");
        meter(mem, s.memory_percent, s.memory_percent > 85 ? "bad" : s.memory_percent > 70 ? "warn" : "");
        tr.appendChild(mem);
        var rx = s.net_rx_bytes + s.net_tx_bytes;
        tr.appendChild(cell(bytes(s.net_rx_bytes) + " / " + bytes(s.net_tx_bytes) + rate(c.id, "net", now, rx), "num", "net", "Network rx / tx"));
        var io = s.block_read_bytes + s.block_write_bytes;
        tr.appendChild(cell(bytes(s.block_read_bytes) + " / " + bytes(s.block_write_bytes) + rate(c.id, "block", now, io), "num", "block", "Block read / write"));
        tr.appendChild(cell(String(s.pids), "num col-wide", "pids", "PIDs"));
        previous[c.id] = { at: now, net: rx, block: io };
      } else {
        var td = cell(s && s.error ? s.error : "not running: " + c.status, s && s.error ? "error-text" : "muted", "cpu");
        td.colSpan = 5;
        tr.appendChild(td);
      }
      var name = document.createElement("td");
      name.className = "col-wide";
      var code = document.createElement("code");
      code.textContent = c.name;
      name.appendChild(code);
      tr.appendChild(name);
      rows.appendChild(tr);
    });
    if (sample.containers.length) {
      body.textContent = "";
      body.appendChild(rows);
    }
    state.samples += 1;
  }

  function poll() {
    if (state.inFlight || document.hidden) {
      return;
    }
    state.inFlight = true;
    window
      .fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, redirect: "manual" })
      .then(function (response) {
        if (response.type === "opaqueredirect" || response.status === 403) {
          throw new Error("Not allowed any more (logged out?): reload the page.");
        }
        if (!response.ok) {
          throw new Error("Stats request failed: HTTP " + response.status);
        }
        return response.json();
      })
      .then(render)
      .catch(function (err) {
        state.errors += 1;
        errorBox.hidden = false;
        errorBox.textContent = err.message;
      })
      .finally(function () {
        state.inFlight = false;
      });
  }

  poll();
  window.setInterval(poll, interval);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      poll();
    }
  });
})();
