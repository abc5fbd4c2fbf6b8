/* The Warden dev workspace page: a small Slack look-alike driven by /ui/state and /ui/*. */
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  user: null,
  channel: "C0GENERAL",
  thread: null,
  home: false,
  state: null,
  version: -1,
  pendingOpenThreadFor: null,
};

function esc(text) {
  return String(text == null ? "" : text)
    .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

function nameOf(userId) {
  if (!ui.state) return userId;
  if (userId === ui.state.bot_user_id) return "warden";
  const p = ui.state.personas.find((x) => x.id === userId);
  return p ? p.name : userId;
}

function channelName(id) {
  const c = ui.state && ui.state.channels.find((x) => x.id === id);
  return c ? c.name : id;
}

/* Slack mrkdwn → HTML. The input is Slack-escaped text; everything is escaped before any tag
   is produced, so message text can never inject markup. */
function mrkdwn(src) {
  // NUL marks the placeholders below, so message text may not contain it.
  let text = String(src == null ? "" : src).replace(/\u0000/g, "");
  const blocks = [];
  text = text.replace(/```([\s\S]*?)```/g, (_, code) => {
    blocks.push(code);
    return `\u0000PRE${blocks.length - 1}\u0000`;
  });
  const inline = [];
  text = text.replace(/`([^`\n]+)`/g, (_, code) => {
    inline.push(code);
    return `\u0000CODE${inline.length - 1}\u0000`;
  });
  const specials = [];
  text = text.replace(/<([^<>\n]+)>/g, (_, inner) => {
    specials.push(inner);
    return `\u0000SP${specials.length - 1}\u0000`;
  });
  let html = esc(decode(text));
  html = html
    .replace(/(^|[\s(])\*([^*\n]+)\*(?=$|[\s.,!?:;)])/g, "$1<b>$2</b>")
    .replace(/(^|[\s(])_([^_\n]+)_(?=$|[\s.,!?:;)])/g, "$1<i>$2</i>")
    .replace(/(^|[\s(])~([^~\n]+)~(?=$|[\s.,!?:;)])/g, "$1<s>$2</s>")
    .replace(/\n/g, "<br>");
  html = emoji(html);
  html = html.replace(/\u0000SP(\d+)\u0000/g, (_, i) => special(specials[Number(i)]));
  html = html.replace(/\u0000CODE(\d+)\u0000/g, (_, i) => `<code>${esc(decode(inline[Number(i)]))}</code>`);
  html = html.replace(/\u0000PRE(\d+)\u0000/g, (_, i) => `<pre>${esc(decode(blocks[Number(i)]))}</pre>`);
  return html;
}

const EMOJI = {
  white_check_mark: "\u2705", x: "\u274c", large_green_circle: "\u{1f7e2}",
  large_yellow_circle: "\u{1f7e1}", large_orange_circle: "\u{1f7e0}", red_circle: "\u{1f534}",
  raised_hand: "\u270b", gear: "\u2699\ufe0f", no_entry_sign: "\u{1f6ab}", alarm_clock: "\u23f0",
  no_entry: "\u26d4", warning: "\u26a0\ufe0f", bulb: "\u{1f4a1}", hourglass: "\u231b",
  leftwards_arrow_with_hook: "\u21a9\ufe0f", double_vertical_bar: "\u23f8\ufe0f",
  arrow_forward: "\u25b6\ufe0f", rotating_light: "\u{1f6a8}", thinking_face: "\u{1f914}",
  eyes: "\u{1f440}", tada: "\u{1f389}", "+1": "\u{1f44d}", thumbsup: "\u{1f44d}",
  "-1": "\u{1f44e}", thumbsdown: "\u{1f44e}", fire: "\u{1f525}", rocket: "\u{1f680}",
  lock: "\u{1f512}", unlock: "\u{1f513}", mag: "\u{1f50d}", clipboard: "\u{1f4cb}",
  memo: "\u{1f4dd}", wrench: "\u{1f527}", hammer_and_wrench: "\u{1f6e0}\ufe0f",
  information_source: "\u2139\ufe0f", question: "\u2753", exclamation: "\u2757",
  heavy_check_mark: "\u2714\ufe0f", heavy_multiplication_x: "\u2716\ufe0f",
  stopwatch: "\u23f1\ufe0f", hourglass_flowing_sand: "\u23f3", clock1: "\u{1f550}",
  robot_face: "\u{1f916}", shield: "\u{1f6e1}\ufe0f", key: "\u{1f511}", bell: "\u{1f514}",
  zap: "\u26a1", boom: "\u{1f4a5}", sparkles: "\u2728", wave: "\u{1f44b}", pray: "\u{1f64f}",
  smile: "\u{1f604}", slightly_smiling_face: "\u{1f642}", point_right: "\u{1f449}",
  black_square_for_stop: "\u23f9\ufe0f", arrows_counterclockwise: "\u{1f504}",
  repeat: "\u{1f501}", recycle: "\u267b\ufe0f", construction: "\u{1f6a7}",
  heavy_plus_sign: "\u2795", heavy_minus_sign: "\u2796", lock_with_ink_pen: "\u{1f50f}",
  speech_balloon: "\u{1f4ac}", white_circle: "\u26aa", black_circle: "\u26ab",
  large_blue_circle: "\u{1f535}", ok: "\u{1f197}", new: "\u{1f195}", sos: "\u{1f198}",
  octagonal_sign: "\u{1f6d1}",
};

function emoji(html) {
  return html.replace(/:([a-z0-9_+-]+):/g, (m, name) => EMOJI[name] || m);
}

function decode(text) {
  return String(text).replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

function special(inner) {
  const [target, label] = inner.split("|", 2);
  if (target.startsWith("@")) return `<span class="mention">@${esc(label || nameOf(target.slice(1)))}</span>`;
  if (target.startsWith("#")) return `<span class="mention">#${esc(label || channelName(target.slice(1)))}</span>`;
  if (target.startsWith("!date^")) return esc(decode(label || ""));
  if (target.startsWith("!")) return `<span class="mention">@${esc(target.slice(1).split("^")[0])}</span>`;
  if (/^(https?:|mailto:)/i.test(target)) {
    return `<a href="${esc(decode(target))}" target="_blank" rel="noopener noreferrer">${esc(decode(label || target))}</a>`;
  }
  return esc("<" + decode(inner) + ">");
}

