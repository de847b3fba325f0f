/*
 * What every page shares (loaded by templates/base.html). Each part is an
 * enhancement: the page works without it.
 *
 * - form[data-confirm]: asks before submitting. With data-impact (a URL of
 *   JSON {"text": ...}) the answer names what else the action hits, read
 *   when the button is pressed (not computed for every stack on load).
 * - details[data-fragment]: loads its body (an HTML fragment) when opened
 *   the first time; without scripts the summary's link opens the page.
 * - [data-refresh="<seconds>"][id]: a region fetched again from the same
 *   URL (header X-Fragment: 1) and replaced in place while the page is
 *   visible: dashboards and lists stay current without a reload.
 * - [data-when]: elements shown only in some states; window.portal.applyState
 *   (root, state) shows and hides them when a live script learns the state.
 * - window.portal.dropMessages(cls): removes flash messages that stopped
 *   being true (a "queued" message once the operation runs).
 */
(function () {
  "use strict";

  function fetchText(url, headers) {
    return window
      .fetch(url, { credentials: "same-origin", headers: headers || {}, redirect: "manual" })
      .then(function (response) {
        if (response.type === "opaqueredirect") {
          throw new Error("signed out: reload the page");
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      });
  }

  // --- Confirmations --------------------------------------------------------
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) {
      return;
    }
    if (form.dataset.confirmed === "1") {
      return;
    }
    event.preventDefault();
    var question = form.dataset.confirm;
    var ask = function (extra) {
      if (window.confirm(extra ? question + "\n\n" + extra : question)) {
        form.dataset.confirmed = "1";
        form.submit();
      }
    };
    if (!form.dataset.impact || !window.fetch) {
      ask("");
      return;
    }
    fetchText(form.dataset.impact, { Accept: "application/json" })
      .then(function (text) {
        ask(JSON.parse(text).text || "");
      })
      .catch(function () {
        ask("");
      });
  });

  // --- Fragments loaded on demand ---------------------------------------------
  document.addEventListener(
    "toggle",
    function (event) {
      var details = event.target;
      if (!(details instanceof HTMLDetailsElement) || !details.open) {
        return;
      }
      var url = details.dataset.fragment;
      if (!url || details.dataset.loaded) {
        return;
      }
      details.dataset.loaded = "1";
      var body = details.querySelector("[data-fragment-body]");
      fetchText(url, { "X-Fragment": "1" })
        .then(function (html) {
          if (body) {
            body.innerHTML = html;
          }
        })
        .catch(function (err) {
          details.dataset.loaded = "";
          if (body) {
            body.textContent = "Could not load: " + err.message;
          }
        });
    },
    true
  );

  // --- Regions refreshed in place --------------------------------------------
  var regions = Array.prototype.slice.call(document.querySelectorAll("[data-refresh][id]"));
  var refreshing = false;
  var state = { refreshes: 0, errors: 0 };

  function refresh() {
    if (refreshing || document.hidden || !regions.length) {
      return;
    }
    refreshing = true;
    fetchText(window.location.href, { "X-Fragment": "1" })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        regions = regions.map(function (region) {
          var fresh = doc.getElementById(region.id);
          if (!fresh || !region.parentNode) {
            return region;
          }
          // Keep what the user opened.
          var open = {};
          region.querySelectorAll("details[id]").forEach(function (d) {
            open[d.id] = d.open;
          });
          fresh.querySelectorAll("details[id]").forEach(function (d) {
            if (d.id in open) {
              d.open = open[d.id];
            }
          });
          region.parentNode.replaceChild(document.importNode(fresh, true), region);
          return document.getElementById(fresh.id);
        });
        state.refreshes += 1;
      })
      .catch(function () {
        state.errors += 1;
      })
      .finally(function () {
        refreshing = false;
      });
  }

  if (regions.length && window.fetch) {
    var seconds = Math.min.apply(
      null,
      regions.map(function (r) {
        return parseFloat(r.dataset.refresh) || 10;
      })
    );
    window.setInterval(refresh, Math.max(2, seconds) * 1000);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) {
        refresh();
      }
    });
  }

  // --- State-dependent elements -----------------------------------------------
  function applyState(root, value) {
    root.querySelectorAll("[data-when]").forEach(function (el) {
      el.hidden = el.dataset.when.split(/\s+/).indexOf(value) === -1;
    });
  }

  function dropMessages(cls) {
    document.querySelectorAll(".messages li." + cls).forEach(function (li) {
      var list = li.parentNode;
      list.removeChild(li);
      if (!list.children.length) {
        list.parentNode.removeChild(list);
      }
    });
  }

  window.portal = {
    applyState: applyState,
    dropMessages: dropMessages,
    refresh: refresh,
    regions: state
  };
})();
