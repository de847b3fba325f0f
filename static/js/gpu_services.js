// GPU figures on the environment page: the host's GPU line and, beside each
// service holding GPU memory, how much and on which GPU. Follows
// ws/gpu/<env>/ (the samples of manage.py sample_gpus); reconnects on a drop.
(function () {
  "use strict";

  const summary = document.querySelector("[data-gpu-summary]");
  if (!summary || !window.WebSocket) return;
  let retry = 1000;

  function show(sample) {
    if (!sample) return;
    summary.textContent = sample.summary || "";
    const figures = sample.services || {};
    document.querySelectorAll("[data-gpu-service]").forEach(function (cell) {
      const text = figures[cell.dataset.gpuService] || "";
      if (cell.textContent !== text) cell.textContent = text;
    });
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + summary.dataset.wsPath);
    socket.onopen = function () { retry = 1000; };
    socket.onmessage = function (event) {
      const message = JSON.parse(event.data);
      if (message.type === "history") show(message.samples[message.samples.length - 1]);
      else if (message.type === "sample") show(message.sample);
    };
    socket.onclose = function (event) {
      if (event.code >= 4400 && event.code < 4500) return;
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }

  connect();
})();