function textObject(obj) {
  if (!obj) return "";
  return obj.type === "mrkdwn" ? mrkdwn(obj.text) : plain(obj.text);
}

/* plain_text: no formatting, but Slack shows :emoji: codes (emoji: true is the default). */
function plain(text) {
  return emoji(esc(text)).replace(/\n/g, "<br>");
}

function renderBlocks(blocks, ctx) {
  return (blocks || []).map((b) => renderBlock(b, ctx)).join("");
}

function renderBlock(b, ctx) {
  switch (b.type) {
    case "header":
      return `<div class="block header">${plain(b.text && b.text.text)}</div>`;
    case "divider":
      return `<div class="block divider"></div>`;
    case "context":
      return `<div class="block context">${(b.elements || []).map((e) => e.type === "image" ? "" : textObject(e)).join(" ")}</div>`;
    case "section": {
      let html = `<div class="block section">`;
      if (b.text) html += `<div>${textObject(b.text)}</div>`;
      if (b.fields) html += `<div class="fields">${b.fields.map((f) => `<div>${textObject(f)}</div>`).join("")}</div>`;
      if (b.accessory && b.accessory.type === "button") html += renderButton(b.accessory, b.block_id, ctx);
      return html + `</div>`;
    }
    case "actions":
      return `<div class="block actions">${(b.elements || []).map((e) => e.type === "button" ? renderButton(e, b.block_id, ctx) : "").join("")}</div>`;
    case "input":
      return renderInput(b, ctx);
    default:
      return "";
  }
}

function renderButton(e, blockId, ctx) {
  const cls = e.style === "primary" ? "primary" : e.style === "danger" ? "danger" : "";
  const confirm = e.confirm ? esc(JSON.stringify(e.confirm)) : "";
  return `<button type="button" class="${cls}" data-action-id="${esc(e.action_id)}"
    data-channel="${esc(ctx.channel || "")}" data-ts="${esc(ctx.ts || "")}" data-confirm="${confirm}">${plain(e.text && e.text.text)}</button>`;
}

