// Open Clanker web chat: talks to the gateway over /ws (SPEC §5) and the session API.
// User text reaches the page through textContent only; model text through markdown.js, which
// rebuilds markdown-it's output through an allowlist. No build step or module loader: the
// socket, the session list and the dialogs share one small state in this file.
"use strict";

(() => {
  const TOKEN_KEY = "openClanker.token";
  const SESSION_KEY = "openClanker.session";
  const TITLES_KEY = "openClanker.titles";
  const MAX_BACKOFF_MS = 30000;

  const $ = (id) => document.getElementById(id);
  const ui = {
    app: $("app"),
    sidebar: $("sidebar"),
    backdrop: $("backdrop"),
    toggle: $("toggle-sessions"),
    sessions: $("sessions"),
    sessionsEmpty: $("sessions-empty"),
    newChat: $("new-chat"),
    changeToken: $("change-token"),
    title: $("chat-title"),
    status: $("status"),
    statusText: $("status-text"),
    banner: $("banner"),
    messages: $("messages"),
    empty: $("empty"),
    composer: $("composer"),
    input: $("input"),
    send: $("send"),
    stop: $("stop"),
    prompt: $("token-prompt"),
    replacePrompt: $("replace-prompt"),
    keepToken: $("keep-token"),
    useToken: $("use-token"),
    tokenForm: $("token-form"),
    tokenInput: $("token-input"),
    tokenError: $("token-error"),
  };

  const state = {
    token: null,
    session: null,
    ws: null,
    ready: false,
    backoffMs: 1000,
    reconnectTimer: null,
    pending: new Map(), // chat id -> {bubble, text, command}
    nextId: 1,
    historyLoad: 0,
    fresh: new Set(), // sessions made here and not yet written to: nothing to load
  };

  // ---- storage ---------------------------------------------------------------------------

  function store(key, value) {
    try {
      if (value === null) localStorage.removeItem(key);
      else localStorage.setItem(key, value);
    } catch (_) {
      /* private mode: keep it in memory only */
    }
  }

  function load(key) {
    try {
      return localStorage.getItem(key);
    } catch (_) {
      return null;
    }
  }

  function titles() {
    try {
      return JSON.parse(load(TITLES_KEY) || "{}") || {};
    } catch (_) {
      return {};
    }
  }

  function rememberTitle(session, text) {
    const all = titles();
    if (all[session]) return;
    const first = text.split("\n").find((line) => line.trim()) || text;
    all[session] = first.replace(/\s+/g, " ").trim().slice(0, 60);
    const keys = Object.keys(all);
    for (const old of keys.slice(0, Math.max(0, keys.length - 200))) delete all[old];
    store(TITLES_KEY, JSON.stringify(all));
  }

  function newSessionKey() {
    const bytes = new Uint8Array(6);
    crypto.getRandomValues(bytes);
    const key = "webchat:" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    state.fresh.add(key);
    return key;
  }

  // ---- conversation view -----------------------------------------------------------------

  function scrollToEnd() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function nearEnd() {
    const m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  }

  function addMessage(role, text) {
    ui.empty.hidden = true;
    const row = document.createElement("div");
    row.className = "msg " + role;
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    row.append(bubble);
    setBubble(bubble, role, text);
    const follow = nearEnd();
    ui.messages.append(row);
    if (follow || role === "user") scrollToEnd();
    return bubble;
  }

  function setBubble(bubble, role, text) {
    bubble.replaceChildren();
    if (role === "user") {
      // The user's own words, exactly as typed.
      const p = document.createElement("p");
      p.className = "plain";
      p.textContent = text;
      bubble.append(p);
    } else {
      window.OpenClankerMarkdown.render(text, bubble);
    }
  }

  function clearView() {
    for (const el of [...ui.messages.querySelectorAll(".msg")]) el.remove();
    ui.empty.hidden = false;
  }

  function showError(bubble, message) {
    const row = bubble.parentElement;
    row.classList.add("failed");
    row.classList.remove("streaming");
    const note = document.createElement("p");
    note.className = "error-note";
    note.textContent = message;
    bubble.append(note);
  }

  let renderQueued = new Set();
  function scheduleRender(entry) {
    renderQueued.add(entry);
    if (renderQueued.size > 1) return;
    requestAnimationFrame(() => {
      const follow = nearEnd();
      for (const e of renderQueued) setBubble(e.bubble, "assistant", e.text);
      renderQueued = new Set();
      if (follow) scrollToEnd();
    });
  }

  function setBusy(busy) {
    ui.input.disabled = busy;
    ui.send.disabled = busy;
    ui.send.hidden = busy;
    ui.stop.hidden = !busy;
    ui.stop.disabled = false;
    ui.stop.textContent = "Stop";
    ui.composer.classList.toggle("busy", busy);
    if (busy) ui.stop.focus();
    else ui.input.focus();
  }

  function stopAnswer() {
    if (!state.pending.size || !state.ws || !state.ready) return;
    ui.stop.disabled = true;
    ui.stop.textContent = "Stopping…";
    state.ws.send(JSON.stringify({ type: "stop", session: state.session }));
  }

  function updateTitle() {
    const title = state.session ? titles()[state.session] : null;
    ui.title.textContent = title || "New chat";
    document.title = title ? title + " · Open Clanker" : "Open Clanker";
  }

  // ---- banner and status -----------------------------------------------------------------

  function banner(text) {
    ui.banner.textContent = text || "";
    ui.banner.hidden = !text;
  }

  function setStatus(kind, text) {
    ui.status.dataset.state = kind;
    ui.status.title = text;
    ui.statusText.textContent = text;
  }

  // ---- HTTP API --------------------------------------------------------------------------

  async function api(path) {
    let response;
    try {
      response = await fetch(path, {
        headers: { Authorization: "Bearer " + state.token },
        cache: "no-store",
      });
    } catch (_) {
      banner("The gateway cannot be reached. Check that it is running; retrying…");
      scheduleReconnect();
      return null;
    }
    if (response.status === 401) {
      askForToken("The gateway did not accept this token. Please paste a valid one.");
      return null;
    }
    if (response.status === 404) return { notFound: true };
    if (!response.ok) {
      banner("The gateway answered " + response.status + ". Please try again shortly.");
      return null;
    }
    return response.json();
  }

  async function refreshSessions() {
    const data = await api("/api/v1/sessions?limit=100");
    if (!data || !Array.isArray(data.sessions)) return;
    const names = titles();
    const list = data.sessions
      .filter((s) => typeof s.key === "string" && s.key.startsWith("webchat:"))
      .sort((a, b) => String(b.updated_at).localeCompare(String(a.updated_at)));
    ui.sessions.replaceChildren();
    for (const s of list) {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "session";
      button.dataset.key = s.key;
      if (s.key === state.session) button.setAttribute("aria-current", "true");
      const name = document.createElement("span");
      name.className = "session-name";
      name.textContent = names[s.key] || "Chat " + s.key.slice("webchat:".length, 14);
      const meta = document.createElement("span");
      meta.className = "session-meta";
      meta.textContent = when(s.updated_at) + " · " + s.message_count + " messages";
      button.append(name, meta);
      button.addEventListener("click", () => switchSession(s.key));
      li.append(button);
      ui.sessions.append(li);
    }
    ui.sessionsEmpty.hidden = list.length > 0;
  }

  function when(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return "";
    const today = new Date();
    return date.toDateString() === today.toDateString()
      ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : date.toLocaleDateString([], { month: "short", day: "numeric" });
  }

  async function loadHistory() {
    const ticket = ++state.historyLoad;
    const session = state.session;
    clearView();
    updateTitle();
    if (state.fresh.has(session)) return; // the gateway has no such session yet
    const data = await api(
      "/api/v1/sessions/" + encodeURIComponent(session) + "/messages?limit=200",
    );
    if (ticket !== state.historyLoad || !data || data.notFound) return;
    for (const m of data.messages || []) {
      addMessage(m.role === "user" ? "user" : "assistant", String(m.text ?? ""));
    }
    const first = (data.messages || []).find((m) => m.role === "user");
    if (first) {
      rememberTitle(session, first.text);
      updateTitle();
    }
    scrollToEnd();
  }

  function switchSession(key) {
    if (state.pending.size) return; // finish the streaming reply first
    state.session = key;
    store(SESSION_KEY, key);
    closeDrawer();
    for (const b of ui.sessions.querySelectorAll(".session")) {
      if (b.dataset.key === key) b.setAttribute("aria-current", "true");
      else b.removeAttribute("aria-current");
    }
    loadHistory();
  }

  // ---- WebSocket -------------------------------------------------------------------------

  function connect() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    if (!state.token) return;
    if (state.ws && state.ws.readyState <= WebSocket.OPEN) return;
    setStatus("connecting", "Connecting…");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(scheme + "//" + location.host + "/ws");
    state.ws = ws;
    ws.addEventListener("open", () => {
      ws.send(JSON.stringify({ type: "auth", token: state.token }));
      ws.send(JSON.stringify({ type: "ping" })); // its pong confirms the token was taken
    });
    ws.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      onFrame(ws, frame);
    });
    ws.addEventListener("close", () => onClose(ws));
  }

  function onFrame(ws, frame) {
    if (ws !== state.ws) return;
    const entry = frame.id !== undefined ? state.pending.get(frame.id) : undefined;
    switch (frame.type) {
      case "pong":
        if (!state.ready) {
          const wasDown = !ui.banner.hidden;
          state.ready = true;
          state.backoffMs = 1000;
          banner(null);
          setStatus("online", "Connected");
          if (wasDown) {
            // A reply that finished while we were away is in the stored history.
            refreshSessions();
            loadHistory();
          }
        }
        break;
      case "delta":
        if (entry) {
          entry.text += frame.text;
          scheduleRender(entry);
        }
        break;
      case "reset":
        if (entry) {
          entry.text = "";
          scheduleRender(entry);
        }
        break;
      case "reply":
        if (entry) finishReply(frame.id, entry, frame);
        break;
      case "stopped":
        // Nothing was running yet (the answer had not started): the button may be used again.
        if (!frame.stopped && state.pending.size) {
          ui.stop.disabled = false;
          ui.stop.textContent = "Stop";
        }
        break;
      case "error":
        if (frame.code === "unauthorized") {
          state.ready = false;
          askForToken("The gateway did not accept this token. Please paste a valid one.");
        } else if (entry) {
          state.pending.delete(frame.id);
          setBubble(entry.bubble, "assistant", entry.text);
          showError(entry.bubble, frame.message || "Something went wrong.");
          if (!state.pending.size) setBusy(false);
        } else {
          banner(frame.message || "The gateway reported an error.");
        }
        break;
      default:
        break;
    }
  }

  function finishReply(id, entry, frame) {
    state.pending.delete(id);
    renderQueued.delete(entry);
    const content = frame.reply && typeof frame.reply.content === "string"
      ? frame.reply.content
      : entry.text;
    if (entry.command === "/new" || entry.command === "/reset") {
      clearView();
      entry.bubble = addMessage("assistant", content);
    } else {
      setBubble(entry.bubble, "assistant", content);
    }
    if (frame.reply && frame.reply.finish_reason === "stopped") {
      const note = document.createElement("p");
      note.className = "stopped-note";
      note.textContent = "Stopped";
      entry.bubble.append(note);
    }
    entry.bubble.parentElement.classList.remove("streaming");
    if (nearEnd()) scrollToEnd();
    if (!state.pending.size) setBusy(false);
    refreshSessions();
  }

  function onClose(ws) {
    if (ws !== state.ws) return;
    state.ws = null;
    state.ready = false;
    for (const [id, entry] of state.pending) {
      state.pending.delete(id);
      showError(entry.bubble, "The connection dropped before the reply finished.");
    }
    setBusy(false);
    if (!state.token || !ui.prompt.hidden) return; // waiting for a new token
    setStatus("offline", "Offline");
    scheduleReconnect();
  }

  function scheduleReconnect() {
    if (state.reconnectTimer || !state.token) return;
    const delay = state.backoffMs;
    state.backoffMs = Math.min(state.backoffMs * 2, MAX_BACKOFF_MS);
    banner(
      "The gateway cannot be reached. Retrying in " + Math.round(delay / 1000) + " s…",
    );
    state.reconnectTimer = setTimeout(() => {
      state.reconnectTimer = null;
      connect();
      refreshSessions();
    }, delay);
  }

  // ---- sending ---------------------------------------------------------------------------

  function send() {
    const text = ui.input.value.trim();
    if (!text || state.pending.size) return;
    if (!state.ws || !state.ready) {
      banner("Not connected to the gateway yet; your message was kept. Retrying…");
      connect();
      return;
    }
    const id = "c" + state.nextId++ + "-" + Date.now().toString(36);
    state.fresh.delete(state.session);
    const command = text.split(/\s/, 1)[0].toLowerCase();
    if (!command.startsWith("/")) rememberTitle(state.session, text);
    updateTitle();
    addMessage("user", text);
    const bubble = addMessage("assistant", "");
    bubble.parentElement.classList.add("streaming");
    state.pending.set(id, { bubble, text: "", command });
    ui.input.value = "";
    autoGrow();
    setBusy(true);
    state.ws.send(JSON.stringify({ type: "chat", id, text, session: state.session }));
  }

  function autoGrow() {
    ui.input.style.height = "auto";
    ui.input.style.height = Math.min(ui.input.scrollHeight, 200) + "px";
  }

  // ---- token -----------------------------------------------------------------------------

  function askForToken(message) {
    state.token = null;
    store(TOKEN_KEY, null);
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    if (state.ws) {
      const ws = state.ws;
      state.ws = null;
      ws.close();
    }
    banner(null);
    setStatus("offline", "Not connected");
    ui.tokenError.textContent = message || "";
    ui.tokenError.hidden = !message;
    ui.prompt.hidden = false;
    ui.tokenInput.value = "";
    ui.tokenInput.focus();
  }

  function tokenFromFragment() {
    if (!location.hash) return null;
    const params = new URLSearchParams(location.hash.slice(1));
    const token = params.get("token");
    if (token === null) return null;
    // The token must not linger in the address bar, history or bookmarks.
    history.replaceState(null, "", location.pathname + location.search);
    return token.trim() || null;
  }

  // A link carrying a token other than the saved one: ask, keep the saved one unless accepted
  // (a link from elsewhere must not silently swap in someone else's gateway).
  function askToReplace(saved, offered) {
    ui.replacePrompt.hidden = false;
    ui.keepToken.focus();
    const decide = (token) => {
      ui.replacePrompt.hidden = true;
      ui.keepToken.removeEventListener("click", keep);
      ui.useToken.removeEventListener("click", use);
      state.token = token;
      store(TOKEN_KEY, token);
      start();
    };
    const keep = () => decide(saved);
    const use = () => decide(offered);
    ui.keepToken.addEventListener("click", keep);
    ui.useToken.addEventListener("click", use);
  }

  function start() {
    ui.prompt.hidden = true;
    state.backoffMs = 1000;
    connect();
    refreshSessions();
    loadHistory();
  }

  // ---- drawer (phones) -------------------------------------------------------------------

  function openDrawer() {
    ui.app.classList.add("drawer-open");
    ui.backdrop.hidden = false;
    ui.toggle.setAttribute("aria-expanded", "true");
  }

  function closeDrawer() {
    ui.app.classList.remove("drawer-open");
    ui.backdrop.hidden = true;
    ui.toggle.setAttribute("aria-expanded", "false");
  }

  // ---- wiring ----------------------------------------------------------------------------

  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  ui.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  ui.stop.addEventListener("click", stopAnswer);
  ui.input.addEventListener("input", autoGrow);
  ui.newChat.addEventListener("click", () => switchSession(newSessionKey()));
  ui.toggle.addEventListener("click", () =>
    ui.app.classList.contains("drawer-open") ? closeDrawer() : openDrawer(),
  );
  ui.backdrop.addEventListener("click", closeDrawer);
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    if (ui.app.classList.contains("drawer-open")) closeDrawer();
    else stopAnswer();
  });
  ui.changeToken.addEventListener("click", () => askForToken(""));
  ui.tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = ui.tokenInput.value.trim();
    if (!token) return;
    state.token = token;
    store(TOKEN_KEY, token);
    start();
  });
  window.addEventListener("online", () => connect());

  state.session = load(SESSION_KEY);
  if (!state.session || !state.session.startsWith("webchat:")) {
    state.session = newSessionKey();
    store(SESSION_KEY, state.session);
  }
  const fromFragment = tokenFromFragment();
  const saved = load(TOKEN_KEY);
  updateTitle();
  if (fromFragment && saved && fromFragment !== saved) {
    askToReplace(saved, fromFragment);
  } else {
    if (fromFragment) store(TOKEN_KEY, fromFragment);
    state.token = fromFragment || saved;
    if (state.token) start();
    else askForToken("");
  }
})();
