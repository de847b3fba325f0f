/*
 * The console page: an xterm.js terminal (static/vendor/xterm) on a shell
 * in a container, over ws/console/<env>/<stack>/<service>/ (stacks/console.py).
 *
 * Output arrives as binary frames and is written to the terminal as is;
 * keystrokes go out as {"type": "input"}; the terminal's size follows the
 * box ({"type": "resize"}). The server records every session and line in
 * the audit log. No reconnect: a closed console is a closed session.
 */
(function () {
  "use strict";

  var root = document.getElementById("console");
  if (!root || !window.Terminal) {
    return;
  }
  var field = function (name) {
    return root.querySelector('[data-field="' + name + '"]');
  };
  var stateEl = field("state");
  var state = { open: false, closed: false, received: 0, hello: null, exit: null, error: "" };
  window.portalConsole = state;

  var term = new window.Terminal({
    cursorBlink: true,
    convertEol: false,
    fontSize: 13,
    scrollback: 5000,
    theme: { background: "#111111" }
  });
  var fit = window.FitAddon ? new window.FitAddon.FitAddon() : null;
  if (fit) {
    term.loadAddon(fit);
  }
  term.open(field("terminal"));
  if (fit) {
    fit.fit();
  }
  state.term = term;

  function setState(text, cls) {
    stateEl.textContent = text;
    stateEl.className = "log-state" + (cls ? " " + cls : "");
  }

  var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  var url =
    scheme + window.location.host + root.dataset.wsPath +
    "?shell=" + encodeURIComponent(root.dataset.shell || "sh") +
    "&cols=" + term.cols + "&rows=" + term.rows;
  var socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  state.socket = socket;

  function send(message) {
    if (socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(message));
    }
  }

  socket.onopen = function () {
    state.open = true;
    setState("connected", "live");
    term.focus();
  };
  socket.onmessage = function (event) {
    if (typeof event.data !== "string") {
      var bytes = new Uint8Array(event.data);
      state.received += bytes.length;
      term.write(bytes);
      return;
    }
    var message = JSON.parse(event.data);
    if (message.type === "hello") {
      state.hello = message;
      field("container").textContent = message.container + " · session " + message.session;
    } else if (message.type === "exit") {
      state.exit = message.code;
      term.write("\r\n[the shell ended with exit code " + message.code + "]\r\n");
    } else if (message.type === "error") {
      state.error = message.message;
      term.write("\r\n" + message.message + "\r\n");
      setState("refused", "error");
    }
  };
  socket.onclose = function (event) {
    state.closed = true;
    state.closeCode = event.code;
    if (!state.error) {
      setState(event.code === 4401 || event.code === 4403 ? "not allowed" : "closed", event.code === 1000 ? "" : "error");
    }
  };

  term.onData(function (data) {
    send({ type: "input", data: data });
  });
  term.onResize(function (size) {
    send({ type: "resize", cols: size.cols, rows: size.rows });
  });
  window.addEventListener("resize", function () {
    if (fit) {
      fit.fit();
    }
  });
  root.querySelector('[data-action="disconnect"]').addEventListener("click", function () {
    socket.close(1000);
  });
})();
