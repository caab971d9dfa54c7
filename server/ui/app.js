// The chat page: plain JavaScript, no build step, no dependencies.
//
// It talks to the server's own API only (the page's Content-Security-Policy
// allows nothing else): /v1/info, /v1/ask/stream, /v1/sessions,
// /v1/documents. Text from the server is always set as text, never parsed
// as HTML. The API key, when the server has keys, lives in this tab's
// sessionStorage and travels in the X-API-Key header, never in a URL.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY = "rag.apiKey";
  const SESSION = "rag.session";
  const NAMESPACE = "rag.namespace";

  const state = {
    info: null,
    session: null, // the open chat's id
    sources: new Map(), // answer element -> Map(number -> source)
    controller: null, // aborts the answer being streamed
    docsNext: null,
  };

  // ---------- talking to the server ----------

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    const key = sessionStorage.getItem(KEY);
    if (key) h["X-API-Key"] = key;
    return h;
  }

  class ApiError extends Error {
    constructor(status, message, requestId) {
      super(message);
      this.status = status;
      this.requestId = requestId;
    }
  }

  // An error response in words: what happened and what to do.
  async function apiError(resp) {
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      /* not JSON */
    }
    const detail = body && body.error && body.error.message;
    const rid = resp.headers.get("x-request-id");
    let text;
    switch (resp.status) {
      case 401:
        text = "This server needs an API key, or refused the one given. Enter a key under “API key” above.";
        showKeyForm(true);
        break;
      case 403:
        text = "This key may not do that" + (detail ? ": " + detail + "." : ".");
        break;
      case 413:
        text = detail ? "Too large: " + detail + "." : "Too large for this server.";
        break;
      case 429: {
        const after = parseInt(resp.headers.get("retry-after") || "", 10);
        text = "Too many requests" +
          (Number.isFinite(after) ? ": try again in " + after + (after === 1 ? " second." : " seconds.") : ": try again shortly.");
        break;
      }
      case 503:
        text = "The service is unavailable right now (a backend is down or overloaded). Try again in a moment." +
          (detail ? " (" + detail + ")" : "");
        break;
      case 504:
        text = "The server took too long to answer. Try again, or ask a narrower question.";
        break;
      default:
        text = detail || "The server answered " + resp.status + " " + resp.statusText + ".";
    }
    return new ApiError(resp.status, text, rid);
  }

  async function api(method, path, body) {
    const init = { method, headers: headers() };
    if (body instanceof FormData) {
      init.body = body;
    } else if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (_) {
      throw new ApiError(0, "Could not reach the server. Is it running?");
    }
    if (!resp.ok) throw await apiError(resp);
    if (resp.status === 204) return null;
    return resp.json();
  }

  function q(params) {
    const s = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") s.set(k, v);
    const t = s.toString();
    return t ? "?" + t : "";
  }

  function namespace() {
    return $("namespace").value.trim() || "default";
  }

  function banner(text) {
    const b = $("banner");
    b.textContent = text || "";
    b.hidden = !text;
  }

  function errorText(e) {
    if (e instanceof ApiError) return e.message + (e.requestId ? " (request " + e.requestId + ")" : "");
    return String(e && e.message ? e.message : e);
  }

  // ---------- the API key ----------

  function showKeyForm(focus) {
    const form = $("key-form");
    form.hidden = false;
    if (focus) $("api-key").focus();
  }

  $("key-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem(KEY, key);
    else sessionStorage.removeItem(KEY);
    $("api-key").value = "";
    $("api-key").placeholder = key ? "key in use (this tab only)" : "paste your key";
    await boot();
  });

  $("forget-key").addEventListener("click", async () => {
    sessionStorage.removeItem(KEY);
    $("api-key").placeholder = "paste your key";
    await boot();
  });

  // ---------- the conversation ----------

  function messageItem(role) {
    const li = document.createElement("li");
    li.className = "msg " + role;
    const label = document.createElement("span");
    label.className = "visually-hidden";
    label.textContent = role === "user" ? "You: " : role === "assistant" ? "Answer: " : "Error: ";
    li.appendChild(label);
    const body = document.createElement("span");
    body.className = "body";
    li.appendChild(body);
    $("messages").appendChild(li);
    $("welcome").hidden = true;
    li.scrollIntoView({ block: "end" });
    return li;
  }

  function addMessage(role, text) {
    const li = messageItem(role);
    li.querySelector(".body").textContent = text;
    return li;
  }

  // Splits `text` at citation markers `[n]`, linking those with a source.
  function renderAnswer(li, text, sources) {
    const body = li.querySelector(".body");
    body.textContent = "";
    const re = /\[(\d+)\]/g;
    let last = 0;
    let m;
    while ((m = re.exec(text)) !== null) {
      body.appendChild(document.createTextNode(text.slice(last, m.index)));
      const n = Number(m[1]);
      if (sources && sources.has(n)) {
        const a = document.createElement("a");
        a.href = "#source-" + n;
        a.className = "cite";
        a.dataset.n = String(n);
        a.textContent = m[0];
        a.setAttribute("aria-label", "source " + n + ": " + sources.get(n).source);
        a.addEventListener("click", (ev) => {
          ev.preventDefault();
          openSource(li, n, a);
        });
        body.appendChild(a);
      } else {
        body.appendChild(document.createTextNode(m[0]));
      }
      last = m.index + m[0].length;
    }
    body.appendChild(document.createTextNode(text.slice(last)));
  }

  function ms(x) {
    return x >= 1000 ? (x / 1000).toFixed(1) + " s" : Math.round(x) + " ms";
  }

  // The answerer and the timings, unobtrusively, and the cited sources.
  function finishAnswer(li, answer) {
    const sources = new Map();
    for (const s of answer.sources || []) sources.set(s.number, s);
    state.sources.set(li, { sources, text: answer.text });
    renderAnswer(li, answer.text, sources);
    if ((answer.citations || []).length) {
      const cites = document.createElement("span");
      cites.className = "cites";
      for (const c of answer.citations) {
        const a = document.createElement("a");
        a.href = "#source-" + c.number;
        a.className = "cite";
        a.dataset.n = String(c.number);
        a.textContent = "[" + c.number + "] " + c.source;
        a.addEventListener("click", (ev) => {
          ev.preventDefault();
          openSource(li, c.number, a);
        });
        cites.appendChild(a);
      }
      li.appendChild(cites);
    }
    const t = answer.timings || {};
    const parts = [
      answer.extractive ? "quoted from the sources (no model)" : "answered by " + answer.model,
      ms(t.total_ms || 0) + " (retrieve " + ms(t.retrieve_ms || 0) + ", generate " + ms(t.generate_ms || 0) + ")",
    ];
    if (answer.cached) parts.push("from the cache");
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = parts.join(" · ");
    li.appendChild(meta);
  }

  // ---------- the cited passage ----------

  const words = (s) => (s.toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) || []);

  // The sentences of `text` that carry marker `n` (markers go inside or
  // right after their sentence), markers removed.
  function citingSentences(text, n) {
    return (text.match(/[^.!?\n]+(?:[.!?]+|$)(?:[ \t]*\[\d+\])*/g) || [])
      .filter((s) => s.includes("[" + n + "]"))
      .map((s) => s.replace(/\s*\[\d+\]/g, "").trim())
      .filter(Boolean);
  }

  // `text` lower-cased with each run of white space as one space, and for
  // each of its characters the index it came from.
  function normalized(text) {
    let norm = "";
    const from = [];
    let space = true;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (/\s/.test(c)) {
        if (!space) {
          norm += " ";
          from.push(i);
        }
        space = true;
      } else {
        for (const l of c.toLowerCase()) {
          norm += l;
          from.push(i);
        }
        space = false;
      }
    }
    return [norm, from];
  }

  // The ranges of `passage` the answer used, in order: for each claim, the
  // claim found verbatim (line breaks aside), else the passage's sentence
  // sharing most words with it.
  function highlightRanges(passage, claims) {
    const [norm, from] = normalized(passage);
    // Sentences run across single line breaks, not across blank lines.
    const sentences = [];
    const re = /(?:[^.!?\n]|\n(?![ \t]*\n))+[.!?]*/g;
    let m;
    while ((m = re.exec(passage)) !== null) {
      const lead = m[0].length - m[0].trimStart().length;
      sentences.push({ range: [m.index + lead, m.index + m[0].trimEnd().length], words: words(m[0]) });
    }
    const ranges = [];
    for (const c of claims) {
      const probe = normalized(c.replace(/[.!?]+$/, ""))[0].trim();
      const at = probe.length >= 12 ? norm.indexOf(probe) : -1;
      if (at >= 0) {
        ranges.push([from[at], from[at + probe.length - 1] + 1]);
        continue;
      }
      const want = new Set(words(c));
      let best = null;
      let bestScore = 1;
      for (const s of sentences) {
        const score = s.words.filter((w) => want.has(w)).length;
        if (score > bestScore) {
          bestScore = score;
          best = s.range;
        }
      }
      if (best) ranges.push(best);
    }
    ranges.sort((a, b) => a[0] - b[0]);
    const merged = [];
    for (const r of ranges) {
      const last = merged[merged.length - 1];
      if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
      else merged.push([r[0], r[1]]);
    }
    return merged;
  }

  function openSource(li, n, link) {
    const entry = state.sources.get(li);
    const s = entry && entry.sources.get(n);
    if (!s) return;
    document.querySelectorAll("a.cite.active").forEach((a) => a.classList.remove("active"));
    li.querySelectorAll('a.cite[data-n="' + n + '"]').forEach((a) => a.classList.add("active"));
    const where = $("source-where");
    where.textContent = "";
    const strong = document.createElement("strong");
    strong.textContent = "[" + n + "] " + s.source;
    where.appendChild(strong);
    const loc = " · bytes " + s.start + "–" + s.end + (s.document_id !== s.source ? " of " + s.document_id : "");
    where.appendChild(document.createTextNode(loc));
    const box = $("source-text");
    box.textContent = "";
    let at = 0;
    for (const [from, to] of highlightRanges(s.text, citingSentences(entry.text, n))) {
      box.appendChild(document.createTextNode(s.text.slice(at, from)));
      const mark = document.createElement("mark");
      mark.textContent = s.text.slice(from, to);
      box.appendChild(mark);
      at = to;
    }
    box.appendChild(document.createTextNode(s.text.slice(at)));
    $("source").hidden = false;
    document.querySelector(".layout").classList.remove("no-source");
    state.returnFocus = link || null;
    box.focus();
    const mark = box.querySelector("mark");
    if (mark) mark.scrollIntoView({ block: "center" });
  }

  function closeSource() {
    $("source").hidden = true;
    document.querySelector(".layout").classList.add("no-source");
    document.querySelectorAll("a.cite.active").forEach((a) => a.classList.remove("active"));
    if (state.returnFocus) state.returnFocus.focus();
  }
  $("close-source").addEventListener("click", closeSource);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !$("source").hidden) closeSource();
  });

  // ---------- asking, streamed ----------

  // Reads server-sent events from a fetch response: calls `on(event, data)`.
  async function readEvents(resp, on) {
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const raw = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let event = "message";
        const data = [];
        for (const line of raw.split("\n")) {
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") event = val;
          else if (field === "data") data.push(val);
        }
        if (data.length) on(event, JSON.parse(data.join("\n")));
      }
    }
  }

  async function ensureSession(question) {
    if (state.session || !state.info || !state.info.sessions) return state.session;
    const title = question.length > 80 ? question.slice(0, 77) + "…" : question;
    const s = await api("POST", "/v1/sessions", { namespace: namespace(), metadata: { title } });
    setSession(s.id);
    await loadSessions();
    return s.id;
  }

  function busy(on) {
    $("send").disabled = on;
    $("stop").hidden = !on;
    $("question").setAttribute("aria-busy", on ? "true" : "false");
  }

  async function ask(question) {
    banner("");
    addMessage("user", question);
    const li = messageItem("assistant");
    li.classList.add("streaming");
    li.setAttribute("aria-busy", "true");
    busy(true);
    const controller = new AbortController();
    state.controller = controller;
    let text = "";
    try {
      const session = await ensureSession(question);
      const body = { question, namespace: namespace() };
      if (session) body.session_id = session;
      let resp;
      try {
        resp = await fetch("/v1/ask/stream", {
          method: "POST",
          headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
          body: JSON.stringify(body),
          signal: controller.signal,
        });
      } catch (e) {
        if (e.name === "AbortError") throw e;
        throw new ApiError(0, "Could not reach the server. Is it running?");
      }
      if (!resp.ok) throw await apiError(resp);
      let finished = false;
      await readEvents(resp, (event, data) => {
        if (event === "delta") {
          text += data.text;
          // How many pieces arrived, for whoever wants to know it streamed.
          li.dataset.deltas = String(Number(li.dataset.deltas || 0) + 1);
          li.querySelector(".body").textContent = text;
          li.scrollIntoView({ block: "end" });
        } else if (event === "done") {
          finished = true;
          finishAnswer(li, data);
        } else if (event === "error") {
          throw new ApiError(0, "The answer failed midway: " + (data.message || data.code));
        }
      });
      if (!finished) throw new ApiError(0, "The answer stopped before it was complete.");
    } catch (e) {
      if (e.name === "AbortError") {
        li.querySelector(".body").textContent = text + (text ? " " : "") + "(stopped)";
      } else {
        if (!text) li.remove();
        addMessage("error", errorText(e));
      }
    } finally {
      li.classList.remove("streaming");
      li.removeAttribute("aria-busy");
      state.controller = null;
      busy(false);
      $("question").focus();
      if (state.info && state.info.sessions) loadSessions().catch(() => {});
    }
  }

  $("ask-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const question = $("question").value.trim();
    if (!question || state.controller) return;
    $("question").value = "";
    ask(question);
  });
  $("question").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      $("ask-form").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());

  // ---------- sessions ----------

  function setSession(id) {
    state.session = id;
    if (id) sessionStorage.setItem(SESSION, id);
    else sessionStorage.removeItem(SESSION);
    document.querySelectorAll("#sessions .open").forEach((b) => {
      b.setAttribute("aria-current", b.dataset.id === id ? "true" : "false");
    });
  }

  function clearChat() {
    $("messages").textContent = "";
    state.sources.clear();
    $("welcome").hidden = false;
    closeSource();
  }

  function newChat() {
    if (state.controller) state.controller.abort();
    setSession(null);
    clearChat();
    banner("");
    $("question").focus();
  }
  $("new-chat").addEventListener("click", newChat);

  function sessionTitle(s) {
    const t = s.metadata && typeof s.metadata.title === "string" && s.metadata.title;
    return t || "Chat of " + new Date(s.created_at).toLocaleString();
  }

  async function loadSessions() {
    const list = $("sessions");
    if (!state.info || !state.info.sessions) return;
    const page = await api("GET", "/v1/sessions" + q({ namespace: namespace(), limit: 50 }));
    list.textContent = "";
    for (const s of page.sessions) {
      const li = document.createElement("li");
      const open = document.createElement("button");
      open.type = "button";
      open.className = "open";
      open.dataset.id = s.id;
      open.textContent = sessionTitle(s);
      open.title = sessionTitle(s) + " (" + s.message_count + " messages)";
      open.setAttribute("aria-current", s.id === state.session ? "true" : "false");
      open.addEventListener("click", () => openSession(s.id).catch((e) => banner(errorText(e))));
      const del = document.createElement("button");
      del.type = "button";
      del.className = "delete";
      del.textContent = "✕";
      del.setAttribute("aria-label", "Delete chat “" + sessionTitle(s) + "”");
      del.addEventListener("click", async () => {
        try {
          await api("DELETE", "/v1/sessions/" + encodeURIComponent(s.id));
          if (state.session === s.id) newChat();
          await loadSessions();
        } catch (e) {
          banner(errorText(e));
        }
      });
      li.append(open, del);
      list.appendChild(li);
    }
    $("sessions-empty").hidden = page.sessions.length > 0;
  }

  async function openSession(id) {
    const h = await api("GET", "/v1/sessions/" + encodeURIComponent(id));
    if (state.controller) state.controller.abort();
    clearChat();
    setSession(id);
    for (const m of h.messages) {
      if (m.role === "user" || m.role === "assistant") addMessage(m.role, m.content);
    }
    if (h.messages.length) {
      const note = document.createElement("li");
      note.className = "muted small";
      note.textContent = "Earlier answers are shown as text; ask again to open their sources.";
      $("messages").appendChild(note);
    }
    $("question").focus();
  }

  // ---------- documents ----------

  function describeLimits() {
    const u = state.info.upload;
    const kib = (n) => (n >= 1048576 ? (n / 1048576).toFixed(n % 1048576 ? 1 : 0) + " MiB" : Math.round(n / 1024) + " KiB");
    $("upload-limits").textContent =
      "Text, Markdown and code (" + u.extensions.map((e) => "." + e).join(" ") + "), up to " +
      kib(u.max_file_bytes) + " each, " + kib(u.max_body_bytes) + " per upload.";
  }

  function uploadStatus(text, error) {
    const s = $("upload-status");
    s.textContent = text;
    s.classList.toggle("error", !!error);
  }

  async function upload(files) {
    if (!state.info) return;
    const u = state.info.upload;
    const problems = [];
    let total = 0;
    const ok = [];
    for (const f of files) {
      const dot = f.name.lastIndexOf(".");
      const ext = dot > 0 ? f.name.slice(dot + 1).toLowerCase() : "";
      if (!u.extensions.includes(ext)) problems.push(f.name + ": files of this type are not accepted");
      else if (f.size > u.max_file_bytes) problems.push(f.name + ": larger than " + u.max_file_bytes + " bytes");
      else {
        ok.push(f);
        total += f.size;
      }
    }
    if (total > u.max_body_bytes * 0.95) {
      problems.push("together the files exceed the " + u.max_body_bytes + "-byte upload limit: send fewer at a time");
      ok.length = 0;
    }
    if (!ok.length) {
      uploadStatus("Nothing uploaded. " + problems.join("; ") + ".", true);
      return;
    }
    const form = new FormData();
    form.append("namespace", namespace());
    for (const f of ok) form.append("file", f, f.name);
    uploadStatus("Uploading " + ok.length + (ok.length === 1 ? " file…" : " files…"));
    try {
      const r = await api("POST", "/v1/documents/upload", form);
      const parts = [];
      if (r.added.length) parts.push(r.added.length + " added");
      if (r.replaced.length) parts.push(r.replaced.length + " replaced");
      if (r.unchanged.length) parts.push(r.unchanged.length + " unchanged");
      const chunks = r.chunks_written === 1 ? "1 chunk" : r.chunks_written + " chunks";
      let text = (parts.join(", ") || "nothing stored") + " (" + chunks + ").";
      text = text.charAt(0).toUpperCase() + text.slice(1);
      for (const f of r.failed) problems.push(f.source + ": " + f.error);
      if (problems.length) text += " Not stored: " + problems.join("; ") + ".";
      uploadStatus(text, problems.length > 0);
    } catch (e) {
      uploadStatus("Upload failed. " + errorText(e), true);
    }
    await loadDocuments(false);
  }

  $("files").addEventListener("change", () => {
    const files = Array.from($("files").files || []);
    $("files").value = "";
    if (files.length) upload(files);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    const files = Array.from((ev.dataTransfer && ev.dataTransfer.files) || []);
    if (files.length) upload(files);
  });

  async function loadDocuments(more) {
    const list = $("documents");
    const after = more ? state.docsNext : null;
    const page = await api("GET", "/v1/documents" + q({ namespace: namespace(), limit: 100, after }));
    if (!more) list.textContent = "";
    for (const d of page.documents) {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.className = "doc";
      name.textContent = d.source;
      name.title = d.id + " · " + d.chunks + " chunks";
      li.appendChild(name);
      if (state.info.can_ingest) {
        const del = document.createElement("button");
        del.type = "button";
        del.className = "delete";
        del.textContent = "✕";
        del.setAttribute("aria-label", "Delete document " + d.source);
        del.addEventListener("click", async () => {
          if (!window.confirm("Delete " + d.source + " from “" + namespace() + "”?")) return;
          try {
            await api("DELETE", "/v1/documents/" + encodeURIComponent(d.id) + q({ namespace: namespace() }));
            uploadStatus("Deleted " + d.source + ".");
          } catch (e) {
            uploadStatus(errorText(e), true);
          }
          await loadDocuments(false);
        });
        li.appendChild(del);
      }
      list.appendChild(li);
    }
    state.docsNext = page.next || null;
    $("more-docs").hidden = !state.docsNext;
    const n = list.children.length;
    $("doc-count").textContent = n + (state.docsNext ? "+" : "") + (n === 1 ? " document" : " documents");
  }
  $("more-docs").addEventListener("click", () => loadDocuments(true).catch((e) => uploadStatus(errorText(e), true)));

  // ---------- start ----------

  async function refresh() {
    const tasks = [loadDocuments(false)];
    if (state.info.sessions) tasks.push(loadSessions());
    const results = await Promise.allSettled(tasks);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) banner(errorText(failed.reason));
  }

  $("namespace").addEventListener("change", async () => {
    sessionStorage.setItem(NAMESPACE, namespace());
    newChat();
    await refresh();
  });

  async function boot() {
    banner("");
    try {
      state.info = await api("GET", "/v1/info");
    } catch (e) {
      state.info = null;
      banner(errorText(e));
      return;
    }
    const info = state.info;
    if (info.auth) {
      showKeyForm(false);
      $("api-key").placeholder = sessionStorage.getItem(KEY) ? "key in use (this tab only)" : "paste your key";
    }
    const ns = $("namespace");
    if (info.namespace_bound) {
      ns.value = info.namespace;
      ns.readOnly = true;
      ns.title = "this key is bound to this namespace";
    } else {
      ns.value = sessionStorage.getItem(NAMESPACE) || info.namespace;
    }
    document.querySelector('[aria-labelledby="sessions-h"]').hidden = !info.sessions;
    $("drop").hidden = !info.can_ingest;
    describeLimits();
    await refresh();
    const saved = sessionStorage.getItem(SESSION);
    if (saved && info.sessions && !state.session) {
      await openSession(saved).catch(() => setSession(null));
    }
  }

  document.querySelector(".layout").classList.add("no-source");
  boot();
})();
