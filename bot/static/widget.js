/* csbot chat widget v1: one <script> tag adds a chat bubble to any page.
 *   <script src="https://YOUR-BOT/widget.js" data-title="Support" data-color="#1f6feb" defer></script>
 * No framework, no cookies. Everything shown is set with textContent, never parsed as HTML.
 * Talks to the bot's REST API: POST /api/v1/chat, /api/v1/feedback, /api/v1/choose, /api/v1/handoff; while a
 * person has the conversation it follows GET /api/v1/conversations/{session}/events (server-sent events; the
 * browser reconnects by itself with Last-Event-ID, so nothing said meanwhile is missed).
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__csbotWidget) return;
  window.__csbotWidget = true;
  var api = (script.getAttribute("data-api") || new URL(script.src, location.href).origin).replace(/\/$/, "");
  var title = script.getAttribute("data-title") || "Support";
  var color = script.getAttribute("data-color") || "#1f6feb";
  var storeKey = "csbot-session:" + api;
  var liveKey = "csbot-live:" + api;  // the id of the last people-side event shown, while a person has the conversation
  var sessionId = null;
  try { sessionId = sessionStorage.getItem(storeKey); } catch (e) { /* storage may be blocked */ }
  function remember(key, value) { try { if (value === null) sessionStorage.removeItem(key); else sessionStorage.setItem(key, value); } catch (e) { /* ignore */ } }
  function newSession() {
    var id = (window.crypto && crypto.randomUUID) ? crypto.randomUUID().replace(/-/g, "") : String(Date.now()) + Math.random().toString(16).slice(2);
    sessionId = id; remember(storeKey, id); return id;
  }

  var css = [
    ".csbot-bubble{position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;border:0;color:#fff;font-size:26px;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);z-index:2147483000}",
    ".csbot-panel{position:fixed;right:20px;bottom:88px;width:360px;max-height:560px;height:70vh;display:none;flex-direction:column;background:#fff;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.25);font:14px/1.4 system-ui,sans-serif;color:#1b1b1b;z-index:2147483000;overflow:hidden}",
    ".csbot-panel.open{display:flex}",
    ".csbot-head{padding:12px 14px;color:#fff;font-weight:600;display:flex;justify-content:space-between;align-items:center}",
    ".csbot-head button{background:transparent;border:0;color:#fff;font-size:18px;cursor:pointer}",
    ".csbot-log{flex:1;overflow-y:auto;padding:10px;background:#f6f7f9}",
    ".csbot-msg{margin:6px 0;padding:8px 10px;border-radius:10px;max-width:85%;white-space:pre-wrap;word-wrap:break-word}",
    ".csbot-user{background:#dbe9ff;margin-left:auto}",
    ".csbot-bot{background:#fff;border:1px solid #e3e5e8}",
    ".csbot-meta{font-size:11px;color:#666;margin-top:4px}",
    ".csbot-actions{display:flex;gap:6px;margin-top:6px;flex-wrap:wrap}",
    ".csbot-actions button,.csbot-foot button{color:#333;border:1px solid #ccd;background:#fff;border-radius:8px;padding:4px 8px;cursor:pointer;font:inherit}",
    ".csbot-actions button[aria-pressed=true]{background:#e8f0fe;border-color:#1f6feb}",
    ".csbot-comment{display:flex;gap:6px;margin-top:6px}",
    ".csbot-comment input{flex:1;border:1px solid #ccd;border-radius:8px;padding:4px 6px;font:inherit}",
    ".csbot-form{display:flex;gap:6px;padding:8px;border-top:1px solid #e3e5e8}",
    ".csbot-form input{flex:1;border:1px solid #ccd;border-radius:8px;padding:8px;font:inherit}",
    ".csbot-form button{border:0;border-radius:8px;padding:8px 12px;color:#fff;cursor:pointer;font:inherit}",
    ".csbot-foot{padding:0 8px 8px;display:flex;justify-content:flex-end}",
    ".csbot-error{color:#b00020;font-size:12px;padding:0 10px}",
    ".csbot-agent{background:#eef7ee;border:1px solid #cfe5cf}",
    ".csbot-who{font-size:11px;font-weight:600;color:#2d6a2d;margin-bottom:2px}",
    ".csbot-event{font-size:12px;color:#555;text-align:center;margin:6px 0;font-style:italic}",
    ".csbot-status{font-size:12px;padding:4px 10px;background:#fff8e1;color:#5d4500;display:none}",
    ".csbot-status.on{display:block}",
    "@media (max-width:480px){.csbot-panel{right:0;bottom:0;width:100vw;height:100vh;max-height:none;border-radius:0}}"
  ].join("\n");

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;  // text only: user input is never parsed as HTML
    return node;
  }

  var SVG = "http://www.w3.org/2000/svg";
  var ICONS = {  // Material icons (Apache-2.0): drawn, so no emoji font is needed on the visitor's device
    chat: "M20 2H4c-1.1 0-2 .9-2 2v18l4-4h14c1.1 0 2-.9 2-2V4c0-1.1-.9-2-2-2z",
    up: "M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L14.17 1 7.59 7.59C7.22 7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23.14-.47.14-.73v-2z"
  };
  function icon(name, size, flip) {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24"); svg.setAttribute("width", size); svg.setAttribute("height", size);
    svg.setAttribute("aria-hidden", "true"); svg.setAttribute("fill", "currentColor");
    if (flip) svg.style.transform = "rotate(180deg)";
    var path = document.createElementNS(SVG, "path"); path.setAttribute("d", ICONS[name]); svg.appendChild(path);
    return svg;
  }

  var style = el("style"); style.textContent = css; document.head.appendChild(style);
  var bubble = el("button", "csbot-bubble"); bubble.appendChild(icon("chat", 26));
  bubble.style.background = color;
  bubble.setAttribute("aria-label", "Open the support chat");
  bubble.setAttribute("aria-expanded", "false");
  var panel = el("div", "csbot-panel");
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", title);
  var head = el("div", "csbot-head"); head.style.background = color;
  head.appendChild(el("span", "", title));
  var close = el("button", "", "×"); close.setAttribute("aria-label", "Close the chat"); head.appendChild(close);
  var log = el("div", "csbot-log"); log.setAttribute("aria-live", "polite");
  var status = el("div", "csbot-status"); status.setAttribute("role", "status");
  var error = el("div", "csbot-error"); error.setAttribute("role", "alert");
  var form = el("form", "csbot-form");
  var input = el("input"); input.type = "text"; input.placeholder = "Type your question…"; input.setAttribute("aria-label", "Your message"); input.maxLength = 2000;
  var send = el("button", "", "Send"); send.type = "submit"; send.style.background = color;
  form.appendChild(input); form.appendChild(send);
  var foot = el("div", "csbot-foot");
  var person = el("button", "", "Talk to a person"); person.type = "button";
  foot.appendChild(person);
  panel.appendChild(head); panel.appendChild(status); panel.appendChild(log); panel.appendChild(error); panel.appendChild(form); panel.appendChild(foot);
  document.body.appendChild(bubble); document.body.appendChild(panel);

  function toggle(open) {
    panel.classList.toggle("open", open);
    bubble.setAttribute("aria-expanded", String(open));
    if (open) input.focus(); else bubble.focus();
  }
  bubble.addEventListener("click", function () { toggle(!panel.classList.contains("open")); });
  close.addEventListener("click", function () { toggle(false); });
  panel.addEventListener("keydown", function (e) { if (e.key === "Escape") toggle(false); });

  function post(path, body) {
    return fetch(api + path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) {
          if (!r.ok) throw new Error(typeof data.detail === "string" ? data.detail : "Something went wrong (" + r.status + "). Please try again.");
          return data;
        });
      });
  }

  function addUser(text) { log.appendChild(el("div", "csbot-msg csbot-user", text)); log.scrollTop = log.scrollHeight; }

  function addBot(reply) {
    if (reply.session_id) { sessionId = reply.session_id; remember(storeKey, sessionId); }
    if (reply.state && reply.state !== "bot") follow();
    if (!reply.text) return;  // a person has the conversation: the bot says nothing
    var box = el("div", "csbot-msg csbot-bot");
    box.setAttribute("data-action", reply.action);
    box.appendChild(el("div", "csbot-text", reply.text));
    if (reply.notice) box.appendChild(el("div", "csbot-meta", reply.notice));
    if (reply.action === "answer" && reply.sources && reply.sources.length) {
      box.appendChild(el("div", "csbot-meta", "Sources: " + reply.sources.map(function (s) { return "#" + s.ticket_id; }).join(", ")));
    }
    // Topic buttons: "which of these?" when the bot is unsure, "customers also asked" after an answer.
    var offered = reply.action === "clarify" ? reply.suggestions : (reply.action === "answer" ? reply.next_questions : null);
    if (offered && offered.length) {
      if (reply.action === "answer") box.appendChild(el("div", "csbot-meta", "Customers also asked:"));
      box.appendChild(topicButtons(reply.turn_id, offered, reply.action === "clarify" ? "clarify" : "next"));
    }
    if (reply.offer_person) box.appendChild(offerPerson());
    var actions = el("div", "csbot-actions");
    var up = el("button", "csbot-up"); up.appendChild(icon("up", 16)); up.type = "button"; up.setAttribute("aria-label", "Helpful"); up.setAttribute("aria-pressed", "false");
    var down = el("button", "csbot-down"); down.appendChild(icon("up", 16, true)); down.type = "button"; down.setAttribute("aria-label", "Not helpful"); down.setAttribute("aria-pressed", "false");
    actions.appendChild(up); actions.appendChild(down);
    box.appendChild(actions);
    function vote(kind, comment) {
      return post("/api/v1/feedback", { turn_id: reply.turn_id, vote: kind, comment: comment || "", session_id: sessionId })
        .then(function (data) {
          up.setAttribute("aria-pressed", String(kind === "up")); down.setAttribute("aria-pressed", String(kind === "down")); error.textContent = "";
          // After a down-vote on an answer: the other topics the question could be about ("Did you mean…").
          if (data.alternatives && data.alternatives.length && !box.querySelector("[data-kind=alternatives]")) {
            box.appendChild(el("div", "csbot-meta", "Sorry that didn't help. Did you mean one of these?"));
            box.appendChild(topicButtons(reply.turn_id, data.alternatives, "alternatives"));
          }
          if (data.offer_person && !box.querySelector(".csbot-offer")) {
            var offer = el("div", "csbot-meta csbot-offer", "Sorry this isn't going well. Would you like to talk to a person?");
            offer.appendChild(offerPerson()); box.appendChild(offer);
          }
        }, showError);
    }
    up.addEventListener("click", function () { vote("up"); });
    down.addEventListener("click", function () {
      vote("down").then(function () {
        if (box.querySelector(".csbot-comment")) return;
        var row = el("form", "csbot-comment");
        var note = el("input"); note.placeholder = "What was wrong? (optional)"; note.setAttribute("aria-label", "Comment on this answer"); note.maxLength = 2000;
        var ok = el("button", "", "Send"); ok.type = "submit";
        row.appendChild(note); row.appendChild(ok); box.appendChild(row); note.focus();
        row.addEventListener("submit", function (e) {
          e.preventDefault();
          if (!note.value.trim()) return;
          vote("down", note.value).then(function () { row.replaceWith(el("div", "csbot-meta", "Thanks for the comment.")); });
        });
      });
    });
    log.appendChild(box);
    log.scrollTop = log.scrollHeight;
  }

  function topicButtons(turnId, offered, kind) {
    var choices = el("div", "csbot-actions");
    choices.setAttribute("data-kind", kind);
    offered.forEach(function (s) {
      var b = el("button", "csbot-suggestion", s.title); b.type = "button";
      b.addEventListener("click", function () {
        addUser(s.title);
        post("/api/v1/choose", { turn_id: turnId, intent: s.intent, session_id: sessionId }).then(addBot, showError);
      });
      choices.appendChild(b);
    });
    return choices;
  }

  function showError(err) { error.textContent = err && err.message ? err.message : "Something went wrong. Please try again."; }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value;
    if (!text.trim()) { showError({ message: "Please type a question first." }); return; }
    input.value = ""; error.textContent = "";
    addUser(text);
    var body = { message: text };
    if (sessionId) body.session_id = sessionId;
    post("/api/v1/chat", body).then(addBot, showError);
  });
  function offerPerson() {
    var b = el("button", "csbot-person", "Talk to a person"); b.type = "button";
    b.addEventListener("click", askForPerson);
    var row = el("div", "csbot-actions"); row.appendChild(b); return row;
  }

  function addEvent(text) { log.appendChild(el("div", "csbot-event", text)); log.scrollTop = log.scrollHeight; }

  function setStatus(text) { status.textContent = text || ""; status.classList.toggle("on", !!text); }

  function askForPerson() {
    addUser("Talk to a person");
    post("/api/v1/handoff", { session_id: sessionId || newSession() }).then(function (data) {
      addEvent(data.text);
      follow();
    }, showError);
  }

  // While a person has the conversation: their messages, "Sam joined", offers and the hand-back, live.
  var source = null;
  function follow() {
    if (source || !sessionId || !window.EventSource) return;
    var after = 0;
    try { after = Number(sessionStorage.getItem(liveKey) || 0); } catch (e) { /* ignore */ }
    remember(liveKey, String(after));
    setStatus("Waiting for a person…");
    source = new EventSource(api + "/api/v1/conversations/" + encodeURIComponent(sessionId) + "/events?after=" + after);
    function on(kind, show) {
      source.addEventListener(kind, function (e) {
        var event = JSON.parse(e.data);
        remember(liveKey, String(event.id));
        show(event);
      });
    }
    on("waiting", function () { setStatus("Waiting for a person…"); });
    on("assigned", function (event) { setStatus(event.author + " from support"); addEvent(event.author + " joined"); });
    on("agent", function (event) {
      var box = el("div", "csbot-msg csbot-agent");
      box.appendChild(el("div", "csbot-who", event.author + " from support"));
      box.appendChild(el("div", "csbot-text", event.text));
      log.appendChild(box); log.scrollTop = log.scrollHeight;
    });
    on("offer_message", function (event) { addEvent(event.text); contactForm(); });
    function back(event) {
      addEvent(event.event === "resolved" ? event.author + " marked this as solved. You're back with the bot." : "You're back with the bot.");
      setStatus(""); source.close(); source = null; remember(liveKey, null);
    }
    on("resolved", back);
    on("bot", back);
  }

  function contactForm() {
    if (panel.querySelector(".csbot-contact")) return;
    var row = el("form", "csbot-comment csbot-contact");
    var who = el("input"); who.placeholder = "Email or phone"; who.setAttribute("aria-label", "Your email address or phone number"); who.maxLength = 200;
    var note = el("input"); note.placeholder = "Your message"; note.setAttribute("aria-label", "Your message"); note.maxLength = 2000;
    var ok = el("button", "", "Leave message"); ok.type = "submit";
    row.appendChild(who); row.appendChild(note); row.appendChild(ok); log.appendChild(row); who.focus();
    row.addEventListener("submit", function (e) {
      e.preventDefault();
      post("/api/v1/conversations/" + encodeURIComponent(sessionId) + "/contact", { contact: who.value, message: note.value })
        .then(function () { row.replaceWith(el("div", "csbot-event", "Thanks: we'll get back to you.")); }, showError);
    });
  }

  person.addEventListener("click", askForPerson);
  try { if (sessionId && sessionStorage.getItem(liveKey) !== null) follow(); } catch (e) { /* ignore */ }
})();
