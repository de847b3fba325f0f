// Live state of an environment page: polls the status JSON every few
// seconds and updates the stack badges and service rows in place.
// Confirm dialogs of the stop/restart forms read their data-confirm text.
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

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  function setClassed(el, prefix, value) {
    if (!el) return;
    el.className = el.className.split(/\s+/).filter(function (c) {
      return c && c.indexOf(prefix) !== 0;
    }).concat([prefix + (value || "none")]).join(" ");
  }

  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }

  function renderService(row, svc) {
    const state = row.querySelector('[data-field="state"]');
    setText(state, svc.state);
    setClassed(state, "state-", svc.state);
    const health = row.querySelector('[data-field="health"]');
    setText(health, svc.health || "");
    setClassed(health, "health-", svc.health);
    setText(row.querySelector('[data-field="ports"]'), (svc.ports || []).join(", "));
    setText(row.querySelector('[data-field="uptime"]'), svc.uptime ? "up " + svc.uptime : (svc.status || ""));
    setText(row.querySelector('[data-field="container_id"]'), svc.container_id || "");
    setText(row.querySelector('[data-field="image"]'), svc.image || "");
  }

  function render(status) {
    status.stacks.forEach(function (stack) {
      const card = document.querySelector('.stack-card[data-stack="' + CSS.escape(stack.name) + '"]');
      if (!card) return;
      const badge = card.querySelector('header [data-field="state"]');
      setText(badge, stack.state);
      setClassed(badge, "state-", stack.state);
      setText(card.querySelector('header [data-field="count"]'), stack.running + "/" + stack.total + " running");
      const health = card.querySelector('header [data-field="health"]');
      if (health) {
        health.hidden = !stack.health;
        setText(health, stack.health || "");
        setClassed(health, "health-", stack.health);
      }
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
