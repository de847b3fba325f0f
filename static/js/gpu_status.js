// GPU page: one card per GPU with gauges and a history chart (inline SVG),
// who holds the memory, the processes. Samples come over ws/gpu/<env>/: the
// stored history first, then each new one; the page starts from the history
// embedded in it (#gpu-history) and reconnects when the socket drops.
(function () {
  "use strict";

  const root = document.querySelector("[data-gpu-page]");
  if (!root) return;
  const SVG = "http://www.w3.org/2000/svg";
  const MAX_SAMPLES = 360;
  const interval = parseFloat(root.dataset.interval || "5");
  const field = function (name) { return document.querySelector('[data-field="' + name + '"]'); };
  let samples = JSON.parse(document.getElementById("gpu-history").textContent || "[]");
  let lastSeq = samples.length ? samples[samples.length - 1].seq || 0 : 0;
  let retry = 1000;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }

  function bytes(value) {
    if (value === null || value === undefined) return "n/a";
    if (value >= 1073741824) return (value / 1073741824).toFixed(1) + " GiB";
    return (value / 1048576).toFixed(0) + " MiB";
  }

  function num(value, unit, digits) {
    if (value === null || value === undefined) return "n/a";
    return (digits !== undefined ? value.toFixed(digits) : String(value)) + (unit ? " " + unit : "");
  }

  function ratio(part, whole) {
    if (part === null || part === undefined || !whole) return null;
    return Math.max(0, Math.min(100, 100 * part / whole));
  }

  // A ring gauge: the arc is the percentage, the text the figure.
  function gauge(name, percent, text, detail) {
    const box = el("div", { "class": "gauge", "data-gauge": name });
    const ring = svg("svg", { viewBox: "0 0 42 42", width: "84", height: "84", role: "img" });
    ring.appendChild(svg("circle", { cx: "21", cy: "21", r: "15.9", "class": "gauge-track" }));
    if (percent !== null) {
      const arc = svg("circle", { cx: "21", cy: "21", r: "15.9", "class": "gauge-value" + (percent >= 90 ? " high" : "") });
      arc.setAttribute("stroke-dasharray", percent.toFixed(1) + " " + (100 - percent).toFixed(1));
      arc.setAttribute("stroke-dashoffset", "25");
      ring.appendChild(arc);
    }
    box.appendChild(ring);
    box.appendChild(el("div", { "class": "gauge-figure", "data-field": "figure" }, text));
    box.appendChild(el("div", { "class": "muted" }, name + (detail ? " · " + detail : "")));
    return box;
  }

  // History chart of one GPU: utilisation and memory in use, in percent.
  function chart(uuid) {
    const width = 360, height = 90;
    const box = svg("svg", { viewBox: "0 0 " + width + " " + height, "class": "gpu-chart", "data-chart": uuid, preserveAspectRatio: "none" });
    [0, 50, 100].forEach(function (level) {
      const y = height - level * height / 100;
      box.appendChild(svg("line", { x1: "0", x2: String(width), y1: String(y), y2: String(y), "class": "grid-line" }));
    });
    const points = { util: [], mem: [] };
    const mine = samples.map(function (s) {
      return (s.gpus || []).find(function (g) { return g.uuid === uuid; });
    });
    const n = Math.max(mine.length - 1, 1);
    mine.forEach(function (g, i) {
      if (!g) return;
      const x = (i * width / n).toFixed(1);
      if (g.utilization_gpu !== null && g.utilization_gpu !== undefined) {
        points.util.push(x + "," + (height - g.utilization_gpu * height / 100).toFixed(1));
      }
      const mem = ratio(g.memory_used_bytes, g.memory_total_bytes);
      if (mem !== null) points.mem.push(x + "," + (height - mem * height / 100).toFixed(1));
    });
    box.appendChild(svg("polyline", { points: points.mem.join(" "), "class": "line-mem", "data-series": "memory" }));
    box.appendChild(svg("polyline", { points: points.util.join(" "), "class": "line-util", "data-series": "utilization" }));
    return box;
  }

  function card(gpu) {
    const section = el("section", { "class": "stack-card gpu-card", "data-gpu": String(gpu.index) });
    const head = el("header");
    head.appendChild(el("h2", {}, "GPU " + gpu.index + " · " + (gpu.name || "GPU")));
    head.appendChild(el("span", { "class": "badge", "data-field": "pstate" }, gpu.pstate || "P?"));
    head.appendChild(el("span", { "class": "muted" }, (gpu.uuid || "") + (gpu.pci_bus_id ? " · " + gpu.pci_bus_id : "")));
    section.appendChild(head);
    const gauges = el("div", { "class": "gauges" });
    gauges.appendChild(gauge("utilisation", gpu.utilization_gpu === null ? null : gpu.utilization_gpu,
      num(gpu.utilization_gpu, "%"), "memory bus " + num(gpu.utilization_memory, "%")));
    gauges.appendChild(gauge("memory", ratio(gpu.memory_used_bytes, gpu.memory_total_bytes),
      bytes(gpu.memory_used_bytes), "of " + bytes(gpu.memory_total_bytes)));
    gauges.appendChild(gauge("power", ratio(gpu.power_draw_w, gpu.power_limit_w),
      num(gpu.power_draw_w, "W", 0), "limit " + num(gpu.power_limit_w, "W", 0)));
    gauges.appendChild(gauge("temperature", gpu.temperature_c === null ? null : Math.min(100, gpu.temperature_c),
      num(gpu.temperature_c, "°C"), "fan " + num(gpu.fan_percent, "%")));
    section.appendChild(gauges);
    const facts = el("p", { "class": "muted gpu-facts" });
    facts.textContent = "SM clock " + num(gpu.clock_sm_mhz, "MHz") + " (max " + num(gpu.clock_sm_max_mhz, "MHz") +
      ") · memory clock " + num(gpu.clock_mem_mhz, "MHz") + " · uncorrected ECC errors " +
      num(gpu.ecc_uncorrected) + " · XID errors " + num(gpu.xid_errors) + " · driver " + (gpu.driver_version || "n/a");
    section.appendChild(facts);
    const legend = el("p", { "class": "muted chart-legend" });
    legend.appendChild(el("span", { "class": "key-util" }, "utilisation %"));
    legend.appendChild(el("span", { "class": "key-mem" }, "memory in use %"));
    legend.appendChild(document.createTextNode(" over the last " + samples.length + " samples"));
    section.appendChild(legend);
    section.appendChild(chart(gpu.uuid));
    return section;
  }

  function row(cells, attrs) {
    const tr = el("tr", attrs);
    cells.forEach(function (text) { tr.appendChild(el("td", {}, text)); });
    return tr;
  }

  function render() {
    const latest = samples[samples.length - 1];
    if (!latest) {
      field("updated").textContent = "no sample yet";
      return;
    }
    field("summary").textContent = latest.summary || "";
    const age = Date.now() / 1000 - latest.taken;
    field("updated").textContent = "sampled " + new Date(latest.taken * 1000).toLocaleTimeString() +
      " via " + latest.source + (age > 3 * interval ? " (stale: " + Math.round(age) + " s old)" : "");
    const error = field("error");
    error.textContent = latest.error || "";
    error.hidden = !latest.error;
    const cards = field("gpus");
    cards.replaceChildren.apply(cards, (latest.gpus || []).map(card));
    const holders = field("holders");
    const holderRows = (latest.holders || []).map(function (h) {
      return row([h.label, h.gpus.join(", "), String(h.processes), h.text], { "data-holder": h.label });
    });
    if (!holderRows.length) holderRows.push(row(["No process holds GPU memory."], { "class": "muted" }));
    holders.replaceChildren.apply(holders, holderRows);
    const indexOf = {};
    (latest.gpus || []).forEach(function (g) { indexOf[g.uuid] = g.index; });
    const processes = field("processes");
    processes.replaceChildren.apply(processes, (latest.processes || []).map(function (p) {
      return row([
        p.pid === null ? "" : String(p.pid), p.name || "", String(indexOf[p.gpu_uuid] ?? p.gpu_uuid ?? ""),
        bytes(p.used_memory_bytes), p.container_name || (p.container_id || "").slice(0, 12),
        p.service ? p.stack + "/" + p.service : (p.environment && p.environment !== latest.environment ? "environment " + p.environment : ""),
      ], { "data-pid": String(p.pid) });
    }));
  }

  function add(sample) {
    if (sample.seq && sample.seq <= lastSeq) return false;
    lastSeq = sample.seq || lastSeq;
    samples.push(sample);
    if (samples.length > MAX_SAMPLES) samples = samples.slice(samples.length - MAX_SAMPLES);
    return true;
  }

  function connect() {
    const state = field("connection");
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + root.dataset.wsPath);
    socket.onopen = function () { state.textContent = "live"; state.className = "log-state live"; retry = 1000; };
    socket.onmessage = function (event) {
      const message = JSON.parse(event.data);
      if (message.type === "history") {
        let changed = false;
        message.samples.forEach(function (s) { changed = add(s) || changed; });
        if (changed || !samples.length) render();
      } else if (message.type === "sample") {
        if (add(message.sample)) render();
      } else if (message.type === "error") {
        field("error").textContent = message.message;
        field("error").hidden = false;
      }
    };
    socket.onclose = function (event) {
      state.className = "log-state error";
      if (event.code === 4401 || event.code === 4403 || event.code === 4404) {
        state.textContent = "refused (" + event.code + ")";
        return;
      }
      state.textContent = "reconnecting";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }

  render();
  connect();
})();
