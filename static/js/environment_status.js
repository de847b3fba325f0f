// Live state of an environment page: polls the status JSON every few
// seconds and updates the stack badges, service rows and the operations
// running on each stack in place. Buttons follow the state: an action
// form is shown only in the states it makes sense in (its data-when), so
// a stack that has just started offers Stop and Restart, not Start.
// Confirm dialogs are handled by portal.js (data-confirm, data-impact).
(function () {
  "use strict";

  const root = document.getElementById("environment-status");
  if (!root) return;
  const url = root.dataset.statusUrl;
  const interval = parseInt(root.dataset.interval || "2500", 10);
  const errorBox = root.querySelector("[data-error]");
  const updated = root.querySelector("[data-updated]");
  let timer = null;
  let inFlight = false;
  const state = { polls: 0 };
  window.environmentStatus = state;

  // A link to #stack-<name> or #service-<stack>-<name> opens its card.
  function openFromHash() {
    if (!location.hash) return;
    const target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
    const card = target && target.closest("details.stack-card");
    if (card) card.open = true;
  }
  openFromHash();
  window.addEventListener("hashchange", openFromHash);

  function setClassed(el, prefix, value) {
    if (!el) return;
    el.className = el.className.split(/\s+/).filter(function (c) {
      return c && c.indexOf(prefix) !== 0;
    }).concat([prefix + (value || "none")]).join(" ");
  }

  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }

  function applyState(scope, value) {
    if (scope && window.portal) window.portal.applyState(scope, value);
  }

  function renderPorts(cell, ports) {
    if (!cell) return;
    const key = ports.join(",");
    if (cell.dataset.key === key) return;
    cell.dataset.key = key;
    cell.textContent = "";
    ports.forEach(function (port) {
      const span = document.createElement("span");
      span.className = "port";
      span.textContent = port;
      cell.appendChild(span);
      cell.appendChild(document.createTextNode(" "));
    });
  }

  function renderService(row, svc) {
    const stateEl = row.querySelector('[data-field="state"]');
    setText(stateEl, svc.state);
    setClassed(stateEl, "state-", svc.state);
    setClassed(stateEl, "tone-", svc.tone);
    const exit = row.querySelector('[data-field="exit"]');
    if (exit) {
      const hasExit = svc.exit_code !== null && svc.exit_code !== undefined;
      exit.hidden = !hasExit;
      if (hasExit) {
        setText(exit, "exit " + svc.exit_code);
        setClassed(exit, "tone-", svc.exit_code === 0 || svc.exit_code === 143 || svc.exit_code === 130 ? "idle" : svc.exit_code === 137 ? "warn" : "bad");
      }
    }
    const health = row.querySelector('[data-field="health"]');
    setText(health, svc.health || "");
    setClassed(health, "health-", svc.health);
    renderPorts(row.querySelector('[data-field="ports"]'), svc.ports || []);
    setText(row.querySelector('[data-field="uptime"]'), svc.uptime ? "up " + svc.uptime : (svc.status || ""));
    setText(row.querySelector('[data-field="container_id"]'), svc.container_id || "");
    setText(row.querySelector('[data-field="image"]'), svc.image || "");
    applyState(row.querySelector('[data-actions="service"]'), svc.state);
  }

  function renderBusy(card, operations) {
    const busy = card.querySelector('[data-field="busy"]');
    if (!busy) return;
    const key = operations.map(function (op) { return op.id + op.status; }).join(",");
    if (busy.dataset.key === key) return;
    busy.dataset.key = key;
    busy.textContent = "";
    operations.forEach(function (op) {
      const a = document.createElement("a");
      a.href = op.url;
      a.className = "badge tone-" + (op.status === "running" ? "info" : "warn");
      a.textContent = op.kind + (op.service ? " " + op.service : "") + " " + op.status;
      busy.appendChild(a);
      busy.appendChild(document.createTextNode(" "));
    });
    busy.hidden = operations.length === 0;
  }

  function render(status) {
    const ops = status.operations || [];
    status.stacks.forEach(function (stack) {
      const card = document.querySelector('.stack-card[data-stack="' + CSS.escape(stack.name) + '"]');
      if (!card) return;
      const badge = card.querySelector('summary [data-field="state"]');
      setText(badge, stack.state);
      setClassed(badge, "state-", stack.state);
      setClassed(badge, "tone-", stack.tone);
      setText(card.querySelector('summary [data-field="count"]'), stack.running + "/" + stack.total + " running");
      const health = card.querySelector('summary [data-field="health"]');
      if (health) {
        health.hidden = !stack.health;
        setText(health, stack.health || "");
        setClassed(health, "health-", stack.health);
        setClassed(health, "tone-", stack.health === "healthy" ? "ok" : stack.health === "unhealthy" ? "bad" : "warn");
      }
      applyState(card.querySelector('[data-actions="stack"]'), stack.state);
      renderBusy(card, ops.filter(function (op) { return op.stack === stack.name || op.stack === null; }));
      stack.services.forEach(function (svc) {
        const row = card.querySelector('tr[data-service="' + CSS.escape(svc.name) + '"]');
        if (row) renderService(row, svc);
      });
    });
    Object.keys(status.summary).forEach(function (key) {
      setText(root.querySelector('[data-summary="' + key + '"]'), String(status.summary[key]));
    });
    setText(updated, "updated " + new Date().toLocaleTimeString());
    showError(status.error);
    state.polls += 1;
  }

  function showError(text) {
    if (!errorBox) return;
    errorBox.hidden = !text;
    setText(errorBox, text || "");
  }

  function poll() {
    if (inFlight || document.hidden) return schedule();
    inFlight = true;
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}, redirect: "manual"})
      .then(function (response) {
        if (response.type === "opaqueredirect" || response.status === 403) {
          throw new Error("Not allowed any more (logged out?): reload the page.");
        }
        if (!response.ok) throw new Error("Status request failed: HTTP " + response.status);
        return response.json();
      })
      .then(render)
      .catch(function (err) { showError(err.message); })
      .finally(function () { inFlight = false; schedule(); });
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(poll, interval);
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) poll();
  });
  schedule();
})();