function renderInput(b, ctx) {
  const el = b.element || {};
  const id = `in-${esc(b.block_id)}`;
  const err = ctx.errors && ctx.errors[b.block_id];
  let control = "";
  if (el.type === "static_select") {
    const initial = el.initial_option ? el.initial_option.value : "";
    control = `<select id="${id}" data-block-id="${esc(b.block_id)}" data-action-id="${esc(el.action_id)}" data-kind="static_select">` +
      (el.options || []).map((o) => `<option value="${esc(o.value)}" ${o.value === initial ? "selected" : ""}>${esc(o.text && o.text.text)}</option>`).join("") +
      `</select>`;
  } else if (el.multiline) {
    control = `<textarea id="${id}" rows="3" data-block-id="${esc(b.block_id)}" data-action-id="${esc(el.action_id)}" data-kind="plain_text_input">${esc(el.initial_value || "")}</textarea>`;
  } else {
    control = `<input id="${id}" type="text" value="${esc(el.initial_value || "")}" data-block-id="${esc(b.block_id)}" data-action-id="${esc(el.action_id)}" data-kind="plain_text_input">`;
  }
  return `<div class="block input"><label for="${id}">${esc(b.label && b.label.text)}${b.optional ? " (optional)" : ""}</label>${control}` +
    (b.hint ? `<div class="hint">${esc(b.hint.text)}</div>` : "") +
    (err ? `<div class="error">${esc(err)}</div>` : "") + `</div>`;
}

function renderMessage(m, channel, inThread) {
  const eph = m.ephemeral_to ? " ephemeral" : "";
  const ctx = { channel, ts: m.ts };
  const body = m.subtype === "tombstone" ? `<div class="tombstone">${esc(m.text)}</div>`
    : m.blocks && m.blocks.length ? renderBlocks(m.blocks, ctx) : `<div>${mrkdwn(m.text)}</div>`;
  const replies = !inThread && m.reply_count ? `<button class="replies" data-thread="${esc(m.ts)}">${m.reply_count} ${m.reply_count === 1 ? "reply" : "replies"}</button>` : "";
  const status = !inThread ? threadStatus(channel, m.ts) : "";
  const reactions = m.ephemeral_to || m.subtype === "tombstone" ? "" : renderReactions(m, channel);
  const time = new Date(Number(m.ts.split(".")[0]) * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return `<div class="msg${eph}" data-ts="${esc(m.ts)}">
    <span class="author">${esc(nameOf(m.user))}</span><span class="time">${esc(time)}${m.edited ? " (edited)" : ""}</span>
    ${m.ephemeral_to ? `<div class="ephemeral-note">Only visible to you</div>` : ""}
    ${body}${reactions}${replies}${status}</div>`;
}

/* A message's reactions (click one to add or take back yours) and quick 👍 / 👎, as
   reactions.add / reactions.remove would make them; the bot gets reaction_added / _removed. */
function renderReactions(m, channel) {
  const list = m.reactions || [];
  const chip = (name, count, mine, label) => `<button type="button" class="reaction${mine ? " mine" : ""}${count ? "" : " add"}"
    data-react="${esc(name)}" data-react-ts="${esc(m.ts)}" data-react-channel="${esc(channel)}" data-mine="${mine ? "1" : ""}"
    aria-label="${esc(label)}">${emoji(":" + esc(name.split("::")[0]) + ":")}${count ? " " + count : ""}</button>`;
  const shown = list.map((r) => {
    const mine = (r.users || []).includes(ui.user);
    return chip(r.name, r.count || 0, mine, `${mine ? "Remove" : "Add"} reaction ${r.name}`);
  });
  const quick = ["+1", "-1"].filter((n) => !list.some((r) => r.name === n))
    .map((n) => chip(n, 0, false, `React ${n}`));
  return `<div class="reactions">${shown.concat(quick).join("")}</div>`;
}

/* The bot's assistant status for a thread ("warden is thinking…"), if one is live. */
function threadStatus(channel, ts) {
  const s = ui.state && ui.state.statuses && ui.state.statuses[channel];
  return s && s[ts] ? `<div class="thread-status">warden ${esc(s[ts])}</div>` : "";
}

function render() {
  const s = ui.state;
  if (!s) return;
  const select = $("acting-as");
  if (!select.options.length) {
    s.personas.forEach((p) => select.add(new Option(p.label, p.id)));
    select.value = ui.user;
  }
  $("channel-list").innerHTML = s.channels.map((c) =>
    `<li><a href="#" data-channel="${esc(c.id)}" class="${!ui.home && c.id === ui.channel ? "active" : ""}">${c.id.startsWith("D") ? "@ " : "# "}${esc(c.name)}</a></li>`).join("");
  $("home-link").classList.toggle("active", ui.home);
  $("suggestions").innerHTML = (s.suggestions || []).map((t) => `<li><a href="#" class="suggestion" data-suggest="${esc(t)}">${esc(t)}</a></li>`).join("");
  $("channel-title").textContent = ui.home ? "Warden — App Home" : `# ${channelName(ui.channel)}`;
  $("messages").hidden = ui.home;
  $("composer").hidden = ui.home;
  $("home").hidden = !ui.home;
  if (ui.home) {
    $("home").innerHTML = s.home ? renderBlocks(s.home.blocks, {}) : `<div class="empty">Loading the App Home…</div>`;
  } else {
    const msgs = (s.messages[ui.channel] || []).filter((m) => !m.thread_ts || m.thread_ts === m.ts);
    const box = $("messages");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.innerHTML = msgs.length ? msgs.map((m) => renderMessage(m, ui.channel, false)).join("") : `<div class="empty">No messages yet. Try one of the suggestions.</div>`;
    if (atBottom) box.scrollTop = box.scrollHeight;
  }
  if (ui.pendingOpenThreadFor) {
    const parent = (s.messages[ui.channel] || []).find((m) => m.ts === ui.pendingOpenThreadFor && m.reply_count);
    if (parent) { ui.thread = parent.ts; ui.pendingOpenThreadFor = null; }
  }
  renderThread();
  renderModal();
}

function renderThread() {
  const panel = $("thread");
  if (!ui.thread || ui.home) { panel.hidden = true; return; }
  panel.hidden = false;
  const msgs = (ui.state.messages[ui.channel] || []).filter((m) => m.ts === ui.thread || m.thread_ts === ui.thread);
  $("thread-messages").innerHTML = msgs.map((m) => renderMessage(m, ui.channel, true)).join("") + threadStatus(ui.channel, ui.thread);
}

function renderModal() {
  const overlay = $("overlay");
  const view = (ui.state.views || [])[0];
  if (!view) {
    if (overlay.dataset.kind !== "confirm") { overlay.hidden = true; overlay.innerHTML = ""; overlay.dataset.viewId = ""; }
    return;
  }
  const key = view.id + ":" + JSON.stringify(view.errors || {}) + ":" + view.hash;
  if (overlay.dataset.key === key) return;
  overlay.dataset.key = key;
  overlay.dataset.kind = "view";
  overlay.dataset.viewId = view.id;
  overlay.hidden = false;
  const general = view.errors && Object.keys(view.errors).length && !(view.blocks || []).some((b) => view.errors[b.block_id]);
  overlay.innerHTML = `<form class="modal" id="modal" role="dialog" aria-label="${esc(view.title && view.title.text)}">
    <header>${esc(view.title && view.title.text)}</header>
    <div class="body">${renderBlocks(view.blocks, { errors: view.errors || {} })}
    ${general ? `<div class="error">${esc(Object.values(view.errors).join(" "))}</div>` : ""}</div>
    <footer><button type="button" id="modal-cancel">${esc(view.close ? view.close.text : "Cancel")}</button>
    ${view.submit ? `<button type="submit" class="primary" id="modal-submit">${esc(view.submit.text)}</button>` : ""}</footer></form>`;
}

async function post(path, body) {
  const resp = await fetch(`/ui/${path}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ user: ui.user, ...body }) });
  return resp.json();
}

async function poll() {
  for (;;) {
    try {
      const resp = await fetch(`/ui/state?user=${encodeURIComponent(ui.user)}&since=${ui.version}`);
      accept(await resp.json());
    } catch (err) {
      $("status-line").textContent = "reconnecting…";
      await new Promise((r) => setTimeout(r, 1000));
      continue;
    }
    $("status-line").textContent = "";
  }
}

async function refresh() {
  const resp = await fetch(`/ui/state?user=${encodeURIComponent(ui.user)}`);
  accept(await resp.json());
}

/* Show a state unless it is stale: fetched for another persona (before "Acting as" changed),
   or older than the one shown (a refresh and a poll may answer out of order). */
function accept(s) {
  if (s.user !== ui.user) return;
  const old = ui.state;
  if (old && old.user === s.user && old.boot === s.boot && s.version < old.version) return;
  ui.state = s;
  ui.version = s.version;
  render();
}

async function send(input, threadTs) {
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  const before = ui.state ? (ui.state.messages[ui.channel] || []).length : 0;
  await post("send", { channel: ui.channel, text, thread_ts: threadTs || null });
  if (!threadTs && /@warden/i.test(text)) {
    await refresh();
    const mine = (ui.state.messages[ui.channel] || []).slice(before).find((m) => m.user === ui.user);
    if (mine) ui.pendingOpenThreadFor = mine.ts;
  }
  await refresh();
}

function askConfirm(confirm) {
  return new Promise((resolve) => {
    const overlay = $("overlay");
    overlay.dataset.kind = "confirm";
    overlay.hidden = false;
    overlay.innerHTML = `<div class="modal" role="alertdialog" id="confirm-dialog"><header>${esc(confirm.title ? confirm.title.text : "Are you sure?")}</header>
      <div class="body">${textObject(confirm.text)}</div>
      <footer><button type="button" id="confirm-deny">${esc(confirm.deny ? confirm.deny.text : "Cancel")}</button>
      <button type="button" class="primary" id="confirm-ok">${esc(confirm.confirm ? confirm.confirm.text : "Yes")}</button></footer></div>`;
    const done = (ok) => { overlay.dataset.kind = ""; overlay.dataset.key = ""; overlay.hidden = true; overlay.innerHTML = ""; resolve(ok); renderModal(); };
    $("confirm-ok").onclick = () => done(true);
    $("confirm-deny").onclick = () => done(false);
  });
}

document.addEventListener("click", async (ev) => {
  const t = ev.target.closest("[data-react],[data-channel],[data-home],[data-suggest],[data-thread],[data-action-id],#close-thread,#modal-cancel");
  if (!t) return;
  if (t.dataset.react) {
    ev.preventDefault();
    t.disabled = true;
    await post("react", { channel: t.dataset.reactChannel, ts: t.dataset.reactTs, name: t.dataset.react, remove: !!t.dataset.mine });
    await refresh();
    return;
  }
  if (t.id === "close-thread") { ui.thread = null; render(); return; }
  if (t.id === "modal-cancel") {
    const viewId = $("overlay").dataset.viewId;
    $("overlay").dataset.key = "";
    await post("close_view", { view_id: viewId });
    await refresh();
    return;
  }
  if (t.tagName === "BUTTON" && t.dataset.actionId && t.dataset.ts) {
    ev.preventDefault();
    if (t.dataset.confirm) {
      const ok = await askConfirm(JSON.parse(t.dataset.confirm));
      if (!ok) return;
    }
    t.disabled = true;
    await post("click", { channel: t.dataset.channel, ts: t.dataset.ts, action_id: t.dataset.actionId });
    await refresh();
    return;
  }
  if (t.dataset.thread) { ui.thread = t.dataset.thread; render(); return; }
  ev.preventDefault();
  if (t.dataset.home) {
    ui.home = true; ui.thread = null;
    await post("home", {});
    render();
    return;
  }
  if (t.dataset.suggest) {
    const input = $("composer-input");
    input.value = t.dataset.suggest;
    input.focus();
    return;
  }
  if (t.dataset.channel && t.tagName === "A") {
    ui.channel = t.dataset.channel; ui.home = false; ui.thread = null; render();
  }
});

document.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (ev.target.id === "composer") await send($("composer-input"), null);
  if (ev.target.id === "thread-composer") await send($("thread-input"), ui.thread);
  if (ev.target.id === "modal") {
    const values = {};
    ev.target.querySelectorAll("[data-block-id]").forEach((el) => {
      const state = el.dataset.kind === "static_select"
        ? { type: "static_select", selected_option: { value: el.value, text: { type: "plain_text", text: el.value } } }
        : { type: "plain_text_input", value: el.value };
      values[el.dataset.blockId] = { [el.dataset.actionId]: state };
    });
    $("overlay").dataset.key = "";
    await post("submit_view", { view_id: $("overlay").dataset.viewId, values });
    await refresh();
  }
});

for (const [inputId, formId] of [["composer-input", "composer"], ["thread-input", "thread-composer"]]) {
  $(inputId).addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) {
      ev.preventDefault();
      $(formId).requestSubmit();
    }
  });
}

$("acting-as").addEventListener("change", async (ev) => {
  ui.user = ev.target.value;
  localStorage.setItem("warden-dev-user", ui.user);
  if (ui.home) await post("home", {});
  await refresh();
});

(async function start() {
  const first = await (await fetch("/ui/state?user=")).json();
  const saved = localStorage.getItem("warden-dev-user");
  ui.user = first.personas.some((p) => p.id === saved) ? saved : (first.personas[0] || {}).id;
  ui.channel = (first.channels[0] || {}).id || ui.channel;
  await refresh();
  poll();
})();
